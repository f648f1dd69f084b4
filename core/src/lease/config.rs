//! The lessor's knobs, with their limits and etcd's defaults.

/// The largest TTL a grant may ask for, in seconds (etcd's `MaxLeaseTTL`).
pub const TTL_MAX_S: i64 = 9_000_000_000;

/// Configuration of one member's lessor. Every member of a cluster must use the same
/// `ttl_min_s` and `ttl_max_s`: grants are applied on each, and must come out the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LessorConfig {
    /// Grants asking for less (zero and negative included) get this TTL; not an error.
    pub ttl_min_s: i64,
    /// Grants asking for more fail with `Error::TtlTooLarge`.
    pub ttl_max_s: i64,
    /// A primary checkpoints each lease's remaining TTL at least this often, so that a member
    /// replaying the log after a restart starts from a recent value.
    pub checkpoint_interval_ms: u64,
    /// A renewed lease is checkpointed at most this long after its renew; renews made meanwhile
    /// share the batch. Until the batch commits, a leader failure loses the renew. A renew
    /// whose deadline a committed one covers (see `renew_cover_ms`) waits half the cover
    /// instead: nobody waits for its batch.
    pub renew_checkpoint_delay_ms: u64,
    /// A renew whose deadline lies at most this far past a deadline the primary saw commit
    /// needs no checkpoint batch of its own before its answer (see [`crate::lease`]); its batch
    /// is then due half this long after it. Safe up to the grace a later primary adds (one
    /// election timeout, when every member has the same); the default is half of that. 0:
    /// every renew waits for its batch.
    pub renew_cover_ms: u64,
    /// A lease offered for revoking by `expired` is offered again after this long if it still
    /// exists (its revoke was lost).
    pub revoke_retry_ms: u64,
    /// Upper bound on the leases in one checkpoint batch and in one answer of `expired`.
    pub batch_max: usize,
}

impl LessorConfig {
    /// etcd's settings for a cluster with this election timeout and heartbeat interval.
    ///
    /// The minimum TTL is derived as etcd derives it: one and a half election timeouts,
    /// counted in whole heartbeat ticks (`(3 * election_ticks / 2) * heartbeat`), rounded up
    /// to whole seconds, so that a lease outlives a leader election (1000 ms election and 100 ms
    /// heartbeat give 2 s).
    pub fn new(election_timeout_ms: u64, heartbeat_ms: u64) -> LessorConfig {
        assert!(heartbeat_ms > 0, "heartbeat_ms must be positive");
        assert!(
            election_timeout_ms > heartbeat_ms,
            "election timeout {election_timeout_ms} ms must exceed heartbeat {heartbeat_ms} ms"
        );
        let election_ticks = election_timeout_ms / heartbeat_ms;
        let ttl_min_ms = (3 * election_ticks / 2) * heartbeat_ms;
        let ttl_min_s = i64::try_from(ttl_min_ms.div_ceil(1000)).expect("a sane election timeout");
        let config = LessorConfig {
            ttl_min_s,
            ttl_max_s: TTL_MAX_S,
            // etcd's default `--lease-checkpoint-interval`.
            checkpoint_interval_ms: 5 * 60 * 1000,
            // At once: a keep-alive is answered when the checkpoint carrying it applied, so
            // any delay here is added to every keep-alive's latency (a heartbeat's delay made
            // them take 100-200 ms). Keep-alives that arrive together still share one entry:
            // the driver proposes one batch per turn, so the batching is group commit's.
            renew_checkpoint_delay_ms: 0,
            // Half the grace: room for members with a shorter election timeout, and for clocks
            // whose rates differ a little.
            renew_cover_ms: election_timeout_ms / 2,
            // etcd's retry interval for expired leases whose revoke did not happen.
            revoke_retry_ms: 3000,
            // etcd's largest checkpoint batch; also its revokes per second.
            batch_max: 1000,
        };
        config.check();
        config
    }

    /// Asserts the limits documented on each field: a bad configuration is the caller's bug.
    pub(super) fn check(&self) {
        assert!(self.ttl_min_s >= 1, "ttl_min_s {} < 1", self.ttl_min_s);
        assert!(
            self.ttl_min_s <= self.ttl_max_s && self.ttl_max_s <= TTL_MAX_S,
            "need 1 <= ttl_min_s {} <= ttl_max_s {} <= {TTL_MAX_S}",
            self.ttl_min_s,
            self.ttl_max_s
        );
        assert!(
            self.checkpoint_interval_ms > 0,
            "checkpoint_interval_ms is 0"
        );
        assert!(self.revoke_retry_ms > 0, "revoke_retry_ms is 0");
        assert!(self.batch_max > 0, "batch_max is 0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_min_is_one_and_a_half_election_timeouts_in_whole_ticks_rounded_up_to_seconds() {
        for (election_ms, heartbeat_ms, ttl_min_s) in [
            (1000, 100, 2), // 1.5 s
            (2000, 300, 3), // 6 ticks: 9 * 300 ms = 2.7 s
            (2100, 300, 3), // 7 ticks: 10 * 300 ms = 3.0 s, not ceil(3.15 s)
            (500, 100, 1),  // 0.75 s
            (10_000, 100, 15),
            (101, 100, 1), // 1 tick: 1 * 100 ms
        ] {
            let c = LessorConfig::new(election_ms, heartbeat_ms);
            assert_eq!(
                c.ttl_min_s, ttl_min_s,
                "{election_ms} ms / {heartbeat_ms} ms"
            );
            assert_eq!(c.ttl_max_s, 9_000_000_000);
            assert_eq!(c.renew_checkpoint_delay_ms, 0);
        }
    }

    #[test]
    #[should_panic(expected = "must exceed heartbeat")]
    fn an_election_timeout_within_a_heartbeat_is_refused() {
        LessorConfig::new(100, 100);
    }

    #[test]
    #[should_panic(expected = "batch_max is 0")]
    fn a_zero_batch_is_refused() {
        LessorConfig {
            batch_max: 0,
            ..LessorConfig::new(1000, 100)
        }
        .check();
    }
}
