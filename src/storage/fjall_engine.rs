//! The production engine: one fjall `Database` per member data dir, a keyspace per
//! [`Space`]. Batches are fjall write batches (atomic through its journal); a sync is one
//! `persist(SyncData)`, covering every batch written before it: group commit.
//!
//! The data dir also holds a lock file, held (flock) while the engine is open so a second
//! process is refused with a clear message, and a format stamp naming the layout, so a dir
//! written by something else, or by a layout this build does not know, is refused before a
//! byte of it is believed.

use super::engine::{Engine, EngineRead, Result, Space, StorageError, WriteBatch, scan_limit};
use super::wal_file::{FileWalDir, WAL_DIR};
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The lock file's name in the data dir.
pub const LOCK_FILE: &str = "oxcd.lock";
/// The format stamp's name in the data dir.
pub const FORMAT_FILE: &str = "oxcd.format";
/// What the format stamp of this layout says: the state machine in fjall, the Raft log and
/// hard state in their own file (`wal/`).
pub const FORMAT_STAMP: &str = "oxcd data dir, layout 2 (fjall 3, wal)\n";
/// What the stamp of the layout before said: everything in fjall, the Raft log too. Such a
/// dir is opened, and the layers above move its log into the log file and restamp it
/// ([`Engine::stamp_current_layout`]); a build of that layout refuses a dir stamped since.
pub const FORMAT_STAMP_LAYOUT_1: &str = "oxcd data dir, layout 1 (fjall 3)\n";
const DB_DIR: &str = "db";

fn io(e: impl std::fmt::Display) -> StorageError {
    StorageError::Io(e.to_string())
}

fn fjall_error(e: fjall::Error) -> StorageError {
    match e {
        fjall::Error::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => StorageError::NoSpace,
        e => StorageError::Io(format!("fjall: {e}")),
    }
}

struct Inner {
    db: Database,
    /// Whether the stamp says [`FORMAT_STAMP_LAYOUT_1`] still.
    layout_1: std::sync::atomic::AtomicBool,
    spaces: Vec<Keyspace>,
    dir: PathBuf,
    /// Held for the engine's life: the flock on the lock file.
    _lock: File,
}

/// fjall on a data dir. Clones share the database.
#[derive(Clone)]
pub struct FjallEngine(Arc<Inner>);

impl std::fmt::Debug for FjallEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FjallEngine").field(&self.0.dir).finish()
    }
}

/// fjall's block cache. Its default (32 MiB) is sized for a database that reads from its
/// tables; here reads of recent data come from the memtables and the MVCC key index.
const BLOCK_CACHE_BYTES: u64 = 8 << 20;
/// fjall's background threads (memtable flushes and compactions). One: with more, fjall 3.1's
/// first worker hands every compaction job back to the queue while another worker is busy and
/// takes it again at once, spinning a core for as long as that job runs (seen in `perf` under
/// a put load as `worker_tick` and `flume::Shared::send`). A member's writes are one stream,
/// so one thread keeps up with them.
const STORAGE_WORKER_THREADS: usize = 1;
/// Per keyspace: beyond this a memtable is flushed to a table. fjall's default (64 MiB) held
/// two copies of every recent value in memory (the Raft log's and the MVCC store's), and made
/// a restart replay that much journal. Measured after 100,000 puts of 256-byte values on one
/// member: 166 MB resident with 64 MiB, 91 MB at 8 MiB, 61 MB at 4 MiB, at the same
/// throughput (`bench/compare --only memory`).
const MEMTABLE_BYTES_MAX: u64 = 4 << 20;
/// The journal is rotated and its flushed part dropped beyond this (fjall's floor).
const JOURNALING_BYTES_MAX: u64 = 64 << 20;

impl FjallEngine {
    /// Opens the data dir `dir`, creating it (with its format stamp) when it does not exist or
    /// is empty. Refuses a dir another process holds, and a dir whose stamp is missing or says
    /// something else.
    pub fn open(dir: impl AsRef<Path>) -> Result<FjallEngine> {
        let dir = dir.as_ref().to_path_buf();
        let shown = dir.display().to_string();
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::Io(format!("{shown}: {e}")))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| StorageError::Io(format!("{shown}/{LOCK_FILE}: {e}")))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked {
                    dir: shown,
                    lock: LOCK_FILE,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StorageError::Io(format!("{shown}/{LOCK_FILE}: {e}")));
            }
        }
        let layout_1 = check_stamp(&dir)?;
        // fjall panics on some corrupt journal bytes instead of returning an error: report
        // that as the corruption it is.
        let opened = std::panic::catch_unwind(|| {
            Database::builder(dir.join(DB_DIR))
                .manual_journal_persist(true)
                .cache_size(BLOCK_CACHE_BYTES)
                .worker_threads(STORAGE_WORKER_THREADS)
                .max_journaling_size(JOURNALING_BYTES_MAX)
                .open()
        })
        .map_err(|panic| StorageError::Format {
            dir: shown.clone(),
            why: format!(
                "the database is corrupt (fjall gave up reading it: {})",
                panic_message(&panic)
            ),
        })?;
        let db = opened.map_err(|e| match e {
            fjall::Error::Locked => StorageError::Locked {
                dir: shown.clone(),
                lock: LOCK_FILE,
            },
            e => StorageError::Format {
                dir: shown.clone(),
                why: format!("the database does not open: {e}"),
            },
        })?;
        let spaces = Space::ALL
            .iter()
            .map(|s| {
                db.keyspace(s.name(), || {
                    KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES_MAX)
                })
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(fjall_error)?;
        Ok(FjallEngine(Arc::new(Inner {
            db,
            layout_1: layout_1.into(),
            spaces,
            dir,
            _lock: lock,
        })))
    }

    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    fn space(&self, space: Space) -> &Keyspace {
        &self.0.spaces[space.index() as usize]
    }

    /// Bytes the database takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.0.db.disk_space().unwrap_or(0)
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

/// Writes `stamp` as the dir's format stamp, durably, replacing any there whole.
fn write_stamp(dir: &Path, stamp: &str) -> Result<()> {
    let tmp = dir.join(format!("{FORMAT_FILE}.tmp"));
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(stamp.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, dir.join(FORMAT_FILE)).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// Writes the format stamp into an empty dir, or checks the one there. Returns whether it
/// says layout 1 (to be converted by the layers above).
fn check_stamp(dir: &Path) -> Result<bool> {
    let shown = dir.display().to_string();
    let stamp = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&stamp) {
        Ok(s) if s == FORMAT_STAMP => Ok(false),
        Ok(s) if s == FORMAT_STAMP_LAYOUT_1 => Ok(true),
        Ok(s) => Err(StorageError::Format {
            dir: shown,
            why: format!(
                "its format stamp {FORMAT_FILE} says {:?}; this build reads {:?} only",
                s.trim_end(),
                FORMAT_STAMP.trim_end()
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let foreign: Vec<String> = std::fs::read_dir(dir)
                .map_err(io)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != LOCK_FILE)
                .collect();
            if !foreign.is_empty() {
                return Err(StorageError::Format {
                    dir: shown,
                    why: format!(
                        "not an oxcd data dir (no {FORMAT_FILE}, but it holds {})",
                        foreign.join(", ")
                    ),
                });
            }
            // Stamp first, durably: a dir with a stamp and no database is a fresh one.
            write_stamp(dir, FORMAT_STAMP)?;
            Ok(false)
        }
        Err(e) => Err(StorageError::Io(format!("{}: {e}", stamp.display()))),
    }
}

/// Values at least this long are handed on in the memory fjall read them into; shorter ones
/// are copied, so that a small value never keeps a larger allocation alive.
const SHARE_BYTES_MIN: usize = 4096;

fn bytes_of(s: fjall::Slice) -> Bytes {
    if s.len() >= SHARE_BYTES_MIN {
        Bytes::from_owner(s)
    } else {
        Bytes::copy_from_slice(&s)
    }
}

fn scan_readable(
    r: &impl Readable,
    ks: &Keyspace,
    from: &[u8],
    to: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Bytes, Bytes)>> {
    let Some(limit) = scan_limit(from, to, limit) else {
        return Ok(Vec::new());
    };
    let upper = to.map_or(Bound::Unbounded, |t| Bound::Excluded(t.to_vec()));
    let mut out = Vec::new();
    for guard in r
        .range(ks, (Bound::Included(from.to_vec()), upper))
        .take(limit)
    {
        let (k, v) = guard.into_inner().map_err(fjall_error)?;
        out.push((bytes_of(k), bytes_of(v)));
    }
    Ok(out)
}

impl EngineRead for FjallEngine {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        // The keyspace itself, not a snapshot: a point read needs no view.
        Ok(self
            .space(space)
            .get(key)
            .map_err(fjall_error)?
            .map(bytes_of))
    }

    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        scan_readable(&self.0.db.snapshot(), self.space(space), from, to, limit)
    }
}

/// A point-in-time view of the database (a fjall snapshot).
pub struct FjallView {
    snapshot: fjall::Snapshot,
    engine: FjallEngine,
}

impl EngineRead for FjallView {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        let ks = self.engine.space(space);
        Ok(self
            .snapshot
            .get(ks, key)
            .map_err(fjall_error)?
            .map(bytes_of))
    }

    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        scan_readable(&self.snapshot, self.engine.space(space), from, to, limit)
    }
}

impl Engine for FjallEngine {
    type View = FjallView;
    type Wal = FileWalDir;

    fn wal_dir(&self) -> Result<FileWalDir> {
        FileWalDir::open(self.0.dir.join(WAL_DIR))
    }

    fn stamp_current_layout(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.0.layout_1.load(Ordering::Acquire) {
            write_stamp(&self.0.dir, FORMAT_STAMP)?;
            self.0.layout_1.store(false, Ordering::Release);
        }
        Ok(())
    }

    fn view(&self) -> FjallView {
        FjallView {
            snapshot: self.0.db.snapshot(),
            engine: self.clone(),
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        // Every item of a fjall batch gets one sequence number, so a key written twice in a
        // batch would be ambiguous: keep the last change to each key.
        let mut last: BTreeMap<(Space, &Bytes), Option<&Bytes>> = BTreeMap::new();
        for op in &batch.ops {
            last.insert((op.space, &op.key), op.value.as_ref());
        }
        let mut b = self.0.db.batch();
        for ((space, key), value) in last {
            match value {
                Some(v) => b.insert(self.space(space), key.as_ref(), v.as_ref()),
                None => b.remove(self.space(space), key.as_ref()),
            }
        }
        b.commit().map_err(fjall_error)
    }

    fn sync(&self) -> Result<()> {
        self.0
            .db
            .persist(PersistMode::SyncData)
            .map_err(|e| StorageError::Sync(format!("fjall: {e}")))
    }

    /// Flushes each keyspace's memtables to tables and merges its tables into one run,
    /// dropping overwritten versions and deletions (fjall's major compaction), so that the
    /// journal's flushed part can go too. Blocks until done.
    fn defragment(&self) -> Result<()> {
        for space in &self.0.spaces {
            space.rotate_memtable_and_wait().map_err(fjall_error)?;
            space.major_compact().map_err(fjall_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("oxcd-fjall-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_read_back_after_reopen() {
        let dir = tempdir("reopen");
        {
            let e = FjallEngine::open(&dir).unwrap();
            let mut b = WriteBatch::default();
            b.put(Space::Log, vec![1], Bytes::from_static(b"one"));
            b.put(Space::Log, vec![2], Bytes::from_static(b"two"));
            b.put(Space::Log, vec![2], Bytes::from_static(b"TWO"));
            b.put(Space::Meta, vec![1], Bytes::from_static(b"m"));
            e.write(b).unwrap();
            e.sync().unwrap();
            let view = e.view();
            let mut b = WriteBatch::default();
            b.delete(Space::Log, vec![1]);
            e.write(b).unwrap();
            assert_eq!(
                view.get(Space::Log, &[1]).unwrap().as_deref(),
                Some(&b"one"[..])
            );
            e.sync().unwrap();
        }
        let e = FjallEngine::open(&dir).unwrap();
        let all = e.scan(Space::Log, &[], None, 0).unwrap();
        assert_eq!(
            all,
            vec![(Bytes::from_static(&[2]), Bytes::from_static(b"TWO"))]
        );
        assert_eq!(e.scan(Space::Meta, &[0], Some(&[1]), 0).unwrap(), vec![]);
        drop(e);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_open_is_refused_while_the_first_holds_the_dir() {
        let dir = tempdir("lock");
        let e = FjallEngine::open(&dir).unwrap();
        let err = FjallEngine::open(&dir).unwrap_err();
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
        drop(e);
        FjallEngine::open(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_foreign_or_newer_dir_is_refused() {
        let dir = tempdir("stamp");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("member"), b"etcd data").unwrap();
        let err = FjallEngine::open(&dir).unwrap_err();
        assert!(err.to_string().contains("not an oxcd data dir"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        FjallEngine::open(&dir).unwrap();
        std::fs::write(dir.join(FORMAT_FILE), b"oxcd data dir, layout 9\n").unwrap();
        let err = FjallEngine::open(&dir).unwrap_err();
        assert!(err.to_string().contains("layout 9"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
#[cfg(test)]
mod corruption {
    use super::*;

    fn files(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                files(&path, out)
            } else {
                out.push(path)
            }
        }
    }

    fn copy_dir(from: &Path, to: &Path) {
        let _ = std::fs::remove_dir_all(to);
        let mut all = Vec::new();
        files(from, &mut all);
        for f in all {
            let dest = to.join(f.strip_prefix(from).unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&f, &dest).unwrap();
        }
    }

    fn value(i: u8) -> Bytes {
        Bytes::from(vec![i; 100])
    }

    /// fjall's tables carry block checksums: a flipped byte anywhere in a table file makes the
    /// open or the read fail, or lands where nothing is read; it never changes data read back.
    /// (Its journal is another matter: see the README's storage section.)
    #[test]
    fn a_flipped_byte_in_a_table_file_is_never_served() {
        let base = std::env::temp_dir().join(format!("oxcd-fjall-rot-{}", std::process::id()));
        let pristine = base.join("pristine");
        let _ = std::fs::remove_dir_all(&base);
        {
            let e = FjallEngine::open(&pristine).unwrap();
            for i in 0..3u8 {
                let mut b = WriteBatch::default();
                b.put(Space::Log, vec![i], value(i));
                e.write(b).unwrap();
                e.sync().unwrap();
            }
        }
        let mut all = Vec::new();
        files(&pristine, &mut all);
        let tables: Vec<PathBuf> = all
            .into_iter()
            .filter(|p| p.components().any(|c| c.as_os_str() == "tables"))
            .collect();
        assert!(!tables.is_empty(), "closing flushed the writes to a table");
        let trial = base.join("trial");
        let (mut refused, mut trials) = (0, 0);
        for table in &tables {
            let len = std::fs::metadata(table).unwrap().len() as usize;
            for at in (0..len).step_by(23) {
                copy_dir(&pristine, &trial);
                let target = trial.join(table.strip_prefix(&pristine).unwrap());
                let mut bytes = std::fs::read(&target).unwrap();
                bytes[at] ^= 0x10;
                std::fs::write(&target, &bytes).unwrap();
                trials += 1;
                let Ok(e) = FjallEngine::open(&trial) else {
                    refused += 1;
                    continue;
                };
                match e.scan(Space::Log, &[], None, 0) {
                    Err(_) => refused += 1,
                    Ok(pairs) => {
                        let want: Vec<(Bytes, Bytes)> =
                            (0..3u8).map(|i| (Bytes::from(vec![i]), value(i))).collect();
                        assert_eq!(pairs, want, "byte {at} of {table:?} flipped: wrong data");
                    }
                }
            }
        }
        assert!(
            refused * 10 > trials * 9,
            "{refused} of {trials} flips refused"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
