//! etcd's gRPC errors: the code and message a client sees for each operating error.
//!
//! It owns the mapping from the core's typed errors ([`mvcc::Error`], [`lease::Error`],
//! [`ApplyError`]) to a [`Status`], and the text of the errors only the server raises
//! ([`ServerError`]). Every message is "etcdserver: " followed by the error's `Display` text,
//! so each text is written once, next to its variant; clients (etcdctl, clientv3, Kubernetes)
//! match on code and text, which follow etcd 3.4's `rpctypes` table. What it does not do: decide
//! when an error happens, or retry.

use crate::auth::AuthError;
use crate::lease;
use crate::mvcc;
use crate::node::ApplyError;
pub use crate::server::error::{Error, ServerError};
use std::fmt::Display;
use tonic::{Code, Status};

/// The prefix of every message etcd's server sends with an error.
pub const MESSAGE_PREFIX: &str = "etcdserver: ";

impl ServerError {
    pub fn code(self) -> Code {
        match self {
            ServerError::NoLeader
            | ServerError::LeaderChanged
            | ServerError::Timeout
            | ServerError::Stopped
            | ServerError::NotSupportedForLearner => Code::Unavailable,
            ServerError::NotLeader
            | ServerError::MemberExists
            | ServerError::PeerUrlExists
            | ServerError::NotEnoughStartedMembers
            | ServerError::MemberNotLearner
            | ServerError::LearnerNotReady
            | ServerError::TooManyLearners
            | ServerError::BadLeaderTransferee => Code::FailedPrecondition,
            ServerError::TooManyRequests | ServerError::NoSpace => Code::ResourceExhausted,
            ServerError::RequestTooLarge
            | ServerError::MemberBadUrls
            | ServerError::InvalidSortOption
            | ServerError::InvalidCompareOption
            | ServerError::TxnNestedTooDeep { .. } => Code::InvalidArgument,
            ServerError::MemberNotFound => Code::NotFound,
            ServerError::Corrupt => Code::DataLoss,
        }
    }

    /// The status the client receives.
    pub fn status(self) -> Status {
        status(self.code(), self)
    }
}

/// The status for a store error.
///
/// The watch errors normally travel as a failed create's `cancel_reason` instead; they have a
/// code here too so that the mapping is total. A backend failure is `Internal`: the member
/// stops serving after it (`ApplyError::is_storage`), and its own disk failing says nothing
/// about the cluster's data, which etcd's `DataLoss` ("corrupt cluster", members disagreeing)
/// would claim.
pub fn mvcc_status(e: &mvcc::Error) -> Status {
    use mvcc::Error as E;
    let code = match e {
        E::Compacted { .. } | E::FutureRevision { .. } => Code::OutOfRange,
        E::KeyNotProvided
        | E::KeyNotFound
        | E::ValueProvided
        | E::LeaseProvided
        | E::TooManyTxnOps { .. }
        | E::DuplicateKey
        | E::WatchIdDuplicate { .. }
        | E::WatchRangeEmpty
        | E::WatchIdNegative { .. }
        | E::WatchRevisionNegative { .. } => Code::InvalidArgument,
        E::LeaseNotFound { .. } => Code::NotFound,
        E::WatchersFull { .. } | E::WatchStreamFull { .. } => Code::ResourceExhausted,
        E::Backend(_) | E::WatchConfigInvalid { .. } => Code::Internal,
    };
    status(code, e)
}

/// The status for a lessor error.
///
/// `NotPrimary` means a keep-alive or time-to-live reached a member whose lessor is not the
/// leader's. etcd never shows its own `ErrNotPrimary` to a client: the member forwards the
/// request to the leader and, when that fails until the request's deadline, answers "request
/// timed out" (Unavailable, which clients retry). So does this mapping, for a server that could
/// not forward.
pub fn lease_status(e: &lease::Error) -> Status {
    use lease::Error as E;
    match e {
        E::NotFound { .. } => status(Code::NotFound, e),
        E::Exists { .. } => status(Code::FailedPrecondition, e),
        E::TtlTooLarge { .. } => status(Code::OutOfRange, e),
        E::NotPrimary => ServerError::Timeout.status(),
    }
}

/// The status for an error the server's facade answered.
pub fn facade_status(e: &Error) -> Status {
    match e {
        Error::Server(e) => e.status(),
        Error::Mvcc(e) => mvcc_status(e),
        Error::Lease(e) => lease_status(e),
        Error::Apply(e) => apply_status(e),
        Error::Raft(e) => Status::failed_precondition(format!("{MESSAGE_PREFIX}{e}")),
        Error::Internal(message) => Status::internal(message.clone()),
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        facade_status(&e)
    }
}

/// The status for a command that failed to apply.
pub fn apply_status(e: &ApplyError) -> Status {
    match e {
        ApplyError::Mvcc(e) => mvcc_status(e),
        ApplyError::Lease(e) => lease_status(e),
        ApplyError::NoSpace => ServerError::NoSpace.status(),
        ApplyError::Corrupt => ServerError::Corrupt.status(),
        ApplyError::Auth(e) => auth_status(e),
        // Only the v2 API proposes v2 commands, and it answers their errors itself.
        ApplyError::V2(e) => Status::unknown(e.to_string()),
        ApplyError::V2Auth(e) => Status::unknown(e.to_string()),
    }
}

/// The status for an auth error: etcd's `rpctypes` code and message (its own words, not the
/// auth store's), or, for the few errors etcd leaves out of that table, `Unknown` with the
/// store's text as etcd sends it.
pub fn auth_status(e: &AuthError) -> Status {
    use AuthError as E;
    let (code, message) = match e {
        E::RootUserNotExist => (Code::FailedPrecondition, "root user does not exist"),
        E::RootRoleNotExist => (
            Code::FailedPrecondition,
            "root user does not have root role",
        ),
        E::UserAlreadyExist => (Code::FailedPrecondition, "user name already exists"),
        E::UserEmpty => (Code::InvalidArgument, "user name is empty"),
        E::UserNotFound => (Code::FailedPrecondition, "user name not found"),
        E::RoleAlreadyExist => (Code::FailedPrecondition, "role name already exists"),
        E::RoleNotFound => (Code::FailedPrecondition, "role name not found"),
        E::RoleEmpty => (Code::InvalidArgument, "role name is empty"),
        E::AuthFailed => (
            Code::InvalidArgument,
            "authentication failed, invalid user ID or password",
        ),
        E::PermissionDenied => (Code::PermissionDenied, "permission denied"),
        E::RoleNotGranted => (Code::FailedPrecondition, "role is not granted to the user"),
        E::PermissionNotGranted => (
            Code::FailedPrecondition,
            "permission is not granted to the role",
        ),
        E::AuthNotEnabled => (Code::FailedPrecondition, "authentication is not enabled"),
        E::InvalidAuthToken => (Code::Unauthenticated, "invalid auth token"),
        E::InvalidAuthMgmt => (Code::InvalidArgument, "invalid auth management"),
        E::AuthOldRevision => (Code::InvalidArgument, "revision of auth store is old"),
        E::NoPasswordUser => return Status::unknown(e.to_string()),
    };
    status(code, message)
}

fn status(code: Code, message: impl Display) -> Status {
    Status::new(code, format!("{MESSAGE_PREFIX}{message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::BackendError;

    fn check(s: Status, code: Code, message: &str) {
        assert_eq!((s.code(), s.message()), (code, message));
    }

    #[test]
    fn server_errors_have_etcds_codes_and_messages() {
        use Code::*;
        use ServerError as S;
        let table = [
            (S::NoLeader, Unavailable, "etcdserver: no leader"),
            (S::NotLeader, FailedPrecondition, "etcdserver: not leader"),
            (S::LeaderChanged, Unavailable, "etcdserver: leader changed"),
            (S::Timeout, Unavailable, "etcdserver: request timed out"),
            (S::Stopped, Unavailable, "etcdserver: server stopped"),
            (
                S::TooManyRequests,
                ResourceExhausted,
                "etcdserver: too many requests",
            ),
            (
                S::RequestTooLarge,
                InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                S::NoSpace,
                ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (S::Corrupt, DataLoss, "etcdserver: corrupt cluster"),
            (S::MemberNotFound, NotFound, "etcdserver: member not found"),
            (
                S::MemberExists,
                FailedPrecondition,
                "etcdserver: member ID already exist",
            ),
            (
                S::PeerUrlExists,
                FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (
                S::MemberBadUrls,
                InvalidArgument,
                "etcdserver: given member URLs are invalid",
            ),
            (
                S::NotEnoughStartedMembers,
                FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            (
                S::MemberNotLearner,
                FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            (
                S::LearnerNotReady,
                FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                S::TooManyLearners,
                FailedPrecondition,
                "etcdserver: too many learner members in cluster",
            ),
            (
                S::NotSupportedForLearner,
                Unavailable,
                "etcdserver: rpc not supported for learner",
            ),
            (
                S::BadLeaderTransferee,
                FailedPrecondition,
                "etcdserver: bad leader transferee",
            ),
            (
                S::InvalidSortOption,
                InvalidArgument,
                "etcdserver: invalid sort option",
            ),
            (
                S::InvalidCompareOption,
                InvalidArgument,
                "etcdserver: invalid compare option",
            ),
            (
                S::TxnNestedTooDeep { depth_max: 64 },
                InvalidArgument,
                "etcdserver: txn request nested deeper than 64 levels",
            ),
        ];
        for (e, code, message) in table {
            assert_eq!(e.code(), code, "{e:?}");
            check(e.status(), code, message);
        }
    }

    #[test]
    fn mvcc_errors_have_etcds_codes_and_messages() {
        use Code::*;
        use mvcc::Error as E;
        let table = [
            (
                E::Compacted {
                    compact_revision: 5,
                },
                OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                E::FutureRevision {
                    current_revision: 5,
                },
                OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                E::KeyNotProvided,
                InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (E::KeyNotFound, InvalidArgument, "etcdserver: key not found"),
            (
                E::ValueProvided,
                InvalidArgument,
                "etcdserver: value is provided",
            ),
            (
                E::LeaseProvided,
                InvalidArgument,
                "etcdserver: lease is provided",
            ),
            (
                E::TooManyTxnOps { ops_max: 128 },
                InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                E::DuplicateKey,
                InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                E::LeaseNotFound { lease: 7 },
                NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                E::Backend(BackendError("disk on fire".into())),
                Internal,
                "etcdserver: backend: disk on fire",
            ),
            (
                E::WatchIdDuplicate { watch_id: 3 },
                InvalidArgument,
                "etcdserver: mvcc: duplicate watch ID provided on the WatchStream",
            ),
            (
                E::WatchRangeEmpty,
                InvalidArgument,
                "etcdserver: mvcc: watcher range is empty",
            ),
            (
                E::WatchIdNegative { watch_id: -2 },
                InvalidArgument,
                "etcdserver: mvcc: watch ID must not be negative",
            ),
            (
                E::WatchRevisionNegative { start_revision: -1 },
                InvalidArgument,
                "etcdserver: mvcc: watch start revision must not be negative",
            ),
            (
                E::WatchersFull { watchers_max: 10 },
                ResourceExhausted,
                "etcdserver: mvcc: too many watchers on the WatchStream",
            ),
            (
                E::WatchStreamFull {
                    control_responses_max: 10,
                },
                ResourceExhausted,
                "etcdserver: mvcc: watch stream has too many undelivered control responses",
            ),
            (
                E::WatchConfigInvalid { why: "zero" },
                Internal,
                "etcdserver: mvcc: invalid watch configuration: zero",
            ),
        ];
        for (e, code, message) in table {
            check(mvcc_status(&e), code, message);
            check(apply_status(&ApplyError::Mvcc(e)), code, message);
        }
    }

    #[test]
    fn lease_errors_have_etcds_codes_and_messages() {
        use Code::*;
        use lease::Error as E;
        let table = [
            (
                E::NotFound { id: 1 },
                NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                E::Exists { id: 1 },
                FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                E::TtlTooLarge {
                    ttl_s: 10_000_000_000,
                    ttl_max_s: 9_000_000_000,
                },
                OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (E::NotPrimary, Unavailable, "etcdserver: request timed out"),
        ];
        for (e, code, message) in table {
            check(lease_status(&e), code, message);
            check(apply_status(&ApplyError::Lease(e)), code, message);
        }
    }
}
