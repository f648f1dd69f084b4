//! The simulated disk: an [`Engine`] held in memory that fails the way disks fail, drawn from a
//! seed so every run replays.
//!
//! Each disk has a durable layer (what survives a crash) and a buffered layer: the batches
//! written since the last successful sync, kept as the bytes of a journal (one checksummed
//! frame per batch), the way a write-ahead log sits in the page cache. Reads see both layers.
//! [`SimDisk::crash`] loses the buffered layer whole, keeps it whole, or keeps a torn prefix of
//! its bytes (the seed chooses); recovery replays the frames that survived and discards the
//! torn tail, so a batch is kept or lost whole, as fjall's journal does.
//!
//! Faults, each a rate in [`DiskFaults`]: reads that return a flipped bit (the value's checksum
//! catches it), syncs that fail (the writes stay unsynced: Linux may drop the pages of a failed
//! fsync, so nothing written before it may be trusted), a capacity past which writes fail with
//! [`StorageError::NoSpace`], and slow I/O, which accumulates time for the caller to wait out
//! ([`Engine::take_io_delay`]). [`SimDisk::rot`] flips a bit of a stored value for good.
//!
//! A crash detaches every handle taken before it: their calls fail, so a member that was
//! "killed" cannot write into the disk its successor recovers from.

use super::codec::{self, CodecError, Kind, Reader, Writer};
use super::engine::{Engine, EngineRead, Op, Result, Space, StorageError, WriteBatch, scan_limit};
use super::wal::{SegmentName, WalDir};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Fault rates (chances per call) and limits; all off by default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiskFaults {
    /// Chance that a value (or key) a read returns has one bit flipped.
    pub read_corruption: f64,
    /// Chance that a sync fails.
    pub sync_failure: f64,
    /// Writes that would take the disk past this many bytes fail with `NoSpace`.
    pub capacity_bytes: Option<u64>,
    /// Chance that a write or sync is slow, and by how much.
    pub slow_io: f64,
    /// How long a slow write or sync takes on top of its normal time.
    pub slow_io_delay: Duration,
}

/// Counters, for reports and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Batches written.
    pub writes: u64,
    /// Syncs attempted, failed ones included.
    pub syncs: u64,
    /// Syncs that failed.
    pub sync_failures: u64,
    /// Reads that returned a flipped bit.
    pub corrupted_reads: u64,
    /// Writes refused with `NoSpace`.
    pub full_writes: u64,
    /// Writes and syncs made slow.
    pub slow_ios: u64,
    /// Crashes simulated.
    pub crashes: u64,
    /// Writes to the log file's zone.
    pub wal_writes: u64,
    /// Syncs of the log file's zone, failed ones included.
    pub wal_syncs: u64,
    /// Log segments whose unsynced bytes a crash cut inside.
    pub wal_torn: u64,
}

/// What a crash did to the unsynced writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashReport {
    /// Batches that were written but not synced.
    pub unsynced: usize,
    /// How many of them survived (a prefix, in write order).
    pub kept: usize,
    /// Whether the journal was cut inside a batch (that batch is lost).
    pub torn: bool,
}

type Map = BTreeMap<Bytes, Bytes>;

#[derive(Debug)]
struct Disk {
    durable: [Map; 5],
    live: [Map; 5],
    live_bytes: u64,
    /// Unsynced batches, framed, in write order.
    journal: Vec<u8>,
    journal_batches: usize,
    faults: DiskFaults,
    rng: ChaCha8Rng,
    delay: Duration,
    epoch: u64,
    stats: DiskStats,
    /// The Raft log file's zone: its segments.
    wal: BTreeMap<SegmentName, SimSegment>,
    wal_segment_bytes: u64,
}

/// One segment of the log file's zone: what survives a crash, what reads see, and the writes
/// since the last sync, in order (offset, length), of which a crash keeps a prefix of bytes.
#[derive(Clone, Debug)]
struct SimSegment {
    durable: Vec<u8>,
    live: Vec<u8>,
    unsynced: Vec<(usize, usize)>,
}

impl SimSegment {
    /// Copies into the durable bytes the first `keep` bytes of the unsynced writes, in the
    /// order they were written, and forgets the writes.
    fn settle(&mut self, mut keep: usize) {
        for (at, len) in std::mem::take(&mut self.unsynced) {
            let n = len.min(keep);
            self.durable[at..at + n].copy_from_slice(&self.live[at..at + n]);
            keep -= n;
        }
    }

    fn unsynced_bytes(&self) -> usize {
        self.unsynced.iter().map(|(_, len)| len).sum()
    }
}

/// The log file's segments on a simulated disk are this long unless set otherwise: small, so
/// that simulated runs start new segments and drop old ones.
pub const SIM_WAL_SEGMENT_BYTES: u64 = 16 << 10;

/// A handle on one simulated disk. Clones share it.
#[derive(Clone, Debug)]
pub struct SimDisk {
    disk: Arc<Mutex<Disk>>,
    epoch: u64,
}

impl SimDisk {
    /// An empty disk whose faults and crashes are drawn from `seed`.
    pub fn new(seed: u64, faults: DiskFaults) -> SimDisk {
        SimDisk {
            disk: Arc::new(Mutex::new(Disk {
                durable: Default::default(),
                live: Default::default(),
                live_bytes: 0,
                journal: Vec::new(),
                journal_batches: 0,
                faults,
                rng: ChaCha8Rng::seed_from_u64(seed),
                delay: Duration::ZERO,
                epoch: 0,
                stats: DiskStats::default(),
                wal: BTreeMap::new(),
                wal_segment_bytes: SIM_WAL_SEGMENT_BYTES,
            })),
            epoch: 0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        // A panic while holding the lock leaves the maps whole (every change is one insert or
        // remove), so a poisoned lock is still safe to read.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The disk, checked to be the one this handle was given (not detached by a crash).
    fn attached(&self) -> Result<MutexGuard<'_, Disk>> {
        let d = self.lock();
        if d.epoch != self.epoch {
            return Err(StorageError::Io(
                "the disk crashed since this handle was taken".into(),
            ));
        }
        Ok(d)
    }

    /// Replaces the fault rates and limits, from the next call on.
    pub fn set_faults(&self, faults: DiskFaults) {
        self.lock().faults = faults;
    }

    /// The fault rates and limits in force.
    pub fn faults(&self) -> DiskFaults {
        self.lock().faults.clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> DiskStats {
        self.lock().stats.clone()
    }

    /// Batches written and not yet synced.
    pub fn unsynced_batches(&self) -> usize {
        self.lock().journal_batches
    }

    /// Power loss: the unsynced writes are lost, kept, or torn (the seed chooses), the disk
    /// comes back holding what survived, and every handle taken before now is detached. Use
    /// [`SimDisk::reopen`] for a handle on the recovered disk.
    pub fn crash(&self) -> CrashReport {
        self.crash_keeping(None)
    }

    /// A crash that loses every unsynced write (in the engine and in the log file's zone):
    /// what survives is exactly what was synced.
    pub fn crash_losing_unsynced(&self) -> CrashReport {
        self.crash_keeping(Some(0))
    }

    fn crash_keeping(&self, keep: Option<usize>) -> CrashReport {
        let mut d = self.lock();
        let d = &mut *d;
        d.stats.crashes += 1;
        d.epoch += 1;
        let journal = std::mem::take(&mut d.journal);
        let unsynced = std::mem::take(&mut d.journal_batches);
        let cut = crash_cut(&mut d.rng, keep, journal.len());
        let mut kept = 0;
        let mut at = 0;
        while at < cut {
            match codec::decode_frame(&journal[at..cut]) {
                Ok((Kind::DiskBatch, payload, used)) => {
                    let batch = decode_batch(payload).expect("the disk's own journal frame");
                    apply(&mut d.durable, None, &batch);
                    kept += 1;
                    at += used;
                }
                // The torn tail: the frame was cut short, so its checksum or length fails.
                _ => break,
            }
        }
        d.live = d.durable.clone();
        d.live_bytes = d.live.iter().flat_map(|m| m.iter()).map(pair_bytes).sum();
        for seg in d.wal.values_mut() {
            let unsynced = seg.unsynced_bytes();
            let keep = crash_cut(&mut d.rng, keep, unsynced);
            if keep > 0 && keep < unsynced {
                d.stats.wal_torn += 1;
            }
            seg.settle(keep);
            seg.live = seg.durable.clone();
        }
        CrashReport {
            unsynced,
            kept,
            torn: at < cut,
        }
    }

    /// Makes the log file's new segments `bytes` long (for tests that fill segments fast or
    /// never).
    pub fn set_wal_segment_bytes(&self, bytes: u64) {
        self.lock().wal_segment_bytes = bytes;
    }

    /// A handle on the disk as it is now (after a crash: as it recovered).
    pub fn reopen(&self) -> SimDisk {
        SimDisk {
            disk: self.disk.clone(),
            epoch: self.lock().epoch,
        }
    }

    /// Bit rot: flips bit `bit` (modulo the value's length) of the value stored at `key`, in
    /// both layers. Returns whether there was such a value.
    pub fn rot(&self, space: Space, key: &[u8], bit: usize) -> bool {
        let mut d = self.lock();
        let d = &mut *d;
        let mut found = false;
        for map in [&mut d.durable, &mut d.live] {
            if let Some(v) = map[space.index() as usize].get_mut(key) {
                let mut bytes = v.to_vec();
                let i = bit % (bytes.len() * 8);
                bytes[i / 8] ^= 1 << (i % 8);
                *v = Bytes::from(bytes);
                found = true;
            }
        }
        found
    }

    /// Bit rot in the log file's zone: flips bit `bit` (modulo the written part's bits: up to
    /// its last non-zero byte) of the `segment`th segment, in both layers. Returns whether
    /// there was such a segment with something written.
    pub fn rot_wal(&self, segment: usize, bit: usize) -> bool {
        let mut d = self.lock();
        let Some(seg) = d.wal.values_mut().nth(segment) else {
            return false;
        };
        let Some(end) = seg.live.iter().rposition(|b| *b != 0) else {
            return false;
        };
        let i = bit % ((end + 1) * 8);
        seg.live[i / 8] ^= 1 << (i % 8);
        seg.durable[i / 8] ^= 1 << (i % 8);
        true
    }

    /// Every key in `space`, for tests that rot each stored value in turn.
    pub fn keys(&self, space: Space) -> Vec<Bytes> {
        self.lock().live[space.index() as usize]
            .keys()
            .cloned()
            .collect()
    }
}

/// How many of `unsynced` bytes a crash keeps: `keep` when given, else none, all, or a cut
/// anywhere (the seed chooses).
fn crash_cut(rng: &mut ChaCha8Rng, keep: Option<usize>, unsynced: usize) -> usize {
    match (keep, rng.gen_range(0..3)) {
        (Some(keep), _) => keep.min(unsynced),
        (None, 0) => 0,
        (None, 1) => unsynced,
        (None, _) => rng.gen_range(0..=unsynced),
    }
}

fn pair_bytes((k, v): (&Bytes, &Bytes)) -> u64 {
    (k.len() + v.len()) as u64
}

/// Applies `batch` to `maps`, keeping `bytes` (when given) the size of what they hold.
fn apply(maps: &mut [Map; 5], mut bytes: Option<&mut u64>, batch: &WriteBatch) {
    for op in &batch.ops {
        let map = &mut maps[op.space.index() as usize];
        let old = match &op.value {
            Some(v) => map.insert(op.key.clone(), v.clone()),
            None => map.remove(&op.key),
        };
        if let Some(b) = bytes.as_deref_mut() {
            if let Some(old) = old {
                *b -= pair_bytes((&op.key, &old));
            }
            if let Some(v) = &op.value {
                *b += pair_bytes((&op.key, v));
            }
        }
    }
}

/// One journal frame of the simulated disk: a whole batch.
pub fn encode_journal_frame(batch: &WriteBatch) -> Bytes {
    let mut w = Writer::with_capacity(16 + batch.size_bytes() as usize + 16 * batch.ops.len());
    w.u32(u32::try_from(batch.ops.len()).expect("batch under 4 G ops"));
    for op in &batch.ops {
        w.u8(op.space.index());
        w.bytes(&op.key);
        w.bool(op.value.is_some());
        if let Some(v) = &op.value {
            w.bytes(v);
        }
    }
    codec::encode_frame(Kind::DiskBatch, &w.finish())
}

fn decode_batch(payload: &[u8]) -> Result<WriteBatch, CodecError> {
    let mut p = Reader::new(payload);
    let n = p.u32()? as usize;
    // Each op takes at least 10 bytes: bound the count before allocating for it.
    if n > p.remaining() / 10 {
        return Err(CodecError::Malformed {
            why: "op count runs past the batch",
        });
    }
    let mut batch = WriteBatch {
        ops: Vec::with_capacity(n),
    };
    for _ in 0..n {
        let space = Space::from_index(p.u8()?).ok_or(CodecError::Malformed { why: "space" })?;
        let key = p.bytes()?;
        let value = if p.bool()? { Some(p.bytes()?) } else { None };
        batch.ops.push(Op { space, key, value });
    }
    p.finish()?;
    Ok(batch)
}

/// Decodes one journal frame of the simulated disk (for the fuzzer).
pub fn decode_journal_frame(buf: &[u8]) -> Result<WriteBatch, CodecError> {
    decode_batch(codec::decode_exact(buf, Kind::DiskBatch)?)
}

impl Disk {
    fn maybe_corrupt(&mut self, bytes: &mut Bytes) {
        if bytes.is_empty()
            || !self
                .rng
                .gen_bool(self.faults.read_corruption.clamp(0.0, 1.0))
        {
            return;
        }
        self.stats.corrupted_reads += 1;
        let mut v = bytes.to_vec();
        let i = self.rng.gen_range(0..v.len() * 8);
        v[i / 8] ^= 1 << (i % 8);
        *bytes = Bytes::from(v);
    }

    /// A sync fault: fails the sync at the configured rate, counting it.
    fn maybe_fail_sync(&mut self) -> Result<()> {
        if self.rng.gen_bool(self.faults.sync_failure.clamp(0.0, 1.0)) {
            self.stats.sync_failures += 1;
            return Err(StorageError::Sync("simulated fsync failure".into()));
        }
        Ok(())
    }

    fn maybe_slow(&mut self) {
        if self.rng.gen_bool(self.faults.slow_io.clamp(0.0, 1.0)) {
            self.stats.slow_ios += 1;
            self.delay += self.faults.slow_io_delay;
        }
    }
}

/// A frozen copy of a simulated disk's contents (its reads are not faulty).
#[derive(Clone, Debug)]
pub struct SimView(Arc<[Map; 5]>);

impl EngineRead for SimView {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.0[space.index() as usize].get(key).cloned())
    }

    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        Ok(scan_map(&self.0[space.index() as usize], from, to, limit))
    }
}

fn scan_map(map: &Map, from: &[u8], to: Option<&[u8]>, limit: usize) -> Vec<(Bytes, Bytes)> {
    let Some(limit) = scan_limit(from, to, limit) else {
        return Vec::new();
    };
    let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
    map.range::<[u8], _>((Bound::Included(from), upper))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl EngineRead for SimDisk {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        let mut d = self.attached()?;
        let Some(mut v) = d.live[space.index() as usize].get(key).cloned() else {
            return Ok(None);
        };
        d.maybe_corrupt(&mut v);
        Ok(Some(v))
    }

    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        let mut d = self.attached()?;
        let mut out = scan_map(&d.live[space.index() as usize], from, to, limit);
        for (k, v) in &mut out {
            d.maybe_corrupt(k);
            d.maybe_corrupt(v);
        }
        Ok(out)
    }
}

impl Engine for SimDisk {
    type View = SimView;
    type Wal = SimWalDir;

    fn wal_dir(&self) -> Result<SimWalDir> {
        drop(self.attached()?);
        Ok(SimWalDir(self.clone()))
    }

    fn view(&self) -> SimView {
        SimView(Arc::new(self.lock().live.clone()))
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut d = self.attached()?;
        let d = &mut *d;
        d.maybe_slow();
        let frame = encode_journal_frame(&batch);
        if let Some(cap) = d.faults.capacity_bytes
            && d.live_bytes + (d.journal.len() + frame.len()) as u64 > cap
        {
            d.stats.full_writes += 1;
            return Err(StorageError::NoSpace);
        }
        d.stats.writes += 1;
        d.journal.extend_from_slice(&frame);
        d.journal_batches += 1;
        apply(&mut d.live, Some(&mut d.live_bytes), &batch);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let mut d = self.attached()?;
        let d = &mut *d;
        d.maybe_slow();
        d.stats.syncs += 1;
        d.maybe_fail_sync()?;
        let journal = std::mem::take(&mut d.journal);
        d.journal_batches = 0;
        let mut at = 0;
        while at < journal.len() {
            let (_, payload, used) =
                codec::decode_frame(&journal[at..]).expect("the disk's own journal frame");
            let batch = decode_batch(payload).expect("the disk's own journal batch");
            apply(&mut d.durable, None, &batch);
            at += used;
        }
        Ok(())
    }

    fn take_io_delay(&self) -> Duration {
        std::mem::take(&mut self.lock().delay)
    }
}

/// The simulated disk's zone for the Raft log's file, a [`WalDir`]: segments of bytes written
/// in place. A sync makes a segment's writes durable; a crash keeps a prefix of the bytes
/// written since (the seed chooses: none, all, or cut at any byte), the way a file's unsynced
/// pages reach the platter in order. Syncs fail, writes are slow and new segments meet the
/// capacity as the disk's [`DiskFaults`] say. Its reads are never corrupted: a flipped byte
/// in the last segment's synced part would read as a torn tail there (the open point in
/// `docs/raft-log-file.md`), and that fault waits for the rule that tells them apart.
#[derive(Clone, Debug)]
pub struct SimWalDir(SimDisk);

impl SimWalDir {
    fn segment(d: &mut Disk, name: SegmentName) -> Result<&mut SimSegment> {
        d.wal
            .get_mut(&name)
            .ok_or_else(|| StorageError::Io(format!("no log segment {}", name.file_name())))
    }
}

impl WalDir for SimWalDir {
    fn list(&self) -> Result<Vec<SegmentName>> {
        Ok(self.0.attached()?.wal.keys().copied().collect())
    }

    fn read(&self, name: SegmentName) -> Result<Vec<u8>> {
        let mut d = self.0.attached()?;
        Ok(SimWalDir::segment(&mut d, name)?.live.clone())
    }

    fn create(&mut self, name: SegmentName, len: u64) -> Result<()> {
        let mut d = self.0.attached()?;
        let d = &mut *d;
        d.maybe_slow();
        let len = usize::try_from(len).expect("a segment that fits in memory");
        let wal_bytes: usize = d.wal.values().map(|s| s.live.len()).sum();
        if let Some(cap) = d.faults.capacity_bytes
            && d.live_bytes + (d.journal.len() + wal_bytes + len) as u64 > cap
        {
            d.stats.full_writes += 1;
            return Err(StorageError::NoSpace);
        }
        assert!(!d.wal.contains_key(&name), "segment {name:?} created twice");
        let zeros = vec![0; len];
        d.wal.insert(
            name,
            SimSegment {
                durable: zeros.clone(),
                live: zeros,
                unsynced: Vec::new(),
            },
        );
        Ok(())
    }

    fn write(&mut self, name: SegmentName, offset: u64, bytes: &[u8]) -> Result<()> {
        let mut d = self.0.attached()?;
        d.maybe_slow();
        d.stats.wal_writes += 1;
        let seg = SimWalDir::segment(&mut d, name)?;
        let at = usize::try_from(offset).expect("an offset in memory");
        assert!(
            at + bytes.len() <= seg.live.len(),
            "a write past the end of segment {name:?}"
        );
        seg.live[at..at + bytes.len()].copy_from_slice(bytes);
        seg.unsynced.push((at, bytes.len()));
        Ok(())
    }

    fn sync(&mut self, name: SegmentName) -> Result<()> {
        let mut d = self.0.attached()?;
        let d = &mut *d;
        d.maybe_slow();
        d.stats.wal_syncs += 1;
        d.maybe_fail_sync()?;
        let seg = SimWalDir::segment(d, name)?;
        let all = seg.unsynced_bytes();
        seg.settle(all);
        Ok(())
    }

    fn remove(&mut self, name: SegmentName) -> Result<()> {
        self.0.attached()?.wal.remove(&name);
        Ok(())
    }

    fn segment_bytes(&self) -> u64 {
        self.0.lock().wal_segment_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(i: u8) -> WriteBatch {
        let mut b = WriteBatch::default();
        b.put(Space::Meta, vec![i], Bytes::from(vec![i; 10]));
        b.put(Space::Log, vec![i, i], Bytes::from(vec![i; 3]));
        b
    }

    #[test]
    fn synced_writes_survive_and_crashes_keep_a_prefix_of_the_rest() {
        for seed in 0..200 {
            let disk = SimDisk::new(seed, DiskFaults::default());
            for i in 0..3 {
                disk.write(batch(i)).unwrap();
            }
            disk.sync().unwrap();
            for i in 3..8 {
                disk.write(batch(i)).unwrap();
            }
            let report = disk.crash();
            assert_eq!(report.unsynced, 5);
            assert!(
                disk.get(Space::Meta, &[0]).is_err(),
                "detached by the crash"
            );
            let disk = disk.reopen();
            for i in 0..8u8 {
                let want = i < 3 + report.kept as u8;
                assert_eq!(
                    disk.get(Space::Meta, &[i]).unwrap().is_some(),
                    want,
                    "seed {seed}"
                );
                // Batches are atomic: both ops of a batch, or neither.
                assert_eq!(disk.get(Space::Log, &[i, i]).unwrap().is_some(), want);
            }
        }
    }

    #[test]
    fn a_failed_sync_leaves_writes_unsynced() {
        let disk = SimDisk::new(
            1,
            DiskFaults {
                sync_failure: 1.0,
                ..DiskFaults::default()
            },
        );
        disk.write(batch(1)).unwrap();
        assert!(matches!(disk.sync(), Err(StorageError::Sync(_))));
        assert_eq!(disk.unsynced_batches(), 1);
    }

    #[test]
    fn a_full_disk_refuses_the_whole_batch() {
        let disk = SimDisk::new(
            1,
            DiskFaults {
                capacity_bytes: Some(100),
                ..DiskFaults::default()
            },
        );
        disk.write(batch(1)).unwrap();
        disk.sync().unwrap();
        let mut big = batch(2);
        big.put(Space::Mvcc, vec![9], Bytes::from(vec![0; 100]));
        assert_eq!(disk.write(big), Err(StorageError::NoSpace));
        assert_eq!(disk.get(Space::Meta, &[2]).unwrap(), None);
    }

    #[test]
    fn corrupted_reads_differ_and_slow_io_accumulates() {
        let disk = SimDisk::new(
            3,
            DiskFaults {
                read_corruption: 1.0,
                slow_io: 1.0,
                slow_io_delay: Duration::from_millis(5),
                ..DiskFaults::default()
            },
        );
        disk.write(batch(1)).unwrap();
        disk.sync().unwrap();
        assert_ne!(disk.get(Space::Meta, &[1]).unwrap().unwrap(), vec![1u8; 10]);
        assert_eq!(disk.take_io_delay(), Duration::from_millis(10));
        assert_eq!(disk.take_io_delay(), Duration::ZERO);
    }

    #[test]
    fn journal_frames_decode_strictly() {
        let frame = encode_journal_frame(&batch(4));
        assert_eq!(decode_journal_frame(&frame), Ok(batch(4)));
        for cut in 0..frame.len() {
            assert!(decode_journal_frame(&frame[..cut]).is_err());
        }
    }
}
