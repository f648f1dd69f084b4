#![cfg(not(madsim))]
//! A data dir written by the build before the Raft log had a file of its own (layout 1, the
//! log and hard state in fjall): this build opens it, moves the log into `wal/`, restamps the
//! dir as layout 2, and serves every key it held, before and after a restart.

mod procs;

use procs::{Cluster, Kind, Timing, etcdctl};
use std::path::Path;

const FIXTURE: &str = "tests/fixtures/layout1/datadir.tar.gz";

fn keys(endpoint: &str) -> Vec<String> {
    let out = etcdctl(endpoint, &["get", "", "--prefix"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stdout.lines().map(str::to_string).collect()
}

fn stamp(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("oxcd.format")).expect("a stamp")
}

#[test]
fn a_layout_1_data_dir_is_moved_to_layout_2_and_serves_its_keys() {
    let mut c = Cluster::start(Kind::Oxcd, 1, Timing::default());
    c.stop(0);
    let dir = c.members[0].data_dir.clone();
    std::fs::remove_dir_all(&dir).expect("remove the fresh dir");
    let unpack = c.scratch_path("layout1");
    std::fs::create_dir_all(&unpack).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-xzf", FIXTURE, "-C"])
        .arg(&unpack)
        .status()
        .expect("tar runs");
    assert!(tar.success());
    std::fs::rename(unpack.join("d1"), &dir).expect("the fixture in place");
    assert_eq!(stamp(&dir), "oxcd data dir, layout 1 (fjall 3)\n");

    c.spawn(0);
    c.wait_healthy(0);
    let mut want = vec!["a".to_string(), "1".to_string()];
    let mut ks: Vec<(String, String)> = (1..=20)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    ks.sort();
    for (k, v) in ks {
        want.push(k);
        want.push(v);
    }
    assert_eq!(keys(&c.endpoint(0)), want);
    assert_eq!(stamp(&dir), "oxcd data dir, layout 2 (fjall 3, wal)\n");
    let segments: Vec<_> = std::fs::read_dir(dir.join("wal")).unwrap().collect();
    assert_eq!(segments.len(), 1, "{segments:?}");

    let out = etcdctl(&c.endpoint(0), &["put", "after", "upgrade"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    c.stop(0);
    c.spawn(0);
    c.wait_healthy(0);
    want.splice(2..2, ["after".to_string(), "upgrade".to_string()]);
    assert_eq!(keys(&c.endpoint(0)), want);
    c.stop(0);
}
