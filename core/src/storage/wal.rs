//! The format of the Raft log's own file (the plan: `docs/raft-log-file.md`): what a record
//! holds, how a segment's bytes read back into records, and the log a sequence of records
//! describes. Bytes in, records out: opening, writing, syncing and removing segment files is
//! the owner's business (not wired into the member yet: the log still lives in the engine's
//! `raft_log` keyspace).
//!
//! A segment is a run of [`codec`] frames of kind [`Kind::WalRecord`], then zeros (the
//! preallocated rest of the file) or its end. A frame cannot start with a zero byte (the
//! magic), so the first zero where a frame should start is the end of what was written.
//! Whatever fails to read after the last whole record of the last segment is a torn tail: the
//! suffix a crash cut short before it was synced, which was never acknowledged. In any earlier
//! segment it is corruption (a segment is synced whole before the next one starts), and so is
//! anything but zeros after such a segment's end. A frame that passes its checksum and does
//! not hold a record is corruption wherever it is.
//!
//! Not decided yet (the plan's open points): a flipped byte inside the synced part of the
//! last segment reads as a torn tail there, and the records after it are dropped; telling the
//! two apart needs etcd's rule (a torn frame spans a zeroed sector) or a synced-length mark.
//! And [`read_log`] reads from the first segment ever written: removing old segments needs a
//! header record in each segment (its start and the hard state), as etcd's WAL has.

use super::codec::{self, CodecError, Kind, Reader, Writer};
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
    /// The log now starts after `index` (of `term`): a compaction, when the log holds that
    /// entry with that term (the entries after it stay), or an installed snapshot otherwise
    /// (every entry goes), as Raft itself decides.
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
            Err(e) => break SegmentEnd::Torn(e),
        }
    };
    Ok(Segment {
        records,
        written_bytes: at,
        end,
    })
}

/// The log that a run of records describes.
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
    /// The index of the last entry (the start's when there is none).
    pub fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.start.0, |e| e.index)
    }

    fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.start.0 {
            return Some(self.start.1);
        }
        let offset = index.checked_sub(self.start.0)?.checked_sub(1)?;
        self.entries
            .get(usize::try_from(offset).ok()?)
            .map(|e| e.term)
    }

    /// Applies one record, as Raft's storage would have taken it. A record that does not fit
    /// the log is refused and leaves the log as it was.
    pub fn apply(&mut self, record: WalRecord) -> Result<(), String> {
        match record {
            WalRecord::Ready {
                entries,
                hard_state,
            } => {
                if let Some(first) = entries.first() {
                    let from = first.index;
                    if from <= self.start.0 || from - 1 > self.last_index() {
                        return Err(format!(
                            "entries from {from} do not follow the log (after {}, up to {})",
                            self.start.0,
                            self.last_index()
                        ));
                    }
                    let term = self.term_at(from - 1).expect("from - 1 is in the log");
                    check_follows((from - 1, term), &entries)?;
                    self.entries.truncate((from - self.start.0 - 1) as usize);
                    self.entries.extend(entries);
                }
                if let Some(hs) = hard_state {
                    self.hard_state = hs;
                }
            }
            WalRecord::Reset { index, term } => {
                if index < self.start.0 || (index == self.start.0 && term != self.start.1) {
                    return Err(format!(
                        "a reset to {index} (term {term}) against the start {} (term {})",
                        self.start.0, self.start.1
                    ));
                }
                if self.term_at(index) == Some(term) {
                    self.entries.drain(..(index - self.start.0) as usize);
                } else {
                    self.entries.clear();
                }
                self.start = (index, term);
                self.hard_state.commit = self.hard_state.commit.max(index);
            }
        }
        Ok(())
    }
}

/// Reads segments in the order written into the log they describe. A torn end is allowed in
/// the last segment only; it is reported with the number of whole bytes before it, where the
/// owner truncates the file before writing again.
pub fn read_log(segments: &[&[u8]]) -> Result<(WalLog, Option<usize>), WalError> {
    let mut log = WalLog::default();
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
            WalRecord::Reset { index: 2, term: 1 },
            ready(5, 6, 2, Some(5)),
        ];
        let mut buf: Vec<u8> = records.iter().flat_map(|r| r.encode()).collect();
        let written = buf.len();
        buf.extend(vec![0; 100]);
        let seg = read_segment(&buf).unwrap();
        assert_eq!(seg.records, records);
        assert_eq!(seg.written_bytes, written);
        assert_eq!(seg.end, SegmentEnd::Clean);
        let (log, torn) = read_log(&[&buf]).unwrap();
        assert_eq!(torn, None);
        assert_eq!(log.start, (2, 1));
        assert_eq!(indexes(&log), vec![(3, 1), (4, 1), (5, 2), (6, 2)]);
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
    fn a_reset_keeps_the_tail_when_it_matches_and_drops_it_otherwise() {
        let mut log = WalLog::default();
        log.apply(ready(1, 5, 1, Some(1))).unwrap();
        // A compaction at 3: the log holds 3 at term 1.
        log.apply(WalRecord::Reset { index: 3, term: 1 }).unwrap();
        assert_eq!((log.start, indexes(&log)), ((3, 1), vec![(4, 1), (5, 1)]));
        assert_eq!(
            log.hard_state.commit, 3,
            "what a snapshot covers is committed"
        );
        // A snapshot at 4 of term 2, where this log has term 1: its entries were another
        // leader's, and every one goes, 5 too.
        log.apply(WalRecord::Reset { index: 4, term: 2 }).unwrap();
        assert_eq!((log.start, indexes(&log)), ((4, 2), vec![]));
        log.apply(ready(5, 7, 2, None)).unwrap();
        // A snapshot at 8, term 3, beyond the log: every entry goes.
        log.apply(WalRecord::Reset { index: 8, term: 3 }).unwrap();
        assert_eq!((log.start, indexes(&log)), ((8, 3), vec![]));
        assert!(
            log.apply(ready(8, 8, 3, None)).is_err(),
            "covered by the start"
        );
        log.apply(ready(9, 9, 3, None)).unwrap();
        assert!(log.apply(WalRecord::Reset { index: 7, term: 3 }).is_err());
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
            let (got, torn) = read_log(&[&first, &tail]).unwrap();
            assert_eq!(got, expect(whole), "cut at {cut}");
            let clean = ends.contains(&cut);
            assert_eq!(torn.is_some(), !clean, "cut at {cut}");
            assert_eq!(torn.unwrap_or(ends[whole]), ends[whole]);
        }
        let last_start = ends[ends.len() - 2];
        for at in last_start..second.len() {
            let mut bad = second.clone();
            bad[at] ^= 0x41;
            let (got, torn) = read_log(&[&first, &bad]).unwrap();
            assert_eq!(got, expect(frames.len() - 1), "byte {at} flipped");
            assert_eq!(torn, Some(last_start));
        }
        // The same damage in a segment before the last is corruption, not a torn tail.
        let mut bad = first.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x41;
        let err = read_log(&[&bad, &second]).unwrap_err();
        assert!(matches!(err, WalError::Corrupt { segment: 0, .. }), "{err}");
        // So is anything but zeros after a closed segment's end.
        let mut junk = first.clone();
        junk.extend([0, 0, 7]);
        let err = read_log(&[&junk, &second]).unwrap_err();
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
            let err = read_log(&[&segment]).unwrap_err();
            assert!(
                matches!(err, WalError::Corrupt { segment: 0, at, .. } if at == good.len()),
                "{err}"
            );
        }
    }

    #[test]
    fn records_at_the_edge_of_the_index_space_are_refused_not_a_panic() {
        let mut log = WalLog::default();
        log.apply(WalRecord::Reset {
            index: u64::MAX,
            term: 1,
        })
        .unwrap();
        assert!(log.apply(ready(5, 5, 1, None)).is_err());
        let at_max = WalRecord::Ready {
            entries: vec![ent(u64::MAX, 1)],
            hard_state: None,
        };
        assert!(log.apply(at_max).is_err(), "covered by the start");
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
}
