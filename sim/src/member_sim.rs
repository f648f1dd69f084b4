//! `sim member`: a deterministic, in-process simulation of a cluster of real member servers
//! (`oxcd::node::MemberServer`: Raft, the apply side and the member's policy) on simulated
//! disks, with no madsim and no tokio. One seeded ChaCha RNG drives the network (delays, drops,
//! reordering, partitions), crashes and restarts (unsynced writes lost or torn), membership
//! changes,
//! and the clients: compare-and-set registers written and read linearizably through any member,
//! leases granted and kept alive through whichever member is leader, and alarms raised and
//! cleared through any member.
//!
//! A run has a safety phase (faults and clients) and a liveness phase (faults stopped, every
//! member back: all must agree on one applied index within a bound). Checked:
//! - the register history is linearizable (the porcupine-style checker);
//! - no lease expires before the deadline its last acknowledged keep-alive promised (call time
//!   plus TTL), seen as the lease vanishing from a member that held it, or a keep-alive told
//!   "not found";
//! - two members that applied the same index hold the same alarms and revision, and after
//!   the liveness phase every member holds the same alarms, revision and KV hash;
//! - a watcher that moves between members as they crash gets every revision of the register
//!   keys once, in order, none skipped, as the history holds it;
//! - once nobody renews them, leases run out: after the liveness phase, a TTL, a leader's grace
//!   and a margin, no member holds one;
//! - the v2 store ([`v2`]): its registers in the same linearizability check, its watcher's
//!   events once, in order and complete, in-order keys named after their indexes and kept,
//!   no key outliving its TTL beyond the grace; the same v2 index at the same applied index,
//!   and the same v2 tree at the end.
//!
//! Membership changes run throughout: a learner is added (after the member server's checks),
//! promoted once in sync, and a voter other than the leader removed, one change at a time.
//!
//! What it does not do: no clock skew (one clock for every member; the madsim harness has it).

use crate::checker::history_files::{RegisterInput, RegisterOutput};
use crate::checker::linearizability::{Limits, Operation, Verdict, check_operations};
use crate::checker::registers::{KeyedInput, RegistersModel};
use crate::fnv::Fnv;
use crate::raft_sim::network::{Network, NetworkOptions};
use bytes::Bytes;
use oxcd::auth::{AuthCommand, AuthError, PermKind, Permission};
use oxcd::lease::{LeaseId, LessorConfig};
use oxcd::mvcc::{
    Compare, CompareResult, CompareTarget, EventKind, PutRequest, RangeRequest, RequestOp,
    StreamId, TxnRequest, WatchConfig, WatchCreate, prefix_end,
};
use oxcd::node::{
    ALARM_NOSPACE, AlarmAction, Applied, Command, Credential, Member, MemberConfig, MemberRecord,
    MemberServer, PolicyBug, PolicyConfig, REMOVED_MESSAGE, Refusal, Response, Waiter,
    WatchRequest, WatchTaken,
};
use oxcd::raft::{self, ConfChange, ConfChangeKind, MessageKind, NodeId};
use oxcd::storage::{DiskFaults, SimDisk};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use v2::{V2Model, V2Op};

mod v2;

/// Simulated milliseconds per tick: one heartbeat.
const TICK_MS: u64 = 100;
pub const ELECTION_MS: u64 = 1000;
/// Leases' TTL, in seconds (the lessor's minimum for a 1 s election timeout is 2 s).
const LEASE_TTL_S: i64 = 3;
/// A client gives up on a request after this long (its outcome is then unknown).
const CLIENT_TIMEOUT_MS: u64 = 3000;
/// Upper bound on delivery and Ready rounds within one tick.
const ROUNDS_PER_TICK_MAX: usize = 32;
const REGISTER_KEYS: u32 = 8;
const REGISTER_CLIENTS: usize = 4;
const LEASE_CLIENTS: usize = 2;
/// The client that raises and clears alarms, then the one that changes the membership.
const ALARM_CLIENT: usize = REGISTER_CLIENTS + LEASE_CLIENTS;
const MEMBERSHIP_CLIENT: usize = ALARM_CLIENT + 1;
/// The client that sets auth up (as root), then grants and revokes the writer's permissions.
const AUTH_CLIENT: usize = MEMBERSHIP_CLIENT + 1;
/// The register client that writes as the user `writer` (its commands are checked when they
/// enter and again when they apply); the other register clients' commands are unchecked.
const WRITER_CLIENT: usize = REGISTER_CLIENTS - 1;
/// The register keys the writer is granted at first, whose grants then come and go; it is
/// never granted the others.
const WRITER_KEYS: u32 = 4;
/// The clients of the v2 store, after the auth client.
const V2_CLIENTS: usize = 2;
/// IDs of members added while a run goes on start here.
const JOINED_ID_MIN: NodeId = 100;

/// What one run simulates.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    /// Founding voters: 3 or 5.
    pub nodes: usize,
    /// Ticks of the safety phase.
    pub ticks: u64,
    /// Ticks the liveness phase may take at most.
    pub liveness_ticks_max: u64,
    /// A deliberate policy mistake to switch on in every member.
    pub bug: Option<PolicyBug>,
    /// The lessors' `renew_cover_ms`, if not their default (half an election timeout).
    pub renew_cover_ms: Option<u64>,
}

impl Options {
    pub fn new(seed: u64, nodes: usize) -> Options {
        Options {
            seed,
            nodes,
            ticks: 600,
            liveness_ticks_max: 600,
            bug: None,
            renew_cover_ms: None,
        }
    }
}

/// What one run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub ticks: u64,
    pub messages: u64,
    pub register_ops: u64,
    pub register_ops_known: u64,
    pub keep_alives_acked: u64,
    /// Keep-alives the members answered under a committed checkpoint's cover, without a
    /// checkpoint of their own.
    pub keep_alives_covered: u64,
    /// Keep-alives sent for a lease after its revoke was acknowledged (each must find it gone).
    pub keep_alives_after_revoke: u64,
    pub leases_granted: u64,
    pub alarm_changes: u64,
    /// Auth commands the auth client sent (setup, grants, revokes).
    pub auth_changes: u64,
    /// The writer's writes that applied after auth was enabled.
    pub auth_writes: u64,
    pub crashes: u64,
    pub partitions: u64,
    /// Membership changes proposed (learners added and promoted, voters removed).
    pub membership_changes: u64,
    /// Watch events the watcher received, and the streams it opened for them (one, then one
    /// more each time it moved to another member).
    pub watch_events: u64,
    pub watch_streams: u64,
    /// v2 register operations with a known outcome, events the v2 watcher got, and the
    /// times it resumed past a cleared history.
    pub v2_ops_known: u64,
    pub v2_watch_events: u64,
    pub v2_watch_gaps: u64,
    pub violation: Option<String>,
    pub hash: u64,
}

impl Report {
    /// Adds what a member server counted before it goes away (a crash, a removal, the end).
    fn count_server(&mut self, s: &Server) {
        self.keep_alives_covered += s.keep_alives_covered();
    }
}

/// Names the client request a member answers.
#[derive(Clone, Copy, Debug)]
struct Token {
    client: usize,
    op: u64,
}

impl Waiter for Token {
    fn abandoned(&self) -> bool {
        false
    }
}

type Server = MemberServer<SimDisk, Token>;

struct Node {
    disk: SimDisk,
    server: Option<Server>,
    /// Removed from the cluster (it stopped itself): never started again.
    removed: bool,
    /// Leases seen on this member since its last start.
    leases_seen: BTreeSet<LeaseId>,
}

/// What a client is waiting for.
#[derive(Clone, Debug)]
enum Pending {
    Register {
        key: u32,
        input: RegisterInput,
        history: usize,
    },
    Grant,
    KeepAlive {
        id: LeaseId,
    },
    Revoke {
        id: LeaseId,
    },
    Alarm,
    Membership(Change),
    /// An auth command as root: a setup step, or a grant (`Some(true)`) or revoke
    /// (`Some(false)`) of the writer's permission on a register key.
    Auth {
        key: u32,
        grant: Option<bool>,
    },
    /// A v2 client's request.
    V2(V2Op),
}

/// What the run knows of the writer's permissions, for the auth check.
#[derive(Default)]
struct AuthModel {
    /// Setup steps done.
    setup_done: usize,
    /// The revision auth was enabled at, once known.
    enabled_at: Option<i64>,
    /// Per writer key: whether it is granted now, as far as known.
    granted: BTreeMap<u32, bool>,
    /// Per writer key: the known grants and revokes after enabling, with the store revision
    /// they applied at.
    changes: BTreeMap<u32, Vec<(i64, bool)>>,
    /// Per writer key: a change whose outcome is unknown was sent when the store's revision
    /// was at least this (it may apply at this revision or any later one); writes to it from
    /// this revision on are not checked.
    uncertain_from: BTreeMap<u32, i64>,
    /// The writer's successful writes: key, revision, and whether it made the revision (a
    /// put, a swap that succeeded) or read it (a swap whose compare failed).
    writes: Vec<(u32, i64, bool)>,
    /// The highest store revision any answer carried.
    revision_seen: i64,
    /// Setup grants in flight, by the auth client's operation number: the key, and the
    /// revision seen when it was sent.
    pending_setup: BTreeMap<u64, (u32, i64)>,
}

/// A membership change the membership client asked for.
#[derive(Clone, Copy, Debug)]
enum Change {
    AddLearner(NodeId),
    Promote(NodeId),
    Remove(NodeId),
}

struct Client {
    /// The operation in flight: its number, where it was sent, what it is, and when.
    pending: Option<(u64, NodeId, Pending, u64)>,
    next_op: u64,
    /// A lease client's lease: its ID, the latest deadline promised, renews left.
    lease: Option<(LeaseId, u64, u32)>,
    /// Where this client last found the leader.
    leader_hint: NodeId,
    /// A lease this client revoked (acknowledged): it sends one more keep-alive for it, to
    /// the member it last found leading, which must not find it alive.
    probe: Option<LeaseId>,
}

/// What a watcher got for one revision of the register keys: the revision, the key, and the
/// value written (`None`: deleted).
type Seen = (i64, Bytes, Option<Bytes>);

/// The watcher: one stream on the register keys on one member at a time; when its member goes
/// away (a crash) or drops the stream (a snapshot restore), it opens one on another member
/// from the revision after the last event it got, as etcd's clients resume.
#[derive(Default)]
struct Watcher {
    at: Option<(NodeId, StreamId)>,
    next_revision: i64,
    seen: Vec<Seen>,
    streams: u64,
}

struct World {
    options: Options,
    rng: ChaCha8Rng,
    tick: u64,
    nodes: BTreeMap<NodeId, Node>,
    net: Network,
    clients: Vec<Client>,
    history: Vec<Operation<KeyedInput, RegisterOutput>>,
    /// Event counter: the history's clock (calls and returns within a tick stay ordered).
    events: u64,
    /// Register operations that certainly took no effect (refused before or at apply): left
    /// out of the history.
    void: BTreeSet<usize>,
    /// Leases a client revoked (their disappearance is no violation).
    revoked: BTreeSet<LeaseId>,
    /// When each acknowledged revoke was acknowledged.
    revokes_acked: BTreeMap<LeaseId, u64>,
    /// The latest deadline promised for each lease.
    promised: BTreeMap<LeaseId, u64>,
    /// The raised alarm the alarm client will clear next, if any.
    alarm_up: Option<u64>,
    auth: AuthModel,
    trace: Fnv,
    report: Report,
    faults_on: bool,
    watcher: Watcher,
    v2: V2Model,
}

impl World {
    fn new(options: &Options) -> World {
        assert!(matches!(options.nodes, 3 | 5), "nodes must be 3 or 5");
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        // No duplicates: the peer transport sends each batch once, on one stream, and never
        // again, so a message arrives at most once. (A forwarded proposal delivered twice
        // would be applied twice, as in etcd; `sim raft` covers Raft's own tolerance of
        // duplicated messages.)
        let net = Network::new(NetworkOptions {
            drop_rate: [0.0, 0.01, 0.05][rng.gen_range(0..3)],
            duplicate_rate: 0.0,
            delay_ticks_max: rng.gen_range(1..=3),
        });
        let mut nodes = BTreeMap::new();
        for id in 1..=options.nodes as NodeId {
            let disk = SimDisk::new(rng.r#gen(), DiskFaults::default());
            nodes.insert(
                id,
                Node {
                    disk,
                    server: None,
                    removed: false,
                    leases_seen: BTreeSet::new(),
                },
            );
        }
        let clients = (0..AUTH_CLIENT + 1 + V2_CLIENTS)
            .map(|_| Client {
                pending: None,
                next_op: 0,
                lease: None,
                leader_hint: 1,
                probe: None,
            })
            .collect();
        let mut world = World {
            options: options.clone(),
            rng,
            tick: 0,
            nodes,
            net,
            clients,
            history: Vec::new(),
            events: 0,
            void: BTreeSet::new(),
            revoked: BTreeSet::new(),
            revokes_acked: BTreeMap::new(),
            promised: BTreeMap::new(),
            alarm_up: None,
            auth: AuthModel::default(),
            trace: Fnv::default(),
            report: Report {
                seed: options.seed,
                ..Report::default()
            },
            faults_on: true,
            watcher: Watcher {
                next_revision: 1,
                ..Watcher::default()
            },
            v2: V2Model::default(),
        };
        let ids: Vec<NodeId> = world.nodes.keys().copied().collect();
        for id in ids {
            world.start(id);
        }
        world
    }

    fn now_ms(&self) -> u64 {
        self.tick * TICK_MS
    }

    fn event(&mut self) -> u64 {
        self.events += 1;
        self.events
    }

    fn violation(&mut self, why: String) {
        if self.report.violation.is_none() {
            self.report.violation = Some(format!("tick {}: {why}", self.tick));
        }
    }

    /// Opens member `id` on its disk (founding the cluster on a fresh one).
    fn start(&mut self, id: NodeId) {
        // Founders know the founding voters; a member added later learns the membership from
        // the leader (its disk is fresh, and then it is not).
        let voters: Vec<NodeId> = if id < JOINED_ID_MIN {
            (1..=self.options.nodes as NodeId).collect()
        } else {
            Vec::new()
        };
        let mut raft_config = raft::Config::new(id);
        raft_config.election_ticks = (ELECTION_MS / TICK_MS) as usize;
        let mut lessor = LessorConfig::new(ELECTION_MS, TICK_MS);
        if let Some(ms) = self.options.renew_cover_ms {
            lessor.renew_cover_ms = ms;
        }
        let config = MemberConfig {
            raft: raft_config,
            initial_voters: voters.clone(),
            cluster_id: 0x5eed,
            initial_members: voters.iter().map(|&v| (v, record(v).encode())).collect(),
            lessor,
            watch: WatchConfig::default(),
            txn_ops_max: 128,
            force_new_cluster: false,
        };
        let now = self.now_ms();
        let rng = ChaCha8Rng::seed_from_u64(self.rng.r#gen());
        let node = self.nodes.get_mut(&id).expect("a member");
        let disk = node.disk.clone();
        let member = match Member::open(disk, config, rng, now) {
            Ok(m) => m,
            Err(e) => {
                let why = format!("member {id} cannot reopen its disk: {e}");
                self.violation(why);
                return;
            }
        };
        let mut policy = PolicyConfig::new(ELECTION_MS);
        policy.planted_bug = self.options.bug;
        // Request numbers and lease IDs start from the member's clock and its starts, as the
        // server starts them from the wall clock.
        let start = (now + 1) << 20 | u64::from(self.rng.r#gen::<u16>());
        let id_gen = oxcd::lease::IdGen::new(id, now + self.rng.gen_range(0..1000));
        let node = self.nodes.get_mut(&id).expect("a member");
        node.server = Some(MemberServer::new(member, policy, start, id_gen));
        node.leases_seen.clear();
    }

    /// Member `id` left the cluster: once it stops itself (it learns of its removal) or now if
    /// it is down, it is never started again.
    fn retire(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a member");
        node.removed = true;
        if let Some(s) = node.server.take() {
            self.report.count_server(&s);
        }
        if debug() {
            eprintln!("t{} m{id} removed", self.tick);
        }
    }

    fn crash(&mut self, id: NodeId) {
        if debug() {
            eprintln!("t{} crash m{id}", self.tick);
        }
        let node = self.nodes.get_mut(&id).expect("a member");
        let Some(s) = node.server.take() else {
            return;
        };
        self.report.count_server(&s);
        node.disk.crash();
        node.disk = node.disk.reopen();
        self.net.lose_unsent(id, self.tick);
        self.report.crashes += 1;
        self.trace.u64(0xc4a5).u64(id);
    }

    fn up(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.server.is_some() && !n.removed)
            .map(|(id, _)| *id)
            .collect()
    }

    fn server(&mut self, id: NodeId) -> Option<&mut Server> {
        self.nodes.get_mut(&id)?.server.as_mut()
    }

    fn nemesis(&mut self) {
        if !self.rng.gen_bool(0.03) {
            return;
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        match self.rng.gen_range(0..4) {
            0 => {
                // Isolate the leader, if one is known, else anyone.
                let leader = self.leader();
                let victim = leader.unwrap_or(ids[self.rng.gen_range(0..ids.len())]);
                let rest: Vec<NodeId> = ids.iter().copied().filter(|&i| i != victim).collect();
                self.net.cut_between(&[victim], &rest);
                if debug() {
                    eprintln!("t{} isolate m{victim}", self.tick);
                }
                self.report.partitions += 1;
                self.trace.u64(0x9a27).u64(victim);
            }
            1 => {
                self.net.heal();
                self.trace.u64(0x4ea1);
            }
            2 => {
                let up = self.up();
                // Keep a majority up: the liveness phase restarts the rest.
                let members = self.nodes.values().filter(|n| !n.removed).count();
                if up.len() > members / 2 + 1 {
                    let victim = up[self.rng.gen_range(0..up.len())];
                    self.crash(victim);
                }
            }
            _ => {
                let down: Vec<NodeId> = ids
                    .iter()
                    .copied()
                    .filter(|id| self.nodes[id].server.is_none() && !self.nodes[id].removed)
                    .collect();
                if !down.is_empty() {
                    let id = down[self.rng.gen_range(0..down.len())];
                    self.start(id);
                    self.trace.u64(0x5747).u64(id);
                    if debug() {
                        eprintln!("t{} restart m{id}", self.tick);
                    }
                }
            }
        }
    }

    /// Idle clients start their next operation.
    fn clients_act(&mut self) {
        for c in 0..self.clients.len() {
            if self.clients[c].pending.is_some() || !self.rng.gen_bool(0.3) {
                continue;
            }
            let up = self.up();
            if up.is_empty() {
                return;
            }
            let at = up[self.rng.gen_range(0..up.len())];
            if c < REGISTER_CLIENTS {
                self.register_op(c, at);
            } else if c < ALARM_CLIENT {
                self.lease_op(c, &up);
            } else if c == MEMBERSHIP_CLIENT {
                if self.rng.gen_bool(0.05) {
                    self.membership_op(c);
                }
            } else if c == AUTH_CLIENT {
                if self.rng.gen_bool(0.5) {
                    self.auth_op(c, at);
                }
            } else if c > AUTH_CLIENT {
                self.v2_op(c, at);
            } else if self
                .rng
                .gen_bool(if self.alarm_up.is_some() { 0.3 } else { 0.02 })
            {
                // Alarms come rarely and go soon: NOSPACE refuses every write meanwhile.
                self.alarm_op(c, at);
            }
        }
    }

    fn send(
        &mut self,
        c: usize,
        at: NodeId,
        pending: Pending,
        call: impl FnOnce(&mut Server, Token, u64),
    ) {
        let op = self.clients[c].next_op;
        self.clients[c].next_op += 1;
        let now = self.now_ms();
        self.clients[c].pending = Some((op, at, pending, now));
        self.trace.u64(0xca11).u64(c as u64).u64(at);
        if let Some(s) = self.server(at) {
            call(s, Token { client: c, op }, now);
        }
    }

    /// Draws a register operation of one of `kinds` (0 read, 1 write, 2 compare-and-set) on
    /// history key `key` for client `c`, and records its call: the operation and its place
    /// in the history.
    fn start_register_op(
        &mut self,
        c: usize,
        key: u32,
        kinds: std::ops::Range<u32>,
    ) -> (RegisterInput, usize) {
        let value = self.rng.gen_range(1..20u64);
        let input = match self.rng.gen_range(kinds) {
            0 => RegisterInput::Read,
            1 => RegisterInput::Write(value),
            _ => RegisterInput::Cas {
                from: self.rng.gen_range(1..20u64),
                to: value,
            },
        };
        let call = self.event();
        self.history.push(Operation {
            client: c as u64,
            input: KeyedInput { key, op: input },
            call,
            output: None,
            ret: u64::MAX,
        });
        (input, self.history.len() - 1)
    }

    /// Records a register operation's return at event `ret` (`output` `None`: unknown). A
    /// refused write took no effect, and a read with no answer says nothing: neither
    /// constrains the history, so both leave it. Returns whether the outcome is known.
    fn finish_register_op(
        &mut self,
        history: usize,
        input: RegisterInput,
        output: Option<RegisterOutput>,
        refused: bool,
        ret: u64,
    ) -> bool {
        let h = &mut self.history[history];
        h.output = output;
        h.ret = ret;
        if refused || (input == RegisterInput::Read && output.is_none()) {
            self.void.insert(history);
        }
        output.is_some()
    }

    fn register_op(&mut self, c: usize, at: NodeId) {
        let key = self.rng.gen_range(0..REGISTER_KEYS);
        // The writer writes only (its reads would be unchecked reads like any other).
        let kinds = if c == WRITER_CLIENT { 1..3 } else { 0..3 };
        let (input, history) = self.start_register_op(c, key, kinds);
        let name = register_key(key);
        let pending = Pending::Register {
            key,
            input,
            history,
        };
        let writer = c == WRITER_CLIENT;
        // The writer's commands are checked and wrapped as they enter; one refused there
        // took no effect.
        let propose = move |s: &mut Server, cmd: Command, t: Token, now: u64| {
            if !writer {
                s.handle_propose(cmd, t, now);
                return;
            }
            s.handle_propose_as(&Credential::CommonName("writer".into()), cmd, t, now);
        };
        match input {
            RegisterInput::Read => self.send(c, at, pending, |s, t, now| s.handle_read(t, now)),
            RegisterInput::Write(v) => {
                let cmd = Command::Put(PutRequest {
                    key: name,
                    value: Bytes::from(v.to_string()),
                    ..Default::default()
                });
                self.send(c, at, pending, |s, t, now| propose(s, cmd, t, now));
            }
            RegisterInput::Cas { from, to } => {
                let cmd = Command::Txn(TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Value(Bytes::from(from.to_string())),
                        key: name.clone(),
                        range_end: Bytes::new(),
                    }],
                    success: vec![RequestOp::Put(PutRequest {
                        key: name,
                        value: Bytes::from(to.to_string()),
                        ..Default::default()
                    })],
                    failure: vec![],
                });
                self.send(c, at, pending, |s, t, now| propose(s, cmd, t, now));
            }
        }
    }

    /// The auth client's next step, as root: the setup (users root and writer, role w with
    /// read-write on the first writer keys, granted to writer, auth enabled), then grants and
    /// revokes of w's permission on a writer key whose state is known.
    fn auth_op(&mut self, c: usize, at: NodeId) {
        let setup = setup_commands();
        let (cmd, key, grant) = if self.auth.setup_done < setup.len() {
            let step = setup[self.auth.setup_done].clone();
            // A setup grant whose outcome is unknown may still apply at any later revision.
            let key = match &step {
                AuthCommand::RoleGrantPermission { perm, .. } => {
                    let key = (0..WRITER_KEYS).find(|&k| register_key(k) == perm.key);
                    key.unwrap_or(u32::MAX)
                }
                _ => u32::MAX,
            };
            if key != u32::MAX {
                self.auth
                    .pending_setup
                    .insert(self.clients[c].next_op, (key, self.auth.revision_seen));
            }
            (step, key, None)
        } else {
            let certain: Vec<u32> = (0..WRITER_KEYS)
                .filter(|k| !self.auth.uncertain_from.contains_key(k))
                .collect();
            if certain.is_empty() {
                return;
            }
            let key = certain[self.rng.gen_range(0..certain.len())];
            let grant = !self.auth.granted.get(&key).copied().unwrap_or(true);
            let cmd = if grant {
                AuthCommand::RoleGrantPermission {
                    name: "w".into(),
                    perm: writer_permission(key),
                }
            } else {
                AuthCommand::RoleRevokePermission {
                    name: "w".into(),
                    key: register_key(key),
                    range_end: Bytes::new(),
                }
            };
            // Until its outcome is known, the key's grant may change at any revision from now.
            self.auth
                .uncertain_from
                .insert(key, self.auth.revision_seen);
            (cmd, key, Some(grant))
        };
        self.report.auth_changes += 1;
        self.send(c, at, Pending::Auth { key, grant }, |s, t, now| {
            let root = Credential::CommonName("root".into());
            s.handle_propose_as(&root, Command::Auth(cmd), t, now);
        });
    }

    /// The auth client's answer.
    fn auth_done(&mut self, op: u64, key: u32, grant: Option<bool>, response: &Response) {
        let outcome = match response {
            Response::Command(Ok((_, header))) => Ok(header.revision),
            Response::Command(Err(Refusal::Apply(oxcd::node::ApplyError::Auth(e)))) => {
                Err(Some(e.clone()))
            }
            _ => Err(None),
        };
        if debug() {
            eprintln!(
                "t{} auth op {op} key {key} grant {grant:?} -> {response:?}",
                self.tick
            );
        }
        if let Some((key, sent_at)) = self.auth.pending_setup.remove(&op)
            && outcome == Err(None)
        {
            self.auth_unknown(key, sent_at);
        }
        match grant {
            None => match outcome {
                Ok(revision) => {
                    if self.auth.setup_done + 1 == setup_commands().len() {
                        self.auth.enabled_at = Some(revision);
                    }
                    self.auth.setup_done += 1;
                }
                // Done before (a retry after an unknown outcome).
                Err(Some(AuthError::UserAlreadyExist | AuthError::RoleAlreadyExist)) => {
                    self.auth.setup_done += 1
                }
                Err(_) => {}
            },
            Some(grant) => match outcome {
                Ok(revision) => {
                    self.auth.uncertain_from.remove(&key);
                    self.auth.granted.insert(key, grant);
                    self.auth
                        .changes
                        .entry(key)
                        .or_default()
                        .push((revision, grant));
                }
                // Refused when it applied, or before: nothing changed.
                Err(Some(_)) => {
                    self.auth.uncertain_from.remove(&key);
                }
                // Unknown: the key stays uncertain.
                Err(None) => {}
            },
        }
    }

    /// A change to `key`'s grant sent when the store's revision was `sent_at` has an unknown
    /// outcome: it may apply at any later revision.
    fn auth_unknown(&mut self, key: u32, sent_at: i64) {
        let u = self.auth.uncertain_from.entry(key).or_insert(sent_at);
        *u = (*u).min(sent_at);
    }

    /// Every write the writer made after auth was enabled was permitted when it applied: the
    /// key was granted after every known change that applied before it (a change at the
    /// very revision a failed swap read may have applied on either side of it).
    fn check_auth(&mut self) {
        let Some(enabled_at) = self.auth.enabled_at else {
            return;
        };
        for &(key, revision, made) in &self.auth.writes {
            // A write made at a later revision applied after auth was enabled, and so did a
            // swap that read one.
            if revision <= enabled_at {
                continue;
            }
            if key >= WRITER_KEYS {
                let why = format!(
                    "the writer wrote {:?} at revision {revision}, a key it was never granted",
                    register_key(key)
                );
                self.violation(why);
                return;
            }
            if self
                .auth
                .uncertain_from
                .get(&key)
                .is_some_and(|&u| revision >= u)
            {
                continue;
            }
            let changes = self.auth.changes.get(&key).cloned().unwrap_or_default();
            let before: Vec<bool> = changes
                .iter()
                .filter(|(h, _)| *h < revision)
                .map(|(_, g)| *g)
                .collect();
            let at: Vec<bool> = changes
                .iter()
                .filter(|(h, _)| !made && *h == revision)
                .map(|(_, g)| *g)
                .collect();
            let mut possible = vec![before.last().copied().unwrap_or(true)];
            possible.extend(at);
            if !possible.contains(&true) {
                let why = format!(
                    "the writer wrote {:?} at revision {revision} while its permission was \
                     revoked (changes {changes:?})",
                    register_key(key)
                );
                self.violation(why);
                return;
            }
        }
    }

    fn lease_op(&mut self, c: usize, up: &[NodeId]) {
        let now = self.now_ms();
        if let Some(id) = self.clients[c].probe.take() {
            let hint = self.clients[c].leader_hint;
            let at = if up.contains(&hint) {
                hint
            } else {
                up[self.rng.gen_range(0..up.len())]
            };
            self.report.keep_alives_after_revoke += 1;
            self.send(c, at, Pending::KeepAlive { id }, |s, t, now| {
                s.handle_keep_alive(id, t, now)
            });
            return;
        }
        match self.clients[c].lease {
            None => {
                let at = up[self.rng.gen_range(0..up.len())];
                let cmd = Command::LeaseGrant {
                    id: 0,
                    ttl_s: LEASE_TTL_S,
                };
                self.send(c, at, Pending::Grant, |s, t, now| {
                    s.handle_propose(cmd, t, now)
                });
            }
            Some((id, _, 0)) => {
                // Done renewing: revoke it, or let it lapse.
                self.clients[c].lease = None;
                if self.rng.gen_bool(0.5) {
                    let at = up[self.rng.gen_range(0..up.len())];
                    self.revoked.insert(id);
                    let cmd = Command::LeaseRevoke { id };
                    self.send(c, at, Pending::Revoke { id }, |s, t, now| {
                        s.handle_propose(cmd, t, now)
                    });
                }
            }
            Some((id, promised, _)) => {
                // Renew a third of a TTL before the deadline, as clients do; or, half the
                // time, sooner, as a busy keep-alive stream does (so that renews a committed
                // checkpoint covers are answered at once, without waiting for their own).
                if now + (LEASE_TTL_S as u64 * 1000) * 2 / 3 < promised && self.rng.gen_bool(0.5) {
                    return;
                }
                let hint = self.clients[c].leader_hint;
                let at = if up.contains(&hint) {
                    hint
                } else {
                    up[self.rng.gen_range(0..up.len())]
                };
                self.send(c, at, Pending::KeepAlive { id }, |s, t, now| {
                    s.handle_keep_alive(id, t, now)
                });
            }
        }
    }

    /// Adds a learner, promotes it once it has caught up, then removes a voter (never the
    /// leader), one change at a time, through the leader, after the member server's checks.
    fn membership_op(&mut self, c: usize) {
        let Some(leader) = self.leader() else {
            return;
        };
        let s = self.nodes[&leader].server.as_ref().expect("up");
        let members = s.members();
        let learner = members.iter().find(|(_, l)| *l).map(|(m, _)| m.id);
        let voters: Vec<NodeId> = members
            .iter()
            .filter(|(_, l)| !*l)
            .map(|(m, _)| m.id)
            .collect();
        let (change, cc) = if let Some(id) = learner {
            if s.check_promote(id) != Ok(true) {
                return;
            }
            let mut cc = ConfChange::simple(ConfChangeKind::AddNode, id);
            cc.context = record(id).encode();
            (Change::Promote(id), cc)
        } else if voters.len() > self.options.nodes {
            let others: Vec<NodeId> = voters.into_iter().filter(|&v| v != leader).collect();
            let victim = others[self.rng.gen_range(0..others.len())];
            (
                Change::Remove(victim),
                ConfChange::simple(ConfChangeKind::RemoveNode, victim),
            )
        } else {
            let id = self
                .nodes
                .keys()
                .copied()
                .max()
                .unwrap_or(0)
                .max(JOINED_ID_MIN - 1)
                + 1;
            let r = record(id);
            if s.check_member_add(&r.peer_urls, true).is_err() {
                return;
            }
            let disk = SimDisk::new(self.rng.r#gen(), DiskFaults::default());
            self.nodes.insert(
                id,
                Node {
                    disk,
                    server: None,
                    removed: false,
                    leases_seen: BTreeSet::new(),
                },
            );
            let mut cc = ConfChange::simple(ConfChangeKind::AddLearnerNode, id);
            cc.context = r.encode();
            (Change::AddLearner(id), cc)
        };
        if debug() {
            eprintln!("t{} membership {change:?} via m{leader}", self.tick);
        }
        self.report.membership_changes += 1;
        self.send(c, leader, Pending::Membership(change), |s, t, now| {
            s.handle_conf_change(cc, t, now)
        });
    }

    fn alarm_op(&mut self, c: usize, at: NodeId) {
        let (action, member) = match self.alarm_up.take() {
            Some(member) => (AlarmAction::Deactivate, member),
            None => {
                let member = if self.rng.gen_bool(0.5) {
                    0
                } else {
                    self.rng.gen_range(1..=self.options.nodes as u64)
                };
                self.alarm_up = Some(member);
                (AlarmAction::Activate, member)
            }
        };
        let cmd = Command::Alarm {
            action,
            member,
            kind: ALARM_NOSPACE,
        };
        self.report.alarm_changes += 1;
        self.send(c, at, Pending::Alarm, |s, t, now| {
            s.handle_propose(cmd, t, now)
        });
    }

    /// A client's request got its answer from member `at`.
    fn complete(&mut self, at: NodeId, token: Token, response: Response) {
        let c = token.client;
        let Some((op, _, pending, call_ms)) = self.clients[c].pending.clone() else {
            return;
        };
        if op != token.op {
            return;
        }
        self.clients[c].pending = None;
        let now = self.now_ms();
        self.trace.u64(0xd0e).u64(c as u64).u64(op);
        if debug() && matches!(pending, Pending::Alarm) {
            eprintln!("t{} c{c} via m{at}: alarm -> {response:?}", self.tick);
        }
        if let Response::Command(Ok((_, h))) = &response {
            self.auth.revision_seen = self.auth.revision_seen.max(h.revision);
        }
        match (pending, response) {
            (
                Pending::Register {
                    key,
                    input,
                    history,
                },
                response,
            ) => {
                let why = if debug() {
                    format!("{response:?}")
                } else {
                    String::new()
                };
                let refused = matches!(
                    &response,
                    Response::Command(Err(Refusal::Raft(_) | Refusal::Apply(_) | Refusal::NoSpace))
                );
                let written = match &response {
                    Response::Command(Ok((Applied::Put(_), h))) => Some((h.revision, true)),
                    Response::Command(Ok((Applied::Txn(t), h))) => Some((h.revision, t.succeeded)),
                    _ => None,
                };
                if c == WRITER_CLIENT
                    && let Some((revision, made)) = written
                {
                    self.auth.writes.push((key, revision, made));
                    self.report.auth_writes += 1;
                }
                let output = match (input, response) {
                    (RegisterInput::Read, Response::Read(Ok(()))) => {
                        let read = RangeRequest {
                            key: register_key(key),
                            ..Default::default()
                        };
                        let server = self.server(at).expect("it answered");
                        let read = server.member_mut().range(&read);
                        if debug() {
                            let a = server.member().applier();
                            eprintln!(
                                "  read at m{at}: revision {} alarms {:?} kv {:?}",
                                a.kv().current_revision(),
                                a.alarms(),
                                read.as_ref().map(|r| r
                                    .kvs
                                    .first()
                                    .map(|kv| (kv.mod_revision, kv.value.clone())))
                            );
                        }
                        match read {
                            Ok(r) => Some(RegisterOutput::Read(
                                r.kvs.first().map(|kv| parse(&kv.value)),
                            )),
                            Err(_) => None,
                        }
                    }
                    (RegisterInput::Write(_), Response::Command(Ok(_))) => {
                        Some(RegisterOutput::Write)
                    }
                    (RegisterInput::Cas { .. }, Response::Command(Ok((Applied::Txn(t), _)))) => {
                        Some(RegisterOutput::Cas { ok: t.succeeded })
                    }
                    _ => None,
                };
                let ret = self.event();
                if debug() {
                    let (term, applied, leader) = self.server(at).map_or((0, 0, 0), |s| {
                        let r = s.member().raw();
                        (r.raft.term, r.raft.raft_log.applied, r.leader())
                    });
                    eprintln!(
                        "t{} c{c} via m{at} (term {term} applied {applied} leader {leader}): \
                         key {key} {input:?} -> {output:?} refused {refused} [{} .. {ret}] {why}",
                        self.tick, self.history[history].call
                    );
                }
                if self.finish_register_op(history, input, output, refused, ret) {
                    self.report.register_ops_known += 1;
                }
                self.report.register_ops += 1;
            }
            (Pending::Grant, Response::Command(Ok((Applied::LeaseGrant(g), _)))) => {
                let deadline = call_ms + g.ttl_s as u64 * 1000;
                self.clients[c].lease = Some((g.id, deadline, self.rng.gen_range(1..12)));
                self.promised.insert(g.id, deadline);
                self.report.leases_granted += 1;
            }
            (Pending::KeepAlive { id }, Response::KeepAlive(Ok((ttl, _)))) => {
                if ttl == 0 {
                    let promised = self.promised.get(&id).copied().unwrap_or(0);
                    if now < promised && !self.revoked.contains(&id) {
                        let terms: Vec<String> = self
                            .nodes
                            .iter()
                            .filter_map(|(n, node)| {
                                let s = node.server.as_ref()?;
                                Some(format!(
                                    "{n}: term {} leader {} has {}",
                                    s.member().raw().raft.term,
                                    s.is_leader(),
                                    s.member().applier().lessor().contains(id)
                                ))
                            })
                            .collect();
                        self.violation(format!(
                            "lease {id:x}: a keep-alive found it gone at {now} ms; its last \
                             acknowledged keep-alive promised it until {promised} ms (asked {at}; {})",
                            terms.join(", ")
                        ));
                    }
                    self.clients[c].lease = None;
                    return;
                }
                self.report.keep_alives_acked += 1;
                if let Some(&revoked_ms) = self.revokes_acked.get(&id)
                    && revoked_ms <= call_ms
                {
                    self.violation(format!(
                        "lease {id:x}: a keep-alive sent at {call_ms} ms through member {at} \
                         found it alive (TTL {ttl} s), though its revoke was acknowledged at \
                         {revoked_ms} ms"
                    ));
                    return;
                }
                let deadline = call_ms + ttl as u64 * 1000;
                if let Some((_, promised, left)) = &mut self.clients[c].lease {
                    *promised = (*promised).max(deadline);
                    *left -= 1;
                }
                let p = self.promised.entry(id).or_insert(0);
                *p = (*p).max(deadline);
            }
            (Pending::Auth { key, grant }, response) => self.auth_done(op, key, grant, &response),
            (Pending::V2(op), response) => self.v2_done(at, op, response),
            (Pending::Membership(change), Response::ConfChange(Ok(_))) => match change {
                Change::AddLearner(id) => self.start(id),
                Change::Promote(id) => {
                    self.trace.u64(0x9e0).u64(id);
                }
                Change::Remove(id) => self.retire(id),
            },
            (Pending::Revoke { id }, Response::Command(Ok(_))) => {
                self.revokes_acked.insert(id, now);
                self.clients[c].probe = Some(id);
            }
            (Pending::KeepAlive { .. }, Response::KeepAlive(Err(Refusal::NotLeader))) => {
                let leader = self
                    .server(at)
                    .map_or(raft::NONE, |s| s.member().raw().leader());
                if leader != raft::NONE {
                    self.clients[c].leader_hint = leader;
                } else {
                    let up = self.up();
                    self.clients[c].leader_hint = up[self.rng.gen_range(0..up.len())];
                }
            }
            _ => {}
        }
    }

    /// A client whose member went away or never answered gives up: the outcome is unknown.
    fn expire_clients(&mut self) {
        let now = self.now_ms();
        for c in 0..self.clients.len() {
            let Some((op, at, pending, call_ms)) = self.clients[c].pending.clone() else {
                continue;
            };
            let gone = self.nodes[&at].server.is_none();
            if !gone && now < call_ms + CLIENT_TIMEOUT_MS {
                continue;
            }
            self.clients[c].pending = None;
            if let Pending::Auth { .. } = pending
                && let Some((key, sent_at)) = self.auth.pending_setup.remove(&op)
            {
                self.auth_unknown(key, sent_at);
            }
            if let Pending::Register { history, .. } = pending {
                let ret = self.event();
                self.history[history].ret = ret;
                self.report.register_ops += 1;
            }
            if let Pending::V2(V2Op::Register { history, .. }) = pending {
                let ret = self.event();
                self.history[history].ret = ret;
            }
        }
    }

    /// Delivers due messages and runs every member's turn until the tick is quiet.
    fn run_rounds(&mut self) {
        for _ in 0..ROUNDS_PER_TICK_MAX {
            let mut busy = false;
            while let Some(due) = self.net.next_due(self.tick) {
                busy = true;
                match due {
                    Ok(m) => {
                        self.trace.u64(m.from).u64(m.to).u64(m.kind as u64);
                        if let Some(s) = self.server(m.to) {
                            let _ = s.step(m);
                        } else if m.kind == MessageKind::Snapshot {
                            // The peer is down: the transport cannot connect, drops what it
                            // queued, and reports the snapshot failed.
                            if let Some(s) = self.server(m.from) {
                                s.handle_unreachable(m.to);
                                s.handle_snapshot_report(m.to, false);
                            }
                        }
                    }
                    Err(m) if m.kind == MessageKind::Snapshot => {
                        if let Some(s) = self.server(m.from) {
                            s.handle_snapshot_report(m.to, false);
                        }
                    }
                    Err(_) => {}
                }
            }
            for id in self.up() {
                busy |= self.turn(id);
            }
            if !busy {
                return;
            }
        }
    }

    /// One turn of member `id`, in the member server's call order. True when it did work.
    fn turn(&mut self, id: NodeId) -> bool {
        let now = self.now_ms();
        let mut outbox = Vec::new();
        let mut answers = Vec::new();
        let mut worked = false;
        let mut failed = None;
        {
            let s = self.nodes.get_mut(&id).and_then(|n| n.server.as_mut());
            let Some(s) = s else { return false };
            s.start_turn(now);
            for _ in 0..4 {
                if !s.has_ready() {
                    break;
                }
                worked = true;
                outbox.extend(s.early_messages());
                match s.handle_ready(now) {
                    Ok(h) => {
                        outbox.extend(h.messages);
                        s.after_ready(now);
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            s.finish_turn(now);
            while let Some(a) = s.poll_response() {
                answers.push(a);
            }
            let _ = s.poll_membership();
        }
        if let Some(e) = failed {
            self.violation(format!("member {id}'s storage failed: {e}"));
        }
        for m in outbox {
            let snapshot = m.kind == MessageKind::Snapshot;
            let to = m.to;
            let sent = self.net.send(&mut self.rng, self.tick, m);
            // The transport reports every snapshot: sent once its stream took it (the peer
            // may still lose it; Raft then sends another), failed when it could not send it.
            if snapshot && let Some(s) = self.server(id) {
                s.handle_snapshot_report(to, sent);
            }
            self.report.messages += 1;
        }
        worked |= !answers.is_empty();
        for (token, response) in answers {
            self.complete(id, token, response);
        }
        worked
    }

    /// Moves the watcher along: (re)opens its stream where needed, lets the member catch the
    /// watcher up (as the driver does each turn), and checks what arrives: each revision once,
    /// in order, none skipped (the final check compares them with the history).
    fn watch(&mut self) {
        if let Some((m, stream)) = self.watcher.at {
            let open = self.nodes[&m]
                .server
                .as_ref()
                .is_some_and(|s| s.member().applier().watchers().is_open(stream));
            if !open || !self.in_cluster(m) {
                // A client leaves a member that went away, dropped the stream, or is no longer
                // in the cluster (etcd's clients notice with `WithRequireLeader`).
                if open && let Some(s) = self.server(m) {
                    s.close_watch_stream(stream);
                }
                self.watcher.at = None;
            }
        }
        if self.watcher.at.is_none() {
            let up = self.up();
            if up.is_empty() {
                return;
            }
            let m = up[self.rng.gen_range(0..up.len())];
            let start_revision = self.watcher.next_revision;
            let now = self.now_ms();
            let s = self.server(m).expect("up");
            let stream = s.open_watch_stream();
            let create = WatchCreate {
                key: Bytes::from_static(b"r/"),
                range_end: prefix_end(b"r/"),
                start_revision,
                ..WatchCreate::default()
            };
            let create = WatchRequest::Create(create);
            // As root: once auth is on, an anonymous watch is refused.
            let root = Credential::CommonName("root".into());
            if s.handle_watch_request(stream, create, &root, now) != WatchTaken::Done {
                s.close_watch_stream(stream);
                return;
            }
            self.watcher.at = Some((m, stream));
            self.watcher.streams += 1;
            self.trace.u64(0xa7c4).u64(m).u64(start_revision as u64);
        }
        let Some((m, stream)) = self.watcher.at else {
            return;
        };
        let mut got = Vec::new();
        let mut canceled = false;
        {
            let now = self.now_ms();
            let s = self.server(m).expect("checked open");
            // A failed catch-up leaves the watcher behind; the checks see what arrives.
            let _ = s.watch_work(now);
            while let Some(r) = s.poll_watch_response(stream) {
                canceled |= r.canceled;
                for e in r.events {
                    let value = (e.kind == EventKind::Put).then_some(e.kv.value);
                    got.push((e.kv.mod_revision, e.kv.key, value));
                }
            }
            if canceled {
                s.close_watch_stream(stream);
            }
        }
        if canceled {
            self.watcher.at = None;
        }
        for (revision, key, value) in got {
            if revision < self.watcher.next_revision {
                self.violation(format!(
                    "the watcher got revision {revision} ({key:?}) from member {m} after \
                     revision {}: an event twice or out of order",
                    self.watcher.next_revision - 1
                ));
                return;
            }
            self.trace.u64(revision as u64);
            self.watcher.next_revision = revision + 1;
            self.watcher.seen.push((revision, key, value));
            self.report.watch_events += 1;
        }
    }

    /// The watcher's events, end to end across the members it moved between, are the
    /// register keys' whole history as a member that holds everything tells it: none missing,
    /// none extra, none changed.
    fn check_watch(&mut self) {
        let Some(id) = self.leader() else {
            self.violation("no leader for the watch check".into());
            return;
        };
        let s = self.server(id).expect("it leads");
        let (watchers, kv) = s.member_mut().applier_mut().watchers_mut();
        let stream = watchers.open_stream();
        let create = WatchCreate {
            key: Bytes::from_static(b"r/"),
            range_end: prefix_end(b"r/"),
            start_revision: 1,
            ..WatchCreate::default()
        };
        let mut history: Vec<Seen> = Vec::new();
        if let Err(e) = watchers.create(stream, create, kv) {
            let why = format!("a watch of the whole history on member {id} failed: {e}");
            self.violation(why);
            return;
        }
        loop {
            while watchers.needs_sync() {
                if watchers.sync(kv).is_err() {
                    break;
                }
            }
            let mut any = false;
            while let Some(r) = watchers.poll_response(stream) {
                any = true;
                for e in r.events {
                    let value = (e.kind == EventKind::Put).then_some(e.kv.value);
                    history.push((e.kv.mod_revision, e.kv.key, value));
                }
            }
            if !any && !watchers.needs_sync() {
                break;
            }
        }
        watchers.close_stream(stream);
        let seen = &self.watcher.seen;
        if let Some(at) = (0..seen.len().min(history.len())).find(|&i| seen[i] != history[i]) {
            let why = format!(
                "the watcher's event {at} is {:?}; the history holds {:?}",
                seen[at], history[at]
            );
            self.violation(why);
        } else if seen.len() != history.len() {
            let why = format!(
                "the watcher got {} events; the history holds {}",
                seen.len(),
                history.len()
            );
            self.violation(why);
        }
    }

    /// Leases that vanish from a member that held them before their promised deadline.
    fn check_leases(&mut self) {
        let now = self.now_ms();
        let mut early = None;
        for (id, node) in &mut self.nodes {
            let Some(s) = &node.server else { continue };
            let lessor = s.member().applier().lessor();
            for (&lease, &promised) in &self.promised {
                if lessor.contains(lease) {
                    node.leases_seen.insert(lease);
                } else if node.leases_seen.remove(&lease)
                    && now < promised
                    && !self.revoked.contains(&lease)
                {
                    early = Some(format!(
                        "lease {lease:x} expired on member {id} at {now} ms; its last \
                         acknowledged keep-alive promised it until {promised} ms"
                    ));
                }
            }
        }
        if let Some(why) = early {
            self.violation(why);
        }
    }

    /// Alarms are state the log carries: two members that applied the same index hold the
    /// same alarms (and the same revision).
    fn check_replicated_state(&mut self) {
        let mut by_index: BTreeMap<u64, (NodeId, String)> = BTreeMap::new();
        let mut differ = None;
        for (id, node) in &self.nodes {
            let Some(s) = &node.server else { continue };
            let applied = s.member().raw().raft.raft_log.applied;
            let state = replicated_state(s);
            match by_index.get(&applied) {
                Some((other, want)) if *want != state => {
                    differ = Some(format!(
                        "members {other} and {id} applied index {applied}; {other} holds {want}, \
                         {id} holds {state}"
                    ));
                }
                Some(_) => {}
                None => {
                    by_index.insert(applied, (*id, state));
                }
            }
        }
        if let Some(why) = differ {
            self.violation(why);
        }
    }

    fn step(&mut self) {
        if self.faults_on {
            self.nemesis();
            self.clients_act();
        }
        let now = self.now_ms();
        for id in self.up() {
            if let Some(s) = self.server(id) {
                s.tick(now);
                // One clock for all: the v2 TTLs' wall clock is the simulated one.
                s.v2_expiry_work(now, now);
            }
        }
        self.run_rounds();
        // A member that stopped itself (it learned it was removed) is gone for good.
        for (id, node) in &mut self.nodes {
            if let Some(why) = node.server.as_ref().and_then(|s| s.stopped()) {
                if let Some(s) = &node.server {
                    self.report.count_server(s);
                }
                if why != REMOVED_MESSAGE {
                    let why = why.to_string();
                    node.server = None;
                    self.report
                        .violation
                        .get_or_insert(format!("tick {}: member {id} stopped: {why}", self.tick));
                    continue;
                }
                node.server = None;
                node.removed = true;
            }
        }
        self.expire_clients();
        self.watch();
        self.v2_watch();
        self.check_replicated_state();
        self.check_leases();
        self.tick += 1;
    }

    /// Whether every member is up and has applied the same index, which the leader committed.
    fn settled(&self) -> bool {
        let Some(leader) = self
            .nodes
            .values()
            .filter_map(|n| n.server.as_ref())
            .find(|s| s.is_leader())
        else {
            return false;
        };
        let log = &leader.member().raw().raft.raft_log;
        let committed = log.committed;
        if log.last_index() != committed {
            return false;
        }
        self.members_now(leader).iter().all(|id| {
            self.nodes
                .get(id)
                .and_then(|n| n.server.as_ref())
                .is_some_and(|s| s.member().raw().raft.raft_log.applied == committed)
        })
    }

    /// The cluster's members as `leader` holds them: voters and learners.
    fn members_now(&self, leader: &Server) -> Vec<NodeId> {
        let conf = leader.membership_now();
        conf.voters.iter().chain(&conf.learners).copied().collect()
    }

    /// Whether `id` is in the cluster as the leader sees it (true while no member leads). A
    /// member removed while cut off never learns it was, and keeps serving stale data.
    fn in_cluster(&self, id: NodeId) -> bool {
        let Some(leader) = self.leader() else {
            return true;
        };
        let leader = self.nodes[&leader].server.as_ref().expect("leads");
        self.members_now(leader).contains(&id)
    }

    /// The member that leads, once settled.
    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|(_, n)| n.server.as_ref().is_some_and(|s| s.is_leader()))
            .map(|(id, _)| *id)
    }

    fn run(&mut self) {
        for _ in 0..self.options.ticks {
            self.step();
            if self.report.violation.is_some() {
                return;
            }
        }
        // Liveness: faults stop, every member comes back, clients stop starting work.
        self.faults_on = false;
        self.net.heal();
        let down: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.server.is_none() && !n.removed)
            .map(|(id, _)| *id)
            .collect();
        for id in down {
            self.start(id);
        }
        let started = self.tick;
        while !self.settled() {
            if self.tick - started >= self.options.liveness_ticks_max {
                if debug() {
                    for (id, n) in &self.nodes {
                        let state = n.server.as_ref().map(|s| {
                            let r = s.member().raw();
                            (
                                r.raft.term,
                                r.raft.raft_log.applied,
                                r.raft.raft_log.committed,
                                r.raft.raft_log.last_index(),
                                s.is_leader(),
                                s.membership_now(),
                            )
                        });
                        eprintln!("m{id} removed {} {state:?}", n.removed);
                        if let Some(s) = n.server.as_ref().filter(|s| s.is_leader()) {
                            for (peer, p) in s.member().raw().raft.tracker.progress.iter() {
                                eprintln!("  progress m{peer}: {p:?}");
                            }
                        }
                    }
                }
                self.violation(format!(
                    "liveness: the members did not settle on one applied index within {} ticks",
                    self.options.liveness_ticks_max
                ));
                return;
            }
            self.step();
            if self.report.violation.is_some() {
                return;
            }
        }
        self.check_agreement();
        if self.report.violation.is_some() {
            return;
        }
        // Clients renew nothing now: give every lease its TTL, a leader's grace and a margin
        // to run out, then none may be left.
        let lapse_ticks = (LEASE_TTL_S as u64 * 1000 + 3 * ELECTION_MS) / TICK_MS;
        for _ in 0..lapse_ticks {
            self.step();
            if self.report.violation.is_some() {
                return;
            }
        }
        self.check_lapsed();
        if self.report.violation.is_none() {
            self.check_watch();
        }
        if self.report.violation.is_none() {
            self.check_v2();
        }
        if self.report.violation.is_none() {
            self.check_auth();
        }
        self.check_history();
    }

    /// No lease outlives its last promise by more than a leader's grace once nobody renews it.
    fn check_lapsed(&mut self) {
        let now = self.now_ms();
        let mut kept = None;
        for (id, node) in &self.nodes {
            let Some(s) = &node.server else { continue };
            if !self.in_cluster(*id) {
                continue;
            }
            let lessor = s.member().applier().lessor();
            for (&lease, &promised) in &self.promised {
                if lessor.contains(lease) {
                    kept = Some(format!(
                        "lease {lease:x} is still on member {id} at {now} ms, though nothing \
                         renewed it after {promised} ms"
                    ));
                }
            }
        }
        if let Some(why) = kept {
            self.violation(why);
        }
    }

    /// Every member holds the same alarms, revision and data.
    fn check_agreement(&mut self) {
        let mut seen: Option<(NodeId, String)> = None;
        let leader = self.leader().expect("settled: a leader");
        let members = self.members_now(self.nodes[&leader].server.as_ref().expect("leads"));
        for id in &members {
            let s = self.nodes[id]
                .server
                .as_ref()
                .expect("settled: every member is up");
            let hash = s.member().applier().kv().hash_kv(0).map_or(0, |h| h.hash);
            let state = format!(
                "{}, hash {hash:x}, {}",
                replicated_state(s),
                v2::v2_state(s)
            );
            self.trace.bytes(state.as_bytes());
            match &seen {
                Some((first, want)) if *want != state => {
                    let why = format!("member {first} holds {want}; member {id} holds {state}");
                    self.violation(why);
                    return;
                }
                Some(_) => {}
                None => seen = Some((*id, state)),
            }
        }
    }

    fn check_history(&mut self) {
        let mut ops = Vec::new();
        for (i, op) in self.history.iter().enumerate() {
            let read = op.input.op == RegisterInput::Read;
            if self.void.contains(&i) || (read && op.output.is_none()) {
                continue;
            }
            let mut op = op.clone();
            if op.ret == u64::MAX {
                op.ret = op.call;
            }
            ops.push(op);
        }
        self.history = ops;
        let verdict = check_operations::<RegistersModel>(&self.history, Limits::default());
        match verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(c) => {
                let window: Vec<String> = c
                    .window
                    .iter()
                    .map(|&i| format!("{:?}", self.history[i]))
                    .collect();
                self.violation(format!(
                    "the register history is not linearizable:\n  {}",
                    window.join("\n  ")
                ));
            }
            Verdict::Unknown { steps, .. } => {
                self.violation(format!("linearizability unknown after {steps} steps"));
            }
        }
    }
}

/// What the log alone decides of a member's state, in words: its alarms and revision.
fn replicated_state(s: &Server) -> String {
    let applier = s.member().applier();
    let alarms: Vec<String> = applier
        .alarms()
        .iter()
        .map(|a| format!("{:x}:{}", a.member, a.kind))
        .collect();
    format!(
        "alarms [{}] at revision {}, v2 index {}",
        alarms.join(" "),
        applier.kv().current_revision(),
        applier.v2().store.index()
    )
}

/// The record of member `id` (its URLs are names: the simulated network routes by ID).
fn record(id: NodeId) -> MemberRecord {
    MemberRecord {
        id,
        name: format!("m{id}"),
        peer_urls: vec![format!("http://m{id}.sim:2380")],
        client_urls: vec![format!("http://m{id}.sim:2379")],
        version: String::new(),
    }
}

/// The auth client's setup, in order: it retries a step until its outcome is known.
fn setup_commands() -> Vec<AuthCommand> {
    let user = |name: &str| AuthCommand::UserAdd {
        name: name.into(),
        password: Bytes::new(),
        no_password: true,
    };
    let mut steps = vec![
        user("root"),
        AuthCommand::UserGrantRole {
            user: "root".into(),
            role: "root".into(),
        },
        user("writer"),
        AuthCommand::RoleAdd { name: "w".into() },
    ];
    for key in 0..WRITER_KEYS {
        steps.push(AuthCommand::RoleGrantPermission {
            name: "w".into(),
            perm: writer_permission(key),
        });
    }
    steps.push(AuthCommand::UserGrantRole {
        user: "writer".into(),
        role: "w".into(),
    });
    steps.push(AuthCommand::Enable);
    steps
}

/// Read-write on one register key.
fn writer_permission(key: u32) -> Permission {
    Permission {
        kind: PermKind::ReadWrite,
        key: register_key(key),
        range_end: Bytes::new(),
    }
}

/// `SIM_DEBUG` set: print the run's events to stderr.
fn debug() -> bool {
    std::env::var_os("SIM_DEBUG").is_some()
}

fn register_key(key: u32) -> Bytes {
    Bytes::from(format!("r/{key}"))
}

fn parse(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Runs one seed.
pub fn run(options: &Options) -> Report {
    let mut world = World::new(options);
    world.run();
    let mut report = world.report;
    for s in world.nodes.values().filter_map(|n| n.server.as_ref()) {
        report.count_server(s);
    }
    report.ticks = world.tick;
    report.watch_streams = world.watcher.streams;
    report.hash = world.trace.u64(world.events).finish();
    report
}
