//! What a client sends and receives on a watch stream, field for field as etcd's
//! `WatchCreateRequest` and `WatchResponse`; the API edge converts to and from the wire.

use crate::mvcc::kv::{Event, EventKind};
use bytes::Bytes;

/// The watch id a create passes to let the server choose (etcd's `AutoWatchID`).
pub const AUTO_WATCH_ID: i64 = 0;

/// The watch id of stream-wide progress responses and of failed creates (etcd's
/// `InvalidWatchID`).
pub const INVALID_WATCH_ID: i64 = -1;

/// Which events a watcher does not want (`WatchCreateRequest.filters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchFilters {
    /// NOPUT: drop put events.
    pub no_put: bool,
    /// NODELETE: drop delete events.
    pub no_delete: bool,
}

impl WatchFilters {
    pub(super) fn pass(&self, event: &Event) -> bool {
        match event.kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        }
    }
}

/// A watch create request, as `WatchCreateRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchCreate {
    /// The key, or the start of the range; empty means `"\0"`, the smallest key, as in etcd.
    pub key: Bytes,
    /// Empty: the single key; `"\0"`: every key from `key` on; otherwise `[key, range_end)`.
    pub range_end: Bytes,
    /// The first revision wanted: 0 means the next write; below the compaction point the watch
    /// is canceled with `compact_revision` right after it is created (at it, as in etcd, the
    /// watch is served).
    pub start_revision: i64,
    /// Send empty progress responses when the watcher gets no events for a while.
    pub progress_notify: bool,
    /// Which kinds of events the watcher drops.
    pub filters: WatchFilters,
    /// Include each event's previous key-value.
    pub prev_kv: bool,
    /// [`AUTO_WATCH_ID`] lets the server choose.
    pub watch_id: i64,
    /// Allow a revision's events to be split over several responses when they are too large.
    pub fragment: bool,
}

/// A response for the client, as `WatchResponse` (the header carries only the revision; the
/// API edge adds cluster id, member id and term).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The store's revision the response reflects (the header's revision).
    pub header_revision: i64,
    /// The watcher it is for, or [`INVALID_WATCH_ID`] for a stream-wide progress response
    /// or a failed create.
    pub watch_id: i64,
    /// This response confirms the watch's creation.
    pub created: bool,
    /// The watch is canceled; no more responses follow for it.
    pub canceled: bool,
    /// Set (with `canceled`) when history the watcher needed was compacted.
    pub compact_revision: i64,
    /// Why the watch was canceled, for the client.
    pub cancel_reason: String,
    /// More pieces of this revision's events follow.
    pub fragment: bool,
    /// The events, in revision order; empty for a progress or create/cancel response.
    pub events: Vec<Event>,
}

impl WatchResponse {
    /// An event response, or a progress response when `events` is empty.
    pub(super) fn events(watch_id: i64, header_revision: i64, events: Vec<Event>) -> WatchResponse {
        WatchResponse {
            header_revision,
            watch_id,
            events,
            ..WatchResponse::default()
        }
    }
}
