//! The Raft log's own file (the plan: `docs/raft-log-file.md`): what a record holds, how a
//! segment's bytes read back into records, the log a run of records describes, and [`Wal`],
//! which writes records into the segments of a [`WalDir`] and reads them back on open. Which
//! records a Ready makes, and the order of writes against the state machine's store, is
//! [`super::RaftStore`]'s business; opening, writing and syncing files is the [`WalDir`]'s.
//!
//! A segment is a run of [`codec`] frames of kind [`Kind::WalRecord`], then zeros (the
//! preallocated rest of the file) or its end. A frame cannot start with a zero byte (the
//! magic), so the first zero where a frame should start is the end of what was written.
//! A crash keeps a prefix of what was written since the last sync, so a torn record is the
//! last thing in its segment: a frame that fails to read with no whole record anywhere after
//! it, in the last segment, is a torn tail, never acknowledged, and is cut. Anything else
//! that fails to read is corruption: a bad frame with a whole record after it, a bad frame in
//! a segment before the last (a segment is synced whole before the next one starts),
//! anything but zeros after such a segment's end, and a frame that passes its checksum and
//! does not hold a record.
//!
//! The one case this cannot tell apart: rot in the very last record of the last segment
//! reads as a torn write, and that record is dropped (etcd's WAL has the same limit).
//!
//! Each segment opens with a record of the hard state as of its start, so that old segments
//! can go once the state machine's snapshot covers them ([`Wal::release_through`]); the log
//! is read from that snapshot ([`read_log`]'s `start`), not from the first record written.

use super::codec::{self, CodecError, Kind, Reader, Writer};
use super::engine::{Result, StorageError};
use super::raft_store::check_follows;
use crate::raft::{Entry, HardState};
use bytes::Bytes;

/// One record of the log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalRecord {
    /// What a Ready persists: its new entries (the first may replace the log from its index
    /// on, as a new leader's do) and its hard state, whole or not at all.
    Ready {
        /// Entries in index order, contiguous.
        entries: Vec<Entry>,
        /// The hard state, when it changed.
        hard_state: Option<HardState>,
    },
    /// A snapshot was installed: the log now starts after `index` (of `term`), and every
    /// entry after it goes (a compaction writes no record: the log is read from the state
    /// machine's snapshot).
    Reset {
        /// The last index the snapshot covers.
        index: u64,
        /// Its term.
        term: u64,
    },
}

const READY: u8 = 1;
const RESET: u8 = 2;

impl WalRecord {
    /// The record as one checksummed frame.
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::with_capacity(64);
        match self {
            WalRecord::Ready {
                entries,
                hard_state,
            } => {
                w.u8(READY);
                w.bool(hard_state.is_some());
                if let Some(hs) = hard_state {
                    codec::write_hard_state(&mut w, hs);
                }
                w.u32(u32::try_from(entries.len()).expect("a Ready under 4 G entries"));
                for e in entries {
                    codec::write_entry(&mut w, e);
                }
            }
            WalRecord::Reset { index, term } => {
                w.u8(RESET);
                w.u64(*index);
                w.u64(*term);
            }
        }
        codec::encode_frame(Kind::WalRecord, &w.finish())
    }

    /// The hard state after this record, given the one before it: a Ready's own when it
    /// carries one; after a Reset, its index at least committed (what a snapshot covers is).
    fn hard_state_after(&self, before: HardState) -> HardState {
        match self {
            WalRecord::Ready { hard_state, .. } => hard_state.unwrap_or(before),
            WalRecord::Reset { index, .. } => HardState {
                commit: before.commit.max(*index),
                ..before
            },
        }
    }

    /// Parses a record's payload (a frame that passed its checksum).
    fn decode(payload: &[u8]) -> Result<WalRecord, CodecError> {
        let mut p = Reader::new(payload);
        let record = match p.u8()? {
            READY => {
                let hard_state = if p.bool()? {
                    Some(codec::read_hard_state(&mut p)?)
                } else {
                    None
                };
                let n = p.u32()? as usize;
                // Bound the count by the bytes left before allocating for it.
                if n > p.remaining() / codec::ENTRY_BYTES_MIN {
                    return Err(CodecError::Malformed {
                        why: "entry count runs past the record",
                    });
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(codec::read_entry(&mut p)?);
                }
                WalRecord::Ready {
                    entries,
                    hard_state,
                }
            }
            RESET => WalRecord::Reset {
                index: p.u64()?,
                term: p.u64()?,
            },
            _ => {
                return Err(CodecError::Malformed {
                    why: "log record kind",
                });
            }
        };
        p.finish()?;
        Ok(record)
    }
}

/// How a segment's written part ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentEnd {
    /// At a zero byte where a frame would start, or at the end of the bytes.
    Clean,
    /// At a frame that does not read (torn, or corrupt): what the reader found there.
    Torn(CodecError),
}

/// What one segment holds: its whole records, where they end, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The records, in the order written.
    pub records: Vec<WalRecord>,
    /// The bytes the records take: where the next record would be written.
    pub written_bytes: usize,
    /// How the written part ended.
    pub end: SegmentEnd,
}

/// Why a log file does not read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    /// A frame passed its checksum but does not hold a record, or a segment before the last
    /// ends in bytes that do not read: the disk returned something other than what was
    /// synced.
    #[error("log segment {segment} is corrupt at byte {at}: {why}")]
    Corrupt {
        /// The segment's position among those read.
        segment: usize,
        /// The offset of the bad frame.
        at: usize,
        /// What the reader found.
        why: CodecError,
    },
    /// The records do not describe a log: an entry leaves a gap or goes back in term.
    #[error("log segment {segment}: {why}")]
    Inconsistent {
        /// The segment's position among those read.
        segment: usize,
        /// What is wrong.
        why: String,
    },
}

/// Reads the records of one segment, stopping at the end of what was written. An error is a
/// frame that passed its checksum and does not hold a record, with its offset.
pub fn read_segment(buf: &[u8]) -> Result<Segment, (usize, CodecError)> {
    let mut records = Vec::new();
    let mut at = 0;
    let end = loop {
        if at == buf.len() || buf[at] == 0 {
            break SegmentEnd::Clean;
        }
        match codec::decode_frame(&buf[at..]) {
            Ok((Kind::WalRecord, payload, used)) => {
                // A frame that passed its checksum was written whole: one that does not
                // parse is not a torn write.
                records.push(WalRecord::decode(payload).map_err(|e| (at, e))?);
                at += used;
            }
            Ok((found, _, _)) => {
                let why = CodecError::WrongKind {
                    expected: Kind::WalRecord,
                    found,
                };
                return Err((at, why));
            }
            // Found after the checksum passed: a whole frame of no known kind.
            Err(e @ CodecError::UnknownKind { .. }) => return Err((at, e)),
            // A crash keeps a prefix of what was written since the last sync, so a torn
            // frame is the last thing in its segment: a whole record after it means this
            // frame was written whole and went bad since.
            Err(e) if record_after(buf, at + 1) => return Err((at, e)),
            Err(e) => break SegmentEnd::Torn(e),
        }
    };
    Ok(Segment {
        records,
        written_bytes: at,
        end,
    })
}

/// Whether a whole record starts anywhere in `buf` from `from` on.
fn record_after(buf: &[u8], from: usize) -> bool {
    (from..buf.len()).any(|p| {
        buf[p] == codec::MAGIC
            && matches!(codec::decode_frame(&buf[p..]),
                Ok((Kind::WalRecord, payload, _)) if WalRecord::decode(payload).is_ok())
    })
}

/// The log that a run of records describes, read from where the state machine's snapshot
/// says the log starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalLog {
    /// The index and term the log starts after (the snapshot's), `(0, 0)` before any.
    pub start: (u64, u64),
    /// The entries after `start`, contiguous, terms never decreasing.
    pub entries: Vec<Entry>,
    /// The last hard state recorded.
    pub hard_state: HardState,
}

impl WalLog {
    /// An empty log that starts after `start` (index, term): the snapshot the state machine
    /// holds, which records older than it may reach behind.
    pub fn starting_after(start: (u64, u64)) -> WalLog {
        WalLog {
            start,
            ..WalLog::default()
        }
    }

    /// The index of the last entry (the start's when there is none).
    pub fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.start.0, |e| e.index)
    }

    /// The term of the entry at `index`, if the log holds it (the start's included).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.start.0 {
            return Some(self.start.1);
        }
        let offset = index.checked_sub(self.start.0)?.checked_sub(1)?;
        self.entries
            .get(usize::try_from(offset).ok()?)
            .map(|e| e.term)
    }

    /// Applies one record, as Raft's storage took it when it was written. A record that does
    /// not fit the log is refused and leaves the log as it was.
    ///
    /// A Ready's entries replace the log from their first index on. One that starts at or
    /// before the start was written before the snapshot: it still drops every entry after
    /// the start that earlier records wrote, and of its own it keeps those after the start
    /// when it holds the start's entry with the start's term (if it holds it with another
    /// term, a later record rewrote the start and says what follows). A Reset is an
    /// installed snapshot: every entry after it goes, and the start moves up to it.
    pub fn apply(&mut self, record: WalRecord) -> Result<(), String> {
        let hard_state = record.hard_state_after(self.hard_state);
        match record {
            WalRecord::Ready { entries, .. } => {
                if let Some(first) = entries.first() {
                    let from = first.index;
                    let last = self.last_index();
                    if from == 0 || from - 1 > last {
                        return Err(format!(
                            "entries from {from} do not follow the log (up to {last})"
                        ));
                    }
                    if from > self.start.0 {
                        let term = self.term_at(from - 1).expect("from - 1 is in the log");
                        check_follows((from - 1, term), &entries)?;
                        self.entries.truncate((from - self.start.0 - 1) as usize);
                        self.entries.extend(entries);
                    } else {
                        check_follows((from - 1, 0), &entries)?;
                        let at_start = entries.iter().position(|e| e.index == self.start.0);
                        let kept = match at_start {
                            Some(i) if entries[i].term == self.start.1 => &entries[i + 1..],
                            _ => &[],
                        };
                        check_follows(self.start, kept)?;
                        self.entries = kept.to_vec();
                    }
                }
            }
            WalRecord::Reset { index, term } => {
                let (at, at_term) = self.start;
                if (index == at && term != at_term) || (index > at && term < at_term) {
                    return Err(format!(
                        "a snapshot at {index} (term {term}) against the start {at} (term {at_term})"
                    ));
                }
                if index > at {
                    self.start = (index, term);
                }
                self.entries.clear();
            }
        }
        self.hard_state = hard_state;
        Ok(())
    }
}

/// Reads segments in the order written into the log they describe, from `start` (the
/// snapshot the state machine holds). A torn end is allowed in the last segment only; it is
/// reported with the number of whole bytes before it, where the owner writes next.
pub fn read_log(
    start: (u64, u64),
    segments: &[&[u8]],
) -> Result<(WalLog, Option<usize>), WalError> {
    let mut log = WalLog::starting_after(start);
    let mut torn_at = None;
    for (i, buf) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let segment = read_segment(buf).map_err(|(at, why)| WalError::Corrupt {
            segment: i,
            at,
            why,
        })?;
        match segment.end {
            SegmentEnd::Torn(why) if !last => {
                return Err(WalError::Corrupt {
                    segment: i,
                    at: segment.written_bytes,
                    why,
                });
            }
            SegmentEnd::Torn(_) => torn_at = Some(segment.written_bytes),
            SegmentEnd::Clean if !last && buf[segment.written_bytes..].iter().any(|b| *b != 0) => {
                return Err(WalError::Corrupt {
                    segment: i,
                    at: segment.written_bytes,
                    why: CodecError::Malformed {
                        why: "bytes after the end of a closed segment",
                    },
                });
            }
            SegmentEnd::Clean => {}
        }
        for r in segment.records {
            log.apply(r)
                .map_err(|why| WalError::Inconsistent { segment: i, why })?;
        }
    }
    Ok((log, torn_at))
}

/// A segment's name: its place in the order written, and the first index its records may
/// rewrite (the first entry of the record that opened it, or the index after the log's last
/// when that record had no entries). Everything the log holds from that index on was written
/// into this segment or a later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    /// The segment's sequence number, one more than the segment before it.
    pub seq: u64,
    /// The first index the segment's records may rewrite.
    pub first_index: u64,
}

impl SegmentName {
    /// The segment's file name: both numbers in 16 hex digits, as `<seq>-<index>.wal`.
    pub fn file_name(&self) -> String {
        format!("{:016x}-{:016x}.wal", self.seq, self.first_index)
    }

    /// The name a file name spells, if it is one.
    pub fn parse(file_name: &str) -> Option<SegmentName> {
        let stem = file_name.strip_suffix(".wal")?;
        let (seq, index) = stem.split_once('-')?;
        if seq.len() != 16 || index.len() != 16 {
            return None;
        }
        Some(SegmentName {
            seq: u64::from_str_radix(seq, 16).ok()?,
            first_index: u64::from_str_radix(index, 16).ok()?,
        })
    }
}

/// Where a log file's segments are kept: a directory of files
/// (`oxcd::storage::wal_file::FileWalDir`), or a zone of the simulated disk
/// ([`super::SimWalDir`]). A segment is created at its full length, zero-filled, and written
/// in place; a write is durable once a sync of its segment returns.
pub trait WalDir {
    /// The segments there, in the order written.
    fn list(&self) -> Result<Vec<SegmentName>>;
    /// A segment's bytes, its zero-filled rest included.
    fn read(&self, name: SegmentName) -> Result<Vec<u8>>;
    /// Creates `name` holding `len` zero bytes, durably (its blocks allocated and written,
    /// and its entry in the directory).
    fn create(&mut self, name: SegmentName, len: u64) -> Result<()>;
    /// Writes `bytes` at `offset` of `name`, within its length.
    fn write(&mut self, name: SegmentName, offset: u64, bytes: &[u8]) -> Result<()>;
    /// Makes every write to `name` so far durable.
    fn sync(&mut self, name: SegmentName) -> Result<()>;
    /// Removes `name`. Need not be durable: a segment that comes back after a crash is read
    /// and skipped like any older one.
    fn remove(&mut self, name: SegmentName) -> Result<()>;
    /// How long a new segment is made.
    fn segment_bytes(&self) -> u64;
}

/// The Raft log's file: appends records to the last segment of a [`WalDir`], starts a new
/// segment when one is full, and drops old segments once the state machine's snapshot covers
/// them. Opening reads the whole log back ([`Wal::open`]).
///
/// Call order: [`Wal::append`] the records of a Ready (one write), [`Wal::sync`] before
/// anything that depends on them leaves the member; [`Wal::release_through`] only after the
/// snapshot at that index is durable in the state machine's store.
#[derive(Debug)]
pub struct Wal<D: WalDir> {
    dir: D,
    /// The segments, in order; the last is written to.
    segments: Vec<SegmentName>,
    /// Where the next record goes in the last segment.
    offset: u64,
    /// The last segment's length.
    len: u64,
    /// The hard state as of the records written: each new segment opens with it, so that the
    /// segments that recorded it can go.
    hard_state: HardState,
    /// The log's last index as of the records written.
    last_index: u64,
}

fn inconsistent(e: WalError) -> StorageError {
    StorageError::Inconsistent(format!("the Raft log file: {e}"))
}

impl<D: WalDir> Wal<D> {
    /// Reads the log in `dir` from `start` (the snapshot the state machine holds durably) and
    /// readies it for appending. The last segment's written part ends at its last whole
    /// record: what follows (a torn write's bytes) is zeroed and synced first, so a record
    /// written there is never followed by junk, and a last segment that holds no whole record
    /// goes. Corruption (a bad frame anywhere else, a record that does not fit the log) is an
    /// error: nothing is served from a log that does not read.
    pub fn open(mut dir: D, start: (u64, u64)) -> Result<(Wal<D>, WalLog)> {
        let mut segments = dir.list()?;
        let mut bufs = Vec::with_capacity(segments.len());
        for name in &segments {
            bufs.push(dir.read(*name)?);
        }
        let mut written = 0;
        while let Some(buf) = bufs.last() {
            // A frame that does not parse is left for `read_log` to report.
            written = read_segment(buf).map_or(usize::MAX, |seg| seg.written_bytes);
            if written > 0 {
                break;
            }
            // Created, and cut short before its first record was synced: it holds nothing.
            let name = segments.pop().expect("a last segment");
            bufs.pop();
            dir.remove(name)?;
        }
        let refs: Vec<&[u8]> = bufs.iter().map(|b| b.as_slice()).collect();
        let (log, torn) = read_log(start, &refs).map_err(inconsistent)?;
        if let Some(at) = torn {
            written = at;
        }
        let len = bufs.last().map_or(0, |b| b.len() as u64);
        if let (Some(name), Some(buf)) = (segments.last(), bufs.last())
            && let Some(junk_end) = buf.iter().rposition(|b| *b != 0).filter(|e| *e >= written)
        {
            dir.write(*name, written as u64, &vec![0; junk_end + 1 - written])?;
            dir.sync(*name)?;
        }
        let wal = Wal {
            dir,
            segments,
            offset: written as u64,
            len,
            hard_state: log.hard_state,
            last_index: log.last_index(),
        };
        Ok((wal, log))
    }

    /// Whether no record was ever kept: a log file that has never been written.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[SegmentName] {
        &self.segments
    }

    /// Writes `records` after the last one, in one write (a new segment first when they do
    /// not fit in the last one's room). Durable after [`Wal::sync`].
    pub fn append(&mut self, records: &[WalRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut bytes: Vec<u8> = records.iter().flat_map(|r| r.encode()).collect();
        if self.segments.is_empty() || self.offset + bytes.len() as u64 > self.len {
            let first_index = match &records[0] {
                WalRecord::Ready { entries, .. } => entries
                    .first()
                    .map_or(self.last_index.saturating_add(1), |e| e.index),
                WalRecord::Reset { index, .. } => index.saturating_add(1),
            };
            if let Some(last) = self.segments.last() {
                // A segment is synced whole before the next starts: only the last may tear.
                self.dir.sync(*last)?;
            }
            let header = WalRecord::Ready {
                entries: Vec::new(),
                hard_state: Some(self.hard_state),
            }
            .encode();
            let name = SegmentName {
                seq: self.segments.last().map_or(1, |s| s.seq + 1),
                first_index,
            };
            let len = self
                .dir
                .segment_bytes()
                .max((header.len() + bytes.len()) as u64);
            self.dir.create(name, len)?;
            self.segments.push(name);
            self.offset = 0;
            self.len = len;
            bytes.splice(0..0, header.iter().copied());
        }
        let last = *self.segments.last().expect("a segment to write");
        self.dir.write(last, self.offset, &bytes)?;
        self.offset += bytes.len() as u64;
        for r in records {
            self.hard_state = r.hard_state_after(self.hard_state);
            match r {
                WalRecord::Ready { entries, .. } => {
                    if let Some(e) = entries.last() {
                        self.last_index = e.index;
                    }
                }
                WalRecord::Reset { index, .. } => self.last_index = *index,
            }
        }
        Ok(())
    }

    /// Makes every record appended so far durable.
    pub fn sync(&mut self) -> Result<()> {
        match self.segments.last() {
            Some(last) => self.dir.sync(*last),
            None => Ok(()),
        }
    }

    /// How many of the oldest segments a log read from a snapshot at `index` no longer needs:
    /// those before a segment whose records rewrite the log from `index + 1` or lower.
    pub fn releasable(&self, index: u64) -> usize {
        let target = index.saturating_add(1);
        self.segments
            .iter()
            .skip(1)
            .rposition(|s| s.first_index <= target)
            .map_or(0, |i| i + 1)
    }

    /// Removes the segments that a log read from a snapshot at `index` no longer needs. The
    /// snapshot must be durable first (the state machine's store synced): opening reads from
    /// it. Returns how many went.
    pub fn release_through(&mut self, index: u64) -> Result<usize> {
        let n = self.releasable(index);
        for name in self.segments.drain(..n).collect::<Vec<_>>() {
            self.dir.remove(name)?;
        }
        Ok(n)
    }

    /// The directory underneath.
    pub fn dir(&self) -> &D {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::EntryKind;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: if index.is_multiple_of(7) {
                EntryKind::ConfChange
            } else {
                EntryKind::Normal
            },
            data: Bytes::from(vec![index as u8; (index % 5) as usize * 3]),
        }
    }

    fn ready(from: u64, to: u64, term: u64, commit: Option<u64>) -> WalRecord {
        WalRecord::Ready {
            entries: (from..=to).map(|i| ent(i, term)).collect(),
            hard_state: commit.map(|commit| HardState {
                term,
                vote: 1,
                commit,
            }),
        }
    }

    fn indexes(log: &WalLog) -> Vec<(u64, u64)> {
        log.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn records_read_back_as_written_then_zeros_end_the_segment() {
        let records = vec![
            ready(1, 3, 1, Some(2)),
            ready(4, 4, 1, None),
            WalRecord::Reset { index: 4, term: 1 },
            ready(5, 6, 2, Some(5)),
        ];
        let mut buf: Vec<u8> = records.iter().flat_map(|r| r.encode()).collect();
        let written = buf.len();
        buf.extend(vec![0; 100]);
        let seg = read_segment(&buf).unwrap();
        assert_eq!(seg.records, records);
        assert_eq!(seg.written_bytes, written);
        assert_eq!(seg.end, SegmentEnd::Clean);
        let (log, torn) = read_log((0, 0), &[&buf]).unwrap();
        assert_eq!(torn, None);
        assert_eq!(log.start, (4, 1));
        assert_eq!(indexes(&log), vec![(5, 2), (6, 2)]);
        assert_eq!(log.hard_state.commit, 5);
    }

    #[test]
    fn a_new_leaders_entries_replace_the_tail_and_a_gap_is_refused() {
        let mut log = WalLog::default();
        log.apply(ready(1, 5, 1, None)).unwrap();
        log.apply(ready(3, 3, 2, None)).unwrap();
        assert_eq!(indexes(&log), vec![(1, 1), (2, 1), (3, 2)]);
        assert!(log.apply(ready(5, 5, 2, None)).is_err(), "a gap after 3");
        let back_in_term = WalRecord::Ready {
            entries: vec![ent(4, 1)],
            hard_state: None,
        };
        assert!(log.apply(back_in_term).is_err(), "term 1 after term 2");
    }

    #[test]
    fn a_reset_drops_every_entry_after_it() {
        let mut log = WalLog::default();
        log.apply(ready(1, 5, 1, Some(1))).unwrap();
        // A snapshot installed at 3, where this log holds 3 at term 1: Raft drops the whole
        // log on an install all the same.
        log.apply(WalRecord::Reset { index: 3, term: 1 }).unwrap();
        assert_eq!((log.start, indexes(&log)), ((3, 1), vec![]));
        assert_eq!(
            log.hard_state.commit, 3,
            "what a snapshot covers is committed"
        );
        log.apply(ready(4, 7, 2, None)).unwrap();
        // A snapshot at 8, term 3, beyond the log.
        log.apply(WalRecord::Reset { index: 8, term: 3 }).unwrap();
        assert_eq!((log.start, indexes(&log)), ((8, 3), vec![]));
        log.apply(ready(9, 9, 3, None)).unwrap();
        // One from before the start (the state machine took a later one since): the entries
        // after the start that records before it wrote go all the same.
        log.apply(WalRecord::Reset { index: 7, term: 3 }).unwrap();
        assert_eq!((log.start, indexes(&log)), ((8, 3), vec![]));
        assert!(log.apply(WalRecord::Reset { index: 8, term: 2 }).is_err());
        assert!(log.apply(WalRecord::Reset { index: 9, term: 2 }).is_err());
    }

    #[test]
    fn records_older_than_the_start_keep_only_what_follows_the_start_s_own_entry() {
        let start = (5, 2);
        let mut log = WalLog::starting_after(start);
        // Written before the snapshot at 5, and holding 5 at term 2: 6 to 8 stay.
        let mut older = ready(1, 8, 2, Some(4));
        log.apply(older.clone()).unwrap();
        assert_eq!(indexes(&log), vec![(6, 2), (7, 2), (8, 2)]);
        // A record that ends before the start still dropped what followed it.
        log.apply(ready(3, 4, 2, None)).unwrap();
        assert_eq!(indexes(&log), vec![]);
        // One that holds 5 with another term was rewritten later: none of it stays.
        log.apply(ready(4, 7, 1, None)).unwrap();
        assert_eq!(indexes(&log), vec![]);
        log.apply(ready(6, 6, 3, None)).unwrap();
        assert_eq!(indexes(&log), vec![(6, 3)]);
        assert_eq!(log.hard_state.commit, 4);
        // Its entries must still follow one another.
        if let WalRecord::Ready { entries, .. } = &mut older {
            entries[6].index = 9;
        }
        let before = log.clone();
        assert!(log.apply(older).is_err());
        assert_eq!(log, before, "a refused record changes nothing");
        assert!(log.apply(ready(0, 0, 2, None)).is_err(), "index 0");
    }

    /// Every cut of the last segment, and every single corrupted byte in its last record,
    /// reads back as the records wholly before it: nothing torn is ever believed.
    #[test]
    fn a_torn_or_corrupt_tail_yields_exactly_the_whole_records_before_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut log = WalLog::default();
        let mut records = Vec::new();
        let mut term = 1;
        for _ in 0..12 {
            let r = if rng.gen_ratio(1, 5) && log.last_index() > log.start.0 {
                let index = rng.gen_range(log.start.0 + 1..=log.last_index());
                WalRecord::Reset {
                    index,
                    term: log.term_at(index).unwrap(),
                }
            } else {
                term += u64::from(rng.gen_ratio(1, 4));
                let from = rng.gen_range(log.start.0 + 1..=log.last_index() + 1);
                let n = rng.gen_range(0..4);
                ready(from, from + n, term, Some(from))
            };
            log.apply(r.clone()).unwrap();
            records.push(r);
        }
        let first = records[..6]
            .iter()
            .flat_map(|r| r.encode())
            .collect::<Vec<u8>>();
        let frames: Vec<Bytes> = records[6..].iter().map(|r| r.encode()).collect();
        let second: Vec<u8> = frames.iter().flatten().copied().collect();
        let expect = |n: usize| {
            let mut l = WalLog::default();
            for r in &records[..6 + n] {
                l.apply(r.clone()).unwrap();
            }
            l
        };
        let mut ends = vec![0];
        for f in &frames {
            ends.push(ends.last().unwrap() + f.len());
        }
        for cut in 0..=second.len() {
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            // A cut just before bytes that are zeros anyway reads as the whole frame.
            if !ends.contains(&cut) && second[cut..ends[whole + 1]].iter().all(|b| *b == 0) {
                continue;
            }
            let mut tail = second[..cut].to_vec();
            tail.extend(vec![0; 16]);
            let (got, torn) = read_log((0, 0), &[&first, &tail]).unwrap();
            assert_eq!(got, expect(whole), "cut at {cut}");
            let clean = ends.contains(&cut);
            assert_eq!(torn.is_some(), !clean, "cut at {cut}");
            assert_eq!(torn.unwrap_or(ends[whole]), ends[whole]);
        }
        let last_start = ends[ends.len() - 2];
        for at in last_start..second.len() {
            let mut bad = second.clone();
            bad[at] ^= 0x41;
            let (got, torn) = read_log((0, 0), &[&first, &bad]).unwrap();
            assert_eq!(got, expect(frames.len() - 1), "byte {at} flipped");
            assert_eq!(torn, Some(last_start));
        }
        // Damage to a record the last segment has more records after is corruption: a crash
        // leaves nothing after a torn record.
        for at in 0..ends[1] {
            let mut bad = second.clone();
            bad[at] ^= 0x41;
            let err = read_log((0, 0), &[&first, &bad]).unwrap_err();
            assert!(
                matches!(
                    err,
                    WalError::Corrupt {
                        segment: 1,
                        at: 0,
                        ..
                    }
                ),
                "byte {at}: {err}"
            );
        }
        // The same damage in a segment before the last is corruption, not a torn tail.
        let mut bad = first.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x41;
        let err = read_log((0, 0), &[&bad, &second]).unwrap_err();
        assert!(matches!(err, WalError::Corrupt { segment: 0, .. }), "{err}");
        // So is anything but zeros after a closed segment's end.
        let mut junk = first.clone();
        junk.extend([0, 0, 7]);
        let err = read_log((0, 0), &[&junk, &second]).unwrap_err();
        assert!(matches!(err, WalError::Corrupt { segment: 0, .. }), "{err}");
    }

    #[test]
    fn a_whole_frame_that_holds_no_record_is_corruption_even_at_the_end() {
        let good = ready(1, 2, 1, Some(1)).encode();
        // A frame of a kind no build knows, with a correct checksum.
        let mut unknown = vec![codec::MAGIC, 0xee, 1, 0, 0, 0, 42];
        let crc = crc32c::crc32c(&unknown[1..]);
        unknown.extend(crc.to_le_bytes());
        for bad in [
            codec::encode_frame(Kind::WalRecord, &[9, 9, 9]),
            codec::encode_frame(Kind::WalRecord, &[READY, 0, 0xff, 0xff, 0xff, 0xff]),
            codec::encode_frame(Kind::Meta, &[1, 2, 3]),
            Bytes::from(unknown),
        ] {
            let segment: Vec<u8> = good.iter().chain(bad.iter()).copied().collect();
            let err = read_log((0, 0), &[&segment]).unwrap_err();
            assert!(
                matches!(err, WalError::Corrupt { segment: 0, at, .. } if at == good.len()),
                "{err}"
            );
        }
    }

    #[test]
    fn records_at_the_edge_of_the_index_space_are_no_panic() {
        let mut log = WalLog::default();
        log.apply(WalRecord::Reset {
            index: u64::MAX,
            term: 1,
        })
        .unwrap();
        // Both from before the start: nothing follows it.
        log.apply(ready(5, 5, 1, None)).unwrap();
        let at_max = WalRecord::Ready {
            entries: vec![ent(u64::MAX, 1)],
            hard_state: None,
        };
        log.apply(at_max).unwrap();
        assert_eq!((log.start, indexes(&log)), ((u64::MAX, 1), vec![]));
        assert!(
            log.apply(WalRecord::Reset {
                index: u64::MAX,
                term: 2
            })
            .is_err(),
            "the start with another term"
        );
        // A refused record leaves the log as it was.
        let mut log = WalLog::default();
        log.apply(ready(1, 3, 2, None)).unwrap();
        let before = log.clone();
        let back_in_term = WalRecord::Ready {
            entries: vec![ent(2, 2), ent(3, 1)],
            hard_state: None,
        };
        assert!(log.apply(back_in_term).is_err());
        assert_eq!(log, before);
    }

    use crate::storage::{DiskFaults, Engine, SimDisk};

    fn log_of(start: (u64, u64), records: &[WalRecord]) -> WalLog {
        let mut log = WalLog::starting_after(start);
        for r in records {
            log.apply(r.clone()).unwrap();
        }
        log
    }

    /// A record as a member writes one after `log`: a new leader rewriting the tail, a hard
    /// state, now and then an installed snapshot.
    fn next_record(rng: &mut ChaCha8Rng, log: &WalLog) -> WalRecord {
        let last_term = log.entries.last().map_or(log.start.1, |e| e.term);
        let term = last_term.max(log.hard_state.term) + u64::from(rng.gen_ratio(1, 6));
        if rng.gen_ratio(1, 12) {
            return WalRecord::Reset {
                index: log.last_index() + rng.gen_range(1..5),
                term: term + 1,
            };
        }
        let from = log
            .last_index()
            .saturating_sub(2)
            .max(log.start.0)
            .saturating_add(1);
        let from = rng.gen_range(from..=log.last_index() + 1);
        let n = rng.gen_range(0..6);
        ready(from, from + n - 1, term, Some(log.start.0))
    }

    fn random_records(rng: &mut ChaCha8Rng, n: usize) -> Vec<WalRecord> {
        let mut log = WalLog::default();
        let mut records = Vec::new();
        for _ in 0..n {
            let r = next_record(rng, &log);
            log.apply(r.clone()).unwrap();
            records.push(r);
        }
        records
    }

    #[test]
    fn the_log_file_reads_back_across_segments_and_after_old_ones_go() {
        let disk = SimDisk::new(3, DiskFaults::default());
        disk.set_wal_segment_bytes(300);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut records = random_records(&mut rng, 80);
        let last = log_of((0, 0), &records).last_index();
        // A stretch without snapshots, where the state machine's snapshot can be anywhere.
        for i in 0..40 {
            records.push(ready(last + 1 + i, last + 1 + i, 50, None));
        }
        let (mut wal, log) = Wal::open(disk.wal_dir().unwrap(), (0, 0)).unwrap();
        assert!(wal.is_empty());
        assert_eq!(log, WalLog::default());
        for r in &records {
            wal.append(std::slice::from_ref(r)).unwrap();
            wal.sync().unwrap();
        }
        assert!(wal.segments().len() > 5, "{:?}", wal.segments());
        let whole = log_of((0, 0), &records);
        let (again, log) = Wal::open(disk.wal_dir().unwrap(), (0, 0)).unwrap();
        assert_eq!(log, whole);
        assert_eq!(again.segments(), wal.segments());
        // A snapshot at any entry the log holds (the state machine's, durable): the
        // segments before it go, and the log read from it is the same log after it, hard
        // state too.
        let mut released = 0;
        for at in whole.start.0..=whole.last_index() {
            let start = (at, whole.term_at(at).unwrap());
            let disk = SimDisk::new(3, DiskFaults::default());
            disk.set_wal_segment_bytes(300);
            let (mut wal, _) = Wal::open(disk.wal_dir().unwrap(), (0, 0)).unwrap();
            for r in &records {
                wal.append(std::slice::from_ref(r)).unwrap();
            }
            wal.sync().unwrap();
            released += wal.release_through(at).unwrap();
            assert!(!wal.segments().is_empty());
            let (_, log) = Wal::open(disk.wal_dir().unwrap(), start).unwrap();
            assert_eq!(log.start, start);
            assert_eq!(log.hard_state, whole.hard_state);
            let after: Vec<Entry> = whole
                .entries
                .iter()
                .filter(|e| e.index > at)
                .cloned()
                .collect();
            assert_eq!(log.entries, after, "released through {at}");
        }
        assert!(released > 20, "{released} segments released");
        let at = whole.last_index() - 3;
        let start = (at, whole.term_at(at).unwrap());
        wal.release_through(at).unwrap();
        // A record bigger than a segment gets a segment of its own size.
        let big = ready(whole.last_index() + 1, whole.last_index() + 60, 99, Some(1));
        wal.append(std::slice::from_ref(&big)).unwrap();
        wal.sync().unwrap();
        let (_, log) = Wal::open(disk.wal_dir().unwrap(), start).unwrap();
        assert_eq!(log.last_index(), whole.last_index() + 60);
    }

    /// Crashes at random points, each cutting the unsynced bytes anywhere: what reads back is
    /// always the records up to some point at or after the last sync, and the log file takes
    /// records after it as if nothing had happened.
    #[test]
    fn a_crash_keeps_every_synced_record_and_a_prefix_of_the_rest() {
        let mut torn = 0;
        for seed in 0..40 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let disk = SimDisk::new(seed, DiskFaults::default());
            disk.set_wal_segment_bytes(rng.gen_range(120..600));
            let mut kept: Vec<WalRecord> = Vec::new();
            let mut synced = 0;
            let (mut wal, _) = Wal::open(disk.wal_dir().unwrap(), (0, 0)).unwrap();
            for _ in 0..60 {
                let mut log = log_of((0, 0), &kept);
                let n = rng.gen_range(1..=3);
                for _ in 0..n {
                    let r = next_record(&mut rng, &log);
                    log.apply(r.clone()).unwrap();
                    kept.push(r);
                }
                wal.append(&kept[kept.len() - n..]).unwrap();
                if rng.gen_ratio(2, 3) {
                    wal.sync().unwrap();
                    synced = kept.len();
                }
                if rng.gen_ratio(1, 8) {
                    disk.crash();
                    let (reopened, log) = Wal::open(disk.reopen().wal_dir().unwrap(), (0, 0))
                        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                    let survived = (synced..=kept.len())
                        .find(|&k| log_of((0, 0), &kept[..k]) == log)
                        .unwrap_or_else(|| panic!("seed {seed}: not a prefix from {synced}"));
                    if survived < kept.len() {
                        torn += 1;
                    }
                    kept.truncate(survived);
                    synced = survived;
                    wal = reopened;
                }
            }
            wal.sync().unwrap();
            let (_, log) = Wal::open(disk.reopen().wal_dir().unwrap(), (0, 0)).unwrap();
            assert_eq!(log, log_of((0, 0), &kept), "seed {seed}");
        }
        assert!(torn > 10, "crashes lost unsynced records {torn} times");
    }
}
