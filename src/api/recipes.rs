//! The Lock and Election services (`v3lockpb.Lock`, `v3electionpb.Election`): etcd's
//! concurrency recipes, run inside the member on its own Range, Txn, DeleteRange, LeaseGrant
//! and Watch, with the caller's credentials (so auth applies as to the caller's own requests).
//!
//! The recipes, as etcd's `concurrency` package has them:
//! - A session is a lease: the caller's, or one of [`SESSION_TTL_S`] granted for the call and
//!   never kept alive (etcd's servers orphan their session at once).
//! - A contender writes `name/<lease in hex>` under its lease unless it exists, then waits
//!   until every key under `name/` created before its own is deleted: revisions decide the
//!   order, and a lease that lapses deletes its key, losing the lock or leadership.
//! - Errors from the member's own calls come back as etcd's servers return them: code
//!   `Unknown` with the inner message.
//!
//! This module does not own the requests it makes ([`super::kv`], [`super::lease`], the
//! watchers in the member server), nor keeping a client's lease alive.

pub mod requests;

use super::kv::KvService;
use super::lease::LeaseService;
use crate::mvcc;
use crate::mvcc::StreamId;
use crate::node::{Credential, WatchRequest, WatchTaken};
use crate::pb::etcdserverpb::{self as pb, request_op};
use crate::pb::mvccpb;
use crate::pb::v3electionpb::{self as epb, election_server::Election};
use crate::pb::v3lockpb::{self as lpb, lock_server::Lock};
use crate::server::ServerBug;
use crate::server::driver::{NodeHandle, Room, WatchSink};
use bytes::Bytes;
use requests::{by_creation, contender_key, created_at, delete, get, op, prefix_of, put};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The TTL of a session lease granted for a call made without one (etcd's default session).
pub const SESSION_TTL_S: i64 = 60;
/// Watch responses buffered for one wait.
const WAIT_RESPONSES_MAX: usize = 16;

const NO_LEADER: &str = "election: no leader";
const NOT_LEADER: &str = "election: not leader";
const LEADER_MISSING: &str = "\"leader\" field must be provided";
/// A lock whose key went away while it waited (its lease lapsed), as etcd 3.5 words it.
const SESSION_EXPIRED: &str = "mutex: session is expired";

/// A failure of a recipe, as etcd's lock and election servers answer it.
fn failed(s: Status) -> Status {
    if s.code() == tonic::Code::Unknown {
        return s;
    }
    Status::unknown(s.message().to_string())
}

/// The member's own calls, made for one client.
struct Local {
    h: NodeHandle,
    kv: KvService,
    who: Credential,
}

/// One in-member watch: its responses, and its stream closed when dropped.
struct Watch {
    h: NodeHandle,
    stream: StreamId,
    rx: mpsc::Receiver<mvcc::WatchResponse>,
}

struct ChannelSink(mpsc::Sender<mvcc::WatchResponse>);

impl WatchSink for ChannelSink {
    fn room(&self) -> Room {
        if self.0.is_closed() {
            Room::Closed
        } else if self.0.capacity() == 0 {
            Room::Full
        } else {
            Room::Free
        }
    }

    fn deliver(&mut self, response: mvcc::WatchResponse, _raft_term: u64) {
        let _ = self.0.try_send(response);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let (h, stream) = (self.h.clone(), self.stream);
        tokio::spawn(async move {
            let _ = h.close_watch(stream).await;
        });
    }
}

impl Watch {
    /// The next events (an empty list for a progress response); an error once the watch
    /// ended (canceled, compacted, or the member stopped).
    async fn events(&mut self) -> Result<Vec<mvcc::Event>, Status> {
        loop {
            let Some(r) = self.rx.recv().await else {
                return Err(Status::unknown("lost watcher waiting for delete"));
            };
            if r.canceled {
                let why = if r.compact_revision > 0 {
                    format!(
                        "mvcc: required revision has been compacted (compact revision {})",
                        r.compact_revision
                    )
                } else {
                    r.cancel_reason
                };
                return Err(Status::unknown(why));
            }
            if r.created && r.events.is_empty() {
                continue;
            }
            return Ok(r.events);
        }
    }
}

impl Local {
    fn new(h: &NodeHandle, who: Credential) -> Local {
        Local {
            h: h.clone(),
            kv: KvService::new(h.clone()),
            who,
        }
    }

    async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        self.kv
            .range_as(self.who.clone(), req)
            .await
            .map_err(failed)
    }

    async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        self.kv.txn_as(self.who.clone(), req).await.map_err(failed)
    }

    /// The caller's lease, or a session lease granted now.
    async fn session(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let req = pb::LeaseGrantRequest {
            ttl: SESSION_TTL_S,
            id: 0,
        };
        let r = LeaseService::new(self.h.clone()).grant(req).await;
        Ok(r.map_err(failed)?.id)
    }

    /// Watches `[key, range_end)` from `revision`.
    async fn watch(&self, key: &Bytes, range_end: Bytes, revision: i64) -> Result<Watch, Status> {
        let (tx, rx) = mpsc::channel(WAIT_RESPONSES_MAX);
        let stream = self
            .h
            .open_watch(Box::new(ChannelSink(tx)))
            .await
            .map_err(|e| failed(e.into()))?;
        let watch = Watch {
            h: self.h.clone(),
            stream,
            rx,
        };
        let create = super::convert::watch_create(pb::WatchCreateRequest {
            key: key.clone(),
            range_end,
            start_revision: revision,
            ..Default::default()
        });
        let taken = self
            .h
            .watch_request(stream, WatchRequest::Create(create), self.who.clone())
            .await
            .map_err(|e| failed(e.into()))?;
        match taken {
            WatchTaken::Done => Ok(watch),
            WatchTaken::Refused { error, .. } => Err(failed(super::error::auth_status(&error))),
            WatchTaken::Full | WatchTaken::Gone => Err(Status::unknown("etcdserver: no watcher")),
        }
    }

    /// Waits until `key` is deleted at `revision` or later.
    async fn wait_delete(&self, key: &Bytes, revision: i64) -> Result<(), Status> {
        let mut watch = self.watch(key, Bytes::new(), revision).await?;
        loop {
            let events = watch.events().await?;
            if events.iter().any(|e| e.kind == mvcc::EventKind::Delete) {
                return Ok(());
            }
        }
    }

    /// Waits until no key under `prefix` created at `max_create` or before is left; the
    /// header of the read that found none.
    async fn wait_deletes(
        &self,
        prefix: &Bytes,
        max_create: i64,
    ) -> Result<pb::ResponseHeader, Status> {
        loop {
            let r = self.range(by_creation(prefix, false, max_create)).await?;
            let header = r.header.unwrap_or_default();
            let Some(last) = r.kvs.first() else {
                return Ok(header);
            };
            self.wait_delete(&last.key, header.revision).await?;
        }
    }

    /// Writes `key` (under `lease`, holding `value`) unless it exists; with it, the key under
    /// `prefix` created first. The revision the key was created at, whether this call
    /// created it, its value, and the header.
    async fn contend(
        &self,
        key: &Bytes,
        value: Bytes,
        lease: i64,
        prefix: &Bytes,
    ) -> Result<Contended, Status> {
        let owner = op(request_op::Request::RequestRange(by_creation(
            prefix, true, 0,
        )));
        let r = self
            .txn(pb::TxnRequest {
                compare: vec![created_at(key, 0)],
                success: vec![put(key, value, lease), owner.clone()],
                failure: vec![get(key), owner],
            })
            .await?;
        let header = r.header.unwrap_or_default();
        let range = |i: usize| match r.responses.get(i).and_then(|o| o.response.as_ref()) {
            Some(pb::response_op::Response::ResponseRange(rr)) => rr.kvs.first().cloned(),
            _ => None,
        };
        let owner_created = range(1).map(|kv| kv.create_revision);
        if r.succeeded {
            return Ok(Contended {
                created: header.revision,
                existing: None,
                owner_created,
                header,
            });
        }
        let existing = range(0).ok_or_else(|| Status::unknown(SESSION_EXPIRED))?;
        Ok(Contended {
            created: existing.create_revision,
            existing: Some(existing),
            owner_created,
            header,
        })
    }

    /// Writes `value` to the leader key `key` if it is still the one created at `revision`.
    async fn proclaim(
        &self,
        key: &Bytes,
        revision: i64,
        value: Bytes,
        lease: i64,
    ) -> Result<pb::ResponseHeader, Status> {
        let r = self
            .txn(pb::TxnRequest {
                compare: vec![created_at(key, revision)],
                success: vec![put(key, value, lease)],
                failure: vec![],
            })
            .await?;
        if !r.succeeded {
            return Err(Status::unknown(NOT_LEADER));
        }
        Ok(r.header.unwrap_or_default())
    }

    /// Deletes the leader key `key` if it is still the one created at `revision`.
    async fn resign(&self, key: &Bytes, revision: i64) -> Result<pb::ResponseHeader, Status> {
        self.delete(key, Some(revision)).await
    }

    /// Deletes `key`: whatever holds it, or (`created`) only the key created at that revision.
    async fn delete(
        &self,
        key: &Bytes,
        created: Option<i64>,
    ) -> Result<pb::ResponseHeader, Status> {
        let r = self
            .txn(pb::TxnRequest {
                compare: created
                    .map(|rev| created_at(key, rev))
                    .into_iter()
                    .collect(),
                success: vec![delete(key)],
                failure: vec![],
            })
            .await?;
        Ok(r.header.unwrap_or_default())
    }

    /// A contender's entry under election or lock `name` with `value`: its session lease
    /// (`lease`, or one granted now), the prefix, its key, and what writing the key found.
    async fn enter(
        &self,
        name: &[u8],
        lease: i64,
        value: Bytes,
    ) -> Result<(i64, Bytes, Bytes, Contended), Status> {
        let lease = self.session(lease).await?;
        let prefix = prefix_of(name);
        let key = contender_key(&prefix, lease);
        let c = self.contend(&key, value, lease, &prefix).await?;
        Ok((lease, prefix, key, c))
    }
}

/// A contender's key that goes away unless the call that wrote it finishes: a client that
/// gives up waiting (its call canceled) withdraws, as etcd's recipes delete their key when
/// their context ends.
struct Withdraw {
    h: NodeHandle,
    who: Credential,
    key: Bytes,
    created: i64,
    armed: bool,
}

impl Withdraw {
    fn new(local: &Local, key: &Bytes, created: i64) -> Withdraw {
        Withdraw {
            h: local.h.clone(),
            who: local.who.clone(),
            key: key.clone(),
            created,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let local = Local::new(&self.h, self.who.clone());
        let (key, created) = (self.key.clone(), self.created);
        tokio::spawn(async move {
            let _ = local.resign(&key, created).await;
        });
    }
}

/// What one contender's write found.
struct Contended {
    /// The revision the contender's key was created at.
    created: i64,
    /// The key as it was, when it existed already.
    existing: Option<mvccpb::KeyValue>,
    /// The create revision of the key under the prefix created first, if any.
    owner_created: Option<i64>,
    header: pb::ResponseHeader,
}

pub struct LockService {
    h: NodeHandle,
}

impl LockService {
    pub fn new(h: NodeHandle) -> LockService {
        LockService { h }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(
        &self,
        request: Request<lpb::LockRequest>,
    ) -> Result<Response<lpb::LockResponse>, Status> {
        let local = Local::new(&self.h, super::credential(&self.h, &request));
        let req = request.into_inner();
        let (_, prefix, key, c) = local.enter(&req.name, req.lease, Bytes::new()).await?;
        let mut header = c.header;
        if c.owner_created.is_some_and(|o| o != c.created) {
            let withdraw = Withdraw::new(&local, &key, c.created);
            local.wait_deletes(&prefix, c.created - 1).await?;
            withdraw.disarm();
            // The lock is this key's only while the key is there: a lapsed lease lost it.
            let r = local
                .range(pb::RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })
                .await?;
            if r.kvs.is_empty() {
                return Err(Status::unknown(SESSION_EXPIRED));
            }
            header = r.header.unwrap_or_default();
        }
        Ok(Response::new(lpb::LockResponse {
            header: Some(header),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<lpb::UnlockRequest>,
    ) -> Result<Response<lpb::UnlockResponse>, Status> {
        let local = Local::new(&self.h, super::credential(&self.h, &request));
        let header = local.delete(&request.into_inner().key, None).await?;
        Ok(Response::new(lpb::UnlockResponse {
            header: Some(header),
        }))
    }
}

pub struct ElectionService {
    h: NodeHandle,
}

impl ElectionService {
    pub fn new(h: NodeHandle) -> ElectionService {
        ElectionService { h }
    }
}

fn leader_key(leader: Option<epb::LeaderKey>) -> Result<epb::LeaderKey, Status> {
    leader.ok_or_else(|| Status::unknown(LEADER_MISSING))
}

/// The leader of the election under `prefix` at `revision` (0: now): the key created first,
/// and the read's header.
async fn leader_of(
    local: &Local,
    prefix: &Bytes,
    revision: i64,
) -> Result<(Option<mvccpb::KeyValue>, pb::ResponseHeader), Status> {
    let mut req = by_creation(prefix, true, 0);
    req.revision = revision;
    let r = local.range(req).await?;
    Ok((r.kvs.into_iter().next(), r.header.unwrap_or_default()))
}

type Observed = ReceiverStream<Result<epb::LeaderResponse, Status>>;

/// Sends the election's leader on `tx`, then each new value and each next leader, until the
/// client goes away or a read or watch fails. The leader after one whose key was deleted at
/// revision `D` is read as of `D` (the store's history, unless compacted), so a leader that
/// held the election only briefly is not skipped (etcd's recipe reads the leader as of
/// now and may skip one).
async fn observe(
    local: Local,
    prefix: Bytes,
    tx: mpsc::Sender<Result<epb::LeaderResponse, Status>>,
) {
    let send = |header: pb::ResponseHeader, kv: mvccpb::KeyValue| epb::LeaderResponse {
        header: Some(header),
        kv: Some(kv),
    };
    // The revision of the last leader's deletion (0: none yet).
    let mut deleted_at = 0;
    loop {
        let read = match deleted_at {
            0 => leader_of(&local, &prefix, 0).await,
            at => match leader_of(&local, &prefix, at).await {
                Ok((leader, mut header)) => {
                    header.revision = at;
                    Ok((leader, header))
                }
                // Compacted past it: the leader now.
                Err(_) => leader_of(&local, &prefix, 0).await,
            },
        };
        let Ok((leader, mut header)) = read else {
            return;
        };
        let leader = match leader {
            Some(kv) => kv,
            // No leader yet: the first key put under the prefix is.
            None => {
                let Ok(mut watch) = local
                    .watch(&prefix, mvcc::prefix_end(&prefix), header.revision)
                    .await
                else {
                    return;
                };
                loop {
                    let Ok(events) = watch.events().await else {
                        return;
                    };
                    let first = events.into_iter().find(|e| e.kind == mvcc::EventKind::Put);
                    if let Some(e) = first {
                        header.revision = e.kv.mod_revision;
                        break super::convert::key_value_owned(e.kv);
                    }
                }
            }
        };
        let key = leader.key.clone();
        let from = header.revision + 1;
        if tx.send(Ok(send(header, leader))).await.is_err() {
            return;
        }
        // Each new value of the leader's key, until it is deleted.
        let Ok(mut watch) = local.watch(&key, Bytes::new(), from).await else {
            return;
        };
        'leader: loop {
            let Ok(events) = watch.events().await else {
                return;
            };
            for e in events {
                if e.kind == mvcc::EventKind::Delete {
                    if !local.h.config.has_bug(ServerBug::ObserveSkipsLeaders) {
                        deleted_at = e.kv.mod_revision;
                    }
                    break 'leader;
                }
                header.revision = e.kv.mod_revision;
                let kv = super::convert::key_value_owned(e.kv);
                if tx.send(Ok(send(header, kv))).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<epb::CampaignRequest>,
    ) -> Result<Response<epb::CampaignResponse>, Status> {
        let local = Local::new(&self.h, super::credential(&self.h, &request));
        let req = request.into_inner();
        let (lease, prefix, key, c) = local.enter(&req.name, req.lease, req.value.clone()).await?;
        let withdraw = Withdraw::new(&local, &key, c.created);
        if c.existing.as_ref().is_some_and(|kv| kv.value != req.value) {
            local.proclaim(&key, c.created, req.value, lease).await?;
        }
        if !self.h.config.has_bug(ServerBug::CampaignWithoutWaiting) {
            local.wait_deletes(&prefix, c.created - 1).await?;
        }
        withdraw.disarm();
        Ok(Response::new(epb::CampaignResponse {
            header: Some(c.header),
            leader: Some(epb::LeaderKey {
                name: req.name,
                key,
                rev: c.created,
                lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<epb::ProclaimRequest>,
    ) -> Result<Response<epb::ProclaimResponse>, Status> {
        let local = Local::new(&self.h, super::credential(&self.h, &request));
        let req = request.into_inner();
        let leader = leader_key(req.leader)?;
        let header = local
            .proclaim(&leader.key, leader.rev, req.value, leader.lease)
            .await?;
        Ok(Response::new(epb::ProclaimResponse {
            header: Some(header),
        }))
    }

    async fn leader(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<epb::LeaderResponse>, Status> {
        let local = Local::new(&self.h, super::credential(&self.h, &request));
        let prefix = prefix_of(&request.into_inner().name);
        match leader_of(&local, &prefix, 0).await? {
            (Some(kv), header) => Ok(Response::new(epb::LeaderResponse {
                header: Some(header),
                kv: Some(kv),
            })),
            (None, _) => Err(Status::unknown(NO_LEADER)),
        }
    }

    type ObserveStream = Observed;

    async fn observe(
        &self,
        request: Request<epb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let local = Local::new(&self.h, super::credential(&self.h, &request));
        let prefix = prefix_of(&request.into_inner().name);
        let (tx, rx) = mpsc::channel(WAIT_RESPONSES_MAX);
        tokio::spawn(observe(local, prefix, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn resign(
        &self,
        request: Request<epb::ResignRequest>,
    ) -> Result<Response<epb::ResignResponse>, Status> {
        let local = Local::new(&self.h, super::credential(&self.h, &request));
        let leader = leader_key(request.into_inner().leader)?;
        let header = local.resign(&leader.key, leader.rev).await?;
        Ok(Response::new(epb::ResignResponse {
            header: Some(header),
        }))
    }
}
