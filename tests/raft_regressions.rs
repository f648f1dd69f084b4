//! Regression tests for Raft core bugs found in review (fixed in 17f4ce0). Each test drives
//! real `RawNode`s through the scenario that broke and asserts the correct behaviour; run
//! against 719c8af, each of them fails (or panics).
//!
//! The driver is deliberately small: a `BTreeMap` of members, one shared in-flight message
//! queue that tests filter and reorder by hand, and a `Ready` handler that follows the order
//! `Ready`'s docs prescribe (early messages, persist, late messages, apply, advance).

use bytes::Bytes;
use oxcd::raft::{
    ConfChange, ConfChangeKind, ConfState, DropReason, Entry, EntryKind, Error, MemStorage,
    Message, MessageKind, PENDING_READS_MAX, RawNode, ReadState, StateRole,
};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use std::collections::BTreeMap;

type Node = RawNode<MemStorage>;

fn data(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A member with plain elections (no pre-vote, no check-quorum), so `campaign` decides at once.
fn new_node(id: u64, storage: MemStorage, max_uncommitted_bytes: u64) -> Node {
    let mut config = oxcd::raft::Config::new(id);
    config.check_quorum = false;
    config.pre_vote = false;
    config.max_uncommitted_bytes = max_uncommitted_bytes;
    RawNode::new(&config, storage, ChaCha8Rng::seed_from_u64(id)).expect("valid config")
}

#[derive(Default)]
struct Net {
    nodes: BTreeMap<u64, Node>,
    /// What each member applied, in order (survives a member's crash unless the test resets it).
    applied: BTreeMap<u64, Vec<Entry>>,
    reads: BTreeMap<u64, Vec<ReadState>>,
    /// Messages sent and not yet delivered, in send order.
    inbox: Vec<Message>,
}

impl Net {
    /// Founding members `ids` of a cluster with membership `cs`.
    fn new(ids: &[u64], cs: &ConfState, max_uncommitted_bytes: u64) -> Net {
        let mut net = Net::default();
        for &id in ids {
            let storage = MemStorage::new_with_conf_state(cs.clone());
            net.nodes
                .insert(id, new_node(id, storage, max_uncommitted_bytes));
        }
        net
    }

    /// Member 1 leads a stable cluster of `ids`, all voters.
    fn with_leader(ids: &[u64]) -> Net {
        let mut net = Net::new(ids, &ConfState::with_voters(ids.iter().copied()), u64::MAX);
        net.rn(1).campaign().unwrap();
        net.stabilize();
        assert_eq!(net.rn(1).raft.state, StateRole::Leader);
        net
    }

    fn rn(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).expect("member exists")
    }

    /// Handles one Ready of `id`, if it has one, in the documented order.
    fn ready(&mut self, id: u64) -> bool {
        let rn = self.nodes.get_mut(&id).expect("member exists");
        if !rn.has_ready() {
            return false;
        }
        let rd = rn.ready();
        self.inbox.extend(rd.messages);
        let storage = rn.storage_mut();
        if let Some(snapshot) = rd.snapshot {
            storage.apply_snapshot(snapshot).unwrap();
        }
        storage.append(&rd.entries).unwrap();
        if let Some(hs) = rd.hard_state {
            storage.set_hard_state(hs);
        }
        self.inbox.extend(rd.persisted_messages);
        for e in &rd.committed_entries {
            if e.kind == EntryKind::ConfChange {
                let cc = ConfChange::decode(&e.data).expect("committed change decodes");
                rn.apply_conf_change(&cc).expect("committed change applies");
            }
        }
        self.applied
            .entry(id)
            .or_default()
            .extend(rd.committed_entries);
        self.reads.entry(id).or_default().extend(rd.read_states);
        rn.advance();
        true
    }

    /// Delivers the queued messages that `pick` selects (to live members; others are lost).
    /// Refusals are ignored, as a transport would only log them.
    fn deliver(&mut self, pick: impl Fn(&Message) -> bool) {
        let (now, later) = std::mem::take(&mut self.inbox).into_iter().partition(pick);
        self.inbox = later;
        for m in now {
            if let Some(rn) = self.nodes.get_mut(&m.to) {
                let _ = rn.step(m);
            }
        }
    }

    /// Handles Readies and delivers everything until the cluster is quiet.
    fn stabilize(&mut self) {
        loop {
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            let mut moved = false;
            for id in ids {
                moved |= self.ready(id);
            }
            moved |= !self.inbox.is_empty();
            self.deliver(|_| true);
            if !moved {
                return;
            }
        }
    }

    /// Asserts that no two members applied different entries at the same index.
    fn assert_applied_agree(&self) {
        let mut at: BTreeMap<u64, (u64, &Entry)> = BTreeMap::new();
        for (&id, entries) in &self.applied {
            for e in entries {
                let (first, seen) = *at.entry(e.index).or_insert((id, e));
                assert_eq!(
                    (seen.term, &seen.data),
                    (e.term, &e.data),
                    "members {first} and {id} applied different entries at index {}",
                    e.index
                );
            }
        }
    }
}

/// Guards: a Ready that changes the term or the vote holds back all its messages until the
/// HardState is durable. A single voter wins an election inside one `step`; if its appends of
/// the new term left before the term was durable, a crash let it win the same term again with
/// a different log, and a learner that had taken the first appends applied entries the leader
/// never committed.
#[test]
fn single_voter_leader_sends_nothing_before_its_new_term_is_durable() {
    let cs = ConfState {
        voters: vec![1, 3],
        learners: vec![2],
        ..ConfState::default()
    };
    let mut net = Net::new(&[1, 2, 3], &cs, u64::MAX);
    net.rn(3).campaign().unwrap();
    net.stabilize();
    assert_eq!(net.rn(3).raft.state, StateRole::Leader);

    // Leader 3 removes itself; 1 acknowledges the removal, so it commits on 3.
    net.rn(3)
        .propose_conf_change(&ConfChange::simple(ConfChangeKind::RemoveNode, 3))
        .unwrap();
    net.ready(3);
    net.deliver(|m| m.to != 3);
    net.ready(1);
    net.ready(2);
    net.deliver(|m| m.to == 3);
    // Before applying the removal, 3 takes one more proposal X; then it applies the removal
    // and steps down. 1 and 2 learn the commit first: 1 is now the only voter.
    net.rn(3).propose(data("X")).unwrap();
    net.ready(3);
    net.deliver(|m| m.from == 3 && m.entries.is_empty());
    net.ready(1);
    net.ready(2);
    assert_eq!(net.rn(1).raft.tracker.conf_state().voters, vec![1]);
    // X reaches 1 and 2; 2 persists it, 1 campaigns before writing it.
    net.deliver(|m| m.from == 3 && !m.entries.is_empty());
    net.ready(2);
    net.inbox.retain(|m| m.to != 3);
    net.nodes.remove(&3);
    let durable_1 = net.rn(1).storage().clone();
    net.rn(1).campaign().unwrap();
    assert_eq!(net.rn(1).raft.state, StateRole::Leader);

    // 1 sends what may leave before its Ready is durable, then crashes before persisting.
    let rd = net.rn(1).ready();
    net.inbox.extend(rd.messages);
    net.nodes.remove(&1);
    net.deliver(|m| m.to == 2);
    net.ready(2);
    let delayed_to_1: Vec<Message> = net.inbox.drain(..).filter(|m| m.to == 1).collect();

    // 1 restarts from its durable state, re-applies the log, and leads a term of its own.
    net.applied.insert(1, Vec::new());
    net.nodes.insert(1, new_node(1, durable_1, u64::MAX));
    net.ready(1);
    net.rn(1).campaign().unwrap();
    net.rn(1).propose(data("Y")).unwrap();
    net.ready(1);
    net.ready(1);
    // Its probe to 2 is delayed; 2's acknowledgements of the first run arrive first.
    let probe = std::mem::take(&mut net.inbox);
    for m in delayed_to_1 {
        net.rn(1).step(m).unwrap();
    }
    net.ready(1);
    net.deliver(|m| m.to == 2);
    net.ready(2);
    net.assert_applied_agree();

    // Once the probe arrives, the learner converges on the leader's log.
    net.inbox.extend(probe);
    net.stabilize();
    net.assert_applied_agree();
    let last = net.rn(1).raft.raft_log.last_index();
    assert_eq!(net.applied[&2].last().map(|e| e.index), Some(last));
    assert_eq!(
        net.applied[&2].last().map(|e| e.data.clone()),
        Some(data("Y"))
    );
}

/// Guards: the automatic leave of a joint configuration never trips the uncommitted-bytes
/// limit. A leader elected while an auto-leave joint configuration is in force (its
/// predecessor crashed before leaving it) proposes the leave on its first `advance`; with the
/// uncommitted budget nearly full, a leave entry that carried payload bytes was refused and
/// the leader panicked.
#[test]
fn auto_leave_joint_fits_a_full_uncommitted_budget() {
    let cs = ConfState {
        voters: vec![1, 2, 3],
        voters_outgoing: vec![1, 2],
        auto_leave: true,
        ..ConfState::default()
    };
    let limit = 1000;
    let mut net = Net::new(&[1, 2, 3], &cs, limit);
    net.rn(1).campaign().unwrap();
    for _ in 0..2 {
        for id in [1, 2, 3] {
            net.ready(id);
        }
        net.deliver(|_| true);
    }
    assert_eq!(net.rn(1).raft.state, StateRole::Leader);
    // Clients fill the budget to within a few bytes before the leader's next `advance`.
    net.rn(1).propose(Bytes::from(vec![b'x'; 995])).unwrap();
    assert_eq!(
        net.rn(1).propose(data("12345678")),
        Err(Error::ProposalDropped(DropReason::UncommittedLimit))
    );

    net.ready(1);
    let leave = net.rn(1).raft.raft_log.last_index();
    let entry = &net
        .rn(1)
        .raft
        .raft_log
        .slice(leave, leave + 1, u64::MAX)
        .unwrap()[0];
    assert_eq!(entry.kind, EntryKind::ConfChange);
    assert!(ConfChange::decode(&entry.data).unwrap().is_leave_joint());

    net.stabilize();
    for id in [1, 2, 3] {
        let cs = net.rn(id).raft.tracker.conf_state();
        assert_eq!(cs.voters, vec![1, 2, 3], "member {id}");
        assert!(
            cs.voters_outgoing.is_empty() && !cs.auto_leave,
            "member {id}: {cs:?}"
        );
        assert!(net.applied[&id].iter().any(|e| e.index == leave));
    }
}

/// Guards: a ReadIndex read pending when the configuration shrinks to the leader alone is
/// still answered. Its heartbeat round was lost, and with no peer left nobody would ever
/// acknowledge one, so the read waited forever.
#[test]
fn pending_read_is_answered_when_the_configuration_shrinks_to_one_voter() {
    let mut net = Net::with_leader(&[1, 2]);
    net.rn(1).read_index(data("r1")).unwrap();
    assert_eq!(net.rn(1).raft.pending_read_count(), 1);
    net.rn(1)
        .propose_conf_change(&ConfChange::simple(ConfChangeKind::RemoveNode, 2))
        .unwrap();
    // The read's heartbeats to 2 are lost; the appends go through.
    for _ in 0..10 {
        net.ready(1);
        net.ready(2);
        net.inbox.retain(|m| m.kind != MessageKind::Heartbeat);
        net.deliver(|_| true);
    }
    assert_eq!(net.rn(1).raft.tracker.conf_state().voters, vec![1]);
    for _ in 0..3 * net.rn(1).raft.config().election_ticks {
        net.rn(1).tick();
        net.stabilize();
    }
    let answered: Vec<&Bytes> = net.reads[&1].iter().map(|r| &r.request_ctx).collect();
    assert_eq!(answered, vec![&data("r1")]);
    assert_eq!(net.rn(1).raft.pending_read_count(), 0);
}

/// Asserts that `to` refuses `m` with `Error::InvalidMessage` naming the sender, that the
/// refusal changed neither its durable state nor its log, and that the cluster (led by 1)
/// still commits a proposal afterwards.
fn assert_refused(net: &mut Net, to: u64, m: Message) {
    let from = m.from;
    let before = (
        net.rn(to).status().hard_state,
        net.rn(to).raft.raft_log.last_index(),
    );
    let res = net.rn(to).step(m);
    let refused = matches!(res, Err(Error::InvalidMessage { from: f, .. }) if f == from);
    assert!(refused, "expected InvalidMessage from {from}, got {res:?}");
    let after = (
        net.rn(to).status().hard_state,
        net.rn(to).raft.raft_log.last_index(),
    );
    assert_eq!(after, before, "a refused message changes nothing");
    net.rn(1).propose(data("after")).unwrap();
    net.stabilize();
    net.assert_applied_agree();
    for (id, applied) in &net.applied {
        assert_eq!(
            applied.last().map(|e| e.data.clone()),
            Some(data("after")),
            "{id}"
        );
    }
}

/// Guards: a forwarded proposal without entries is refused, not asserted on by the leader.
#[test]
fn malformed_empty_proposal_is_refused() {
    let mut net = Net::with_leader(&[1, 2, 3]);
    let m = Message {
        kind: MessageKind::Propose,
        from: 2,
        to: 1,
        ..Message::default()
    };
    assert_refused(&mut net, 1, m);
}

/// Guards: a vote request without a term is refused (it used to be taken for a local message
/// and answered with a term-0 vote, which `send` asserts against).
#[test]
fn malformed_vote_request_without_term_is_refused() {
    let mut net = Net::with_leader(&[1, 2, 3]);
    let m = Message {
        kind: MessageKind::RequestVote,
        from: 1,
        to: 3,
        index: 100,
        log_term: 100,
        ..Message::default()
    };
    assert_refused(&mut net, 3, m);
}

/// Guards: an append response claiming to come from the leader itself is refused: it would
/// count the leader's log as durable before it is.
#[test]
fn malformed_append_response_from_own_id_is_refused() {
    let mut net = Net::with_leader(&[1, 2, 3]);
    net.rn(1).propose(data("a")).unwrap();
    let m = Message {
        kind: MessageKind::AppendResponse,
        from: 1,
        to: 1,
        term: net.rn(1).raft.term,
        index: net.rn(1).raft.raft_log.last_index(),
        ..Message::default()
    };
    assert_refused(&mut net, 1, m);
}

/// Guards: an append whose entries do not follow its previous index is refused, not spliced
/// into the log (or committed past its end).
#[test]
fn malformed_non_contiguous_append_is_refused() {
    let mut net = Net::with_leader(&[1, 2, 3]);
    let log = &net.rn(2).raft.raft_log;
    let (last, last_term) = (log.last_index(), log.last_term());
    let term = net.rn(1).raft.term;
    let m = Message {
        kind: MessageKind::Append,
        from: 1,
        to: 2,
        term,
        index: last,
        log_term: last_term,
        entries: vec![Entry {
            index: last + 2,
            term,
            data: data("gap"),
            ..Entry::default()
        }],
        commit: last + 1,
        ..Message::default()
    };
    assert_refused(&mut net, 2, m);
}

/// Guards: indexes too large for the log's arithmetic are refused, not overflowed.
#[test]
fn malformed_oversized_index_is_refused() {
    let mut net = Net::with_leader(&[1, 2, 3]);
    let m = Message {
        kind: MessageKind::AppendResponse,
        from: 2,
        to: 1,
        term: net.rn(1).raft.term,
        index: u64::MAX,
        ..Message::default()
    };
    assert_refused(&mut net, 1, m);
}

/// Guards: a snapshot message that carries no snapshot is refused.
#[test]
fn malformed_snapshot_message_without_snapshot_is_refused() {
    let mut net = Net::with_leader(&[1, 2, 3]);
    let m = Message {
        kind: MessageKind::Snapshot,
        from: 1,
        to: 2,
        term: net.rn(1).raft.term,
        ..Message::default()
    };
    assert_refused(&mut net, 2, m);
}

/// Guards: a read past the leader's pending-read limit is refused with a typed error (it was
/// silently dropped, leaving the caller to time out), and the limit frees up once reads are
/// answered.
#[test]
fn read_past_the_pending_read_limit_is_refused() {
    let mut net = Net::with_leader(&[1, 2, 3]);
    for _ in 0..PENDING_READS_MAX {
        net.rn(1).read_index(Bytes::new()).unwrap();
    }
    assert_eq!(
        net.rn(1).read_index(data("one too many")),
        Err(Error::ProposalDropped(DropReason::PendingReadLimit))
    );
    net.stabilize();
    assert_eq!(net.reads[&1].len(), PENDING_READS_MAX);
    net.rn(1).read_index(data("next")).unwrap();
    net.stabilize();
    assert_eq!(
        net.reads[&1].last().map(|r| r.request_ctx.clone()),
        Some(data("next"))
    );
}

/// Guards: a configuration change refused for the uncommitted limit does not leave itself
/// marked pending (`pending_conf_index` pointing past the log blocked every later change).
#[test]
fn conf_change_refused_for_uncommitted_limit_does_not_block_the_next() {
    let mut net = Net::new(&[1], &ConfState::with_voters([1]), 100);
    net.rn(1).campaign().unwrap();
    net.stabilize();
    net.rn(1).propose(Bytes::from(vec![b'x'; 95])).unwrap();
    let add_learner = ConfChange::simple(ConfChangeKind::AddLearnerNode, 2);
    assert_eq!(
        net.rn(1).propose_conf_change(&add_learner),
        Err(Error::ProposalDropped(DropReason::UncommittedLimit))
    );
    net.stabilize();
    net.rn(1).propose_conf_change(&add_learner).unwrap();
    net.stabilize();
    assert_eq!(net.rn(1).raft.tracker.conf_state().learners, vec![2]);
}

/// Guards against restoring a snapshot while the owner still has committed configuration
/// changes to apply from the outstanding Ready: applying them afterwards would lay them over the
/// snapshot's (newer) membership. The member refuses the snapshot until they are applied, then
/// takes it when the leader sends it again.
#[test]
fn snapshot_waits_for_outstanding_conf_changes() {
    let voters = ConfState::with_voters([1, 2, 3]);
    let mut rn = new_node(2, MemStorage::new_with_conf_state(voters.clone()), u64::MAX);
    let change = ConfChange::simple(ConfChangeKind::AddLearnerNode, 4);
    let from_leader = |kind| Message {
        kind,
        from: 1,
        to: 2,
        term: 2,
        ..Message::default()
    };
    let mut append = from_leader(MessageKind::Append);
    (append.index, append.log_term, append.commit) = (1, 1, 3);
    append.entries = vec![
        Entry {
            index: 2,
            term: 2,
            ..Entry::default()
        },
        Entry {
            index: 3,
            term: 2,
            kind: EntryKind::ConfChange,
            data: change.encode(),
        },
    ];
    rn.step(append).unwrap();
    let rd = rn.ready();
    assert_eq!(rd.committed_entries.len(), 2, "the change is committed");

    // The snapshot arrives while the Ready (and its configuration change) is outstanding.
    let mut with_learner = voters.clone();
    with_learner.learners = vec![4];
    let mut snapshot = from_leader(MessageKind::Snapshot);
    snapshot.snapshot = Some(oxcd::raft::Snapshot {
        data: Bytes::new(),
        metadata: oxcd::raft::SnapshotMetadata {
            conf_state: with_learner,
            index: 5,
            term: 2,
        },
    });
    rn.step(snapshot.clone()).unwrap();
    assert!(
        rn.raft.raft_log.pending_snapshot().is_none(),
        "a snapshot was restored under an unapplied configuration change"
    );

    // The owner finishes the Ready as documented, applying the change; the resent snapshot
    // is then taken.
    let storage = rn.storage_mut();
    storage.append(&rd.entries).unwrap();
    storage.set_hard_state(rd.hard_state.expect("new term"));
    let cs = rn.apply_conf_change(&change).unwrap();
    assert_eq!(cs.learners, vec![4]);
    rn.advance();
    while rn.has_ready() {
        let _ = rn.ready();
        rn.advance();
    }
    rn.step(snapshot).unwrap();
    assert_eq!(
        rn.raft
            .raft_log
            .pending_snapshot()
            .map(|s| s.metadata.index),
        Some(5)
    );
}
