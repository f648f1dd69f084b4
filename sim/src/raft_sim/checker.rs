//! Raft's safety properties, checked after every step of the simulation:
//! election safety (one leader per term), log matching, leader completeness, state machine
//! safety (every member applies the same entry at an index, and reaches the same digest),
//! commit indexes that never go back (in memory, and as persisted across restarts), and
//! linearizable reads (a ReadIndex answer covers every write committed before the read began).

use crate::fnv;
use oxcd::raft::{Entry, MemStorage, NodeId, Raft, StateRole};
use std::collections::BTreeMap;
use std::fmt;

/// One broken property, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    TwoLeaders {
        term: u64,
        first: NodeId,
        second: NodeId,
    },
    LogMatching {
        index: u64,
        term: u64,
        node: NodeId,
    },
    LeaderCompleteness {
        leader: NodeId,
        term: u64,
        index: u64,
    },
    StateMachineSafety {
        node: NodeId,
        index: u64,
        detail: String,
    },
    CommitWentBack {
        node: NodeId,
        from: u64,
        to: u64,
        persisted: bool,
    },
    StaleRead {
        node: NodeId,
        read_index: u64,
        committed_before: u64,
    },
    Liveness {
        ticks: u64,
    },
    Panic(String),
}

impl Violation {
    /// A short name for the property, for summaries and tests.
    pub fn property(&self) -> &'static str {
        match self {
            Violation::TwoLeaders { .. } => "election-safety",
            Violation::LogMatching { .. } => "log-matching",
            Violation::LeaderCompleteness { .. } => "leader-completeness",
            Violation::StateMachineSafety { .. } => "state-machine-safety",
            Violation::CommitWentBack { .. } => "commit-monotonic",
            Violation::StaleRead { .. } => "read-index-linearizable",
            Violation::Liveness { .. } => "liveness",
            Violation::Panic(_) => "panic",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.property())?;
        match self {
            Violation::TwoLeaders {
                term,
                first,
                second,
            } => write!(
                f,
                "nodes {first} and {second} were both leader in term {term}"
            ),
            Violation::LogMatching { index, term, node } => write!(
                f,
                "node {node} holds entry {index}/{term} with a different content or predecessor than another log"
            ),
            Violation::LeaderCompleteness {
                leader,
                term,
                index,
            } => write!(
                f,
                "node {leader} became leader of term {term} without committed entry {index}"
            ),
            Violation::StateMachineSafety {
                node,
                index,
                detail,
            } => write!(f, "node {node} at index {index}: {detail}"),
            Violation::CommitWentBack {
                node,
                from,
                to,
                persisted,
            } => write!(
                f,
                "node {node}'s {}commit index went back from {from} to {to}",
                if *persisted { "persisted " } else { "" }
            ),
            Violation::StaleRead {
                node,
                read_index,
                committed_before,
            } => write!(
                f,
                "node {node} got read index {read_index}, but index {committed_before} was committed before the read began"
            ),
            Violation::Liveness { ticks } => write!(
                f,
                "no leader committed a proposal within {ticks} ticks after the faults stopped"
            ),
            Violation::Panic(msg) => write!(f, "a member panicked: {msg}"),
        }
    }
}

type Check = Result<(), Violation>;

/// What the checker has seen so far in one run.
#[derive(Default)]
pub struct Checker {
    leaders: BTreeMap<u64, NodeId>,
    /// (index, term) → (content hash, predecessor's term), over every log seen.
    entries: BTreeMap<(u64, u64), (u64, u64)>,
    /// index → (term, content hash) of committed entries.
    committed: BTreeMap<u64, (u64, u64)>,
    /// term → the highest index a leader of that term committed.
    commit_by_term: BTreeMap<u64, u64>,
    /// index → state machine digest after applying it.
    digests: BTreeMap<u64, u64>,
}

impl Checker {
    /// The highest commit index any member has reached.
    pub fn max_committed(&self) -> u64 {
        self.commit_by_term.values().copied().max().unwrap_or(0)
    }

    /// Checks a member after it handled an input. `node` carries the checker's per-member
    /// observations (last commit seen, term it was last seen leading).
    pub fn observe(
        &mut self,
        raft: &Raft<MemStorage>,
        last_commit: &mut u64,
        leader_term: &mut u64,
    ) -> Check {
        let id = raft.id;
        let committed = raft.raft_log.committed;
        if committed < *last_commit {
            return Err(Violation::CommitWentBack {
                node: id,
                from: *last_commit,
                to: committed,
                persisted: false,
            });
        }
        if raft.state == StateRole::Leader {
            let term = raft.term;
            let first = *self.leaders.entry(term).or_insert(id);
            if first != id {
                return Err(Violation::TwoLeaders {
                    term,
                    first,
                    second: id,
                });
            }
            if *leader_term != term {
                *leader_term = term;
                self.check_leader_completeness(raft)?;
            }
            if committed > *last_commit {
                self.record_commit(raft, *last_commit, committed)?;
            }
        }
        *last_commit = committed;
        Ok(())
    }

    fn check_leader_completeness(&self, raft: &Raft<MemStorage>) -> Check {
        let bound = self
            .commit_by_term
            .range(..raft.term)
            .map(|(_, &i)| i)
            .max()
            .unwrap_or(0);
        let log = &raft.raft_log;
        let missing = |index| Violation::LeaderCompleteness {
            leader: raft.id,
            term: raft.term,
            index,
        };
        if log.last_index() < bound {
            return Err(missing(log.last_index() + 1));
        }
        let first = log.first_index();
        if first > bound {
            return Ok(());
        }
        for (&index, &(term, _)) in self.committed.range(first..=bound) {
            if log.term_or_zero(index) != term {
                return Err(missing(index));
            }
        }
        Ok(())
    }

    fn record_commit(&mut self, raft: &Raft<MemStorage>, from: u64, to: u64) -> Check {
        let lo = (from + 1).max(raft.raft_log.first_index());
        for e in raft
            .raft_log
            .slice(lo, to + 1, u64::MAX)
            .unwrap_or_default()
        {
            self.check_committed(raft.id, &e)?;
        }
        let high = self.commit_by_term.entry(raft.term).or_default();
        *high = (*high).max(to);
        Ok(())
    }

    fn check_committed(&mut self, node: NodeId, e: &Entry) -> Check {
        let id = (e.term, fnv::hash(&e.data));
        match self.committed.get(&e.index) {
            Some(&seen) if seen != id => Err(Violation::StateMachineSafety {
                node,
                index: e.index,
                detail: format!(
                    "entry of term {} differs from the committed entry of term {}",
                    e.term, seen.0
                ),
            }),
            Some(_) => Ok(()),
            None => {
                self.committed.insert(e.index, id);
                Ok(())
            }
        }
    }

    /// Checks entries about to be persisted; `prev_term` is the term of the entry before the
    /// first of them in the member's log.
    pub fn check_log(&mut self, node: NodeId, prev_term: u64, entries: &[Entry]) -> Check {
        let mut prev = prev_term;
        for e in entries {
            let content = fnv::hash(&e.data);
            let seen = *self
                .entries
                .entry((e.index, e.term))
                .or_insert((content, prev));
            if seen != (content, prev) {
                return Err(Violation::LogMatching {
                    index: e.index,
                    term: e.term,
                    node,
                });
            }
            prev = e.term;
        }
        Ok(())
    }

    /// Checks an entry a member applied, and the digest it reached.
    pub fn check_apply(&mut self, node: NodeId, e: &Entry, digest: u64) -> Check {
        self.check_committed(node, e)?;
        self.check_digest(node, e.index, digest)
    }

    /// Checks a member's state machine digest at `index` against every other member's.
    pub fn check_digest(&mut self, node: NodeId, index: u64, digest: u64) -> Check {
        let seen = *self.digests.entry(index).or_insert(digest);
        if seen != digest {
            return Err(Violation::StateMachineSafety {
                node,
                index,
                detail: "state machine digest differs from another member's".into(),
            });
        }
        Ok(())
    }

    /// Checks a hard state commit index about to be persisted.
    pub fn check_persisted_commit(&self, node: NodeId, last: &mut u64, commit: u64) -> Check {
        if commit < *last {
            return Err(Violation::CommitWentBack {
                node,
                from: *last,
                to: commit,
                persisted: true,
            });
        }
        *last = commit;
        Ok(())
    }
}
