//! A one-member cluster on a real data dir, driven by hand: the load that the process-crash
//! test (`sim/tests/kill9.rs`) kills with SIGKILL, and the helpers to reopen and read it back.
//!
//! `sim storage-load --dir D --start N` opens (or recovers) the member on `D` and puts key
//! [`key`]`(i)` = [`value`]`(i)` for i = N, N+1, …, printing `ack <i> <revision>` once each
//! put is applied, which is after its log entry was synced: every printed line is a write
//! the store must still hold after any crash.

use bytes::Bytes;
use oxcd::lease::LessorConfig;
use oxcd::mvcc::{PutRequest, WatchConfig};
use oxcd::node::{Applied, AppliedEntry, Command, Member, MemberConfig, Outcome};
use oxcd::raft::Config;
use oxcd::storage::{Engine, StorageError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::io::Write;

/// Distinct keys the load cycles through.
pub const KEYS: u64 = 97;

pub fn key(i: u64) -> Bytes {
    Bytes::from(format!("load/{:03}", i % KEYS))
}

pub fn value(i: u64) -> Bytes {
    Bytes::from(format!("v{i}"))
}

/// The number `i` of a value written by the load.
pub fn value_number(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.strip_prefix('v')?.parse().ok()
}

/// Member 1 of a one-member cluster.
pub fn single_config() -> MemberConfig {
    MemberConfig {
        raft: Config::new(1),
        initial_voters: vec![1],
        cluster_id: 0x10ad,
        initial_members: Vec::new(),
        lessor: LessorConfig::new(1000, 100),
        watch: WatchConfig::default(),
        txn_ops_max: 128,
        force_new_cluster: false,
    }
}

/// Opens (or founds) the one-member cluster on `engine` and makes it leader.
pub fn open_single<E: Engine>(engine: E) -> Result<Member<E>, StorageError> {
    let mut m = Member::open(engine, single_config(), ChaCha8Rng::seed_from_u64(1), 0)?;
    m.raw_mut().campaign().expect("a lone voter campaigns");
    settle(&mut m)?;
    Ok(m)
}

/// Handles Readies until there are none, returning what was applied.
pub fn settle<E: Engine>(m: &mut Member<E>) -> Result<Vec<AppliedEntry>, StorageError> {
    let mut applied = Vec::new();
    while let Some(out) = m.handle_ready(0)? {
        applied.extend(out.applied);
    }
    Ok(applied)
}

/// Puts `i` = start, start+1, … forever (or `count` of them), printing `ack <i> <revision>`
/// to `out` after each is applied.
pub fn run<E: Engine>(
    m: &mut Member<E>,
    start: u64,
    count: Option<u64>,
    out: &mut impl Write,
) -> Result<(), String> {
    let end = count.map_or(u64::MAX, |c| start + c);
    for i in start..end {
        let put = Command::Put(PutRequest {
            key: key(i),
            value: value(i),
            ..PutRequest::default()
        });
        m.propose(&put).map_err(|e| format!("propose {i}: {e}"))?;
        let applied = settle(m).map_err(|e| format!("put {i}: {e}"))?;
        let revision = applied
            .iter()
            .find_map(|a| match &a.outcome {
                Outcome::Command {
                    result: Ok(Applied::Put(_)),
                    revision,
                } => Some(*revision),
                _ => None,
            })
            .ok_or(format!("put {i} was not applied"))?;
        writeln!(out, "ack {i} {revision}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}
