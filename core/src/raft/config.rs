//! The knobs of one Raft member, with their limits. Validated once, when the member starts.

use super::error::{Error, Result};
use super::message::NONE;

/// Configuration of one Raft member. Times are in ticks: the owner calls `RawNode::tick` at a
/// fixed interval (etcd's `--heartbeat-interval`, 100 ms by default).
#[derive(Clone, Debug)]
pub struct Config {
    /// This member's id; non-zero.
    pub id: u64,
    /// Ticks without hearing from a leader before a follower campaigns. Each member draws its
    /// actual timeout from `[election_ticks, 2 * election_ticks)` with its seeded RNG, so that
    /// split votes resolve. Must exceed `heartbeat_ticks`; etcd uses 10 (1 s at 100 ms ticks).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats; at least 1.
    pub heartbeat_ticks: usize,
    /// The last index the owner's state machine has applied; entries up to it are never handed
    /// out again after a restart. Zero for a fresh state machine.
    pub applied: u64,
    /// Upper bound on the entry bytes in one append message; at least one entry is always sent,
    /// whatever its size. Zero means one entry per message.
    pub max_size_per_msg: u64,
    /// Upper bound on the committed entry bytes handed out in one Ready (at least one entry).
    pub max_committed_size_per_ready: u64,
    /// Upper bound on the payload bytes a leader holds appended but uncommitted; proposals past
    /// it are refused with `DropReason::UncommittedLimit` (a proposal is always accepted while
    /// nothing is uncommitted). Zero means no limit.
    pub max_uncommitted_bytes: u64,
    /// Upper bound on append messages in flight to one follower in the replicate state (the
    /// pipelining window); at least 1.
    pub max_inflight_msgs: usize,
    /// A leader steps down when it has not heard from a quorum within an election timeout, and
    /// voters ignore vote requests while they hear from a live leader.
    pub check_quorum: bool,
    /// Run a pre-vote round before campaigning, so that a partitioned member rejoining does not
    /// disrupt the cluster with a higher term.
    pub pre_vote: bool,
    /// Refuse proposals on followers instead of forwarding them to the leader.
    pub disable_proposal_forwarding: bool,
    /// Deliberate mistakes, for proving that the simulator catches them. Never set in production.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<super::PlantedBug>,
}

impl Config {
    /// A configuration with etcd's defaults for member `id`.
    pub fn new(id: u64) -> Config {
        Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            applied: 0,
            max_size_per_msg: 1024 * 1024,
            max_committed_size_per_ready: 64 * 1024 * 1024,
            max_uncommitted_bytes: 64 * 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            disable_proposal_forwarding: false,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// Checks the limits documented on each field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |why: &str| Err(Error::ConfigInvalid(why.to_string()));
        if self.id == NONE {
            return invalid("id must not be zero");
        }
        if self.heartbeat_ticks == 0 {
            return invalid("heartbeat_ticks must be at least 1");
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return invalid("election_ticks must be greater than heartbeat_ticks");
        }
        if self.max_inflight_msgs == 0 {
            return invalid("max_inflight_msgs must be at least 1");
        }
        Ok(())
    }
}
