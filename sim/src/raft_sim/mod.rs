//! `sim raft`: a deterministic, in-process simulation of a Raft cluster built from the real
//! `oxcd::raft` core. One seeded ChaCha RNG drives everything: the network (delays, drops,
//! duplicates, reordering, partitions), the disks (write latency; a crash loses the unsynced
//! Ready or keeps a torn prefix of its entries), crashes and restarts, membership changes,
//! leader transfers, and clients that propose and read throughout. The checker runs after every
//! step. A run has a safety phase (faults) and a liveness phase (faults stopped, a leader must
//! commit a proposal within a bound). Every run ends with a trace hash: the same seed gives the
//! same hash, byte for byte.

mod checker;
mod nemesis;
pub(crate) mod network;
mod node;

pub use checker::Violation;
pub use network::NetworkOptions;

use crate::fnv::Fnv;
use bytes::Bytes;
use checker::Checker;
use network::Network;
use node::{PendingWrite, SimNode, StateMachine};
use oxcd::raft::{
    ConfChange, ConfState, Config, EntryKind, MemStorage, Message, MessageKind, NodeId, PlantedBug,
    RawNode, Ready, SnapshotStatus, StateRole,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// What one run simulates.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    /// Founding voters: 3, 5 or 7.
    pub nodes: usize,
    /// Ticks of the safety phase (with faults). The liveness phase follows, up to
    /// `liveness_ticks_max` more.
    pub ticks: u64,
    pub liveness_ticks_max: u64,
    /// A deliberate mistake to switch on in every member.
    pub bug: Option<PlantedBug>,
}

impl Options {
    pub fn new(seed: u64, nodes: usize) -> Options {
        Options {
            seed,
            nodes,
            ticks: DEFAULT_TICKS,
            liveness_ticks_max: DEFAULT_LIVENESS_TICKS_MAX,
            bug: None,
        }
    }
}

pub const DEFAULT_TICKS: u64 = 600;
pub const DEFAULT_LIVENESS_TICKS_MAX: u64 = 400;

/// What one run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub ticks: u64,
    pub messages: u64,
    pub proposals_committed: u64,
    pub reads_checked: u64,
    pub faults: nemesis::FaultCounts,
    pub violation: Option<Violation>,
    pub hash: u64,
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces the panic hook, once per process, with one that records the message and location
/// for the running seed's report instead of printing a backtrace per failing seed.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
        }));
    });
}

/// Runs one seed; a panic inside a member is reported as a violation.
pub fn run(options: &Options) -> Report {
    quiet_panics();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut world = World::new(options);
        world.run();
        if world.violation.is_some() && std::env::var_os("SIM_DEBUG").is_some() {
            eprintln!("{}", world.describe());
        }
        world.report()
    }));
    outcome.unwrap_or_else(|_| {
        let msg = LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "unknown panic".into());
        Report {
            seed: options.seed,
            violation: Some(Violation::Panic(msg)),
            ..Report::default()
        }
    })
}

/// Per-run choices of the Raft configuration, so that seeds cover the option space.
#[derive(Clone, Debug)]
struct Tuning {
    pre_vote: bool,
    check_quorum: bool,
    max_size_per_msg: u64,
    max_inflight_msgs: usize,
    compact_every: u64,
    compact_keep: u64,
}

/// A read in progress: where it was asked and the highest commit index anywhere when it began.
struct PendingRead {
    node: NodeId,
    committed_before: u64,
}

pub struct World {
    options: Options,
    tuning: Tuning,
    rng: ChaCha8Rng,
    now: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    net: Network,
    checker: Checker,
    trace: Fnv,
    violation: Option<Violation>,
    next_proposal: u64,
    /// Distinct client proposals applied by some member.
    proposals_committed: std::collections::BTreeSet<u64>,
    reads: BTreeMap<u64, PendingRead>,
    next_read: u64,
    reads_checked: u64,
    nemesis: nemesis::Nemesis,
    /// Liveness phase: the proposal that must commit, and when the phase began.
    liveness_started: Option<u64>,
    liveness_proposal: Option<(u64, u64)>,
    liveness_done: bool,
}

const ELECTION_TICKS: usize = 10;
const HEARTBEAT_TICKS: usize = 1;
/// Upper bound on rounds of delivery and Ready handling within one tick.
const ROUNDS_PER_TICK_MAX: usize = 64;
const LIVENESS_PREFIX: &[u8] = b"live:";
/// Chance that a member loses power while writing a Ready that changes its term or vote, or
/// its first Ready as a leader (the moments where durability and replication mistakes show).
const CRASH_WHILE_VOTING_RATE: f64 = 0.1;
/// Chance that a member loses power while writing a Ready that moves its commit index.
const CRASH_WHILE_COMMITTING_RATE: f64 = 0.005;
/// Chance that a member loses power while writing any other Ready.
const CRASH_WHILE_WRITING_RATE: f64 = 0.001;

impl World {
    pub fn new(options: &Options) -> World {
        assert!(
            matches!(options.nodes, 3 | 5 | 7),
            "nodes must be 3, 5 or 7"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let tuning = Tuning {
            pre_vote: rng.gen_bool(0.5),
            check_quorum: rng.gen_bool(0.5),
            max_size_per_msg: [0, 0, 64, 1024 * 1024][rng.gen_range(0..4)],
            max_inflight_msgs: [1, 4, 256][rng.gen_range(0..3)],
            compact_every: rng.gen_range(10..80),
            compact_keep: rng.gen_range(0..10),
        };
        let net = Network::new(NetworkOptions {
            drop_rate: [0.0, 0.01, 0.05, 0.15][rng.gen_range(0..4)],
            duplicate_rate: [0.0, 0.01, 0.03][rng.gen_range(0..3)],
            delay_ticks_max: rng.gen_range(1..=6),
        });
        let voters: Vec<NodeId> = (1..=options.nodes as NodeId).collect();
        let mut world = World {
            options: options.clone(),
            tuning,
            rng,
            now: 0,
            nodes: BTreeMap::new(),
            net,
            checker: Checker::default(),
            trace: Fnv::default(),
            violation: None,
            next_proposal: 0,
            proposals_committed: Default::default(),
            reads: BTreeMap::new(),
            next_read: 0,
            reads_checked: 0,
            nemesis: nemesis::Nemesis::new(options.nodes),
            liveness_started: None,
            liveness_proposal: None,
            liveness_done: false,
        };
        for &id in &voters {
            let storage = MemStorage::new_with_conf_state(ConfState::with_voters(voters.clone()));
            world.nodes.insert(id, SimNode::new(id, storage));
            world.start(id);
        }
        world
    }

    fn config(&self, id: NodeId, applied: u64) -> Config {
        let mut c = Config::new(id);
        c.election_ticks = ELECTION_TICKS;
        c.heartbeat_ticks = HEARTBEAT_TICKS;
        c.applied = applied;
        c.pre_vote = self.tuning.pre_vote;
        c.check_quorum = self.tuning.check_quorum;
        c.max_size_per_msg = self.tuning.max_size_per_msg;
        c.max_inflight_msgs = self.tuning.max_inflight_msgs;
        c.planted_bug = self.options.bug;
        c
    }

    /// Starts (or restarts) a member from its durable storage.
    fn start(&mut self, id: NodeId) {
        let storage = self.nodes[&id].durable.clone();
        let snapshot = oxcd::raft::Storage::snapshot(&storage).expect("mem storage");
        let sm = StateMachine::from_snapshot(&snapshot);
        let config = self.config(id, sm.applied);
        let rng = ChaCha8Rng::seed_from_u64(self.rng.r#gen());
        let raw = RawNode::new(&config, storage, rng).expect("valid config and storage");
        let node = self.nodes.get_mut(&id).expect("known node");
        node.last_commit = raw.raft.raft_log.committed;
        node.was_member |= sm.conf_state.contains(id);
        node.sm = sm;
        node.raw = Some(raw);
        node.pending = None;
        self.trace.u64(0xa11e).u64(id).u64(self.now);
    }

    /// Crashes a member: the Ready being written is lost, or a torn prefix of its entries
    /// reaches the disk (never its hard state, never anything it acknowledged).
    fn crash(&mut self, id: NodeId, down_ticks: u64) {
        let torn = self.rng.gen_bool(0.5);
        let cut = self.rng.r#gen::<u64>();
        let node = self.nodes.get_mut(&id).expect("known node");
        let Some(raw) = node.raw.take() else {
            return;
        };
        let mut durable = raw.storage().clone();
        if let Some(pending) = node.pending.take() {
            let entries = &pending.ready.entries;
            if torn && pending.ready.snapshot.is_none() && !entries.is_empty() {
                let keep = (cut % entries.len() as u64) as usize;
                durable.append(&entries[..keep]).expect("torn append");
            }
        }
        node.durable = durable;
        node.down_until = self.now + down_ticks;
        // The socket buffers die with the process, or had just been flushed.
        if self.rng.gen_bool(0.5) {
            self.net.lose_unsent(id, self.now);
        }
        self.trace.u64(0xdead).u64(id).u64(self.now);
    }

    fn fail(&mut self, v: Violation) {
        if self.violation.is_none() {
            self.violation = Some(v);
        }
    }

    fn observe(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        let Some(raw) = node.raw.as_ref() else {
            return;
        };
        if let Err(v) =
            self.checker
                .observe(&raw.raft, &mut node.last_commit, &mut node.leader_term)
        {
            self.fail(v);
        }
    }

    fn send(&mut self, m: Message) {
        let (from, to, is_snapshot) = (m.from, m.to, m.kind == MessageKind::Snapshot);
        let queued = self.net.send(&mut self.rng, self.now, m);
        if !queued && is_snapshot {
            self.report_snapshot(from, to, SnapshotStatus::Failure);
        }
    }

    fn report_snapshot(&mut self, leader: NodeId, to: NodeId, status: SnapshotStatus) {
        if let Some(raw) = self.nodes.get_mut(&leader).and_then(|n| n.raw.as_mut()) {
            raw.report_snapshot(to, status);
        }
    }

    fn deliver(&mut self, m: Message) {
        self.trace
            .u64(m.from)
            .u64(m.to)
            .u64(m.kind as u64)
            .u64(m.term)
            .u64(m.index)
            .u64(m.commit)
            .u64(m.entries.len() as u64);
        let (from, to, is_snapshot) = (m.from, m.to, m.kind == MessageKind::Snapshot);
        let delivered = match self.nodes.get_mut(&to).and_then(|n| n.raw.as_mut()) {
            Some(raw) => {
                let _ = raw.step(m);
                true
            }
            None => false,
        };
        if is_snapshot {
            let status = if delivered {
                SnapshotStatus::Finish
            } else {
                SnapshotStatus::Failure
            };
            self.report_snapshot(from, to, status);
        }
        if delivered {
            self.observe(to);
        }
    }

    /// Takes a member's Ready, sends what may go at once, and starts writing the rest.
    fn start_ready(&mut self, id: NodeId) -> bool {
        let latency = match self.rng.gen_range(0..10) {
            0..=6 => 0,
            7..=8 => 1,
            _ => self.rng.gen_range(2..4),
        };
        let node = self.nodes.get_mut(&id).expect("known node");
        let Some(raw) = node.raw.as_mut() else {
            return false;
        };
        if node.pending.is_some() || !raw.has_ready() {
            return false;
        }
        let mut ready = raw.ready();
        let prev_term = ready
            .entries
            .first()
            .map(|e| raw.raft.raft_log.term_or_zero(e.index - 1))
            .unwrap_or(0);
        let durable_vote = ready.hard_state.is_some_and(|hs| {
            let stored = raw.storage().hard_state();
            hs.term != stored.term || hs.vote != stored.vote
        });
        let commit_moved = ready
            .hard_state
            .is_some_and(|hs| hs.commit != raw.storage().hard_state().commit);
        let new_leader = ready
            .soft_state
            .is_some_and(|s| s.role == StateRole::Leader);
        let mut messages = std::mem::take(&mut ready.messages);
        for m in messages
            .iter_mut()
            .filter(|m| m.kind == MessageKind::Snapshot)
        {
            m.snapshot = Some(fresh_snapshot(raw, &node.sm));
        }
        let log_check = self.checker.check_log(id, prev_term, &ready.entries);
        node.pending = Some(PendingWrite {
            ready,
            complete_at: self.now + latency,
        });
        if let Err(v) = log_check {
            self.fail(v);
        }
        for m in messages {
            self.send(m);
        }
        // Power loss while the write is under way: most likely exactly when it matters most,
        // as a term or vote is being made durable.
        let rate = if durable_vote || new_leader {
            CRASH_WHILE_VOTING_RATE
        } else if commit_moved {
            CRASH_WHILE_COMMITTING_RATE
        } else {
            CRASH_WHILE_WRITING_RATE
        };
        if self.now < self.options.ticks && nemesis::may_crash(self) && self.rng.gen_bool(rate) {
            nemesis::kill(self, id);
        }
        true
    }

    /// Completes a member's write if it is due: persist, send, apply, advance.
    fn finish_ready(&mut self, id: NodeId) -> bool {
        let node = self.nodes.get_mut(&id).expect("known node");
        if node.raw.is_none()
            || node
                .pending
                .as_ref()
                .is_none_or(|p| p.complete_at > self.now)
        {
            return false;
        }
        let ready = node.pending.take().expect("checked").ready;
        if let Err(v) = self.persist(id, &ready) {
            self.fail(v);
        }
        for m in ready.persisted_messages {
            self.send(m);
        }
        self.apply(id, ready.snapshot.as_ref(), &ready.committed_entries);
        for rs in &ready.read_states {
            self.check_read(id, rs.index, &rs.request_ctx);
        }
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(raw) = node.raw.as_mut() {
            raw.advance();
        }
        self.observe(id);
        self.maybe_compact(id);
        self.maybe_retire(id);
        true
    }

    fn persist(&mut self, id: NodeId, ready: &Ready) -> Result<(), Violation> {
        let node = self.nodes.get_mut(&id).expect("known node");
        let raw = node.raw.as_mut().expect("running");
        let storage = raw.storage_mut();
        if let Some(s) = &ready.snapshot {
            storage.apply_snapshot(s.clone()).expect("snapshot is news");
        }
        storage.append(&ready.entries).expect("append");
        if let Some(hs) = ready.hard_state {
            self.checker
                .check_persisted_commit(id, &mut node.last_persisted_commit, hs.commit)?;
            storage.set_hard_state(hs);
        }
        Ok(())
    }

    fn apply(
        &mut self,
        id: NodeId,
        snapshot: Option<&oxcd::raft::Snapshot>,
        entries: &[oxcd::raft::Entry],
    ) {
        if let Some(s) = snapshot {
            let sm = StateMachine::from_snapshot(s);
            let (index, digest) = (sm.applied, sm.digest);
            let node = self.nodes.get_mut(&id).expect("known node");
            node.sm = sm;
            node.was_member |= node.sm.conf_state.contains(id);
            if (digest != 0 || index > 1)
                && let Err(v) = self.checker.check_digest(id, index, digest)
            {
                self.fail(v);
            }
        }
        for e in entries {
            let node = self.nodes.get_mut(&id).expect("known node");
            if e.index <= node.sm.applied {
                continue;
            }
            node.sm.apply(e);
            self.trace.u64(id).u64(e.index).u64(e.term);
            let digest = node.sm.digest;
            if e.kind == EntryKind::ConfChange {
                let cc = ConfChange::decode(&e.data).expect("conf change entries decode");
                let raw = node.raw.as_mut().expect("running");
                if let Ok(cs) = raw.apply_conf_change(&cc) {
                    node.was_member |= cs.contains(id);
                    node.sm.conf_state = cs;
                }
            } else if e.data.starts_with(LIVENESS_PREFIX) {
                if self
                    .liveness_proposal
                    .is_some_and(|(n, _)| e.data[LIVENESS_PREFIX.len()..] == n.to_le_bytes())
                {
                    self.liveness_done = true;
                }
            } else if let Ok(id) = <[u8; 8]>::try_from(&e.data[..]) {
                self.proposals_committed.insert(u64::from_le_bytes(id));
            }
            if let Err(v) = self.checker.check_apply(id, e, digest) {
                self.fail(v);
            }
        }
    }

    fn check_read(&mut self, id: NodeId, index: u64, ctx: &[u8]) {
        let Ok(key) = <[u8; 8]>::try_from(ctx).map(u64::from_le_bytes) else {
            return;
        };
        let Some(read) = self.reads.remove(&key) else {
            return;
        };
        debug_assert_eq!(read.node, id, "a read is answered where it was asked");
        self.reads_checked += 1;
        if index < read.committed_before {
            self.fail(Violation::StaleRead {
                node: id,
                read_index: index,
                committed_before: read.committed_before,
            });
        }
    }

    fn maybe_compact(&mut self, id: NodeId) {
        let (every, keep) = (self.tuning.compact_every, self.tuning.compact_keep);
        let node = self.nodes.get_mut(&id).expect("known node");
        let Some(raw) = node.raw.as_mut() else {
            return;
        };
        let storage = raw.storage_mut();
        let first = oxcd::raft::Storage::first_index(storage).expect("mem storage");
        let applied = node.sm.applied;
        if applied < first + every {
            return;
        }
        let data = node.sm.snapshot_data();
        storage
            .create_snapshot(applied, node.sm.conf_state.clone(), data)
            .expect("snapshot at the applied index");
        let compact = applied.saturating_sub(keep);
        if compact >= first {
            storage
                .compact(compact)
                .expect("compact below the snapshot");
        }
    }

    /// A member that applied its own removal stops for good, as etcd's members do.
    fn maybe_retire(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if node.was_member && !node.sm.conf_state.contains(id) && node.raw.is_some() {
            node.raw = None;
            node.pending = None;
            node.retired = true;
        }
    }

    /// The member every running member would call leader: the running leader of the highest
    /// term.
    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|n| n.raw.as_ref())
            .filter(|r| r.raft.state == StateRole::Leader)
            .max_by_key(|r| r.raft.term)
            .map(|r| r.raft.id)
    }

    fn running(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.is_up())
            .map(|n| n.id)
            .collect()
    }

    fn clients(&mut self) {
        let running = self.running();
        if running.is_empty() {
            return;
        }
        if self.rng.gen_bool(0.5) {
            let id = running[self.rng.gen_range(0..running.len())];
            self.next_proposal += 1;
            let data = Bytes::copy_from_slice(&self.next_proposal.to_le_bytes());
            if let Some(raw) = self.nodes.get_mut(&id).and_then(|n| n.raw.as_mut()) {
                let _ = raw.propose(data);
            }
            self.observe(id);
        }
        if self.rng.gen_bool(0.25) {
            let id = running[self.rng.gen_range(0..running.len())];
            self.next_read += 1;
            let key = self.next_read;
            let committed_before = self.max_commit_now();
            if let Some(raw) = self.nodes.get_mut(&id).and_then(|n| n.raw.as_mut())
                && raw
                    .read_index(Bytes::copy_from_slice(&key.to_le_bytes()))
                    .is_ok()
            {
                self.reads.insert(
                    key,
                    PendingRead {
                        node: id,
                        committed_before,
                    },
                );
            }
        }
    }

    /// The highest commit index of any running member now (a read must see at least this).
    fn max_commit_now(&self) -> u64 {
        self.nodes
            .values()
            .filter_map(|n| n.raw.as_ref())
            .map(|r| r.raft.raft_log.committed)
            .max()
            .unwrap_or(0)
            .max(self.checker.max_committed())
    }

    fn liveness_step(&mut self) {
        let started = *self.liveness_started.get_or_insert(self.now);
        if self.now - started > self.options.liveness_ticks_max {
            self.fail(Violation::Liveness {
                ticks: self.options.liveness_ticks_max,
            });
            return;
        }
        // Propose (again, every election timeout) to whoever leads.
        let due = self
            .liveness_proposal
            .is_none_or(|(_, at)| self.now >= at + 2 * ELECTION_TICKS as u64);
        if !due {
            return;
        }
        let Some(leader) = self.leader() else {
            return;
        };
        let n = self.liveness_proposal.map_or(1, |(n, _)| n + 1);
        let mut data = LIVENESS_PREFIX.to_vec();
        data.extend_from_slice(&n.to_le_bytes());
        let raw = self
            .nodes
            .get_mut(&leader)
            .and_then(|n| n.raw.as_mut())
            .expect("leader runs");
        if raw.raft.tracker.config.voters.is_joint() && !raw.raft.tracker.config.auto_leave {
            let _ = raw.propose_conf_change(&ConfChange::leave_joint());
        }
        if raw.propose(Bytes::from(data)).is_ok() {
            self.liveness_proposal = Some((n, self.now));
        }
        self.observe(leader);
    }

    fn tick(&mut self) {
        let safety = self.now < self.options.ticks;
        if safety {
            nemesis::Nemesis::step(self);
            self.clients();
        } else {
            if self.liveness_started.is_none() {
                nemesis::Nemesis::stop(self);
            }
            self.liveness_step();
        }
        for id in self.running() {
            if let Some(raw) = self.nodes.get_mut(&id).and_then(|n| n.raw.as_mut()) {
                raw.tick();
            }
            self.observe(id);
        }
        for _ in 0..ROUNDS_PER_TICK_MAX {
            let mut moved = false;
            while let Some(due) = self.net.next_due(self.now) {
                moved = true;
                match due {
                    Ok(m) => self.deliver(m),
                    Err(m) if m.kind == MessageKind::Snapshot => {
                        self.report_snapshot(m.from, m.to, SnapshotStatus::Failure)
                    }
                    Err(_) => {}
                }
            }
            for id in self.running() {
                moved |= self.finish_ready(id);
                moved |= self.start_ready(id);
            }
            if !moved || self.violation.is_some() {
                break;
            }
        }
        self.now += 1;
    }

    pub fn run(&mut self) {
        let end = self.options.ticks + self.options.liveness_ticks_max + 1;
        while self.now < end && self.violation.is_none() && !self.liveness_done {
            self.tick();
        }
        if self.violation.is_none() && !self.liveness_done {
            self.fail(Violation::Liveness {
                ticks: self.options.liveness_ticks_max,
            });
        }
    }

    /// Every member's state, for explaining a failed run.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "tick {} partitioned={}\n",
            self.now,
            self.net.is_partitioned()
        );
        for n in self.nodes.values() {
            let Some(raw) = n.raw.as_ref() else {
                out += &format!(
                    "  node {}: down (retired={}, until {})\n",
                    n.id, n.retired, n.down_until
                );
                continue;
            };
            let r = &raw.raft;
            out += &format!(
                "  node {}: {:?} term={} vote={} lead={} commit={} applied={} last={} first={} pending_write={} conf={:?}\n",
                n.id,
                r.state,
                r.term,
                r.vote,
                r.lead,
                r.raft_log.committed,
                r.raft_log.applied,
                r.raft_log.last_index(),
                r.raft_log.first_index(),
                n.pending.is_some(),
                r.tracker.conf_state(),
            );
            if r.state == StateRole::Leader {
                for (id, p) in &r.tracker.progress {
                    out += &format!(
                        "      {id}: {:?} match={} next={} active={} paused={} inflight={}\n",
                        p.state,
                        p.matched,
                        p.next,
                        p.recent_active,
                        p.is_paused(),
                        p.inflights.count()
                    );
                }
            }
        }
        out
    }

    pub fn report(&self) -> Report {
        let mut trace = self.trace;
        trace.u64(self.now).u64(self.net.sent);
        Report {
            seed: self.options.seed,
            ticks: self.now,
            messages: self.net.sent,
            proposals_committed: self.proposals_committed.len() as u64,
            reads_checked: self.reads_checked,
            faults: self.nemesis.counts.clone(),
            violation: self.violation.clone(),
            hash: trace.finish(),
        }
    }
}

/// The snapshot a member sends: its state machine now, not the older stored snapshot, whose
/// membership may predate the receiver (etcd's server does the same when it sends one).
fn fresh_snapshot(raw: &mut RawNode<MemStorage>, sm: &StateMachine) -> oxcd::raft::Snapshot {
    let storage = raw.storage_mut();
    let stored = oxcd::raft::Storage::snapshot(storage).expect("mem storage");
    if sm.applied <= stored.metadata.index {
        return stored;
    }
    storage
        .create_snapshot(sm.applied, sm.conf_state.clone(), sm.snapshot_data())
        .expect("the applied index is durable and newer than the stored snapshot")
}

/// Runs every seed, on `jobs` threads; reports come back in seed order. Each seed's run is
/// independent and deterministic, so the thread count changes nothing but the wall time.
pub fn run_many(options: &[Options], jobs: usize) -> Vec<Report> {
    let jobs = jobs.clamp(1, options.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut reports: Vec<Report> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(o) = options.get(i) else { break };
                        out.push(run(o));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker finished"))
            .collect()
    });
    reports.sort_by_key(|r| r.seed);
    reports
}

/// The one-line summary of a set of runs; `hash` is the last run's trace hash. The keys up to
/// `hash` are an interface other tools parse: keep their order.
pub fn summary(reports: &[Report], nodes: usize, elapsed_s: f64) -> String {
    let mut faults = nemesis::FaultCounts::default();
    for r in reports {
        faults.add(&r.faults);
    }
    format!(
        "raft seeds={} nodes={} violations={} ticks={} messages={} elapsed_s={:.2} hash={:016x} committed={} reads={} faults=partition:{},crash:{},membership:{},transfer:{}",
        reports.len(),
        nodes,
        reports.iter().filter(|r| r.violation.is_some()).count(),
        reports.iter().map(|r| r.ticks).sum::<u64>(),
        reports.iter().map(|r| r.messages).sum::<u64>(),
        elapsed_s,
        reports.last().map_or(0, |r| r.hash),
        reports.iter().map(|r| r.proposals_committed).sum::<u64>(),
        reports.iter().map(|r| r.reads_checked).sum::<u64>(),
        faults.partitions,
        faults.crashes,
        faults.membership_changes,
        faults.transfers,
    )
}

/// Seeds a planted mistake may take to be caught (3 founding voters, default ticks). The
/// planted-bug tests fail when a mistake survives this many seeds.
pub const PLANTED_BUG_SEED_BUDGET: u64 = 10_000;

/// Runs seeds `template.seed`, `template.seed + 1`, ... in batches until one reports a
/// violation or `budget` seeds have run. Deterministic: the batch size and `jobs` change only
/// the wall time, never which seed is reported first.
pub fn first_violation(template: &Options, budget: u64, jobs: usize) -> Option<Report> {
    const BATCH: u64 = 256;
    let mut start = 0;
    while start < budget {
        let options: Vec<Options> = (start..(start + BATCH).min(budget))
            .map(|i| Options {
                seed: template.seed + i,
                ..template.clone()
            })
            .collect();
        if let Some(r) = run_many(&options, jobs)
            .into_iter()
            .find(|r| r.violation.is_some())
        {
            return Some(r);
        }
        start += BATCH;
    }
    None
}
