//! The member-server simulator finds no violation in the clean policy on 3 and 5 members, is
//! deterministic, and catches each planted policy mistake within its seed budget, by the
//! property that mistake breaks.

use oxcd::node::PolicyBug;
use sim::member_sim::{Options, run};

/// Seeds within which each planted mistake must be caught.
const PLANTED_BUG_SEED_BUDGET: u64 = 40;

#[test]
fn clean_policy_survives_faults_on_3_and_5_members() {
    for nodes in [3, 5] {
        let reports: Vec<_> = (1..=150)
            .map(|seed| run(&Options::new(seed, nodes)))
            .collect();
        for r in &reports {
            assert!(
                r.violation.is_none(),
                "seed {} with {nodes} members: {}\nreplay: cargo run --release -p sim -- member \
                 --seed {} --count 1 --nodes {nodes}",
                r.seed,
                r.violation.as_ref().expect("checked"),
                r.seed
            );
        }
        // The runs did real work, under real faults.
        let sum = |f: fn(&sim::member_sim::Report) -> u64| reports.iter().map(f).sum::<u64>();
        let known = sum(|r| r.register_ops_known);
        let acked = sum(|r| r.keep_alives_acked);
        let covered = sum(|r| r.keep_alives_covered);
        let probes = sum(|r| r.keep_alives_after_revoke);
        let alarms = sum(|r| r.alarm_changes);
        let watched = sum(|r| r.watch_events);
        let streams = sum(|r| r.watch_streams);
        assert!(watched > 150 * 50, "only {watched} watch events");
        assert!(streams > 200, "the watcher opened only {streams} streams");
        let changes = sum(|r| r.membership_changes);
        assert!(changes > 150 * 3, "only {changes} membership changes");
        let crashes = sum(|r| r.crashes);
        let partitions = sum(|r| r.partitions);
        assert!(
            known > 150 * 100,
            "only {known} register ops with a known outcome"
        );
        assert!(acked > 150 * 20, "only {acked} keep-alives acknowledged");
        assert!(
            covered > acked / 10 && covered < acked,
            "{covered} of {acked} keep-alives answered under a committed checkpoint's cover"
        );
        assert!(probes > 150, "only {probes} keep-alives after a revoke");
        assert!(alarms > 150, "only {alarms} alarm changes");
        let auth_changes = sum(|r| r.auth_changes);
        let auth_writes = sum(|r| r.auth_writes);
        assert!(
            auth_changes > 150 * 10 && auth_writes > 150 * 10,
            "{auth_changes} auth changes, {auth_writes} writes as a user"
        );
        assert!(
            crashes > 150 && partitions > 150,
            "{crashes} crashes, {partitions} partitions"
        );
    }
}

#[test]
fn a_seed_replays_to_the_same_trace_hash() {
    let a = run(&Options::new(42, 3));
    let b = run(&Options::new(42, 3));
    let c = run(&Options::new(43, 3));
    assert_eq!(a.hash, b.hash, "same seed, different traces");
    assert_eq!((a.ticks, a.messages), (b.ticks, b.messages));
    assert_ne!(a.hash, c.hash, "different seeds, same trace");
}

fn caught(bug: PolicyBug, property: &str) {
    for seed in 1..=PLANTED_BUG_SEED_BUDGET {
        let mut o = Options::new(seed, 3);
        o.bug = Some(bug);
        if let Some(why) = run(&o).violation {
            assert!(
                why.contains(property),
                "{bug:?} was caught at seed {seed}, but not by the property it breaks \
                 ({property:?}): {why}"
            );
            return;
        }
    }
    panic!("{bug:?} was not caught within {PLANTED_BUG_SEED_BUDGET} seeds");
}

#[test]
fn a_keep_alive_answered_before_its_checkpoint_applies_is_caught() {
    caught(
        PolicyBug::KeepAliveBeforeCheckpoint,
        "acknowledged keep-alive promised",
    );
}

/// A renew answered under a cover wider than the grace a new leader adds can expire early.
#[test]
fn a_renew_cover_wider_than_the_grace_is_caught() {
    for seed in 1..=PLANTED_BUG_SEED_BUDGET {
        let mut o = Options::new(seed, 3);
        o.renew_cover_ms = Some(2 * sim::member_sim::ELECTION_MS);
        if let Some(why) = run(&o).violation {
            assert!(why.contains("acknowledged keep-alive promised"), "{why}");
            return;
        }
    }
    panic!(
        "a cover of two election timeouts was not caught within {PLANTED_BUG_SEED_BUDGET} seeds"
    );
}

#[test]
fn an_alarm_that_is_not_replicated_is_caught() {
    caught(PolicyBug::AlarmNotReplicated, "applied index");
}

#[test]
fn expired_leases_that_are_never_revoked_are_caught() {
    caught(PolicyBug::ExpiredLeasesKept, "though nothing renewed it");
}

#[test]
fn v2_keys_whose_expiry_is_never_proposed_are_caught() {
    caught(PolicyBug::V2ExpiryNotProposed, "outlived its TTL");
}

#[test]
fn a_permission_checked_only_when_a_command_enters_is_caught() {
    caught(PolicyBug::AuthCheckedOnEntryOnly, "the writer wrote");
}

/// Seeds where a leader cut off from a newer one told a keep-alive that a lease granted in
/// the newer term did not exist (it now asks again after a ReadIndex round).
#[test]
fn a_stale_leader_does_not_call_a_newer_lease_missing() {
    for (seed, nodes) in [(79, 3), (378, 5)] {
        let r = run(&Options::new(seed, nodes));
        assert!(r.violation.is_none(), "seed {seed}: {:?}", r.violation);
    }
}
