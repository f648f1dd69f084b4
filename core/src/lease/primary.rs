//! What only the primary lessor knows: when each lease expires, when it is next offered for
//! revoking, and which leases the next checkpoint batch carries. Built from the replicated
//! remaining TTLs at promotion and dropped at demotion; nothing here is replicated.

use super::LeaseId;
use super::lessor::Lease;
use std::collections::{BTreeMap, BTreeSet};

/// The primary's clocks for one lease, all in the primary's `now_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Timers {
    /// The latest deadline promised for the lease as far as this primary knows: its own grant
    /// or renew plus the TTL, or at promotion the estimate from the replicated remaining TTL.
    /// Checkpoints replicate it, as `deadline_ms − now`.
    pub deadline_ms: u64,
    /// When the lease expires here: the deadline, plus the grace after a promotion until the
    /// next renew.
    pub expiry_ms: u64,
    /// When `expired` next offers the lease: its expiry, then `revoke_retry_ms` after each offer.
    pub offer_ms: u64,
    /// When the next checkpoint batch must carry the renews made since the lease last went
    /// into one; `None` without such a renew.
    pub dirty_ms: Option<u64>,
    /// The latest deadline this primary proposed in a checkpoint batch that has since applied
    /// (0: none yet). Every later primary's estimate is at least this.
    pub committed_ms: u64,
    /// When the lease's periodic checkpoint is due.
    pub checkpoint_ms: u64,
}

impl Timers {
    /// A lease this primary has just granted: it expires at its deadline, with no grace.
    pub fn granted(deadline_ms: u64, checkpoint_ms: u64) -> Timers {
        Timers {
            deadline_ms,
            expiry_ms: deadline_ms,
            offer_ms: deadline_ms,
            dirty_ms: None,
            committed_ms: 0,
            checkpoint_ms,
        }
    }

    /// Whether the deadline is at most `cover_ms` past one already committed: a later primary
    /// expires the lease no earlier than that committed deadline plus its grace (see the
    /// module docs of [`crate::lease`]), so with `cover_ms` within the grace a keep-alive
    /// that set this deadline may be answered before a checkpoint carries it.
    pub fn covered(&self, cover_ms: u64) -> bool {
        self.covers(self.deadline_ms, cover_ms)
    }

    /// Whether a committed deadline covers `deadline_ms` (see [`Timers::covered`]).
    fn covers(&self, deadline_ms: u64, cover_ms: u64) -> bool {
        self.committed_ms > 0 && deadline_ms <= self.committed_ms.saturating_add(cover_ms)
    }
}

/// The primary's timers for every lease, with one ordered index per kind of deadline so that
/// each poll looks only at what is due.
#[derive(Debug)]
pub(super) struct Primary {
    /// One election timeout, given at promotion.
    grace_ms: u64,
    /// How far past a committed deadline a renew's is covered (`renew_cover_ms`).
    cover_ms: u64,
    timers: BTreeMap<LeaseId, Timers>,
    /// `(offer_ms, id)` for every lease.
    offers: BTreeSet<(u64, LeaseId)>,
    /// `(dirty_ms, id)` for every renewed lease not yet in a checkpoint batch: when the batch
    /// carrying it is due.
    dirty: BTreeSet<(u64, LeaseId)>,
    /// `(checkpoint_ms, id)` for every lease.
    checkpoints: BTreeSet<(u64, LeaseId)>,
}

impl Primary {
    pub fn new(grace_ms: u64, cover_ms: u64) -> Primary {
        Primary {
            grace_ms,
            cover_ms,
            timers: BTreeMap::new(),
            offers: BTreeSet::new(),
            dirty: BTreeSet::new(),
            checkpoints: BTreeSet::new(),
        }
    }

    pub fn get(&self, id: LeaseId) -> Option<&Timers> {
        self.timers.get(&id)
    }

    pub fn insert(&mut self, id: LeaseId, t: Timers) {
        assert!(
            t.deadline_ms <= t.expiry_ms && t.expiry_ms <= t.offer_ms,
            "lease {id}: {t:?} out of order"
        );
        let old = self.timers.insert(id, t);
        assert!(old.is_none(), "lease {id} is timed twice");
        assert!(self.offers.insert((t.offer_ms, id)));
        if let Some(dirty_ms) = t.dirty_ms {
            assert!(self.dirty.insert((dirty_ms, id)));
        }
        assert!(self.checkpoints.insert((t.checkpoint_ms, id)));
    }

    pub fn remove(&mut self, id: LeaseId) -> Option<Timers> {
        let t = self.timers.remove(&id)?;
        assert!(
            self.offers.remove(&(t.offer_ms, id)),
            "offer index lost {id}"
        );
        if let Some(dirty_ms) = t.dirty_ms {
            assert!(self.dirty.remove(&(dirty_ms, id)), "dirty index lost {id}");
        }
        assert!(
            self.checkpoints.remove(&(t.checkpoint_ms, id)),
            "checkpoint index lost {id}"
        );
        Some(t)
    }

    /// Changes one lease's timers, keeping the indexes in step.
    fn update(&mut self, id: LeaseId, change: impl FnOnce(&mut Timers)) {
        let mut t = self.remove(id).expect("updating a timed lease");
        change(&mut t);
        self.insert(id, t);
    }

    /// A keep-alive at `now_ms`: the lease's deadline and expiry become `now_ms + ttl_ms`
    /// (dropping any grace), and a checkpoint batch carries it: `delay_ms` from now, or half
    /// the cover from now when the new deadline is [covered](Timers::covered) (nobody waits
    /// for that batch; it has to apply before later renews leave the cover).
    pub fn renew(&mut self, id: LeaseId, now_ms: u64, ttl_ms: u64, delay_ms: u64) {
        let cover_ms = self.cover_ms;
        self.update(id, |t| {
            assert!(t.expiry_ms > now_ms, "lease {id} renewed after its expiry");
            debug_assert_eq!(
                t.offer_ms, t.expiry_ms,
                "an unexpired lease was never offered"
            );
            let deadline_ms = now_ms.saturating_add(ttl_ms);
            t.deadline_ms = deadline_ms;
            t.expiry_ms = deadline_ms;
            t.offer_ms = deadline_ms;
            let wait_ms = if t.covered(cover_ms) {
                cover_ms / 2
            } else {
                delay_ms
            };
            let due_ms = now_ms.saturating_add(wait_ms);
            t.dirty_ms = Some(t.dirty_ms.map_or(due_ms, |d| d.min(due_ms)));
        });
    }

    /// Whether a committed deadline of lease `id` would cover `deadline_ms`.
    pub fn would_cover(&self, id: LeaseId, deadline_ms: u64) -> bool {
        (self.timers.get(&id)).is_some_and(|t| t.covers(deadline_ms, self.cover_ms))
    }

    /// A checkpoint batch this primary proposed at `proposed_ms` has applied: each lease's
    /// deadline then (`proposed_ms + remaining`) is committed.
    pub fn committed(&mut self, proposed_ms: u64, batch: &[(LeaseId, u64)]) {
        for &(id, remaining_ms) in batch {
            if let Some(t) = self.timers.get_mut(&id) {
                // No index holds it: changed in place.
                t.committed_ms = t.committed_ms.max(proposed_ms.saturating_add(remaining_ms));
            }
        }
    }

    /// The leases whose offer time has come, earliest first, at most `batch_max`; each is
    /// offered again `retry_ms` from now.
    pub fn expired(&mut self, now_ms: u64, retry_ms: u64, batch_max: usize) -> Vec<LeaseId> {
        assert!(
            retry_ms > 0,
            "a zero retry would offer a lease twice in one call"
        );
        let due: Vec<LeaseId> = self
            .offers
            .iter()
            .take_while(|&&(offer_ms, _)| offer_ms <= now_ms)
            .take(batch_max)
            .map(|&(_, id)| id)
            .collect();
        for &id in &due {
            self.update(id, |t| {
                debug_assert!(t.expiry_ms <= now_ms);
                t.offer_ms = now_ms.saturating_add(retry_ms);
            });
        }
        debug_assert!(due.len() <= batch_max);
        due
    }

    /// The next checkpoint batch, sorted by lease ID, at most `batch_max`: nothing unless a
    /// renew's batch or a periodic checkpoint is due; then every renewed
    /// lease (oldest renew first; they ride along when the entry goes anyway) and the
    /// periodic ones that are due. Each carries `deadline − now`, floored at 0.
    pub fn checkpoints(
        &mut self,
        now_ms: u64,
        interval_ms: u64,
        batch_max: usize,
    ) -> Vec<(LeaseId, u64)> {
        let dirty_due = self
            .dirty
            .first()
            .is_some_and(|&(dirty_ms, _)| dirty_ms <= now_ms);
        let periodic_due = self
            .checkpoints
            .first()
            .is_some_and(|&(checkpoint_ms, _)| checkpoint_ms <= now_ms);
        if !dirty_due && !periodic_due {
            return Vec::new();
        }
        let mut chosen: BTreeSet<LeaseId> = BTreeSet::new();
        for &(_, id) in &self.dirty {
            if chosen.len() == batch_max {
                break;
            }
            chosen.insert(id);
        }
        for &(checkpoint_ms, id) in &self.checkpoints {
            if chosen.len() == batch_max || checkpoint_ms > now_ms {
                break;
            }
            chosen.insert(id);
        }
        let next_ms = now_ms.saturating_add(interval_ms);
        let batch: Vec<(LeaseId, u64)> = chosen
            .into_iter()
            .map(|id| {
                let mut remaining_ms = 0;
                self.update(id, |t| {
                    remaining_ms = t.deadline_ms.saturating_sub(now_ms);
                    t.dirty_ms = None;
                    t.checkpoint_ms = next_ms;
                });
                (id, remaining_ms)
            })
            .collect();
        assert!(!batch.is_empty() && batch.len() <= batch_max);
        batch
    }

    /// The earliest time at which `expired` or `checkpoints` has something; at or before the
    /// last `now_ms` when a batch limit left due work behind.
    pub fn poll_timeout(&self) -> Option<u64> {
        let offer = self.offers.first().map(|&(ms, _)| ms);
        let dirty = self.dirty.first().map(|&(ms, _)| ms);
        let checkpoint = self.checkpoints.first().map(|&(ms, _)| ms);
        [offer, dirty, checkpoint].into_iter().flatten().min()
    }

    /// The indexes agree with the timers, and the timers with the leases.
    pub fn debug_assert_invariants(
        &self,
        leases: &BTreeMap<LeaseId, Lease>,
        now_ms: u64,
        interval_ms: u64,
        delay_ms: u64,
    ) {
        debug_assert!(
            self.timers.keys().eq(leases.keys()),
            "the primary times exactly the leases"
        );
        debug_assert_eq!(self.offers.len(), self.timers.len());
        debug_assert_eq!(self.checkpoints.len(), self.timers.len());
        let mut dirty = 0;
        for (&id, t) in &self.timers {
            debug_assert!(self.offers.contains(&(t.offer_ms, id)));
            debug_assert!(self.checkpoints.contains(&(t.checkpoint_ms, id)));
            let ttl_ms = leases[&id].ttl_ms();
            debug_assert!(
                t.deadline_ms <= now_ms.saturating_add(ttl_ms),
                "lease {id}: deadline {} beyond now {now_ms} + TTL {ttl_ms}",
                t.deadline_ms
            );
            debug_assert!(t.deadline_ms <= t.expiry_ms && t.expiry_ms <= t.offer_ms);
            debug_assert!(t.committed_ms <= t.deadline_ms, "lease {id}: {t:?}");
            debug_assert!(t.expiry_ms - t.deadline_ms <= self.grace_ms);
            // Offered only once expired; an unexpired lease's offer is its expiry.
            debug_assert!(t.offer_ms == t.expiry_ms || t.expiry_ms <= now_ms);
            debug_assert!(t.checkpoint_ms <= now_ms.saturating_add(interval_ms));
            if let Some(dirty_ms) = t.dirty_ms {
                dirty += 1;
                debug_assert!(self.dirty.contains(&(dirty_ms, id)));
                let wait_ms = delay_ms.max(self.cover_ms / 2);
                debug_assert!(dirty_ms <= now_ms.saturating_add(wait_ms));
                debug_assert_eq!(t.expiry_ms, t.deadline_ms, "a renew drops the grace");
            }
        }
        debug_assert_eq!(self.dirty.len(), dirty);
    }
}
