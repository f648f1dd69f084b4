//! Operating errors of the lessor. Each names one etcd error; the API edge maps it to etcd's
//! gRPC code and message (the text here is that message without "etcdserver: "). Misuse of the
//! API (lease ID 0 reaching apply, a clock running backwards) is an assertion instead.

use super::LeaseId;
use thiserror::Error;

// Not `#[non_exhaustive]`: the API edge maps every variant to etcd's code and message, and a
// new variant must make it choose one.
/// A lease operation that failed, one variant per etcd error.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Error {
    /// No such lease, or (for a keep-alive) one whose expiry has passed and whose revoke is on
    /// its way. Keep-alive answers it with TTL 0, time-to-live with TTL -1.
    #[error("requested lease not found")]
    NotFound {
        /// The lease asked for.
        id: LeaseId,
    },
    /// A grant named an ID that is in use.
    #[error("lease already exists")]
    Exists {
        /// The lease ID asked for.
        id: LeaseId,
    },
    /// A grant asked for more than `ttl_max_s` seconds.
    #[error("too large lease TTL")]
    TtlTooLarge {
        /// The TTL asked for, in seconds.
        ttl_s: i64,
        /// The largest TTL granted, in seconds.
        ttl_max_s: i64,
    },
    /// A keep-alive or time-to-live reached a lessor that is not the leader's; the server
    /// forwards it to the leader.
    #[error("not a primary lessor")]
    NotPrimary,
}

/// The lessor's result type.
pub type Result<T> = std::result::Result<T, Error>;
