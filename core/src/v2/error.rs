//! The v2 API's errors: etcd's numbered codes, their fixed messages, the cause (a key, or what
//! failed to compare) and the store index at the time.

use thiserror::Error;

/// Key not found.
pub const KEY_NOT_FOUND: u16 = 100;
/// A compare-and-swap or compare-and-delete did not match.
pub const TEST_FAILED: u16 = 101;
/// The node is a directory where a file was needed.
pub const NOT_FILE: u16 = 102;
/// The node is a file where a directory was needed.
pub const NOT_DIR: u16 = 104;
/// The key exists (a create).
pub const NODE_EXIST: u16 = 105;
/// The root cannot be written.
pub const ROOT_READ_ONLY: u16 = 107;
/// A directory delete without `recursive` on a directory with children.
pub const DIR_NOT_EMPTY: u16 = 108;
/// The request lacks credentials the v2 auth would need.
pub const UNAUTHORIZED: u16 = 110;
/// `prevValue` given empty.
pub const PREV_VALUE_REQUIRED: u16 = 201;
/// `ttl` is not a number.
pub const TTL_NAN: u16 = 202;
/// `prevIndex` or `waitIndex` is not a number.
pub const INDEX_NAN: u16 = 203;
/// A flag is not a boolean, or is used where it cannot be.
pub const INVALID_FIELD: u16 = 209;
/// The form could not be read.
pub const INVALID_FORM: u16 = 210;
/// A refresh carried a value.
pub const REFRESH_VALUE: u16 = 211;
/// A refresh without a TTL.
pub const REFRESH_TTL_REQUIRED: u16 = 212;
/// The cluster could not commit the request.
pub const RAFT_INTERNAL: u16 = 300;
/// The cluster has no leader.
pub const LEADER_ELECT: u16 = 301;
/// A watch asked for an index older than the event history holds.
pub const EVENT_INDEX_CLEARED: u16 = 401;

/// A v2 error as etcd's v2 API sends it: `{"errorCode","message","cause","index"}`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{code}: {} ({cause}) [{index}]", message(*code))]
pub struct V2Error {
    /// etcd's error code.
    pub code: u16,
    /// The key or the failed comparison; may be empty.
    pub cause: String,
    /// The store's index when the error happened (0 for a malformed request).
    pub index: u64,
}

impl V2Error {
    /// An error at store index `index`.
    pub fn new(code: u16, cause: impl Into<String>, index: u64) -> V2Error {
        V2Error {
            code,
            cause: cause.into(),
            index,
        }
    }

    /// A malformed request's error (index 0, as etcd reports it).
    pub fn request(code: u16, cause: impl Into<String>) -> V2Error {
        V2Error::new(code, cause, 0)
    }

    /// The code's fixed message.
    pub fn message(&self) -> &'static str {
        message(self.code)
    }

    /// The HTTP status etcd answers the code with.
    pub fn http_status(&self) -> u16 {
        match self.code {
            KEY_NOT_FOUND => 404,
            NOT_FILE | DIR_NOT_EMPTY => 403,
            UNAUTHORIZED => 401,
            TEST_FAILED | NODE_EXIST => 412,
            RAFT_INTERNAL | LEADER_ELECT => 500,
            _ => 400,
        }
    }
}

/// etcd's message for an error code.
pub fn message(code: u16) -> &'static str {
    match code {
        100 => "Key not found",
        101 => "Compare failed",
        102 => "Not a file",
        103 => "Reached the max number of peers in the cluster",
        104 => "Not a directory",
        105 => "Key already exists",
        106 => "The prefix of given key is a keyword in etcd",
        107 => "Root is read only",
        108 => "Directory not empty",
        109 => "Peer address has existed",
        110 => "The request requires user authentication",
        200 => "Value is Required in POST form",
        201 => "PrevValue is Required in POST form",
        202 => "The given TTL in POST form is not a number",
        203 => "The given index in POST form is not a number",
        204 => "Value or TTL is required in POST form",
        205 => "The given timeout in POST form is not a number",
        206 => "Name is required in POST form",
        207 => "Index or value is required",
        208 => "Index and value cannot both be specified",
        209 => "Invalid field",
        210 => "Invalid POST form",
        211 => "Value provided on refresh",
        212 => "A TTL must be provided on refresh",
        300 => "Raft Internal Error",
        301 => "During Leader Election",
        400 => "watcher is cleared due to etcd recovery",
        401 => "The event in requested index is outdated and cleared",
        500 => "Client Internal Error",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_messages_are_etcds() {
        let e = V2Error::new(KEY_NOT_FOUND, "/foo", 7);
        assert_eq!((e.http_status(), e.message()), (404, "Key not found"));
        assert_eq!(e.to_string(), "100: Key not found (/foo) [7]");
        assert_eq!(V2Error::request(TTL_NAN, "").http_status(), 400);
        assert_eq!(V2Error::request(EVENT_INDEX_CLEARED, "").http_status(), 400);
        assert_eq!(V2Error::request(NODE_EXIST, "").http_status(), 412);
        assert_eq!(V2Error::request(DIR_NOT_EMPTY, "").http_status(), 403);
    }
}
