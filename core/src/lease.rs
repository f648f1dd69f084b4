//! Leases: the lessor, a pure state machine that knows which leases exist, which keys each
//! holds, and — on the leader — when each expires.
//!
//! What it does not do: it reads no clock, starts no thread, deletes no key and proposes
//! nothing. Time arrives as `now_ms`, milliseconds on the calling member's own monotonic clock.
//! The keys live in the MVCC store ([`crate::mvcc`]): the lessor only remembers which keys each
//! lease holds, and [`Lessor::revoke`] hands them back for the caller to delete in one
//! revision. What the leader must replicate (revokes of expired leases, checkpoint batches)
//! leaves as data that the caller proposes through Raft. Picking a lease ID for a grant that
//! asks for none is [`IdGen`]'s job, done before proposing, so apply never sees ID 0.
//!
//! # Call order
//!
//! Every member owns one [`Lessor`] and, in log order, applies the replicated operations to
//! it with its own clock: [`Lessor::grant`], [`Lessor::revoke`], [`Lessor::apply_checkpoint`],
//! and [`Lessor::attach`] / [`Lessor::detach`] whenever a put or delete changes a key's lease.
//! These behave identically on every member.
//!
//! The leader's lessor is *primary*. Call [`Lessor::promote`] once per term, when this member
//! leads **and has applied every entry of earlier terms** (etcd promotes when it applies the
//! empty entry a new leader appends), with an election timeout as the grace; call
//! [`Lessor::demote`] as soon as it stops leading. Only a primary answers [`Lessor::renew`]
//! (keep-alive) and [`Lessor::time_to_live`]. Whenever [`Lessor::poll_timeout`] is due (and
//! after any call that may have changed it), call [`Lessor::expired`] and propose a revoke for
//! each lease it names, and [`Lessor::poll_checkpoints`] and propose the batch as one entry.
//!
//! # Remaining TTLs, and etcd's #9888
//!
//! etcd before the fix restarted every lease's full TTL on a leader change, so a lease could
//! outlive its owner by many TTLs. Here each lease keeps, replicated, its remaining TTL as of
//! the last grant or checkpoint (`remaining_ms`) and, locally, the `anchor_ms` at which this
//! member applied that entry: its estimate of the lease's deadline is `anchor_ms +
//! remaining_ms`, counted down on its own clock. Clocks of different members may have any
//! offset; the argument below assumes they run at the same rate (a clock slow by a fraction
//! `f` stretches a countdown by `f` of its length).
//!
//! 1. A checkpoint proposed at `p` carries `remaining = deadline − p`, where `deadline` is the
//!    proposing primary's latest promise for the lease (its last renew plus the TTL, or what it
//!    inherited at promotion; never the grace). A member applies the entry at some `a ≥ p`, so
//!    its estimate `a + remaining` is never below the deadline, and above it by at most `a −
//!    p`, the time from proposal to apply (`L`). A grant is the same with `deadline =
//!    proposal time + TTL`.
//! 2. Because promotion waits for the entries of earlier terms, a new primary's estimate
//!    includes every checkpoint that committed. It expires the lease at `max(now, estimate) +
//!    grace`, so clients that could not reach any leader during the election get one election
//!    timeout to find the new one.
//!
//! **Safety** (no lease expires before a deadline a client was told). The primary that renews
//! at `r` expires the lease at exactly `r + TTL`, and refuses to renew a lease whose expiry has
//! passed. The renew reaches the other members with the next checkpoint batch (within
//! `renew_checkpoint_delay_ms`, or at once when the delay is zero). If that batch commits, then
//! by 1 and 2 every later primary expires the lease no earlier than `r + TTL + grace`. If the
//! leader is lost before the batch commits, the renew is lost with it and a new primary knows
//! only the previous deadline, plus its grace. So: a server that must never expire a lease
//! before an acknowledged deadline answers a keep-alive once a checkpoint batch proposed after
//! the renew has applied; a server that answers at once, as etcd does, risks only the renews of
//! the last `renew_checkpoint_delay_ms` plus a commit before its leader failed, and those only
//! when the previous renew that did commit is more than a grace older. (A stale leader that
//! has not yet noticed it was deposed is outside this argument: check-quorum bounds how long
//! it acts.) Were `promote` called as soon as the election is won, a checkpoint that commits
//! later would arrive after the new expiries were set, and safety would need each renew to be
//! checkpointed within the grace less a commit; waiting for the earlier terms' entries removes
//! that race instead of bounding it.
//!
//! Hence the **cover**: a primary remembers, per lease, the latest deadline it proposed in a
//! checkpoint batch that has since applied (`committed`; every later primary's estimate is at
//! least that, by 1 and 2). A renew whose new deadline is at most `renew_cover_ms` past
//! `committed` ([`Lessor::renew_would_be_covered`]) needs no batch of its own before its answer: as
//! long as `renew_cover_ms` is within the grace, a later primary expires the lease no earlier
//! than `committed + grace`, whether or not the renew's own batch commits. The default is half
//! the grace, leaving room for members configured with a shorter election timeout and for
//! clocks whose rates differ a little. The renew's batch is then due half the cover later, so
//! that a lease renewed often stays covered with one entry per half cover instead of one per
//! renew; a renew outside the cover waits for its batch as above. The member server still
//! confirms that it leads with a ReadIndex round (which writes nothing) before it renews under
//! the cover, as etcd's leader does before a renew: a leader deposed unawares could otherwise
//! call alive a lease that a newer leader revoked.
//!
//! **Bound** (no lease lives much past its deadline). A primary promoted at `t`, whose caller
//! follows `poll_timeout`, reports a lease expired no later than
//!
//! - `r + TTL`, if it renewed the lease (last at `r`);
//! - `a + TTL`, if it applied the lease's grant at `a` while primary;
//! - otherwise `max(t, E) + grace`, where `E = anchor + remaining ≤ D + L` by 1, with `D` the
//!   deadline that the proposer of the last grant or checkpoint it applied had promised, and
//!   `L` the time from that proposal to this member's apply.
//!
//! So after one leader change a lease last renewed at `r` expires by `max(t, r + TTL + L) +
//! grace`. The grace is never checkpointed, so successive leader changes do not pile graces
//! up; a leader that checkpoints an inherited estimate adds at most one `L` to it (its first
//! periodic checkpoint is due `checkpoint_interval_ms` after promotion). After a restart the
//! anchor is the time of the replay, which only stretches (`L` then includes the downtime):
//! periodic checkpoints keep the replayed remaining TTLs recent. A lease offered by
//! [`Lessor::expired`] and not yet revoked is offered again every `revoke_retry_ms`.
//!
//! Checkpoints and revokes name leases by ID only, as in etcd. A client that revokes a lease
//! and grants its ID again while a checkpoint batch or expiry revoke about the old lease is
//! still in flight gets that entry applied to the new lease. IDs from [`IdGen`] never repeat.

mod config;
mod error;
mod id_gen;
mod lessor;
mod primary;

pub use config::{LessorConfig, TTL_MAX_S};
pub use error::{Error, Result};
pub use id_gen::IdGen;
pub use lessor::{Granted, Lease, Lessor, TimeToLive};

/// A lease's ID. Clients may choose any non-zero ID; the server's [`IdGen`] picks positive ones.
pub type LeaseId = i64;

/// The ID that means "no lease" on a key, and "server picks" in a grant request.
pub const NO_LEASE: LeaseId = 0;
