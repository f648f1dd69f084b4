//! The Lease service. Grants and revokes go through Raft from any member; keep-alives and
//! time-to-live need the leader's (primary) lessor, so a follower forwards them to the
//! leader's client URL, as etcd forwards them over its peer port.

use super::error::{Error, ServerError, lease_status};
use super::kv::header;
use crate::lease;
use crate::node::{Applied, Command};
use crate::pb::etcdserverpb::{self as pb, lease_client::LeaseClient, lease_server::Lease};
use crate::peer::forward::{LeaderStream, leader_channel};
use crate::server::driver::NodeHandle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub struct LeaseService {
    h: NodeHandle,
}

impl LeaseService {
    pub fn new(h: NodeHandle) -> LeaseService {
        LeaseService { h }
    }

    /// Grants a lease (no permission needed; also what the in-member recipes grant their
    /// sessions with).
    pub async fn grant(
        &self,
        req: pb::LeaseGrantRequest,
    ) -> Result<pb::LeaseGrantResponse, Status> {
        if req.ttl > lease::TTL_MAX_S {
            return Err(lease_status(&lease::Error::TtlTooLarge {
                ttl_s: req.ttl,
                ttl_max_s: lease::TTL_MAX_S,
            }));
        }
        let cmd = Command::LeaseGrant {
            id: req.id,
            ttl_s: req.ttl,
        };
        match self.h.propose(cmd).await? {
            (Applied::LeaseGrant(g), at) => Ok(pb::LeaseGrantResponse {
                header: Some(header(&self.h, at)),
                id: g.id,
                ttl: g.ttl_s,
                error: String::new(),
            }),
            (other, _) => Err(super::kv::unexpected(&other)),
        }
    }
}

/// One keep-alive: answered here when this member leads, by the leader otherwise.
async fn keep_alive_once(
    h: &NodeHandle,
    to_leader: &mut LeaderStream,
    id: i64,
) -> Result<pb::LeaseKeepAliveResponse, Status> {
    match h.keep_alive(id).await {
        Ok((ttl, at)) => Ok(pb::LeaseKeepAliveResponse {
            header: Some(header(h, at)),
            id,
            ttl,
        }),
        Err(Error::Server(ServerError::NotLeader)) => to_leader.keep_alive(h, id).await,
        Err(e) => Err(e.into()),
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        Ok(Response::new(self.grant(request.into_inner()).await?))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let who = super::credential(&self.h, &request);
        let id = request.into_inner().id;
        let (_, at) = self.h.propose_as(who, Command::LeaseRevoke { id }).await?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(header(&self.h, at)),
        }))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let h = self.h.clone();
        tokio::spawn(async move {
            let mut to_leader = LeaderStream::default();
            loop {
                let req = match h.unless_stopping(input.message()).await {
                    Ok(Ok(Some(req))) => req,
                    Ok(_) => break,
                    Err(stopped) => {
                        let _ = tx.send(Err(Status::from(stopped))).await;
                        break;
                    }
                };
                let r = keep_alive_once(&h, &mut to_leader, req.id).await;
                let failed = r.is_err();
                if tx.send(r).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let (id, keys) = (req.id, req.keys);
        let local = self
            .h
            .run(true, move |d| {
                let now = d.now_ms();
                let at = d.header();
                let lessor = d.member().applier().lessor();
                match lessor.time_to_live(id, now, keys) {
                    Ok(t) => Ok((Some(t), at)),
                    Err(lease::Error::NotFound { .. }) => Ok((None, at)),
                    Err(lease::Error::NotPrimary) => Err(ServerError::NotLeader.into()),
                    Err(e) => Err(e.into()),
                }
            })
            .await;
        let h = &self.h;
        match local {
            Ok((Some(t), at)) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: Some(header(h, at)),
                id: t.id,
                ttl: t.ttl_s,
                granted_ttl: t.granted_ttl_s,
                keys: t.keys,
            })),
            Ok((None, at)) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: Some(header(h, at)),
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            })),
            Err(Error::Server(ServerError::NotLeader)) => {
                let mut client = LeaseClient::new(leader_channel(h).await?);
                client
                    .lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys })
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let (ids, at) = self
            .h
            .run(true, |d| {
                Ok((d.member().applier().lessor().leases(), d.header()))
            })
            .await?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(header(&self.h, at)),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}
