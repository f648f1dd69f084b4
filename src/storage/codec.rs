//! The on-disk framing of every record oxcd stores, and the encoding of MVCC records in it.
//!
//! A frame is `magic (1) | kind (1) | payload length (4, LE) | payload | CRC-32C (4, LE)`, the
//! checksum covering kind, length and payload. Decoding checks the bounds, then the checksum,
//! then parses the payload strictly (every byte accounted for), so a flipped, torn or invented
//! byte is an error, never a record. CRC-32C detects every error burst of up to 32 bits, so
//! any single corrupted byte is caught.

use crate::mvcc::{KeyValue, Record};
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

const MAGIC: u8 = 0xc5;
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
}

impl Kind {
    const ALL: [Kind; 10] = [
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
    ];

    fn from_u8(b: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == b)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("record truncated: {needed} bytes needed, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("not a record (magic byte {found:#04x})")]
    BadMagic { found: u8 },
    #[error("record kind {found} unknown")]
    UnknownKind { found: u8 },
    #[error("record kind {found:?} where {expected:?} was expected")]
    WrongKind { expected: Kind, found: Kind },
    #[error("record length {len} over the limit {FRAME_PAYLOAD_BYTES_MAX}")]
    TooLarge { len: usize },
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("record payload malformed: {why}")]
    Malformed { why: &'static str },
}

/// Frames `payload` as a record of `kind`.
pub fn encode_frame(kind: Kind, payload: &[u8]) -> Bytes {
    assert!(
        payload.len() <= FRAME_PAYLOAD_BYTES_MAX,
        "frame payload too large"
    );
    let mut out = BytesMut::with_capacity(HEADER_BYTES + payload.len() + CRC_BYTES);
    out.put_u8(MAGIC);
    out.put_u8(kind as u8);
    out.put_u32_le(payload.len() as u32);
    out.put_slice(payload);
    let crc = crc32c::crc32c(&out[1..]);
    out.put_u32_le(crc);
    out.freeze()
}

/// Reads one frame from the front of `buf`: its kind, payload, and the bytes it took.
pub fn decode_frame(buf: &[u8]) -> Result<(Kind, &[u8], usize), CodecError> {
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
    let computed = crc32c::crc32c(&buf[1..total - CRC_BYTES]);
    if stored != computed {
        return Err(CodecError::Checksum { stored, computed });
    }
    // Checked after the checksum: a kind byte that passed it was written as it reads.
    let kind = Kind::from_u8(buf[1]).ok_or(CodecError::UnknownKind { found: buf[1] })?;
    Ok((kind, &buf[HEADER_BYTES..HEADER_BYTES + len], total))
}

/// Reads a buffer that must hold exactly one frame of `kind`.
pub fn decode_exact(buf: &[u8], kind: Kind) -> Result<&[u8], CodecError> {
    let (found, payload, used) = decode_frame(buf)?;
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

/// An MVCC record (a version or a tombstone) as a framed value.
pub fn encode_record(r: &Record) -> Bytes {
    let kv = &r.kv;
    let mut w = Writer::with_capacity(1 + 8 + kv.key.len() + kv.value.len() + 32);
    w.bool(r.tombstone);
    w.bytes(&kv.key);
    w.bytes(&kv.value);
    for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
        w.i64(n);
    }
    encode_frame(Kind::MvccRecord, &w.finish())
}

pub fn decode_record(buf: &[u8]) -> Result<Record, CodecError> {
    let mut p = Reader::new(decode_exact(buf, Kind::MvccRecord)?);
    let tombstone = p.bool()?;
    let key = p.bytes()?;
    let value = p.bytes()?;
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
        self.0.put_u32_le(u32::try_from(v.len()).expect("field under 4 GiB"));
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
            _ => Err(CodecError::Malformed { why: "flag not 0 or 1" }),
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
        let n = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(n)?))
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
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn records_round_trip(r in record()) {
            prop_assert_eq!(decode_record(&encode_record(&r)), Ok(r));
        }

        #[test]
        fn any_corrupted_byte_is_an_error(r in record(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut bytes = encode_record(&r).to_vec();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(decode_record(&bytes).is_err(), "byte {} flipped by {:#x} read as data", i, flip);
        }

        #[test]
        fn any_torn_record_is_an_error(r in record(), at in any::<prop::sample::Index>()) {
            let bytes = encode_record(&r);
            let cut = at.index(bytes.len());
            prop_assert!(decode_record(&bytes[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_record(&bytes);
            let _ = decode_frame(&bytes);
        }
    }

    #[test]
    fn a_corrupt_length_is_refused_before_it_is_believed() {
        let mut bytes = encode_record(&Record {
            kv: KeyValue::default(),
            tombstone: false,
        })
        .to_vec();
        bytes[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_record(&bytes),
            Err(CodecError::TooLarge {
                len: u32::MAX as usize
            })
        );
    }
}
