//! The proxy's Watch service, with etcd's watch coalescing: client watchers of the same key
//! or range share one watcher on the members (a *broadcast*), so ten thousand clients watching
//! a hundred keys cost the cluster about a hundred watchers, on one stream.
//!
//! Each client watcher keeps its own view of the shared events: it gets only events at or
//! after its start revision, its own filters (`NOPUT`, `NODELETE`), previous values only when
//! it asked for them (the broadcast always asks), progress notifications only when it asked,
//! and keys without the proxy's namespace. A watcher joins a broadcast that has not yet passed
//! its start revision; one that wants older events gets a broadcast of its own.
//!
//! When the stream to the members breaks (a member died, the proxy's connection moved), every
//! broadcast is created again on a new stream from the revision after the last event it
//! delivered, so clients see neither a gap nor a repeat. If that revision was compacted in
//! the meantime, its clients get the member's compaction answer and resume themselves.
//!
//! A client that does not read its stream does not hold up the others: its responses queue up
//! to [`OUTBOX_RESPONSES_MAX`], then its stream ends with `Unavailable`, and the client (as
//! etcd's clients do) watches again from the last revision it saw.
//!
//! Permissions: as etcd's proxy does, a watcher is created only after the member allows its
//! credential a serializable read of the range; the broadcasts of one credential ride a stream
//! of their own, which carries that credential.
//!
//! What it does not do: answer progress requests (etcd's proxy ignores them too), or fragment
//! large responses.

use super::namespace::Namespace;
use super::upstream::{Upstream, token_of, with_token};
use crate::mvcc;
use crate::pb::etcdserverpb::{
    self as pb, kv_client::KvClient, watch_client::WatchClient, watch_request::RequestUnion,
    watch_server::Watch,
};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::ops::DerefMut;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

/// Responses queued towards one client stream before the proxy gives up on it.
pub const OUTBOX_RESPONSES_MAX: usize = 4096;
/// The longest wait between attempts to open a stream to the members again.
const RELINK_BACKOFF_MAX: Duration = Duration::from_secs(1);
const RELINK_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// A credential, as a stream to the members carries it (`None`: no token).
type Token = Option<MetadataValue<Ascii>>;
type Outbox = mpsc::Sender<Result<pb::WatchResponse, Status>>;

/// The Watch service.
#[derive(Clone)]
pub struct WatchProxy {
    hub: Arc<Hub>,
}

/// The numbers `/metrics` shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchCounts {
    /// Client watchers.
    pub clients: usize,
    /// Watchers on the members.
    pub upstream: usize,
}

struct Hub {
    upstream: Upstream,
    namespace: Namespace,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The broadcasts of each watched range (in the members' keyspace) and credential.
    groups: HashMap<(Bytes, Bytes, Token), Vec<i64>>,
    /// By their watch id on the members.
    broadcasts: HashMap<i64, Broadcast>,
    next_broadcast: i64,
    /// The streams to the members, one per credential.
    links: HashMap<Token, Link>,
    next_link: u64,
    next_stream: u64,
    /// Client streams that fell too far behind, to be ended.
    overflowed: HashMap<u64, oneshot::Sender<()>>,
    clients: usize,
}

struct Link {
    /// Requests to the members' stream.
    tx: mpsc::UnboundedSender<pb::WatchRequest>,
    /// Its number, so a late report from a replaced stream changes nothing.
    id: u64,
    /// The broadcasts whose creates await their answers, in the order sent: the member
    /// answers creates in order, and a refusal names no watch id.
    pending: VecDeque<i64>,
    /// Dropped to close the stream once no broadcast rides it.
    _stop: oneshot::Sender<()>,
}

enum Phase {
    /// Asked of the members from `start` (0: from their next revision); `resumed` once it had
    /// been live, so its clients already had their `created`.
    Creating { start: i64, resumed: bool },
    /// Every event from `next` on is still to come.
    Live { next: i64 },
}

struct Broadcast {
    group: (Bytes, Bytes, Token),
    phase: Phase,
    receivers: Vec<Receiver>,
    /// The header of the last response from the members.
    header: pb::ResponseHeader,
}

/// One client watcher.
struct Receiver {
    stream: u64,
    watch_id: i64,
    /// Events before this revision are not its (0: not known until the broadcast is live).
    from: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress: bool,
    outbox: Outbox,
}

impl WatchProxy {
    pub fn new(upstream: Upstream, namespace: Namespace) -> WatchProxy {
        WatchProxy {
            hub: Arc::new(Hub {
                upstream,
                namespace,
                state: Mutex::new(State {
                    next_broadcast: 1,
                    ..State::default()
                }),
            }),
        }
    }

    /// Client watchers and the watchers they cost the members.
    pub fn counts(&self) -> WatchCounts {
        let s = self.hub.state.lock().expect("watch hub");
        WatchCounts {
            clients: s.clients,
            upstream: s.broadcasts.len(),
        }
    }
}

fn refused(reason: String, header: pb::ResponseHeader) -> pb::WatchResponse {
    pb::WatchResponse {
        header: Some(header),
        watch_id: mvcc::INVALID_WATCH_ID,
        created: true,
        canceled: true,
        cancel_reason: reason,
        ..Default::default()
    }
}

/// The members' cancellation `resp` of a live watcher (a compaction, say), as client watcher
/// `r` gets it.
fn canceled(
    r: &Receiver,
    resp: &pb::WatchResponse,
    header: pb::ResponseHeader,
) -> pb::WatchResponse {
    pb::WatchResponse {
        header: Some(header),
        watch_id: r.watch_id,
        canceled: true,
        compact_revision: resp.compact_revision,
        cancel_reason: resp.cancel_reason.clone(),
        ..Default::default()
    }
}

/// Why the member would refuse `c` on a stream holding `ids`, in its order.
fn refusal(c: &pb::WatchCreateRequest, ids: &HashMap<i64, Bytes>) -> Option<mvcc::Error> {
    let key: &[u8] = if c.key.is_empty() { b"\0" } else { &c.key };
    let bounded = !c.range_end.is_empty() && c.range_end.as_ref() != b"\0";
    if bounded && key >= c.range_end.as_ref() {
        Some(mvcc::Error::WatchRangeEmpty)
    } else if c.watch_id < 0 {
        Some(mvcc::Error::WatchIdNegative {
            watch_id: c.watch_id,
        })
    } else if c.start_revision < 0 {
        Some(mvcc::Error::WatchRevisionNegative {
            start_revision: c.start_revision,
        })
    } else if c.watch_id != mvcc::AUTO_WATCH_ID && ids.contains_key(&c.watch_id) {
        Some(mvcc::Error::WatchIdDuplicate {
            watch_id: c.watch_id,
        })
    } else {
        None
    }
}

impl Hub {
    /// Adds a client watcher on `range` (the members' keyspace) for `token`.
    fn join(self: &Arc<Self>, range: (Bytes, Bytes), token: Token, start: i64, mut r: Receiver) {
        let mut s = self.state.lock().expect("watch hub");
        s.clients += 1;
        let group = (range.0, range.1, token);
        // The first broadcast this watcher can share: a live one that has not passed its
        // start, or one being created from the same start.
        let shared = s.groups.get(&group).into_iter().flatten().find_map(|id| {
            match s.broadcasts[id].phase {
                Phase::Live { next } if start == 0 || start >= next => Some((*id, Some(next))),
                Phase::Creating {
                    start: at,
                    resumed: false,
                } if at == start => Some((*id, None)),
                _ => None,
            }
        });
        match shared {
            Some((id, Some(next))) => {
                r.from = if start == 0 { next } else { start };
                let header = s.broadcasts[&id].header;
                let created = pb::WatchResponse {
                    header: Some(pb::ResponseHeader {
                        revision: next - 1,
                        ..header
                    }),
                    watch_id: r.watch_id,
                    created: true,
                    ..Default::default()
                };
                if deliver(&mut s.overflowed, &r, created) {
                    let b = s.broadcasts.get_mut(&id).expect("found above");
                    b.receivers.push(r);
                } else {
                    s.clients -= 1;
                }
                return;
            }
            Some((id, None)) => {
                r.from = start;
                let b = s.broadcasts.get_mut(&id).expect("found above");
                b.receivers.push(r);
                return;
            }
            None => {}
        }
        // A broadcast of its own.
        let id = s.next_broadcast;
        s.next_broadcast += 1;
        r.from = start;
        s.broadcasts.insert(
            id,
            Broadcast {
                group: group.clone(),
                phase: Phase::Creating {
                    start,
                    resumed: false,
                },
                receivers: vec![r],
                header: pb::ResponseHeader::default(),
            },
        );
        s.groups.entry(group.clone()).or_default().push(id);
        let create = create_request(id, &group, start);
        let link = self.link(&mut s, &group.2);
        link.pending.push_back(id);
        let _ = link.tx.send(create);
    }

    /// The stream to the members for `token`, opened if there is none.
    fn link<'a>(self: &Arc<Self>, s: &'a mut State, token: &Token) -> &'a mut Link {
        if !s.links.contains_key(token) {
            let (tx, rx) = mpsc::unbounded_channel();
            let (id, stop_rx) = Self::add_link(s, token, tx, VecDeque::new());
            tokio::spawn(link_task(self.clone(), token.clone(), id, rx, stop_rx));
        }
        s.links.get_mut(token).expect("made above")
    }

    /// Records `token`'s link (replacing any): its number, and the end that stops its task
    /// when the link is dropped.
    fn add_link(
        s: &mut State,
        token: &Token,
        tx: mpsc::UnboundedSender<pb::WatchRequest>,
        pending: VecDeque<i64>,
    ) -> (u64, oneshot::Receiver<()>) {
        let (stop_tx, stop_rx) = oneshot::channel();
        s.next_link += 1;
        let id = s.next_link;
        let link = Link {
            tx,
            id,
            pending,
            _stop: stop_tx,
        };
        s.links.insert(token.clone(), link);
        (id, stop_rx)
    }

    /// Removes client `stream`'s watcher `watch_id` (all of them for `None`): a broadcast
    /// left without clients is canceled on the members.
    fn leave(&self, stream: u64, watch_id: Option<i64>) -> Option<pb::ResponseHeader> {
        let mut s = self.state.lock().expect("watch hub");
        let mut header = None;
        let mut emptied = Vec::new();
        let mut removed = 0;
        for (id, b) in s.broadcasts.iter_mut() {
            let before = b.receivers.len();
            b.receivers
                .retain(|r| !(r.stream == stream && watch_id.is_none_or(|w| w == r.watch_id)));
            if b.receivers.len() != before {
                removed += before - b.receivers.len();
                header = Some(b.header);
                if b.receivers.is_empty() {
                    emptied.push(*id);
                }
            }
        }
        s.clients -= removed;
        for id in emptied {
            let b = s.broadcasts.remove(&id).expect("just seen");
            Self::ungroup(&mut s, &b.group, id);
            if let Some(link) = s.links.get(&b.group.2) {
                let cancel = pb::WatchRequest {
                    request_union: Some(RequestUnion::CancelRequest(pb::WatchCancelRequest {
                        watch_id: id,
                    })),
                };
                let _ = link.tx.send(cancel);
            }
            if !s.broadcasts.values().any(|o| o.group.2 == b.group.2) {
                // Dropping the link stops its task and closes its stream.
                s.links.remove(&b.group.2);
            }
        }
        if watch_id.is_none() {
            s.overflowed.remove(&stream);
        }
        header
    }

    fn ungroup(s: &mut State, group: &(Bytes, Bytes, Token), id: i64) {
        if let Some(ids) = s.groups.get_mut(group) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                s.groups.remove(group);
            }
        }
    }

    /// A response from the members on link `link`.
    fn on_response(&self, token: &Token, link: u64, resp: pb::WatchResponse) {
        let mut s = self.state.lock().expect("watch hub");
        let Some(l) = s.links.get_mut(token).filter(|l| l.id == link) else {
            return;
        };
        let mut id = resp.watch_id;
        if resp.created {
            let Some(sent) = l.pending.pop_front() else {
                return;
            };
            debug_assert!(
                id == sent || id == mvcc::INVALID_WATCH_ID,
                "creates answered in order"
            );
            id = sent;
        }
        let Some(b) = s.broadcasts.get_mut(&id) else {
            return;
        };
        let header = resp.header.unwrap_or_default();
        b.header = header;
        let mut outgoing: Vec<(usize, pb::WatchResponse)> = Vec::new();
        let mut ended = false;
        if resp.created {
            let Phase::Creating { start, resumed } = b.phase else {
                return;
            };
            if resp.canceled {
                ended = true;
                for (i, r) in b.receivers.iter().enumerate() {
                    let answer = if resumed {
                        canceled(r, &resp, header)
                    } else {
                        refused(resp.cancel_reason.clone(), header)
                    };
                    outgoing.push((i, answer));
                }
            } else {
                let next = if start == 0 {
                    header.revision + 1
                } else {
                    start
                };
                b.phase = Phase::Live { next };
                for (i, r) in b.receivers.iter_mut().enumerate() {
                    if r.from == 0 {
                        r.from = next;
                    }
                    if !resumed {
                        let created = pb::WatchResponse {
                            header: Some(header),
                            watch_id: r.watch_id,
                            created: true,
                            ..Default::default()
                        };
                        outgoing.push((i, created));
                    }
                }
            }
        } else if resp.canceled || resp.compact_revision != 0 {
            ended = true;
            for (i, r) in b.receivers.iter().enumerate() {
                outgoing.push((i, canceled(r, &resp, header)));
            }
        } else {
            let Phase::Live { next } = &mut b.phase else {
                return;
            };
            if resp.events.is_empty() {
                // A progress notification: everything up to its revision was sent.
                *next = (*next).max(header.revision + 1);
                for (i, r) in b.receivers.iter().enumerate() {
                    if r.progress {
                        let note = pb::WatchResponse {
                            header: Some(header),
                            watch_id: r.watch_id,
                            ..Default::default()
                        };
                        outgoing.push((i, note));
                    }
                }
            } else {
                let last = resp
                    .events
                    .last()
                    .and_then(|e| e.kv.as_ref())
                    .map_or(0, |kv| kv.mod_revision);
                *next = (*next).max(last + 1);
                for (i, r) in b.receivers.iter().enumerate() {
                    let events: Vec<_> = resp
                        .events
                        .iter()
                        .filter(|e| {
                            let rev = e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                            let put = e.r#type == crate::pb::mvccpb::event::EventType::Put as i32;
                            rev >= r.from && if put { !r.no_put } else { !r.no_delete }
                        })
                        .map(|e| {
                            let mut e = e.clone();
                            if !r.prev_kv {
                                e.prev_kv = None;
                            }
                            self.namespace.event(&mut e);
                            e
                        })
                        .collect();
                    if !events.is_empty() {
                        let answer = pb::WatchResponse {
                            header: Some(header),
                            watch_id: r.watch_id,
                            events,
                            ..Default::default()
                        };
                        outgoing.push((i, answer));
                    }
                }
            }
        }
        let mut failed = Vec::new();
        let b = s.broadcasts.get(&id).expect("still there");
        for (i, answer) in outgoing {
            let r = &b.receivers[i];
            if !try_deliver(r, answer) {
                failed.push(r.stream);
            }
        }
        for stream in failed {
            if let Some(stop) = s.overflowed.remove(&stream) {
                let _ = stop.send(());
            }
        }
        if ended {
            let b = s.broadcasts.remove(&id).expect("still there");
            s.clients -= b.receivers.len();
            Self::ungroup(&mut s, &b.group, id);
        } else {
            Self::merge_with_twin(&mut s, id);
        }
    }

    /// Folds broadcast `id` into another of its group that has delivered exactly as far
    /// (both will deliver every event from the same revision on), and cancels it on the
    /// members: watchers that had to catch up on their own (after a restart, or from an old
    /// revision) share again once they are level.
    fn merge_with_twin(s: &mut State, id: i64) {
        let b = &s.broadcasts[&id];
        let Phase::Live { next } = b.phase else {
            return;
        };
        let twin = s.groups[&b.group].iter().copied().find(|other| {
            *other != id
                && matches!(s.broadcasts[other].phase, Phase::Live { next: n } if n == next)
        });
        let Some(twin) = twin else {
            return;
        };
        let b = s.broadcasts.remove(&id).expect("looked up above");
        Self::ungroup(s, &b.group, id);
        s.broadcasts
            .get_mut(&twin)
            .expect("found above")
            .receivers
            .extend(b.receivers);
        if let Some(link) = s.links.get(&b.group.2) {
            let cancel = pb::WatchRequest {
                request_union: Some(RequestUnion::CancelRequest(pb::WatchCancelRequest {
                    watch_id: id,
                })),
            };
            let _ = link.tx.send(cancel);
        }
    }

    /// Link `link` of `token` broke: a new one is made for the broadcasts that rode it, each
    /// to resume after the last event it delivered. Returns the new link's receiving end, or
    /// `None` when no broadcast needs one.
    fn relink(
        &self,
        token: &Token,
        link: u64,
    ) -> Option<(
        u64,
        mpsc::UnboundedReceiver<pb::WatchRequest>,
        oneshot::Receiver<()>,
    )> {
        let mut s = self.state.lock().expect("watch hub");
        if s.links.get(token).is_none_or(|l| l.id != link) {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut pending = VecDeque::new();
        let mut ids: Vec<i64> = s
            .broadcasts
            .iter()
            .filter(|(_, b)| &b.group.2 == token)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            s.links.remove(token);
            return None;
        }
        ids.sort_unstable();
        for id in ids {
            let b = s.broadcasts.get_mut(&id).expect("listed");
            b.phase = match b.phase {
                Phase::Live { next } => Phase::Creating {
                    start: next,
                    resumed: true,
                },
                Phase::Creating { start, resumed } => Phase::Creating { start, resumed },
            };
            let Phase::Creating { start, .. } = b.phase else {
                unreachable!("just set")
            };
            let _ = tx.send(create_request(id, &b.group, start));
            pending.push_back(id);
        }
        let (id, stop_rx) = Self::add_link(s.deref_mut(), token, tx, pending);
        Some((id, rx, stop_rx))
    }
}

fn create_request(id: i64, group: &(Bytes, Bytes, Token), start: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: group.0.clone(),
            range_end: group.1.clone(),
            start_revision: start,
            progress_notify: true,
            prev_kv: true,
            watch_id: id,
            ..Default::default()
        })),
    }
}

/// Queues `answer` for `r`'s client; false when its stream is full or gone.
fn try_deliver(r: &Receiver, answer: pb::WatchResponse) -> bool {
    r.outbox.try_send(Ok(answer)).is_ok()
}

/// [`try_deliver`], ending the stream at once when it cannot take the answer.
fn deliver(
    overflowed: &mut HashMap<u64, oneshot::Sender<()>>,
    r: &Receiver,
    answer: pb::WatchResponse,
) -> bool {
    if try_deliver(r, answer) {
        return true;
    }
    if let Some(stop) = overflowed.remove(&r.stream) {
        let _ = stop.send(());
    }
    false
}

/// Keeps one stream to the members for `token`'s broadcasts, making it again when it breaks.
async fn link_task(
    hub: Arc<Hub>,
    token: Token,
    mut link: u64,
    mut rx: mpsc::UnboundedReceiver<pb::WatchRequest>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = RELINK_BACKOFF_MIN;
    loop {
        let ran = tokio::select! {
            ran = run_link(&hub, &token, link, rx) => ran,
            _ = &mut stop => return,
        };
        if ran {
            backoff = RELINK_BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RELINK_BACKOFF_MAX);
        match hub.relink(&token, link) {
            Some((id, next_rx, next_stop)) => {
                tracing::info!("watch stream to the cluster made again; watches resume");
                (link, rx, stop) = (id, next_rx, next_stop);
            }
            None => return,
        }
    }
}

/// One stream to the members, until it breaks; true when it had carried a response.
async fn run_link(
    hub: &Arc<Hub>,
    token: &Token,
    link: u64,
    rx: mpsc::UnboundedReceiver<pb::WatchRequest>,
) -> bool {
    let Ok((channel, generation)) = hub.upstream.channel().await else {
        return false;
    };
    let request = with_token(token.as_ref(), UnboundedReceiverStream::new(rx));
    let mut responses = match WatchClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .watch(request)
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a watch stream to the cluster");
            hub.upstream.observe(generation, &e);
            return false;
        }
    };
    let mut carried = false;
    loop {
        match responses.message().await {
            Ok(Some(resp)) => {
                carried = true;
                hub.on_response(token, link, resp);
            }
            Ok(None) => {
                tracing::warn!("the cluster ended the watch stream");
                return carried;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the watch stream to the cluster broke");
                hub.upstream.failed(generation);
                return carried;
            }
        }
    }
}

/// Whether `token` may read `key`..`end` (the members' keyspace), as etcd's proxy checks
/// before it adds a watcher to a shared one: the member's error message when not.
async fn check_permission(
    upstream: &Upstream,
    token: &Token,
    key: &Bytes,
    end: &Bytes,
) -> Result<(), String> {
    let request = pb::RangeRequest {
        key: key.clone(),
        range_end: end.clone(),
        serializable: true,
        count_only: true,
        limit: 1,
        ..Default::default()
    };
    let (channel, generation) = upstream
        .channel()
        .await
        .map_err(|s| s.message().to_string())?;
    match KvClient::new(channel)
        .range(with_token(token.as_ref(), request))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            upstream.observe(generation, &e);
            Err(e.message().to_string())
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchProxy {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(OUTBOX_RESPONSES_MAX);
        let token = token_of(&request);
        let mut input = request.into_inner();
        let hub = self.hub.clone();
        let (overflow_tx, mut overflow) = oneshot::channel();
        let stream = {
            let mut s = hub.state.lock().expect("watch hub");
            s.next_stream += 1;
            let id = s.next_stream;
            s.overflowed.insert(id, overflow_tx);
            id
        };
        tokio::spawn(async move {
            // The stream's watchers: client watch id to its range (for the logs only).
            let mut ids: HashMap<i64, Bytes> = HashMap::new();
            let mut next_id: i64 = 0;
            loop {
                let next = tokio::select! {
                    n = input.message() => n,
                    _ = &mut overflow => {
                        let _ = tx.try_send(Err(Status::unavailable(
                            "grpc-proxy: the watch stream fell too far behind; watch again from the last revision seen",
                        )));
                        break;
                    }
                    _ = tx.closed() => break,
                };
                let union = match next {
                    Ok(Some(pb::WatchRequest {
                        request_union: Some(u),
                    })) => u,
                    Ok(Some(_)) => continue,
                    // A client that stopped sending still gets its events.
                    Ok(None) => {
                        tokio::select! {
                            _ = tx.closed() => {}
                            _ = &mut overflow => {}
                        }
                        break;
                    }
                    Err(_) => break,
                };
                match union {
                    RequestUnion::CreateRequest(c) => {
                        if let Some(e) = refusal(&c, &ids) {
                            let header = pb::ResponseHeader::default();
                            if tx.send(Ok(refused(e.to_string(), header))).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        let key = if c.key.is_empty() {
                            Bytes::from_static(b"\0")
                        } else {
                            c.key.clone()
                        };
                        let key = hub.namespace.key(&key);
                        let end = hub.namespace.range_end(&c.range_end);
                        if let Err(reason) =
                            check_permission(&hub.upstream, &token, &key, &end).await
                        {
                            let header = pb::ResponseHeader::default();
                            if tx.send(Ok(refused(reason, header))).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        let watch_id = if c.watch_id == mvcc::AUTO_WATCH_ID {
                            while ids.contains_key(&next_id) {
                                next_id += 1;
                            }
                            next_id += 1;
                            next_id - 1
                        } else {
                            c.watch_id
                        };
                        ids.insert(watch_id, key.clone());
                        let filter = |f: pb::watch_create_request::FilterType| {
                            c.filters.contains(&(f as i32))
                        };
                        let receiver = Receiver {
                            stream,
                            watch_id,
                            from: 0,
                            no_put: filter(pb::watch_create_request::FilterType::Noput),
                            no_delete: filter(pb::watch_create_request::FilterType::Nodelete),
                            prev_kv: c.prev_kv,
                            progress: c.progress_notify,
                            outbox: tx.clone(),
                        };
                        hub.join((key, end), token.clone(), c.start_revision, receiver);
                    }
                    RequestUnion::CancelRequest(c) => {
                        if ids.remove(&c.watch_id).is_none() {
                            continue;
                        }
                        let header = hub.leave(stream, Some(c.watch_id)).unwrap_or_default();
                        let canceled = pb::WatchResponse {
                            header: Some(header),
                            watch_id: c.watch_id,
                            canceled: true,
                            ..Default::default()
                        };
                        if tx.send(Ok(canceled)).await.is_err() {
                            break;
                        }
                    }
                    RequestUnion::ProgressRequest(_) => {}
                }
            }
            hub.leave(stream, None);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(key: &str, end: &str, watch_id: i64, start: i64) -> pb::WatchCreateRequest {
        pb::WatchCreateRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            range_end: Bytes::copy_from_slice(end.as_bytes()),
            watch_id,
            start_revision: start,
            ..Default::default()
        }
    }

    #[test]
    fn creates_are_refused_as_the_member_refuses_them() {
        let mut ids = HashMap::new();
        assert!(refusal(&create("a", "", 0, 0), &ids).is_none());
        assert!(refusal(&create("", "\0", 0, 0), &ids).is_none());
        assert_eq!(
            refusal(&create("b", "a", 0, 0), &ids),
            Some(mvcc::Error::WatchRangeEmpty)
        );
        assert!(matches!(
            refusal(&create("a", "", -2, 0), &ids),
            Some(mvcc::Error::WatchIdNegative { .. })
        ));
        assert!(matches!(
            refusal(&create("a", "", 0, -1), &ids),
            Some(mvcc::Error::WatchRevisionNegative { .. })
        ));
        ids.insert(7, Bytes::new());
        assert!(matches!(
            refusal(&create("a", "", 7, 0), &ids),
            Some(mvcc::Error::WatchIdDuplicate { watch_id: 7 })
        ));
    }
}
