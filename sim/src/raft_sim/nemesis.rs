//! The fault schedule of a run, drawn from the run's RNG: partitions (random halves, an
//! isolated leader, asymmetric one-way cuts, a bridge member that sees both sides), crashes
//! with restarts, membership changes (add learner, promote, remove, joint changes) and leader
//! transfers. `stop` ends every fault for the liveness phase.

use super::World;
use super::node::SimNode;
use oxcd::raft::{ConfChange, ConfChangeKind, ConfChangeTransition, MemStorage, NodeId};
use rand::Rng;
use rand::seq::SliceRandom;

/// How many faults of each kind a run injected.
#[derive(Clone, Debug, Default)]
pub struct FaultCounts {
    pub partitions: u64,
    pub crashes: u64,
    pub membership_changes: u64,
    pub transfers: u64,
}

impl FaultCounts {
    pub fn add(&mut self, other: &FaultCounts) {
        self.partitions += other.partitions;
        self.crashes += other.crashes;
        self.membership_changes += other.membership_changes;
        self.transfers += other.transfers;
    }
}

pub struct Nemesis {
    pub counts: FaultCounts,
    /// Crashes planned for new leaders: (tick, member, term it leads).
    planned: Vec<(u64, NodeId, u64)>,
    /// The last (member, term) seen leading, to notice a new leader.
    last_leader: (NodeId, u64),
    partition_until: u64,
    next_id: NodeId,
    id_max: NodeId,
}

const PARTITION_RATE: f64 = 0.02;
const CRASH_RATE: f64 = 0.03;
const MEMBERSHIP_RATE: f64 = 0.01;
const TRANSFER_RATE: f64 = 0.005;
const DOWN_TICKS_MAX: u64 = 40;
/// Chance that a new leader is killed within a few ticks of winning.
const LEADER_FLAP_RATE: f64 = 0.25;
const PARTITION_TICKS_MAX: u64 = 80;
/// Members that may join during a run, beyond the founders.
const JOINERS_MAX: u64 = 3;

impl Nemesis {
    pub fn new(nodes: usize) -> Nemesis {
        Nemesis {
            counts: FaultCounts::default(),
            planned: Vec::new(),
            last_leader: (0, 0),
            partition_until: 0,
            next_id: nodes as NodeId + 1,
            id_max: nodes as NodeId + JOINERS_MAX,
        }
    }

    pub fn step(w: &mut World) {
        if w.net.is_partitioned() && w.now >= w.nemesis.partition_until {
            w.net.heal();
        }
        restart_due(w, false);
        flap_leaders(w);
        if !w.net.is_partitioned() && w.rng.gen_bool(PARTITION_RATE) {
            partition(w);
        }
        if w.rng.gen_bool(CRASH_RATE) {
            crash(w);
        }
        if w.rng.gen_bool(MEMBERSHIP_RATE) {
            change_membership(w);
        }
        if w.rng.gen_bool(TRANSFER_RATE) {
            transfer(w);
        }
    }

    /// Ends every fault: heals the network, restarts every crashed member, stops drops and
    /// duplicates (delays remain).
    pub fn stop(w: &mut World) {
        w.net.heal();
        w.net.options.drop_rate = 0.0;
        w.net.options.duplicate_rate = 0.0;
        w.nemesis.planned.clear();
        restart_due(w, true);
    }
}

fn restart_due(w: &mut World, all: bool) {
    let due: Vec<NodeId> = w
        .nodes
        .values()
        .filter(|n| !n.is_up() && !n.retired && (all || n.down_until <= w.now))
        .map(|n| n.id)
        .collect();
    for id in due {
        w.start(id);
    }
}

/// Leader flapping: a new leader is sometimes killed a few ticks after it wins, before its
/// first entries are fully replicated. Runs of such failures leave entries of several terms
/// stranded on minorities, which is where commitment mistakes show.
fn flap_leaders(w: &mut World) {
    if let Some(leader) = w.leader() {
        let term = w.nodes[&leader]
            .raw
            .as_ref()
            .expect("leader runs")
            .raft
            .term;
        if w.nemesis.last_leader != (leader, term) {
            w.nemesis.last_leader = (leader, term);
            if w.rng.gen_bool(LEADER_FLAP_RATE) {
                let at = w.now + w.rng.gen_range(0..=4);
                w.nemesis.planned.push((at, leader, term));
            } else if !w.net.is_partitioned() && w.rng.gen_bool(LEADER_FLAP_RATE) {
                // Or cut it off, alive, with whatever it has appended.
                let others: Vec<NodeId> = members(w).into_iter().filter(|&i| i != leader).collect();
                w.net.cut_between(&[leader], &others);
                w.nemesis.partition_until = w.now + w.rng.gen_range(5..=40);
                w.nemesis.counts.partitions += 1;
            }
        }
    }
    let now = w.now;
    let due: Vec<(u64, NodeId, u64)> = w
        .nemesis
        .planned
        .iter()
        .copied()
        .filter(|p| p.0 <= now)
        .collect();
    w.nemesis.planned.retain(|p| p.0 > now);
    for (_, id, term) in due {
        let still_leads = w.nodes[&id]
            .raw
            .as_ref()
            .is_some_and(|r| r.raft.term == term);
        if still_leads && may_crash(w) {
            kill(w, id);
        }
    }
}

fn members(w: &World) -> Vec<NodeId> {
    w.nodes
        .values()
        .filter(|n| !n.retired)
        .map(|n| n.id)
        .collect()
}

fn partition(w: &mut World) {
    let mut ids = members(w);
    if ids.len() < 2 {
        return;
    }
    ids.shuffle(&mut w.rng);
    match w.rng.gen_range(0..4) {
        0 => {
            let split = w.rng.gen_range(1..ids.len());
            let (a, b) = ids.split_at(split);
            w.net.cut_between(a, b);
        }
        1 => {
            let Some(leader) = w.leader() else { return };
            let others: Vec<NodeId> = ids.iter().copied().filter(|&i| i != leader).collect();
            w.net.cut_between(&[leader], &others);
        }
        2 => {
            for _ in 0..w.rng.gen_range(1..=3) {
                let a = ids[w.rng.gen_range(0..ids.len())];
                let b = ids[w.rng.gen_range(0..ids.len())];
                w.net.cut(a, b);
            }
        }
        _ => {
            if ids.len() < 3 {
                return;
            }
            let rest = &ids[1..];
            let split = w.rng.gen_range(1..rest.len());
            let (a, b) = rest.split_at(split);
            w.net.cut_between(a, b);
        }
    }
    let ticks = w.rng.gen_range(5..=PARTITION_TICKS_MAX);
    w.nemesis.partition_until = w.now + ticks;
    w.nemesis.counts.partitions += 1;
}

/// Whether another member may go down now (at most a minority of the founders at once, so
/// that runs keep making progress between faults).
pub fn may_crash(w: &World) -> bool {
    let down = members(w).len() - w.running().len();
    down < w.options.nodes / 2
}

/// Crashes member `id` and counts it. It stays down for a while: often it restarts at once (a
/// killed process that its supervisor restarts), otherwise up to `DOWN_TICKS_MAX` ticks.
pub fn kill(w: &mut World, id: NodeId) {
    let ticks = if w.rng.gen_bool(0.4) {
        0
    } else {
        w.rng.gen_range(1..=DOWN_TICKS_MAX)
    };
    w.crash(id, ticks);
    w.nemesis.counts.crashes += 1;
}

fn crash(w: &mut World) {
    let running = w.running();
    if running.is_empty() || !may_crash(w) {
        return;
    }
    // Killing the leader, and killing a member in the middle of a write, are where
    // replication and durability mistakes show: prefer them.
    let writing: Vec<NodeId> = running
        .iter()
        .copied()
        .filter(|id| w.nodes[id].pending.is_some())
        .collect();
    let id = match (w.leader(), w.rng.gen_range(0..10)) {
        (Some(leader), 0..=2) => leader,
        (_, 3..=7) if !writing.is_empty() => writing[w.rng.gen_range(0..writing.len())],
        _ => running[w.rng.gen_range(0..running.len())],
    };
    kill(w, id);
}

fn change_membership(w: &mut World) {
    let Some(leader) = w.leader() else { return };
    let config = w.nodes[&leader]
        .raw
        .as_ref()
        .expect("leader runs")
        .raft
        .tracker
        .config
        .clone();
    let voters: Vec<NodeId> = config.voters.incoming.voters.iter().copied().collect();
    let learners: Vec<NodeId> = config.learners.iter().copied().collect();
    let cc = if config.voters.is_joint() {
        if config.auto_leave {
            return;
        }
        ConfChange::leave_joint()
    } else {
        match w.rng.gen_range(0..4) {
            0 if w.nemesis.next_id <= w.nemesis.id_max => {
                let id = w.nemesis.next_id;
                w.nemesis.next_id += 1;
                w.nodes.insert(id, SimNode::new(id, MemStorage::new()));
                w.start(id);
                ConfChange::simple(ConfChangeKind::AddLearnerNode, id)
            }
            1 if !learners.is_empty() => ConfChange::simple(
                ConfChangeKind::AddNode,
                learners[w.rng.gen_range(0..learners.len())],
            ),
            2 if voters.len() > 3 => ConfChange::simple(
                ConfChangeKind::RemoveNode,
                voters[w.rng.gen_range(0..voters.len())],
            ),
            3 if !learners.is_empty() && voters.len() >= 3 => {
                let transition = [
                    ConfChangeTransition::Auto,
                    ConfChangeTransition::JointImplicit,
                    ConfChangeTransition::JointExplicit,
                ][w.rng.gen_range(0..3)];
                ConfChange::joint(
                    transition,
                    [
                        (
                            ConfChangeKind::AddNode,
                            learners[w.rng.gen_range(0..learners.len())],
                        ),
                        (
                            ConfChangeKind::RemoveNode,
                            voters[w.rng.gen_range(0..voters.len())],
                        ),
                    ],
                )
            }
            _ => return,
        }
    };
    let raw = w
        .nodes
        .get_mut(&leader)
        .and_then(|n| n.raw.as_mut())
        .expect("leader runs");
    if raw.propose_conf_change(&cc).is_ok() {
        w.nemesis.counts.membership_changes += 1;
    }
    w.observe(leader);
}

fn transfer(w: &mut World) {
    let Some(leader) = w.leader() else { return };
    let raw = w
        .nodes
        .get_mut(&leader)
        .and_then(|n| n.raw.as_mut())
        .expect("leader runs");
    let voters: Vec<NodeId> = raw
        .raft
        .tracker
        .config
        .voters
        .ids()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    if voters.is_empty() {
        return;
    }
    let to = voters[w.rng.gen_range(0..voters.len())];
    raw.transfer_leader(to);
    w.nemesis.counts.transfers += 1;
    w.observe(leader);
}
