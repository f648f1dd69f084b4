#![cfg(not(madsim))]
//! The cluster version as etcd keeps it: the members publish the version they speak with
//! their name, `/version`'s `etcdcluster` is the lowest of them, and a member older than the
//! version its cluster settled on refuses to start (etcd's downgrade safety).
//!
//! A newer member cannot be built here, so the test stands in for one: with the cluster's
//! members stopped, it rewrites the member records in one member's data dir (through the
//! storage API) to say `3.6.0`, as if every member had been upgraded, and starts that member
//! again with this build.

mod procs;

use oxcd::node::MemberRecord;
use oxcd::storage::codec::{decode_member, decode_member_key, encode_member};
use oxcd::storage::{Engine, EngineRead, FjallEngine, Space, WriteBatch};
use procs::{Cluster, Kind, Timing};

fn version_json(endpoint: &str) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://{endpoint}/version")])
        .output()
        .expect("curl runs");
    serde_json::from_slice(&out.stdout).expect("/version answers JSON")
}

/// Rewrites every member record in member `i`'s data dir from `was` to `version`; returns
/// how many there were.
fn republish(c: &Cluster, i: usize, was: &str, version: &str) -> usize {
    let engine = FjallEngine::open(&c.members[i].data_dir).expect("open the data dir");
    let mut batch = WriteBatch::default();
    let mut n = 0;
    for (key, value) in engine.scan(Space::Meta, b"member/", None, 0).expect("scan") {
        let Some(id) = decode_member_key(&key) else {
            continue;
        };
        let bytes = decode_member(&key, &value).expect("a member record");
        let mut record = MemberRecord::decode(id, &bytes).expect("decodes");
        assert_eq!(record.version, was);
        record.version = version.to_string();
        batch.put(
            Space::Meta,
            key.clone(),
            encode_member(&key, &record.encode()),
        );
        n += 1;
    }
    engine.write(batch).expect("write");
    engine.sync().expect("sync");
    n
}

#[test]
fn the_cluster_version_is_published_and_an_older_member_refuses_to_start() {
    let mut c = Cluster::start(Kind::Oxcd, 1, Timing::default());
    let v = version_json(&c.endpoint(0));
    assert_eq!(v["etcdserver"], "3.5.0");
    assert_eq!(v["etcdcluster"], "3.5.0");

    c.stop(0);
    assert_eq!(republish(&c, 0, "3.5.0", "3.6.0"), 1);
    c.spawn(0);
    let status = c.exited(0);
    assert!(!status.success(), "an older member served a newer cluster");
    let log = c.log_tail(0);
    assert!(
        log.contains(
            "cluster cannot be downgraded (current version: 3.5.0 is lower than determined \
             cluster version: 3.6)"
        ),
        "{log}"
    );

    // Published as this build again: it serves.
    assert_eq!(republish(&c, 0, "3.6.0", "3.5.0"), 1);
    c.spawn(0);
    c.wait_healthy(0);
    assert_eq!(version_json(&c.endpoint(0))["etcdcluster"], "3.5.0");
}
