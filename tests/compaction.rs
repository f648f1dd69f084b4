#![cfg(not(madsim))]
//! Auto-compaction as etcd 3.4.23 does it: a member started with `--auto-compaction-mode
//! periodic --auto-compaction-retention 2s` compacts on its own, so an old revision becomes
//! unreadable with etcd's error while the latest value stays; the same steps run against etcd
//! and oxcd. (The schedule itself, periodic and revision modes, is unit-tested in the core's
//! `compactor` module.)

mod procs;

use procs::{Cluster, Kind, Security, Timing, etcdctl, poll_for};
use std::time::Duration;

fn compacts_on_its_own(kind: Kind) -> String {
    let security = Security {
        server_args: vec![
            "--auto-compaction-mode=periodic".into(),
            "--auto-compaction-retention=2s".into(),
        ],
        ..Security::default()
    };
    let c = Cluster::start_secure(kind, 1, Timing::default(), security);
    let eps = c.endpoints();
    for v in ["v1", "v2"] {
        let out = etcdctl(&eps, &["put", "k", v], None);
        assert_eq!(out.code, Some(0), "{kind:?}: {out:?}");
    }
    // The first put made revision 2: it is compacted away within a few retention periods.
    let compacted = poll_for("revision 2 compacted", Duration::from_secs(30), || {
        let out = etcdctl(&eps, &["get", "k", "--rev=2"], None);
        if out.code == Some(0) {
            return Err(format!("still readable: {}", out.stdout));
        }
        Ok(out.stderr)
    });
    let latest = etcdctl(&eps, &["get", "k", "--print-value-only"], None);
    format!(
        "old revision: {}\nlatest: {}",
        compacted.lines().last().unwrap_or("").trim(),
        latest.stdout.trim()
    )
}

#[test]
fn periodic_auto_compaction_compacts_as_etcds() {
    let etcd = compacts_on_its_own(Kind::Etcd);
    let oxcd = compacts_on_its_own(Kind::Oxcd);
    assert_eq!(etcd, oxcd);
    assert!(
        etcd.contains("required revision has been compacted"),
        "{etcd}"
    );
}
