//! The lessor: the replicated table of leases and the keys attached to them, plus, while this
//! member leads, the primary's timers ([`super::primary`]). See the module docs of
//! [`crate::lease`] for the call order and the remaining-TTL argument.

use super::config::LessorConfig;
use super::error::{Error, Result};
use super::primary::{Primary, Timers};
use super::{LeaseId, NO_LEASE};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// One lease as every member holds it. Everything but `anchor_ms` is the same on every member.
#[derive(Clone, Debug)]
pub struct Lease {
    ttl_s: i64,
    /// Remaining TTL as of the last grant or checkpoint (the full TTL at grant).
    remaining_ms: u64,
    /// This member's `now_ms` when it applied that grant or checkpoint.
    anchor_ms: u64,
    keys: BTreeSet<Bytes>,
}

impl Lease {
    /// The granted TTL, after clamping to the minimum.
    pub fn ttl_s(&self) -> i64 {
        self.ttl_s
    }

    /// The remaining TTL as last replicated.
    pub fn remaining_ms(&self) -> u64 {
        self.remaining_ms
    }

    /// When this member applied the entry that set `remaining_ms` (local, not replicated).
    pub fn anchor_ms(&self) -> u64 {
        self.anchor_ms
    }

    /// The attached keys, sorted.
    pub fn keys(&self) -> &BTreeSet<Bytes> {
        &self.keys
    }

    pub(super) fn ttl_ms(&self) -> u64 {
        ttl_ms(self.ttl_s)
    }
}

fn ttl_ms(ttl_s: i64) -> u64 {
    let ttl_s = u64::try_from(ttl_s).expect("TTLs are clamped to at least 1 s");
    ttl_s.checked_mul(1000).expect("TTLs are at most 9e9 s")
}

/// What a grant did: the lease's ID and its TTL after clamping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The ID of the lease granted.
    pub id: LeaseId,
    /// The TTL granted, in seconds, after clamping to `ttl_min_s`.
    pub ttl_s: i64,
}

/// A primary's answer to a time-to-live request (etcd's `LeaseTimeToLiveResponse`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeToLive {
    /// The lease asked about.
    pub id: LeaseId,
    /// Seconds until the lease expires on this primary, truncated (etcd truncates too); 0
    /// once expired but not yet revoked.
    pub ttl_s: i64,
    /// The TTL the lease was granted with, after clamping.
    pub granted_ttl_s: i64,
    /// The attached keys, sorted; empty unless asked for.
    pub keys: Vec<Bytes>,
}

/// One member's lessor. Replicated operations change the same state on every member; the
/// leader-only ones need [`Lessor::promote`] first. The module docs of [`crate::lease`] give
/// the order of calls.
#[derive(Debug)]
pub struct Lessor {
    config: LessorConfig,
    leases: BTreeMap<LeaseId, Lease>,
    /// Every attached key and its lease: the inverse of the leases' key sets.
    key_leases: BTreeMap<Bytes, LeaseId>,
    /// Present while this member's lessor is primary.
    primary: Option<Primary>,
    /// The latest `now_ms` passed in: a member's clock never runs backwards.
    now_ms: u64,
}

impl Lessor {
    /// An empty lessor, not primary. Panics on a configuration outside its documented limits.
    pub fn new(config: LessorConfig) -> Lessor {
        config.check();
        Lessor {
            config,
            leases: BTreeMap::new(),
            key_leases: BTreeMap::new(),
            primary: None,
            now_ms: 0,
        }
    }

    /// The limits and timings the lessor runs under.
    pub fn config(&self) -> &LessorConfig {
        &self.config
    }

    /// Whether this member's lessor is primary (its member leads and has promoted it).
    pub fn is_primary(&self) -> bool {
        self.primary.is_some()
    }

    fn observe(&mut self, now_ms: u64) {
        assert!(
            now_ms >= self.now_ms,
            "the clock went backwards: {now_ms} ms after {} ms",
            self.now_ms
        );
        self.now_ms = now_ms;
    }

    // ----- replicated: applied on every member in log order --------------------------------

    /// Applies a grant. A TTL below `ttl_min_s` (zero and negative included) is raised to it;
    /// above `ttl_max_s` it fails. On a primary the lease expires `ttl` from now; elsewhere it
    /// counts down from now.
    pub fn grant(&mut self, id: LeaseId, ttl_s: i64, now_ms: u64) -> Result<Granted> {
        assert_ne!(
            id, NO_LEASE,
            "the server picks an ID before proposing a grant"
        );
        self.observe(now_ms);
        // etcd checks the TTL before the ID: a too-large TTL fails even for a taken ID.
        if ttl_s > self.config.ttl_max_s {
            return Err(Error::TtlTooLarge {
                ttl_s,
                ttl_max_s: self.config.ttl_max_s,
            });
        }
        if self.leases.contains_key(&id) {
            return Err(Error::Exists { id });
        }
        let ttl_s = ttl_s.max(self.config.ttl_min_s);
        let lease = Lease {
            ttl_s,
            remaining_ms: ttl_ms(ttl_s),
            anchor_ms: now_ms,
            keys: BTreeSet::new(),
        };
        if let Some(primary) = &mut self.primary {
            let deadline_ms = now_ms.saturating_add(lease.ttl_ms());
            let checkpoint_ms = now_ms.saturating_add(self.config.checkpoint_interval_ms);
            primary.insert(id, Timers::granted(deadline_ms, checkpoint_ms));
        }
        self.leases.insert(id, lease);
        self.debug_assert_invariants();
        Ok(Granted { id, ttl_s })
    }

    /// Brings back a lease from storage after a restart: its TTL and the remaining TTL last
    /// checkpointed (the full TTL if never), counted down from now, not primary. Downtime does
    /// not count against it, as in etcd: a lease can only outlive its TTL, never be cut short.
    pub fn restore(&mut self, id: LeaseId, ttl_s: i64, remaining_ms: u64, now_ms: u64) {
        assert_ne!(id, NO_LEASE, "stored leases have IDs");
        assert!(self.primary.is_none(), "restore comes before promotion");
        self.observe(now_ms);
        let ttl_s = ttl_s.clamp(self.config.ttl_min_s, self.config.ttl_max_s);
        let remaining_ms = remaining_ms.min(ttl_ms(ttl_s));
        self.leases.insert(
            id,
            Lease {
                ttl_s,
                remaining_ms,
                anchor_ms: now_ms,
                keys: BTreeSet::new(),
            },
        );
        self.debug_assert_invariants();
    }

    /// Applies a revoke: forgets the lease and returns its keys, sorted, for the caller to
    /// delete in one revision.
    pub fn revoke(&mut self, id: LeaseId) -> Result<Vec<Bytes>> {
        let lease = self.leases.remove(&id).ok_or(Error::NotFound { id })?;
        for key in &lease.keys {
            let owner = self.key_leases.remove(key);
            assert_eq!(owner, Some(id), "key {key:?} was attached to {id}");
        }
        if let Some(primary) = &mut self.primary {
            assert!(primary.remove(id).is_some(), "the primary timed {id}");
        }
        self.debug_assert_invariants();
        Ok(lease.keys.into_iter().collect())
    }

    /// Applies a checkpoint batch: each lease's remaining TTL as its primary saw it when
    /// proposing, which this member counts down from now. Leases revoked since are skipped; a
    /// remaining TTL above the lease's TTL is cut to it. A primary keeps its own timers: by the
    /// promotion rule, every checkpoint it applies is one it proposed.
    pub fn apply_checkpoint(&mut self, checkpoints: &[(LeaseId, u64)], now_ms: u64) {
        self.observe(now_ms);
        for &(id, remaining_ms) in checkpoints {
            let Some(lease) = self.leases.get_mut(&id) else {
                continue;
            };
            lease.remaining_ms = remaining_ms.min(lease.ttl_ms());
            lease.anchor_ms = now_ms;
        }
        self.debug_assert_invariants();
    }

    /// Attaches `key` to lease `id` (a put with that lease). A key holds one lease at a time:
    /// if it was attached to another, it moves, as a put naming a new lease moves it in etcd.
    pub fn attach(&mut self, id: LeaseId, key: Bytes) -> Result<()> {
        assert_ne!(id, NO_LEASE, "a key without a lease is not attached");
        if !self.leases.contains_key(&id) {
            return Err(Error::NotFound { id });
        }
        match self.key_leases.insert(key.clone(), id) {
            Some(old) if old == id => {}
            Some(old) => {
                let moved = self.leases.get_mut(&old).map(|l| l.keys.remove(&key));
                assert_eq!(moved, Some(true), "key {key:?} was attached to {old}");
            }
            None => {}
        }
        self.leases
            .get_mut(&id)
            .expect("checked above")
            .keys
            .insert(key);
        self.debug_assert_invariants();
        Ok(())
    }

    /// Detaches `key` from lease `id` (a delete, or a put with another lease or none). Returns
    /// whether it was attached there; a key revoked with its lease is not, which is no error.
    pub fn detach(&mut self, id: LeaseId, key: &[u8]) -> bool {
        if self.key_leases.get(key) != Some(&id) {
            return false;
        }
        self.key_leases.remove(key);
        let removed = self.leases.get_mut(&id).map(|l| l.keys.remove(key));
        assert_eq!(removed, Some(true), "key {key:?} was attached to {id}");
        self.debug_assert_invariants();
        true
    }

    /// Whether lease `id` exists.
    pub fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    /// Every lease's ID, sorted (etcd's `LeaseLeases`; any member answers it).
    pub fn leases(&self) -> Vec<LeaseId> {
        self.leases.keys().copied().collect()
    }

    /// Lease `id`, if it exists.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// The lease `key` is attached to.
    pub fn key_lease(&self, key: &[u8]) -> Option<LeaseId> {
        self.key_leases.get(key).copied()
    }

    /// How many leases exist.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease exists.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    // ----- leadership ----------------------------------------------------------------------

    /// Makes this lessor primary. Call once per term, after this member, as leader, has
    /// applied every entry of earlier terms. Each lease expires at `now_ms + estimate +
    /// grace_ms`, the estimate being the replicated remaining TTL less the time since this
    /// member applied it (floored at 0). Pass one election timeout as the grace: it gives
    /// clients who could not reach a leader during the election time to find this one.
    pub fn promote(&mut self, now_ms: u64, grace_ms: u64) {
        assert!(
            self.primary.is_none(),
            "promoted twice; demote between terms"
        );
        self.observe(now_ms);
        let mut primary = Primary::new(grace_ms, self.config.renew_cover_ms);
        // The replicated remaining TTL is not older than the leader's: no need to checkpoint
        // right away (that would add a commit latency of stretch and a burst of entries).
        let checkpoint_ms = now_ms.saturating_add(self.config.checkpoint_interval_ms);
        for (&id, lease) in &self.leases {
            let elapsed_ms = now_ms - lease.anchor_ms;
            let deadline_ms = now_ms.saturating_add(lease.remaining_ms.saturating_sub(elapsed_ms));
            let expiry_ms = deadline_ms.saturating_add(grace_ms);
            primary.insert(
                id,
                Timers {
                    deadline_ms,
                    expiry_ms,
                    offer_ms: expiry_ms,
                    dirty_ms: None,
                    committed_ms: 0,
                    checkpoint_ms,
                },
            );
        }
        self.primary = Some(primary);
        self.debug_assert_invariants();
    }

    /// Stops being primary: forgets every expiry. A no-op on a lessor that is not primary.
    pub fn demote(&mut self) {
        self.primary = None;
        self.debug_assert_invariants();
    }

    // ----- leader only ---------------------------------------------------------------------

    /// A keep-alive: the lease expires its TTL from now, and the next checkpoint batch carries
    /// it. Returns the TTL. A lease whose expiry has passed is not renewed but reported not
    /// found: its revoke is proposed or about to be (etcd waits for that revoke, then answers
    /// the same).
    pub fn renew(&mut self, id: LeaseId, now_ms: u64) -> Result<i64> {
        self.observe(now_ms);
        let primary = self.primary.as_mut().ok_or(Error::NotPrimary)?;
        let lease = self.leases.get(&id).ok_or(Error::NotFound { id })?;
        let expiry_ms = primary
            .get(id)
            .expect("the primary times every lease")
            .expiry_ms;
        if expiry_ms <= now_ms {
            return Err(Error::NotFound { id });
        }
        let delay_ms = self.config.renew_checkpoint_delay_ms;
        primary.renew(id, now_ms, lease.ttl_ms(), delay_ms);
        let ttl_s = lease.ttl_s;
        self.debug_assert_invariants();
        Ok(ttl_s)
    }

    /// Whether a renew of lease `id` at `now_ms` may be answered before a checkpoint batch
    /// carries it: its deadline would be within `renew_cover_ms` of a deadline this primary
    /// saw committed (see [`Lessor::checkpoint_committed`]), so any later primary honours it.
    /// Ask before [`Lessor::renew`]; false when not primary or no such lease.
    pub fn renew_would_be_covered(&self, id: LeaseId, now_ms: u64) -> bool {
        let (Some(primary), Some(lease)) = (&self.primary, self.leases.get(&id)) else {
            return false;
        };
        primary.would_cover(id, now_ms.saturating_add(lease.ttl_ms()))
    }

    /// A checkpoint batch that this primary returned from [`Lessor::poll_checkpoints`] at
    /// `proposed_ms` has applied: the deadlines it carried are committed. A no-op when not
    /// primary; leases revoked since are skipped.
    pub fn checkpoint_committed(&mut self, proposed_ms: u64, batch: &[(LeaseId, u64)]) {
        if let Some(primary) = &mut self.primary {
            primary.committed(proposed_ms, batch);
        }
        self.debug_assert_invariants();
    }

    /// A lease's time to live on this primary, with its keys if asked.
    pub fn time_to_live(&self, id: LeaseId, now_ms: u64, keys: bool) -> Result<TimeToLive> {
        assert!(now_ms >= self.now_ms, "the clock went backwards");
        let primary = self.primary.as_ref().ok_or(Error::NotPrimary)?;
        let lease = self.leases.get(&id).ok_or(Error::NotFound { id })?;
        let expiry_ms = primary
            .get(id)
            .expect("the primary times every lease")
            .expiry_ms;
        let ttl_s =
            i64::try_from(expiry_ms.saturating_sub(now_ms) / 1000).expect("at most 9e9 s + grace");
        Ok(TimeToLive {
            id,
            ttl_s,
            granted_ttl_s: lease.ttl_s,
            keys: if keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// When lease `id` expires on this primary; `None` if not primary or no such lease.
    pub fn expiry_ms(&self, id: LeaseId) -> Option<u64> {
        Some(self.primary.as_ref()?.get(id)?.expiry_ms)
    }

    /// The leases whose expiry has passed, at most `batch_max`, earliest first: propose a
    /// revoke for each. A lease offered here is offered again after `revoke_retry_ms` if it
    /// still exists. Empty when not primary.
    pub fn expired(&mut self, now_ms: u64) -> Vec<LeaseId> {
        self.observe(now_ms);
        let (retry_ms, batch_max) = (self.config.revoke_retry_ms, self.config.batch_max);
        let Some(primary) = &mut self.primary else {
            return Vec::new();
        };
        let expired = primary.expired(now_ms, retry_ms, batch_max);
        self.debug_assert_invariants();
        expired
    }

    /// The next checkpoint batch, `(lease, remaining_ms)` sorted by lease, at most `batch_max`:
    /// propose it as one entry. Empty when nothing is due or not primary. Renewed leases are
    /// due `renew_checkpoint_delay_ms` after the oldest renew among them (half of `renew_cover_ms` for
    /// a [covered](Lessor::renew_would_be_covered) renew); every lease is due
    /// `checkpoint_interval_ms` after it was last checkpointed (or granted, or promoted).
    pub fn poll_checkpoints(&mut self, now_ms: u64) -> Vec<(LeaseId, u64)> {
        self.observe(now_ms);
        let c = &self.config;
        let (interval_ms, batch_max) = (c.checkpoint_interval_ms, c.batch_max);
        let Some(primary) = &mut self.primary else {
            return Vec::new();
        };
        let batch = primary.checkpoints(now_ms, interval_ms, batch_max);
        self.debug_assert_invariants();
        batch
    }

    /// The next `now_ms` at which [`Lessor::expired`] or [`Lessor::poll_checkpoints`] would
    /// return something; `None` when not primary or without leases. A time at or before the
    /// last `now_ms` means "call again now" (a batch limit left work due).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.primary.as_ref()?.poll_timeout()
    }

    /// Checks that the key index and the leases' key sets agree, that TTLs are within limits,
    /// and the primary's indexes. Runs in debug builds only; every mutating call ends with it.
    pub fn debug_assert_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let mut keys = 0;
        for (&id, lease) in &self.leases {
            debug_assert_ne!(id, NO_LEASE);
            debug_assert!(
                (self.config.ttl_min_s..=self.config.ttl_max_s).contains(&lease.ttl_s),
                "lease {id}: TTL {} s out of limits",
                lease.ttl_s
            );
            debug_assert!(lease.remaining_ms <= lease.ttl_ms());
            debug_assert!(lease.anchor_ms <= self.now_ms);
            for key in &lease.keys {
                debug_assert_eq!(self.key_leases.get(key), Some(&id), "key {key:?}");
            }
            keys += lease.keys.len();
        }
        debug_assert_eq!(
            keys,
            self.key_leases.len(),
            "a key map entry has no lease key"
        );
        if let Some(primary) = &self.primary {
            primary.debug_assert_invariants(
                &self.leases,
                self.now_ms,
                self.config.checkpoint_interval_ms,
                self.config.renew_checkpoint_delay_ms,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE_MS: u64 = 1000;

    /// etcd's defaults for a 1 s election timeout and 100 ms heartbeat (TTL min 2 s), with a
    /// short checkpoint interval, and renews batched for 100 ms (the server batches per turn
    /// instead, with no delay) so that the tests see the delay at work.
    fn config() -> LessorConfig {
        LessorConfig {
            checkpoint_interval_ms: 60_000,
            renew_checkpoint_delay_ms: 100,
            ..LessorConfig::new(1000, 100)
        }
    }

    fn lessor() -> Lessor {
        Lessor::new(config())
    }

    fn primary(now_ms: u64) -> Lessor {
        let mut l = lessor();
        l.promote(now_ms, GRACE_MS);
        l
    }

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    #[test]
    fn grant_raises_a_small_ttl_to_the_minimum_and_refuses_a_too_large_one() {
        let mut l = lessor();
        assert_eq!(l.config().ttl_min_s, 2);
        for (id, asked, got) in [(1, -5, 2), (2, 0, 2), (3, 1, 2), (4, 2, 2), (5, 3, 3)] {
            assert_eq!(l.grant(id, asked, 0), Ok(Granted { id, ttl_s: got }));
            let lease = l.lease(id).unwrap();
            assert_eq!(
                (lease.ttl_s(), lease.remaining_ms()),
                (got, 1000 * got as u64)
            );
        }
        assert_eq!(
            l.grant(6, 9_000_000_000, 0),
            Ok(Granted {
                id: 6,
                ttl_s: 9_000_000_000
            })
        );
        let too_large = Error::TtlTooLarge {
            ttl_s: 9_000_000_001,
            ttl_max_s: 9_000_000_000,
        };
        assert_eq!(l.grant(7, 9_000_000_001, 0), Err(too_large.clone()));
        assert_eq!(too_large.to_string(), "too large lease TTL");
        assert!(!l.contains(7));
        assert_eq!(l.leases(), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn grant_refuses_a_taken_id_but_checks_the_ttl_first_as_etcd_does() {
        let mut l = lessor();
        l.grant(-7, 10, 0).unwrap();
        assert_eq!(l.grant(-7, 20, 5), Err(Error::Exists { id: -7 }));
        assert_eq!(Error::Exists { id: -7 }.to_string(), "lease already exists");
        assert!(matches!(
            l.grant(-7, i64::MAX, 5),
            Err(Error::TtlTooLarge { .. })
        ));
        assert_eq!(l.lease(-7).unwrap().ttl_s(), 10, "the first grant stands");
        l.revoke(-7).unwrap();
        assert_eq!(
            l.grant(-7, 20, 6),
            Ok(Granted { id: -7, ttl_s: 20 }),
            "free again"
        );
    }

    #[test]
    #[should_panic(expected = "picks an ID before proposing")]
    fn apply_never_sees_lease_zero() {
        lessor().grant(NO_LEASE, 10, 0).ok();
    }

    #[test]
    fn revoke_returns_the_keys_sorted_and_forgets_them() {
        let mut l = lessor();
        l.grant(1, 10, 0).unwrap();
        l.grant(2, 10, 0).unwrap();
        for k in ["c", "a", "b"] {
            l.attach(1, key(k)).unwrap();
        }
        l.attach(2, key("z")).unwrap();
        assert_eq!(l.revoke(1), Ok(vec![key("a"), key("b"), key("c")]));
        assert_eq!(l.key_lease(b"a"), None);
        assert_eq!(l.key_lease(b"z"), Some(2));
        assert_eq!(l.revoke(1), Err(Error::NotFound { id: 1 }));
        assert_eq!(l.revoke(NO_LEASE), Err(Error::NotFound { id: 0 }));
        assert_eq!(
            Error::NotFound { id: 1 }.to_string(),
            "requested lease not found"
        );
        assert_eq!(l.leases(), vec![2]);
        assert_eq!(l.revoke(2), Ok(vec![key("z")]));
        assert!(l.is_empty() && l.key_lease(b"z").is_none());
    }

    #[test]
    fn attach_needs_the_lease_and_moves_a_key_between_leases() {
        let mut l = lessor();
        assert_eq!(l.attach(1, key("a")), Err(Error::NotFound { id: 1 }));
        l.grant(1, 10, 0).unwrap();
        l.grant(2, 10, 0).unwrap();
        l.attach(1, key("a")).unwrap();
        l.attach(1, key("a")).unwrap();
        assert_eq!(
            l.lease(1).unwrap().keys().len(),
            1,
            "attaching twice is one key"
        );
        l.attach(2, key("a")).unwrap();
        assert_eq!(l.key_lease(b"a"), Some(2));
        assert!(l.lease(1).unwrap().keys().is_empty(), "moved, not copied");
        assert!(!l.detach(1, b"a"), "not attached to 1 any more");
        assert_eq!(l.key_lease(b"a"), Some(2));
        assert!(l.detach(2, b"a"));
        assert!(!l.detach(2, b"a"));
        assert!(!l.detach(9, b"a"), "no such lease: nothing to detach");
        assert_eq!(l.key_lease(b"a"), None);
        assert_eq!(l.revoke(2), Ok(vec![]));
    }

    #[test]
    fn keep_alive_and_time_to_live_are_for_the_primary_only() {
        let mut l = lessor();
        l.grant(1, 10, 0).unwrap();
        assert_eq!(l.renew(1, 10), Err(Error::NotPrimary));
        assert_eq!(
            l.renew(2, 10),
            Err(Error::NotPrimary),
            "asks the leader first"
        );
        assert_eq!(l.time_to_live(1, 10, false), Err(Error::NotPrimary));
        assert_eq!(Error::NotPrimary.to_string(), "not a primary lessor");
        assert_eq!(l.expiry_ms(1), None);
        assert!(l.expired(1_000_000).is_empty() && l.poll_checkpoints(1_000_000).is_empty());
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn a_lease_granted_on_the_primary_expires_at_its_ttl_and_keep_alive_extends_it() {
        let mut l = primary(0);
        assert_eq!(l.poll_timeout(), None, "no leases, nothing to wait for");
        l.grant(1, 10, 1000).unwrap();
        assert_eq!(l.expiry_ms(1), Some(11_000));
        assert_eq!(l.poll_timeout(), Some(11_000));
        assert!(l.expired(7999).is_empty());
        assert_eq!(l.renew(1, 8000), Ok(10));
        assert_eq!(l.expiry_ms(1), Some(18_000));
        assert_eq!(
            l.poll_timeout(),
            Some(8100),
            "the renew's checkpoint is due first"
        );
        assert_eq!(l.renew(2, 8000), Err(Error::NotFound { id: 2 }));
        assert_eq!(l.poll_checkpoints(8100), vec![(1, 9900)]);
        assert_eq!(l.poll_timeout(), Some(18_000));
        let ttl = l.time_to_live(1, 9500, false).unwrap();
        assert!(l.expired(17_999).is_empty());
        assert_eq!(
            ttl,
            TimeToLive {
                id: 1,
                ttl_s: 8,
                granted_ttl_s: 10,
                keys: vec![]
            }
        );
        assert_eq!(l.expired(18_000), vec![1]);
    }

    #[test]
    fn time_to_live_truncates_to_seconds_lists_keys_on_request_and_floors_at_zero() {
        let mut l = primary(0);
        assert_eq!(l.time_to_live(1, 0, true), Err(Error::NotFound { id: 1 }));
        l.grant(1, 5, 0).unwrap();
        l.attach(1, key("b")).unwrap();
        l.attach(1, key("a")).unwrap();
        let at = |l: &Lessor, now_ms| l.time_to_live(1, now_ms, true).unwrap();
        assert_eq!(at(&l, 0).ttl_s, 5);
        assert_eq!(at(&l, 1).ttl_s, 4, "4.999 s truncates");
        assert_eq!(at(&l, 4001).ttl_s, 0);
        assert_eq!(at(&l, 7000).ttl_s, 0, "expired, not yet revoked");
        assert_eq!(at(&l, 0).keys, vec![key("a"), key("b")]);
        assert!(l.time_to_live(1, 0, false).unwrap().keys.is_empty());
        assert_eq!(at(&l, 0).granted_ttl_s, 5);
    }

    #[test]
    fn an_expired_lease_is_not_renewed_and_is_offered_again_until_revoked() {
        let mut l = primary(0);
        l.grant(1, 2, 0).unwrap();
        assert_eq!(l.renew(1, 2000), Err(Error::NotFound { id: 1 }));
        assert_eq!(
            l.expiry_ms(1),
            Some(2000),
            "the refused renew changed nothing"
        );
        assert_eq!(l.expired(2500), vec![1]);
        assert!(
            l.expired(2500).is_empty(),
            "offered once per retry interval"
        );
        let retry_ms = l.config().revoke_retry_ms;
        assert_eq!(l.poll_timeout(), Some(2500 + retry_ms));
        assert!(l.expired(2499 + retry_ms).is_empty());
        assert_eq!(l.expired(2500 + retry_ms), vec![1], "its revoke was lost");
        l.revoke(1).unwrap();
        assert!(l.expired(100_000).is_empty());
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn expired_returns_at_most_a_batch_earliest_first() {
        let mut l = Lessor::new(LessorConfig {
            batch_max: 3,
            ..config()
        });
        l.promote(0, GRACE_MS);
        for id in 1..=5 {
            l.grant(id, 10 - id, 0).unwrap();
        }
        assert_eq!(l.expired(20_000), vec![5, 4, 3]);
        assert_eq!(l.poll_timeout(), Some(8000), "due work remains");
        assert_eq!(l.expired(20_000), vec![2, 1]);
        assert!(l.expired(20_000).is_empty());
    }

    #[test]
    fn renews_are_checkpointed_after_the_delay_carrying_the_deadline_left() {
        let mut l = primary(0);
        let delay_ms = l.config().renew_checkpoint_delay_ms;
        assert_eq!(delay_ms, 100);
        l.grant(1, 10, 0).unwrap();
        l.grant(2, 10, 0).unwrap();
        l.grant(3, 10, 0).unwrap();
        assert_eq!(
            l.poll_timeout(),
            Some(10_000),
            "the expiries come before the interval"
        );
        l.renew(2, 1000).unwrap();
        l.renew(1, 1050).unwrap();
        l.renew(2, 1080).unwrap();
        assert_eq!(
            l.poll_timeout(),
            Some(1100),
            "the oldest renew plus the delay"
        );
        assert!(l.poll_checkpoints(1099).is_empty());
        // Lease 2's deadline is 11_080: 9_880 ms left at 1200; lease 3 was not renewed.
        assert_eq!(l.poll_checkpoints(1200), vec![(1, 9_850), (2, 9_880)]);
        assert!(l.poll_checkpoints(1200).is_empty(), "no longer dirty");
        assert_eq!(l.poll_timeout(), Some(10_000));
        // Applying its own batch does not move the primary's expiries.
        l.apply_checkpoint(&[(1, 9_850), (2, 9_880)], 1300);
        assert_eq!(l.expiry_ms(2), Some(11_080));
        assert_eq!(l.lease(2).unwrap().remaining_ms(), 9_880);
        assert_eq!(l.lease(2).unwrap().anchor_ms(), 1300);
    }

    #[test]
    fn a_renew_within_half_a_grace_of_a_committed_deadline_is_covered() {
        let mut l = primary(0);
        l.grant(1, 10, 0).unwrap();
        assert!(
            !l.renew_would_be_covered(1, 1000),
            "nothing committed yet: wait for the batch"
        );
        l.renew(1, 1000).unwrap();
        let batch = l.poll_checkpoints(1100);
        assert_eq!(batch, vec![(1, 9_900)]);
        assert!(
            !l.renew_would_be_covered(1, 1200),
            "proposed is not committed"
        );
        l.renew(1, 1200).unwrap();
        // The batch applies: 11_000 is committed; deadlines up to 11_500 are covered.
        l.apply_checkpoint(&batch, 1300);
        l.checkpoint_committed(1100, &batch);
        assert_eq!(
            l.poll_checkpoints(1300),
            vec![(1, 9_900)],
            "the renew at 1200"
        );
        assert!(l.renew_would_be_covered(1, 1400));
        l.renew(1, 1400).unwrap();
        assert_eq!(
            l.poll_timeout(),
            Some(1400 + GRACE_MS / 4),
            "a covered renew's batch waits half the cover"
        );
        assert!(
            l.renew_would_be_covered(1, 1500),
            "11_500 is the cover (half a grace) past 11_000"
        );
        l.renew(1, 1500).unwrap();
        assert!(
            !l.renew_would_be_covered(1, 1501),
            "11_501 is beyond the cover"
        );
        l.renew(1, 1501).unwrap();
        assert_eq!(l.poll_timeout(), Some(1601), "an uncovered renew's delay");
        // A new term's primary starts with nothing committed.
        l.demote();
        l.promote(2000, GRACE_MS);
        assert!(!l.renew_would_be_covered(1, 2100));
    }

    #[test]
    fn every_lease_is_checkpointed_once_per_interval_and_renews_ride_along() {
        let mut l = Lessor::new(LessorConfig {
            batch_max: 2,
            ..config()
        });
        l.promote(0, GRACE_MS);
        let interval_ms = l.config().checkpoint_interval_ms;
        l.grant(1, 1000, 0).unwrap();
        l.grant(2, 1000, 10).unwrap();
        l.grant(3, 1000, 20).unwrap();
        assert_eq!(l.poll_timeout(), Some(interval_ms));
        assert!(l.poll_checkpoints(interval_ms - 1).is_empty());
        // Lease 3 renewed just now rides along before lease 2's periodic checkpoint.
        l.renew(3, interval_ms).unwrap();
        assert_eq!(
            l.poll_checkpoints(interval_ms + 10),
            vec![(1, 1_000_000 - interval_ms - 10), (3, 1_000_000 - 10)]
        );
        assert_eq!(
            l.poll_timeout(),
            Some(interval_ms + 10),
            "lease 2 is still due"
        );
        assert_eq!(
            l.poll_checkpoints(interval_ms + 10),
            vec![(2, 1_000_000 - interval_ms)]
        );
        assert_eq!(l.poll_timeout(), Some(2 * interval_ms + 10));
    }

    #[test]
    fn a_new_leader_counts_down_from_the_grant_instead_of_resetting_the_ttl() {
        // Etcd's #9888: a leader change must not restart a lease's full TTL.
        let mut l = lessor();
        l.grant(1, 10, 1000).unwrap();
        l.promote(7000, GRACE_MS);
        assert_eq!(l.expiry_ms(1), Some(11_000 + GRACE_MS), "not 17 s + grace");
        assert!(l.expired(11_999).is_empty());
        assert_eq!(l.expired(12_000), vec![1]);
    }

    #[test]
    fn a_new_leader_counts_down_from_the_last_checkpoint_in_its_own_time() {
        // The follower's clock is 50 s ahead of the leader's: only differences matter.
        let mut l = lessor();
        l.grant(1, 10, 50_000).unwrap();
        // The leader renewed at its 5000 (deadline 15_000) and proposed at 5100.
        l.apply_checkpoint(&[(1, 9_900)], 55_150);
        l.promote(57_000, GRACE_MS);
        assert_eq!(l.expiry_ms(1), Some(55_150 + 9_900 + GRACE_MS));
        assert_eq!(l.time_to_live(1, 57_000, false).unwrap().ttl_s, 9);
    }

    #[test]
    fn a_lapsed_lease_gets_one_grace_from_the_promotion() {
        let mut l = lessor();
        l.grant(1, 2, 0).unwrap();
        l.promote(60_000, GRACE_MS);
        assert_eq!(l.expiry_ms(1), Some(60_000 + GRACE_MS));
        assert_eq!(
            l.renew(1, 60_500),
            Ok(2),
            "a client that finds the leader in time"
        );
        assert_eq!(l.expiry_ms(1), Some(62_500), "the renew drops the grace");
        // The grace is not checkpointed: a lapsed lease carries 0.
        l.grant(2, 2, 60_500).unwrap();
        l.demote();
        l.promote(70_000, GRACE_MS);
        assert_eq!(l.poll_checkpoints(70_000 + 60_000), vec![(1, 0), (2, 0)]);
    }

    #[test]
    fn demote_forgets_every_expiry_and_promote_rebuilds_them() {
        let mut l = primary(0);
        l.grant(1, 10, 0).unwrap();
        l.renew(1, 5000).unwrap();
        l.demote();
        assert!(!l.is_primary() && l.expiry_ms(1).is_none());
        assert_eq!(l.poll_timeout(), None);
        assert!(l.expired(100_000).is_empty(), "a follower expires nothing");
        assert!(l.poll_checkpoints(100_000).is_empty());
        assert_eq!(l.renew(1, 100_000), Err(Error::NotPrimary));
        l.demote();
        // The renew at 5000 was never checkpointed: this member knows only the grant.
        l.promote(100_000, GRACE_MS);
        assert_eq!(l.expiry_ms(1), Some(100_000 + GRACE_MS));
    }

    #[test]
    #[should_panic(expected = "promoted twice")]
    fn promoting_a_primary_is_a_bug() {
        primary(0).promote(1, GRACE_MS);
    }

    #[test]
    fn a_checkpoint_skips_revoked_leases_and_never_exceeds_the_ttl() {
        let mut l = lessor();
        l.grant(1, 10, 0).unwrap();
        l.apply_checkpoint(&[(1, 99_000), (2, 5_000)], 10);
        assert_eq!(l.lease(1).unwrap().remaining_ms(), 10_000);
        assert_eq!(l.lease(1).unwrap().anchor_ms(), 10);
        assert_eq!(l.leases(), vec![1]);
    }

    #[test]
    fn replaying_the_log_after_a_restart_can_only_stretch_a_lease() {
        let mut before = lessor();
        before.grant(1, 10, 0).unwrap();
        before.apply_checkpoint(&[(1, 6000)], 4000);
        let mut after = lessor();
        after.grant(1, 10, 30_000).unwrap();
        after.apply_checkpoint(&[(1, 6000)], 30_000);
        before.promote(31_000, GRACE_MS);
        after.promote(31_000, GRACE_MS);
        let (b, a) = (before.expiry_ms(1).unwrap(), after.expiry_ms(1).unwrap());
        assert_eq!((b, a), (31_000 + GRACE_MS, 36_000 + GRACE_MS));
    }

    #[test]
    #[should_panic(expected = "clock went backwards")]
    fn a_clock_running_backwards_is_a_bug() {
        let mut l = lessor();
        l.grant(1, 10, 1000).unwrap();
        l.apply_checkpoint(&[], 999);
    }
}
