//! Snapshots of a member's state machine: a point-in-time copy of the `mvcc`, `lease` and
//! `meta` keyspaces, streamed as checksummed chunks, and its restore. It is what a Raft
//! snapshot's data carries, and what `etcdctl snapshot save`, `status` and `restore` work on.
//!
//! What it does not do: it copies neither the Raft log nor Raft's state (`raft_log`,
//! `raft_state`), which belong to Raft and travel as the snapshot's metadata
//! ([`super::RaftStore`]); it sends nothing and opens no file (the caller moves the bytes);
//! and it does not interpret what it copies beyond checking it: a restored member rebuilds its
//! key index and lessor from the restored keyspaces as it does on any recovery.
//!
//! # Call order
//!
//! Sending: take a view of the engine ([`Engine::view`]), wrap it in a [`SnapshotWriter`] and
//! send each chunk it yields, in order. The view is frozen, so the member goes on writing while
//! the stream is read out lazily: the writer scans the view in pages of at most
//! [`SCAN_PAGE_PAIRS`] pairs and holds one page and one chunk at a time.
//! [`snapshot_bytes`] does this into one buffer (a Raft snapshot's data).
//!
//! Receiving: [`SnapshotReader::push`] each chunk in order, then [`SnapshotReader::finish`]
//! for the [`Restored`] pairs, and [`restore_batch`] for the one batch that replaces an
//! engine's three keyspaces with them. [`read_snapshot`] reads a stream held whole, and
//! [`restore_into`] reads it, writes the batch and syncs.
//!
//! # Format, version 1
//!
//! A stream is [`codec`] frames of kind [`Kind::SnapshotChunk`], one per chunk, back to back;
//! each frame has its own CRC-32C. A chunk's payload, little-endian, byte strings as a `u32`
//! length and the bytes:
//!
//! | field          | type    | what                                                         |
//! |----------------|---------|--------------------------------------------------------------|
//! | version        | `u32`   | [`FORMAT_VERSION`], 1                                        |
//! | applied index  | `u64`   | the `meta` applied index of the copy (0 when it has none)    |
//! | sequence       | `u64`   | 0 for the first chunk, then 1, 2, ...                        |
//! | last           | `u8`    | 1 in the last chunk, 0 in the others                         |
//! | pair count     | `u32`   | pairs in this chunk                                          |
//! | pairs          |         | each: keyspace (`u8`: 2 `mvcc`, 3 `lease`, 4 `meta`), key, value |
//! | total pairs    | `u64`   | last chunk only: pairs in the whole stream                   |
//! | stream CRC     | `u32`   | last chunk only: CRC-32C of every chunk's payload in order, up to (not including) this field |
//!
//! The version and applied index ride in every chunk (a few bytes each), so that a chunk is
//! checked on its own and one from another snapshot is refused when it arrives. The pairs are
//! the stored pairs copied verbatim: values stay framed with their checksums, which cover the
//! key. They come `mvcc`, then `lease`, then `meta`, each in key order, so (keyspace, key)
//! strictly increases along the stream. A chunk holds pairs up to a target size (the pairs'
//! encoded bytes, [`CHUNK_BYTES_DEFAULT`] unless told); a pair never spans two chunks. Every
//! stream has at least one chunk: an empty store is one last chunk with no pairs.
//!
//! # What a reader refuses
//!
//! A flipped or torn byte fails its frame's checksum; the sequence numbers catch a chunk lost,
//! repeated or reordered; the stream CRC and total catch a chunk that belongs to another stream
//! yet fits the numbering; the last flag catches a stream cut short and anything after its end.
//! Every pair must be in a snapshot keyspace, in order, and its value must decode at its key
//! with that keyspace's decoder (an MVCC record also at its revision), and the `meta` applied
//! index must be the one in the header: corruption is caught before anything is restored.
//! Stream-level errors are [`StorageError::Inconsistent`], a pair that does not decode is
//! [`StorageError::Corrupt`]. The writer checks each pair the same way, so a member whose disk
//! rotted refuses to send rather than ship the rot.
//!
//! One blind spot, inherent in nesting CRC-32C: a stored value and its checksum form a CRC-32C
//! codeword, so swapping it for another valid value of the same length at the same key changes
//! neither the chunk's checksum nor the stream CRC. Only a chunk of another snapshot at the same
//! applied index passes the other checks, and two such snapshots hold the same state.

use super::backend::meta_key;
use super::codec::{self, CodecError, FRAME_PAYLOAD_BYTES_MAX, Kind, Reader, Writer};
use super::engine::{Engine, EngineRead, Result, Space, StorageError, WriteBatch};
use crate::mvcc::MetaKey;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;

/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The default target of a chunk's pair bytes.
pub const CHUNK_BYTES_DEFAULT: usize = 1 << 20;
/// The largest chunk target a writer takes, well inside a frame's payload limit.
pub const CHUNK_BYTES_MAX: usize = FRAME_PAYLOAD_BYTES_MAX / 2;
/// The most pairs one scan of a keyspace returns, to the writer and to a restore. A stored
/// value is at most a little over etcd's 1.5 MiB request limit, so a page is under 100 MiB
/// in the worst case, and a few KiB for typical values.
pub const SCAN_PAGE_PAIRS: usize = 64;
/// The keyspaces a snapshot holds, in stream order.
pub const SPACES: [Space; 3] = [Space::Mvcc, Space::Lease, Space::Meta];

/// Version, applied index, sequence, last flag, pair count.
const CHUNK_HEADER_BYTES: usize = 4 + 8 + 8 + 1 + 4;
/// Total pairs and stream CRC.
const CHUNK_TRAILER_BYTES: usize = 8 + 4;
const CRC_BYTES: usize = 4;
/// Keyspace code and the two length fields.
const PAIR_OVERHEAD_BYTES: usize = 1 + 4 + 4;
/// The largest pair a chunk can carry alone.
const PAIR_BYTES_MAX: usize = FRAME_PAYLOAD_BYTES_MAX - CHUNK_HEADER_BYTES - CHUNK_TRAILER_BYTES;

/// The keyspace's code in the stream (independent of [`Space`]'s declaration order).
fn space_code(space: Space) -> u8 {
    match space {
        Space::Mvcc => 2,
        Space::Lease => 3,
        Space::Meta => 4,
        Space::Log | Space::Raft => panic!("{space} is not part of a snapshot"),
    }
}

fn space_from_code(code: u8) -> Option<Space> {
    match code {
        2 => Some(Space::Mvcc),
        3 => Some(Space::Lease),
        4 => Some(Space::Meta),
        _ => None,
    }
}

/// A pair's encoded size in a chunk.
fn pair_bytes(key: &[u8], value: &[u8]) -> usize {
    PAIR_OVERHEAD_BYTES + key.len() + value.len()
}

/// The smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

fn broken(why: impl std::fmt::Display) -> StorageError {
    StorageError::Inconsistent(format!("snapshot stream: {why}"))
}

/// Checks a stored pair the way its keyspace's reader would: the value decodes at its key,
/// and an MVCC record sits at the revision it was written at.
pub(crate) fn check_pair(space: Space, key: &[u8], value: &[u8]) -> Result<()> {
    let corrupt = |e: CodecError| StorageError::corrupt(space, key, e);
    match space {
        Space::Mvcc => {
            let rev = codec::decode_revision_key(key).map_err(corrupt)?;
            let record = codec::decode_record(key, value).map_err(corrupt)?;
            if record.kv.mod_revision != rev.main {
                return Err(StorageError::Inconsistent(format!(
                    "record at revision {} says it was written at {}",
                    rev.main, record.kv.mod_revision
                )));
            }
        }
        Space::Lease => {
            codec::decode_lease(key, value).map_err(corrupt)?;
        }
        Space::Meta if key.starts_with(codec::MEMBER_KEY_PREFIX) => {
            codec::decode_member_key(key).ok_or_else(|| {
                StorageError::Inconsistent(format!(
                    "member key {} names no ID",
                    super::engine::hex(key)
                ))
            })?;
            codec::decode_member(key, value).map_err(corrupt)?;
        }
        Space::Meta if key.starts_with(codec::V2_KEY_PREFIX) => {
            codec::decode_v2_key(key).ok_or_else(|| {
                StorageError::Inconsistent(format!(
                    "v2 key {} is not a path",
                    super::engine::hex(key)
                ))
            })?;
            codec::decode_v2_node(key, value).map_err(corrupt)?;
        }
        Space::Meta if key == codec::AUTH_KEY => {
            let state = codec::decode_auth(key, value).map_err(corrupt)?;
            crate::auth::AuthStore::decode(&state).map_err(corrupt)?;
        }
        Space::Meta => {
            codec::decode_meta(key, value).map_err(corrupt)?;
        }
        Space::Log | Space::Raft => panic!("{space} is not part of a snapshot"),
    }
    Ok(())
}

/// Pairs must strictly increase in (keyspace, key): no pair twice, none out of place.
fn check_order(previous: Option<(Space, &[u8])>, space: Space, key: &[u8]) -> Result<()> {
    match previous {
        Some(p) if p >= (space, key) => Err(broken(format!(
            "pair {space}/{} after {}/{}: pairs out of order or repeated",
            super::engine::hex(key),
            p.0,
            super::engine::hex(p.1)
        ))),
        _ => Ok(()),
    }
}

/// The `meta` applied index of `view` (0 when it has none).
fn read_applied_index<R: EngineRead>(view: &R) -> Result<u64> {
    let key = meta_key(MetaKey::AppliedIndex);
    let Some(value) = view.get(Space::Meta, key)? else {
        return Ok(0);
    };
    let n =
        codec::decode_meta(key, &value).map_err(|e| StorageError::corrupt(Space::Meta, key, e))?;
    u64::try_from(n)
        .map_err(|_| StorageError::Inconsistent(format!("applied index {n} is negative")))
}

/// What every chunk starts with.
#[derive(Clone, Copy, Debug)]
struct ChunkHeader {
    version: u32,
    applied_index: u64,
    seq: u64,
}

/// Encodes one chunk and folds its payload into the stream CRC `crc`. `total` (the pairs in
/// the whole stream) is given for the last chunk only.
fn encode_chunk(
    header: ChunkHeader,
    pairs: &[(Space, Bytes, Bytes)],
    total: Option<u64>,
    crc: &mut u32,
) -> Bytes {
    let pairs_bytes: usize = pairs.iter().map(|(_, k, v)| pair_bytes(k, v)).sum();
    let mut w = Writer::with_capacity(CHUNK_HEADER_BYTES + pairs_bytes + CHUNK_TRAILER_BYTES);
    w.u32(header.version);
    w.u64(header.applied_index);
    w.u64(header.seq);
    w.bool(total.is_some());
    w.u32(u32::try_from(pairs.len()).expect("pairs in a chunk under 4 G"));
    for (space, key, value) in pairs {
        w.u8(space_code(*space));
        w.bytes(key);
        w.bytes(value);
    }
    if let Some(total) = total {
        w.u64(total);
    }
    let body = w.finish();
    *crc = crc32c::crc32c_append(*crc, &body);
    if total.is_none() {
        return codec::encode_frame(Kind::SnapshotChunk, &body);
    }
    let mut payload = BytesMut::with_capacity(body.len() + CRC_BYTES);
    payload.put_slice(&body);
    payload.put_u32_le(*crc);
    codec::encode_frame(Kind::SnapshotChunk, &payload)
}

/// Streams a snapshot of a view as encoded chunk frames, lazily: each `next` scans what one
/// chunk needs. After an error it yields nothing more.
///
/// Yields at least one chunk; concatenated, the chunks are a stream [`read_snapshot`] reads.
pub struct SnapshotWriter<V: EngineRead> {
    view: V,
    chunk_bytes: usize,
    /// Read from the view with the first chunk.
    applied_index: Option<u64>,
    /// The index in [`SPACES`] of the next keyspace to scan, and where in it.
    space_next: usize,
    from: Vec<u8>,
    page: VecDeque<(Space, Bytes, Bytes)>,
    previous: Option<(Space, Bytes)>,
    seq: u64,
    pairs: u64,
    crc: u32,
    done: bool,
}

impl<V: EngineRead> SnapshotWriter<V> {
    /// A writer of `view`'s snapshot in chunks of about `chunk_bytes` of pairs (a pair larger
    /// than that gets a chunk of its own).
    pub fn new(view: V, chunk_bytes: usize) -> SnapshotWriter<V> {
        assert!(
            (1..=CHUNK_BYTES_MAX).contains(&chunk_bytes),
            "chunk target {chunk_bytes} bytes outside 1..={CHUNK_BYTES_MAX}"
        );
        SnapshotWriter {
            view,
            chunk_bytes,
            applied_index: None,
            space_next: 0,
            from: Vec::new(),
            page: VecDeque::new(),
            previous: None,
            seq: 0,
            pairs: 0,
            crc: 0,
            done: false,
        }
    }

    /// Refills the page when it is empty. False when every keyspace has been read.
    fn fill(&mut self) -> Result<bool> {
        while self.page.is_empty() {
            let Some(&space) = SPACES.get(self.space_next) else {
                return Ok(false);
            };
            let page = self.view.scan(space, &self.from, None, SCAN_PAGE_PAIRS)?;
            assert!(
                page.len() <= SCAN_PAGE_PAIRS,
                "a scan returned past its limit"
            );
            if page.len() < SCAN_PAGE_PAIRS {
                self.space_next += 1;
                self.from.clear();
            } else {
                // The last key is checked (with its value) before the next scan starts after
                // it, so a misread key cannot send the cursor astray unnoticed.
                self.from = successor(&page[page.len() - 1].0);
            }
            self.page
                .extend(page.into_iter().map(|(k, v)| (space, k, v)));
        }
        Ok(true)
    }

    fn next_chunk(&mut self) -> Result<Bytes> {
        let applied_index = match self.applied_index {
            Some(a) => a,
            None => *self.applied_index.insert(read_applied_index(&self.view)?),
        };
        let mut pairs = Vec::new();
        let mut bytes = 0;
        let more = loop {
            if !self.fill()? {
                break false;
            }
            let (space, key, value) = self.page.front().expect("filled");
            let size = pair_bytes(key, value);
            if size > PAIR_BYTES_MAX {
                return Err(StorageError::Inconsistent(format!(
                    "{space} pair at key {} is {size} bytes, over the {PAIR_BYTES_MAX} a \
                     snapshot chunk carries",
                    super::engine::hex(key)
                )));
            }
            if !pairs.is_empty() && bytes + size > self.chunk_bytes {
                break true;
            }
            let (space, key, value) = self.page.pop_front().expect("filled");
            check_pair(space, &key, &value)?;
            check_order(
                self.previous.as_ref().map(|(s, k)| (*s, &k[..])),
                space,
                &key,
            )?;
            self.previous = Some((space, key.clone()));
            bytes += size;
            pairs.push((space, key, value));
        };
        self.pairs += pairs.len() as u64;
        let header = ChunkHeader {
            version: FORMAT_VERSION,
            applied_index,
            seq: self.seq,
        };
        let chunk = encode_chunk(header, &pairs, (!more).then_some(self.pairs), &mut self.crc);
        self.seq += 1;
        self.done = !more;
        Ok(chunk)
    }
}

impl<V: EngineRead> Iterator for SnapshotWriter<V> {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Result<Bytes>> {
        if self.done {
            return None;
        }
        let chunk = self.next_chunk();
        if chunk.is_err() {
            self.done = true;
        }
        Some(chunk)
    }
}

/// A snapshot of everything `engine` holds now, as one stream: the data of a Raft snapshot.
pub fn snapshot_bytes<E: Engine>(engine: &E) -> Result<Bytes> {
    let mut out = BytesMut::new();
    for chunk in SnapshotWriter::new(engine.view(), CHUNK_BYTES_DEFAULT) {
        out.put_slice(&chunk?);
    }
    Ok(out.freeze())
}

/// What a whole stream held, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The applied index the copy was taken at.
    pub applied_index: u64,
    /// Pairs in the stream.
    pub pairs: u64,
    /// One put per pair, in stream order: by keyspace ([`SPACES`] order), then key.
    pub batch: WriteBatch,
}

/// Reads a stream chunk by chunk, checking each as it arrives.
///
/// Call order: [`SnapshotReader::push`] every chunk, in order, then
/// [`SnapshotReader::finish`]. The first error stops the reader: every later call fails.
#[derive(Debug, Default)]
pub struct SnapshotReader {
    /// From the first chunk; every later one must agree.
    applied_index: Option<u64>,
    next_seq: u64,
    crc: u32,
    batch: WriteBatch,
    /// The applied index the `meta` pairs hold.
    meta_applied_index: Option<i64>,
    complete: bool,
    failed: bool,
}

impl SnapshotReader {
    /// A reader waiting for the first chunk.
    pub fn new() -> SnapshotReader {
        SnapshotReader::default()
    }

    /// Reads the next chunk: exactly one encoded frame, as [`SnapshotWriter`] yields it.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.stopped()?;
        let read = match codec::decode_exact(chunk, Kind::SnapshotChunk) {
            Ok(payload) => self.read_chunk(payload),
            Err(e) => Err(broken(format!("chunk {}: {e}", self.next_seq))),
        };
        self.failed = read.is_err();
        read
    }

    /// Whether the last chunk has been read.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The pairs of a stream whose last chunk was read.
    pub fn finish(self) -> Result<Restored> {
        self.stopped()?;
        if !self.complete {
            return Err(broken(match self.next_seq {
                0 => "no chunks".to_string(),
                n => format!("ends after chunk {}, without its last chunk", n - 1),
            }));
        }
        let applied_index = self.applied_index.expect("a complete stream has a header");
        debug_assert!(self.batch.ops.iter().all(|op| op.value.is_some()));
        Ok(Restored {
            applied_index,
            pairs: self.batch.ops.len() as u64,
            batch: self.batch,
        })
    }

    fn stopped(&self) -> Result<()> {
        if self.failed {
            return Err(broken("the reader stopped at an earlier error"));
        }
        Ok(())
    }

    /// Reads a payload from a frame already checked.
    fn push_payload(&mut self, payload: &[u8]) -> Result<()> {
        self.stopped()?;
        let read = self.read_chunk(payload);
        self.failed = read.is_err();
        read
    }

    fn read_chunk(&mut self, payload: &[u8]) -> Result<()> {
        let at = self.next_seq;
        if self.complete {
            return Err(broken(format!(
                "a chunk after the last one (chunk {})",
                at - 1
            )));
        }
        let malformed = |e: CodecError| broken(format!("chunk {at}: {e}"));
        let mut p = Reader::new(payload);
        let version = p.u32().map_err(malformed)?;
        if version != FORMAT_VERSION {
            return Err(broken(format!(
                "chunk {at} is format version {version}; this build reads version {FORMAT_VERSION}"
            )));
        }
        let applied_index = p.u64().map_err(malformed)?;
        let seq = p.u64().map_err(malformed)?;
        if seq != at {
            return Err(broken(format!(
                "chunk {seq} where chunk {at} was expected: a chunk was lost, repeated or \
                 reordered"
            )));
        }
        match self.applied_index {
            None => self.applied_index = Some(applied_index),
            Some(first) if first != applied_index => {
                return Err(broken(format!(
                    "chunk {at} is of a snapshot at applied index {applied_index}, the first \
                     chunk of one at {first}"
                )));
            }
            Some(_) => {}
        }
        let last = p.bool().map_err(malformed)?;
        let count = p.u32().map_err(malformed)? as usize;
        // Bound the count by the bytes left before allocating for it.
        if count > p.remaining() / PAIR_OVERHEAD_BYTES {
            return Err(broken(format!(
                "chunk {at}: {count} pairs run past the chunk"
            )));
        }
        self.batch.ops.reserve(count);
        for _ in 0..count {
            let code = p.u8().map_err(malformed)?;
            let space = space_from_code(code).ok_or_else(|| {
                broken(format!(
                    "chunk {at}: keyspace code {code} is not one a snapshot holds"
                ))
            })?;
            let key = p.bytes().map_err(malformed)?;
            let value = p.bytes().map_err(malformed)?;
            let previous = self.batch.ops.last().map(|op| (op.space, &op.key[..]));
            check_order(previous, space, &key)?;
            check_pair(space, &key, &value)?;
            if space == Space::Meta && key == meta_key(MetaKey::AppliedIndex) {
                let n = codec::decode_meta(&key, &value).expect("checked just above");
                self.meta_applied_index = Some(n);
            }
            self.batch.put(space, key, value);
        }
        if !last {
            p.finish().map_err(malformed)?;
            self.crc = crc32c::crc32c_append(self.crc, payload);
            self.next_seq += 1;
            return Ok(());
        }
        let total = p.u64().map_err(malformed)?;
        let stored = p.u32().map_err(malformed)?;
        p.finish().map_err(malformed)?;
        let computed = crc32c::crc32c_append(self.crc, &payload[..payload.len() - CRC_BYTES]);
        if stored != computed {
            return Err(broken(format!(
                "stream checksum mismatch: the last chunk says {stored:#010x}, the chunks read \
                 give {computed:#010x} (a chunk is missing, extra, or from another stream)"
            )));
        }
        let pairs = self.batch.ops.len() as u64;
        if total != pairs {
            return Err(broken(format!(
                "the last chunk counts {total} pairs, the stream held {pairs}"
            )));
        }
        let meta = self.meta_applied_index.unwrap_or(0);
        if i128::from(meta) != i128::from(applied_index) {
            return Err(broken(format!(
                "the chunks say applied index {applied_index}, the meta keyspace {meta}"
            )));
        }
        self.crc = computed;
        self.next_seq += 1;
        self.complete = true;
        Ok(())
    }
}

/// Reads a whole stream (chunks back to back, as [`snapshot_bytes`] writes it).
pub fn read_snapshot(bytes: &[u8]) -> Result<Restored> {
    let mut reader = SnapshotReader::new();
    let mut at = 0;
    while at < bytes.len() {
        let (kind, payload, used) = codec::decode_frame(&bytes[at..])
            .map_err(|e| broken(format!("chunk {} at byte {at}: {e}", reader.next_seq)))?;
        if kind != Kind::SnapshotChunk {
            return Err(broken(format!(
                "chunk {} at byte {at}: {}",
                reader.next_seq,
                CodecError::WrongKind {
                    expected: Kind::SnapshotChunk,
                    found: kind
                }
            )));
        }
        reader.push_payload(payload)?;
        at += used;
    }
    reader.finish()
}

/// Bytes per block of etcd's snapshot file envelope.
const ENVELOPE_BLOCK_BYTES: usize = 512;
/// Bytes of the SHA-256 digest that ends the envelope.
const ENVELOPE_DIGEST_BYTES: usize = 32;

fn sha256(bytes: &[u8]) -> [u8; ENVELOPE_DIGEST_BYTES] {
    <sha2::Sha256 as sha2::Digest>::digest(bytes).into()
}

/// Wraps a stream the way etcd's `Snapshot` RPC ends its database file: zeros up to a
/// multiple of 512 bytes, then the SHA-256 of everything before it. `etcdctl snapshot save`
/// refuses a download without that ending.
pub fn seal(stream: &[u8]) -> Vec<u8> {
    let padded = stream.len().div_ceil(ENVELOPE_BLOCK_BYTES) * ENVELOPE_BLOCK_BYTES;
    let mut out = Vec::with_capacity(padded + ENVELOPE_DIGEST_BYTES);
    out.extend_from_slice(stream);
    out.resize(padded, 0);
    let digest = sha256(&out);
    out.extend_from_slice(&digest);
    debug_assert_eq!(out.len() % ENVELOPE_BLOCK_BYTES, ENVELOPE_DIGEST_BYTES);
    out
}

/// The stream inside `file`: a sealed file (see [`seal`]) has its digest checked and its
/// padding removed; any other file is taken as a bare stream. The stream itself is checked
/// only when it is read.
pub fn unseal(file: &[u8]) -> Result<&[u8]> {
    if file.len() % ENVELOPE_BLOCK_BYTES != ENVELOPE_DIGEST_BYTES {
        return Ok(file);
    }
    let (body, digest) = file.split_at(file.len() - ENVELOPE_DIGEST_BYTES);
    if sha256(body)[..] != digest[..] {
        // A bare stream whose length happens to look sealed.
        return Ok(file);
    }
    // The stream ends with its last chunk; what follows is zero padding shorter than a block.
    let mut reader = SnapshotReader::new();
    let mut at = 0;
    while !reader.is_complete() {
        if at >= body.len() {
            return Err(broken("the sealed stream ends without its last chunk"));
        }
        let (kind, payload, used) = codec::decode_frame(&body[at..])
            .map_err(|e| broken(format!("chunk {} at byte {at}: {e}", reader.next_seq)))?;
        if kind != Kind::SnapshotChunk {
            return Err(broken(format!(
                "chunk {} at byte {at}: not a chunk",
                reader.next_seq
            )));
        }
        reader.push_payload(payload)?;
        at += used;
    }
    let padding = &body[at..];
    if padding.len() >= ENVELOPE_BLOCK_BYTES || padding.iter().any(|&b| b != 0) {
        return Err(broken(format!(
            "{} bytes after the stream's last chunk are not the envelope's padding",
            padding.len()
        )));
    }
    Ok(&body[..at])
}

/// The batch that makes `target`'s `mvcc`, `lease` and `meta` keyspaces hold exactly the
/// restored pairs: a delete of each key there that the snapshot lacks, then the puts.
///
/// The keys to delete are scanned and checked like the snapshot's own pairs (a key misread
/// would delete the wrong key and leave the real one), so a target whose keyspaces do not
/// decode is refused with [`StorageError::Corrupt`]: restore it into an empty engine instead.
/// Nothing may write `target` between this scan and the batch's write.
pub fn restore_batch<R: EngineRead>(target: &R, restored: Restored) -> Result<WriteBatch> {
    let puts = restored.batch;
    debug_assert_eq!(puts.ops.len() as u64, restored.pairs);
    debug_assert!(
        puts.ops
            .windows(2)
            .all(|w| (w[0].space, &w[0].key) < (w[1].space, &w[1].key))
    );
    let mut batch = WriteBatch::default();
    for space in SPACES {
        for_each_pair(target, space, |key, _| {
            let kept = puts
                .ops
                .binary_search_by(|op| (op.space, &op.key[..]).cmp(&(space, &key[..])))
                .is_ok();
            if !kept {
                batch.delete(space, key);
            }
            Ok(())
        })?;
    }
    batch.append(puts);
    Ok(batch)
}

/// Calls `f` with every pair of `space` in `view`, in key order, each checked as a snapshot's
/// pair is ([`StorageError::Corrupt`] or [`StorageError::Inconsistent`] stops the walk). The
/// keyspace is scanned in pages of [`SCAN_PAGE_PAIRS`], so only one page is held at a time.
pub(crate) fn for_each_pair<R: EngineRead>(
    view: &R,
    space: Space,
    mut f: impl FnMut(Bytes, Bytes) -> Result<()>,
) -> Result<()> {
    let mut from = Vec::new();
    loop {
        let page = view.scan(space, &from, None, SCAN_PAGE_PAIRS)?;
        assert!(
            page.len() <= SCAN_PAGE_PAIRS,
            "a scan returned past its limit"
        );
        let full = page.len() == SCAN_PAGE_PAIRS;
        let last = page.last().map(|(k, _)| successor(k));
        for (key, value) in page {
            check_pair(space, &key, &value)?;
            debug_assert!(
                key[..] >= from[..],
                "a scan returned a key before its start"
            );
            f(key, value)?;
        }
        match last {
            Some(next) if full => from = next,
            _ => return Ok(()),
        }
    }
}

/// Replaces `engine`'s `mvcc`, `lease` and `meta` keyspaces with the snapshot `bytes`, leaving
/// the Raft keyspaces alone: the whole stream is read and checked first, then the change is
/// one atomic batch, synced. Returns the snapshot's applied index.
///
/// Nothing else may write `engine` meanwhile (the member's apply side waits for it).
pub fn restore_into<E: Engine>(engine: &E, bytes: &[u8]) -> Result<u64> {
    let restored = read_snapshot(bytes)?;
    let applied_index = restored.applied_index;
    let pairs = restored.pairs;
    let batch = restore_batch(engine, restored)?;
    engine.write(batch)?;
    engine.sync()?;
    if cfg!(debug_assertions) {
        // Paired check: the keyspaces now hold exactly the snapshot's pairs (a read that fails
        // here is left to the member's next read to report).
        let held: Result<Vec<_>> = SPACES
            .iter()
            .map(|&s| engine.scan(s, &[], None, 0))
            .collect();
        if let Ok(held) = held {
            let held: usize = held.iter().map(Vec::len).sum();
            assert_eq!(held as u64, pairs, "a restore left keys the snapshot lacks");
        }
    }
    Ok(applied_index)
}

/// What `etcdctl snapshot status` shows of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// The applied index the copy was taken at.
    pub applied_index: u64,
    /// The store's current revision (the `meta` number; 0 when absent).
    pub revision: i64,
    /// MVCC records (every version and tombstone kept, as etcd counts its backend's keys).
    pub total_keys: u64,
    /// The stream's length.
    pub size_bytes: u64,
    /// CRC-32C of the whole stream, as stored or sent.
    pub hash: u32,
}

/// Reads and checks a whole stream, and sums it up.
pub fn status(bytes: &[u8]) -> Result<SnapshotStatus> {
    let restored = read_snapshot(bytes)?;
    let revision_key = meta_key(MetaKey::CurrentRevision);
    let mut revision = 0;
    let mut total_keys = 0;
    for op in &restored.batch.ops {
        match op.space {
            Space::Mvcc => total_keys += 1,
            Space::Meta if op.key == revision_key => {
                let value = op.value.as_ref().expect("restored pairs are puts");
                revision = codec::decode_meta(&op.key, value).expect("checked by the reader");
            }
            _ => {}
        }
    }
    Ok(SnapshotStatus {
        applied_index: restored.applied_index,
        revision,
        total_keys,
        size_bytes: bytes.len() as u64,
        hash: crc32c::crc32c(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{Backend, Batch, KeyValue, LeaseRecord, Record, Revision};
    use crate::storage::{DiskFaults, EngineBackend, SimDisk, stage_meta};
    use proptest::prelude::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::LazyLock;

    #[test]
    fn sealed_stream_round_trips_and_every_flipped_byte_is_refused() {
        let stream = snapshot_bytes(&store(7, 40, 1)).unwrap();
        let sealed = seal(&stream);
        assert_eq!(sealed.len() % ENVELOPE_BLOCK_BYTES, ENVELOPE_DIGEST_BYTES);
        assert!(sealed.len() - stream.len() < ENVELOPE_BLOCK_BYTES + ENVELOPE_DIGEST_BYTES);
        assert_eq!(unseal(&sealed).unwrap(), &stream[..]);
        assert_eq!(
            unseal(&stream).unwrap(),
            &stream[..],
            "a bare stream as it is"
        );
        for at in (0..sealed.len()).step_by(7) {
            let mut bad = sealed.clone();
            bad[at] ^= 0x10;
            let read = unseal(&bad).and_then(read_snapshot);
            assert!(read.is_err(), "a flipped byte at {at} was accepted");
        }
    }

    fn put(b: &mut Batch, rev: Revision, key: &str, value: &[u8], tombstone: bool) {
        let kv = KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            create_revision: rev.main,
            mod_revision: rev.main,
            version: 1,
            value: Bytes::copy_from_slice(value),
            lease: rev.main % 3,
        };
        b.puts.push((rev, Record { kv, tombstone }));
    }

    /// A store written through the MVCC backend, `revisions` revisions of it (values salted
    /// with `salt`), with leases and meta numbers, plus entries in the Raft keyspaces.
    fn store(seed: u64, revisions: i64, salt: u8) -> SimDisk {
        let disk = SimDisk::new(seed, DiskFaults::default());
        let mut backend = EngineBackend::new(disk.clone());
        for main in 1..=revisions {
            let mut b = Batch::default();
            let value = vec![salt ^ main as u8; (main % 13) as usize * 5];
            let key = format!("key/{}", main % 7);
            put(&mut b, Revision::new(main, 0), &key, &value, main % 11 == 0);
            if main % 4 == 0 {
                put(&mut b, Revision::new(main, 1), "other", &value, false);
            }
            b.meta.push((MetaKey::CurrentRevision, main));
            b.meta.push((MetaKey::AppliedIndex, main + 100));
            if main % 5 == 0 {
                let l = LeaseRecord {
                    id: main,
                    ttl_s: 30,
                    remaining_ms: 1000 * main as u64,
                };
                b.leases.push((main, Some(l)));
            }
            if main % 15 == 0 {
                b.leases.push((main - 10, None));
            }
            backend.write(b).unwrap();
        }
        let mut raft = WriteBatch::default();
        for i in 0..5u64 {
            raft.put(
                Space::Log,
                codec::index_key(i).to_vec(),
                Bytes::from(vec![seed as u8; 9]),
            );
            raft.put(
                Space::Raft,
                format!("raft{i}").into_bytes(),
                Bytes::from(vec![salt; 3]),
            );
        }
        disk.write(raft).unwrap();
        disk.sync().unwrap();
        disk
    }

    fn dump<R: EngineRead>(r: &R, space: Space) -> Vec<(Bytes, Bytes)> {
        r.scan(space, &[], None, 0).unwrap()
    }

    fn dumps<R: EngineRead>(r: &R) -> Vec<Vec<(Bytes, Bytes)>> {
        SPACES.iter().map(|&s| dump(r, s)).collect()
    }

    fn chunks<R: EngineRead>(view: R, chunk_bytes: usize) -> Vec<Bytes> {
        SnapshotWriter::new(view, chunk_bytes)
            .collect::<Result<_>>()
            .unwrap()
    }

    fn message(e: StorageError) -> String {
        e.to_string()
    }

    #[test]
    fn a_restore_replaces_the_state_machine_and_leaves_raft_alone() {
        let source = store(1, 40, 0);
        let parts = chunks(source.view(), 64);
        assert!(parts.len() > 40, "{} chunks", parts.len());
        let bytes = parts.concat();

        let target = store(2, 60, 0x5a);
        let mut extra = WriteBatch::default();
        stage_meta(&mut extra, Space::Raft, b"member_id", 7);
        target.write(extra).unwrap();
        assert_ne!(dump(&target, Space::Mvcc), dump(&source, Space::Mvcc));
        let raft_before = (dump(&target, Space::Log), dump(&target, Space::Raft));
        let writes = target.stats().writes;

        assert_eq!(restore_into(&target, &bytes), Ok(140));
        assert_eq!(target.stats().writes, writes + 1, "one atomic batch");
        assert_eq!(target.unsynced_batches(), 0, "synced");
        assert_eq!(dumps(&target), dumps(&source));
        assert_eq!(
            (dump(&target, Space::Log), dump(&target, Space::Raft)),
            raft_before
        );
        assert!(
            target.get(Space::Raft, b"member_id").unwrap().is_some(),
            "the member's identity is not the snapshot's"
        );
        let backend = EngineBackend::new(target.clone());
        assert_eq!(backend.meta(MetaKey::AppliedIndex), Ok(Some(140)));
        assert_eq!(
            backend.leases().unwrap().len(),
            dump(&source, Space::Lease).len()
        );

        // Another chunking of the same state reads as the same pairs.
        let whole = snapshot_bytes(&source).unwrap();
        assert_eq!(
            SnapshotWriter::new(source.view(), CHUNK_BYTES_DEFAULT).count(),
            1
        );
        assert_eq!(read_snapshot(&whole), read_snapshot(&bytes));
    }

    #[test]
    fn a_view_is_a_point_in_time() {
        let disk = store(3, 20, 1);
        let view = disk.view();
        let before = dumps(&disk);
        let mut backend = EngineBackend::new(disk.clone());
        let mut b = Batch::default();
        put(&mut b, Revision::new(21, 0), "late", b"v", false);
        b.deletes.push(Revision::new(1, 0));
        b.meta.push((MetaKey::AppliedIndex, 500));
        b.leases.push((5, None));
        backend.write(b).unwrap();
        assert_ne!(dumps(&disk), before);

        let bytes = chunks(view, 100).concat();
        assert_eq!(read_snapshot(&bytes).unwrap().applied_index, 120);
        let target = SimDisk::new(4, DiskFaults::default());
        assert_eq!(restore_into(&target, &bytes), Ok(120));
        assert_eq!(dumps(&target), before);
    }

    /// A view that counts its scans and checks they are bounded pages.
    struct Pages<R> {
        inner: R,
        scans: Rc<Cell<usize>>,
    }

    impl<R: EngineRead> EngineRead for Pages<R> {
        fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
            self.inner.get(space, key)
        }

        fn scan(
            &self,
            space: Space,
            from: &[u8],
            to: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<(Bytes, Bytes)>> {
            assert!((1..=SCAN_PAGE_PAIRS).contains(&limit), "limit {limit}");
            self.scans.set(self.scans.get() + 1);
            self.inner.scan(space, from, to, limit)
        }
    }

    #[test]
    fn the_writer_scans_lazily_in_bounded_pages() {
        let disk = store(5, 200, 0);
        let scans = Rc::new(Cell::new(0));
        let view = Pages {
            inner: disk.view(),
            scans: scans.clone(),
        };
        let mut writer = SnapshotWriter::new(view, 1);
        assert!(writer.next().unwrap().is_ok());
        assert_eq!(scans.get(), 1, "the first chunk needs the first page only");
        let mut parts = vec![];
        parts.extend(writer.map(Result::unwrap));
        let want: usize = SPACES
            .iter()
            .map(|&s| dump(&disk, s).len() / SCAN_PAGE_PAIRS + 1)
            .sum();
        assert_eq!(scans.get(), want);
        let pairs: usize = dumps(&disk).iter().map(Vec::len).sum();
        assert_eq!(parts.len() + 1, pairs, "one pair per chunk");
    }

    /// Encodes a chunk from the table in the module docs, independently of the writer.
    fn spec_chunk(
        (version, applied, seq): (u32, u64, u64),
        pairs: &[(u8, &[u8], &[u8])],
        total: Option<u64>,
        crc: &mut u32,
    ) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend(version.to_le_bytes());
        p.extend(applied.to_le_bytes());
        p.extend(seq.to_le_bytes());
        p.push(total.is_some() as u8);
        p.extend((pairs.len() as u32).to_le_bytes());
        for (code, key, value) in pairs {
            p.push(*code);
            p.extend((key.len() as u32).to_le_bytes());
            p.extend(*key);
            p.extend((value.len() as u32).to_le_bytes());
            p.extend(*value);
        }
        if let Some(total) = total {
            p.extend(total.to_le_bytes());
        }
        *crc = crc32c::crc32c_append(*crc, &p);
        if total.is_some() {
            p.extend(crc.to_le_bytes());
        }
        codec::encode_frame(Kind::SnapshotChunk, &p).to_vec()
    }

    #[test]
    fn the_stream_is_the_documented_format() {
        let disk = store(6, 6, 0);
        let pairs: Vec<(u8, Bytes, Bytes)> = SPACES
            .iter()
            .zip([2, 3, 4])
            .flat_map(|(&s, code)| dump(&disk, s).into_iter().map(move |(k, v)| (code, k, v)))
            .collect();
        let mut crc = 0;
        let mut want = Vec::new();
        for (seq, (code, key, value)) in pairs.iter().enumerate() {
            let last = (seq + 1 == pairs.len()).then_some(pairs.len() as u64);
            let pair = [(*code, &key[..], &value[..])];
            want.extend(spec_chunk((1, 106, seq as u64), &pair, last, &mut crc));
        }
        assert_eq!(chunks(disk.view(), 1).concat(), want);

        // An empty store: one last chunk without pairs.
        let mut crc = 0;
        let empty = spec_chunk((1, 0, 0), &[], Some(0), &mut crc);
        let disk = SimDisk::new(6, DiskFaults::default());
        assert_eq!(chunks(disk.view(), 1).concat(), empty);
        let restored = read_snapshot(&empty).unwrap();
        assert_eq!((restored.applied_index, restored.pairs), (0, 0));
    }

    static STREAM: LazyLock<Vec<Bytes>> = LazyLock::new(|| chunks(store(7, 12, 0).view(), 48));

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = STREAM.concat();
        assert!(STREAM.len() > 10);
        assert!(read_snapshot(&bytes).is_ok());
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                assert!(
                    read_snapshot(&bad).is_err(),
                    "byte {i} ^ {flip:#x} read as data"
                );
            }
        }
    }

    #[test]
    fn lost_repeated_reordered_cut_or_trailing_chunks_are_refused() {
        let parts = &*STREAM;
        let n = parts.len();
        for i in 0..n {
            let mut p = parts.clone();
            p.remove(i);
            assert!(read_snapshot(&p.concat()).is_err(), "chunk {i} lost");
            let mut p = parts.clone();
            p.insert(i, parts[i].clone());
            assert!(read_snapshot(&p.concat()).is_err(), "chunk {i} repeated");
            if i + 1 < n {
                let mut p = parts.clone();
                p.swap(i, i + 1);
                assert!(
                    read_snapshot(&p.concat()).is_err(),
                    "chunks {i} and {} swapped",
                    i + 1
                );
            }
        }
        let bytes = parts.concat();
        for cut in 0..bytes.len() {
            assert!(read_snapshot(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let e = read_snapshot(&parts[..n - 1].concat()).unwrap_err();
        assert!(message(e).contains("without its last chunk"));
        let mut more = bytes.clone();
        more.extend_from_slice(&parts[0]);
        let e = read_snapshot(&more).unwrap_err();
        assert!(message(e).contains("after the last one"));
        let mut more = bytes;
        more.push(0);
        assert!(read_snapshot(&more).is_err());
    }

    #[test]
    fn a_chunk_from_another_stream_is_refused() {
        let a = store(8, 30, 0);
        let b = store(8, 30, 0);
        // Same keys and numbering, one value changed: only the stream CRC can tell. (Its
        // length changes too: a same-length valid value is the documented blind spot.)
        let mut backend = EngineBackend::new(b.clone());
        let mut batch = Batch::default();
        put(&mut batch, Revision::new(3, 0), "key/3", &[0xee; 16], false);
        backend.write(batch).unwrap();
        let (pa, pb) = (chunks(a.view(), 64), chunks(b.view(), 64));
        assert_eq!(pa.len(), pb.len());
        let i = (0..pa.len()).find(|&i| pa[i] != pb[i]).unwrap();
        assert!(
            i + 1 < pa.len(),
            "the changed pair is not in the last chunk"
        );
        let mut spliced = pa.clone();
        spliced[i] = pb[i].clone();
        let e = read_snapshot(&spliced.concat()).unwrap_err();
        assert!(message(e).contains("stream checksum mismatch"));

        // One of a snapshot at another applied index is refused when it arrives.
        let c = chunks(store(8, 31, 0).view(), 64);
        let mut reader = SnapshotReader::new();
        reader.push(&pa[0]).unwrap();
        let e = reader.push(&c[1]).unwrap_err();
        assert!(message(e).contains("applied index 131"));
    }

    /// A stream of one chunk at applied index `applied` holding `pairs`.
    fn one_chunk(applied: u64, pairs: &[(u8, &[u8], &[u8])]) -> Vec<u8> {
        spec_chunk((1, applied, 0), pairs, Some(pairs.len() as u64), &mut 0)
    }

    #[test]
    fn the_reader_refuses_what_the_format_forbids() {
        let ak = meta_key(MetaKey::AppliedIndex);
        let av = codec::encode_meta(ak, 5);
        let applied: (u8, &[u8], &[u8]) = (4, ak, &av);
        assert_eq!(
            read_snapshot(&one_chunk(5, &[applied]))
                .unwrap()
                .applied_index,
            5
        );

        let err = |bytes: &[u8], want: &str| {
            let e = message(read_snapshot(bytes).unwrap_err());
            assert!(e.contains(want), "{e:?} does not say {want:?}");
        };
        err(
            &spec_chunk((2, 5, 0), &[applied], Some(1), &mut 0),
            "version 2",
        );
        err(
            &spec_chunk((1, 5, 1), &[applied], Some(1), &mut 0),
            "chunk 1 where chunk 0",
        );
        for code in [0, 1, 5, 255] {
            err(&one_chunk(5, &[(code, ak, &av)]), "keyspace code");
        }
        let other = codec::encode_meta(b"other", 5);
        err(&one_chunk(5, &[(4, ak, &other)]), "corrupt record in meta");
        let rev = codec::revision_key(Revision::new(9, 0));
        let record = Record {
            kv: KeyValue {
                mod_revision: 8,
                ..KeyValue::default()
            },
            tombstone: false,
        };
        let wrong = codec::encode_record(&rev, &record);
        err(
            &one_chunk(5, &[(2, &rev, &wrong), applied]),
            "says it was written at 8",
        );
        let bv = codec::encode_meta(b"b", 1);
        err(&one_chunk(5, &[(4, b"b", &bv), applied]), "out of order");
        err(&one_chunk(5, &[applied, applied]), "out of order");
        err(&one_chunk(6, &[applied]), "the meta keyspace 5");
        err(&one_chunk(3, &[]), "the meta keyspace 0");
        err(
            &spec_chunk((1, 5, 0), &[applied], Some(2), &mut 0),
            "counts 2 pairs",
        );
        err(
            &spec_chunk((1, 5, 0), &[applied], Some(1), &mut 1),
            "stream checksum",
        );
        err(&[], "no chunks");
        err(
            &codec::encode_frame(Kind::Meta, &[0; 8]),
            "Meta where SnapshotChunk",
        );

        // Malformed payloads behind a good frame checksum.
        let good = one_chunk(5, &[applied]);
        let payload = codec::decode_exact(&good, Kind::SnapshotChunk).unwrap();
        let reframe = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut p = payload.to_vec();
            edit(&mut p);
            codec::encode_frame(Kind::SnapshotChunk, &p)
        };
        err(&reframe(&|p| p[20] = 2), "flag not 0 or 1");
        err(
            &reframe(&|p| p[21..25].copy_from_slice(&u32::MAX.to_le_bytes())),
            "run past",
        );
        err(&reframe(&|p| p.truncate(10)), "runs past the payload");
        err(&reframe(&|p| p.push(0)), "bytes after the record");
        let last = payload.len() - 1;
        err(&reframe(&|p| p[last] ^= 1), "stream checksum");
    }

    #[test]
    fn the_reader_stops_at_its_first_error_and_at_the_last_chunk() {
        let parts = &*STREAM;
        let mut reader = SnapshotReader::new();
        for p in &parts[..parts.len() - 1] {
            reader.push(p).unwrap();
            assert!(!reader.is_complete());
        }
        reader.push(&parts[parts.len() - 1]).unwrap();
        assert!(reader.is_complete());
        assert!(reader.push(&parts[0]).is_err(), "a chunk after the last");
        assert!(reader.push(&parts[0]).is_err(), "stopped");
        assert!(reader.finish().is_err());

        let mut reader = SnapshotReader::new();
        let mut bad = parts[0].to_vec();
        bad[8] ^= 1;
        assert!(reader.push(&bad).is_err());
        assert!(
            reader.push(&parts[0]).is_err(),
            "a good chunk after a bad one"
        );
        assert!(reader.finish().is_err());

        let mut reader = SnapshotReader::new();
        for p in parts {
            reader.push(p).unwrap();
        }
        assert_eq!(reader.finish(), read_snapshot(&parts.concat()));
    }

    #[test]
    fn status_sums_up_a_stream() {
        let disk = store(9, 30, 0);
        let bytes = snapshot_bytes(&disk).unwrap();
        assert_eq!(
            status(&bytes),
            Ok(SnapshotStatus {
                applied_index: 130,
                revision: 30,
                total_keys: dump(&disk, Space::Mvcc).len() as u64,
                size_bytes: bytes.len() as u64,
                hash: crc32c::crc32c(&bytes),
            })
        );
        assert!(status(&bytes[1..]).is_err());
    }

    #[test]
    fn rot_stops_a_send_and_a_restore_before_anything_is_written() {
        let source = store(10, 10, 0);
        let key = source.keys(Space::Mvcc)[3].clone();
        assert!(source.rot(Space::Mvcc, &key, 77));
        let mut writer = SnapshotWriter::new(source.view(), 64);
        let results: Vec<_> = writer.by_ref().collect();
        assert!(matches!(
            results.last(),
            Some(Err(StorageError::Corrupt {
                space: Space::Mvcc,
                ..
            }))
        ));
        assert!(results[..results.len() - 1].iter().all(Result::is_ok));
        assert!(writer.next().is_none(), "nothing after an error");

        let good = snapshot_bytes(&store(11, 10, 0)).unwrap();
        let target = store(12, 5, 1);
        let lease = target.keys(Space::Lease)[0].clone();
        assert!(target.rot(Space::Lease, &lease, 3));
        let (before, writes) = (dumps(&target), target.stats().writes);
        assert!(matches!(
            restore_into(&target, &good),
            Err(StorageError::Corrupt {
                space: Space::Lease,
                ..
            })
        ));
        let mut bad = good.to_vec();
        bad[30] ^= 4;
        assert!(restore_into(&target, &bad).is_err());
        assert_eq!((dumps(&target), target.stats().writes), (before, writes));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn any_store_round_trips_and_any_flipped_byte_is_refused(
            revisions in 0i64..30,
            chunk_bytes in 1usize..400,
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let source = store(13, revisions, 3);
            let bytes = chunks(source.view(), chunk_bytes).concat();
            let target = store(14, 7, 9);
            prop_assert_eq!(restore_into(&target, &bytes), Ok(revisions as u64 + 100 * (revisions > 0) as u64));
            prop_assert_eq!(dumps(&target), dumps(&source));
            let mut bad = bytes.clone();
            let i = at.index(bad.len());
            bad[i] ^= flip;
            prop_assert!(read_snapshot(&bad).is_err(), "byte {} ^ {:#x} read as data", i, flip);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = read_snapshot(&bytes);
            let _ = status(&bytes);
            let mut reader = SnapshotReader::new();
            let _ = reader.push(&bytes);
            let _ = reader.finish();
        }

        #[test]
        fn arbitrary_payloads_in_good_frames_never_panic(
            last in any::<bool>(),
            count in 0u32..4,
            rest in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            // A good header, then anything: the frame checksum passes, the parser is tested.
            let mut p = Vec::new();
            p.extend(FORMAT_VERSION.to_le_bytes());
            p.extend(0u64.to_le_bytes());
            p.extend(0u64.to_le_bytes());
            p.push(last as u8);
            p.extend(count.to_le_bytes());
            p.extend(rest);
            let _ = read_snapshot(&codec::encode_frame(Kind::SnapshotChunk, &p));
        }
    }
}
