//! A bbolt database (Go's go.etcd.io/bbolt, the format etcd keeps its backend in) as plain
//! values: top-level buckets of byte keys and byte values.
//!
//! Owns: the page format (meta pages with their FNV-64a checksum, freelist, branch, leaf and
//! overflow pages, inline buckets on read), [`read()`] and [`write()`]. Does not own: transactions,
//! a free-page allocator, updates in place, bucket sequences (read as-is, written as 0), nested
//! buckets (etcd has none: [`read()`] refuses them with [`crate::Error::NestedBucket`]) or any IO.
//!
//! [`write()`] always writes page size [`PAGE_SIZE`], a compact file without free pages: meta
//! pages 0 and 1, an empty freelist on page 2, each bucket's tree, then the root bucket's tree.
//! Buckets are never inlined, so every bucket has its own root page, as in etcd's own files.

mod read;
mod write;

use std::collections::BTreeMap;

pub use read::{layout, read, read_with_layout};
pub use write::write;

/// The page size [`write()`] uses (etcd's on Linux/amd64).
pub const PAGE_SIZE: usize = 4096;

/// Whether `bytes` start as a bbolt file: page 0 is a meta page carrying bbolt's magic number.
/// A quick look to tell formats apart, not a check: [`read()`] checks.
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes
        .get(PAGE_HEADER_LEN..PAGE_HEADER_LEN + 4)
        .is_some_and(|m| u32::from_le_bytes(m.try_into().expect("4 bytes")) == MAGIC)
}

/// A database: its top-level buckets by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Db {
    /// The top-level buckets, by name.
    pub buckets: BTreeMap<Vec<u8>, Bucket>,
}

/// One bucket's keys and values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket's keys and values (keys non-empty, as bbolt requires).
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// What [`read()`] learnt about a file besides its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The page size recorded in the meta page.
    pub page_size: u32,
    /// Pages in use (the meta page's high-water mark): the database's size is this times the
    /// page size, which is also what etcd's `snapshot status` reports as the size.
    pub page_count: u64,
    /// The transaction id of the meta page that was chosen.
    pub txid: u64,
}

impl Layout {
    /// The database's size in bytes (page count × page size).
    pub fn size_bytes(&self) -> u64 {
        self.page_count * u64::from(self.page_size)
    }
}

// The page format, as Go's bbolt lays it out (little-endian on every platform etcd ships).
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER_LEN: usize = 16;
const ELEMENT_LEN: usize = 16;
const BUCKET_HEADER_LEN: usize = 16;
/// Meta fields before the checksum, which covers exactly them.
const META_SUMMED_LEN: usize = 56;
const FLAG_BRANCH: u16 = 0x01;
const FLAG_LEAF: u16 = 0x02;
const FLAG_META: u16 = 0x04;
const FLAG_FREELIST: u16 = 0x10;
/// A leaf element whose value is a bucket header.
const LEAF_FLAG_BUCKET: u32 = 0x01;
/// A meta page's freelist id when the freelist is not synced to disk.
const NO_FREELIST: u64 = u64::MAX;
/// A freelist whose count does not fit the header's u16 keeps it in its first u64.
const FREELIST_COUNT_IN_BODY: u16 = 0xFFFF;

/// FNV-1a, 64 bits: the meta page checksum.
fn fnv64a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv64a_matches_known_vectors() {
        assert_eq!(fnv64a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv64a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}

#[cfg(test)]
mod nested_tests {
    use super::*;

    #[test]
    fn a_nested_bucket_is_refused() {
        let mut db = Db::default();
        let bucket = Bucket {
            entries: BTreeMap::from([(b"inner".to_vec(), vec![0; BUCKET_HEADER_LEN])]),
        };
        db.buckets.insert(b"outer".to_vec(), bucket);
        let mut bytes = write(&db);
        // Page 3 is the bucket's leaf (after the metas and the freelist): mark its element a bucket.
        let flags_at = 3 * PAGE_SIZE + PAGE_HEADER_LEN;
        bytes[flags_at] = LEAF_FLAG_BUCKET as u8;
        assert_eq!(
            read(&bytes),
            Err(crate::Error::NestedBucket {
                bucket: b"outer".to_vec(),
                key: b"inner".to_vec()
            })
        );
    }
}
