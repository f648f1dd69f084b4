//! `sim bench-storage`: what durability costs on this machine's disk. A program that prints
//! figures, not a test:
//!
//! 1. the floor: appending records to a plain file with `fdatasync` after every record, and
//!    after every batch of records; and overwriting a file written before, one record per
//!    `fdatasync` (no size or block changes to commit: the device's own latency);
//! 2. the Raft log: [`RaftStore::persist`] on a data dir of a [`FjallEngine`] (the entries
//!    go to its log file, `wal/`), one entry per sync, and one sync per batch of entries
//!    (group commit; the first persist creates the first segment);
//! 3. recovery: keys loaded through a one-member [`Member`] (proposed, committed, applied, the
//!    log compacted as etcd does), then, in a fresh process of this binary (the hidden
//!    subcommand [`RECOVER_SUBCOMMAND`], so its peak RSS is the recovery's alone), the time
//!    from opening the data dir until the member could serve (leader, key index rebuilt,
//!    leases restored), the dir's size and the peak RSS.
//!
//! Run it with `cargo run --release -p sim -- bench-storage` (all flags:
//! `-- bench-storage --help`; `--keys 20000` for a quick look). Everything goes into a scratch
//! dir made under `--dir` (default: the system temp dir) and removed at the end, also when a
//! step fails. Latencies are per sync (per `persist`, per round of proposals); MB are 10^6
//! bytes of payload (entry data, values), not counting framing. The recovery runs with a warm
//! page cache.
//!
//! What it does not do: it runs no network and no second member, and it does not drop the
//! page cache (that needs root and slows everyone else on the machine).

use crate::alloc_count::live_bytes;
use crate::storage_load;
use bytes::Bytes;
use oxcd::mvcc::{PutRequest, RangeRequest};
use oxcd::node::{Command, Member, Outcome};
use oxcd::raft::{Entry, EntryKind, HardState, StateRole, Storage as _};
use oxcd::storage::{Engine, FjallEngine, RaftStore, WriteBatch};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Bytes of one entry or value at most: a bench of bigger records measures something else.
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// Entries (or keys) in one run at most.
pub const RECORDS_MAX: usize = 100_000_000;
/// Puts proposed before each settle of the load: what one busy Ready carries.
pub const PROPOSALS_PER_ROUND: usize = 1000;
/// The log is compacted after this many applied entries (etcd's `--snapshot-count`)...
pub const SNAPSHOT_ENTRIES: u64 = 10_000;
/// ...keeping this many for slow followers (etcd's `--snapshot-catchup-entries`).
pub const CATCHUP_ENTRIES: u64 = 5_000;
/// Distinct payloads, used in turn: enough that no compressor finds the repeats.
const POOL_RECORDS: usize = 1024;

pub struct Options {
    /// Where the scratch dir is made; `None`: the system temp dir.
    pub dir: Option<PathBuf>,
    /// Entries per group-commit run.
    pub entries: usize,
    /// Entries per run with one sync per entry.
    pub unbatched_entries: usize,
    pub entry_bytes: usize,
    /// Entries per sync, one group-commit run each.
    pub batches: Vec<usize>,
    pub keys: usize,
    pub value_bytes: usize,
    pub seed: u64,
}

impl Options {
    pub fn validate(&self) -> Result<(), String> {
        let counts = [
            ("--entries", self.entries),
            ("--unbatched-entries", self.unbatched_entries),
            ("--keys", self.keys),
        ];
        for (flag, n) in counts {
            if !(1..=RECORDS_MAX).contains(&n) {
                return Err(format!("{flag} must be in 1..={RECORDS_MAX}"));
            }
        }
        for (flag, n) in [
            ("--entry-bytes", self.entry_bytes),
            ("--value-bytes", self.value_bytes),
        ] {
            if !(1..=RECORD_BYTES_MAX).contains(&n) {
                return Err(format!("{flag} must be in 1..={RECORD_BYTES_MAX}"));
            }
        }
        if self.batches.is_empty() || self.batches.iter().any(|b| !(1..=65_536).contains(b)) {
            return Err("--batch takes sizes in 1..=65536".into());
        }
        Ok(())
    }
}

/// A dir this run made, removed with everything in it when dropped (also on an error or a
/// panic). It never takes over an existing dir.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(base: &Path) -> BenchResult<ScratchDir> {
        let path = base.join(format!("oxcd-bench-storage-{}", std::process::id()));
        fs::create_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("bench-storage: could not remove {}: {e}", self.0.display());
        }
    }
}

/// `POOL_RECORDS` distinct random records of one size; record `i` is pool slot `i % len`.
struct Pool {
    bytes: Bytes,
    record_bytes: usize,
}

impl Pool {
    fn new(rng: &mut ChaCha8Rng, record_bytes: usize) -> Pool {
        let mut v = vec![0u8; record_bytes * POOL_RECORDS];
        rng.fill_bytes(&mut v);
        Pool {
            bytes: Bytes::from(v),
            record_bytes,
        }
    }

    fn record(&self, i: usize) -> Bytes {
        let at = (i % POOL_RECORDS) * self.record_bytes;
        let r = self.bytes.slice(at..at + self.record_bytes);
        debug_assert_eq!(r.len(), self.record_bytes);
        r
    }
}

/// Latencies in nanoseconds, sorted.
struct Latencies(Vec<u64>);

impl Latencies {
    fn new(mut samples: Vec<Duration>) -> Latencies {
        assert!(!samples.is_empty(), "a run takes at least one sample");
        samples.sort_unstable();
        Latencies(samples.iter().map(|d| d.as_nanos() as u64).collect())
    }

    /// The nearest-rank percentile, in microseconds.
    fn percentile_us(&self, p: f64) -> f64 {
        assert!((0.0..=100.0).contains(&p));
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1] as f64 / 1000.0
    }
}

/// One measured figure: `ops` done in `seconds`, moving `payload_bytes`.
struct Figure {
    name: String,
    ops: u64,
    unit: &'static str,
    seconds: f64,
    payload_bytes: u64,
    latencies: Latencies,
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<40} {:>8} {:<7} {:>7.3} s {:>9.0} {:<9} {:>7.2} MB/s   p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
            self.name,
            self.ops,
            self.unit,
            self.seconds,
            self.ops as f64 / self.seconds,
            format!("{}/s", self.unit),
            self.payload_bytes as f64 / self.seconds / 1e6,
            self.latencies.percentile_us(50.0),
            self.latencies.percentile_us(99.0),
            self.latencies.percentile_us(100.0),
        )
    }
}

fn line(name: &str, value: impl std::fmt::Display) {
    println!("{name:<40} {value}");
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Runs every figure, printing each as it is measured.
pub fn run(o: &Options) -> BenchResult<()> {
    o.validate()?;
    let base = o.dir.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = ScratchDir::create(&base)?;
    let dir = &scratch.0;
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let entries = Pool::new(&mut rng, o.entry_bytes);
    let values = Pool::new(&mut rng, o.value_bytes);
    println!(
        "bench-storage: scratch dir {} ({}), {}-byte entries, seed {}",
        dir.display(),
        filesystem_of(dir),
        o.entry_bytes,
        o.seed
    );

    println!("-- fdatasync on a plain file, appending (one write per sync)");
    let unbatched = o.unbatched_entries;
    println!(
        "{}",
        fdatasync_run(dir, unbatched, 1, FileMode::Append, &entries)?
    );
    for &b in &o.batches {
        println!(
            "{}",
            fdatasync_run(dir, o.entries, b, FileMode::Append, &entries)?
        );
    }
    println!(
        "{}",
        fdatasync_run(dir, unbatched, 1, FileMode::Overwrite, &entries)?
    );

    println!("-- Raft log: RaftStore::persist into the log file (wal/), one sync per persist");
    println!("{}", raft_run(dir, o.unbatched_entries, 1, &entries)?);
    for &b in &o.batches {
        println!("{}", raft_run(dir, o.entries, b, &entries)?);
    }

    println!(
        "-- recovery: {} keys of 14 bytes, {}-byte values, through a one-member Member",
        o.keys, o.value_bytes
    );
    recovery(dir, o, &values)?;
    drop(scratch);
    Ok(())
}

/// Where the fdatasync runs write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileMode {
    /// At the end of a new file: every sync also commits the file's new size and blocks.
    Append,
    /// Over a file written and synced before: data only, the device's floor (etcd's WAL
    /// preallocates its segments for this; fjall's journal sets its length ahead).
    Overwrite,
}

/// Writes `records` records to a new file, `batch` per write and `fdatasync`.
fn fdatasync_run(
    dir: &Path,
    records: usize,
    batch: usize,
    mode: FileMode,
    pool: &Pool,
) -> BenchResult<Figure> {
    use std::os::unix::fs::FileExt as _;
    let path = dir.join(format!("fdatasync-{batch}.dat"));
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)?;
    let total_bytes = (records * pool.record_bytes) as u64;
    if mode == FileMode::Overwrite {
        let zeros = vec![0u8; 1024 * 1024];
        let mut at = 0;
        while at < total_bytes {
            let n = zeros.len().min((total_bytes - at) as usize);
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
    }
    let mut buf = Vec::with_capacity(batch * pool.record_bytes);
    let mut samples = Vec::with_capacity(records.div_ceil(batch));
    let mut done = 0;
    let started = Instant::now();
    while done < records {
        let n = batch.min(records - done);
        buf.clear();
        for i in done..done + n {
            buf.extend_from_slice(&pool.record(i));
        }
        let t = Instant::now();
        file.write_all_at(&buf, (done * pool.record_bytes) as u64)?;
        file.sync_data()?;
        samples.push(t.elapsed());
        done += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(file.metadata()?.len(), total_bytes, "every record landed");
    drop(file);
    fs::remove_file(&path)?;
    let records_per_sync = if batch == 1 {
        "1 record per sync".to_string()
    } else {
        format!("{batch} records per sync")
    };
    Ok(Figure {
        name: match mode {
            FileMode::Append => format!("fdatasync, {records_per_sync}"),
            FileMode::Overwrite => format!("fdatasync, {records_per_sync}, overwrite"),
        },
        ops: records as u64,
        unit: "records",
        seconds,
        payload_bytes: total_bytes,
        latencies: Latencies::new(samples),
    })
}

/// Appends `entries` entries (from index 1, term 1) to a fresh `RaftStore` (its log file), `batch`
/// per `persist` with a hard state and one sync, as a Ready of a busy leader carries them.
fn raft_run(dir: &Path, entries: usize, batch: usize, pool: &Pool) -> BenchResult<Figure> {
    let path = dir.join(format!("raft-{batch}"));
    let mut store = RaftStore::open(FjallEngine::open(&path)?)?;
    assert!(store.is_fresh(), "a new dir holds no log");
    // Built before the clock starts: the bench measures the store, not the allocator.
    let log: Vec<Entry> = (0..entries)
        .map(|i| Entry {
            term: 1,
            index: i as u64 + 1,
            kind: EntryKind::Normal,
            data: pool.record(i),
        })
        .collect();
    let mut samples = Vec::with_capacity(entries.div_ceil(batch));
    let started = Instant::now();
    for chunk in log.chunks(batch) {
        let last = chunk.last().expect("chunks are not empty").index;
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: last,
        };
        let t = Instant::now();
        store.persist(None, chunk, Some(&hs), WriteBatch::default(), true)?;
        samples.push(t.elapsed());
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(store.last_index()?, entries as u64);
    assert_eq!(store.hard_state().commit, entries as u64);
    drop(store);
    fs::remove_dir_all(&path)?;
    Ok(Figure {
        name: if batch == 1 {
            "raft persist, 1 entry per sync".into()
        } else {
            format!("raft persist, {batch} entries per sync")
        },
        ops: entries as u64,
        unit: "entries",
        seconds,
        payload_bytes: (entries * pool.record_bytes) as u64,
        latencies: Latencies::new(samples),
    })
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key/{i:010}"))
}

/// [`storage_load::settle`], returning how many commands were applied, each checked to have
/// succeeded.
fn settle<E: Engine>(m: &mut Member<E>) -> BenchResult<usize> {
    let mut commands = 0;
    for a in storage_load::settle(m)? {
        match a.outcome {
            Outcome::Command { result, .. } => {
                result.map_err(|e| format!("entry {}: {e}", a.index))?;
                commands += 1;
            }
            Outcome::Empty => {}
            Outcome::ConfChange(_) => unreachable!("the bench proposes no change"),
        }
    }
    Ok(commands)
}

/// Campaigns and settles: a lone voter leads at once.
fn lead<E: Engine>(m: &mut Member<E>) -> BenchResult<()> {
    m.raw_mut().campaign()?;
    settle(m)?;
    let role = m.raw().status().soft_state.role;
    assert_eq!(role, StateRole::Leader, "a lone voter leads");
    Ok(())
}

/// Loads `o.keys` keys into a member in `dir/member`, then has a fresh process of this binary
/// recover it (so its peak RSS is the recovery's alone).
fn recovery(dir: &Path, o: &Options, values: &Pool) -> BenchResult<()> {
    let path = dir.join("member");
    load(&path, o, values)?;
    line(
        "peak RSS of the load",
        vm_kb("VmHWM").map_or("n/a".into(), |kb| mb(kb * 1024)),
    );
    let exe = std::env::current_exe()?;
    let status = std::process::Command::new(&exe)
        .arg(RECOVER_SUBCOMMAND)
        .arg("--dir")
        .arg(&path)
        .arg("--keys")
        .arg(o.keys.to_string())
        .arg("--seed")
        .arg(o.seed.to_string())
        .status()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    if !status.success() {
        return Err(format!("the recovery process failed: {status}").into());
    }
    Ok(())
}

/// Proposes `o.keys` puts to a new one-member cluster in `path`, `PROPOSALS_PER_ROUND` per
/// settle, compacting the log as etcd does; leaves it synced and closed.
fn load(path: &Path, o: &Options, values: &Pool) -> BenchResult<()> {
    let mut m = Member::open(
        FjallEngine::open(path)?,
        storage_load::single_config(),
        ChaCha8Rng::seed_from_u64(o.seed),
        0,
    )?;
    lead(&mut m)?;
    let mut samples = Vec::with_capacity(o.keys.div_ceil(PROPOSALS_PER_ROUND));
    let mut compacted_at = m.raw().status().applied;
    let mut done = 0;
    let started = Instant::now();
    while done < o.keys {
        let n = PROPOSALS_PER_ROUND.min(o.keys - done);
        let t = Instant::now();
        for i in done..done + n {
            m.propose(&Command::Put(PutRequest {
                key: key(i),
                value: values.record(i),
                ..PutRequest::default()
            }))?;
        }
        let applied = settle(&mut m)?;
        assert_eq!(applied, n, "every proposal is applied in its round");
        samples.push(t.elapsed());
        done += n;
        let index = m.raw().status().applied;
        if index - compacted_at >= SNAPSHOT_ENTRIES {
            m.compact_log(CATCHUP_ENTRIES)?;
            compacted_at = index;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // Durable before the close, as a clean shutdown leaves it.
    m.raw().storage().engine().sync()?;
    println!(
        "{}",
        Figure {
            name: format!("load, {PROPOSALS_PER_ROUND} puts per round"),
            ops: o.keys as u64,
            unit: "puts",
            seconds,
            payload_bytes: (o.keys * o.value_bytes) as u64,
            latencies: Latencies::new(samples),
        }
    );
    Ok(())
}

/// The hidden subcommand of `sim` that runs [`recover`] (the name clap gives the variant).
pub const RECOVER_SUBCOMMAND: &str = "bench-storage-recover";

/// Times a member's recovery from the data dir `path` until it could serve: the dir opened,
/// [`Member::open`] (the log loaded, the key index rebuilt, the leases restored), leadership
/// and the first settle. Checks that all `keys` keys are back, and prints the figures with the
/// dir's size and this process's peak RSS. Meant to run in a process of its own.
pub fn recover(path: &Path, keys: usize, seed: u64) -> BenchResult<()> {
    let started = Instant::now();
    let engine = FjallEngine::open(path)?;
    let opened = started.elapsed();
    let mut m = Member::open(
        engine.clone(),
        storage_load::single_config(),
        ChaCha8Rng::seed_from_u64(seed.wrapping_add(1)),
        0,
    )?;
    let member_opened = started.elapsed();
    lead(&mut m)?;
    let served = started.elapsed();
    let peak = vm_kb("VmHWM");
    let heap = live_bytes() as u64;

    let count = m.range(&RangeRequest {
        key: Bytes::from_static(b"key/"),
        range_end: Bytes::from_static(b"key0"),
        count_only: true,
        ..RangeRequest::default()
    })?;
    assert_eq!(count.count, keys as i64, "every key is back");
    let log_entries = m.raw().storage().last_index()? + 1 - m.raw().storage().first_index()?;
    let secs = |d: Duration| format!("{:>8.4} s", d.as_secs_f64());
    line("recovery: open the fjall dir", secs(opened));
    line(
        "recovery: Member::open (log, key index)",
        secs(member_opened - opened),
    );
    line(
        "recovery: leader and first settle",
        secs(served - member_opened),
    );
    line("recovery: total, until it could serve", secs(served));
    line(
        "data dir on disk",
        format!(
            "{} (fjall counts {}; {log_entries} log entries kept)",
            mb(du(path)?),
            mb(engine.disk_bytes())
        ),
    );
    line(
        "peak RSS of the recovery process",
        format!(
            "{} (heap live once serving: {})",
            peak.map_or("n/a".into(), |kb| mb(kb * 1024)),
            mb(heap)
        ),
    );
    Ok(())
}

/// A `Vm*` line of /proc/self/status, in kB.
fn vm_kb(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Bytes allocated on disk under `path`, as `du` counts them.
fn du(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs::symlink_metadata(path)?;
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            total += du(&entry?.path())?;
        }
    }
    Ok(total)
}

/// The type and device of the filesystem holding `dir`, from /proc/self/mounts.
fn filesystem_of(dir: &Path) -> String {
    let Ok(dir) = fs::canonicalize(dir) else {
        return "filesystem unknown".into();
    };
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return "filesystem unknown".into();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (device, point, kind) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(point)
                .then(|| (point.len(), format!("{kind} on {device}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "filesystem unknown".into(), |(_, s)| s)
}
