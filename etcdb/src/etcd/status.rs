//! What `etcdctl snapshot status` (3.4) and `etcdutl snapshot status` (3.5) print.

use crate::Result;
use crate::bbolt;
use crate::etcd::{buckets, split_trailer};

/// A snapshot's summary, the fields of `snapshot status -w json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C (Castagnoli) over every bucket's name followed by its keys and values, buckets
    /// and keys in bbolt's (byte) order.
    pub hash: u32,
    /// The main revision of the last key of the `key` bucket (0 if it is empty).
    pub revision: i64,
    /// Keys in all buckets.
    pub total_key: u64,
    /// The database's size: page count × page size (the trailer not counted).
    pub total_size: u64,
}

impl Status {
    /// The JSON etcd prints with `-w json`: `{"hash":..,"revision":..,"totalKey":..,"totalSize":..}`.
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"hash":{},"revision":{},"totalKey":{},"totalSize":{}}}"#,
            self.hash, self.revision, self.total_key, self.total_size
        )
    }
}

/// Computes `snapshot status` for a snapshot (with or without its trailer; the trailer is
/// not checked, as etcd does not check it there).
pub fn status(bytes: &[u8]) -> Result<Status> {
    let (bytes, _) = split_trailer(bytes);
    let (db, layout) = bbolt::read_with_layout(bytes)?;
    let mut hash = 0u32;
    let mut revision = 0;
    let mut total_key = 0u64;
    for (name, bucket) in &db.buckets {
        hash = crc32c::crc32c_append(hash, name);
        for (k, v) in &bucket.entries {
            hash = crc32c::crc32c_append(hash, k);
            hash = crc32c::crc32c_append(hash, v);
            if name == buckets::KEY && k.len() >= 8 {
                revision = u64::from_be_bytes(k[..8].try_into().expect("8 bytes")) as i64;
            }
            total_key += 1;
        }
    }
    Ok(Status {
        hash,
        revision,
        total_key,
        total_size: layout.size_bytes(),
    })
}
