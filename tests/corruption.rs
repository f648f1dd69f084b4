#![cfg(not(madsim))]
//! The corruption checks against real processes: one member's data is damaged while it is
//! stopped (one MVCC record rewritten with another value through the storage API, so every
//! checksum of the engine and of oxcd's codec stays valid: only a hash comparison finds it),
//! then
//! - restarted with `--experimental-initial-corrupt-check`, it refuses to start (non-zero
//!   exit, etcd's "found data inconsistency with peers");
//! - restarted without it in a cluster running `--experimental-corrupt-check-time 1s`, the
//!   leader raises CORRUPT for its ID and the cluster refuses writes;
//! - an undamaged cluster with the periodic check raises nothing while it takes writes and a
//!   compaction.
//!
//! etcd 3.4.23 is not run here: damaging its data the same way needs a bbolt writer. It was
//! checked by hand that it accepts both flags (`0` too) and that its peer HashKV answers
//! carry no member ID (so 3.4.23's periodic check names member 0; oxcd names the member).

mod procs;

use oxcd::storage::codec::{decode_record, encode_record};
use oxcd::storage::{Engine, EngineRead, FjallEngine, Space, WriteBatch};
use procs::{Cluster, Kind, Timing, etcdctl, json_u64, poll_for, poll_until};
use std::time::Duration;

const DAMAGED_KEY: &str = "damaged-key";
/// Long enough for a few 1 s check periods and an election.
const CHECK_TIMEOUT: Duration = Duration::from_secs(40);

/// `endpoint status` of member `i`: (its ID, the leader's ID, its revision).
fn status(c: &Cluster, i: usize) -> Option<(u64, u64, u64)> {
    let out = etcdctl(&c.endpoint(i), &["endpoint", "status", "-w", "json"], None);
    if out.code != Some(0) {
        return None;
    }
    Some((
        json_u64(&out.stdout, "member_id")?,
        json_u64(&out.stdout, "leader")?,
        json_u64(&out.stdout, "revision")?,
    ))
}

/// A member that is not the leader, and its ID, once all three agree on a leader.
fn follower(c: &Cluster) -> (usize, u64) {
    poll_until("a leader all members know", CHECK_TIMEOUT, || {
        let s: Vec<(u64, u64, u64)> = (0..3).map(|i| status(c, i)).collect::<Option<_>>()?;
        let leader = s[0].1;
        if leader == 0 || s.iter().any(|x| x.1 != leader) {
            return None;
        }
        s.iter().position(|x| x.0 != leader).map(|i| (i, s[i].0))
    })
}

/// Writes the key to damage (and some more), and waits until member `i` applied them.
fn write_and_replicate(c: &Cluster, i: usize) {
    let eps = c.endpoints();
    for (k, v) in [("a", "1"), (DAMAGED_KEY, "good"), ("b", "2")] {
        let out = etcdctl(&eps, &["put", k, v], None);
        assert_eq!(out.code, Some(0), "put {k}: {out:?}");
    }
    let ep = c.endpoint(i);
    poll_for("the writes on the follower", CHECK_TIMEOUT, || {
        let out = etcdctl(
            &ep,
            &["get", "b", "--consistency=s", "--print-value-only"],
            None,
        );
        (out.stdout.trim() == "2")
            .then_some(())
            .ok_or(format!("{out:?}"))
    });
}

/// Rewrites the stored version of [`DAMAGED_KEY`] in member `i`'s data dir (it is stopped)
/// with another value of the same length, through the storage API.
fn damage(c: &Cluster, i: usize) {
    let engine = FjallEngine::open(&c.members[i].data_dir).expect("open the data dir");
    let records = engine
        .scan(Space::Mvcc, &[], None, 0)
        .expect("scan the MVCC records");
    let mut damaged = 0;
    let mut batch = WriteBatch::default();
    for (key, value) in records {
        let mut record = decode_record(&key, &value).expect("a record");
        if record.kv.key.as_ref() != DAMAGED_KEY.as_bytes() {
            continue;
        }
        assert_eq!(record.kv.value.as_ref(), b"good");
        record.kv.value = bytes::Bytes::from_static(b"evil");
        batch.put(Space::Mvcc, key.clone(), encode_record(&key, &record));
        damaged += 1;
    }
    assert_eq!(damaged, 1, "one version of {DAMAGED_KEY}");
    engine.write(batch).expect("write");
    engine.sync().expect("sync");
}

/// Starts member `i` again with `flag` added to its flags.
fn spawn_with(c: &mut Cluster, i: usize, flag: &str) {
    c.security.server_args.push(flag.to_string());
    c.spawn(i);
    c.security.server_args.pop();
}

#[test]
fn a_damaged_member_refuses_to_start_with_the_initial_check() {
    let mut c = Cluster::start(Kind::Oxcd, 3, Timing::default());
    let (f, _) = follower(&c);
    write_and_replicate(&c, f);

    // Undamaged, the check passes and the member serves.
    c.stop(f);
    spawn_with(&mut c, f, "--experimental-initial-corrupt-check");
    c.wait_healthy(f);
    let log = c.log_text(f);
    assert!(
        log.contains("initial corruption checking passed; no corruption"),
        "{log}"
    );

    c.stop(f);
    damage(&c, f);
    spawn_with(&mut c, f, "--experimental-initial-corrupt-check");
    let status = c.exited(f);
    let log = c.log_text(f);
    assert!(!status.success(), "{status}; log:\n{log}");
    assert!(
        log.contains("found different hash values from remote peer"),
        "{log}"
    );
    assert!(log.contains("found data inconsistency with peers"), "{log}");
    // The other two go on serving, undisturbed.
    let others: Vec<String> = (0..3).filter(|&i| i != f).map(|i| c.endpoint(i)).collect();
    let out = etcdctl(&others.join(","), &["put", "after", "1"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn the_leader_raises_corrupt_for_a_damaged_member() {
    let flags = ["--experimental-corrupt-check-time=1s"];
    let mut c = Cluster::start_with_flags(Kind::Oxcd, 3, Timing::default(), &flags);
    let (f, id) = follower(&c);
    write_and_replicate(&c, f);
    c.stop(f);
    damage(&c, f);
    c.spawn(f);
    c.wait_healthy(f);

    let eps = c.endpoints();
    let expected = format!("memberID:{id} alarm:CORRUPT \n");
    poll_for("the CORRUPT alarm", CHECK_TIMEOUT, || {
        let out = etcdctl(&eps, &["alarm", "list"], None);
        (out.stdout == expected)
            .then_some(())
            .ok_or(format!("{out:?}"))
    });
    let leader = (0..3)
        .find(|&i| i != f && c.log_text(i).contains("finished peer corruption check"))
        .expect("a member that checked");
    let log = c.log_text(leader);
    assert!(
        log.contains("same compact revision then hashes must match"),
        "{log}"
    );
    // Writes are refused as etcd refuses them under CORRUPT; reads are served.
    let out = etcdctl(&eps, &["put", "k", "v"], None);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("etcdserver: corrupt cluster"),
        "{out:?}"
    );
    let out = etcdctl(&eps, &["get", "a", "--print-value-only"], None);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "1\n"), "{out:?}");
}

#[test]
fn an_undamaged_cluster_raises_nothing() {
    let flags = ["--experimental-corrupt-check-time=1s"];
    let c = Cluster::start_with_flags(Kind::Oxcd, 3, Timing::default(), &flags);
    let eps = c.endpoints();
    let checks = |c: &Cluster| -> usize {
        (0..3)
            .map(|i| {
                c.log_text(i)
                    .matches("finished peer corruption check")
                    .count()
            })
            .sum()
    };
    let mut n = 0;
    // Writes and a compaction while at least four checks pass.
    let seen = checks(&c);
    poll_until("four periodic checks", CHECK_TIMEOUT, || {
        n += 1;
        let out = etcdctl(&eps, &["put", &format!("k{}", n % 5), &n.to_string()], None);
        assert_eq!(out.code, Some(0), "{out:?}");
        if n == 10 {
            let (_, _, rev) = status(&c, 0).expect("status");
            let out = etcdctl(&eps, &["compact", &(rev - 3).to_string()], None);
            assert_eq!(out.code, Some(0), "{out:?}");
        }
        (n > 10 && checks(&c) >= seen + 4).then_some(())
    });
    let out = etcdctl(&eps, &["alarm", "list"], None);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), ""), "{out:?}");
    for i in 0..3 {
        let log = c.log_text(i);
        for finding in [
            "found hash mismatch",
            "must be less than or equal to leader's",
            "hashes must match",
        ] {
            assert!(!log.contains(finding), "{finding} in m{}:\n{log}", i + 1);
        }
    }
}
