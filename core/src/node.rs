//! One member as a pure state machine: Raft plus the apply side, over durable storage.
//!
//! - [`Applier`]: what a committed command does to the store, the leases and the watchers.
//! - [`Command::encode`] / [`Command::decode`]: the bytes a command travels in through the log.
//! - [`Member`]: the Raft core and the applier over one storage engine: recovery, group
//!   commit, exactly-once apply.
//! - [`MemberRecord`]: a member's record and the rules a membership change must pass.
//! - [`MemberServer`]: a member and its policy (waiters, ReadIndex batching, lessor promotion,
//!   keep-alives after their checkpoint, quota, the removed-member stop), with no IO.
//! - [`Compactor`]: when the leader compacts on its own, on etcd's schedule.
//! - [`initial_check`] / [`periodic_check`]: the corruption checks' verdicts from HashKVs.

mod apply;
mod codec;
mod compactor;
mod corruption;
mod member;
mod membership;
mod server;
mod space;
pub mod version;

pub use apply::{ALARM_CORRUPT, ALARM_NOSPACE, AlarmAction, Applied, Applier, ApplyError, Command};
pub use codec::{RequestId, TXN_DEPTH_MAX};
pub use compactor::{CompactionPolicy, Compactor};
pub use corruption::{
    Finding, InitialVerdict, PeerAnswer, PeerHash, PeriodicVerdict, initial_check, periodic_check,
};
pub use member::{AppliedEntry, Member, MemberConfig, Outcome, Output};
pub use membership::{LEARNERS_MAX, MemberRecord, Members, MembershipError, PROMOTE_READY_PERCENT};
pub use server::{
    Credential, Handled, Header, LOG_COMPACTION_ENTRIES_MAX, MemberServer, PolicyBug, PolicyConfig,
    REMOVED_MESSAGE, Refusal, Response, V2_SYNC_INTERVAL_MS, WATCH_SYNCS_PER_TURN_MAX, Waiter,
    WatchRequest, WatchTaken,
};
pub use space::{PAGE_BYTES, Space};
