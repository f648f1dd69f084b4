//! What `lock` and `elect` hold while they run: a session lease, kept alive in the background
//! as etcd's client keeps one, and the interrupt (SIGINT or SIGTERM) that ends the wait.
//!
//! A session is the lease that `lock` and `elect` write their key under, so a client that
//! dies lets go once the TTL runs out. As etcdctl 3.4 does, the lease is never revoked: a
//! released lock or a resigned leadership has deleted its key already, and the lease lapses
//! by itself. This module does not write keys ([`crate::recipes`] does).

use super::token::Authed;
use super::{CtlError, EXIT_ERROR, rpc_error};
use oxcd::pb::etcdserverpb as pb;
use pb::lease_client::LeaseClient;
use std::time::Duration;
use tokio::time::Instant;

/// The TTL of a session when none is asked for (etcd's `concurrency` package's default).
pub const SESSION_TTL_DEFAULT_S: i64 = 60;
/// Between two tries to reopen a broken keep-alive stream (clientv3's pause).
const REOPEN_PAUSE: Duration = Duration::from_millis(500);

/// A lease granted for one command and renewed at a third of its TTL until the command ends.
pub struct Session {
    id: i64,
    keep_alive: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Grants a lease of `ttl_s` seconds (the default when `ttl_s` is 0 or less, as etcd's
    /// `WithTTL` has it) and starts keeping it alive. The grant has no deadline: etcdctl's
    /// waits for the cluster as long as it takes.
    pub async fn grant(ch: Authed, ttl_s: i64) -> Result<Session, CtlError> {
        let ttl = if ttl_s > 0 {
            ttl_s
        } else {
            SESSION_TTL_DEFAULT_S
        };
        let r = LeaseClient::new(ch.clone())
            .lease_grant(pb::LeaseGrantRequest { ttl, id: 0 })
            .await
            .map_err(rpc_error)?
            .into_inner();
        if !r.error.is_empty() {
            return Err(CtlError::new(EXIT_ERROR, r.error));
        }
        assert!(r.id != 0, "a granted lease has an ID");
        let keep_alive = tokio::spawn(keep_alive(ch, r.id, r.ttl.max(1)));
        Ok(Session {
            id: r.id,
            keep_alive,
        })
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// Resolves once the lease is no longer kept alive: the cluster answered that it is gone
    /// (revoked or expired), or no renewal came back within its TTL. It stays resolved.
    pub async fn done(&mut self) {
        if !self.keep_alive.is_finished() {
            let _ = (&mut self.keep_alive).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

/// Renews lease `id` until the cluster says it is gone or `ttl_s` passes without a renewal;
/// a broken stream is reopened meanwhile.
async fn keep_alive(ch: Authed, id: i64, ttl_s: i64) {
    let mut deadline = Instant::now() + Duration::from_secs(ttl_s as u64);
    loop {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        // etcd sends nothing, not even the response headers, before the first request.
        if tx.send(pb::LeaseKeepAliveRequest { id }).await.is_err() {
            return;
        }
        let mut client = LeaseClient::new(ch.clone());
        let opened = client.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx));
        if let Ok(Ok(stream)) = tokio::time::timeout_at(deadline, opened).await {
            let mut stream = stream.into_inner();
            loop {
                match tokio::time::timeout_at(deadline, stream.message()).await {
                    Err(_) => return,
                    Ok(Ok(Some(r))) if r.ttl <= 0 => return,
                    Ok(Ok(Some(r))) => {
                        deadline = Instant::now() + Duration::from_secs(r.ttl as u64);
                        tokio::time::sleep(Duration::from_secs(r.ttl as u64) / 3).await;
                        if tx.send(pb::LeaseKeepAliveRequest { id }).await.is_err() {
                            break;
                        }
                    }
                    Ok(Ok(None) | Err(_)) => break,
                }
            }
        }
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.min(Instant::now() + REOPEN_PAUSE)).await;
    }
}

/// SIGINT or SIGTERM, caught from the moment [`Interrupt::listen`] is called (before that
/// either ends the process, as it ends etcdctl before its handler is set). Once one came,
/// [`Interrupt::recv`] answers at once ever after, as a canceled context stays canceled.
pub struct Interrupt {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    fired: bool,
}

impl Interrupt {
    pub fn listen() -> Result<Interrupt, CtlError> {
        use tokio::signal::unix::{SignalKind, signal};
        let failed = |e: std::io::Error| CtlError::new(EXIT_ERROR, e.to_string());
        Ok(Interrupt {
            int: signal(SignalKind::interrupt()).map_err(failed)?,
            term: signal(SignalKind::terminate()).map_err(failed)?,
            fired: false,
        })
    }

    /// Waits for the interrupt.
    pub async fn recv(&mut self) {
        if !self.fired {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
            self.fired = true;
        }
    }
}

/// What a canceled wait fails with (Go's `context.Canceled`, as etcdctl prints it).
pub fn canceled() -> CtlError {
    CtlError::new(EXIT_ERROR, "context canceled".into())
}
