//! The on-disk framing of every record oxcd stores, and the encoding of MVCC records in it.
//!
//! A frame is `magic (1) | kind (1) | payload length (4, LE) | payload | CRC-32C (4, LE)`, the
//! checksum covering kind, length and payload. Decoding checks the bounds, then the checksum,
//! then parses the payload strictly (every byte accounted for), so a flipped, torn or invented
//! byte is an error, never a record. CRC-32C detects every error burst of up to 32 bits, so
//! any single corrupted byte is caught.

use crate::mvcc::{Alarm, KeyValue, LeaseRecord, Record, Revision};
use crate::raft::{ConfState, Entry, EntryKind, HardState, SnapshotMetadata};
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The first byte of every frame.
pub const MAGIC: u8 = 0xc5;
const HEADER_BYTES: usize = 6;
const CRC_BYTES: usize = 4;

/// The largest payload a frame may carry: above etcd's largest request (1.5 MiB) with room for
/// batching, far below what a corrupt length field could claim.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 64 << 20;

/// What a frame holds, so a record of one kind is never read as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A version or tombstone in the MVCC keyspace.
    MvccRecord = 1,
    /// A Raft log entry.
    LogEntry = 2,
    /// Raft's hard state (term, vote, commit).
    HardState = 3,
    /// The metadata of the snapshot the log was compacted to.
    SnapshotMeta = 4,
    /// The membership as of the applied index.
    ConfState = 5,
    /// A lease: ID, TTL and the last checkpointed remaining time.
    Lease = 6,
    /// A number in the meta keyspace (applied index, cluster and member IDs, ...).
    Meta = 7,
    /// A command, as it travels in a Raft entry.
    Command = 8,
    /// One chunk of a snapshot stream.
    SnapshotChunk = 9,
    /// One atomic batch in the simulated disk's journal.
    DiskBatch = 10,
    /// A cluster member's record (opaque to storage: the server's encoding), keyed by ID.
    Member = 11,
    /// A command with the proposer's request ID, as it travels in a Raft entry.
    Proposal = 12,
    /// The auth state (users, roles, permissions), stored whole.
    Auth = 13,
    /// A v2 node's own record (kind, indexes, expiry, value), keyed by its path.
    V2Node = 14,
    /// A record of the Raft log's own file ([`super::wal`]).
    WalRecord = 15,
}

impl Kind {
    const ALL: [Kind; 15] = [
        Kind::MvccRecord,
        Kind::LogEntry,
        Kind::HardState,
        Kind::SnapshotMeta,
        Kind::ConfState,
        Kind::Lease,
        Kind::Meta,
        Kind::Command,
        Kind::SnapshotChunk,
        Kind::DiskBatch,
        Kind::Member,
        Kind::Proposal,
        Kind::Auth,
        Kind::V2Node,
        Kind::WalRecord,
    ];

    fn from_u8(b: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == b)
    }
}

/// Why stored bytes did not decode.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The buffer ends before the frame does.
    #[error("record truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer holds.
        available: usize,
    },
    /// The first byte is not the frame magic.
    #[error("not a record (magic byte {found:#04x})")]
    BadMagic {
        /// The byte found instead.
        found: u8,
    },
    /// The kind byte names no known kind.
    #[error("record kind {found} unknown")]
    UnknownKind {
        /// The kind byte found.
        found: u8,
    },
    /// A frame of another kind than the one expected.
    #[error("record kind {found:?} where {expected:?} was expected")]
    WrongKind {
        /// The kind the caller asked for.
        expected: Kind,
        /// The kind the frame holds.
        found: Kind,
    },
    /// The length field is over [`FRAME_PAYLOAD_BYTES_MAX`].
    #[error("record length {len} over the limit {FRAME_PAYLOAD_BYTES_MAX}")]
    TooLarge {
        /// The payload length the frame claims.
        len: usize,
    },
    /// The checksum does not match the bytes (and key) read.
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum stored in the frame.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The bytes (or the key they sit at) are framed soundly but do not hold what they should.
    #[error("record payload malformed: {why}")]
    Malformed {
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Frames `payload` as a record of `kind`.
pub fn encode_frame(kind: Kind, payload: &[u8]) -> Bytes {
    encode_frame_keyed(kind, &[], payload)
}

/// Frames `payload` as the value stored at `key`: the checksum covers the key too (it starts
/// from the key's CRC), so a value read back under another key, or a key corrupted on the way,
/// fails the check. With an empty key this is [`encode_frame`].
pub fn encode_frame_keyed(kind: Kind, key: &[u8], payload: &[u8]) -> Bytes {
    assert!(
        payload.len() <= FRAME_PAYLOAD_BYTES_MAX,
        "frame payload too large"
    );
    let mut out = BytesMut::with_capacity(HEADER_BYTES + payload.len() + CRC_BYTES);
    out.put_u8(MAGIC);
    out.put_u8(kind as u8);
    out.put_u32_le(payload.len() as u32);
    out.put_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c(key), &out[1..]);
    out.put_u32_le(crc);
    out.freeze()
}

/// Reads one frame from the front of `buf`: its kind, payload, and the bytes it took.
pub fn decode_frame(buf: &[u8]) -> Result<(Kind, &[u8], usize), CodecError> {
    decode_frame_keyed(buf, &[])
}

/// [`decode_frame`] for a value stored at `key` (see [`encode_frame_keyed`]).
pub fn decode_frame_keyed<'a>(
    buf: &'a [u8],
    key: &[u8],
) -> Result<(Kind, &'a [u8], usize), CodecError> {
    let need = |needed: usize| {
        if buf.len() < needed {
            Err(CodecError::Truncated {
                needed,
                available: buf.len(),
            })
        } else {
            Ok(())
        }
    };
    need(HEADER_BYTES)?;
    if buf[0] != MAGIC {
        return Err(CodecError::BadMagic { found: buf[0] });
    }
    let len = u32::from_le_bytes(buf[2..6].try_into().expect("4 bytes")) as usize;
    if len > FRAME_PAYLOAD_BYTES_MAX {
        return Err(CodecError::TooLarge { len });
    }
    let total = HEADER_BYTES + len + CRC_BYTES;
    need(total)?;
    let stored = u32::from_le_bytes(buf[total - CRC_BYTES..total].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c_append(crc32c::crc32c(key), &buf[1..total - CRC_BYTES]);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    // Checked after the checksum: a kind byte that passed it was written as it reads.
    let kind = Kind::from_u8(buf[1]).ok_or(CodecError::UnknownKind { found: buf[1] })?;
    Ok((kind, &buf[HEADER_BYTES..HEADER_BYTES + len], total))
}

/// Reads a buffer that must hold exactly one frame of `kind`.
pub fn decode_exact(buf: &[u8], kind: Kind) -> Result<&[u8], CodecError> {
    decode_exact_keyed(buf, kind, &[])
}

/// [`decode_exact`] for a value stored at `key`.
pub fn decode_exact_keyed<'a>(
    buf: &'a [u8],
    kind: Kind,
    key: &[u8],
) -> Result<&'a [u8], CodecError> {
    let (found, payload, used) = decode_frame_keyed(buf, key)?;
    if found != kind {
        return Err(CodecError::WrongKind {
            expected: kind,
            found,
        });
    }
    if used != buf.len() {
        return Err(CodecError::Malformed {
            why: "bytes after the frame",
        });
    }
    Ok(payload)
}

/// An MVCC record (a version or a tombstone) as the value stored at `key` (its revision).
pub fn encode_record(key: &[u8], r: &Record) -> Bytes {
    let kv = &r.kv;
    let mut w = Writer::with_capacity(1 + 8 + kv.key.len() + kv.value.len() + 32);
    w.bool(r.tombstone);
    w.bytes(&kv.key);
    w.bytes(&kv.value);
    for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
        w.i64(n);
    }
    encode_frame_keyed(Kind::MvccRecord, key, &w.finish())
}

/// Decodes the MVCC record stored at `key`, copying its key and value out of `buf`.
pub fn decode_record(key: &[u8], buf: &[u8]) -> Result<Record, CodecError> {
    decode_record_with(key, buf, Bytes::copy_from_slice)
}

/// Decodes the MVCC record stored at `key`, its key and value sharing `buf`'s memory: a read
/// of large values copies none of them (a range answer then holds the bytes storage read).
pub fn decode_record_shared(key: &[u8], buf: &Bytes) -> Result<Record, CodecError> {
    decode_record_with(key, buf, |part| buf.slice_ref(part))
}

fn decode_record_with(
    key: &[u8],
    buf: &[u8],
    own: impl Fn(&[u8]) -> Bytes,
) -> Result<Record, CodecError> {
    let mut p = Reader::new(decode_exact_keyed(buf, Kind::MvccRecord, key)?);
    let tombstone = p.bool()?;
    let key = own(p.slice()?);
    let value = own(p.slice()?);
    let (create_revision, mod_revision, version, lease) = (p.i64()?, p.i64()?, p.i64()?, p.i64()?);
    p.finish()?;
    Ok(Record {
        kv: KeyValue {
            key,
            create_revision,
            mod_revision,
            version,
            value,
            lease,
        },
        tombstone,
    })
}

/// The key of a revision: main then sub, big-endian with the sign bit flipped, so byte order is
/// revision order.
pub fn revision_key(rev: Revision) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&((rev.main as u64) ^ (1 << 63)).to_be_bytes());
    k[8..].copy_from_slice(&((rev.sub as u64) ^ (1 << 63)).to_be_bytes());
    k
}

/// The revision a [`revision_key`] encodes.
pub fn decode_revision_key(key: &[u8]) -> Result<Revision, CodecError> {
    let k: [u8; 16] = key.try_into().map_err(|_| CodecError::Malformed {
        why: "revision key is not 16 bytes",
    })?;
    let half = |b: &[u8]| (u64::from_be_bytes(b.try_into().expect("8 bytes")) ^ (1 << 63)) as i64;
    Ok(Revision::new(half(&k[..8]), half(&k[8..])))
}

/// The key of a log entry, or of a lease: the number big-endian (leases: sign bit flipped).
pub fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The number an [`index_key`] encodes.
pub fn decode_index_key(key: &[u8]) -> Result<u64, CodecError> {
    Ok(u64::from_be_bytes(key.try_into().map_err(|_| {
        CodecError::Malformed {
            why: "index key is not 8 bytes",
        }
    })?))
}

/// The key of a lease: its ID with the sign bit flipped, big-endian, so byte order is ID order.
pub fn lease_key(id: i64) -> [u8; 8] {
    index_key((id as u64) ^ (1 << 63))
}

/// An entry's fields (term, index, kind, data), as a stored log entry and a record of the
/// log file ([`super::wal`]) hold them.
pub(crate) fn write_entry(w: &mut Writer, e: &Entry) {
    w.u64(e.term);
    w.u64(e.index);
    w.u8(match e.kind {
        EntryKind::Normal => 0,
        EntryKind::ConfChange => 1,
    });
    w.bytes(&e.data);
}

/// The fields [`write_entry`] writes.
pub(crate) fn read_entry(p: &mut Reader<'_>) -> Result<Entry, CodecError> {
    let (term, index) = (p.u64()?, p.u64()?);
    let kind = match p.u8()? {
        0 => EntryKind::Normal,
        1 => EntryKind::ConfChange,
        _ => return Err(CodecError::Malformed { why: "entry kind" }),
    };
    Ok(Entry {
        term,
        index,
        kind,
        data: p.bytes()?,
    })
}

/// The fewest bytes [`write_entry`] writes (an entry with no data), to bound a count.
pub(crate) const ENTRY_BYTES_MIN: usize = 8 + 8 + 1 + 4;

/// A Raft log entry, stored at [`index_key`] of its index.
pub fn encode_entry(e: &Entry) -> Bytes {
    let mut w = Writer::with_capacity(32 + e.data.len());
    write_entry(&mut w, e);
    encode_frame_keyed(Kind::LogEntry, &index_key(e.index), &w.finish())
}

/// Decodes the entry stored at `key`; its index must be the key's.
pub fn decode_entry(key: &[u8], buf: &[u8]) -> Result<Entry, CodecError> {
    let mut p = Reader::new(decode_exact_keyed(buf, Kind::LogEntry, key)?);
    let entry = read_entry(&mut p)?;
    p.finish()?;
    if entry.index != decode_index_key(key)? {
        return Err(CodecError::Malformed {
            why: "entry index differs from its key",
        });
    }
    Ok(entry)
}

/// Raft's hard state's fields (term, vote, commit).
pub(crate) fn write_hard_state(w: &mut Writer, hs: &HardState) {
    w.u64(hs.term);
    w.u64(hs.vote);
    w.u64(hs.commit);
}

/// The fields [`write_hard_state`] writes.
pub(crate) fn read_hard_state(p: &mut Reader<'_>) -> Result<HardState, CodecError> {
    Ok(HardState {
        term: p.u64()?,
        vote: p.u64()?,
        commit: p.u64()?,
    })
}

/// Raft's hard state as the value stored at `key`.
pub fn encode_hard_state(key: &[u8], hs: &HardState) -> Bytes {
    let mut w = Writer::with_capacity(24);
    write_hard_state(&mut w, hs);
    encode_frame_keyed(Kind::HardState, key, &w.finish())
}

/// Decodes the hard state stored at `key`.
pub fn decode_hard_state(key: &[u8], buf: &[u8]) -> Result<HardState, CodecError> {
    let mut p = Reader::new(decode_exact_keyed(buf, Kind::HardState, key)?);
    let hs = read_hard_state(&mut p)?;
    p.finish()?;
    Ok(hs)
}

fn write_conf_state(w: &mut Writer, cs: &ConfState) {
    w.u64s(&cs.voters);
    w.u64s(&cs.learners);
    w.u64s(&cs.voters_outgoing);
    w.u64s(&cs.learners_next);
    w.bool(cs.auto_leave);
}

fn read_conf_state(p: &mut Reader<'_>) -> Result<ConfState, CodecError> {
    Ok(ConfState {
        voters: p.u64s()?,
        learners: p.u64s()?,
        voters_outgoing: p.u64s()?,
        learners_next: p.u64s()?,
        auto_leave: p.bool()?,
    })
}

/// A Raft membership as the value stored at `key`.
pub fn encode_conf_state(key: &[u8], cs: &ConfState) -> Bytes {
    let mut w = Writer::with_capacity(64);
    write_conf_state(&mut w, cs);
    encode_frame_keyed(Kind::ConfState, key, &w.finish())
}

/// Decodes the membership stored at `key`.
pub fn decode_conf_state(key: &[u8], buf: &[u8]) -> Result<ConfState, CodecError> {
    let mut p = Reader::new(decode_exact_keyed(buf, Kind::ConfState, key)?);
    let cs = read_conf_state(&mut p)?;
    p.finish()?;
    Ok(cs)
}

/// A snapshot's metadata (index, term, membership) as the value stored at `key`.
pub fn encode_snapshot_meta(key: &[u8], m: &SnapshotMetadata) -> Bytes {
    let mut w = Writer::with_capacity(80);
    w.u64(m.index);
    w.u64(m.term);
    write_conf_state(&mut w, &m.conf_state);
    encode_frame_keyed(Kind::SnapshotMeta, key, &w.finish())
}

/// Decodes the snapshot metadata stored at `key`.
pub fn decode_snapshot_meta(key: &[u8], buf: &[u8]) -> Result<SnapshotMetadata, CodecError> {
    let mut p = Reader::new(decode_exact_keyed(buf, Kind::SnapshotMeta, key)?);
    let (index, term) = (p.u64()?, p.u64()?);
    let conf_state = read_conf_state(&mut p)?;
    p.finish()?;
    Ok(SnapshotMetadata {
        conf_state,
        index,
        term,
    })
}

/// A lease record, framed for its [`lease_key`].
pub fn encode_lease(l: &LeaseRecord) -> Bytes {
    let mut w = Writer::with_capacity(24);
    w.i64(l.id);
    w.i64(l.ttl_s);
    w.u64(l.remaining_ms);
    encode_frame_keyed(Kind::Lease, &lease_key(l.id), &w.finish())
}

/// Decodes the lease stored at `key`; its ID must be the key's.
pub fn decode_lease(key: &[u8], buf: &[u8]) -> Result<LeaseRecord, CodecError> {
    let mut p = Reader::new(decode_exact_keyed(buf, Kind::Lease, key)?);
    let l = LeaseRecord {
        id: p.i64()?,
        ttl_s: p.i64()?,
        remaining_ms: p.u64()?,
    };
    p.finish()?;
    if lease_key(l.id) != key {
        return Err(CodecError::Malformed {
            why: "lease ID differs from its key",
        });
    }
    Ok(l)
}

/// Where a member's record is stored in the meta keyspace: a prefix no meta number uses, then
/// the ID big-endian (so records scan in ID order).
pub const MEMBER_KEY_PREFIX: &[u8] = b"member/";

/// The key a member's record is stored at.
pub fn member_key(id: u64) -> Vec<u8> {
    let mut k = MEMBER_KEY_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The ID a member key names, or `None` when `key` is not a member key.
pub fn decode_member_key(key: &[u8]) -> Option<u64> {
    let id = key.strip_prefix(MEMBER_KEY_PREFIX)?;
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// Where a raised alarm is stored in the meta keyspace: a prefix no meta number uses, then the
/// alarm type and the member, big-endian (so alarms scan in [`Alarm`] order). The value is the
/// alarm type again, as a meta number, so a key and its value vouch for each other.
pub const ALARM_KEY_PREFIX: &[u8] = b"alarm/";

/// The key a raised alarm is stored at.
pub fn alarm_key(alarm: Alarm) -> Vec<u8> {
    let mut k = ALARM_KEY_PREFIX.to_vec();
    // The type is never negative in etcd's enum; the sign bit is flipped anyway so that any
    // i32 keeps its order.
    k.extend_from_slice(&((alarm.kind as u32) ^ 0x8000_0000).to_be_bytes());
    k.extend_from_slice(&alarm.member.to_be_bytes());
    k
}

/// The alarm an alarm key names, or `None` when `key` is not an alarm key.
pub fn decode_alarm_key(key: &[u8]) -> Option<Alarm> {
    let rest = key.strip_prefix(ALARM_KEY_PREFIX)?;
    if rest.len() != 12 {
        return None;
    }
    let kind = u32::from_be_bytes(rest[..4].try_into().ok()?) ^ 0x8000_0000;
    let member = u64::from_be_bytes(rest[4..].try_into().ok()?);
    Some(Alarm {
        kind: kind as i32,
        member,
    })
}

/// Where the auth state is stored in the meta keyspace.
pub const AUTH_KEY: &[u8] = b"auth/state";

/// The auth state (the auth module's encoding) as the value stored at `key`.
pub fn encode_auth(key: &[u8], state: &[u8]) -> Bytes {
    encode_frame_keyed(Kind::Auth, key, state)
}

/// The auth state's encoding stored at `key`.
pub fn decode_auth(key: &[u8], buf: &[u8]) -> Result<Bytes, CodecError> {
    Ok(Bytes::copy_from_slice(decode_exact_keyed(
        buf,
        Kind::Auth,
        key,
    )?))
}

/// Where v2 nodes are stored in the meta keyspace: this prefix, then the node's path.
pub const V2_KEY_PREFIX: &[u8] = b"v2/";

/// The key a v2 node is stored at.
pub fn v2_key(path: &str) -> Vec<u8> {
    let mut k = V2_KEY_PREFIX.to_vec();
    k.extend_from_slice(path.as_bytes());
    k
}

/// The path a v2 key names, or `None` when `key` is not a v2 key (or not UTF-8).
pub fn decode_v2_key(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(V2_KEY_PREFIX)?).ok()
}

/// A v2 node's record as the value stored at `key`.
pub fn encode_v2_node(key: &[u8], node: &[u8]) -> Bytes {
    encode_frame_keyed(Kind::V2Node, key, node)
}

/// The v2 node record stored at `key`.
pub fn decode_v2_node(key: &[u8], buf: &[u8]) -> Result<Bytes, CodecError> {
    Ok(Bytes::copy_from_slice(decode_exact_keyed(
        buf,
        Kind::V2Node,
        key,
    )?))
}

/// A member record (opaque bytes) as the value stored at `key`.
pub fn encode_member(key: &[u8], record: &[u8]) -> Bytes {
    encode_frame_keyed(Kind::Member, key, record)
}

/// Decodes the member record stored at `key`.
pub fn decode_member(key: &[u8], buf: &[u8]) -> Result<Bytes, CodecError> {
    Ok(Bytes::copy_from_slice(decode_exact_keyed(
        buf,
        Kind::Member,
        key,
    )?))
}

/// A meta number as the value stored at `key`.
pub fn encode_meta(key: &[u8], v: i64) -> Bytes {
    encode_frame_keyed(Kind::Meta, key, &v.to_le_bytes())
}

/// Decodes the meta number stored at `key`.
pub fn decode_meta(key: &[u8], buf: &[u8]) -> Result<i64, CodecError> {
    let mut p = Reader::new(decode_exact_keyed(buf, Kind::Meta, key)?);
    let v = p.i64()?;
    p.finish()?;
    Ok(v)
}

/// Builds a payload: fixed-width little-endian numbers, byte strings as `u32` length + bytes.
pub(crate) struct Writer(BytesMut);

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Writer {
        Writer(BytesMut::with_capacity(n))
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.0.put_u8(v);
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.0.put_u8(v as u8);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.0.put_u32_le(v);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.0.put_u64_le(v);
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.0.put_i64_le(v);
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0
            .put_u32_le(u32::try_from(v.len()).expect("field under 4 GiB"));
        self.0.put_slice(v);
    }

    /// Bytes as they are, with no length (the rest of a payload).
    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.0.put_slice(v);
    }

    /// A list of `u64`s: a `u32` count, then the values.
    pub(crate) fn u64s(&mut self, v: &[u64]) {
        self.u32(u32::try_from(v.len()).expect("list under 4 G items"));
        for &x in v {
            self.u64(x);
        }
    }

    pub(crate) fn finish(self) -> Bytes {
        self.0.freeze()
    }
}

/// A strict little-endian reader over a payload: every field must be there, every flag must be
/// 0 or 1, and [`Reader::finish`] refuses leftover bytes.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(payload: &'a [u8]) -> Reader<'a> {
        Reader(payload)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Malformed {
                why: "field runs past the payload",
            });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Malformed {
                why: "flag not 0 or 1",
            }),
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn bytes(&mut self) -> Result<Bytes, CodecError> {
        Ok(Bytes::copy_from_slice(self.slice()?))
    }

    /// A length-prefixed byte string, in place.
    pub(crate) fn slice(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A list of `u64`s, its count checked against the bytes left before anything is allocated.
    pub(crate) fn u64s(&mut self) -> Result<Vec<u64>, CodecError> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 8 {
            return Err(CodecError::Malformed {
                why: "list runs past the payload",
            });
        }
        (0..n).map(|_| self.u64()).collect()
    }

    /// How many bytes are left, to bound a count before allocating for it.
    pub(crate) fn remaining(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn finish(self) -> Result<(), CodecError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Malformed {
                why: "bytes after the record",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"\x00\x00\x00\x00\x00\x00\x00\x07";

    fn record() -> impl Strategy<Value = Record> {
        (
            prop::collection::vec(any::<u8>(), 0..40),
            prop::collection::vec(any::<u8>(), 0..200),
            any::<[i64; 4]>(),
            any::<bool>(),
        )
            .prop_map(|(key, value, n, tombstone)| Record {
                kv: KeyValue {
                    key: key.into(),
                    create_revision: n[0],
                    mod_revision: n[1],
                    version: n[2],
                    value: value.into(),
                    lease: n[3],
                },
                tombstone,
            })
    }

    proptest! {
        /// The shared decode gives the copying one's record, with the key and value pointing
        /// into the stored bytes rather than at copies.
        #[test]
        fn a_shared_record_decode_equals_the_copy_and_copies_nothing(r in record()) {
            let buf = encode_record(KEY, &r);
            let shared = decode_record_shared(KEY, &buf).unwrap();
            prop_assert_eq!(&shared, &decode_record(KEY, &buf).unwrap());
            let within = |b: &Bytes| {
                let (start, end) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
                b.is_empty() || (b.as_ptr() as usize >= start && b.as_ptr() as usize + b.len() <= end)
            };
            prop_assert!(within(&shared.kv.key) && within(&shared.kv.value));
        }
    }

    fn ids() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(any::<u64>(), 0..5)
    }

    fn conf_state() -> impl Strategy<Value = ConfState> {
        (ids(), ids(), ids(), ids(), any::<bool>()).prop_map(|(v, l, vo, ln, auto_leave)| {
            ConfState {
                voters: v,
                learners: l,
                voters_outgoing: vo,
                learners_next: ln,
                auto_leave,
            }
        })
    }

    /// Every kind of stored value, encoded at `KEY` (entries: at their own index's key), with
    /// a decoder that must give it back.
    /// A stored value: its key, its bytes, and whether a (key, bytes) pair decodes as its kind.
    type Stored = (Bytes, Bytes, fn(&[u8], &[u8]) -> bool);

    fn stored() -> impl Strategy<Value = Stored> {
        fn check<T: PartialEq>(
            decode: fn(&[u8], &[u8]) -> Result<T, CodecError>,
            want: &T,
            key: &[u8],
            buf: &[u8],
        ) -> bool {
            decode(key, buf).as_ref() == Ok(want)
        }
        prop_oneof![
            record().prop_map(|r| {
                let b = encode_record(KEY, &r);
                let ok: fn(&[u8], &[u8]) -> bool = |k, b| decode_record(k, b).is_ok();
                assert!(check(decode_record, &r, KEY, &b));
                (Bytes::from_static(KEY), b, ok)
            }),
            (
                any::<u64>(),
                0..(1u64 << 62),
                any::<bool>(),
                prop::collection::vec(any::<u8>(), 0..100)
            )
                .prop_map(|(term, index, conf, data)| {
                    let e = Entry {
                        term,
                        index,
                        kind: if conf {
                            EntryKind::ConfChange
                        } else {
                            EntryKind::Normal
                        },
                        data: data.into(),
                    };
                    let b = encode_entry(&e);
                    let key = Bytes::copy_from_slice(&index_key(index));
                    assert!(check(decode_entry, &e, &key, &b));
                    let ok: fn(&[u8], &[u8]) -> bool = |k, b| decode_entry(k, b).is_ok();
                    (key, b, ok)
                }),
            any::<[u64; 3]>().prop_map(|[term, vote, commit]| {
                let hs = HardState { term, vote, commit };
                let b = encode_hard_state(KEY, &hs);
                assert!(check(decode_hard_state, &hs, KEY, &b));
                let ok: fn(&[u8], &[u8]) -> bool = |k, b| decode_hard_state(k, b).is_ok();
                (Bytes::from_static(KEY), b, ok)
            }),
            conf_state().prop_map(|cs| {
                let b = encode_conf_state(KEY, &cs);
                assert!(check(decode_conf_state, &cs, KEY, &b));
                let ok: fn(&[u8], &[u8]) -> bool = |k, b| decode_conf_state(k, b).is_ok();
                (Bytes::from_static(KEY), b, ok)
            }),
            (conf_state(), any::<u64>(), any::<u64>()).prop_map(|(conf_state, index, term)| {
                let m = SnapshotMetadata {
                    conf_state,
                    index,
                    term,
                };
                let b = encode_snapshot_meta(KEY, &m);
                assert!(check(decode_snapshot_meta, &m, KEY, &b));
                let ok: fn(&[u8], &[u8]) -> bool = |k, b| decode_snapshot_meta(k, b).is_ok();
                (Bytes::from_static(KEY), b, ok)
            }),
            any::<(i64, i64, u64)>().prop_map(|(id, ttl_s, remaining_ms)| {
                let l = LeaseRecord {
                    id,
                    ttl_s,
                    remaining_ms,
                };
                let b = encode_lease(&l);
                let key = Bytes::copy_from_slice(&lease_key(id));
                assert!(check(decode_lease, &l, &key, &b));
                let ok: fn(&[u8], &[u8]) -> bool = |k, b| decode_lease(k, b).is_ok();
                (key, b, ok)
            }),
            any::<i64>().prop_map(|v| {
                let b = encode_meta(KEY, v);
                assert!(check(decode_meta, &v, KEY, &b));
                let ok: fn(&[u8], &[u8]) -> bool = |k, b| decode_meta(k, b).is_ok();
                (Bytes::from_static(KEY), b, ok)
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn every_stored_value_round_trips((key, bytes, ok) in stored()) {
            // The strategy asserted the exact round trip; here: it decodes only at its key.
            prop_assert!(ok(&key, &bytes));
            let mut other = key.to_vec();
            other.push(0);
            prop_assert!(!ok(&other, &bytes), "read back under another key");
        }

        #[test]
        fn any_corrupted_byte_is_an_error(
            (key, bytes, ok) in stored(),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut bytes = bytes.to_vec();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(!ok(&key, &bytes), "byte {} flipped by {:#x} read as data", i, flip);
        }

        #[test]
        fn any_corrupted_key_byte_is_an_error(
            (key, bytes, ok) in stored(),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut key = key.to_vec();
            let i = at.index(key.len());
            key[i] ^= flip;
            prop_assert!(!ok(&key, &bytes), "key byte {} flipped by {:#x} read as data", i, flip);
        }

        #[test]
        fn any_torn_value_is_an_error((key, bytes, ok) in stored(), at in any::<prop::sample::Index>()) {
            let cut = at.index(bytes.len());
            prop_assert!(!ok(&key, &bytes[..cut]));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_record(KEY, &bytes);
            let _ = decode_entry(KEY, &bytes);
            let _ = decode_hard_state(KEY, &bytes);
            let _ = decode_conf_state(KEY, &bytes);
            let _ = decode_snapshot_meta(KEY, &bytes);
            let _ = decode_lease(KEY, &bytes);
            let _ = decode_meta(KEY, &bytes);
            let _ = decode_frame(&bytes);
        }

        #[test]
        fn revision_keys_sort_as_revisions(a in any::<(i64, i64)>(), b in any::<(i64, i64)>()) {
            let (ra, rb) = (Revision::new(a.0, a.1), Revision::new(b.0, b.1));
            prop_assert_eq!(ra.cmp(&rb), revision_key(ra).cmp(&revision_key(rb)));
            prop_assert_eq!(decode_revision_key(&revision_key(ra)), Ok(ra));
        }
    }

    #[test]
    fn a_corrupt_length_is_refused_before_it_is_believed() {
        let mut bytes = encode_record(
            KEY,
            &Record {
                kv: KeyValue::default(),
                tombstone: false,
            },
        )
        .to_vec();
        bytes[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_record(KEY, &bytes),
            Err(CodecError::TooLarge {
                len: u32::MAX as usize
            })
        );
    }
}
