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
//!
//! Facts measured with etcd 3.4.23 and 3.5.1 (tests/etcd_accepts.rs, tests/fixtures.rs):
//! - Both open what [`etcd::encode`] writes: `snapshot status` prints [`etcd::status`], and
//!   `snapshot restore` then `etcd` serve its keys, revisions, compaction, leases and users.
//! - Restore rewrites `meta`: `consistent_index` becomes the number of members restored (the
//!   raft index of their conf changes), so the value in the file does not matter; 3.5 also
//!   sets `term` to 1, empties `members`/`members_removed` and adds the restored members.
//!   3.4's restore leaves those two buckets as they were (its trim deletes keys of the `key`
//!   bucket named like member ids instead, a quirk of its code).
//! - etcd inlines small buckets in its own files (5 pages for a near-empty member); ours never
//!   inline, so our file of the same contents is larger but hashes the same in `status`.
//! - bbolt v1.3.6 (both versions) accepts a meta page whose checksum field is 0 as unchecked;
//!   [`bbolt::read`] does not (bbolt never writes 0).
#![deny(missing_docs, unreachable_pub)]

pub mod bbolt;
mod error;
pub mod etcd;

pub use error::{Error, Result};
