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
    MvccRecord = 1,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::MvccRecord),
            _ => None,
        }
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
    let mut p = BytesMut::with_capacity(1 + 8 + kv.key.len() + kv.value.len() + 32);
    p.put_u8(r.tombstone as u8);
    p.put_u32_le(kv.key.len() as u32);
    p.put_slice(&kv.key);
    p.put_u32_le(kv.value.len() as u32);
    p.put_slice(&kv.value);
    for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
        p.put_i64_le(n);
    }
    encode_frame(Kind::MvccRecord, &p)
}

pub fn decode_record(buf: &[u8]) -> Result<Record, CodecError> {
    let mut p = Reader(decode_exact(buf, Kind::MvccRecord)?);
    let tombstone = match p.u8()? {
        0 => false,
        1 => true,
        _ => {
            return Err(CodecError::Malformed {
                why: "tombstone flag",
            });
        }
    };
    let key = p.bytes()?;
    let value = p.bytes()?;
    let (create_revision, mod_revision, version, lease) = (p.i64()?, p.i64()?, p.i64()?, p.i64()?);
    if !p.0.is_empty() {
        return Err(CodecError::Malformed {
            why: "bytes after the record",
        });
    }
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

/// A strict little-endian reader over a payload.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Malformed {
                why: "field runs past the payload",
            });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<Bytes, CodecError> {
        let n = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(n)?))
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
