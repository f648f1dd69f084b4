#![cfg(not(madsim))]
//! etcd's majority-loss playbook, run the same way on etcd 3.4.23 (the control) and on oxcd:
//! three members take writes; two are killed and their data dirs destroyed; the survivor is
//! stopped and started again on its data dir with `--force-new-cluster`; it serves alone
//! (`member list` shows it only), every acknowledged write is there, and it takes writes;
//! two new members are added one at a time (`member add`, then started with
//! `--initial-cluster-state existing`), catch up, and serve every write, the ones before the
//! loss included. Then the survivor restarts without the flag and keeps the three-member
//! cluster.

mod procs;

use procs::{Cluster, Kind, Timing, etcdctl, free_port, poll_for};
use std::time::Duration;

const KEYS: usize = 50;

fn put(endpoints: &str, key: &str, value: &str) -> bool {
    etcdctl(endpoints, &["put", key, value], None).code == Some(0)
}

/// Every `k/NN` key with its value, as one line each (`etcdctl get --prefix`).
fn all_keys(endpoint: &str, serializable: bool) -> Vec<String> {
    let mut args = vec!["get", "k/", "--prefix"];
    if serializable {
        args.push("--consistency=s");
    }
    let out = etcdctl(endpoint, &args, None);
    assert_eq!(out.code, Some(0), "get on {endpoint}: {out:?}");
    out.stdout.lines().map(str::to_string).collect()
}

fn member_names(endpoint: &str) -> Vec<String> {
    let out = etcdctl(endpoint, &["member", "list"], None);
    assert_eq!(out.code, Some(0), "member list: {out:?}");
    let mut names: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split(", ").nth(2).unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// `member add NAME` through `endpoint` and the new member started; returns its index.
fn add_member(c: &mut Cluster, endpoint: &str, name: &str) -> usize {
    let (client_port, peer_port) = (free_port(), free_port());
    let peer = format!("http://127.0.0.1:{peer_port}");
    // etcd refuses a voter while a recently added one is not yet connected long enough
    // (`etcdserver: unhealthy cluster`): ask again until it is.
    let out = poll_for("member add", Duration::from_secs(30), || {
        let out = etcdctl(
            endpoint,
            &["member", "add", name, &format!("--peer-urls={peer}")],
            None,
        );
        match out.code {
            Some(0) => Ok(out),
            _ if out.stderr.contains("unhealthy cluster") => Err(out.stderr),
            _ => panic!("member add {name}: {out:?}"),
        }
    });
    let initial_cluster = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\"")?.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER in {:?}", out.stdout))
        .to_string();
    let i = c.start_joining(name, client_port, peer_port, &initial_cluster);
    c.wait_healthy(i);
    i
}

fn playbook(kind: Kind) {
    let mut c = Cluster::start(kind, 3, Timing::default());
    let eps = c.endpoints();
    let mut want = Vec::new();
    for i in 0..KEYS {
        let (k, v) = (format!("k/{i:02}"), format!("v{i}"));
        assert!(put(&eps, &k, &v), "put {k} before the loss");
        want.push(k);
        want.push(v);
    }
    // The survivor has applied every acknowledged write before the others are lost (a
    // linearizable read through it is answered only once it has).
    let survivor = c.endpoint(0);
    assert_eq!(all_keys(&survivor, false), want);

    // Two members lost with their data.
    for i in [1, 2] {
        c.kill(i);
        std::fs::remove_dir_all(&c.members[i].data_dir).expect("destroy a data dir");
    }
    // The survivor, stopped and started again alone.
    // Only that it exits: etcd's status after SIGTERM with its peers lost is not 0.
    c.terminate(0);
    c.exited(0);
    c.security.server_args.push("--force-new-cluster".into());
    c.spawn(0);
    c.wait_healthy(0);
    c.security.server_args.pop();
    assert_eq!(member_names(&survivor), vec!["m1".to_string()]);
    assert_eq!(all_keys(&survivor, false), want, "{kind:?} lost writes");
    assert!(
        put(&survivor, "k/after", "1"),
        "a put on the forced cluster"
    );
    want.push("k/after".into());
    want.push("1".into());

    // Two new members, one at a time.
    let m4 = add_member(&mut c, &survivor, "m4");
    let m5 = add_member(&mut c, &survivor, "m5");
    assert_eq!(member_names(&survivor), vec!["m1", "m4", "m5"]);
    for i in [m4, m5] {
        let ep = c.endpoint(i);
        poll_for("a new member to catch up", Duration::from_secs(30), || {
            let got = all_keys(&ep, true);
            if got == want {
                Ok(())
            } else {
                Err(format!("{} of {} lines", got.len(), want.len()))
            }
        });
    }

    // The survivor restarts without the flag: still the three-member cluster.
    c.terminate(0);
    c.exited(0);
    c.spawn(0);
    c.wait_healthy(0);
    assert_eq!(member_names(&survivor), vec!["m1", "m4", "m5"]);
    assert_eq!(all_keys(&survivor, false), want);
}

#[test]
fn majority_loss_playbook_on_etcd() {
    playbook(Kind::Etcd);
}

#[test]
fn majority_loss_playbook_on_oxcd() {
    playbook(Kind::Oxcd);
}
