//! The nouns of the data model as etcd's wire shows them: revisions, key-value pairs and watch
//! events. Field names and meanings follow `mvccpb` so the API edge converts field by field.

use bytes::Bytes;

/// A point in the store's history. `main` counts committed writes (one per put, delete-range
/// with effect, or transaction with writes); `sub` orders the changes inside one of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The revision of the write (the store's revision counter).
    pub main: i64,
    /// The position of the change within that write, from 0.
    pub sub: i64,
}

impl Revision {
    /// The revision `main`, change `sub`.
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }
}

/// One version of a key, as `mvccpb.KeyValue`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key's bytes.
    pub key: Bytes,
    /// Revision of the put that created this generation of the key.
    pub create_revision: i64,
    /// Revision of the change that wrote this version.
    pub mod_revision: i64,
    /// Number of puts in this generation, 1 for the first.
    pub version: i64,
    /// The value's bytes.
    pub value: Bytes,
    /// Lease the key is attached to; 0 for none.
    pub lease: i64,
}

impl KeyValue {
    /// Bytes this pair takes on the wire and in memory, for size limits.
    pub fn size_bytes(&self) -> usize {
        self.key.len() + self.value.len() + 4 * 8
    }
}

/// What kind of change an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// The key was written (created or updated).
    Put,
    /// The key was deleted.
    Delete,
}

/// One change to one key, as `mvccpb.Event`. For a delete, `kv` carries the key with
/// `mod_revision` set to the deleting revision and every other field zero, as etcd does.
/// The store fills `prev_kv` whenever the key had a live version; a watcher that did not ask
/// for it gets the event without it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Whether the key was written or deleted.
    pub kind: EventKind,
    /// The key as written, or for a delete the key and the deleting revision.
    pub kv: KeyValue,
    /// The key's version before this change, if it had a live one and it was asked for.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision the event happened at.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }

    /// Bytes the event takes on the wire and in memory, for watch response size limits.
    pub fn size_bytes(&self) -> usize {
        self.kv.size_bytes() + self.prev_kv.as_ref().map_or(0, KeyValue::size_bytes) + 8
    }
}

/// Whether `key` falls in the range etcd's requests name with `key` and `range_end`: an empty
/// `range_end` names the single key `start`; `"\0"` names every key `>= start`; otherwise the
/// range is `[start, range_end)`.
pub fn in_range(key: &[u8], start: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => key == start,
        [0] => key >= start,
        end => key >= start && key < end,
    }
}

/// The `range_end` that makes a request cover every key starting with `prefix` (etcdctl's
/// `--prefix`): the prefix with its last byte below 0xff incremented, or `"\0"` (every key)
/// when there is none.
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}
