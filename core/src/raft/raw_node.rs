//! `RawNode`: the owner's handle on one Raft member, and `Ready`, the batch of work it hands
//! out. This is the whole contract between the sans-IO core and whatever drives it.

use super::conf_change::ConfChange;
use super::config::Config;
use super::error::{Error, Result};
use super::message::{
    ConfState, Entry, EntryKind, HardState, Message, MessageKind, NONE, NodeId, ReadState,
    Snapshot, SnapshotStatus,
};
use super::progress::Progress;
use super::raft::{PlantedBug, Raft, SoftState};
use super::storage::Storage;
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Work for the owner, produced by `RawNode::ready`. Handle it in this order:
///
/// 1. Send `messages`. They may leave at once, even while step 2 is under way: they are the
///    leader's appends, heartbeats, snapshots and forwarded requests, none of which depends on
///    this Ready being durable (a leader counts its own log only once it is durable). When the
///    Ready changes the term or the vote, `messages` is empty: everything waits for step 2.
/// 2. Persist `snapshot` (if any), then `entries` (replacing any stored entries from the first
///    one's index on), then `hard_state` (if any). Sync the disk when `must_sync` is set.
/// 3. Only then send `persisted_messages`: votes, vote requests, append and heartbeat
///    responses. Each of them promises something about durable state (a vote cast, entries
///    stored, a term adopted); sending one before step 2 completes can elect two leaders in a
///    term or lose committed entries after a crash.
/// 4. Apply `snapshot` to the state machine, then `committed_entries` in order (for
///    configuration changes, call `RawNode::apply_conf_change`).
/// 5. Serve each of `read_states` once the state machine has applied its `index`.
/// 6. Call `RawNode::advance`.
///
/// `ready` must not be called again before `advance`; `step`, `tick` and proposals may be called
/// in between (their output waits for the next Ready). A snapshot that arrives meanwhile is not
/// taken while this Ready's committed configuration changes are unapplied: the leader sends it
/// again later.
#[derive(Debug, Default)]
pub struct Ready {
    /// The new leader or role, when either changed.
    pub soft_state: Option<SoftState>,
    /// The new term, vote or commit index, when any changed.
    pub hard_state: Option<HardState>,
    /// Reads whose index is known, to serve once applied up to it.
    pub read_states: Vec<ReadState>,
    /// Entries to persist.
    pub entries: Vec<Entry>,
    /// A snapshot to persist and apply.
    pub snapshot: Option<Snapshot>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Messages that may be sent at once.
    pub messages: Vec<Message>,
    /// Messages to send only once this Ready is persisted.
    pub persisted_messages: Vec<Message>,
    /// Whether the writes of this Ready must be synced to disk before going on.
    pub must_sync: bool,
}

/// What a handed-out Ready covered, to acknowledge on `advance`.
#[derive(Debug)]
struct InFlight {
    last_entry: Option<(u64, u64)>,
    snapshot_index: Option<u64>,
    last_committed: Option<u64>,
    committed_payload_bytes: u64,
}

/// A summary of a member's state, for status endpoints and tests.
#[derive(Clone, Debug)]
pub struct Status {
    /// The member's ID.
    pub id: NodeId,
    /// The term, vote and commit index.
    pub hard_state: HardState,
    /// The known leader and the role.
    pub soft_state: SoftState,
    /// The index applied so far.
    pub applied: u64,
    /// The current membership.
    pub conf_state: ConfState,
    /// The leader's view of every member; empty on other roles.
    pub progress: BTreeMap<NodeId, Progress>,
    /// The member leadership is being handed to, or [`NONE`](super::NONE).
    pub lead_transferee: NodeId,
}

/// Upper bound on any index, term or commit a peer may send: far beyond any real log, and far
/// enough below `u64::MAX` that `index + 1` never overflows.
pub const PEER_INDEX_MAX: u64 = 1 << 62;

/// Structural checks of a message from a peer. Semantic rules (terms, matching logs) are the
/// protocol's business; these only keep malformed input from reaching code that trusts the
/// shape of what a correct peer sends.
fn check_remote(own_id: NodeId, m: &Message) -> Result<()> {
    let invalid = |why| Err(Error::InvalidMessage { from: m.from, why });
    if m.from == NONE || m.from == own_id {
        return invalid("sender id is missing or this member's own");
    }
    if [m.term, m.index, m.log_term, m.commit, m.reject_hint]
        .iter()
        .any(|&v| v >= PEER_INDEX_MAX)
    {
        return invalid("index or term out of range");
    }
    let needs_term = !matches!(m.kind, MessageKind::Propose | MessageKind::ReadIndex);
    if needs_term && m.term == 0 {
        return invalid("missing term");
    }
    match m.kind {
        MessageKind::Propose if m.entries.is_empty() => return invalid("empty proposal"),
        MessageKind::Append => {
            let contiguous = m
                .entries
                .iter()
                .enumerate()
                .all(|(i, e)| e.index == m.index + 1 + i as u64 && e.term <= m.term);
            if !contiguous {
                return invalid("append entries do not follow the previous index");
            }
        }
        MessageKind::Snapshot => {
            let Some(s) = &m.snapshot else {
                return invalid("snapshot message without a snapshot");
            };
            if s.metadata.index >= PEER_INDEX_MAX || s.metadata.term > m.term {
                return invalid("snapshot index or term out of range");
            }
        }
        _ => {}
    }
    Ok(())
}

/// One Raft member, driven by its owner.
///
/// Call order: construct with `new`; call `tick` at a fixed interval; feed every message from
/// peers to `step`; propose with `propose` / `propose_conf_change`; ask for reads with
/// `read_index`. After any of these, check `has_ready`, take the `ready`, handle it as its docs
/// say, and `advance`.
pub struct RawNode<S: Storage> {
    /// The Raft state machine, open for inspection.
    pub raft: Raft<S>,
    prev_soft: SoftState,
    prev_hard: HardState,
    in_flight: Option<InFlight>,
}

impl<S: Storage> RawNode<S> {
    /// A member reading its durable state from `storage`. `rng` draws election timeouts; seed it
    /// differently on each member.
    pub fn new(config: &Config, storage: S, rng: ChaCha8Rng) -> Result<RawNode<S>> {
        let raft = Raft::new(config, storage, rng)?;
        let prev_hard = raft.hard_state();
        Ok(RawNode {
            prev_soft: raft.soft_state(),
            prev_hard,
            raft,
            in_flight: None,
        })
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
        self.raft.debug_assert_invariants();
    }

    /// Starts an election now (if this member may lead).
    pub fn campaign(&mut self) -> Result<()> {
        self.raft.step(Message {
            kind: MessageKind::Hup,
            ..Message::default()
        })
    }

    /// Proposes `data` for the log. On a follower, the proposal is forwarded to the leader;
    /// success means only that it was taken, never that it will commit.
    pub fn propose(&mut self, data: Bytes) -> Result<()> {
        self.raft.step(Message {
            kind: MessageKind::Propose,
            entries: vec![Entry::normal(data)],
            ..Message::default()
        })
    }

    /// Proposes a membership change.
    pub fn propose_conf_change(&mut self, cc: &ConfChange) -> Result<()> {
        self.raft.step(Message {
            kind: MessageKind::Propose,
            entries: vec![Entry {
                kind: EntryKind::ConfChange,
                data: cc.encode(),
                ..Entry::default()
            }],
            ..Message::default()
        })
    }

    /// Applies a committed membership change; returns the new membership.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> Result<ConfState> {
        self.raft.apply_conf_change(cc)
    }

    /// Handles a message from a peer. Refuses, with a typed error and no change of state,
    /// messages no correct peer sends: local kinds, responses from non-members or from this
    /// member's own id, and structurally malformed ones (see `check_remote`).
    pub fn step(&mut self, m: Message) -> Result<()> {
        if m.kind.is_local() {
            return Err(Error::StepLocalMessage(m.kind));
        }
        check_remote(self.raft.id, &m)?;
        if m.kind.is_response() && !self.raft.tracker.progress.contains_key(&m.from) {
            return Err(Error::StepPeerNotFound(m.from));
        }
        let result = self.raft.step(m);
        self.raft.debug_assert_invariants();
        result
    }

    /// Asks for a linearizable read; the answer arrives as a `ReadState` tagged `ctx`.
    pub fn read_index(&mut self, ctx: Bytes) -> Result<()> {
        self.raft.step(Message {
            kind: MessageKind::ReadIndex,
            context: ctx,
            ..Message::default()
        })
    }

    /// Asks the leader to hand leadership to `transferee`.
    pub fn transfer_leader(&mut self, transferee: NodeId) {
        // Refusals (no leader, a learner transferee) are not errors for the caller: it watches
        // the leader change, or not.
        let _ = self.raft.step(Message {
            kind: MessageKind::TransferLeader,
            from: transferee,
            ..Message::default()
        });
    }

    /// Tells the leader that the last message to `id` could not be delivered.
    pub fn report_unreachable(&mut self, id: NodeId) {
        let _ = self.raft.step(Message {
            kind: MessageKind::Unreachable,
            from: id,
            ..Message::default()
        });
    }

    /// Tells the leader how sending a snapshot to `id` went.
    pub fn report_snapshot(&mut self, id: NodeId, status: SnapshotStatus) {
        let _ = self.raft.step(Message {
            kind: MessageKind::SnapshotStatus,
            from: id,
            reject: status == SnapshotStatus::Failure,
            ..Message::default()
        });
    }

    /// Whether `ready` has anything to hand out (always false while a Ready is out).
    pub fn has_ready(&self) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        let r = &self.raft;
        r.soft_state() != self.prev_soft
            || r.hard_state() != self.prev_hard
            || !r.raft_log.unstable_entries().is_empty()
            || r.raft_log.pending_snapshot().is_some()
            || !r.msgs.is_empty()
            || !r.msgs_after_persist.is_empty()
            || !r.read_states.is_empty()
            || r.raft_log.has_next_committed_entries()
    }

    /// Takes the pending work. Panics if the previous Ready was not advanced.
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.in_flight.is_none(),
            "ready called before the previous Ready was advanced"
        );
        let r = &mut self.raft;
        let entries = r.raft_log.unstable_entries().to_vec();
        let snapshot = r.raft_log.pending_snapshot().cloned();
        let committed_entries = r
            .raft_log
            .next_committed_entries(r.config().max_committed_size_per_ready);
        let soft = r.soft_state();
        let hard = r.hard_state();
        let new_term_or_vote = hard.term != self.prev_hard.term || hard.vote != self.prev_hard.vote;
        let must_sync = !entries.is_empty() || snapshot.is_some() || new_term_or_vote;
        let mut messages = std::mem::take(&mut r.msgs);
        let mut persisted_messages = std::mem::take(&mut r.msgs_after_persist);
        if new_term_or_vote {
            // Nothing said in a term may leave before the term (and the vote in it) is durable:
            // a member that won alone (one voter) would otherwise lead a term it can forget.
            messages.append(&mut persisted_messages);
            persisted_messages = messages;
            messages = Vec::new();
            if r.bug(PlantedBug::VoteBeforePersist) {
                let (early, late) = persisted_messages
                    .into_iter()
                    .partition(|m| m.kind == MessageKind::RequestVoteResponse && !m.reject);
                (messages, persisted_messages) = (early, late);
            }
        }
        let rd = Ready {
            soft_state: (soft != self.prev_soft).then_some(soft),
            hard_state: (hard != self.prev_hard).then_some(hard),
            read_states: std::mem::take(&mut r.read_states),
            snapshot,
            committed_entries,
            messages,
            persisted_messages,
            must_sync,
            entries,
        };
        self.prev_soft = soft;
        self.prev_hard = hard;
        self.in_flight = Some(InFlight {
            last_entry: rd.entries.last().map(|e| (e.index, e.term)),
            snapshot_index: rd.snapshot.as_ref().map(|s| s.metadata.index),
            last_committed: rd.committed_entries.last().map(|e| e.index),
            committed_payload_bytes: rd.committed_entries.iter().map(Entry::payload_bytes).sum(),
        });
        rd
    }

    /// Acknowledges the last Ready: its writes are durable and its committed entries applied.
    pub fn advance(&mut self) {
        let done = self
            .in_flight
            .take()
            .expect("advance called without an outstanding Ready");
        let log = &mut self.raft.raft_log;
        if let Some(index) = done.snapshot_index {
            log.stable_snap_to(index);
            if index > log.applied {
                log.applied_to(index);
            }
        }
        if let Some((index, term)) = done.last_entry {
            log.stable_to(index, term);
        }
        if let Some(index) = done.last_committed {
            log.applied_to(index);
        }
        self.raft.on_persisted();
        self.raft.on_applied(done.committed_payload_bytes);
        self.raft.debug_assert_invariants();
    }

    /// A summary of the member's state now.
    pub fn status(&self) -> Status {
        let r = &self.raft;
        Status {
            id: r.id,
            hard_state: r.hard_state(),
            soft_state: r.soft_state(),
            applied: r.raft_log.applied,
            conf_state: r.tracker.conf_state(),
            progress: if r.state == super::raft::StateRole::Leader {
                r.tracker.progress.clone()
            } else {
                BTreeMap::new()
            },
            lead_transferee: r.lead_transferee,
        }
    }

    /// The log's durable storage.
    pub fn storage(&self) -> &S {
        &self.raft.raft_log.storage
    }

    /// The storage, for the owner to persist a Ready into.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.raft.raft_log.storage
    }

    /// The leader known to this member, or `NONE`.
    pub fn leader(&self) -> NodeId {
        self.raft.lead
    }
}
