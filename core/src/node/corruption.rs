//! Corruption checks (`--experimental-initial-corrupt-check`,
//! `--experimental-corrupt-check-time`): what a member concludes from its own HashKV and its
//! peers' answers, by etcd 3.4/3.5's rules (`etcdserver/corrupt.go`).
//!
//! - [`initial_check`]: a restarting member, before it serves, compares its hash at its
//!   current revision with each peer's at that revision. A peer with the same compact revision
//!   and another hash means this member's data differs: it must not start.
//! - [`periodic_check`]: the leader hashes at its current revision, asks every other member at
//!   that revision, hashes again after a ReadIndex round, and names (at most) one member for
//!   the CORRUPT alarm.
//!
//! What it does not do: ask the peers, log, or raise the alarm. The server does the asking
//! (the peer protocol's HashKv), logs each [`Finding`] with [`Finding::message`], and
//! proposes the alarm through Raft as a client's Alarm ACTIVATE would be.

use crate::mvcc::HashKv;

/// What one peer answered when asked for its hash at a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAnswer {
    /// Its hash of everything at or below the asked revision.
    Hash {
        /// FNV-1a over the records (the store's [`HashKv::hash`]).
        hash: u32,
        /// The peer's own current revision (etcd's response header revision).
        current_revision: i64,
        /// The peer's compact revision when it hashed.
        compact_revision: i64,
    },
    /// The peer compacted at or above the asked revision.
    Compacted,
    /// The peer has not reached the asked revision yet.
    FutureRevision,
    /// No answer: unreachable, timed out, or another error (logged where it was asked).
    Failed,
}

/// A peer's answer, with its member ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerHash {
    /// The member asked.
    pub id: u64,
    /// What it answered.
    pub answer: PeerAnswer,
}

/// One thing a check noticed, to be logged (at warn level, with [`Finding::message`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Initial check: the peer has the same compact revision and another hash (a mismatch).
    HashDiffers {
        /// The peer.
        peer: u64,
        /// The peer's hash.
        hash: u32,
        /// The peer's current revision.
        revision: i64,
        /// The peer's compact revision.
        compact_revision: i64,
    },
    /// Initial check: another hash, but the compact revisions differ too (no verdict).
    CompactRevisionDiffers {
        /// The peer.
        peer: u64,
        /// The peer's hash.
        hash: u32,
        /// The peer's current revision.
        revision: i64,
        /// The peer's compact revision.
        compact_revision: i64,
    },
    /// Initial check: the peer has not reached this member's revision (skipped).
    PeerBehind {
        /// The peer.
        peer: u64,
    },
    /// Initial check: the peer compacted past this member's revision (skipped).
    LocalBehind {
        /// The peer.
        peer: u64,
    },
    /// Periodic check: the leader's own hash changed between its two hashes at one revision
    /// and one compact revision.
    LeaderHashChanged {
        /// The first hash.
        before: HashKv,
        /// The second, after the ReadIndex round.
        after: HashKv,
    },
    /// Periodic check: a follower is at a revision above the leader's.
    FollowerAhead {
        /// The follower.
        peer: u64,
        /// The leader's revision (the second hash's).
        leader_revision: i64,
        /// The follower's current revision.
        follower_revision: i64,
    },
    /// Periodic check: a follower compacted above the leader's compact revision.
    FollowerCompactedAhead {
        /// The follower.
        peer: u64,
        /// The leader's compact revision (the second hash's).
        leader_compact_revision: i64,
        /// The follower's compact revision.
        follower_compact_revision: i64,
    },
    /// Periodic check: a follower with the leader's compact revision has another hash.
    FollowerHashDiffers {
        /// The follower.
        peer: u64,
        /// The leader's hash (the first).
        leader_hash: u32,
        /// The follower's hash.
        follower_hash: u32,
        /// The compact revision both have.
        compact_revision: i64,
    },
}

impl Finding {
    /// etcd's log message for the finding.
    pub fn message(&self) -> &'static str {
        match self {
            Finding::HashDiffers { .. } => "found different hash values from remote peer",
            Finding::CompactRevisionDiffers { .. } => {
                "found different compact revision values from remote peer"
            }
            Finding::PeerBehind { .. } => "cannot fetch hash from slow remote peer",
            Finding::LocalBehind { .. } => {
                "cannot fetch hash from remote peer; local member is behind"
            }
            Finding::LeaderHashChanged { .. } => "found hash mismatch",
            Finding::FollowerAhead { .. } => {
                "revision from follower must be less than or equal to leader's"
            }
            Finding::FollowerCompactedAhead { .. } => {
                "compact revision from follower must be less than or equal to leader's"
            }
            Finding::FollowerHashDiffers { .. } => "same compact revision then hashes must match",
        }
    }
}

/// The initial check's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitialVerdict {
    /// What to log, in the peers' order.
    pub findings: Vec<Finding>,
    /// How many peers had the same compact revision and another hash: any, and the member
    /// must not start ("found data inconsistency with peers").
    pub mismatches: usize,
}

impl InitialVerdict {
    /// Whether the member must refuse to start.
    pub fn inconsistent(&self) -> bool {
        self.mismatches > 0
    }
}

/// The periodic check's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeriodicVerdict {
    /// What to log, in the order found.
    pub findings: Vec<Finding>,
    /// The member to raise the CORRUPT alarm for. One per check, the first found, as etcd's
    /// `alarmed` flag allows.
    pub alarm: Option<u64>,
    /// How many peers answered with a hash (etcd's "number-of-peers-checked").
    pub checked: usize,
}

/// The initial check of a restarting member whose own hash at its current revision is `local`,
/// given each peer's answer at `local.revision`. Only a peer with the same compact revision
/// and another hash counts against the member; one that is behind, compacted past it, or did
/// not answer is skipped.
pub fn initial_check(local: &HashKv, peers: &[PeerHash]) -> InitialVerdict {
    assert!(local.compact_revision <= local.revision, "{local:?}");
    let mut verdict = InitialVerdict::default();
    for p in peers {
        let finding = match p.answer {
            PeerAnswer::Hash { hash, .. } if hash == local.hash => None,
            PeerAnswer::Hash {
                hash,
                current_revision: revision,
                compact_revision,
            } if compact_revision == local.compact_revision => {
                verdict.mismatches += 1;
                Some(Finding::HashDiffers {
                    peer: p.id,
                    hash,
                    revision,
                    compact_revision,
                })
            }
            PeerAnswer::Hash {
                hash,
                current_revision: revision,
                compact_revision,
            } => Some(Finding::CompactRevisionDiffers {
                peer: p.id,
                hash,
                revision,
                compact_revision,
            }),
            PeerAnswer::FutureRevision => Some(Finding::PeerBehind { peer: p.id }),
            PeerAnswer::Compacted => Some(Finding::LocalBehind { peer: p.id }),
            PeerAnswer::Failed => None,
        };
        verdict.findings.extend(finding);
    }
    debug_assert!(verdict.mismatches <= peers.len());
    verdict
}

/// The leader's periodic check: `before` is its hash at its current revision when it asked
/// the peers (at `before.revision`), `after` its hash once a ReadIndex round confirmed it
/// still leads. A follower is named when it is ahead of the leader in revision or compact
/// revision, or has the leader's first compact revision and another hash; the leader names
/// itself when its own hash changed under one revision and compact revision. A peer that
/// answered no hash (behind, compacted past the leader's revision, unreachable) is skipped,
/// as etcd skips it.
pub fn periodic_check(
    leader: u64,
    before: &HashKv,
    after: &HashKv,
    peers: &[PeerHash],
) -> PeriodicVerdict {
    assert!(before.revision <= after.revision, "{before:?} {after:?}");
    assert!(
        before.compact_revision <= after.compact_revision,
        "{before:?} {after:?}"
    );
    fn mismatch(id: u64, finding: Finding, verdict: &mut PeriodicVerdict) {
        verdict.findings.push(finding);
        verdict.alarm.get_or_insert(id);
    }
    let mut verdict = PeriodicVerdict::default();
    if after.hash != before.hash
        && after.revision == before.revision
        && after.compact_revision == before.compact_revision
    {
        let finding = Finding::LeaderHashChanged {
            before: *before,
            after: *after,
        };
        mismatch(leader, finding, &mut verdict);
    }
    for p in peers {
        assert_ne!(p.id, leader, "the leader does not ask itself");
        let PeerAnswer::Hash {
            hash,
            current_revision,
            compact_revision,
        } = p.answer
        else {
            continue;
        };
        verdict.checked += 1;
        if current_revision > after.revision {
            let finding = Finding::FollowerAhead {
                peer: p.id,
                leader_revision: after.revision,
                follower_revision: current_revision,
            };
            mismatch(p.id, finding, &mut verdict);
        }
        if compact_revision > after.compact_revision {
            let finding = Finding::FollowerCompactedAhead {
                peer: p.id,
                leader_compact_revision: after.compact_revision,
                follower_compact_revision: compact_revision,
            };
            mismatch(p.id, finding, &mut verdict);
        }
        if compact_revision == before.compact_revision && hash != before.hash {
            let finding = Finding::FollowerHashDiffers {
                peer: p.id,
                leader_hash: before.hash,
                follower_hash: hash,
                compact_revision,
            };
            mismatch(p.id, finding, &mut verdict);
        }
    }
    debug_assert!(verdict.checked <= peers.len());
    debug_assert_eq!(verdict.alarm.is_some(), !verdict.findings.is_empty());
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(hash: u32, revision: i64, compact_revision: i64) -> HashKv {
        HashKv {
            hash,
            revision,
            compact_revision,
        }
    }

    fn answer(id: u64, hash: u32, current_revision: i64, compact_revision: i64) -> PeerHash {
        PeerHash {
            id,
            answer: PeerAnswer::Hash {
                hash,
                current_revision,
                compact_revision,
            },
        }
    }

    fn error(id: u64, answer: PeerAnswer) -> PeerHash {
        PeerHash { id, answer }
    }

    #[test]
    fn initial_same_hashes_pass_silently() {
        let v = initial_check(&hash(7, 10, 0), &[answer(2, 7, 10, 0), answer(3, 7, 12, 0)]);
        assert_eq!(v, InitialVerdict::default());
        assert!(!v.inconsistent());
    }

    #[test]
    fn initial_another_hash_at_the_same_compact_revision_refuses_to_start() {
        let v = initial_check(&hash(7, 10, 4), &[answer(2, 7, 10, 4), answer(3, 8, 11, 4)]);
        assert!(v.inconsistent());
        assert_eq!(v.mismatches, 1);
        assert_eq!(
            v.findings,
            vec![Finding::HashDiffers {
                peer: 3,
                hash: 8,
                revision: 11,
                compact_revision: 4
            }]
        );
        assert_eq!(
            v.findings[0].message(),
            "found different hash values from remote peer"
        );
    }

    #[test]
    fn initial_another_hash_at_another_compact_revision_is_only_logged() {
        let v = initial_check(&hash(7, 10, 4), &[answer(2, 8, 10, 6)]);
        assert!(!v.inconsistent());
        assert_eq!(
            v.findings,
            vec![Finding::CompactRevisionDiffers {
                peer: 2,
                hash: 8,
                revision: 10,
                compact_revision: 6
            }]
        );
    }

    #[test]
    fn initial_behind_compacted_and_unreachable_peers_are_skipped() {
        let peers = [
            error(2, PeerAnswer::FutureRevision),
            error(3, PeerAnswer::Compacted),
            error(4, PeerAnswer::Failed),
        ];
        let v = initial_check(&hash(7, 10, 0), &peers);
        assert!(!v.inconsistent());
        assert_eq!(
            v.findings,
            vec![
                Finding::PeerBehind { peer: 2 },
                Finding::LocalBehind { peer: 3 }
            ]
        );
        assert_eq!(
            v.findings[0].message(),
            "cannot fetch hash from slow remote peer"
        );
        assert_eq!(
            v.findings[1].message(),
            "cannot fetch hash from remote peer; local member is behind"
        );
        // No peer at all: nothing to compare with, nothing refused.
        assert_eq!(
            initial_check(&hash(7, 10, 0), &[]),
            InitialVerdict::default()
        );
    }

    #[test]
    fn periodic_agreeing_members_raise_nothing() {
        let h = hash(7, 10, 4);
        let v = periodic_check(1, &h, &h, &[answer(2, 7, 10, 4), answer(3, 7, 9, 4)]);
        assert_eq!(v.alarm, None);
        assert_eq!(v.checked, 2);
        assert!(v.findings.is_empty());
        // The leader moved on between its hashes: nothing to say about itself.
        let v = periodic_check(1, &h, &hash(9, 12, 4), &[answer(2, 7, 12, 4)]);
        assert_eq!((v.alarm, v.checked), (None, 1));
    }

    #[test]
    fn periodic_a_follower_with_another_hash_is_alarmed() {
        let h = hash(7, 10, 4);
        let v = periodic_check(1, &h, &h, &[answer(2, 7, 10, 4), answer(3, 8, 10, 4)]);
        assert_eq!(v.alarm, Some(3));
        assert_eq!(
            v.findings,
            vec![Finding::FollowerHashDiffers {
                peer: 3,
                leader_hash: 7,
                follower_hash: 8,
                compact_revision: 4
            }]
        );
        assert_eq!(
            v.findings[0].message(),
            "same compact revision then hashes must match"
        );
    }

    #[test]
    fn periodic_another_hash_at_another_compact_revision_is_not_a_mismatch() {
        // The follower has not applied the compaction the leader has (its hash covers
        // history the leader dropped): no verdict.
        let v = periodic_check(1, &hash(7, 10, 4), &hash(7, 10, 4), &[answer(2, 8, 10, 2)]);
        assert_eq!((v.alarm, v.checked), (None, 1));
        assert!(v.findings.is_empty());
    }

    #[test]
    fn periodic_a_follower_ahead_of_the_leader_is_alarmed() {
        let h = hash(7, 10, 4);
        let v = periodic_check(1, &h, &h, &[answer(2, 7, 11, 4)]);
        assert_eq!(v.alarm, Some(2));
        assert_eq!(
            v.findings,
            vec![Finding::FollowerAhead {
                peer: 2,
                leader_revision: 10,
                follower_revision: 11
            }]
        );
        let v = periodic_check(1, &h, &h, &[answer(3, 5, 10, 6)]);
        assert_eq!(v.alarm, Some(3));
        assert_eq!(
            v.findings,
            vec![Finding::FollowerCompactedAhead {
                peer: 3,
                leader_compact_revision: 4,
                follower_compact_revision: 6
            }]
        );
    }

    #[test]
    fn periodic_the_leader_whose_hash_changed_alarms_itself_first() {
        let before = hash(7, 10, 4);
        let after = hash(9, 10, 4);
        let v = periodic_check(1, &before, &after, &[answer(2, 8, 10, 4)]);
        // Both findings are logged; the one alarm is the first's (etcd's `alarmed`).
        assert_eq!(v.alarm, Some(1));
        assert_eq!(v.findings.len(), 2);
        assert_eq!(v.findings[0], Finding::LeaderHashChanged { before, after });
        assert_eq!(v.findings[0].message(), "found hash mismatch");
    }

    #[test]
    fn periodic_peers_without_a_hash_are_skipped() {
        let h = hash(7, 10, 4);
        let peers = [
            error(2, PeerAnswer::Compacted),
            error(3, PeerAnswer::FutureRevision),
            error(4, PeerAnswer::Failed),
        ];
        let v = periodic_check(1, &h, &h, &peers);
        assert_eq!(v, PeriodicVerdict::default());
    }

    #[test]
    fn periodic_one_alarm_per_check() {
        let h = hash(7, 10, 4);
        let v = periodic_check(1, &h, &h, &[answer(2, 8, 10, 4), answer(3, 9, 10, 4)]);
        assert_eq!(v.alarm, Some(2));
        assert_eq!(v.findings.len(), 2);
    }
}
