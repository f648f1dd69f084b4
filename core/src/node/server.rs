//! One member as a server: a [`Member`] plus the member's policy around it, with no IO.
//!
//! [`MemberServer`] owns what a member decides on its own behalf and on its clients': which
//! request an applied entry answers (proposals carry a [`RequestId`]), ReadIndex rounds shared
//! by every linearizable read that arrived in one turn, the lessor's promotion once the
//! leader's first entry of its term applied (and its demotion when leadership goes),
//! keep-alives answered only once the checkpoint carrying their renew applied, the leader's
//! lease work (expiry revokes, checkpoint batches), NOSPACE (raised through the log when the
//! data outgrows its quota; what adds data is refused while it is raised), log compaction,
//! request timeouts (a request with no outcome in time is answered [`Refusal::Timeout`]), and
//! stopping for good when this member is removed or its storage fails.
//!
//! Clients are named by an opaque waiter `W` the caller chooses (the server's driver passes
//! its reply channels): the member keeps it until the request's outcome is known and hands
//! it back with the [`Response`]. A waiter whose client gave up ([`Waiter::abandoned`]) is
//! dropped at the next tick.
//!
//! # Call order
//!
//! Each turn of the caller's loop:
//! 1. inputs: [`handle_propose`](MemberServer::handle_propose),
//!    [`handle_conf_change`](MemberServer::handle_conf_change),
//!    [`handle_read`](MemberServer::handle_read),
//!    [`handle_keep_alive`](MemberServer::handle_keep_alive), [`step`](MemberServer::step),
//!    the transport's reports, and [`tick`](MemberServer::tick) once per heartbeat;
//! 2. [`start_turn`](MemberServer::start_turn): asks for the turn's ReadIndex round and does
//!    the leader's lease work;
//! 3. while [`has_ready`](MemberServer::has_ready) (a few rounds): send
//!    [`early_messages`](MemberServer::early_messages), then
//!    [`handle_ready`](MemberServer::handle_ready) (persist, then apply), send the messages it
//!    returns, then [`after_ready`](MemberServer::after_ready) (answers what applied);
//! 4. [`finish_turn`](MemberServer::finish_turn): releases the reads whose index applied
//!    (and keep-alives that waited for a round);
//! 5. after any of these, drain [`poll_response`](MemberServer::poll_response) and
//!    [`poll_membership`](MemberServer::poll_membership).
//!
//! What it does not do: it opens no socket and reads no clock (time is `now_ms`, the data's
//! size on disk an argument of `tick`), it sends nothing (messages are returned), it decodes
//! no client request and knows no gRPC code: its refusals are [`Refusal`]s, which the API
//! edge maps to etcd's codes and messages.

use super::apply::{ALARM_NOSPACE, AlarmAction, Applied, ApplyError, Command};
use super::codec::RequestId;
use super::compactor::{CompactionPolicy, Compactor};
use super::member::{Member, Outcome, Output};
use super::membership::{self, MemberRecord, Members, MembershipError};
use super::space::{self, HighWater, Space};
use crate::auth::AuthError;
use crate::lease::{self, IdGen, LeaseId};
use crate::mvcc::{self, StreamId, WatchCreate, WatchResponse};
use crate::raft::{
    self, ConfChange, ConfState, Message, MessageKind, NodeId, SnapshotStatus, SoftState, StateRole,
};
use crate::storage::{Engine, StorageError};
use crate::v2::V2Command;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Applied entries after which the log is compacted even when the configured snapshot count
/// is larger. The Raft log is mirrored in memory, and etcd's default of 100,000 entries held
/// about 36 MB of 256-byte puts there. The state machine is durable without a snapshot (it
/// lives in the same database), so compacting more often costs no extra snapshot; a follower
/// more than `snapshot_catchup_entries` behind gets a snapshot either way.
pub const LOG_COMPACTION_ENTRIES_MAX: u64 = 10_000;

/// Bytes of applied entries after which the log is compacted whatever their number, and the
/// most bytes of applied entries kept for slow followers: with large values, 10,000 entries
/// (or etcd's 5,000 kept for catch-up) would hold gigabytes of the mirrored log in memory. A
/// follower further behind gets a snapshot, as one behind by more entries does.
pub const LOG_COMPACTION_BYTES_MAX: u64 = 64 << 20;

/// The shortest time between two v2 expiry proposals (etcd's SYNC ticker).
pub const V2_SYNC_INTERVAL_MS: u64 = 500;

/// Catch-up passes over watchers behind the store per turn (see
/// [`MemberServer::watch_work`]).
pub const WATCH_SYNCS_PER_TURN_MAX: usize = 8;

/// What a watch stream's client asks.
#[derive(Clone, Debug)]
pub enum WatchRequest {
    /// A new watcher on the stream.
    Create(WatchCreate),
    /// Cancel the stream's watcher with this ID.
    Cancel(i64),
    /// A progress notification for the stream's watchers, now.
    Progress,
}

/// What a client presented as credentials with a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Credential {
    /// Nothing: anonymous (refused while auth is on, except where etcd lets anyone in).
    #[default]
    None,
    /// A simple token from `Authenticate`.
    Token(String),
    /// The common name of the client's verified TLS certificate (with `--client-cert-auth`):
    /// the user of that name, as of the auth state now.
    CommonName(String),
    /// A user and auth revision the caller verified (a signed token's claims).
    Claims {
        /// The user.
        user: String,
        /// The auth revision the token was issued at.
        revision: u64,
    },
}

/// What became of a watch stream's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchTaken {
    /// Taken; its answer is on the stream.
    Done,
    /// The stream's control responses are full: nothing changed; ask again once its client
    /// read some.
    Full,
    /// The stream is not open (it closed, or a snapshot restore dropped it).
    Gone,
    /// A create the auth state refused; nothing changed.
    Refused {
        /// Why.
        error: AuthError,
        /// The member's revision and term now, for the answer's header.
        header: Header,
    },
}

/// The revision and term a response header carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The store's revision.
    pub revision: i64,
    /// The Raft term.
    pub raft_term: u64,
}

/// The member's policy settings.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// How long a request may wait for its answer; also how long a ReadIndex round is kept.
    pub request_timeout_ms: u64,
    /// The lessor's grace after a promotion: leases do not expire before it.
    pub election_ms: u64,
    /// Applied entries between log compactions (capped by [`LOG_COMPACTION_ENTRIES_MAX`]).
    pub snapshot_count: u64,
    /// Entries kept behind a compaction for slow followers.
    pub snapshot_catchup_entries: u64,
    /// The data's size beyond which NOSPACE is raised.
    pub quota_backend_bytes: u64,
    /// When the leader compacts on its own (`--auto-compaction-*`).
    pub auto_compaction: CompactionPolicy,
    /// Deliberate mistakes, for proving that the simulators catch them. Never set in
    /// production.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<PolicyBug>,
}

/// Deliberate policy mistakes, to prove that the simulators catch each of them. They can be
/// switched on only with the `planted-bugs` feature (through `PolicyConfig::planted_bug`);
/// without it the check is constantly false and the compiler removes the mistakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyBug {
    /// The leader never proposes revoking an expired lease.
    ExpiredLeasesKept,
    /// A keep-alive is answered as soon as the leader renewed the lease, before the
    /// checkpoint carrying the renew has applied (a leader change then loses it).
    KeepAliveBeforeCheckpoint,
    /// An alarm is raised and cleared on the member that was asked only, not through the log.
    AlarmNotReplicated,
    /// A client's key or lease command is checked against the auth state when it enters
    /// only, not again when it applies (a revoke that applies in between does not stop it).
    AuthCheckedOnEntryOnly,
    /// The leader never proposes the v2 expiry (`Sync`): keys outlive their TTLs.
    V2ExpiryNotProposed,
}

impl PolicyConfig {
    /// Settings for a member with this election timeout, and etcd's other defaults.
    pub fn new(election_ms: u64) -> PolicyConfig {
        PolicyConfig {
            request_timeout_ms: 5000 + 2 * election_ms,
            election_ms,
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5_000,
            quota_backend_bytes: 2 * 1024 * 1024 * 1024,
            auto_compaction: CompactionPolicy::Off,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    #[inline(always)]
    fn bug(&self, _bug: PolicyBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        return self.planted_bug == Some(_bug);
        #[cfg(not(feature = "planted-bugs"))]
        false
    }
}

/// Why a request was refused before or instead of being applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The member stopped (removed from the cluster, its storage failed, or it shuts down).
    Stopped,
    /// Raft did not take the proposal.
    Raft(raft::Error),
    /// The command was applied and failed.
    Apply(ApplyError),
    /// A keep-alive reached a member whose lessor is not the primary.
    NotLeader,
    /// Leadership moved while a keep-alive waited for its checkpoint.
    LeaderChanged,
    /// The NOSPACE alarm is raised and the request could add data.
    NoSpace,
    /// The lessor refused a renew.
    Lease(lease::Error),
    /// A membership change broke a rule of the cluster's.
    Membership(MembershipError),
    /// No outcome within the request timeout: the request may still apply later.
    Timeout,
}

/// A request's outcome, handed back with its waiter.
#[derive(Debug)]
pub enum Response {
    /// A proposed command applied (or was refused).
    Command(Result<(Applied, Header), Refusal>),
    /// A membership change applied: the membership after it.
    ConfChange(Result<ConfState, Refusal>),
    /// A keep-alive: the lease's TTL (0: no such lease) once its renew is replicated.
    KeepAlive(Result<(i64, Header), Refusal>),
    /// A linearizable read may be served now (this member's applied state is current), or
    /// could not be confirmed in time.
    Read(Result<(), Refusal>),
}

/// What the member needs to know of a waiter.
pub trait Waiter {
    /// Whether its client gave up: the member stops keeping it.
    fn abandoned(&self) -> bool;
}

/// What a keep-alive gets now.
#[derive(Debug)]
enum KeepAliveStep {
    /// Its answer.
    Answer(Result<(i64, Header), Refusal>),
    /// Nothing yet: a ReadIndex round must confirm this member leads first.
    AfterRound,
    /// Renewed to this TTL; answered once a checkpoint carrying the renew applies.
    AfterCheckpoint(i64),
}

/// What waits for a ReadIndex round.
enum Read<W> {
    /// A client's linearizable read.
    Client(Timed<W>),
    /// A keep-alive for a lease this leader does not hold: asked again once a round confirms
    /// this member still leads and has applied everything committed before it. A leader cut
    /// off from a newer one would otherwise call a lease granted in the newer term missing.
    KeepAlive(LeaseId, Timed<W>),
}

impl<W> Read<W> {
    fn timed(&self) -> &Timed<W> {
        match self {
            Read::Client(t) | Read::KeepAlive(_, t) => t,
        }
    }
}

/// A command waiting for the log index that issued its simple token to apply here.
struct TokenWait<W> {
    index: u64,
    who: Credential,
    cmd: Command,
    timed: Timed<W>,
}

/// A waiter and the time its request times out.
struct Timed<W> {
    waiter: W,
    due_ms: u64,
}

enum Waiting<W> {
    Command(Timed<W>),
    /// Keep-alives answered when the checkpoint batch carrying their renews applies.
    KeepAlives(Vec<(LeaseId, i64, Timed<W>)>),
}

impl<W> Waiting<W> {
    /// The earliest time one of its requests times out.
    fn due_ms(&self) -> Option<u64> {
        match self {
            Waiting::Command(t) => Some(t.due_ms),
            Waiting::KeepAlives(list) => list.iter().map(|(_, _, t)| t.due_ms).min(),
        }
    }
}

/// One member and its policy. See the module docs for the call order.
pub struct MemberServer<E: Engine, W> {
    member: Member<E>,
    config: PolicyConfig,
    member_id: u64,
    seq: u64,
    id_gen: IdGen,
    waiters: BTreeMap<u64, Waiting<W>>,
    conf_waiters: Vec<(ConfChange, Timed<W>)>,
    /// Linearizable reads waiting for the next ReadIndex round.
    reads_pending: Vec<Read<W>>,
    /// ReadIndex rounds asked for and not yet answered, by context.
    reads_asked: BTreeMap<u64, Vec<Read<W>>>,
    /// Rounds answered, waiting for their index to apply.
    reads_ready: VecDeque<(u64, Vec<Read<W>>)>,
    read_ctx: u64,
    /// Renewed leases waiting for a checkpoint batch to carry them.
    renews_pending: Vec<(LeaseId, i64, Timed<W>)>,
    /// This primary's checkpoint batches in flight, by request sequence: when each was
    /// proposed and what it carries, told to the lessor when it applies (its renew cover).
    checkpoints_proposed: BTreeMap<u64, (u64, Vec<(LeaseId, u64)>)>,
    /// Keep-alives answered under a committed checkpoint's cover since this server started.
    keep_alives_covered: u64,
    /// Commands whose simple token was issued at a log index this member has not applied
    /// yet (through another member), waiting for it, in arrival order. Each waits at most
    /// a request timeout; once the index applies, its command enters as if it had just
    /// arrived.
    token_waits: Vec<TokenWait<W>>,
    /// The auto-compaction schedule.
    compactor: Compactor,
    /// The term in which this member's lessor was promoted.
    promoted_term: Option<u64>,
    /// No v2 expiry is proposed before this (`now_ms`): one at a time, as etcd's SYNC ticker.
    v2_sync_after_ms: u64,
    applied_since_compaction: u64,
    /// Bytes of the entries applied since the last compaction.
    applied_bytes_since_compaction: u64,
    /// Bytes of each of the latest applied entries, oldest first, at most
    /// `snapshot_catchup_entries`: what a compaction may keep for slow followers within
    /// [`LOG_COMPACTION_BYTES_MAX`].
    applied_recent: VecDeque<u64>,
    /// The membership last handed out by `poll_membership`.
    conf_state: ConfState,
    membership_changed: bool,
    /// When this member last proposed raising NOSPACE, so that an over-quota member asks once
    /// per request timeout while the proposal is under way.
    quota_alarm_asked_ms: Option<u64>,
    /// The database's size until the next defragment.
    high_water: HighWater,
    stopped: Option<String>,
    responses: VecDeque<(W, Response)>,
    /// A handled Ready's applied part, until `after_ready`.
    pending: Option<Output>,
}

/// What [`MemberServer::handle_ready`] hands the caller.
#[derive(Debug, Default)]
pub struct Handled {
    /// Messages to send, in order.
    pub messages: Vec<Message>,
    /// Raft's soft state, when it changed.
    pub soft_state: Option<SoftState>,
}

/// What a member answers a peer it removed from the cluster (etcd's words).
pub const REMOVED_MESSAGE: &str = "the member has been permanently removed from the cluster";

impl<E: Engine, W: Waiter> MemberServer<E, W> {
    /// Wraps an opened member. `seq_start` is the first request sequence number and `id_gen`
    /// draws lease IDs for grants that ask for none; both start from the wall clock in
    /// production, so a restarted member reuses neither.
    pub fn new(
        member: Member<E>,
        config: PolicyConfig,
        seq_start: u64,
        id_gen: IdGen,
    ) -> MemberServer<E, W> {
        let member_id = member.id();
        let auto_compaction = config.auto_compaction;
        MemberServer {
            member,
            config,
            member_id,
            seq: seq_start,
            id_gen,
            waiters: BTreeMap::new(),
            token_waits: Vec::new(),
            compactor: Compactor::new(auto_compaction),
            conf_waiters: Vec::new(),
            reads_pending: Vec::new(),
            reads_asked: BTreeMap::new(),
            reads_ready: VecDeque::new(),
            read_ctx: 0,
            renews_pending: Vec::new(),
            checkpoints_proposed: BTreeMap::new(),
            keep_alives_covered: 0,
            promoted_term: None,
            v2_sync_after_ms: 0,
            applied_since_compaction: 0,
            applied_bytes_since_compaction: 0,
            applied_recent: VecDeque::new(),
            conf_state: ConfState::default(),
            membership_changed: false,
            quota_alarm_asked_ms: None,
            high_water: HighWater::default(),
            stopped: None,
            responses: VecDeque::new(),
            pending: None,
        }
    }

    // Getters.

    /// The member, for reads of its state.
    pub fn member(&self) -> &Member<E> {
        &self.member
    }

    /// The member, for the calls that change no policy (serializable ranges, watch streams,
    /// a leader transfer).
    pub fn member_mut(&mut self) -> &mut Member<E> {
        &mut self.member
    }

    /// Why the member stopped, once it has: every request is refused from then on.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// The revision and term for a response header now.
    pub fn header(&self) -> Header {
        Header {
            revision: self.member.applier().kv().current_revision(),
            raft_term: self.member.raw().raft.term,
        }
    }

    /// Whether this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.member.raw().raft.state == StateRole::Leader
    }

    /// The cluster's members as applied here, each with whether it is a learner, in ID order.
    /// A record that does not decode is left out (the member keeps serving the others).
    pub fn members(&self) -> Members {
        let learners = self.member.raw().raft.tracker.conf_state().learners;
        self.member
            .applier()
            .members()
            .iter()
            .filter_map(|(id, record)| MemberRecord::decode(*id, record).ok())
            .map(|m| {
                let learner = learners.contains(&m.id);
                (m, learner)
            })
            .collect()
    }

    /// The member with `id`, and whether it is a learner.
    pub fn find_member(&self, id: NodeId) -> Result<(MemberRecord, bool), Refusal> {
        membership::find(&self.members(), id).map_err(Refusal::Membership)
    }

    /// Checks adding a member with `peer_urls` before its configuration change is proposed.
    pub fn check_member_add(&self, peer_urls: &[String], learner: bool) -> Result<(), Refusal> {
        membership::check_add(&self.members(), peer_urls, learner).map_err(Refusal::Membership)
    }

    /// Checks promoting learner `id`: `Ok(false)` when this member does not lead (the leader
    /// decides: forward it there), `Ok(true)` when it leads and the learner is in sync.
    pub fn check_promote(&self, id: NodeId) -> Result<bool, Refusal> {
        let (_, learner) = self.find_member(id)?;
        if !learner {
            return Err(Refusal::Membership(MembershipError::NotLearner));
        }
        if !self.is_leader() {
            return Ok(false);
        }
        let raft = &self.member.raw().raft;
        let matched = raft.tracker.progress.get(&id).map_or(0, |p| p.matched);
        membership::check_promote_ready(matched, raft.raft_log.last_index())
            .map_err(Refusal::Membership)?;
        Ok(true)
    }

    /// Whether NOSPACE is raised, as applied here (alarms are replicated).
    pub fn no_space(&self) -> bool {
        self.member.applier().alarm_raised(ALARM_NOSPACE)
    }

    /// Whether Raft has a Ready to handle.
    pub fn has_ready(&self) -> bool {
        self.stopped.is_none() && self.member.raw().has_ready()
    }

    // Inputs.

    /// Proposes a client's command; its outcome comes back as [`Response::Command`], or a
    /// [`Refusal::Timeout`] when it has none within the request timeout.
    pub fn handle_propose(&mut self, mut cmd: Command, waiter: W, now_ms: u64) {
        if self.no_space() {
            // Raised: a later excess (after a disarm) raises it afresh.
            self.quota_alarm_asked_ms = None;
        }
        if cmd.grows() && (self.no_space() || !self.fits_quota(&cmd, now_ms)) {
            self.respond(waiter, Response::Command(Err(Refusal::NoSpace)));
            return;
        }
        if let Command::LeaseGrant { id, .. } = &mut cmd
            && *id == 0
        {
            *id = self.id_gen.next();
        }
        if self.config.bug(PolicyBug::AlarmNotReplicated)
            && matches!(cmd, Command::Alarm { action, .. } if action != AlarmAction::Get)
        {
            let (result, revision) = self.member.applier_mut().apply(&cmd, 0);
            let header = Header {
                revision,
                raft_term: self.member.raw().raft.term,
            };
            let r = result.map(|a| (a, header)).map_err(Refusal::Apply);
            self.respond(waiter, Response::Command(r));
            return;
        }
        let timed = self.timed(waiter, now_ms);
        self.propose(cmd, Some(Waiting::Command(timed)));
    }

    /// Proposes a membership change; answered with [`Response::ConfChange`] once it applied.
    pub fn handle_conf_change(&mut self, cc: ConfChange, waiter: W, now_ms: u64) {
        if self.stopped.is_some() {
            self.respond(waiter, Response::ConfChange(Err(Refusal::Stopped)));
            return;
        }
        match self.member.raw_mut().propose_conf_change(&cc) {
            Ok(()) => {
                let timed = self.timed(waiter, now_ms);
                self.conf_waiters.push((cc, timed));
            }
            Err(e) => self.respond(waiter, Response::ConfChange(Err(Refusal::Raft(e)))),
        }
    }

    /// A linearizable read: [`Response::Read`] comes back once a ReadIndex round confirmed
    /// this member's view and the index it returned has applied (at once when no round is
    /// needed: [`reads_at_once`](Self::reads_at_once)); a read the member cannot
    /// confirm within the request timeout gets [`Refusal::Timeout`] (as a [`Response::Command`]).
    pub fn handle_read(&mut self, waiter: W, now_ms: u64) {
        if self.reads_at_once() {
            // The round would confirm at once what holds now.
            self.respond(waiter, Response::Read(Ok(())));
            return;
        }
        let timed = self.timed(waiter, now_ms);
        self.reads_pending.push(Read::Client(timed));
    }

    /// Renews a lease (the primary lessor only); answered once the checkpoint that carries the
    /// renew has applied, so a leader change never loses an acknowledged renew, or, when a
    /// committed checkpoint already covers the new deadline (see [`crate::lease`]), once a
    /// ReadIndex round confirmed that this member still leads, as etcd's leader confirms
    /// before a renew: a leader deposed unawares would otherwise call alive a lease that the
    /// new leader revoked (at once when no round is needed:
    /// [`reads_at_once`](Self::reads_at_once)).
    pub fn handle_keep_alive(&mut self, id: LeaseId, waiter: W, now_ms: u64) {
        let timed = self.timed(waiter, now_ms);
        self.keep_alive(id, timed, now_ms, false);
    }

    /// Whether a linearizable read, or the leadership check of a keep-alive, may be served now
    /// without a ReadIndex round: Raft would answer the round at once
    /// ([`raft::Raft::reads_at_once`]: this member leads alone) and everything committed is
    /// applied.
    pub fn reads_at_once(&self) -> bool {
        let raft = &self.member.raw().raft;
        self.stopped.is_none()
            && raft.reads_at_once()
            && raft.raft_log.applied >= raft.raft_log.committed
    }

    /// A keep-alive answered now, when [`handle_keep_alive`](Self::handle_keep_alive) would
    /// answer it without waiting for anything: this member does not hold the leases (not
    /// leader: refused, for the caller to forward it), or it leads alone
    /// ([`reads_at_once`](Self::reads_at_once)) and a committed checkpoint covers the renew.
    /// `None`: not so, and nothing was renewed; hand it to `handle_keep_alive`.
    pub fn keep_alive_at_once(
        &mut self,
        id: LeaseId,
        now_ms: u64,
    ) -> Option<Result<(i64, Header), Refusal>> {
        // A stopped member answers through the inbox, whatever it answers there.
        if self.stopped.is_some() {
            return None;
        }
        if !self.holds_leases() {
            return Some(Err(Refusal::NotLeader));
        }
        if !self.reads_at_once()
            || !self
                .member
                .applier()
                .lessor()
                .renew_would_be_covered(id, now_ms)
        {
            return None;
        }
        match self.keep_alive_step(id, now_ms, true) {
            KeepAliveStep::Answer(r) => Some(r),
            step => {
                debug_assert!(false, "a confirmed, covered keep-alive waits: {step:?}");
                None
            }
        }
    }

    /// Whether this member renews leases: it leads and its lessor was promoted. A keep-alive
    /// to any other member is refused at once (the front end forwards it to the leader).
    fn holds_leases(&self) -> bool {
        self.promoted_term.is_some() && self.member.applier().lessor().is_primary()
    }

    /// A keep-alive; `confirmed`: a ReadIndex round since it arrived showed this member leads
    /// and has applied everything committed before it.
    fn keep_alive(&mut self, id: LeaseId, timed: Timed<W>, now_ms: u64, confirmed: bool) {
        match self.keep_alive_step(id, now_ms, confirmed) {
            KeepAliveStep::Answer(r) => self.respond(timed.waiter, Response::KeepAlive(r)),
            KeepAliveStep::AfterRound => self.reads_pending.push(Read::KeepAlive(id, timed)),
            KeepAliveStep::AfterCheckpoint(ttl) => self.renews_pending.push((id, ttl, timed)),
        }
    }

    /// What a keep-alive gets now (see [`keep_alive`](Self::keep_alive)); renews the lease
    /// unless it must wait for a ReadIndex round first.
    fn keep_alive_step(&mut self, id: LeaseId, now_ms: u64, confirmed: bool) -> KeepAliveStep {
        if !self.holds_leases() {
            return KeepAliveStep::Answer(Err(Refusal::NotLeader));
        }
        // A member that leads alone needs no round to confirm it.
        let confirmed = confirmed || self.reads_at_once();
        let lessor = self.member.applier_mut().lessor_mut();
        let covered = lessor.renew_would_be_covered(id, now_ms);
        if covered && !confirmed {
            // Renewed after the round, at the time it confirmed.
            return KeepAliveStep::AfterRound;
        }
        match lessor.renew(id, now_ms) {
            Ok(ttl) if covered || self.config.bug(PolicyBug::KeepAliveBeforeCheckpoint) => {
                self.keep_alives_covered += u64::from(covered);
                KeepAliveStep::Answer(Ok((ttl, self.header())))
            }
            Ok(ttl) => KeepAliveStep::AfterCheckpoint(ttl),
            Err(lease::Error::NotFound { .. }) if !confirmed => KeepAliveStep::AfterRound,
            Err(lease::Error::NotFound { .. }) => KeepAliveStep::Answer(Ok((0, self.header()))),
            Err(e) => KeepAliveStep::Answer(Err(Refusal::Lease(e))),
        }
    }

    /// A client's command sent with credentials `who`: proposed wrapped with the user it
    /// stands for, for its permission check at apply (see [`authorize`](Self::authorize));
    /// credentials that name no user are refused at once.
    pub fn handle_propose_as(&mut self, who: &Credential, cmd: Command, waiter: W, now_ms: u64) {
        if let Some(index) = self.token_index_ahead(who) {
            let timed = self.timed(waiter, now_ms);
            self.token_waits.push(TokenWait {
                index,
                who: who.clone(),
                cmd,
                timed,
            });
            return;
        }
        match self.authorize(who, cmd, now_ms) {
            Ok(cmd) => self.handle_propose(cmd, waiter, now_ms),
            Err(e) => {
                let refused = Refusal::Apply(super::apply::ApplyError::Auth(e));
                self.respond(waiter, Response::Command(Err(refused)));
            }
        }
    }

    /// A message from a peer. Refused messages are dropped (Raft resends).
    pub fn step(&mut self, m: Message) -> Result<(), raft::Error> {
        self.member.raw_mut().step(m)
    }

    /// The transport could not reach `peer`.
    pub fn handle_unreachable(&mut self, peer: NodeId) {
        self.member.raw_mut().report_unreachable(peer);
    }

    /// How sending a snapshot to `peer` went.
    pub fn handle_snapshot_report(&mut self, peer: NodeId, ok: bool) {
        let status = if ok {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.member.raw_mut().report_snapshot(peer, status);
    }

    /// A peer refused this member's messages: it was removed from the cluster.
    pub fn handle_removed_by_peer(&mut self) {
        self.stop(REMOVED_MESSAGE.to_string());
    }

    /// One heartbeat of time: Raft's tick, dropped waiters and stale read rounds.
    pub fn tick(&mut self, now_ms: u64) {
        self.member.raw_mut().tick();
        self.member.applier_mut().purge_tokens(now_ms);
        self.prune();
        self.expire(now_ms);
        self.space();
    }

    /// The database's size as `Status` reports it (see [`Space`]).
    pub fn space(&mut self) -> Space {
        let applier = self.member.applier();
        let in_use = space::in_use_bytes(
            applier.kv().footprint().bytes(),
            applier.lessor().len() as u64,
        );
        self.high_water.observe(in_use)
    }

    /// A defragment gave the database's free pages back: its size is what it uses again.
    /// The footprint is counted afresh, record by record, to undo the estimates of
    /// compactions (see [`crate::mvcc::Footprint`]).
    pub fn defragmented(&mut self) -> Result<Space, ApplyError> {
        self.member.applier_mut().recount_footprint()?;
        let in_use = self.space().in_use_bytes;
        self.high_water.defragmented(in_use);
        Ok(self.space())
    }

    /// The leader's auto-compaction, asked once per heartbeat: proposes the compaction its
    /// schedule says is due now (through the log, as a client's `Compact`; one to a revision
    /// already compacted changes nothing) and returns the revision, for the caller to log.
    pub fn auto_compact(&mut self, now_ms: u64) -> Option<i64> {
        if self.stopped.is_some() {
            return None;
        }
        let revision = self.member.applier().kv().current_revision();
        let target = self.compactor.poll(now_ms, revision, self.is_leader())?;
        self.propose(Command::Compact { revision: target }, None);
        Some(target)
    }

    // The turn.

    /// Asks for a ReadIndex round for the reads that arrived this turn, and does the leader's
    /// lease work.
    pub fn start_turn(&mut self, now_ms: u64) {
        self.ask_read_index();
        self.lease_work(now_ms);
    }

    /// The messages that may leave before this Ready is persisted (a leader's appends): they
    /// then overlap the followers' writes with its own.
    pub fn early_messages(&mut self) -> Vec<Message> {
        self.member.early_messages()
    }

    /// Persists and applies the pending Ready; returns the messages to send (everything they
    /// promise is durable) and Raft's soft state when it changed. Send the messages, then call
    /// [`after_ready`](Self::after_ready), which answers what the Ready applied. A storage
    /// error stops the member and is returned.
    pub fn handle_ready(&mut self, now_ms: u64) -> Result<Handled, String> {
        debug_assert!(
            self.pending.is_none(),
            "after_ready follows every handle_ready"
        );
        // Not `has_ready`: `early_messages` may have taken this Ready from Raft already.
        if self.stopped.is_some() {
            return Ok(Handled::default());
        }
        let compact = self.applied_since_compaction
            >= self.config.snapshot_count.min(LOG_COMPACTION_ENTRIES_MAX)
            || self.applied_bytes_since_compaction >= LOG_COMPACTION_BYTES_MAX;
        // Walked only when compacting: it reads up to `snapshot_catchup_entries` sizes.
        let keep = if compact { self.entries_to_keep() } else { 0 };
        let member = &mut self.member;
        let result = member.handle_ready(now_ms).and_then(|out| {
            let Some(mut out) = out else {
                return Ok(None);
            };
            // A snapshot message carries the state machine as of now, and says so.
            if out.messages.iter().any(|m| m.kind == MessageKind::Snapshot) {
                let data = member.snapshot_data()?;
                let metadata = member.snapshot_metadata_now()?;
                for m in &mut out.messages {
                    if let Some(s) = &mut m.snapshot {
                        s.data = data.clone();
                        s.metadata = metadata.clone();
                    }
                }
            }
            if compact {
                member.compact_log(keep)?;
            }
            Ok::<_, StorageError>(Some(out))
        });
        if compact {
            self.applied_since_compaction = 0;
            self.applied_bytes_since_compaction = 0;
        }
        match result {
            Ok(Some(mut out)) => {
                let handled = Handled {
                    messages: std::mem::take(&mut out.messages),
                    soft_state: out.soft_state,
                };
                self.pending = Some(out);
                Ok(handled)
            }
            Ok(None) => Ok(Handled::default()),
            Err(e) => {
                let why = e.to_string();
                self.stop(why.clone());
                Err(why)
            }
        }
    }

    /// Answers what the last Ready applied (requests, reads, keep-alives, membership), acts
    /// on its soft state (lessor promotion and demotion), and does the leader's lease work.
    pub fn after_ready(&mut self, now_ms: u64) {
        if let Some(out) = self.pending.take() {
            self.handle_output(out, now_ms);
        }
        self.lease_work(now_ms);
    }

    /// Releases the reads whose ReadIndex has applied, and the commands whose simple token's
    /// index has.
    pub fn finish_turn(&mut self, now_ms: u64) {
        let applied = self.member.raw().raft.raft_log.applied;
        if self.token_waits.iter().any(|w| w.index <= applied) {
            let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.token_waits)
                .into_iter()
                .partition(|w| w.index <= applied);
            self.token_waits = waiting;
            for w in ready {
                self.handle_propose_as(&w.who, w.cmd, w.timed.waiter, now_ms);
            }
        }
        while let Some((index, _)) = self.reads_ready.front() {
            if *index > applied {
                break;
            }
            let (_, reads) = self.reads_ready.pop_front().expect("front exists");
            for read in reads {
                match read {
                    Read::Client(t) => self.respond(t.waiter, Response::Read(Ok(()))),
                    Read::KeepAlive(id, t) => self.keep_alive(id, t, now_ms, true),
                }
            }
        }
        if self.due_ms().is_some_and(|due| due <= now_ms) {
            self.expire(now_ms);
        }
    }

    // Outputs.

    /// The next time (`now_ms` scale) at which the member has work without any input: a
    /// lease to expire or checkpoint, a watcher's progress notification, a request to time
    /// out (the oldest of each kind). `None`: nothing is due. Raft's own clock is [`tick`](Self::tick), once per
    /// heartbeat. A time at or before now means "start a turn now".
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.stopped.is_some() {
            return None;
        }
        let applier = self.member.applier();
        let leases = self
            .promoted_term
            .and_then(|_| applier.lessor().poll_timeout());
        let watchers = applier.watchers().poll_timeout();
        [leases, watchers, self.due_ms()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next request whose outcome is known, with its waiter.
    pub fn poll_response(&mut self) -> Option<(W, Response)> {
        self.responses.pop_front()
    }

    /// The membership, when it changed since the last call (a configuration change applied,
    /// or a snapshot brought another one): the caller points its transport at it.
    pub fn poll_membership(&mut self) -> Option<ConfState> {
        std::mem::take(&mut self.membership_changed).then(|| self.conf_state.clone())
    }

    // Auth.

    /// The user and auth revision `who` stands for now: `("", 0)` without credentials; a
    /// token must be known (also while auth is off, as etcd has it).
    pub fn identify(&mut self, who: &Credential, now_ms: u64) -> Result<(String, u64), AuthError> {
        match who {
            Credential::None => Ok((String::new(), 0)),
            Credential::Claims { user, revision } => Ok((user.clone(), *revision)),
            Credential::CommonName(cn) => Ok((cn.clone(), self.member.applier().auth().revision())),
            Credential::Token(token) => {
                let applier = self.member.applier_mut();
                let user = applier
                    .token_user(token, now_ms)
                    .ok_or(AuthError::InvalidAuthToken)?;
                Ok((user, applier.auth().revision()))
            }
        }
    }

    /// The log index that issued `who`'s simple token (`<random>.<index>`), when this member
    /// has not applied it yet: the token was issued through another member and is not known
    /// here yet, so a command carrying it waits for that index (as etcd waits) instead of
    /// being refused as an invalid token.
    fn token_index_ahead(&self, who: &Credential) -> Option<u64> {
        let Credential::Token(token) = who else {
            return None;
        };
        let index: u64 = token.rsplit_once('.')?.1.parse().ok()?;
        (index > self.member.raw().raft.raft_log.applied).then_some(index)
    }

    /// A client's command as it enters: its credentials are resolved to a user and the auth
    /// revision they were checked under (an unknown token is refused here), and the command
    /// is wrapped with both ([`Command::Authed`]) so that applying it decides its
    /// permission, as etcd decides a write's. Deciding here instead would answer from this
    /// member's own auth state, which may lag: a write sent after a grant was acknowledged
    /// could be refused by a member that has not applied the grant yet.
    pub fn authorize(
        &mut self,
        who: &Credential,
        cmd: Command,
        now_ms: u64,
    ) -> Result<Command, AuthError> {
        let (user, revision) = self.identify(who, now_ms)?;
        if self.config.bug(PolicyBug::AuthCheckedOnEntryOnly) && !matches!(cmd, Command::Auth(_)) {
            self.member.applier().check(&user, revision, &cmd)?;
            return Ok(cmd);
        }
        Ok(Command::Authed {
            user,
            revision,
            cmd: Box::new(cmd),
        })
    }

    /// Whether `who` may read `[key, range_end)` now (a range served locally, a watch).
    pub fn authorize_read(
        &mut self,
        who: &Credential,
        key: &[u8],
        range_end: &[u8],
        now_ms: u64,
    ) -> Result<(), AuthError> {
        let (user, revision) = self.identify(who, now_ms)?;
        self.member
            .applier()
            .check_read(&user, revision, key, range_end)
    }

    /// Whether `who` may do what only the root role may (membership changes, defragment,
    /// snapshots, hashes).
    pub fn authorize_admin(&mut self, who: &Credential, now_ms: u64) -> Result<(), AuthError> {
        let (user, _) = self.identify(who, now_ms)?;
        self.member.applier().auth().check_admin(&user)
    }

    // Watches.

    /// Opens a client's watch stream.
    pub fn open_watch_stream(&mut self) -> StreamId {
        self.member.applier_mut().watchers_mut().0.open_stream()
    }

    /// A watch stream client's request. Its answer (a created or failed watcher, a cancel,
    /// a progress notification) comes out of [`poll_watch_response`](Self::poll_watch_response).
    /// A create is checked for read permission on its keys first: a refused one changes
    /// nothing and comes back as [`WatchTaken::Refused`], for the caller to answer (etcd
    /// answers it as a created and canceled watcher whose reason is the gRPC error).
    pub fn handle_watch_request(
        &mut self,
        stream: StreamId,
        request: WatchRequest,
        who: &Credential,
        now_ms: u64,
    ) -> WatchTaken {
        if !self.member.applier().watchers().is_open(stream) {
            return WatchTaken::Gone;
        }
        if let WatchRequest::Create(c) = &request {
            // etcd's watch range: an empty key is "\0"; "\0" as the end is every key from it
            // (etcd 3.4 checks a from-key watch on its first key alone; this checks them all).
            let key: &[u8] = if c.key.is_empty() { b"\0" } else { &c.key };
            if let Err(error) = self.authorize_read(who, key, &c.range_end, now_ms) {
                let header = self.header();
                return WatchTaken::Refused { error, header };
            }
        }
        let (watchers, kv) = self.member.applier_mut().watchers_mut();
        let r = match request {
            WatchRequest::Create(create) => watchers.create(stream, create, kv).map(|_| ()),
            WatchRequest::Cancel(watch_id) => {
                watchers.cancel(stream, watch_id);
                Ok(())
            }
            WatchRequest::Progress => watchers.progress_request(stream, kv),
        };
        match r {
            Err(mvcc::Error::WatchStreamFull { .. }) => WatchTaken::Full,
            // Other refusals were answered on the stream (a failed create).
            _ => WatchTaken::Done,
        }
    }

    /// Closes a watch stream with its watchers (its client went away).
    pub fn close_watch_stream(&mut self, stream: StreamId) {
        self.member
            .applier_mut()
            .watchers_mut()
            .0
            .close_stream(stream);
    }

    /// Progress notifications due by `now_ms`, and a bounded amount of catch-up for watchers
    /// behind the store ([`WATCH_SYNCS_PER_TURN_MAX`] passes), so that catching up slow
    /// watchers interleaves with writes. Call once per turn, then poll the ready streams.
    pub fn watch_work(&mut self, now_ms: u64) -> Result<(), mvcc::Error> {
        let (watchers, kv) = self.member.applier_mut().watchers_mut();
        if watchers.poll_timeout().is_some_and(|t| t <= now_ms) {
            watchers.tick(now_ms, kv);
        }
        for _ in 0..WATCH_SYNCS_PER_TURN_MAX {
            if !watchers.needs_sync() {
                break;
            }
            watchers.sync(kv)?;
        }
        Ok(())
    }

    /// The watch streams with responses to poll.
    pub fn watch_ready_streams(&self) -> Vec<StreamId> {
        self.member.applier().watchers().ready_streams().collect()
    }

    /// A watch stream's next response, in order; poll only while its client has room.
    pub fn poll_watch_response(&mut self, stream: StreamId) -> Option<WatchResponse> {
        self.member
            .applier_mut()
            .watchers_mut()
            .0
            .poll_response(stream)
    }

    /// How many keep-alives this server answered under a committed checkpoint's cover,
    /// without waiting for a checkpoint of their own.
    pub fn keep_alives_covered(&self) -> u64 {
        self.keep_alives_covered
    }

    /// The membership as Raft holds it now.
    pub fn membership_now(&self) -> ConfState {
        self.member.raw().raft.tracker.conf_state()
    }

    // Internals.

    fn respond(&mut self, waiter: W, response: Response) {
        self.responses.push_back((waiter, response));
    }

    fn fail(&mut self, waiting: Option<Waiting<W>>, why: Refusal) {
        match waiting {
            Some(Waiting::Command(t)) => self.respond(t.waiter, Response::Command(Err(why))),
            Some(Waiting::KeepAlives(list)) => {
                for (_, _, t) in list {
                    self.respond(t.waiter, Response::KeepAlive(Err(why.clone())));
                }
            }
            None => {}
        }
    }

    fn next_request(&mut self) -> RequestId {
        self.seq += 1;
        RequestId {
            member: self.member_id,
            seq: self.seq,
        }
    }

    /// Proposes `cmd`; `waiting` is answered when it applies. Returns the request's sequence
    /// number if Raft took it.
    fn propose(&mut self, cmd: Command, waiting: Option<Waiting<W>>) -> Option<u64> {
        if self.stopped.is_some() {
            self.fail(waiting, Refusal::Stopped);
            return None;
        }
        let id = self.next_request();
        match self.member.propose_request(id, &cmd) {
            Ok(()) => {
                if let Some(w) = waiting {
                    self.waiters.insert(id.seq, w);
                }
                Some(id.seq)
            }
            Err(e) => {
                self.fail(waiting, Refusal::Raft(e));
                None
            }
        }
    }

    fn ask_read_index(&mut self) {
        if self.reads_pending.is_empty() {
            return;
        }
        if self.stopped.is_some() {
            self.reads_pending.clear();
            return;
        }
        self.read_ctx += 1;
        let ctx = self.read_ctx;
        let reads = std::mem::take(&mut self.reads_pending);
        let asked = self
            .member
            .raw_mut()
            .read_index(Bytes::copy_from_slice(&ctx.to_be_bytes()));
        match asked {
            Ok(()) => {
                self.reads_asked.insert(ctx, reads);
            }
            // No leader to confirm with: asked again next turn, as etcd retries its round,
            // until a leader answers or the reads time out.
            Err(_) => self.reads_pending = reads,
        }
    }

    /// The leader's lease work: revoke what expired, checkpoint what was renewed.
    /// The leader's v2 expiry: when a v2 node's TTL ran out by `wall_ms` (milliseconds since
    /// the Unix epoch, on this member's clock: the v2 TTLs are wall-clock times, as etcd's
    /// are), proposes the `Sync` that removes it, at most once every
    /// [`V2_SYNC_INTERVAL_MS`] of `now_ms`. Call it once per tick.
    pub fn v2_expiry_work(&mut self, wall_ms: u64, now_ms: u64) {
        if self.promoted_term.is_none()
            || self.stopped.is_some()
            || now_ms < self.v2_sync_after_ms
            || self.config.bug(PolicyBug::V2ExpiryNotProposed)
        {
            return;
        }
        match self.member.applier().v2().store.next_expiry_ms() {
            Some(t) if t <= wall_ms => {}
            _ => return,
        }
        self.v2_sync_after_ms = now_ms + V2_SYNC_INTERVAL_MS;
        self.propose(Command::V2(V2Command::Sync { now_ms: wall_ms }), None);
    }

    /// How many of the latest applied entries a compaction keeps (see [`entries_to_keep`]).
    fn entries_to_keep(&self) -> u64 {
        entries_to_keep(
            &self.applied_recent,
            self.config.snapshot_catchup_entries,
            LOG_COMPACTION_BYTES_MAX,
        )
    }

    fn lease_work(&mut self, now_ms: u64) {
        if self.promoted_term.is_none() || self.stopped.is_some() {
            return;
        }
        let lessor = self.member.applier_mut().lessor_mut();
        let expired = lessor.expired(now_ms);
        let batch = lessor.poll_checkpoints(now_ms);
        if !self.config.bug(PolicyBug::ExpiredLeasesKept) {
            for id in expired {
                self.propose(Command::LeaseRevoke { id }, None);
            }
        }
        if !batch.is_empty() {
            // A set: the batch and the waiting renews can both run to thousands.
            let carried: BTreeSet<LeaseId> = batch.iter().map(|(id, _)| *id).collect();
            let (ride, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.renews_pending)
                .into_iter()
                .partition(|(id, _, _)| carried.contains(id));
            self.renews_pending = wait;
            let carried = batch.clone();
            if let Some(seq) = self.propose(
                Command::LeaseCheckpoint(batch),
                Some(Waiting::KeepAlives(ride)),
            ) {
                self.checkpoints_proposed.insert(seq, (now_ms, carried));
            }
        }
    }

    fn handle_output(&mut self, out: Output, now_ms: u64) {
        if let Some(ss) = &out.soft_state {
            self.on_soft_state(ss);
        }
        for rs in out.read_states {
            let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_ref()) else {
                continue;
            };
            if let Some(reads) = self.reads_asked.remove(&u64::from_be_bytes(ctx)) {
                self.reads_ready.push_back((rs.index, reads));
            }
        }
        let applied_n = out.applied.len() as u64;
        let keep_max = self.config.snapshot_catchup_entries as usize;
        for entry in &out.applied {
            let bytes = entry.data.len() as u64;
            self.applied_bytes_since_compaction += bytes;
            self.applied_recent.push_back(bytes);
        }
        while self.applied_recent.len() > keep_max {
            self.applied_recent.pop_front();
        }
        let term = self.member.raw().raft.term;
        for entry in out.applied {
            match entry.outcome {
                Outcome::Empty => {
                    // A leader's first entry of its term: the earlier terms' entries are all
                    // applied, so the lessor may take over (see `lease` docs).
                    if entry.term == term && self.is_leader() && self.promoted_term != Some(term) {
                        let grace = self.config.election_ms;
                        self.member
                            .applier_mut()
                            .lessor_mut()
                            .promote(now_ms, grace);
                        self.promoted_term = Some(term);
                    }
                }
                Outcome::Command { result, revision } => {
                    let Some(req) = entry.request.filter(|r| r.member == self.member_id) else {
                        continue;
                    };
                    if let Some((proposed_ms, batch)) = self.checkpoints_proposed.remove(&req.seq) {
                        let lessor = self.member.applier_mut().lessor_mut();
                        lessor.checkpoint_committed(proposed_ms, &batch);
                    }
                    let Some(waiting) = self.waiters.remove(&req.seq) else {
                        continue;
                    };
                    let header = Header {
                        revision,
                        raft_term: entry.term.max(term),
                    };
                    match waiting {
                        Waiting::Command(t) => {
                            let r = result.map(|a| (a, header)).map_err(Refusal::Apply);
                            self.respond(t.waiter, Response::Command(r));
                        }
                        Waiting::KeepAlives(list) => {
                            for (_, ttl, t) in list {
                                self.respond(t.waiter, Response::KeepAlive(Ok((ttl, header))));
                            }
                        }
                    }
                }
                Outcome::ConfChange(result) => {
                    let cc = ConfChange::decode(&entry.data).ok();
                    if let Ok(cs) = &result {
                        self.on_membership(cs);
                    }
                    if let Some(cc) = cc
                        && let Some(at) = self.conf_waiters.iter().position(|(c, _)| *c == cc)
                    {
                        let (_, t) = self.conf_waiters.swap_remove(at);
                        let r = result.map_err(Refusal::Raft);
                        self.respond(t.waiter, Response::ConfChange(r));
                    }
                }
            }
        }
        self.applied_since_compaction += applied_n;
        // A snapshot from the leader changes the membership without a conf change entry.
        let cs = self.membership_now();
        if cs != self.conf_state {
            self.on_membership(&cs);
        }
    }

    fn on_soft_state(&mut self, ss: &SoftState) {
        if ss.role != StateRole::Leader && self.promoted_term.take().is_some() {
            self.member.applier_mut().lessor_mut().demote();
            self.checkpoints_proposed.clear();
            // Renews waiting for a checkpoint will not get one from this member.
            for (_, _, t) in std::mem::take(&mut self.renews_pending) {
                self.respond(t.waiter, Response::KeepAlive(Err(Refusal::LeaderChanged)));
            }
        }
    }

    /// Notes the membership `cs` (just applied, or known at the start) for the caller, and
    /// stops this member if it is no longer in it.
    pub fn on_membership(&mut self, cs: &ConfState) {
        self.conf_state = cs.clone();
        self.membership_changed = true;
        if !cs.contains(self.member_id) && *cs != ConfState::default() {
            self.stop(REMOVED_MESSAGE.to_string());
        }
    }

    fn stop(&mut self, why: String) {
        if self.stopped.is_some() {
            return;
        }
        self.stopped = Some(why);
        self.refuse_where(|_| true, Refusal::Stopped);
    }

    /// Drops the waiters whose clients gave up.
    fn prune(&mut self) {
        self.waiters.retain(|_, w| match w {
            Waiting::Command(t) => !t.waiter.abandoned(),
            Waiting::KeepAlives(list) => list.iter().any(|(_, _, t)| !t.waiter.abandoned()),
        });
        self.conf_waiters.retain(|(_, t)| !t.waiter.abandoned());
    }

    fn timed(&self, waiter: W, now_ms: u64) -> Timed<W> {
        Timed {
            waiter,
            due_ms: now_ms.saturating_add(self.config.request_timeout_ms),
        }
    }

    /// The earliest time a request times out, looking at the oldest request of each kind
    /// (requests of a kind arrive in order and all wait equally long; a keep-alive riding a
    /// checkpoint may be older than its proposal, and `tick` catches it within a heartbeat).
    fn due_ms(&self) -> Option<u64> {
        let waiter = self.waiters.values().next().and_then(Waiting::due_ms);
        let conf = self.conf_waiters.first().map(|(_, t)| t.due_ms);
        let pending = self.reads_pending.first().map(|r| r.timed().due_ms);
        let asked = self.reads_asked.values().find_map(|reads| reads.first());
        let ready = self
            .reads_ready
            .front()
            .and_then(|(_, reads)| reads.first());
        let reads = [asked, ready]
            .into_iter()
            .flatten()
            .map(|r| r.timed().due_ms);
        let renew = self.renews_pending.first().map(|(_, _, t)| t.due_ms);
        let token = self.token_waits.first().map(|w| w.timed.due_ms);
        [waiter, conf, pending, renew, token]
            .into_iter()
            .flatten()
            .chain(reads)
            .min()
    }

    /// Answers every request whose time is up with [`Refusal::Timeout`]. What it proposed
    /// may still apply; its client then cannot tell, as with etcd's "request timed out".
    fn expire(&mut self, now_ms: u64) {
        self.refuse_where(|t| t.due_ms <= now_ms, Refusal::Timeout);
    }

    /// Answers every waiting request that `late` picks with `why`.
    fn refuse_where(&mut self, late: impl Fn(&Timed<W>) -> bool, why: Refusal) {
        let mut out: Vec<(W, Response)> = Vec::new();
        let seqs: Vec<u64> = self
            .waiters
            .iter()
            .filter(|(_, w)| match w {
                Waiting::Command(t) => late(t),
                Waiting::KeepAlives(list) => list.iter().any(|(_, _, t)| late(t)),
            })
            .map(|(seq, _)| *seq)
            .collect();
        for seq in seqs {
            match self.waiters.remove(&seq).expect("listed above") {
                Waiting::Command(t) => out.push((t.waiter, Response::Command(Err(why.clone())))),
                Waiting::KeepAlives(list) => {
                    let (gone, kept): (Vec<_>, Vec<_>) =
                        list.into_iter().partition(|(_, _, t)| late(t));
                    out.extend(
                        gone.into_iter()
                            .map(|(_, _, t)| (t.waiter, Response::KeepAlive(Err(why.clone())))),
                    );
                    if !kept.is_empty() {
                        self.waiters.insert(seq, Waiting::KeepAlives(kept));
                    }
                }
            }
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.conf_waiters)
            .into_iter()
            .partition(|(_, t)| late(t));
        self.conf_waiters = kept;
        out.extend(
            gone.into_iter()
                .map(|(_, t)| (t.waiter, Response::ConfChange(Err(why.clone())))),
        );
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.token_waits)
            .into_iter()
            .partition(|w| late(&w.timed));
        self.token_waits = kept;
        out.extend(
            gone.into_iter()
                .map(|w| (w.timed.waiter, Response::Command(Err(why.clone())))),
        );
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.renews_pending)
            .into_iter()
            .partition(|(_, _, t)| late(t));
        self.renews_pending = kept;
        out.extend(
            gone.into_iter()
                .map(|(_, _, t)| (t.waiter, Response::KeepAlive(Err(why.clone())))),
        );
        let mut expire_reads = |reads: &mut Vec<Read<W>>| {
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(reads)
                .into_iter()
                .partition(|r| late(r.timed()));
            *reads = kept;
            out.extend(gone.into_iter().map(|r| match r {
                Read::Client(t) => (t.waiter, Response::Read(Err(why.clone()))),
                Read::KeepAlive(_, t) => (t.waiter, Response::KeepAlive(Err(why.clone()))),
            }));
        };
        expire_reads(&mut self.reads_pending);
        for reads in self.reads_asked.values_mut() {
            expire_reads(reads);
        }
        for (_, reads) in self.reads_ready.iter_mut() {
            expire_reads(reads);
        }
        self.reads_asked.retain(|_, reads| !reads.is_empty());
        self.reads_ready.retain(|(_, reads)| !reads.is_empty());
        self.responses.extend(out);
    }

    /// Whether `cmd` fits in the quota beside the data in use, as etcd's quota decides before
    /// a request goes to Raft. When it does not, this member raises NOSPACE (once per
    /// request timeout while the raise is in flight): writes that add data are refused on
    /// every member until an operator frees space and disarms it, as in etcd.
    fn fits_quota(&mut self, cmd: &Command, now_ms: u64) -> bool {
        let in_use = self.space().in_use_bytes;
        if in_use + space::cost_bytes(cmd) <= self.config.quota_backend_bytes {
            return true;
        }
        if self.stopped.is_some()
            || self
                .quota_alarm_asked_ms
                .is_some_and(|at| now_ms.saturating_sub(at) < self.config.request_timeout_ms)
        {
            return false;
        }
        self.quota_alarm_asked_ms = Some(now_ms);
        let raise = Command::Alarm {
            action: AlarmAction::Activate,
            member: self.member_id,
            kind: ALARM_NOSPACE,
        };
        self.propose(raise, None);
        false
    }
}

/// How many of the latest applied entries a compaction keeps for slow followers: `keep_max`
/// (etcd's `snapshot_catchup_entries`), or fewer when the newest of `recent` (entry sizes,
/// oldest first, at most `keep_max` of them) hold more than `bytes_max`.
fn entries_to_keep(recent: &VecDeque<u64>, keep_max: u64, bytes_max: u64) -> u64 {
    debug_assert!(recent.len() as u64 <= keep_max);
    let mut bytes = 0;
    let within = (recent.iter().rev())
        .take_while(|&&b| {
            bytes += b;
            bytes <= bytes_max
        })
        .count();
    if within == recent.len() {
        // All of them fit: keep as many as configured (after a restart fewer are known).
        keep_max
    } else {
        within as u64
    }
}

#[cfg(test)]
mod keep_tests {
    use super::*;

    fn recent(sizes: &[u64]) -> VecDeque<u64> {
        sizes.iter().copied().collect()
    }

    #[test]
    fn small_entries_keep_the_configured_count() {
        assert_eq!(entries_to_keep(&recent(&[300; 50]), 5_000, 64 << 20), 5_000);
        assert_eq!(entries_to_keep(&recent(&[]), 5_000, 64 << 20), 5_000);
        assert_eq!(entries_to_keep(&recent(&[]), 0, 64 << 20), 0);
    }

    #[test]
    fn large_entries_keep_only_the_newest_within_the_byte_budget() {
        let mib = 1 << 20;
        // 100 entries of 1 MiB, newest last: 64 of them fit in 64 MiB.
        assert_eq!(entries_to_keep(&recent(&[mib; 100]), 5_000, 64 * mib), 64);
        // The newest alone is over the budget: keep none.
        assert_eq!(
            entries_to_keep(&recent(&[1, 1, 100 * mib]), 5_000, 64 * mib),
            0
        );
        // Counted from the newest: small recent entries fit behind an old large one.
        assert_eq!(
            entries_to_keep(&recent(&[100 * mib, 1, 1, 1]), 5_000, 64 * mib),
            3
        );
    }
}
