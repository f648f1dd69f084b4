//! Operating errors of the MVCC store. Each names one etcd error; the API edge maps it to
//! etcd's gRPC code and message (the text here is that message without "etcdserver: ").
//! The watch errors are the `cancel_reason` text of a failed watch create, as etcd words it;
//! those marked "oxcd's own" have no etcd counterpart.

use super::backend::BackendError;
use thiserror::Error;

// Not `#[non_exhaustive]`: the API edge maps every variant to etcd's code and message, and a
// new variant must make it choose one.
/// An MVCC or watch operation that failed, one variant per etcd error.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Error {
    /// A read or watch asked for history at or below the compaction point.
    #[error("mvcc: required revision has been compacted")]
    Compacted {
        /// The revision the store is compacted at.
        compact_revision: i64,
    },
    /// A read or compaction asked for a revision the store has not reached.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision {
        /// The store's current revision.
        current_revision: i64,
    },
    /// A request with an empty key.
    #[error("key is not provided")]
    KeyNotProvided,
    /// `ignore_value` or `ignore_lease` on a key that has no live version.
    #[error("key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("lease is provided")]
    LeaseProvided,
    /// A transaction with more compares or operations in one branch than `--max-txn-ops`.
    #[error("too many operations in txn request")]
    TooManyTxnOps {
        /// The limit exceeded.
        ops_max: usize,
    },
    /// Two writes to overlapping keys in one transaction.
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// A put names a lease that does not exist.
    #[error("requested lease not found")]
    LeaseNotFound {
        /// The lease ID the put named.
        lease: i64,
    },
    /// The backend failed or returned something impossible: the member must stop serving.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A watch create named a watch id another watcher of the stream holds.
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    WatchIdDuplicate {
        /// The ID asked for.
        watch_id: i64,
    },
    /// A watch create whose `range_end` (neither empty nor `"\0"`) is not above its key.
    #[error("mvcc: watcher range is empty")]
    WatchRangeEmpty,
    /// oxcd's own: negative watch ids are not the client's to choose, since -1 marks
    /// stream-wide progress and failed creates (etcd would accept one and get confused).
    #[error("mvcc: watch ID must not be negative")]
    WatchIdNegative {
        /// The ID asked for.
        watch_id: i64,
    },
    /// oxcd's own: a negative start revision names no point in history.
    #[error("mvcc: watch start revision must not be negative")]
    WatchRevisionNegative {
        /// The revision asked for.
        start_revision: i64,
    },
    /// oxcd's own: the stream holds `watchers_per_stream_max` watchers already.
    #[error("mvcc: too many watchers on the WatchStream")]
    WatchersFull {
        /// The limit reached.
        watchers_max: usize,
    },
    /// oxcd's own, and never sent to a client: the stream's undelivered control responses
    /// reached `control_responses_max`. Nothing was done; the driver drains the stream and
    /// stops reading that client's requests meanwhile (etcd's receive loop blocks instead).
    #[error("mvcc: watch stream has too many undelivered control responses")]
    WatchStreamFull {
        /// The limit reached.
        control_responses_max: usize,
    },
    /// oxcd's own: a `WatchConfig` limit out of its documented bounds.
    #[error("mvcc: invalid watch configuration: {why}")]
    WatchConfigInvalid {
        /// Which limit, and what bound it breaks.
        why: &'static str,
    },
}

/// The MVCC store's result type.
pub type Result<T> = std::result::Result<T, Error>;
