//! Majority and joint quorums: which index a quorum has acknowledged, and how an election went.

use super::message::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// How an election stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Neither won nor lost yet.
    Pending,
    /// Enough voters refused that it cannot be won.
    Lost,
    /// A quorum granted its vote.
    Won,
}

/// A set of voters deciding by simple majority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MajorityConfig {
    /// The voting members.
    pub voters: BTreeSet<NodeId>,
}

impl MajorityConfig {
    /// A configuration of the given voters.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> MajorityConfig {
        MajorityConfig {
            voters: voters.into_iter().collect(),
        }
    }

    /// The largest index acknowledged by a majority. An empty configuration acknowledges
    /// everything (so that it never holds back a joint configuration's other half).
    pub fn committed_index(&self, acked: &impl Fn(NodeId) -> Option<u64>) -> u64 {
        if self.voters.is_empty() {
            return u64::MAX;
        }
        let mut indexes: Vec<u64> = self
            .voters
            .iter()
            .map(|&id| acked(id).unwrap_or(0))
            .collect();
        indexes.sort_unstable_by(|a, b| b.cmp(a));
        indexes[self.voters.len() / 2]
    }

    /// `votes` maps voters to their answer; absent voters have not answered.
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut granted, mut missing) = (0, 0);
        for id in &self.voters {
            match votes.get(id) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let quorum = self.voters.len() / 2 + 1;
        if granted >= quorum {
            VoteResult::Won
        } else if granted + missing >= quorum {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}

/// The incoming and outgoing voter sets; outside a joint change the outgoing one is empty.
/// A decision needs a majority of each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JointConfig {
    /// The configuration being entered (or the only one outside a joint change).
    pub incoming: MajorityConfig,
    /// The configuration being left; empty outside a joint change.
    pub outgoing: MajorityConfig,
}

impl JointConfig {
    /// Whether this is a joint configuration (the outgoing set is not empty).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.voters.is_empty()
    }

    /// Every voter of either set.
    pub fn ids(&self) -> BTreeSet<NodeId> {
        self.incoming
            .voters
            .union(&self.outgoing.voters)
            .copied()
            .collect()
    }

    /// Whether `id` votes in either set.
    pub fn contains(&self, id: NodeId) -> bool {
        self.incoming.voters.contains(&id) || self.outgoing.voters.contains(&id)
    }

    /// The largest index acknowledged by a majority of both sets.
    pub fn committed_index(&self, acked: &impl Fn(NodeId) -> Option<u64>) -> u64 {
        self.incoming
            .committed_index(acked)
            .min(self.outgoing.committed_index(acked))
    }

    /// How an election stands when it needs a majority of both sets.
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        let a = self.incoming.vote_result(votes);
        let b = self.outgoing.vote_result(votes);
        match (a, b) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The committed index is acknowledged by a majority, and no larger index is.
        #[test]
        fn majority_committed_index_is_the_largest_majority_ack(
            acks in proptest::collection::btree_map(1u64..10, 0u64..20, 1..8)
        ) {
            let config = MajorityConfig::new(acks.keys().copied());
            let committed = config.committed_index(&|id| acks.get(&id).copied());
            let quorum = acks.len() / 2 + 1;
            prop_assert!(acks.values().filter(|&&a| a >= committed).count() >= quorum);
            prop_assert!(acks.values().filter(|&&a| a > committed).count() < quorum);
        }

        /// A joint vote is won only when both halves are won, and lost when either is lost.
        #[test]
        fn joint_votes_need_both_majorities(
            incoming in proptest::collection::btree_set(1u64..8, 1..6),
            outgoing in proptest::collection::btree_set(1u64..8, 0..6),
            answers in proptest::collection::btree_map(1u64..8, any::<bool>(), 0..8),
        ) {
            let joint = JointConfig {
                incoming: MajorityConfig::new(incoming.iter().copied()),
                outgoing: MajorityConfig::new(outgoing.iter().copied()),
            };
            let r = joint.vote_result(&answers);
            let a = joint.incoming.vote_result(&answers);
            let b = joint.outgoing.vote_result(&answers);
            prop_assert_eq!(r == VoteResult::Won, a == VoteResult::Won && b == VoteResult::Won);
            prop_assert_eq!(r == VoteResult::Lost, a == VoteResult::Lost || b == VoteResult::Lost);
        }
    }
}
