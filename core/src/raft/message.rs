//! The values Raft exchanges and persists: entries, messages, hard state, configuration state
//! and snapshots. Plain data with no behaviour beyond small helpers; encoding for the wire and the
//! disk belongs to the layers that need it.

use bytes::Bytes;

/// A member's identity. Zero means "nobody" (no leader, no vote).
pub type NodeId = u64;

/// The "nobody" node id.
pub const NONE: NodeId = 0;

/// What an entry carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// Application data (empty data: a leader's no-op entry).
    #[default]
    Normal,
    /// An encoded [`crate::raft::ConfChange`].
    ConfChange,
}

/// One log entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub kind: EntryKind,
    pub data: Bytes,
}

impl Entry {
    /// A normal entry with `data`; term and index are assigned by the leader.
    pub fn normal(data: Bytes) -> Entry {
        Entry {
            data,
            ..Entry::default()
        }
    }

    /// The size this entry counts for in byte limits (its payload).
    pub fn payload_bytes(&self) -> u64 {
        self.data.len() as u64
    }

    /// The approximate size of the entry on the wire, for message size limits.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// The kinds of message. Local kinds never cross the network: the owner creates them through
/// `RawNode` methods, and `RawNode::step` refuses them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    /// Local: start an election.
    #[default]
    Hup,
    /// Local: the leader should send heartbeats.
    Beat,
    /// Local on a leader: check that a quorum has been active.
    CheckQuorum,
    /// Local: a peer was unreachable.
    Unreachable,
    /// Local: how sending a snapshot went (`reject` = it failed).
    SnapshotStatus,
    /// A proposal (local, or forwarded by a follower to its leader).
    Propose,
    Append,
    AppendResponse,
    RequestVote,
    RequestVoteResponse,
    RequestPreVote,
    RequestPreVoteResponse,
    Snapshot,
    Heartbeat,
    HeartbeatResponse,
    /// Asks the leader to hand leadership to `from`.
    TransferLeader,
    /// Tells the transferee to campaign at once.
    TimeoutNow,
    /// A linearizable read (local, or forwarded by a follower to its leader).
    ReadIndex,
    ReadIndexResponse,
}

impl MessageKind {
    /// Whether this kind is created locally and must never arrive from the network.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            MessageKind::Hup
                | MessageKind::Beat
                | MessageKind::CheckQuorum
                | MessageKind::Unreachable
                | MessageKind::SnapshotStatus
        )
    }

    /// Whether this kind answers a request (it never creates state at the receiver).
    pub fn is_response(self) -> bool {
        matches!(
            self,
            MessageKind::AppendResponse
                | MessageKind::RequestVoteResponse
                | MessageKind::RequestPreVoteResponse
                | MessageKind::HeartbeatResponse
                | MessageKind::ReadIndexResponse
                | MessageKind::Unreachable
                | MessageKind::SnapshotStatus
        )
    }

    /// Whether a message of this kind may leave before the Ready that produced it is durable.
    /// Everything a follower or candidate says about its log, its term or its vote must wait;
    /// what a leader sends about its own log and commit index may go at once (the leader counts
    /// its own copy only after it is durable).
    pub fn may_send_before_persist(self) -> bool {
        matches!(
            self,
            MessageKind::Append
                | MessageKind::Heartbeat
                | MessageKind::Snapshot
                | MessageKind::TimeoutNow
                | MessageKind::ReadIndexResponse
                | MessageKind::Propose
                | MessageKind::ReadIndex
                | MessageKind::RequestPreVote
                | MessageKind::TransferLeader
        )
    }
}

/// A Raft message. Which fields mean something depends on `kind`; unused ones stay zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub kind: MessageKind,
    pub to: NodeId,
    pub from: NodeId,
    pub term: u64,
    /// Append: the term of the entry at `index`; vote requests: the candidate's last term;
    /// rejected append responses: the term at `reject_hint` in the follower's log.
    pub log_term: u64,
    /// Append: the index before `entries`; vote requests: the candidate's last index;
    /// append responses: the last index accepted (or the rejected `index`); read index
    /// responses: the read index.
    pub index: u64,
    pub entries: Vec<Entry>,
    pub commit: u64,
    pub snapshot: Option<Snapshot>,
    pub reject: bool,
    pub reject_hint: u64,
    /// Heartbeats: the read round being confirmed; read index: the caller's request context;
    /// votes: [`CAMPAIGN_TRANSFER`] when a leader transfer forces the election.
    pub context: Bytes,
}

/// Vote context marking an election forced by a leader transfer: voters grant it even while
/// they believe a leader is alive.
pub const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// What must be durable before a member may vote or acknowledge anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    pub term: u64,
    pub vote: NodeId,
    pub commit: u64,
}

impl HardState {
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// The membership, as stored in snapshots and returned after each configuration change.
/// A joint configuration has a non-empty `voters_outgoing`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfState {
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub voters_outgoing: Vec<NodeId>,
    /// Voters of the outgoing configuration that become learners when the joint one is left.
    pub learners_next: Vec<NodeId>,
    pub auto_leave: bool,
}

impl ConfState {
    /// A configuration of the given voters.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> ConfState {
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        ConfState {
            voters,
            ..ConfState::default()
        }
    }

    /// Whether `id` appears anywhere in this configuration.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
            || self.learners.contains(&id)
            || self.voters_outgoing.contains(&id)
            || self.learners_next.contains(&id)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnapshotMetadata {
    pub conf_state: ConfState,
    pub index: u64,
    pub term: u64,
}

/// A point-in-time state machine image covering the log up to `metadata.index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub data: Bytes,
    pub metadata: SnapshotMetadata,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.metadata.index == 0
    }
}

/// The result of a read request: once the local applied index reaches `index`, reading the
/// state machine is linearizable for the request tagged `request_ctx`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadState {
    pub index: u64,
    pub request_ctx: Bytes,
}

/// How sending a snapshot to a peer went, reported back with `RawNode::report_snapshot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    Finish,
    Failure,
}
