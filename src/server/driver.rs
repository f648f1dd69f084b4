//! The driver: one task that owns a [`MemberServer`] (the member and its policy, sans-IO, in
//! the core) and does its IO: the inbox, the heartbeat timer, the fsyncing storage, the
//! transport, the reply channels and the watch streams' outboxes.
//!
//! Everything goes through the driver's inbox ([`Input`]), so the core stays single-threaded
//! and deterministic, with two exceptions that take the driver's lock between turns (never
//! waiting for it) and run on the caller's thread what a job at the start of the next turn
//! would: a read of one key, serializable or needing no ReadIndex round
//! ([`NodeHandle::range`]), and a keep-alive the member answers at once
//! ([`NodeHandle::keep_alive`]). One turn of the loop follows the member
//! server's call order: take every input that is waiting (up to a bound: that is the group
//! commit, many proposals share one Ready and one fsync), start the turn, handle the Ready
//! (on the driver's own thread: see [`Driver::start`]) and send its messages, finish the
//! turn, and after each step hand every response the member gave back to its client.
//!
//! What it does not do: it decides nothing of etcd's (which request an entry answers, when
//! a read or a keep-alive may be answered, lessor promotion, quota: the member server's),
//! it decodes no client request (the services in [`crate::api`] do), and it owns no socket
//! (the [`crate::peer::transport`] sends, the peer service receives).

use super::cluster::MemberInfo;
use super::config::ServerConfig;
use super::error::{Error, ServerError};
use crate::lease::{IdGen, LeaseId};
use crate::mvcc::{self, RangeRequest, RangeResponse, StreamId};
use crate::node::{
    Applied, ApplyError, Command, Credential, Member, MemberServer, PolicyConfig, Response, Space,
    WatchRequest, WatchTaken,
};
pub use crate::node::{Header, REMOVED_MESSAGE};
use crate::peer::transport::Transport;
use crate::raft::{self, ConfChange, ConfState, Message, NodeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// The storage engine the server runs on: fjall in production, the simulated disk under
/// madsim (fjall starts threads, which madsim forbids).
#[cfg(not(madsim))]
pub type ServerEngine = crate::storage::FjallEngine;
#[cfg(madsim)]
pub type ServerEngine = crate::storage::SimDisk;

/// Inputs taken per turn before the Ready is handled: bounds the latency one turn adds.
const INPUTS_PER_TURN_MAX: usize = 4096;
/// The inbox's capacity; senders wait when it is full (back-pressure on clients).
pub const INBOX_CAPACITY: usize = 16 * 1024;

/// Work run inside the driver with the member at hand.
pub type Job = Box<dyn FnOnce(&mut Driver, Result<(), Error>) + Send>;

pub type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What the driver is asked to do.
pub enum Input {
    /// Propose a command; answered once it applied.
    Propose {
        cmd: Command,
        /// A client's credentials: the command is checked and wrapped for the check at
        /// apply. `None`: the server's own command, proposed as it is.
        who: Option<Credential>,
        reply: Reply<(Applied, Header)>,
    },
    /// Propose a membership change; answered with the membership once it applied.
    ConfChange {
        cc: ConfChange,
        reply: Reply<ConfState>,
    },
    /// Run `job` now, or (`linearizable`) once a ReadIndex round confirmed this member's view
    /// is current.
    Run { linearizable: bool, job: Job },
    /// Renew a lease (leader only); answered with its TTL once the renew is replicated.
    KeepAlive {
        id: LeaseId,
        reply: Reply<(i64, Header)>,
    },
    /// A message from a peer.
    Step(Message),
    /// The transport could not reach a peer.
    Unreachable(NodeId),
    /// How sending a snapshot to a peer went.
    SnapshotReport(NodeId, bool),
    /// A peer refused this member's messages: it was removed from the cluster.
    RemovedByPeer,
}

impl From<crate::peer::transport::Report> for Input {
    fn from(r: crate::peer::transport::Report) -> Input {
        use crate::peer::transport::Report;
        match r {
            Report::Unreachable(id) => Input::Unreachable(id),
            Report::Snapshot(id, ok) => Input::SnapshotReport(id, ok),
            Report::RemovedByPeer => Input::RemovedByPeer,
        }
    }
}

/// Members removed from the cluster while this process ran, shared by the driver (which
/// learns of removals as it applies them) and the peer service (which refuses their messages).
pub type RemovedPeers = Arc<std::sync::Mutex<std::collections::BTreeSet<NodeId>>>;

/// The driver, shared between its own loop (which holds it for each whole turn) and the
/// services, which may take it between turns for a one-key serializable read (see
/// [`NodeHandle::range`]). `None` once the loop ended: the driver is dropped then, as it was
/// when it was the loop's alone, so every request still waiting for it gets "server
/// stopped" at once.
pub type SharedDriver = Arc<std::sync::Mutex<Option<Driver>>>;

/// What the rest of the server holds to talk to the driver.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Input>,
    driver: SharedDriver,
    pub member_id: u64,
    pub cluster_id: u64,
    pub config: Arc<ServerConfig>,
    pub removed: RemovedPeers,
    /// Turns true when the server begins to shut down.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl NodeHandle {
    pub fn new(
        tx: mpsc::Sender<Input>,
        driver: SharedDriver,
        member_id: u64,
        cluster_id: u64,
        config: Arc<ServerConfig>,
        removed: RemovedPeers,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> NodeHandle {
        NodeHandle {
            tx,
            driver,
            member_id,
            cluster_id,
            config,
            removed,
            shutdown,
        }
    }

    /// `next`'s output, or "server stopped" once the server begins to shut down (or is
    /// gone) first. A long-lived stream waits for its client's next message through this and
    /// ends with that error (Unavailable, which etcd's clients take as a cue to retry
    /// elsewhere), so the listener's graceful stop is not held up by it, as etcd's is not.
    pub async fn unless_stopping<T>(
        &self,
        next: impl std::future::Future<Output = T>,
    ) -> Result<T, Error> {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            r = next => Ok(r),
            _ = shutdown.wait_for(|s| *s) => Err(ServerError::Stopped.into()),
        }
    }

    /// How long a request waits for its answer before it fails with "request timed out".
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.request_timeout_ms())
    }

    async fn send_and_wait<T>(
        &self,
        input: Input,
        rx: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, Error> {
        self.tx
            .send(input)
            .await
            .map_err(|_| Error::from(ServerError::Stopped))?;
        // The member answers every request it took, in time (a timeout is its answer too);
        // a dropped reply means it stopped.
        rx.await
            .unwrap_or_else(|_| Err(ServerError::Stopped.into()))
    }

    /// Proposes `cmd` and waits for its outcome.
    pub async fn propose(&self, cmd: Command) -> Result<(Applied, Header), Error> {
        let (reply, rx) = oneshot::channel();
        self.send_and_wait(
            Input::Propose {
                cmd,
                who: None,
                reply,
            },
            rx,
        )
        .await
    }

    /// Proposes a client's command, sent with credentials `who`, and waits for its outcome.
    pub async fn propose_as(
        &self,
        who: Credential,
        cmd: Command,
    ) -> Result<(Applied, Header), Error> {
        let (reply, rx) = oneshot::channel();
        let who = Some(who);
        self.send_and_wait(Input::Propose { cmd, who, reply }, rx)
            .await
    }

    /// Whether `who` may do what only the root role may (membership changes, defragment,
    /// snapshots, hashes).
    pub async fn check_admin(&self, who: Credential) -> Result<(), Error> {
        self.run_as_admin(who, |_| Ok(())).await
    }

    /// Runs `f` in the driver once `who` is known to be allowed what only root may do.
    pub async fn run_as_admin<T: Send + 'static>(
        &self,
        who: Credential,
        f: impl FnOnce(&mut Driver) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.run(false, move |d| {
            let now = d.now_ms();
            d.server
                .authorize_admin(&who, now)
                .map_err(ApplyError::Auth)?;
            f(d)
        })
        .await
    }

    pub async fn conf_change(&self, cc: ConfChange) -> Result<ConfState, Error> {
        let (reply, rx) = oneshot::channel();
        self.send_and_wait(Input::ConfChange { cc, reply }, rx)
            .await
    }

    /// A keep-alive. Answered on the caller's thread when the driver is between turns and
    /// the member can answer it without waiting ([`MemberServer::keep_alive_at_once`]: it
    /// leads alone and a committed checkpoint covers the renew, or it does not lead and
    /// refuses it, for the front end to forward); through the inbox otherwise.
    /// The renew may bring the lessor's next checkpoint forward of the deadline the loop is
    /// sleeping to; the loop sees it at its next wake, a heartbeat tick at the latest, and a
    /// late checkpoint only sends later renews the slow way (the cover does not rest on it).
    pub async fn keep_alive(&self, id: LeaseId) -> Result<(i64, Header), Error> {
        let at_once = self.between_turns(|d| {
            let now = d.now_ms();
            d.server.keep_alive_at_once(id, now)
        });
        if let Some(r) = at_once {
            return r.map_err(Error::from);
        }
        let (reply, rx) = oneshot::channel();
        self.send_and_wait(Input::KeepAlive { id, reply }, rx).await
    }

    /// Runs `f` in the driver (after a ReadIndex round when `linearizable`) and returns what
    /// it returns.
    pub async fn run<T: Send + 'static>(
        &self,
        linearizable: bool,
        f: impl FnOnce(&mut Driver) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |d: &mut Driver, may: Result<(), Error>| {
            let _ = reply.send(may.and_then(|()| f(d)));
        });
        self.send_and_wait(Input::Run { linearizable, job }, rx)
            .await
    }

    /// Opens a watch stream whose responses go to `sink`.
    pub async fn open_watch(&self, sink: Box<dyn WatchSink>) -> Result<StreamId, Error> {
        self.run(false, move |d| {
            let id = d.server.open_watch_stream();
            d.watch_outs.insert(id, sink);
            Ok(id)
        })
        .await
    }

    /// A watch stream client's request; its answer comes on the stream's sink.
    pub async fn watch_request(
        &self,
        stream: StreamId,
        request: WatchRequest,
        who: Credential,
    ) -> Result<WatchTaken, Error> {
        self.run(false, move |d| {
            let now = d.now_ms();
            Ok(d.server.handle_watch_request(stream, request, &who, now))
        })
        .await
    }

    /// Closes a watch stream (its client went away).
    pub async fn close_watch(&self, stream: StreamId) -> Result<(), Error> {
        self.run(false, move |d| {
            d.server.close_watch_stream(stream);
            d.watch_outs.remove(&stream);
            Ok(())
        })
        .await
    }

    /// A range read: serializable ones from this member's applied state, others after a
    /// ReadIndex round.
    ///
    /// A serializable read of one key is served on the caller's thread when the driver is
    /// between turns (its lock is free): it sees what a job run by the driver would see at
    /// the start of its next turn, and it costs no trip to the driver's thread and back,
    /// which is most of such a read's cost (measured: a third of the member's CPU per read).
    /// So is a linearizable one when the member needs no round for it
    /// ([`MemberServer::reads_at_once`]: it leads alone and has applied all that is
    /// committed). Reads of a range of keys, which may take long and would hold up the
    /// driver's next turn (heartbeats among it), and any read while a turn runs, go through
    /// the inbox.
    pub async fn range(
        &self,
        who: Credential,
        req: RangeRequest,
    ) -> Result<(RangeResponse, Header), Error> {
        let linearizable = !req.serializable
            && !self
                .config
                .has_bug(super::config::ServerBug::LocalLinearizableReads);
        if req.range_end.is_empty()
            && let Some(r) = self.between_turns(|d| {
                (!linearizable || d.server.reads_at_once()).then(|| d.range_as(&who, &req))
            })
        {
            return r;
        }
        self.run(linearizable, move |d| d.range_as(&who, &req))
            .await
    }

    /// `f` on the caller's thread with the driver, when the driver is between turns (its
    /// lock is free: never waits for it) and still running; `None` otherwise, or when `f`
    /// says the request must go through the inbox after all.
    fn between_turns<T>(&self, f: impl FnOnce(&mut Driver) -> Option<T>) -> Option<T> {
        let mut g = self.driver.try_lock().ok()?;
        f(g.as_mut()?)
    }

    /// Hands a peer's message to the driver; dropped when the inbox is full (Raft resends).
    pub fn step(&self, m: Message) {
        let _ = self.tx.try_send(Input::Step(m));
    }

    /// Hands a peer's message to the driver, waiting for room in the inbox.
    pub async fn step_wait(&self, m: Message) -> Result<(), Error> {
        self.tx
            .send(Input::Step(m))
            .await
            .map_err(|_| Error::from(ServerError::Stopped))
    }

    pub fn report(&self, input: Input) {
        let _ = self.tx.try_send(input);
    }
}

/// A client waiting for the member: the reply channel of its request, or a linearizable
/// read's job, run once the member says the read may be served.
pub enum Waiting {
    Command(Reply<(Applied, Header)>),
    ConfChange(Reply<ConfState>),
    KeepAlive(Reply<(i64, Header)>),
    Read(Job),
}

impl crate::node::Waiter for Waiting {
    fn abandoned(&self) -> bool {
        match self {
            Waiting::Command(r) => r.is_closed(),
            Waiting::ConfChange(r) => r.is_closed(),
            Waiting::KeepAlive(r) => r.is_closed(),
            Waiting::Read(_) => false,
        }
    }
}

/// Whether a watch stream's outbox can take a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    Free,
    Full,
    Closed,
}

/// A watch stream's outbox towards its client, as the API edge builds it (it owns the wire
/// form of a response). The driver is its only sender: `Room::Free` stays true until the
/// next `deliver`.
pub trait WatchSink: Send {
    fn room(&self) -> Room;
    /// Hands `response` to the stream, with the Raft term for its header.
    fn deliver(&mut self, response: mvcc::WatchResponse, raft_term: u64);
}

/// The driver's state. Services reach it through [`NodeHandle::run`].
pub struct Driver {
    server: MemberServer<ServerEngine, Waiting>,
    pub config: Arc<ServerConfig>,
    pub member_id: u64,
    pub cluster_id: u64,
    start: Instant,
    transport: Transport,
    pub watch_outs: HashMap<StreamId, Box<dyn WatchSink>>,
    /// Where each v2 watcher's events go (the HTTP answer waiting for them).
    pub v2_watchers: BTreeMap<crate::v2::WatcherId, mpsc::Sender<crate::v2::Event>>,
    /// Leader changes seen, for metrics.
    pub leader_changes: u64,
    pub last_leader: NodeId,
    /// Durations of the Ready handling that synced, in microseconds, for metrics.
    pub sync_durations_us: Vec<u64>,
    /// The membership the transport was last set for.
    conf_state: ConfState,
    /// Members removed while this process ran.
    pub removed: RemovedPeers,
}

impl Driver {
    pub fn new(
        member: Member<ServerEngine>,
        config: Arc<ServerConfig>,
        cluster_id: u64,
        transport: Transport,
    ) -> Driver {
        let member_id = member.id();
        let start = Instant::now();
        let wall_ms = crate::clock::wall_ms();
        let policy = PolicyConfig {
            request_timeout_ms: config.request_timeout_ms(),
            election_ms: config.election_ms,
            snapshot_count: config.snapshot_count,
            snapshot_catchup_entries: config.snapshot_catchup_entries,
            quota_backend_bytes: config.quota_backend_bytes,
            auto_compaction: config.auto_compaction,
            #[cfg(feature = "planted-bugs")]
            planted_bug: config.planted_bug.and_then(|b| match b {
                super::config::ServerBug::ExpiredLeasesKept => {
                    Some(crate::node::PolicyBug::ExpiredLeasesKept)
                }
                super::config::ServerBug::AuthCheckedOnEntryOnly => {
                    Some(crate::node::PolicyBug::AuthCheckedOnEntryOnly)
                }
                super::config::ServerBug::LocalLinearizableReads
                | super::config::ServerBug::CampaignWithoutWaiting
                | super::config::ServerBug::ObserveSkipsLeaders => None,
            }),
        };
        // Sequence numbers and lease IDs start from the wall clock, so a restarted member
        // reuses neither the numbers of proposals still in the log nor granted IDs.
        let mut server = MemberServer::new(
            member,
            policy,
            wall_ms << 20,
            IdGen::new(member_id, wall_ms),
        );
        server
            .member_mut()
            .applier_mut()
            .set_token_ttl_ms(config.auth_token_ttl_ms);
        Driver {
            server,
            config,
            member_id,
            cluster_id,
            start,
            transport,
            watch_outs: HashMap::new(),
            v2_watchers: BTreeMap::new(),
            leader_changes: 0,
            last_leader: raft::NONE,
            sync_durations_us: Vec::new(),
            conf_state: ConfState::default(),
            removed: RemovedPeers::default(),
        }
    }

    /// Milliseconds since the driver started, on the member's clock (leases expire by it).
    pub fn now_ms(&self) -> u64 {
        self.config.clock.since_ms(self.start)
    }

    pub fn member(&self) -> &Member<ServerEngine> {
        self.server.member()
    }

    pub fn member_mut(&mut self) -> &mut Member<ServerEngine> {
        self.server.member_mut()
    }

    /// Why the member stopped, once it has: every request is refused from then on.
    pub fn stopped(&self) -> Option<&str> {
        self.server.stopped()
    }

    /// The database's size as `Status` and `/metrics` report it (etcd's layout of the data,
    /// not the engine's files: see [`Space`]).
    pub fn space(&mut self) -> Space {
        self.server.space()
    }

    /// Gives the engine's dead space back (fjall's major compaction of the state
    /// machine's keyspaces, blocking this member as etcd's defragment blocks its backend)
    /// and the database's size with it.
    pub fn defragment(&mut self) -> Result<Space, Error> {
        use crate::storage::Engine;
        let before = self.server.space();
        self.member()
            .raw()
            .storage()
            .engine()
            .defragment()
            .map_err(|e| Error::Internal(format!("etcdserver: defragment: {e}")))?;
        let after = self
            .server
            .defragmented()
            .map_err(|e| Error::Internal(format!("etcdserver: defragment: {e}")))?;
        tracing::info!(
            before = before.size_bytes,
            after = after.size_bytes,
            in_use = after.in_use_bytes,
            "defragmented"
        );
        Ok(after)
    }

    pub fn header(&self) -> Header {
        self.server.header()
    }

    pub fn is_leader(&self) -> bool {
        self.server.is_leader()
    }

    pub fn leader(&self) -> NodeId {
        self.member().raw().leader()
    }

    /// The cluster's members as applied, with whether each is a learner.
    pub fn members(&self) -> Vec<(MemberInfo, bool)> {
        self.server.members()
    }

    /// The cluster's version: the lowest its members speak, this member's own included
    /// (etcd's cluster version; see [`crate::node::version`]).
    pub fn cluster_version(&self) -> String {
        let members = self.members();
        let published = members.iter().map(|(m, _)| m.version.as_str());
        crate::node::version::cluster_version(published.chain([crate::server::ETCD_VERSION]))
            .expect("this member's own version parses")
    }

    /// The member server, for the membership checks made before a change is proposed.
    pub fn server(&self) -> &MemberServer<ServerEngine, Waiting> {
        &self.server
    }

    pub fn range(&mut self, req: &RangeRequest) -> Result<(RangeResponse, Header), Error> {
        let r = self.member_mut().range(req)?;
        Ok((r, self.header()))
    }

    /// [`Driver::range`] for a client, once `who` is known to be allowed to read the range.
    fn range_as(
        &mut self,
        who: &Credential,
        req: &RangeRequest,
    ) -> Result<(RangeResponse, Header), Error> {
        let now = self.now_ms();
        self.server
            .authorize_read(who, &req.key, &req.range_end, now)
            .map_err(ApplyError::Auth)?;
        self.range(req)
    }

    fn handle_input(&mut self, input: Input) {
        match input {
            Input::Propose { cmd, who, reply } => {
                let now = self.now_ms();
                let waiter = Waiting::Command(reply);
                match who {
                    None => self.server.handle_propose(cmd, waiter, now),
                    Some(who) => self.server.handle_propose_as(&who, cmd, waiter, now),
                }
            }
            Input::ConfChange { cc, reply } => {
                let now = self.now_ms();
                self.server
                    .handle_conf_change(cc, Waiting::ConfChange(reply), now);
            }
            Input::Run { linearizable, job } => {
                if linearizable {
                    let now = self.now_ms();
                    self.server.handle_read(Waiting::Read(job), now);
                } else {
                    job(self, Ok(()));
                }
            }
            Input::KeepAlive { id, reply } => {
                let now = self.now_ms();
                self.server
                    .handle_keep_alive(id, Waiting::KeepAlive(reply), now);
            }
            Input::Step(m) => {
                tracing::trace!(
                    kind = ?m.kind,
                    from = format!("{:x}", m.from),
                    term = m.term,
                    index = m.index,
                    entries = m.entries.len(),
                    reject = m.reject,
                    "peer message"
                );
                if let Err(e) = self.server.step(m) {
                    tracing::debug!(error = %e, "refused a peer message");
                }
            }
            Input::Unreachable(id) => self.server.handle_unreachable(id),
            Input::RemovedByPeer => self.server.handle_removed_by_peer(),
            Input::SnapshotReport(id, ok) => self.server.handle_snapshot_report(id, ok),
        }
        self.deliver();
    }

    /// Hands every response the member gave back to its client (a read's job runs now), and
    /// points the transport at a changed membership.
    fn deliver(&mut self) {
        while let Some((waiting, response)) = self.server.poll_response() {
            match (waiting, response) {
                (Waiting::Command(reply), Response::Command(r)) => {
                    let _ = reply.send(r.map_err(Error::from));
                }
                (Waiting::ConfChange(reply), Response::ConfChange(r)) => {
                    let _ = reply.send(r.map_err(Error::from));
                }
                (Waiting::KeepAlive(reply), Response::KeepAlive(r)) => {
                    let _ = reply.send(r.map_err(Error::from));
                }
                (Waiting::Read(job), Response::Read(may)) => job(self, may.map_err(Error::from)),
                (_, response) => {
                    debug_assert!(false, "a response of another kind: {response:?}");
                }
            }
        }
        if let Some(cs) = self.server.poll_membership() {
            self.on_membership(&cs);
        }
    }

    fn on_soft_state(&mut self, ss: raft::SoftState) {
        if ss.leader_id != self.last_leader {
            if ss.leader_id != raft::NONE {
                self.leader_changes += 1;
                tracing::info!(
                    member = format!("{:x}", self.member_id),
                    leader = format!("{:x}", ss.leader_id),
                    term = self.member().raw().raft.term,
                    "raft leader elected"
                );
            } else {
                tracing::info!("raft leader lost");
            }
            self.last_leader = ss.leader_id;
        }
    }

    /// Connects the transport to the members the store knows, or (a member joining with
    /// no membership yet) to `joining_peers`, until the leader's snapshot brings it.
    pub fn connect_peers(&mut self, joining_peers: Vec<(NodeId, Vec<String>)>) {
        let cs = self.server.membership_now();
        if cs == ConfState::default() {
            self.transport.set_peers(joining_peers);
            self.conf_state = cs;
        } else {
            self.server.on_membership(&cs);
            self.deliver();
        }
    }

    /// Keeps the transport's peers in line with the membership `cs` (just applied), and
    /// notes the members it removed for the peer service.
    fn on_membership(&mut self, cs: &ConfState) {
        let was = std::mem::replace(&mut self.conf_state, cs.clone());
        let gone: Vec<NodeId> = [&was.voters, &was.learners]
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| !cs.contains(*id))
            .collect();
        self.removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(gone);
        let members = self.members();
        let peers: Vec<(NodeId, Vec<String>)> = members
            .into_iter()
            .filter(|(m, _)| m.id != self.member_id && cs.contains(m.id))
            .map(|(m, _)| (m.id, m.peer_urls))
            .collect();
        self.transport.set_peers(peers);
        if self.server.stopped() == Some(REMOVED_MESSAGE) {
            tracing::warn!("{REMOVED_MESSAGE}; stopping");
        }
    }

    /// Watch catch-up and delivery.
    fn watch_work(&mut self) {
        let now = self.now_ms();
        if let Err(e) = self.server.watch_work(now) {
            tracing::error!(error = %e, "watch catch-up failed");
        }
        let ready = self.server.watch_ready_streams();
        let term = self.server.member().raw().raft.term;
        let mut closed = Vec::new();
        for stream in ready {
            let Some(out) = self.watch_outs.get_mut(&stream) else {
                closed.push(stream);
                continue;
            };
            loop {
                match out.room() {
                    Room::Free => {}
                    Room::Full => break,
                    Room::Closed => {
                        closed.push(stream);
                        break;
                    }
                }
                let Some(r) = self.server.poll_watch_response(stream) else {
                    break;
                };
                out.deliver(r, term);
            }
        }
        for stream in closed {
            self.server.close_watch_stream(stream);
            self.watch_outs.remove(&stream);
        }
        self.v2_watch_work();
    }

    /// Hands the v2 watchers their events; a watcher whose client left, or fell
    /// the v2 API's buffer (`WATCH_EVENTS_BUFFERED_MAX`) behind, is cancelled.
    fn v2_watch_work(&mut self) {
        let hub = self.server.member_mut().applier_mut().v2_hub_mut().0;
        while let Some((id, event)) = hub.poll_event() {
            let Some(tx) = self.v2_watchers.get(&id) else {
                continue;
            };
            // A watcher that missed an event gets no later one: its answer ends there.
            if tx.try_send(event).is_err() {
                hub.cancel(id);
                self.v2_watchers.remove(&id);
                continue;
            }
            if !hub.is_watching(id) {
                self.v2_watchers.remove(&id);
            }
        }
    }

    /// Forgets the v2 watchers whose clients left without an event, and ends the answers of
    /// those the hub cancelled (a snapshot replaced the tree).
    fn v2_watch_sweep(&mut self) {
        // Events already queued go out first: their watchers have left the hub.
        self.v2_watch_work();
        let hub = self.server.member_mut().applier_mut().v2_hub_mut().0;
        let gone: Vec<_> = self
            .v2_watchers
            .iter()
            .filter(|(id, tx)| tx.is_closed() || !hub.is_watching(**id))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            hub.cancel(id);
            self.v2_watchers.remove(&id);
        }
    }

    fn tick(&mut self) {
        let now = self.now_ms();
        self.server.tick(now);
        // TTLs expire whether this member serves v2 or not: it may lead a member that does.
        self.server.v2_expiry_work(crate::clock::wall_ms(), now);
        self.v2_watch_sweep();
        if let Some(revision) = self.server.auto_compact(now) {
            let retention = format!("{:?}", self.config.auto_compaction);
            tracing::info!(revision, retention, "starting auto compaction");
        }
        self.deliver();
    }

    /// Handles the pending Ready right here, fsync included; false when the member stopped.
    /// This blocks the thread, which is the driver's own ([`Driver::start`]).
    fn ready(&mut self) -> bool {
        if !self.server.has_ready() {
            return true;
        }
        // A leader's appends go out before its own write and fsync, which then overlap the
        // followers' (measured on 3 members, 1 client: put p50 1.07 ms sending after, 0.88 ms
        // sending before).
        let early = self.server.early_messages();
        self.transport.send_all(early);
        let now = self.now_ms();
        let started = Instant::now();
        let result = self.server.handle_ready(now);
        self.sync_durations_us
            .push(started.elapsed().as_micros() as u64);
        if self.sync_durations_us.len() > 4096 {
            self.sync_durations_us.drain(..2048);
        }
        match result {
            Ok(handled) => {
                self.transport.send_all(handled.messages);
                if let Some(ss) = handled.soft_state {
                    self.on_soft_state(ss);
                }
                self.server.after_ready(now);
                self.deliver();
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "storage failed; the member stops serving");
                self.deliver();
                false
            }
        }
    }

    /// Runs the driver until its loop (`run`) returns or `stop` fires (or is dropped), and
    /// returns it shared (for [`NodeHandle::new`]) with the task that ends with it.
    ///
    /// In production it gets a thread of its own with a single-threaded runtime: handling a
    /// Ready (writes, fsync, apply) blocks that thread and nothing else, and no work or
    /// runtime worker is handed to another thread on the write path. Measured on one member
    /// against `block_in_place` on the shared runtime: 23,000 → 26,500 puts/s at 100
    /// clients, a lone client's latency unchanged. Under madsim, which has no threads, it is
    /// a task.
    pub fn start(
        self,
        rx: mpsc::Receiver<Input>,
        stop: oneshot::Receiver<()>,
    ) -> (SharedDriver, tokio::task::JoinHandle<Result<(), String>>) {
        let shared: SharedDriver = Arc::new(std::sync::Mutex::new(Some(self)));
        let looping = shared.clone();
        let until_stopped = async move {
            // Drops the driver when the loop ends, or when this future is dropped (a task
            // aborted, a simulated crash).
            let _ends = DropsDriver(looping.clone());
            tokio::select! {
                biased;
                _ = stop => Ok(()),
                r = Driver::run(&looping, rx) => r,
            }
        };
        #[cfg(madsim)]
        return (shared, tokio::spawn(until_stopped));
        #[cfg(not(madsim))]
        {
            let (done, finished) = oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name("oxcd-driver".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    let result = match runtime {
                        Ok(runtime) => runtime.block_on(until_stopped),
                        Err(e) => Err(format!("the driver's runtime: {e}")),
                    };
                    let _ = done.send(result);
                });
            let task = tokio::spawn(async move {
                if let Err(e) = spawned {
                    return Err(format!("the driver's thread: {e}"));
                }
                finished
                    .await
                    .unwrap_or_else(|_| Err("the driver's thread panicked".into()))
            });
            (shared, task)
        }
    }

    /// The loop; returns when every handle is gone, or with the error that stopped the member.
    /// It holds the driver for each whole turn and lets go of it while it waits.
    async fn run(shared: &SharedDriver, mut rx: mpsc::Receiver<Input>) -> Result<(), String> {
        let period = {
            let mut g = lock(shared);
            let d = running(&mut g);
            d.config.clock.real_duration(d.config.heartbeat_ms)
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = running(&mut lock(shared)).next_due();
            let deadline = async move {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let woke = tokio::select! {
                _ = tick.tick() => Woke::Tick,
                _ = deadline => Woke::Deadline,
                input = rx.recv() => Woke::Input(input),
            };
            let mut g = lock(shared);
            let d = running(&mut g);
            match woke {
                Woke::Tick => d.tick(),
                Woke::Deadline => {}
                Woke::Input(None) => return Ok(()),
                Woke::Input(Some(input)) => {
                    d.handle_input(input);
                    for _ in 1..INPUTS_PER_TURN_MAX {
                        match rx.try_recv() {
                            Ok(input) => d.handle_input(input),
                            Err(_) => break,
                        }
                    }
                }
            }
            d.turn()?;
        }
    }

    /// When the loop must wake for the member's own deadlines (a lease to expire, a progress
    /// notification) if no input or heartbeat tick comes first; at once when the last turn
    /// left work for Raft (a command released by `finish_turn`).
    fn next_due(&self) -> Option<Instant> {
        let now = self.now_ms();
        let at = match self.server.poll_timeout() {
            _ if self.server.has_ready() => Some(now),
            at => at,
        };
        at.map(|at| {
            // At least a millisecond, so that a deadline left due cannot spin the loop.
            let wait_ms = at.saturating_sub(self.now_ms()).max(1);
            Instant::now() + self.config.clock.real_duration(wait_ms)
        })
    }

    /// The rest of a turn, after its inputs: the Ready (a few rounds), the member's
    /// end-of-turn work and the watch streams. Err when the member stopped.
    fn turn(&mut self) -> Result<(), String> {
        if let Some(why) = self.server.stopped() {
            return Err(why.to_string());
        }
        let now = self.now_ms();
        self.server.start_turn(now);
        self.deliver();
        // Applying may make more work (promotion, conf changes): a few rounds per turn.
        for _ in 0..4 {
            if !self.server.has_ready() {
                break;
            }
            if !self.ready() {
                return Err(self.server.stopped().unwrap_or_default().to_string());
            }
        }
        let now = self.now_ms();
        self.server.finish_turn(now);
        self.deliver();
        self.watch_work();
        Ok(())
    }
}

/// What woke the driver's loop. Made once per wake and matched at once, so its size (an
/// input's) costs nothing a box would save.
#[allow(clippy::large_enum_variant)]
enum Woke {
    Tick,
    Deadline,
    /// An input, or `None` when every handle is gone.
    Input(Option<Input>),
}

/// The driver's lock; a panic while it was held (which ends the process's serving anyway)
/// does not make every later caller panic too.
fn lock(shared: &SharedDriver) -> std::sync::MutexGuard<'_, Option<Driver>> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The driver, to its own loop: only [`DropsDriver`] takes it away, once the loop is over.
fn running<'a>(g: &'a mut std::sync::MutexGuard<'_, Option<Driver>>) -> &'a mut Driver {
    g.as_mut().expect("the driver is there while its loop runs")
}

/// Takes the driver out of its lock and drops it (outside the lock) when dropped.
struct DropsDriver(SharedDriver);

impl Drop for DropsDriver {
    fn drop(&mut self) {
        let driver = lock(&self.0).take();
        drop(driver);
    }
}

/// Whether `e` is an mvcc error (re-exported for services).
pub type MvccError = mvcc::Error;
