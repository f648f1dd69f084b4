//! Auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`): when the leader
//! should compact, and to which revision, on etcd 3.4/3.5's schedule. Sans-IO: the member
//! server asks [`Compactor::poll`] with the time, the store's revision and whether it leads,
//! and proposes the compaction it is told (through Raft, as a client's would be).
//!
//! - **Periodic** (retention `p`): the store's revision is sampled every `min(p, 1h) / 10`
//!   and the samples of the last `p` kept; once `p` has passed since the start (then every
//!   `min(p, 1h)` after the last compaction), the revision sampled `p` ago is compacted. So
//!   history younger than the retention is kept.
//! - **Revision** (retention `n`): every five minutes, the revision `n` below the current one,
//!   unless it was compacted last time or is not positive.
//!
//! Only the leader compacts (a follower's compactor is paused but keeps sampling, as etcd's).
//! This module does not own proposing or logging the compaction ([`super::MemberServer`]).

use std::collections::VecDeque;

/// How often the revision mode looks (etcd's `revInterval`).
pub const REVISION_CHECK_MS: u64 = 5 * 60 * 1000;
const HOUR_MS: u64 = 60 * 60 * 1000;
/// The periodic mode samples ten times per compaction interval.
const SAMPLES_PER_INTERVAL: u64 = 10;

/// The configured policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompactionPolicy {
    /// Never (retention 0).
    #[default]
    Off,
    /// Mode `periodic`.
    Periodic {
        /// How much history to keep, in milliseconds.
        retention_ms: u64,
    },
    /// Mode `revision`.
    Revision {
        /// How many revisions to keep.
        retention: i64,
    },
}

/// The compaction schedule of one member.
#[derive(Debug)]
pub struct Compactor {
    policy: CompactionPolicy,
    /// When the schedule started (the first poll), and when it next wakes.
    started: bool,
    next_ms: u64,
    /// Periodic: the revisions sampled, oldest first; when the last compaction was made, and
    /// how long to wait after it.
    samples: VecDeque<i64>,
    last_ms: u64,
    wait_ms: u64,
    /// Revision: the revision compacted last.
    last_revision: i64,
}

impl Compactor {
    /// A schedule that starts at its first [`poll`](Self::poll).
    pub fn new(policy: CompactionPolicy) -> Compactor {
        Compactor {
            policy,
            started: false,
            next_ms: 0,
            samples: VecDeque::new(),
            last_ms: 0,
            wait_ms: 0,
            last_revision: 0,
        }
    }

    /// How long between two wakes.
    fn step_ms(&self) -> u64 {
        match self.policy {
            CompactionPolicy::Off => u64::MAX,
            CompactionPolicy::Periodic { retention_ms } => {
                (retention_ms.min(HOUR_MS) / SAMPLES_PER_INTERVAL).max(1)
            }
            CompactionPolicy::Revision { .. } => REVISION_CHECK_MS,
        }
    }

    /// The next time the schedule has something to do, once started.
    pub fn due_ms(&self) -> Option<u64> {
        (self.policy != CompactionPolicy::Off && self.started).then_some(self.next_ms)
    }

    /// At `now_ms`, with the store at `revision`: the revision to compact now, if any
    /// (`leading`: only a leader compacts).
    pub fn poll(&mut self, now_ms: u64, revision: i64, leading: bool) -> Option<i64> {
        let step = self.step_ms();
        match self.policy {
            CompactionPolicy::Off => None,
            CompactionPolicy::Periodic { retention_ms } => {
                if !self.started {
                    self.started = true;
                    self.last_ms = now_ms;
                    self.wait_ms = retention_ms;
                    self.sample(revision, retention_ms);
                    self.next_ms = now_ms.saturating_add(step);
                    return None;
                }
                let mut out = None;
                while now_ms >= self.next_ms {
                    let at = self.next_ms;
                    self.next_ms = at.saturating_add(step);
                    if leading
                        && at.saturating_sub(self.last_ms) >= self.wait_ms
                        && let Some(&oldest) = self.samples.front()
                    {
                        self.wait_ms = retention_ms.min(HOUR_MS);
                        self.last_ms = at;
                        out = Some(oldest);
                    }
                    self.sample(revision, retention_ms);
                }
                out.filter(|&r| r > 0)
            }
            CompactionPolicy::Revision { retention } => {
                if !self.started {
                    self.started = true;
                    self.next_ms = now_ms.saturating_add(step);
                    return None;
                }
                if now_ms < self.next_ms {
                    return None;
                }
                while self.next_ms <= now_ms {
                    self.next_ms = self.next_ms.saturating_add(step);
                }
                let target = revision - retention;
                if !leading || target <= 0 || target == self.last_revision {
                    return None;
                }
                self.last_revision = target;
                Some(target)
            }
        }
    }

    /// Keeps the revision sampled now, and the samples of the last retention period.
    fn sample(&mut self, revision: i64, retention_ms: u64) {
        let keep = (retention_ms / self.step_ms()) as usize + 1;
        self.samples.push_back(revision);
        while self.samples.len() > keep {
            self.samples.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a compactor every `every_ms` for `until_ms`, the store's revision rising by one
    /// per millisecond (so a revision names the time it was written); the compactions made.
    fn run(
        policy: CompactionPolicy,
        every_ms: u64,
        until_ms: u64,
        leading: bool,
    ) -> Vec<(u64, i64)> {
        let mut c = Compactor::new(policy);
        let mut out = Vec::new();
        let mut now = 0;
        while now <= until_ms {
            if let Some(r) = c.poll(now, now as i64 + 1, leading) {
                out.push((now, r));
            }
            now += every_ms;
        }
        out
    }

    #[test]
    fn periodic_keeps_the_retention_and_compacts_every_period_under_an_hour() {
        // Ten minutes: first at ten minutes, to the revision of the start; then every ten
        // minutes, to the oldest sample of the last retention: written eleven minutes
        // before (the samples are a minute apart and the one taken now is not yet counted,
        // as in etcd's loop).
        let p = 10 * 60 * 1000;
        let got = run(
            CompactionPolicy::Periodic { retention_ms: p },
            1000,
            35 * 60 * 1000,
            true,
        );
        let rev_at = |ms: u64| ms as i64 + 1;
        assert_eq!(
            got,
            vec![
                (p, 1),
                (2 * p, rev_at(p - p / 10)),
                (3 * p, rev_at(2 * p - p / 10))
            ]
        );
    }

    #[test]
    fn periodic_over_an_hour_compacts_hourly_keeping_the_retention() {
        let p = 3 * HOUR_MS;
        let got = run(
            CompactionPolicy::Periodic { retention_ms: p },
            60_000,
            5 * HOUR_MS,
            true,
        );
        let times: Vec<u64> = got.iter().map(|&(t, _)| t).collect();
        assert_eq!(times, vec![3 * HOUR_MS, 4 * HOUR_MS, 5 * HOUR_MS]);
        // Each compaction keeps three hours of history, and at most one sampling interval
        // (six minutes) more.
        for (t, r) in got {
            let kept_ms = t - (r as u64 - 1);
            assert!(
                (p..=p + HOUR_MS / 10).contains(&kept_ms),
                "at {t} compacted to {r}"
            );
        }
    }

    #[test]
    fn revision_mode_compacts_every_five_minutes_to_the_retention() {
        let got = run(
            CompactionPolicy::Revision { retention: 1000 },
            1000,
            16 * 60 * 1000,
            true,
        );
        let at = |m: u64| m * 60 * 1000;
        assert_eq!(
            got,
            vec![
                (at(5), at(5) as i64 + 1 - 1000),
                (at(10), at(10) as i64 + 1 - 1000),
                (at(15), at(15) as i64 + 1 - 1000)
            ]
        );
    }

    #[test]
    fn a_follower_never_compacts_and_off_never_wakes() {
        let p = 60_000;
        assert!(
            run(
                CompactionPolicy::Periodic { retention_ms: p },
                1000,
                10 * p,
                false
            )
            .is_empty()
        );
        assert!(
            run(
                CompactionPolicy::Revision { retention: 1 },
                1000,
                HOUR_MS,
                false
            )
            .is_empty()
        );
        let mut off = Compactor::new(CompactionPolicy::Off);
        assert_eq!(off.poll(0, 100, true), None);
        assert_eq!(off.due_ms(), None);
    }

    #[test]
    fn revision_mode_does_not_repeat_a_compaction() {
        let mut c = Compactor::new(CompactionPolicy::Revision { retention: 10 });
        assert_eq!(c.poll(0, 50, true), None);
        assert_eq!(c.poll(REVISION_CHECK_MS, 50, true), Some(40));
        assert_eq!(c.poll(2 * REVISION_CHECK_MS, 50, true), None);
        assert_eq!(c.poll(3 * REVISION_CHECK_MS, 60, true), Some(50));
        assert_eq!(c.due_ms(), Some(4 * REVISION_CHECK_MS));
    }
}
