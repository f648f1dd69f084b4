//! The store's footprint: how many bytes its records would take in etcd's backend (a bbolt
//! leaf element per record, the 17-byte revision key, one more byte for a tombstone, and the
//! `mvccpb.KeyValue` it holds, a tombstone's holding only the key), which is what `dbSize`,
//! `dbSizeInUse` and `--quota-backend-bytes` measure, whatever the engine underneath keeps.
//!
//! It owns the running total and the per-record estimate; it reads nothing. A compaction
//! names the revisions it removes but not their sizes (reading every removed record back
//! would cost as much as the compaction), so their bytes are taken at the average record
//! size; a full recount (on open, on defragment) makes it exact
//! again.

use super::backend::Record;

/// bbolt's per-element header in a leaf page.
const LEAF_ELEMENT_BYTES: u64 = 16;
/// etcd's key in the `key` bucket: main revision, `_`, sub revision.
const REVISION_KEY_BYTES: u64 = 17;

/// The running total of the store's records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    bytes: u64,
    records: u64,
}

impl Footprint {
    /// Bytes of the records held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records held.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// A record stored.
    pub fn add(&mut self, record: &Record) {
        self.bytes += record_bytes(record);
        self.records += 1;
    }

    /// `n` records removed by a compaction, at the average size.
    pub fn remove(&mut self, n: u64) {
        let n = n.min(self.records);
        if n == self.records {
            *self = Footprint::default();
            return;
        }
        let gone = (u128::from(self.bytes) * u128::from(n) / u128::from(self.records)) as u64;
        self.bytes -= gone;
        self.records -= n;
    }
}

/// What one record takes in etcd's backend.
pub fn record_bytes(r: &Record) -> u64 {
    let kv = &r.kv;
    let message = if r.tombstone {
        bytes_field(kv.key.len())
    } else {
        bytes_field(kv.key.len())
            + int_field(kv.create_revision)
            + int_field(kv.mod_revision)
            + int_field(kv.version)
            + bytes_field(kv.value.len())
            + int_field(kv.lease)
    };
    LEAF_ELEMENT_BYTES + REVISION_KEY_BYTES + u64::from(r.tombstone) + message
}

fn varint_bytes(v: u64) -> u64 {
    u64::from((64 - (v | 1).leading_zeros()).div_ceil(7))
}

/// A protobuf length-delimited field of `n` bytes (absent when empty).
fn bytes_field(n: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    1 + varint_bytes(n as u64) + n as u64
}

/// A protobuf int64 field (absent when zero).
fn int_field(v: i64) -> u64 {
    if v == 0 {
        return 0;
    }
    1 + varint_bytes(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::kv::KeyValue;
    use bytes::Bytes;

    fn record(key: &str, value: &str, tombstone: bool) -> Record {
        Record {
            kv: KeyValue {
                key: Bytes::from(key.to_string()),
                value: Bytes::from(value.to_string()),
                create_revision: 2,
                mod_revision: 300,
                version: 1,
                lease: 0,
            },
            tombstone,
        }
    }

    #[test]
    fn a_record_costs_its_leaf_element_key_and_message() {
        // key "foo": 1+1+3; create 2: 1+1; mod 300: 1+2; version 1: 1+1; value "bar": 1+1+3.
        assert_eq!(record_bytes(&record("foo", "bar", false)), 16 + 17 + 17);
        // A tombstone holds the key only, under an 18-byte key.
        assert_eq!(record_bytes(&record("foo", "bar", true)), 16 + 18 + 5);
        assert_eq!(varint_bytes(0), 1);
        assert_eq!(varint_bytes(127), 1);
        assert_eq!(varint_bytes(128), 2);
        assert_eq!(varint_bytes(u64::MAX), 10);
    }

    #[test]
    fn compaction_removes_at_the_average_and_everything_leaves_nothing() {
        let mut f = Footprint::default();
        for i in 0..4 {
            f.add(&record("k", &"v".repeat(10 * i), false));
        }
        let total = f.bytes();
        f.remove(2);
        assert_eq!(f.records(), 2);
        assert_eq!(f.bytes(), total - total / 2);
        f.remove(5);
        assert_eq!(f, Footprint::default());
    }
}
