#![cfg(not(madsim))]
//! The database's size and quota as a client sees them, on etcd 3.4.23 and oxcd alike
//! (through the `etcd-client` crate):
//!
//! - An empty member reports `dbSize` and `dbSizeInUse` within a few pages of etcd's.
//! - With a small `--quota-backend-bytes`, puts of 4 KiB values are refused at some point
//!   with `ResourceExhausted` `etcdserver: mvcc: database space exceeded`; the NOSPACE alarm
//!   is raised for the member; further puts and lease grants are refused while gets and
//!   deletes work; the documented recovery (compact, defragment, disarm) makes puts work
//!   again, and `dbSize` shrinks with the defragment.
//! - After many puts, deleting everything, a physical compaction (at a revision written after
//!   the delete: oxcd keeps what a read just below the compaction revision needs) and a
//!   defragment, `dbSize` drops below half of what it was.
//!
//! How many puts fit differs (etcd's bbolt file grows by its own rules) and is not compared.
//! Also not compared: puts after a compaction without a defragment, which etcd 3.4 still
//! refuses (it measures its file, free pages included) and oxcd accepts once the data in
//! use fits again.

mod procs;

use etcd_client::{AlarmAction, AlarmType, Client, CompactionOptions, ConnectOptions};
use procs::{Cluster, Kind, Timing};
use std::time::Duration;

const QUOTA_BYTES: u64 = 13 * 4096;
const PAGE_BYTES: i64 = 4096;

async fn connect(c: &Cluster) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    Client::connect([c.endpoint(0)], Some(opts))
        .await
        .expect("connect")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// `(dbSize, dbSizeInUse)` of the member.
async fn sizes(c: &mut Client) -> (i64, i64) {
    let s = c.status().await.expect("status");
    (s.db_size(), s.raft_used_db_size())
}

fn assert_no_space<T: std::fmt::Debug>(r: Result<T, etcd_client::Error>, what: &str) {
    match r {
        Err(etcd_client::Error::GRpcStatus(s)) => {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{what}: {s:?}");
            assert_eq!(
                s.message(),
                "etcdserver: mvcc: database space exceeded",
                "{what}"
            );
        }
        other => panic!("{what}: expected NOSPACE, got {other:?}"),
    }
}

async fn alarms(c: &mut Client) -> Vec<i32> {
    let r = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .expect("alarm list");
    r.alarms().iter().map(|a| a.alarm() as i32).collect()
}

/// The quota flow; returns the empty member's sizes.
async fn quota_flow(c: &mut Client) -> (i64, i64) {
    let empty = sizes(c).await;
    c.put("1st", "a".repeat(64), None)
        .await
        .expect("a small put");
    let big = "b".repeat(4096);
    let mut fitted = 0;
    let refused = loop {
        match c.put("2nd", big.clone(), None).await {
            Ok(_) => fitted += 1,
            Err(e) => break e,
        }
        assert!(fitted < 1000, "the quota never refused a put");
    };
    assert!(fitted > 0, "no 4 KiB put fitted in the quota");
    assert_no_space(Err::<(), _>(refused), "the put beyond the quota");
    assert_eq!(alarms(c).await, vec![AlarmType::Nospace as i32]);
    assert_no_space(c.put("3rd", "x", None).await, "a put while NOSPACE");
    assert_no_space(c.lease_grant(60, None).await, "a lease grant while NOSPACE");
    let got = c.get("1st", None).await.expect("a get while NOSPACE");
    assert_eq!(got.kvs()[0].value(), "a".repeat(64).as_bytes());
    let deleted = c.delete("1st", None).await.expect("a delete while NOSPACE");
    assert_eq!(deleted.deleted(), 1);

    // etcd's documented recovery: compact, defragment, disarm.
    let (full, _) = sizes(c).await;
    let rev = c
        .get("2nd", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let (after, in_use) = compact_and_defragment(c, rev).await;
    assert!(
        after < full,
        "defragment did not shrink dbSize: {full} -> {after}"
    );
    assert!(in_use <= after, "in use {in_use} > size {after}");
    assert_no_space(c.put("3rd", "x", None).await, "a put before the disarm");
    // As `etcdctl alarm disarm`: each raised alarm, with its member.
    let raised = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .expect("alarm list");
    for a in raised.alarms() {
        let mut member = etcd_client::AlarmOptions::new();
        member.with_member(a.member_id());
        c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(member))
            .await
            .expect("disarm");
    }
    assert!(alarms(c).await.is_empty());
    c.put("4th", "a".repeat(64), None)
        .await
        .expect("a put after the recovery");
    empty
}

/// Many puts, then everything deleted, compacted and defragmented: `(before, after)`.
async fn shrink_flow(c: &mut Client) -> (i64, i64) {
    let value = "v".repeat(256);
    for i in 0..2000 {
        c.put(format!("k/{i:05}"), value.clone(), None)
            .await
            .expect("put");
    }
    let (before, _) = sizes(c).await;
    let del = c
        .delete("k/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .expect("delete");
    assert_eq!(del.deleted(), 2000);
    // oxcd keeps the versions a read just below the compaction revision needs (see
    // `KvStore::compact`), so it compacts one write beyond the delete.
    let rev = c
        .put("marker", "", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    (before, compact_and_defragment(c, rev).await.0)
}

/// A physical compaction at `rev`, then a defragment: the sizes after.
async fn compact_and_defragment(c: &mut Client, rev: i64) -> (i64, i64) {
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .expect("compact");
    c.defragment().await.expect("defragment");
    sizes(c).await
}

fn run(kind: Kind) -> ((i64, i64), (i64, i64)) {
    let quota = QUOTA_BYTES.to_string();
    let small = Cluster::start_with_flags(
        kind,
        1,
        Timing::default(),
        &["--quota-backend-bytes", &quota],
    );
    let empty = runtime().block_on(async { quota_flow(&mut connect(&small).await).await });
    drop(small);
    let plain = Cluster::start(kind, 1, Timing::default());
    let shrunk = runtime().block_on(async { shrink_flow(&mut connect(&plain).await).await });
    (empty, shrunk)
}

#[test]
fn sizes_quota_and_defragment_as_etcd() {
    let (etcd_empty, etcd_shrunk) = run(Kind::Etcd);
    let (oxcd_empty, oxcd_shrunk) = run(Kind::Oxcd);
    println!("empty member (dbSize, dbSizeInUse): etcd {etcd_empty:?}, oxcd {oxcd_empty:?}");
    println!(
        "2000 puts, then deleted+compacted+defragmented: etcd {etcd_shrunk:?}, oxcd {oxcd_shrunk:?}"
    );
    for (what, e, o) in [
        ("dbSize", etcd_empty.0, oxcd_empty.0),
        ("dbSizeInUse", etcd_empty.1, oxcd_empty.1),
    ] {
        assert!(
            (e - o).abs() <= 2 * PAGE_BYTES,
            "an empty member's {what}: etcd {e}, oxcd {o}"
        );
    }
    for (who, (before, after)) in [("etcd", etcd_shrunk), ("oxcd", oxcd_shrunk)] {
        assert!(
            after * 2 < before,
            "{who}: dbSize {before} -> {after} after deleting everything"
        );
    }
}
