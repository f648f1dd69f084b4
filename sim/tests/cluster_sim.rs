//! The full-stack simulation proves itself: clean seeds pass under every fault, the same seed
//! replays to the same trace hash, and planted server mistakes are caught: linearizable reads
//! served from a member's own state (a stale read; its replay shows it again), expired
//! leases never revoked (a key that outlives its lease), permissions checked only when a
//! request enters (a write that a revoke should have stopped; the `--auth` workload), a
//! `Campaign` that does not wait (two leaders at once) and an `Observe` that reads the next
//! leader as of now, as etcd's recipe does (a brief leader never told).
//!
//! Each case runs the `sim` binary as a user would (`sim/run cluster ...`), which runs every
//! seed in a process of its own: a run leaves state in the process (madsim's and the
//! libraries' globals) that could otherwise reach the next one.
//!
//! Built only with `--cfg madsim`:
//! `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test -p sim --test cluster_sim`.

#![cfg(madsim)]

use std::process::Command;

/// What `sim cluster ARGS` printed, and whether it exited 0.
fn sim_cluster(args: &[&str]) -> (String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_sim"))
        .arg("cluster")
        .args(["--duration", "20s"])
        .args(args)
        .output()
        .expect("the sim binary runs");
    assert!(
        out.stderr.is_empty() || out.status.success() || !out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

/// The value of `name=` in the report line.
fn field<'a>(text: &'a str, name: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| l.starts_with("cluster seeds="))
        .unwrap_or_else(|| panic!("no report line in:\n{text}"));
    line.split(' ')
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

#[test]
fn clean_seeds_pass_under_every_fault() {
    let (out, ok) = sim_cluster(&["--seed", "1", "--count", "10"]);
    assert!(ok, "{out}");
    assert_eq!(field(&out, "violations"), "0", "{out}");
    assert_eq!(field(&out, "undecided"), "0", "{out}");
    let ops: u64 = field(&out, "ops").parse().unwrap();
    assert!(ops > 1000, "only {ops} operations in 10 seeds");
}

#[test]
fn a_seed_replays_to_the_same_hash() {
    let (a, _) = sim_cluster(&["--seed", "7", "--count", "1"]);
    let (b, _) = sim_cluster(&["--seed", "7", "--count", "1", "--check-determinism"]);
    assert_eq!(field(&a, "hash"), field(&b, "hash"));
    assert_eq!(field(&b, "violations"), "0", "{b}");
    let (c, _) = sim_cluster(&["--seed", "8", "--count", "1"]);
    assert_ne!(
        field(&a, "hash"),
        field(&c, "hash"),
        "another seed, another history"
    );
}

#[test]
fn local_linearizable_reads_are_caught_and_replay() {
    let bug = ["--bug", "local-linearizable-reads"];
    let (out, ok) = sim_cluster(&[&["--seed", "1", "--count", "10"][..], &bug].concat());
    assert!(!ok, "the planted bug went unnoticed in 10 seeds:\n{out}");
    // The first failing seed, as printed, and its replay command.
    let seed = out
        .lines()
        .find_map(|l| l.strip_prefix("seed ")?.split(':').next())
        .expect("a failing seed");
    assert!(
        out.contains("linearizability:") || out.contains("revision go back"),
        "caught as a stale read:\n{out}"
    );
    let (first, _) = sim_cluster(&[&["--seed", seed, "--count", "1"][..], &bug].concat());
    let (again, _) = sim_cluster(&[&["--seed", seed, "--count", "1"][..], &bug].concat());
    assert_ne!(field(&first, "violations"), "0");
    assert_eq!(field(&first, "hash"), field(&again, "hash"));
    // Everything but the wall time is the same.
    let without_wall = |text: &str| -> String {
        text.split_inclusive(' ')
            .filter(|w| !w.starts_with("wall_s="))
            .collect()
    };
    assert_eq!(without_wall(&first), without_wall(&again));
}

#[test]
fn expired_leases_that_are_kept_are_caught() {
    let (out, ok) = sim_cluster(&[
        "--seed",
        "1",
        "--count",
        "1",
        "--bug",
        "expired-leases-kept",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("lease safety") && l.contains("lapsed")),
        "caught as a key that outlived its lease:\n{out}"
    );
}

#[test]
fn the_auth_workload_passes_under_every_fault() {
    let (out, ok) = sim_cluster(&["--seed", "1", "--count", "5", "--auth"]);
    assert!(ok, "{out}");
    assert_eq!(field(&out, "violations"), "0", "{out}");
    let ops: u64 = field(&out, "ops").parse().unwrap();
    assert!(ops > 300, "only {ops} auth operations in 5 seeds");
}

#[test]
fn permissions_checked_only_on_entry_are_caught() {
    let (out, ok) = sim_cluster(&[
        "--seed",
        "1",
        "--count",
        "5",
        "--auth",
        "--bug",
        "auth-checked-on-entry-only",
    ]);
    assert!(!ok, "the planted bug went unnoticed in 5 seeds:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("auth: the writer's")
                && l.contains("while its permission was revoked")),
        "caught as a write made without permission:\n{out}"
    );
}

#[test]
fn a_campaign_that_does_not_wait_is_caught() {
    let bug = ["--bug", "campaign-without-waiting"];
    let (out, ok) = sim_cluster(&[&["--seed", "1", "--count", "3"][..], &bug].concat());
    assert!(!ok, "the planted bug went unnoticed in 3 seeds:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("election:") && (l.contains("leads") || l.contains("two holders"))),
        "caught as two leaders at once:\n{out}"
    );
}

#[test]
fn an_observer_that_skips_leaders_is_caught() {
    // An observer misses a leader only when a leader is brief, which about one seed in
    // eight shows (5 of seeds 1..=40 at the commit that added member versions): 40 seeds
    // leave the planted bug little room to go unnoticed when trajectories move.
    let bug = ["--bug", "observe-skips-leaders"];
    let (out, ok) = sim_cluster(&[&["--seed", "1", "--count", "40"][..], &bug].concat());
    assert!(!ok, "the planted bug went unnoticed in 40 seeds:\n{out}");
    assert!(
        out.lines().any(|l| l.contains("was never told of")),
        "caught as a leader the observer was not told of:\n{out}"
    );
}
