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
    /// The term of the leader that created the entry.
    pub term: u64,
    /// The entry's position in the log.
    pub index: u64,
    /// What the entry carries.
    pub kind: EntryKind,
    /// The payload: application data, or an encoded configuration change.
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
    /// Leader to follower: entries to append after (`index`, `log_term`), with the commit index.
    Append,
    /// Follower to leader: the append was accepted, or rejected with a hint.
    AppendResponse,
    /// Candidate to voter: asks for a vote in `term`.
    RequestVote,
    /// Voter to candidate: the vote, granted or rejected.
    RequestVoteResponse,
    /// Pre-candidate to voter: would a vote in `term` be granted?
    RequestPreVote,
    /// Voter to pre-candidate: the answer, granted or rejected.
    RequestPreVoteResponse,
    /// Leader to follower: a snapshot to install, when the entries it needs are compacted away.
    Snapshot,
    /// Leader to follower: still leading, with the commit index the follower may reach.
    Heartbeat,
    /// Follower to leader: the heartbeat was received.
    HeartbeatResponse,
    /// Asks the leader to hand leadership to `from`.
    TransferLeader,
    /// Tells the transferee to campaign at once.
    TimeoutNow,
    /// A linearizable read (local, or forwarded by a follower to its leader).
    ReadIndex,
    /// Leader to the follower that forwarded a read: the read index to wait for.
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
    /// What the message is.
    pub kind: MessageKind,
    /// The recipient.
    pub to: NodeId,
    /// The sender.
    pub from: NodeId,
    /// The sender's term (may be 0 on proposals and reads).
    pub term: u64,
    /// Append: the term of the entry at `index`; vote requests: the candidate's last term;
    /// rejected append responses: the term at `reject_hint` in the follower's log.
    pub log_term: u64,
    /// Append: the index before `entries`; vote requests: the candidate's last index;
    /// append responses: the last index accepted (or the rejected `index`); read index
    /// responses: the read index.
    pub index: u64,
    /// Append and proposal: the entries carried.
    pub entries: Vec<Entry>,
    /// Append and heartbeat: the leader's commit index.
    pub commit: u64,
    /// Snapshot: the snapshot to install.
    pub snapshot: Option<Snapshot>,
    /// Responses: the request was refused (vote denied, append not matched).
    pub reject: bool,
    /// Rejected append responses: the highest index at or below the rejected one whose term
    /// may match (fast backtracking).
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
    /// The latest term this member has seen.
    pub term: u64,
    /// The candidate voted for in `term`, or [`NONE`].
    pub vote: NodeId,
    /// The highest index known to be committed.
    pub commit: u64,
}

impl HardState {
    /// Whether nothing has been recorded yet (all zero).
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// The membership, as stored in snapshots and returned after each configuration change.
/// A joint configuration has a non-empty `voters_outgoing`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfState {
    /// Voters of the (incoming) configuration.
    pub voters: Vec<NodeId>,
    /// Non-voting members that receive the log.
    pub learners: Vec<NodeId>,
    /// Voters of the outgoing configuration, during a joint change.
    pub voters_outgoing: Vec<NodeId>,
    /// Voters of the outgoing configuration that become learners when the joint one is left.
    pub learners_next: Vec<NodeId>,
    /// Leave the joint configuration automatically once it is applied.
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

/// Where a snapshot sits in the log and the membership at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnapshotMetadata {
    /// The membership as of the snapshot.
    pub conf_state: ConfState,
    /// The index of the last entry the snapshot covers.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
}

/// A point-in-time state machine image covering the log up to `metadata.index`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// The state machine image, in the owner's encoding.
    pub data: Bytes,
    /// The log position and membership the image is of.
    pub metadata: SnapshotMetadata,
}

impl Snapshot {
    /// Whether this is no snapshot at all (index 0).
    pub fn is_empty(&self) -> bool {
        self.metadata.index == 0
    }
}

/// The result of a read request: once the local applied index reaches `index`, reading the
/// state machine is linearizable for the request tagged `request_ctx`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadState {
    /// The commit index the read waits for.
    pub index: u64,
    /// The context the read was requested with, to match it to its caller.
    pub request_ctx: Bytes,
}

/// How sending a snapshot to a peer went, reported back with `RawNode::report_snapshot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// The snapshot was delivered.
    Finish,
    /// Sending failed; the leader goes back to probing the follower.
    Failure,
}
