//! The leader's (and candidate's) view of the membership: the voter and learner sets, one
//! `Progress` per member, and the votes of an election in progress.

use super::message::{ConfState, NodeId};
use super::progress::Progress;
use super::quorum::{JointConfig, VoteResult};
use std::collections::{BTreeMap, BTreeSet};

pub type ProgressMap = BTreeMap<NodeId, Progress>;

/// The membership, as the tracker holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackerConfig {
    /// The voters, possibly a joint configuration.
    pub voters: JointConfig,
    /// Non-voting members; never also voters.
    pub learners: BTreeSet<NodeId>,
    /// Outgoing voters that turn into learners when the joint configuration is left.
    pub learners_next: BTreeSet<NodeId>,
    /// Leave the joint configuration automatically once it is applied.
    pub auto_leave: bool,
}

impl TrackerConfig {
    /// The membership in the form snapshots store it.
    pub fn conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters.incoming.voters.iter().copied().collect(),
            learners: self.learners.iter().copied().collect(),
            voters_outgoing: self.voters.outgoing.voters.iter().copied().collect(),
            learners_next: self.learners_next.iter().copied().collect(),
            auto_leave: self.auto_leave,
        }
    }
}

/// The membership, each member's progress, and the votes of an election in progress.
#[derive(Clone, Debug)]
pub struct ProgressTracker {
    /// The current membership.
    pub config: TrackerConfig,
    /// Each member's progress, learners included.
    pub progress: ProgressMap,
    /// Votes received in the current election: granted (`true`) or refused.
    pub votes: BTreeMap<NodeId, bool>,
    /// The in-flight append window each progress gets.
    pub inflight_max: usize,
}

impl ProgressTracker {
    /// An empty tracker; each progress gets a window of `inflight_max` appends.
    pub fn new(inflight_max: usize) -> ProgressTracker {
        ProgressTracker {
            config: TrackerConfig::default(),
            progress: ProgressMap::new(),
            votes: BTreeMap::new(),
            inflight_max,
        }
    }

    /// The membership in the form snapshots store it.
    pub fn conf_state(&self) -> ConfState {
        self.config.conf_state()
    }

    /// One voter and no joint change: the leader decides alone.
    pub fn is_singleton(&self) -> bool {
        self.config.voters.incoming.voters.len() == 1 && !self.config.voters.is_joint()
    }

    /// Every voter, incoming and outgoing.
    pub fn voter_ids(&self) -> BTreeSet<NodeId> {
        self.config.voters.ids()
    }

    /// The largest index replicated on a quorum.
    pub fn committed(&self) -> u64 {
        self.config
            .voters
            .committed_index(&|id| self.progress.get(&id).map(|p| p.matched))
    }

    /// Whether a quorum (counting `self_id`) was heard from since the last check.
    pub fn quorum_active(&self, self_id: NodeId) -> bool {
        let votes: BTreeMap<NodeId, bool> = self
            .progress
            .iter()
            .filter(|(id, p)| !p.is_learner && self.config.voters.contains(**id))
            .map(|(&id, p)| (id, id == self_id || p.recent_active))
            .collect();
        self.config.voters.vote_result(&votes) == VoteResult::Won
    }

    /// Forgets the votes of the last election.
    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s answer; only the first answer of each voter counts.
    pub fn record_vote(&mut self, id: NodeId, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    /// (granted, rejected, result) of the election in progress.
    pub fn tally_votes(&self) -> (usize, usize, VoteResult) {
        let (mut granted, mut rejected) = (0, 0);
        for (id, &v) in &self.votes {
            if !self.config.voters.contains(*id) {
                continue;
            }
            if v {
                granted += 1;
            } else {
                rejected += 1;
            }
        }
        (
            granted,
            rejected,
            self.config.voters.vote_result(&self.votes),
        )
    }
}
