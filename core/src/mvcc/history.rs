//! What a watcher needs from the store: the current and compacted revisions, and the events
//! of a window of past revisions, read in bounded batches so a watcher that fell behind
//! catches up without holding up writers.

use super::error::Result;
use super::kv::Event;

/// The store's history as the watchers read it; [`KvStore`](super::KvStore) implements it.
pub trait History {
    /// The revision of the latest write (0 before the first).
    fn current_revision(&self) -> i64;

    /// The revision the store was last compacted at (0 if never): history below it is gone,
    /// except the versions live at it.
    fn compact_revision(&self) -> i64;

    /// The events of revisions `from_revision..=to_revision`, in order of (revision,
    /// sub-revision), each with `prev_kv` filled when the key had a live version before it.
    /// Stops after the first revision that brings the count to `events_max` or more, so a
    /// revision is never split: returns the events and the last revision included (`to_revision`
    /// when everything fit). `from_revision < compact_revision` is [`Error::Compacted`]: as in
    /// etcd, a watch may start at the compact revision itself; unlike etcd's, its history is
    /// complete (deletes at that revision and every prev_kv included).
    ///
    /// [`Error::Compacted`]: super::Error::Compacted
    fn events(
        &self,
        from_revision: i64,
        to_revision: i64,
        events_max: usize,
    ) -> Result<(Vec<Event>, i64)>;
}
