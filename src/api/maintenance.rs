//! The Maintenance service: status, hashes, snapshots, alarms, leader transfer and
//! defragmentation, as etcd's operators and `etcdctl endpoint ...` use them. A snapshot is
//! etcd's backend file (bbolt and a SHA-256; [`crate::storage::etcd_format`]), so that etcd
//! restores from it.

use super::error::{Error, ServerError};
use super::kv::{header, unexpected};
use crate::node::{ALARM_CORRUPT, ALARM_NOSPACE, AlarmAction, Applied, Command};
use crate::pb::etcdserverpb::{self as pb, maintenance_server::Maintenance};
use crate::server::ETCD_VERSION;
use crate::server::driver::NodeHandle;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Bytes of snapshot data per streamed message.
const SNAPSHOT_CHUNK_BYTES: usize = 64 * 1024;

pub struct MaintenanceService {
    h: NodeHandle,
}

impl MaintenanceService {
    pub fn new(h: NodeHandle) -> MaintenanceService {
        MaintenanceService { h }
    }
}

impl MaintenanceService {
    /// Defragment, hashes and snapshots are for the root role; etcd answers a refusal with
    /// the auth store's own words and code Unknown ("auth: permission denied").
    async fn check_admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match self
            .h
            .check_admin(super::credential(&self.h, request))
            .await
        {
            Err(Error::Apply(crate::node::ApplyError::Auth(e))) => {
                Err(Status::unknown(e.to_string()))
            }
            r => Ok(r?),
        }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        let req = request.into_inner();
        let action = match pb::alarm_request::AlarmAction::try_from(req.action) {
            Ok(pb::alarm_request::AlarmAction::Get) => AlarmAction::Get,
            Ok(pb::alarm_request::AlarmAction::Activate) => AlarmAction::Activate,
            Ok(pb::alarm_request::AlarmAction::Deactivate) => AlarmAction::Deactivate,
            // etcd's applier answers an action it does not know with no alarms.
            Err(_) => {
                return Ok(Response::new(pb::AlarmResponse::default()));
            }
        };
        // Every action goes through the log, as in etcd: the alarms are the cluster's, and a
        // list is as current as a linearizable read.
        let cmd = Command::Alarm {
            action,
            member: req.member_id,
            kind: req.alarm,
        };
        let alarms = match self.h.propose(cmd).await? {
            (Applied::Alarm(alarms), _) => alarms,
            (other, _) => return Err(unexpected(&other)),
        };
        // etcd answers alarm requests without a header.
        Ok(Response::new(pb::AlarmResponse {
            header: None,
            alarms: alarms
                .into_iter()
                .map(|a| pb::AlarmMember {
                    member_id: a.member,
                    alarm: a.kind,
                })
                .collect(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let h = self.h.clone();
        let resp = self
            .h
            .run(false, move |d| {
                let at = d.header();
                let space = d.space();
                let raft = &d.member().raw().raft;
                let mut errors = Vec::new();
                if let Some(why) = d.stopped() {
                    errors.push(why.to_string());
                }
                let applier = d.member().applier();
                for (kind, error) in [
                    (ALARM_NOSPACE, ServerError::NoSpace),
                    (ALARM_CORRUPT, ServerError::Corrupt),
                ] {
                    if applier.alarm_raised(kind) {
                        errors.push(error.status().message().to_string());
                    }
                }
                Ok(pb::StatusResponse {
                    header: Some(header(&h, at)),
                    version: ETCD_VERSION.to_string(),
                    db_size: space.size_bytes as i64,
                    leader: raft.lead,
                    raft_index: raft.raft_log.last_index(),
                    raft_term: raft.term,
                    raft_applied_index: raft.raft_log.applied,
                    errors,
                    db_size_in_use: space.in_use_bytes as i64,
                    is_learner: raft.is_learner,
                })
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.check_admin(&request).await?;
        self.h.run(false, |d| d.defragment().map(|_| ())).await?;
        // etcd answers a defragment without a header.
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    async fn hash(
        &self,
        request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        self.check_admin(&request).await?;
        let (hash, at) = self
            .h
            .run(false, |d| {
                let h = d.member().applier().kv().hash_kv(0)?;
                Ok((h.hash, d.header()))
            })
            .await?;
        Ok(Response::new(pb::HashResponse {
            header: Some(header(&self.h, at)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        self.check_admin(&request).await?;
        let revision = request.into_inner().revision;
        let (hk, at) = self
            .h
            .run(false, move |d| {
                let h = d.member().applier().kv().hash_kv(revision)?;
                Ok((h, d.header()))
            })
            .await?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(header(&self.h, at)),
            hash: hk.hash,
            // etcd reports -1 when the store was never compacted.
            compact_revision: if hk.compact_revision == 0 {
                -1
            } else {
                hk.compact_revision
            },
        }))
    }

    type SnapshotStream = ReceiverStream<Result<pb::SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.check_admin(&request).await?;
        let failed = |e: crate::storage::StorageError| {
            Status::from(Error::Internal(format!("etcdserver: snapshot: {e}")))
        };
        let (view, at) = self
            .h
            .run(false, |d| {
                let view = d.member().state_view();
                Ok((view, d.header()))
            })
            .await?;
        let view = view.map_err(failed)?;
        // etcd's backend file and its SHA-256, as etcd streams it, built off the member's loop
        // from the frozen view; the whole file is held in memory while it is sent.
        let data = super::auth::blocking(move || crate::storage::etcd_format::encode(&view))
            .await?
            .map_err(failed)?;
        let data = bytes::Bytes::from(data);
        let (tx, rx) = mpsc::channel(4);
        let header = header(&self.h, at);
        tokio::spawn(async move {
            let total = data.len();
            let mut sent = 0;
            loop {
                let end = (sent + SNAPSHOT_CHUNK_BYTES).min(total);
                let chunk = pb::SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: (total - end) as u64,
                    blob: data.slice(sent..end),
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
                sent = end;
                if sent == total {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        self.h
            .run(false, move |d| {
                if !d.is_leader() {
                    return Err(ServerError::NotLeader.into());
                }
                let voters = d.member().raw().raft.tracker.conf_state().voters;
                if target == 0 || !voters.contains(&target) {
                    return Err(ServerError::BadLeaderTransferee.into());
                }
                d.member_mut().raw_mut().transfer_leader(target);
                Ok(())
            })
            .await?;
        let step = Duration::from_millis(self.h.config.heartbeat_ms);
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.h.config.election_ms * 5);
        loop {
            let (leader, at) = self.h.run(false, |d| Ok((d.leader(), d.header()))).await?;
            if leader == target {
                return Ok(Response::new(pb::MoveLeaderResponse {
                    header: Some(header(&self.h, at)),
                }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServerError::Timeout.status());
            }
            tokio::time::sleep(step).await;
        }
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(Status::unimplemented(
            "etcdserver: downgrade is not supported",
        ))
    }
}
