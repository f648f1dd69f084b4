//! What a leader knows about one follower's log, and the window of append messages in flight
//! to it.

use std::collections::VecDeque;

/// How the leader is sending to a follower.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressState {
    /// The leader does not know where the follower's log matches: one append at a time, each
    /// waiting for its answer.
    #[default]
    Probe,
    /// The follower's log matches up to `matched`: appends are pipelined, up to the in-flight
    /// window.
    Replicate,
    /// The follower needs a snapshot; nothing else is sent until it is reported.
    Snapshot,
}

/// A bounded window of in-flight append messages, each known by its last index.
#[derive(Clone, Debug)]
pub struct Inflights {
    last_indexes: VecDeque<u64>,
    cap: usize,
}

impl Inflights {
    /// An empty window holding at most `cap` messages.
    pub fn new(cap: usize) -> Inflights {
        assert!(cap > 0, "the in-flight window holds at least one message");
        Inflights {
            last_indexes: VecDeque::with_capacity(cap.min(64)),
            cap,
        }
    }

    /// Records a message ending at `last_index`; panics when the window is full.
    pub fn add(&mut self, last_index: u64) {
        assert!(!self.full(), "in-flight window overflow");
        debug_assert!(self.last_indexes.back().is_none_or(|&b| b <= last_index));
        self.last_indexes.push_back(last_index);
    }

    /// Frees every message whose last index is at most `index` (it was acknowledged).
    pub fn free_le(&mut self, index: u64) {
        while self.last_indexes.front().is_some_and(|&i| i <= index) {
            self.last_indexes.pop_front();
        }
    }

    /// Frees the oldest message: it may have been lost, and a full window would otherwise
    /// never send again. A lost append shows up as a gap the follower rejects, which sends the
    /// leader back to probing.
    pub fn free_first_one(&mut self) {
        self.last_indexes.pop_front();
    }

    /// Whether the window is full, so nothing more may be sent.
    pub fn full(&self) -> bool {
        self.last_indexes.len() >= self.cap
    }

    /// How many messages are in flight.
    pub fn count(&self) -> usize {
        self.last_indexes.len()
    }

    /// Forgets every message in flight.
    pub fn reset(&mut self) {
        self.last_indexes.clear();
    }
}

/// What the leader knows about one member's log and how it is sending to it.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The highest index known to match the leader's log.
    pub matched: u64,
    /// The next index to send.
    pub next: u64,
    /// How the leader is sending to the member.
    pub state: ProgressState,
    /// In the snapshot state: the index of the snapshot being sent.
    pub pending_snapshot: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// In the probe state: an append is out and unanswered.
    pub probe_sent: bool,
    /// The appends sent and not yet acknowledged.
    pub inflights: Inflights,
    /// Whether the member is a learner (does not vote).
    pub is_learner: bool,
}

impl Progress {
    /// A member in the probe state, next sending `next`, with a window of `inflight_max` appends.
    pub fn new(next: u64, inflight_max: usize) -> Progress {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            recent_active: false,
            probe_sent: false,
            inflights: Inflights::new(inflight_max),
            is_learner: false,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.inflights.reset();
    }

    /// Goes back to probing, one append at a time from after `matched` (or the pending snapshot).
    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next = (self.matched + 1).max(pending + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next = self.matched + 1;
        }
    }

    /// Starts pipelining appends from after `matched`.
    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next = self.matched + 1;
    }

    /// Waits for a snapshot at `snapshot_index` to be installed, sending nothing else.
    pub fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
    }

    /// The follower acknowledged `index`. Returns whether `matched` moved.
    pub fn maybe_update(&mut self, index: u64) -> bool {
        let updated = self.matched < index;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index + 1);
        updated
    }

    /// An append up to `last` went out while replicating: send the next one after it.
    pub fn optimistic_update(&mut self, last: u64) {
        self.next = last + 1;
    }

    /// The follower rejected an append at `rejected`; `hint` is where the leader should probe
    /// next. Returns false when the rejection is stale (an answer to an older message).
    pub fn maybe_decr_to(&mut self, rejected: u64, hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            return true;
        }
        if self.next == 0 || self.next - 1 != rejected {
            return false;
        }
        self.next = rejected.min(hint + 1).max(self.matched + 1).max(1);
        self.probe_sent = false;
        true
    }

    /// Whether the leader should hold back appends to this follower.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_free_in_order_and_bound_the_window() {
        let mut w = Inflights::new(3);
        w.add(5);
        w.add(7);
        w.add(9);
        assert!(w.full());
        w.free_le(7);
        assert_eq!(w.count(), 1);
        w.free_le(100);
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn probe_backs_off_to_the_hint_and_ignores_stale_rejections() {
        let mut p = Progress::new(11, 4);
        assert!(p.maybe_decr_to(10, 4));
        assert_eq!(p.next, 5);
        // A rejection of an index we are no longer probing is stale.
        assert!(!p.maybe_decr_to(10, 2));
        p.become_replicate();
        assert!(p.maybe_update(6));
        assert!(!p.maybe_decr_to(6, 0));
        assert!(p.maybe_decr_to(9, 0));
        assert_eq!(p.next, 7);
    }
}
