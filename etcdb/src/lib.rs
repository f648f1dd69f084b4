//! etcd's backend database format: the bbolt file that `etcdctl snapshot save` writes (and
//! that a member keeps as `member/snap/db`), read into plain values and written back.
//!
//! What this crate does not do: it opens no file, socket or clock, and starts nothing. The
//! caller reads the bytes and hands them in ([`etcd::decode`], [`bbolt::read`]), or takes the
//! bytes out ([`etcd::encode`], [`bbolt::write`]) and writes them where it wants. It does not
//! restore a member (no WAL, no raft snapshot, no v2 store): `etcdctl snapshot restore` does
//! that from the file this crate writes. It keeps no bbolt database open and updates nothing in
//! place: every write is a whole new, compact file.
//!
//! Two layers:
//! - [`bbolt`]: a database as top-level buckets of plain keys and values; the page format
//!   (meta pages, freelist, branch, leaf and overflow pages) of Go's go.etcd.io/bbolt.
//! - [`etcd`]: etcd 3.4/3.5's buckets on top (`key`, `meta`, `lease`, `members`, `auth`, ...),
//!   the SHA-256 trailer of a snapshot and what `etcdctl snapshot status` prints.
#![deny(missing_docs, unreachable_pub)]

pub mod bbolt;
mod error;
pub mod etcd;

pub use error::{Error, Result};
