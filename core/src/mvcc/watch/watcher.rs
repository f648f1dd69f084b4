//! One watcher: what it watches and how it wants it (filters, `prev_kv`, fragments), and
//! where it stands (its next revision, synced or not). It shapes events into responses; the
//! indexes it sits in and the streams it answers on belong to [`super::Watchers`].

use super::{StreamId, WatchFilters, WatchResponse};
use crate::mvcc::kv::{Event, in_range};
use bytes::Bytes;

#[derive(Debug)]
pub(super) struct Watcher {
    pub(super) stream: StreamId,
    pub(super) watch_id: i64,
    /// Never empty (an empty request key became `"\0"`).
    pub(super) key: Bytes,
    pub(super) range_end: Bytes,
    pub(super) filters: WatchFilters,
    pub(super) prev_kv: bool,
    pub(super) fragment: bool,
    pub(super) progress_notify: bool,
    /// The lowest revision whose events it has not been handed. Exact while unsynced. For a
    /// synced watcher it only grows when it gets events, since `notify` touches just the
    /// watchers a write matches: there it is the revision below which events are skipped (a
    /// start revision in the future).
    pub(super) next_revision: i64,
    pub(super) synced: bool,
    /// It got events since the last progress tick.
    pub(super) events_since_tick: bool,
}

impl Watcher {
    pub(super) fn matches(&self, event: &Event) -> bool {
        in_range(&event.kv.key, &self.key, &self.range_end) && self.filters.pass(event)
    }

    /// The event as this watcher receives it: without `prev_kv` unless it asked.
    pub(super) fn shape(&self, event: &Event) -> Event {
        let mut event = event.clone();
        if !self.prev_kv {
            event.prev_kv = None;
        }
        event
    }

    /// The responses carrying `events`: one, or pieces when it asked for fragments and they
    /// exceed `bytes_max` (each piece as many events as fit, at least one).
    pub(super) fn pieces(
        &self,
        header_revision: i64,
        events: Vec<Event>,
        bytes_max: usize,
    ) -> Vec<WatchResponse> {
        debug_assert!(!events.is_empty());
        let bytes: usize = events.iter().map(Event::size_bytes).sum();
        if !self.fragment || bytes <= bytes_max {
            return vec![WatchResponse::events(
                self.watch_id,
                header_revision,
                events,
            )];
        }
        let mut pieces = Vec::new();
        let (mut piece, mut piece_bytes) = (Vec::new(), 0);
        for event in events {
            let size = event.size_bytes();
            if !piece.is_empty() && piece_bytes + size > bytes_max {
                let full = std::mem::take(&mut piece);
                pieces.push(WatchResponse::events(self.watch_id, header_revision, full));
                piece_bytes = 0;
            }
            piece_bytes += size;
            piece.push(event);
        }
        pieces.push(WatchResponse::events(self.watch_id, header_revision, piece));
        let count = pieces.len();
        for p in &mut pieces[..count - 1] {
            p.fragment = true;
        }
        pieces
    }

    /// Splits a watcher's events of `window` into responses of whole revisions, each at most
    /// `bytes_max` unless one revision alone exceeds it.
    pub(super) fn batches(&self, window: &[Event], bytes_max: usize) -> Vec<Batch> {
        let mut batches: Vec<Batch> = Vec::new();
        for revision in window.chunk_by(|a, b| a.revision() == b.revision()) {
            let events: Vec<Event> = revision
                .iter()
                .filter(|e| self.matches(e))
                .map(|e| self.shape(e))
                .collect();
            let Some(first) = events.first() else {
                continue;
            };
            let first_revision = first.revision();
            let bytes: usize = events.iter().map(Event::size_bytes).sum();
            match batches.last_mut() {
                Some(batch) if batch.bytes + bytes <= bytes_max => {
                    batch.events.extend(events);
                    batch.bytes += bytes;
                }
                _ => batches.push(Batch {
                    events,
                    bytes,
                    first_revision,
                }),
            }
        }
        batches
    }
}

/// Whole revisions of a catch-up that travel in one response.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) events: Vec<Event>,
    pub(super) bytes: usize,
    pub(super) first_revision: i64,
}
