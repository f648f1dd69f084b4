//! etcd's concurrency recipes as etcdctl 3.4 runs them, on the client over Range, Txn,
//! DeleteRange and Watch: the mutex behind `lock` ([`Mutex`]) and the election behind `elect`
//! ([`Election`], [`observe`]).
//!
//! Members serve the same recipes as the Lock and Election services, but what etcdctl shows
//! comes from its own calls, and the services would show something else in places: etcd
//! 3.4's Lock grants a waiter whose lease lapsed (etcdctl then reads no key and says "lock
//! lost on init") where oxcd's and etcd 3.5's refuse it; a canceled call is withdrawn
//! whenever the member notices, where etcdctl deletes its key before it exits; and an
//! Observe answer carries the leader's key but not the count of the read that found it,
//! which etcdctl prints again with each new value.
//!
//! The recipes: a contender writes `name/<its lease in hex>` under its session lease unless
//! that key exists, then waits until every key under `name/` created before its own is
//! deleted; revisions decide the order. A wait takes `until` (the command's interrupt, as
//! etcdctl's context): when it fires, the contender withdraws its key and the wait fails with
//! "context canceled". The requests' shapes are the member's own
//! ([`oxcd::api::recipes::requests`]). This module does not keep the lease alive
//! ([`crate::session`]) and prints nothing.

use super::session::canceled;
use super::token::Authed;
use super::{CtlError, EXIT_ERROR, rpc_error};
use bytes::Bytes;
use oxcd::api::recipes::requests::{
    by_creation, contender_key, created_at, delete, get, op, prefix_of, put,
};
use oxcd::pb::etcdserverpb::{self as pb, request_op};
use oxcd::pb::mvccpb;
use pb::kv_client::KvClient;
use pb::watch_client::WatchClient;
use std::future::Future;

const DELETE: i32 = mvccpb::event::EventType::Delete as i32;
const PUT: i32 = mvccpb::event::EventType::Put as i32;

/// The first key a transaction's `i`th (range) answer holds.
fn ranged(r: &pb::TxnResponse, i: usize) -> Option<&mvccpb::KeyValue> {
    match r.responses.get(i)?.response.as_ref()? {
        pb::response_op::Response::ResponseRange(rr) => rr.kvs.first(),
        _ => None,
    }
}

fn no_key(key: &Bytes) -> CtlError {
    CtlError::new(
        EXIT_ERROR,
        format!(
            "the cluster answered without the key {}",
            String::from_utf8_lossy(key)
        ),
    )
}

async fn range(ch: &Authed, req: pb::RangeRequest) -> Result<pb::RangeResponse, CtlError> {
    let r = KvClient::new(ch.clone()).range(req).await;
    Ok(r.map_err(rpc_error)?.into_inner())
}

async fn txn(ch: &Authed, req: pb::TxnRequest) -> Result<pb::TxnResponse, CtlError> {
    let r = KvClient::new(ch.clone()).txn(req).await;
    Ok(r.map_err(rpc_error)?.into_inner())
}

/// Reads `key`, what etcdctl prints once it holds a lock or leads, unless `until` resolves
/// first.
pub async fn read_held(
    ch: &Authed,
    key: &Bytes,
    until: impl Future<Output = ()>,
) -> Result<pb::RangeResponse, CtlError> {
    let req = pb::RangeRequest {
        key: key.clone(),
        ..Default::default()
    };
    tokio::select! {
        r = range(ch, req) => r,
        () = until => Err(canceled()),
    }
}

/// One watch, on a stream of its own.
struct Watching {
    /// Held so the request side stays open while the watch runs.
    _requests: tokio::sync::mpsc::Sender<pb::WatchRequest>,
    stream: tonic::Streaming<pb::WatchResponse>,
}

impl Watching {
    async fn open(
        ch: &Authed,
        key: &Bytes,
        range_end: Bytes,
        start_revision: i64,
    ) -> Result<Watching, CtlError> {
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: key.clone(),
                    range_end,
                    start_revision,
                    ..Default::default()
                },
            )),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(create).await.expect("the channel is open");
        let stream = WatchClient::new(ch.clone())
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(rpc_error)?
            .into_inner();
        Ok(Watching {
            _requests: tx,
            stream,
        })
    }

    /// The next answer that is not the watch's creation; an error once the watch ended, in
    /// clientv3's words.
    async fn next(&mut self) -> Result<pb::WatchResponse, CtlError> {
        loop {
            let Some(r) = self.stream.message().await.map_err(rpc_error)? else {
                return Err(CtlError::new(
                    EXIT_ERROR,
                    "lost watcher waiting for delete".into(),
                ));
            };
            if r.canceled {
                let why = if r.compact_revision > 0 {
                    "etcdserver: mvcc: required revision has been compacted".to_string()
                } else {
                    r.cancel_reason
                };
                return Err(CtlError::new(EXIT_ERROR, why));
            }
            if !(r.created && r.events.is_empty()) {
                return Ok(r);
            }
        }
    }
}

/// Waits until `key` is deleted at `revision` or later.
async fn wait_delete(ch: &Authed, key: &Bytes, revision: i64) -> Result<(), CtlError> {
    let mut watch = Watching::open(ch, key, Bytes::new(), revision).await?;
    loop {
        if watch
            .next()
            .await?
            .events
            .iter()
            .any(|e| e.r#type == DELETE)
        {
            return Ok(());
        }
    }
}

/// Waits until no key under `prefix` created at `max_create` or before is left, the last
/// created first; the header of the read that found none.
async fn wait_deletes(
    ch: &Authed,
    prefix: &Bytes,
    max_create: i64,
) -> Result<pb::ResponseHeader, CtlError> {
    loop {
        let r = range(ch, by_creation(prefix, false, max_create)).await?;
        let header = r.header.unwrap_or_default();
        let Some(last) = r.kvs.first() else {
            return Ok(header);
        };
        if last.create_revision > max_create {
            // Waiting for it could be waiting for this contender's own key.
            return Err(CtlError::new(
                EXIT_ERROR,
                format!("the cluster answered a key created after revision {max_create}"),
            ));
        }
        wait_delete(ch, &last.key, header.revision).await?;
    }
}

/// etcd's mutex (clientv3's `concurrency.Mutex`): call [`Mutex::lock`], then
/// [`Mutex::unlock`] once done.
pub struct Mutex {
    prefix: Bytes,
    key: Bytes,
    lease: i64,
    /// The revision that created this contender's key, once written and until unlocked.
    created: Option<i64>,
    /// The header of the answer that gave this contender the lock.
    header: pb::ResponseHeader,
}

impl Mutex {
    pub fn new(name: &str, lease: i64) -> Mutex {
        let prefix = prefix_of(name.as_bytes());
        Mutex {
            key: contender_key(&prefix, lease),
            prefix,
            lease,
            created: None,
            header: pb::ResponseHeader::default(),
        }
    }

    /// The key this contender writes (and holds once locked).
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The header of the answer that gave the lock: its revision is `ETCD_LOCK_REV`.
    pub fn header(&self) -> &pb::ResponseHeader {
        &self.header
    }

    /// Queues this contender's key and waits for the lock, or until `until` resolves; a
    /// failed or canceled wait withdraws the key.
    pub async fn lock(
        &mut self,
        ch: &Authed,
        until: impl Future<Output = ()>,
    ) -> Result<(), CtlError> {
        assert!(self.created.is_none(), "lock once, then unlock");
        tokio::pin!(until);
        let owner = op(request_op::Request::RequestRange(by_creation(
            &self.prefix,
            true,
            0,
        )));
        let req = pb::TxnRequest {
            compare: vec![created_at(&self.key, 0)],
            success: vec![put(&self.key, Bytes::new(), self.lease), owner.clone()],
            failure: vec![get(&self.key), owner],
        };
        let r = tokio::select! {
            r = txn(ch, req) => r?,
            () = &mut until => return Err(canceled()),
        };
        let header = r.header.unwrap_or_default();
        let created = if r.succeeded {
            header.revision
        } else {
            ranged(&r, 0)
                .ok_or_else(|| no_key(&self.key))?
                .create_revision
        };
        self.created = Some(created);
        let owner_created = ranged(&r, 1).map(|kv| kv.create_revision);
        if owner_created.is_none_or(|o| o == created) {
            self.header = header;
            return Ok(());
        }
        let waited = tokio::select! {
            r = wait_deletes(ch, &self.prefix, created - 1) => r,
            () = &mut until => Err(canceled()),
        };
        match waited {
            Ok(h) => {
                self.header = h;
                Ok(())
            }
            Err(e) => {
                let _ = self.unlock(ch).await;
                Err(e)
            }
        }
    }

    /// Deletes this contender's key (whether it held the lock or still waited).
    pub async fn unlock(&mut self, ch: &Authed) -> Result<(), CtlError> {
        let r = KvClient::new(ch.clone())
            .delete_range(pb::DeleteRangeRequest {
                key: self.key.clone(),
                ..Default::default()
            })
            .await;
        r.map_err(rpc_error)?;
        self.created = None;
        Ok(())
    }
}

/// etcd's election (clientv3's `concurrency.Election`) for one session: call
/// [`Election::campaign`], then [`Election::resign`].
pub struct Election {
    prefix: Bytes,
    key: Bytes,
    lease: i64,
    /// The leader key's create revision while this session campaigns or leads.
    leading: Option<i64>,
}

impl Election {
    pub fn new(name: &str, lease: i64) -> Election {
        let prefix = prefix_of(name.as_bytes());
        Election {
            key: contender_key(&prefix, lease),
            prefix,
            lease,
            leading: None,
        }
    }

    /// The key this session campaigns with.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// Writes this session's proposal and waits until it leads, or until `until` resolves
    /// (then it resigns).
    pub async fn campaign(
        &mut self,
        ch: &Authed,
        value: &str,
        until: impl Future<Output = ()>,
    ) -> Result<(), CtlError> {
        tokio::pin!(until);
        let value = Bytes::copy_from_slice(value.as_bytes());
        let req = pb::TxnRequest {
            compare: vec![created_at(&self.key, 0)],
            success: vec![put(&self.key, value.clone(), self.lease)],
            failure: vec![get(&self.key)],
        };
        let r = tokio::select! {
            r = txn(ch, req) => r?,
            () = &mut until => return Err(canceled()),
        };
        let mut created = r.header.as_ref().map_or(0, |h| h.revision);
        self.leading = Some(created);
        if !r.succeeded {
            // This session's key is there already: campaign with it, and its new value.
            let kv = ranged(&r, 0).ok_or_else(|| no_key(&self.key))?;
            created = kv.create_revision;
            self.leading = Some(created);
            if kv.value != value {
                let proclaimed = tokio::select! {
                    r = self.proclaim(ch, created, value.clone()) => r,
                    () = &mut until => Err(canceled()),
                };
                if let Err(e) = proclaimed {
                    let _ = self.resign(ch).await;
                    return Err(e);
                }
            }
        }
        let (waited, interrupted) = tokio::select! {
            r = wait_deletes(ch, &self.prefix, created - 1) => (r, false),
            () = &mut until => (Err(canceled()), true),
        };
        if let Err(e) = waited {
            if interrupted {
                let _ = self.resign(ch).await;
            } else {
                self.leading = None;
            }
            return Err(e);
        }
        Ok(())
    }

    async fn proclaim(&self, ch: &Authed, created: i64, value: Bytes) -> Result<(), CtlError> {
        let r = txn(
            ch,
            pb::TxnRequest {
                compare: vec![created_at(&self.key, created)],
                success: vec![put(&self.key, value, self.lease)],
                failure: vec![],
            },
        )
        .await?;
        if !r.succeeded {
            return Err(CtlError::new(EXIT_ERROR, "election: not leader".into()));
        }
        Ok(())
    }

    /// Deletes the leader key if it is still the one this session campaigned with.
    pub async fn resign(&mut self, ch: &Authed) -> Result<(), CtlError> {
        let Some(created) = self.leading.take() else {
            return Ok(());
        };
        let req = pb::TxnRequest {
            compare: vec![created_at(&self.key, created)],
            success: vec![delete(&self.key)],
            failure: vec![],
        };
        txn(ch, req).await.map(|_| ())
    }
}

/// etcd's `Election.Observe`, with what etcdctl prints of it: `show` gets the election's
/// leader as a Range answer, then each new value of the leader's key, then the next leader,
/// and so on. A new value comes in the answer of the read that found its leader, so it
/// carries that read's `count` and `more` (clientv3 reuses it). Returns `Ok` when a read or
/// a watch failed (the observation ended), or the first error of `show`.
pub async fn observe(
    ch: &Authed,
    name: &str,
    mut show: impl FnMut(&pb::RangeResponse) -> Result<(), CtlError>,
) -> Result<(), CtlError> {
    let prefix = prefix_of(name.as_bytes());
    loop {
        let Ok(mut found) = range(ch, by_creation(&prefix, true, 0)).await else {
            return Ok(());
        };
        let (header, leader) = match found.kvs.first() {
            Some(kv) => (found.header.unwrap_or_default(), kv.clone()),
            None => {
                // No leader yet: the first key put under the prefix is.
                let from = found.header.as_ref().map_or(0, |h| h.revision);
                let end = Bytes::from(super::txn::prefix_end(&prefix));
                let Ok(mut watch) = Watching::open(ch, &prefix, end, from).await else {
                    return Ok(());
                };
                loop {
                    let Ok(r) = watch.next().await else {
                        return Ok(());
                    };
                    let first = r.events.iter().find(|e| e.r#type == PUT);
                    if let Some(kv) = first.and_then(|e| e.kv.clone()) {
                        let mut header = r.header.unwrap_or_default();
                        header.revision = kv.mod_revision;
                        break (header, kv);
                    }
                }
            }
        };
        show(&pb::RangeResponse {
            header: Some(header),
            kvs: vec![leader.clone()],
            ..Default::default()
        })?;
        let from = header.revision + 1;
        let Ok(mut watch) = Watching::open(ch, &leader.key, Bytes::new(), from).await else {
            return Ok(());
        };
        'leader: loop {
            let Ok(r) = watch.next().await else {
                return Ok(());
            };
            for e in &r.events {
                if e.r#type == DELETE {
                    break 'leader;
                }
                found.header = r.header;
                found.kvs = e.kv.clone().into_iter().collect();
                show(&found)?;
            }
        }
    }
}
