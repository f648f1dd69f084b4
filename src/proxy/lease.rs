//! The proxy's Lease service, with keep-alive coalescing: the keep-alives of all clients ride
//! one stream to the members, and each lease is refreshed there at most once per third of its
//! TTL however many clients keep it alive, as etcd's proxy does through its client's lessor.
//!
//! A keep-alive answered without asking the members says the TTL the members gave at their
//! last refresh, less the time since the proxy sent that refresh (rounded up). The lease
//! lives at least that long: the leader refreshed it after the proxy sent, so a client never
//! believes a lease outlives the one on the members. A lease revoked through the proxy is
//! forgotten at once; one revoked straight on the members may still be answered as alive for
//! up to a third of its TTL (etcd's proxy answers from its lessor's view too).
//!
//! Grant, revoke, time-to-live and the lease list go to the members as they are; a
//! time-to-live's keys are shown within the proxy's namespace.
//!
//! What it does not do: keep a lease alive on its own once its clients stop asking.

use super::namespace::Namespace;
use super::upstream::Upstream;
use crate::pb::etcdserverpb::{self as pb, lease_client::LeaseClient, lease_server::Lease};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

/// Keep-alive answers queued towards one client stream.
const OUTBOX_RESPONSES_MAX: usize = 256;
/// Keep-alives between sweeps of leases no client asked about for a whole TTL.
const SWEEP_EVERY: u64 = 1024;
/// The wait before the stream to the members is opened again after it broke.
const RELINK_PAUSE: Duration = Duration::from_millis(100);

type Answer = Result<pb::LeaseKeepAliveResponse, Status>;

/// The Lease service.
#[derive(Clone)]
pub struct LeaseProxy {
    upstream: Upstream,
    namespace: Namespace,
    keeper: Arc<Keeper>,
}

/// The numbers `/metrics` shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeepAliveCounts {
    /// Keep-alives clients sent.
    pub clients: u64,
    /// Keep-alives the proxy sent the members.
    pub upstream: u64,
}

struct Keeper {
    upstream: Upstream,
    state: Mutex<KeeperState>,
}

#[derive(Default)]
struct KeeperState {
    leases: HashMap<i64, Kept>,
    /// The stream to the members, when one is open or being opened.
    link: Option<mpsc::UnboundedSender<pb::LeaseKeepAliveRequest>>,
    counts: KeepAliveCounts,
}

#[derive(Default)]
struct Kept {
    /// The last refresh: when the proxy sent it, the TTL and header the members answered.
    refreshed: Option<(Instant, i64, pb::ResponseHeader)>,
    /// The refresh on its way, sent at this instant.
    in_flight: Option<Instant>,
    /// Clients waiting for it, with the instant each asked.
    waiting: Vec<(Instant, oneshot::Sender<Answer>)>,
}

/// The TTL to tell a client that asked at `asked`, from a refresh sent at `sent` that
/// answered `ttl`: the seconds left of the lease at the least, rounded down.
fn remaining(ttl: i64, sent: Instant, asked: Instant) -> i64 {
    if ttl <= 0 {
        return ttl;
    }
    let elapsed = asked.saturating_duration_since(sent);
    let elapsed_s = elapsed.as_secs() as i64 + i64::from(elapsed.subsec_nanos() > 0);
    (ttl - elapsed_s).max(1)
}

/// Whether a refresh sent at `sent` answering `ttl` still answers a client asking at `now`.
fn fresh(ttl: i64, sent: Instant, now: Instant) -> bool {
    let elapsed = now.saturating_duration_since(sent);
    ttl > 0
        && elapsed * 3 < Duration::from_secs(ttl as u64)
        && elapsed < Duration::from_secs(ttl as u64 - 1)
}

impl Keeper {
    /// A keep-alive for lease `id` that a client sent: answered from the last refresh when it
    /// is fresh, else by the next refresh.
    async fn keep_alive(self: &Arc<Self>, id: i64) -> Answer {
        let now = Instant::now();
        let rx = {
            let mut s = self.state.lock().expect("lease keeper");
            s.counts.clients += 1;
            if s.counts.clients.is_multiple_of(SWEEP_EVERY) {
                s.leases.retain(|_, k| {
                    !k.waiting.is_empty()
                        || k.refreshed.as_ref().is_some_and(|(sent, ttl, _)| {
                            now.saturating_duration_since(*sent) < Duration::from_secs(*ttl as u64)
                        })
                });
            }
            let kept = s.leases.entry(id).or_default();
            if let Some((sent, ttl, header)) = kept.refreshed
                && fresh(ttl, sent, now)
            {
                return Ok(pb::LeaseKeepAliveResponse {
                    header: Some(header),
                    id,
                    ttl: remaining(ttl, sent, now),
                });
            }
            let (tx, rx) = oneshot::channel();
            kept.waiting.push((now, tx));
            if kept.in_flight.is_none() {
                kept.in_flight = Some(now);
                s.counts.upstream += 1;
                self.send(&mut s, id);
            }
            rx
        };
        rx.await
            .unwrap_or_else(|_| Err(Status::unavailable("grpc-proxy: keep-alive abandoned")))
    }

    /// Sends a refresh of `id` on the stream to the members, opening it if needed.
    fn send(self: &Arc<Self>, s: &mut KeeperState, id: i64) {
        if s.link.is_none() {
            let (tx, rx) = mpsc::unbounded_channel();
            s.link = Some(tx);
            tokio::spawn(self.clone().link_task(rx));
        }
        let link = s.link.as_ref().expect("opened above");
        let _ = link.send(pb::LeaseKeepAliveRequest { id });
    }

    /// The members' answer to a refresh.
    fn on_response(&self, resp: pb::LeaseKeepAliveResponse) {
        let mut s = self.state.lock().expect("lease keeper");
        let Some(kept) = s.leases.get_mut(&resp.id) else {
            return;
        };
        let Some(sent) = kept.in_flight.take() else {
            return;
        };
        let header = resp.header.unwrap_or_default();
        kept.refreshed = (resp.ttl > 0).then_some((sent, resp.ttl, header));
        for (asked, tx) in kept.waiting.drain(..) {
            let _ = tx.send(Ok(pb::LeaseKeepAliveResponse {
                header: Some(header),
                id: resp.id,
                ttl: remaining(resp.ttl, sent, asked),
            }));
        }
        if kept.refreshed.is_none() {
            s.leases.remove(&resp.id);
        }
    }

    /// Forgets lease `id` (revoked through the proxy).
    fn forget(&self, id: i64) {
        let mut s = self.state.lock().expect("lease keeper");
        if let Some(kept) = s.leases.get_mut(&id) {
            kept.refreshed = None;
        }
    }

    /// Carries refreshes to the members until the stream breaks, then sends the ones still
    /// unanswered again on a new stream.
    async fn link_task(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<pb::LeaseKeepAliveRequest>,
    ) {
        loop {
            self.run_link(rx).await;
            tokio::time::sleep(RELINK_PAUSE).await;
            let mut s = self.state.lock().expect("lease keeper");
            let (tx, next_rx) = mpsc::unbounded_channel();
            let now = Instant::now();
            let mut unanswered: Vec<i64> = s
                .leases
                .iter()
                .filter(|(_, k)| !k.waiting.is_empty())
                .map(|(id, _)| *id)
                .collect();
            if unanswered.is_empty() {
                s.link = None;
                return;
            }
            unanswered.sort_unstable();
            for id in unanswered {
                let kept = s.leases.get_mut(&id).expect("listed");
                kept.in_flight = Some(now);
                let _ = tx.send(pb::LeaseKeepAliveRequest { id });
            }
            s.link = Some(tx);
            rx = next_rx;
        }
    }

    async fn run_link(&self, rx: mpsc::UnboundedReceiver<pb::LeaseKeepAliveRequest>) {
        let Ok((channel, generation)) = self.upstream.channel().await else {
            return;
        };
        let mut responses = match LeaseClient::new(channel)
            .lease_keep_alive(UnboundedReceiverStream::new(rx))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(e) => {
                self.upstream.observe(generation, &e);
                return;
            }
        };
        loop {
            match responses.message().await {
                Ok(Some(resp)) => self.on_response(resp),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the keep-alive stream to the cluster broke");
                    self.upstream.observe(generation, &e);
                    return;
                }
            }
        }
    }
}

impl LeaseProxy {
    pub fn new(upstream: Upstream, namespace: Namespace) -> LeaseProxy {
        LeaseProxy {
            keeper: Arc::new(Keeper {
                upstream: upstream.clone(),
                state: Mutex::new(KeeperState::default()),
            }),
            upstream,
            namespace,
        }
    }

    /// Keep-alives from clients and those sent to the members.
    pub fn counts(&self) -> KeepAliveCounts {
        self.keeper.state.lock().expect("lease keeper").counts
    }
}

#[tonic::async_trait]
impl Lease for LeaseProxy {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        {
            let (md, _, message) = request.into_parts();
            forward_call!(self.upstream, LeaseClient, &md, lease_grant, message)
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = request.get_ref().id;
        let r = {
            let (md, _, message) = request.into_parts();
            forward_call!(self.upstream, LeaseClient, &md, lease_revoke, message)
        };
        // Forgotten whatever the answer: a revoke that timed out may still have happened.
        self.keeper.forget(id);
        r
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let mut r = {
            let (md, _, message) = request.into_parts();
            forward_call!(self.upstream, LeaseClient, &md, lease_time_to_live, message)
        }?;
        self.namespace.lease_keys(&mut r.get_mut().keys);
        Ok(r)
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        {
            let (md, _, message) = request.into_parts();
            forward_call!(self.upstream, LeaseClient, &md, lease_leases, message)
        }
    }

    type LeaseKeepAliveStream = ReceiverStream<Answer>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let (tx, rx) = mpsc::channel(OUTBOX_RESPONSES_MAX);
        let mut input = request.into_inner();
        let keeper = self.keeper.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    n = input.message() => n,
                    _ = tx.closed() => return,
                };
                let Ok(Some(req)) = next else {
                    return;
                };
                // Each keep-alive on its own, so a slow one holds up no other lease.
                let (keeper, tx) = (keeper.clone(), tx.clone());
                tokio::spawn(async move {
                    let answer = keeper.keep_alive(req.id).await;
                    let _ = tx.send(answer).await;
                });
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_from_an_earlier_refresh_never_outlives_it() {
        let sent = Instant::now();
        assert_eq!(remaining(30, sent, sent), 30);
        assert_eq!(remaining(30, sent, sent + Duration::from_millis(1)), 29);
        assert_eq!(remaining(30, sent, sent + Duration::from_secs(9)), 21);
        assert_eq!(
            remaining(0, sent, sent),
            0,
            "a lease not found stays not found"
        );
        assert_eq!(remaining(-1, sent, sent), -1);
        // A refresh answers for a third of its TTL.
        assert!(fresh(30, sent, sent + Duration::from_millis(9_999)));
        assert!(!fresh(30, sent, sent + Duration::from_secs(10)));
        assert!(!fresh(0, sent, sent));
    }
}
