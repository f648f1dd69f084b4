use std::fmt;

/// Why bytes could not be read as a bbolt database or as etcd's backend. Every variant is bad
/// input (a damaged or foreign file), never a misuse of the API.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Neither meta page is valid (magic, version, page size or FNV-64a checksum).
    #[error("bbolt: invalid database: {0}")]
    NoValidMeta(&'static str),
    /// A page or an element points outside the file or its page, or pages are shared.
    #[error("bbolt: page {page}: {what}")]
    Corrupt {
        /// The page that is wrong.
        page: u64,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A bucket holds a nested bucket, which etcd never writes and [`crate::bbolt::Db`] cannot hold.
    #[error("bbolt: bucket {bucket:?} holds nested bucket {key:?}")]
    NestedBucket {
        /// The outer bucket's name.
        bucket: Vec<u8>,
        /// The nested bucket's name.
        key: Vec<u8>,
    },
    /// The SHA-256 trailer does not match the database before it (etcd's wording).
    #[error("expected sha256 {}, got {}", GoBytes(expected), GoBytes(got))]
    HashMismatch {
        /// The trailer.
        expected: [u8; 32],
        /// The hash of the bytes before it.
        got: [u8; 32],
    },
    /// A key or value in one of etcd's buckets is not what etcd writes there.
    #[error("etcd backend: bucket {bucket:?} key {key:?}: {what}")]
    BadEntry {
        /// The bucket's name.
        bucket: String,
        /// The key, as bytes.
        key: Vec<u8>,
        /// What is wrong.
        what: String,
    },
}

/// Crate-wide result.
pub type Result<T> = std::result::Result<T, Error>;

/// Bytes as Go's `%v` prints a `[]byte`: `[1 2 3]`.
struct GoBytes<'a>(&'a [u8]);

impl fmt::Display for GoBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b}")?;
        }
        f.write_str("]")
    }
}
