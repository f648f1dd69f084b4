//! The Raft log file on a real disk: the [`WalDir`] whose segments are files in the data
//! dir's `wal/` directory, named by [`SegmentName::file_name`].
//!
//! A segment is created whole before it is used: written full of zeros under a temporary
//! name, synced, renamed into place, and the directory synced, so its blocks are allocated
//! and the records written into it later change no file size. Then `fdatasync` of a record
//! need not commit the inode through the filesystem's journal (measured: a lone client's put
//! is 0.04 to 0.06 ms faster than appending to a growing file; `docs/raft-log-file.md`).
//! Records are written in place (`pwrite`). What goes in a record, and in what order, is
//! [`oxcd_core::storage::wal`]'s business, not this module's.

use super::{Result, StorageError};
use oxcd_core::storage::wal::{SegmentName, WalDir};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// The log file directory's name in the data dir.
pub const WAL_DIR: &str = "wal";
/// How long a new segment is. etcd's are 64 MiB; an eighth of that here, because a data dir
/// holds up to three at a time (the one written, the one before it until a compaction covers
/// it, and the spare), each allocated whole: after 1,000,000 small puts on one member the data
/// dir took 252 MiB with 64 MiB segments, 156 MiB with 16 MiB (etcd 3.5.1: 287 MiB; `bench/
/// compare --only startup`). The zeros written per byte of log are the same at any size.
pub const SEGMENT_BYTES: u64 = 8 << 20;
/// A segment is zero-filled in writes of this size.
const ZERO_CHUNK_BYTES: usize = 1 << 20;
const TMP_SUFFIX: &str = ".tmp";

fn io_error(what: &Path, e: std::io::Error) -> StorageError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        return StorageError::NoSpace;
    }
    StorageError::Io(format!("{}: {e}", what.display()))
}

/// The segments of a data dir's log file, with the segments written to kept open, and the
/// next segment's file made ahead on a thread of its own.
#[derive(Debug)]
pub struct FileWalDir {
    dir: PathBuf,
    open: BTreeMap<SegmentName, File>,
    segment_bytes: u64,
    /// The spare segment being made (zero-filled and synced under [`SPARE_FILE`]), started
    /// by the first write into the last quarter of a segment.
    spare: Option<std::thread::JoinHandle<std::io::Result<File>>>,
}

/// The spare segment's name while it is made and until it is used.
const SPARE_FILE: &str = "spare.wal.tmp";

/// Writes `path` full of `len` zero bytes and syncs it.
fn zero_filled(path: &Path, len: u64) -> std::io::Result<File> {
    let mut f = File::create(path)?;
    let zeros = vec![0; ZERO_CHUNK_BYTES];
    let mut left = len;
    while left > 0 {
        let n = left.min(ZERO_CHUNK_BYTES as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(f)
}

impl FileWalDir {
    /// The log file directory `dir`, created (and its parent synced) when missing. Segments
    /// left half made by a crash (under their temporary names) are removed.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileWalDir> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        for entry in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                std::fs::remove_file(entry.path()).map_err(|e| io_error(&entry.path(), e))?;
            }
        }
        Ok(FileWalDir {
            dir,
            open: BTreeMap::new(),
            segment_bytes: SEGMENT_BYTES,
            spare: None,
        })
    }

    /// Makes new segments `bytes` long (tests).
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes;
    }

    fn path(&self, name: SegmentName) -> PathBuf {
        self.dir.join(name.file_name())
    }

    fn file(&mut self, name: SegmentName) -> Result<&File> {
        if !self.open.contains_key(&name) {
            let path = self.path(name);
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            self.open.insert(name, f);
        }
        Ok(&self.open[&name])
    }
}

impl Drop for FileWalDir {
    /// Waits for the spare segment being made, so that nothing writes into the directory
    /// after its owner is gone.
    fn drop(&mut self) {
        if let Some(making) = self.spare.take() {
            let _ = making.join();
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

impl WalDir for FileWalDir {
    fn list(&self) -> Result<Vec<SegmentName>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))? {
            let entry = entry.map_err(|e| io_error(&self.dir, e))?;
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if file_name.ends_with(TMP_SUFFIX) {
                // A segment still being made (the spare): not part of the log yet.
                continue;
            }
            match SegmentName::parse(&file_name) {
                Some(name) => names.push(name),
                None => {
                    return Err(StorageError::Inconsistent(format!(
                        "{}: {file_name} is not a log segment",
                        self.dir.display()
                    )));
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, name: SegmentName) -> Result<Vec<u8>> {
        let path = self.path(name);
        std::fs::read(&path).map_err(|e| io_error(&path, e))
    }

    /// Takes the spare segment when one of `len` bytes is asked for (waiting for it if it is
    /// still being made), else makes the file here, under a temporary name either way; then
    /// renames it into place and syncs the directory.
    fn create(&mut self, name: SegmentName, len: u64) -> Result<()> {
        let path = self.path(name);
        let spare_path = self.dir.join(SPARE_FILE);
        let spare = match self.spare.take() {
            Some(making) if len == self.segment_bytes => {
                match making.join() {
                    Ok(Ok(f)) => Some((f, spare_path)),
                    // Made again below, where an error is reported.
                    _ => None,
                }
            }
            other => {
                self.spare = other;
                None
            }
        };
        let (f, tmp) = match spare {
            Some(made) => made,
            None => {
                let tmp = self.dir.join(format!("{}{TMP_SUFFIX}", name.file_name()));
                match zero_filled(&tmp, len) {
                    Ok(f) => (f, tmp),
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(io_error(&tmp, e));
                    }
                }
            }
        };
        std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
        sync_dir(&self.dir)?;
        self.open.insert(name, f);
        Ok(())
    }

    fn write(&mut self, name: SegmentName, offset: u64, bytes: &[u8]) -> Result<()> {
        if self.spare.is_none() && offset + bytes.len() as u64 >= self.segment_bytes / 4 * 3 {
            // The next segment, made while the last quarter of this one fills (a segment's
            // zeros take a small part of the time its records do): a cut then costs a
            // rename, not the driver's wait for the zeros to reach the disk.
            let (path, len) = (self.dir.join(SPARE_FILE), self.segment_bytes);
            self.spare = Some(std::thread::spawn(move || zero_filled(&path, len)));
        }
        let path = self.path(name);
        self.file(name)?
            .write_all_at(bytes, offset)
            .map_err(|e| io_error(&path, e))
    }

    fn sync(&mut self, name: SegmentName) -> Result<()> {
        let path = self.path(name);
        self.file(name)?
            .sync_data()
            .map_err(|e| StorageError::Sync(format!("{}: {e}", path.display())))
    }

    fn remove(&mut self, name: SegmentName) -> Result<()> {
        self.open.remove(&name);
        let path = self.path(name);
        std::fs::remove_file(&path).map_err(|e| io_error(&path, e))
    }

    fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_core::raft::{Entry, EntryKind, HardState};
    use oxcd_core::storage::wal::{Wal, WalRecord};

    fn ready(from: u64, to: u64, term: u64) -> WalRecord {
        WalRecord::Ready {
            entries: (from..=to)
                .map(|index| Entry {
                    term,
                    index,
                    kind: EntryKind::Normal,
                    data: bytes::Bytes::from(vec![index as u8; 100]),
                })
                .collect(),
            hard_state: Some(HardState {
                term,
                vote: 1,
                commit: from,
            }),
        }
    }

    #[test]
    fn segments_are_preallocated_files_that_read_back_after_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(WAL_DIR);
        let mut dir = FileWalDir::open(&path).unwrap();
        dir.set_segment_bytes(4096);
        let (mut wal, log) = Wal::open(dir, (0, 0)).unwrap();
        assert!(log.entries.is_empty());
        for i in 0..40 {
            wal.append(&[ready(i * 2 + 1, i * 2 + 2, 1)]).unwrap();
            wal.sync().unwrap();
        }
        let names = wal.segments().to_vec();
        assert!(names.len() >= 3, "{names:?}");
        assert!(
            path.join(SPARE_FILE).exists() || wal.dir().spare.is_some(),
            "the next segment is made ahead"
        );
        for name in &names {
            let meta = std::fs::metadata(path.join(name.file_name())).unwrap();
            assert_eq!(meta.len(), 4096, "a segment keeps its length");
        }
        // Junk past the written part of the last segment (a torn write's bytes) is zeroed on
        // open, and a crash's half-made segment is removed.
        let last = path.join(names.last().unwrap().file_name());
        let written = oxcd_core::storage::wal::read_segment(&std::fs::read(&last).unwrap())
            .unwrap()
            .written_bytes;
        assert!(written < 4093, "{written}");
        let f = OpenOptions::new().write(true).open(&last).unwrap();
        f.write_all_at(&[7, 7, 7], 4093).unwrap();
        std::fs::write(path.join("x.wal.tmp"), b"half").unwrap();
        drop(wal);
        let (wal, log) = Wal::open(FileWalDir::open(&path).unwrap(), (0, 0)).unwrap();
        assert_eq!(log.last_index(), 80);
        assert_eq!(log.hard_state.commit, 79);
        assert_eq!(wal.segments(), &names[..]);
        assert!(!path.join("x.wal.tmp").exists());
        assert!(
            std::fs::read(&last).unwrap()[written..]
                .iter()
                .all(|b| *b == 0)
        );
        // Something else in the directory is refused, not skipped.
        std::fs::write(path.join("notes.txt"), b"mine").unwrap();
        let err = Wal::open(FileWalDir::open(&path).unwrap(), (0, 0)).unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");
    }
}
