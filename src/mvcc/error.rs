//! Operating errors of the MVCC store. Each names one etcd error; the API edge maps it to
//! etcd's gRPC code and message (the text here is that message without "etcdserver: ").

use super::backend::BackendError;
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A read or watch asked for history at or below the compaction point.
    #[error("mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    /// A read or compaction asked for a revision the store has not reached.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision { current_revision: i64 },
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
    #[error("too many operations in txn request")]
    TooManyTxnOps { ops_max: usize },
    /// Two writes to overlapping keys in one transaction.
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// A put names a lease that does not exist.
    #[error("requested lease not found")]
    LeaseNotFound { lease: i64 },
    /// The backend failed or returned something impossible: the member must stop serving.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

pub type Result<T> = std::result::Result<T, Error>;
