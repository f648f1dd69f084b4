//! The full-stack simulation proves itself: clean seeds pass under every fault, the same seed
//! replays to the same trace hash, and planted server mistakes are caught: linearizable reads
//! served from a member's own state (a stale read; its replay shows it again), and expired
//! leases never revoked (a key that outlives its lease).
//!
//! Built only with `--cfg madsim`:
//! `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test -p sim --test cluster_sim`.

#![cfg(madsim)]

use oxcd::server::ServerBug;
use sim::cluster::{self, Faults, Options};
use std::time::Duration;

fn options(seed: u64, bug: Option<ServerBug>) -> Options {
    Options {
        seed,
        nodes: 3,
        duration: Duration::from_secs(20),
        faults: Faults::ALL,
        clients: 3,
        bug,
    }
}

#[test]
fn clean_seeds_pass_under_every_fault() {
    for seed in 1..=10 {
        let report = cluster::run(&options(seed, None));
        assert!(
            report.ops > 100,
            "seed {seed}: only {} operations",
            report.ops
        );
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {:?}\nreplay: {}",
            report.violations,
            cluster::replay_command(&options(seed, None))
        );
        assert_eq!(report.undecided, 0, "seed {seed}: the search gave up");
    }
}

#[test]
fn a_seed_replays_to_the_same_hash() {
    let a = cluster::run(&options(7, None));
    let b = cluster::run(&options(7, None));
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.ops, b.ops);
    let c = cluster::run(&options(8, None));
    assert_ne!(a.hash, c.hash, "another seed, another history");
}

#[test]
fn local_linearizable_reads_are_caught_and_replay() {
    let bug = Some(ServerBug::LocalLinearizableReads);
    let caught = (1..=10)
        .map(|seed| cluster::run(&options(seed, bug)))
        .find(|r| !r.violations.is_empty())
        .expect("the planted bug is caught within 10 seeds");
    assert!(
        caught
            .violations
            .iter()
            .any(|v| v.starts_with("linearizability") || v.contains("revision go back")),
        "caught as a stale read: {:?}",
        caught.violations
    );
    let replay = cluster::run(&options(caught.seed, bug));
    assert_eq!(replay.hash, caught.hash);
    assert_eq!(replay.violations, caught.violations);
}

#[test]
fn expired_leases_that_are_kept_are_caught() {
    let bug = Some(ServerBug::ExpiredLeasesKept);
    let report = cluster::run(&options(1, bug));
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.starts_with("lease safety") && v.contains("lapsed")),
        "caught as a key that outlived its lease: {:?}",
        report.violations
    );
}
