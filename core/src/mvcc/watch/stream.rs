//! One watch stream (one client's gRPC `Watch` call): its watchers' ids and its outbox, the
//! bounded queue of responses the driver drains with `Watchers::poll_response`.
//!
//! The outbox is one FIFO for every kind of response, so a watcher's `created` comes before
//! its events and a progress response after the events it vouches for. Two budgets bound it:
//! event responses (etcd's per-stream channel) and control responses (etcd's control
//! channel). A fragmented response takes one event slot for all its pieces, so that a
//! revision's pieces always travel together. It does not decide what to send: that is
//! [`super::Watchers`].

use super::{WatchResponse, WatcherRef};
use std::collections::{BTreeMap, VecDeque};

/// Which budget a queued response counts against; freed when it is polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Control,
    /// An event or progress response, or the last piece of a fragmented one.
    Event,
    /// A piece of a fragmented response before its last: it rides on the last piece's slot.
    Piece,
}

#[derive(Debug, Default)]
pub(super) struct Stream {
    /// The stream's watchers by their watch id.
    pub(super) watch_ids: BTreeMap<i64, WatcherRef>,
    /// Where a server-chosen watch id search starts (etcd's `nextID`): ids go up and are
    /// never handed out twice by the server.
    pub(super) next_auto_id: i64,
    /// How many of the stream's watchers are unsynced.
    pub(super) unsynced: usize,
    /// A progress request waits for the stream's watchers to catch up.
    pub(super) progress_pending: bool,
    outbox: VecDeque<(WatchResponse, Slot)>,
    event_responses: usize,
    control_responses: usize,
}

impl Stream {
    pub(super) fn event_room(&self, event_responses_max: usize) -> bool {
        self.event_responses < event_responses_max
    }

    pub(super) fn control_room(&self, control_responses_max: usize) -> bool {
        self.control_responses < control_responses_max
    }

    pub(super) fn is_empty(&self) -> bool {
        self.outbox.is_empty()
    }

    pub(super) fn push_control(&mut self, response: WatchResponse) {
        debug_assert!(response.events.is_empty() && !response.fragment);
        self.outbox.push_back((response, Slot::Control));
        self.control_responses += 1;
    }

    /// Queues one event or progress response, split into pieces when fragmented: every piece
    /// but the last has `fragment` set. The caller checked `event_room`.
    pub(super) fn push_events(&mut self, pieces: Vec<WatchResponse>) {
        let count = pieces.len();
        assert!(count > 0, "an event response has at least one piece");
        for (i, piece) in pieces.into_iter().enumerate() {
            let last = i + 1 == count;
            debug_assert_eq!(piece.fragment, !last, "only the last piece ends a fragment");
            debug_assert!(!piece.created && !piece.canceled);
            let slot = if last { Slot::Event } else { Slot::Piece };
            self.outbox.push_back((piece, slot));
        }
        self.event_responses += 1;
    }

    /// Queues a watcher's last response, a compaction cancel, in an event slot: it waits
    /// for room like the events it replaces. The caller checked `event_room`.
    pub(super) fn push_canceled(&mut self, response: WatchResponse) {
        debug_assert!(response.canceled && response.events.is_empty() && !response.fragment);
        self.outbox.push_back((response, Slot::Event));
        self.event_responses += 1;
    }

    pub(super) fn pop(&mut self) -> Option<WatchResponse> {
        let (response, slot) = self.outbox.pop_front()?;
        match slot {
            Slot::Control => self.control_responses -= 1,
            Slot::Event => self.event_responses -= 1,
            Slot::Piece => {}
        }
        Some(response)
    }

    pub(super) fn debug_assert_invariants(&self, event_responses_max: usize) {
        let count = |want: Slot| self.outbox.iter().filter(|(_, s)| *s == want).count();
        debug_assert_eq!(self.event_responses, count(Slot::Event));
        debug_assert_eq!(self.control_responses, count(Slot::Control));
        debug_assert!(self.event_responses <= event_responses_max);
        debug_assert!(self.unsynced <= self.watch_ids.len());
        debug_assert!(!self.progress_pending || self.unsynced > 0);
        debug_assert!(self.next_auto_id >= 0);
        // A fragmented response is queued whole: pieces are followed by their last piece.
        debug_assert!(self.outbox.back().is_none_or(|(r, _)| !r.fragment));
        for ((a, slot), (b, _)) in self.outbox.iter().zip(self.outbox.iter().skip(1)) {
            debug_assert!(*slot != Slot::Piece || (a.fragment && b.watch_id == a.watch_id));
        }
    }
}
