//! Shared by the storage tests: a one-member cluster on any engine, driven by hand.

#![allow(dead_code)]

use oxcd::lease::LessorConfig;
use oxcd::mvcc::WatchConfig;
use oxcd::node::{AppliedEntry, Member, MemberConfig};
use oxcd::raft::Config;
use oxcd::storage::{Engine, StorageError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub const CLUSTER_ID: u64 = 0x0c1d;

pub fn config(id: u64, voters: &[u64]) -> MemberConfig {
    MemberConfig {
        raft: Config::new(id),
        initial_voters: voters.to_vec(),
        cluster_id: CLUSTER_ID,
        initial_members: Vec::new(),
        lessor: LessorConfig::new(1000, 100),
        watch: WatchConfig::default(),
        txn_ops_max: 128,
        force_new_cluster: false,
    }
}

/// Opens member 1 of a one-member cluster on `engine` and makes it leader.
pub fn open_single<E: Engine>(engine: E, seed: u64) -> Result<Member<E>, StorageError> {
    let mut m = Member::open(engine, config(1, &[1]), ChaCha8Rng::seed_from_u64(seed), 0)?;
    m.raw_mut().campaign().expect("a lone voter campaigns");
    settle(&mut m)?;
    assert_eq!(
        m.raw().status().soft_state.leader_id,
        1,
        "a lone voter leads"
    );
    Ok(m)
}

/// Handles Readies until there are none (one member: nothing to send), returning what was
/// applied.
pub fn settle<E: Engine>(m: &mut Member<E>) -> Result<Vec<AppliedEntry>, StorageError> {
    let mut applied = Vec::new();
    while let Some(out) = m.handle_ready(0)? {
        applied.extend(out.applied);
    }
    Ok(applied)
}
