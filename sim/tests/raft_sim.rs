//! The Raft simulator finds no violation in the clean core, is deterministic, and catches each
//! planted mistake within its seed budget.

use oxcd::raft::PlantedBug;
use sim::raft_sim::{self, Options, PLANTED_BUG_SEED_BUDGET, first_violation, run, run_many};

fn jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn seeds(first: u64, count: u64, nodes: usize) -> Vec<Options> {
    (first..first + count)
        .map(|seed| Options::new(seed, nodes))
        .collect()
}

#[test]
fn clean_core_survives_faults_on_3_5_and_7_members() {
    for nodes in [3, 5, 7] {
        let reports = run_many(&seeds(1, 300, nodes), jobs());
        for r in &reports {
            assert!(
                r.violation.is_none(),
                "seed {} with {nodes} members: {}",
                r.seed,
                r.violation.as_ref().expect("checked")
            );
        }
        // The runs did real work, under real faults.
        let committed: u64 = reports.iter().map(|r| r.proposals_committed).sum();
        let reads: u64 = reports.iter().map(|r| r.reads_checked).sum();
        let crashes: u64 = reports.iter().map(|r| r.faults.crashes).sum();
        let partitions: u64 = reports.iter().map(|r| r.faults.partitions).sum();
        let changes: u64 = reports.iter().map(|r| r.faults.membership_changes).sum();
        assert!(committed > 300 * 50, "only {committed} proposals committed");
        assert!(reads > 300 * 10, "only {reads} reads checked");
        assert!(crashes > 300 && partitions > 300 && changes > 100);
    }
}

#[test]
fn a_seed_replays_to_the_same_trace_hash() {
    for nodes in [3, 5] {
        let a = run(&Options::new(42, nodes));
        let b = run(&Options::new(42, nodes));
        let c = run(&Options::new(43, nodes));
        assert_eq!(a.hash, b.hash, "same seed, different traces");
        assert_eq!((a.ticks, a.messages), (b.ticks, b.messages));
        assert_ne!(a.hash, c.hash, "different seeds, same trace");
    }
    // Threads change only the wall time.
    let one = run_many(&seeds(1, 8, 3), 1);
    let many = run_many(&seeds(1, 8, 3), 4);
    let hashes = |rs: &[raft_sim::Report]| rs.iter().map(|r| r.hash).collect::<Vec<_>>();
    assert_eq!(hashes(&one), hashes(&many));
}

/// Runs the planted mistake until the simulator catches it, and checks it was caught by one
/// of the properties that mistake breaks.
fn caught(bug: PlantedBug, properties: &[&str]) {
    let mut template = Options::new(1, 3);
    template.bug = Some(bug);
    let report = first_violation(&template, PLANTED_BUG_SEED_BUDGET, jobs()).unwrap_or_else(|| {
        panic!("{bug:?} survived {PLANTED_BUG_SEED_BUDGET} seeds: the simulator does not bite")
    });
    let violation = report.violation.expect("a violation");
    assert!(
        properties.contains(&violation.property()),
        "{bug:?} was caught at seed {} as {violation}, not by {properties:?}",
        report.seed
    );
    // The replay command reproduces it.
    let mut replay = template.clone();
    replay.seed = report.seed;
    assert_eq!(run(&replay).violation, Some(violation));
}

#[test]
fn catches_a_vote_granted_before_it_is_durable() {
    caught(
        PlantedBug::VoteBeforePersist,
        &[
            "election-safety",
            "leader-completeness",
            "state-machine-safety",
        ],
    );
}

#[test]
fn catches_an_old_term_entry_committed_by_counting_replicas() {
    caught(
        PlantedBug::CommitOldTerm,
        &["leader-completeness", "state-machine-safety"],
    );
}

#[test]
fn catches_read_index_served_without_a_heartbeat_round() {
    caught(
        PlantedBug::ReadIndexWithoutHeartbeat,
        &["read-index-linearizable"],
    );
}

#[test]
fn catches_a_follower_accepting_a_conflicting_append() {
    caught(
        PlantedBug::AcceptConflictingAppend,
        &[
            "log-matching",
            "state-machine-safety",
            "commit-monotonic",
            "panic",
        ],
    );
}
