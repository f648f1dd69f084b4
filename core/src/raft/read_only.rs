//! Linearizable reads on the leader (ReadIndex). A read records the commit index when it
//! arrives, then waits until a quorum has answered a heartbeat sent after that moment: only
//! then is it certain that no newer leader existed when the read arrived. Reads share rounds:
//! one heartbeat round confirms every read that arrived before it was sent.

use super::message::{Message, NodeId};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// A read waiting for its round.
#[derive(Clone, Debug)]
pub struct PendingRead {
    /// The original request (its `from` is 0 or the leader itself for local reads).
    pub request: Message,
    /// The commit index when the read arrived.
    pub index: u64,
    /// The heartbeat round that confirms it.
    pub round: u64,
}

/// What became of a read handed to `ReadOnly::add`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// Send heartbeats for this new round now.
    StartRound(u64),
    /// It waits for the round after the one in flight.
    Queued,
    /// Too many reads wait already.
    Refused,
}

#[derive(Debug, Default)]
pub struct ReadOnly {
    pending: VecDeque<PendingRead>,
    /// The last round whose heartbeats were sent.
    started_round: u64,
    /// For each peer, the highest round it answered.
    acked_rounds: BTreeMap<NodeId, u64>,
}

/// Upper bound on reads waiting on a leader; more are refused (dropped) until rounds finish.
pub const PENDING_READS_MAX: usize = 64 * 1024;

impl ReadOnly {
    /// Queues a read. It starts a round now if no round is in flight for it (a round already
    /// in flight was sent before this read arrived and cannot confirm it). Refuses the read
    /// when `PENDING_READS_MAX` reads wait already.
    pub fn add(&mut self, request: Message, index: u64) -> Added {
        if self.pending.len() >= PENDING_READS_MAX {
            return Added::Refused;
        }
        let round = self.started_round + 1;
        let start_now = !self.round_in_flight();
        self.pending.push_back(PendingRead {
            request,
            index,
            round,
        });
        if start_now {
            self.started_round = round;
            Added::StartRound(round)
        } else {
            Added::Queued
        }
    }

    fn round_in_flight(&self) -> bool {
        self.pending
            .front()
            .is_some_and(|r| r.round <= self.started_round)
    }

    /// The round to carry on the next heartbeats: starts the next round if reads wait for one.
    pub fn heartbeat_round(&mut self) -> Option<u64> {
        if self
            .pending
            .back()
            .is_some_and(|r| r.round > self.started_round)
        {
            self.started_round += 1;
        }
        (!self.pending.is_empty()).then_some(self.started_round)
    }

    /// Records that `from` answered a heartbeat of `round` (which confirms every earlier round).
    pub fn record_ack(&mut self, from: NodeId, round: u64) {
        let acked = self.acked_rounds.entry(from).or_default();
        *acked = (*acked).max(round);
    }

    /// Removes and returns the reads whose round is confirmed, in arrival order. `quorum_round`
    /// tells the highest round a quorum has answered, given each peer's highest answered round.
    pub fn confirmed(
        &mut self,
        quorum_round: impl Fn(&BTreeMap<NodeId, u64>) -> u64,
    ) -> Vec<PendingRead> {
        let confirmed = quorum_round(&self.acked_rounds).min(self.started_round);
        let mut done = Vec::new();
        while self.pending.front().is_some_and(|r| r.round <= confirmed) {
            done.push(self.pending.pop_front().expect("checked"));
        }
        done
    }

    /// Starts the round that reads are waiting for, if no round is in flight.
    pub fn start_waiting_round(&mut self) -> Option<u64> {
        let waiting = self
            .pending
            .back()
            .is_some_and(|r| r.round > self.started_round);
        if waiting && !self.round_in_flight() {
            self.started_round += 1;
            Some(self.started_round)
        } else {
            None
        }
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Forgets everything (leadership changed): waiting reads are dropped, and their callers
    /// retry.
    pub fn reset(&mut self) {
        *self = ReadOnly::default();
    }
}

pub fn encode_round(round: u64) -> Bytes {
    Bytes::copy_from_slice(&round.to_be_bytes())
}

pub fn decode_round(context: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(context.try_into().ok()?))
}
