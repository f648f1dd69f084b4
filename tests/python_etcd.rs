#![cfg(not(madsim))]
//! A v2 client oxcd did not write: `python-etcd` 0.4.5 (PyPI) runs
//! `tests/clients/python_etcd_smoke.py` against a one-member oxcd with `--enable-v2`: keys,
//! directories, compare-and-swap and compare-and-delete, `prevExist`, in-order keys, TTLs
//! (refresh, and expiry seen through a watch), long-polling and recursive watches, a watch
//! answered from the history, members, machines and the leader. The same script passes
//! against etcd 3.4.23.
//!
//! The client lives in the virtualenv `scripts/test` makes (`target/pyenv`, or the one
//! `OXCD_PYENV` names); without it the test fails and says how to make it, it never skips.

mod procs;

use procs::{Cluster, Kind, Timing};
use std::time::Duration;

/// The whole Python run's wall time (a few dozen requests and a 1 s TTL).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn python_etcd_client_works_against_oxcd() {
    let python = procs::python_with("etcd", "python-etcd==0.4.5");
    let cluster = Cluster::start_with_flags(Kind::Oxcd, 1, Timing::default(), &["--enable-v2"]);
    let port = cluster.members[0].client_port;
    procs::run_python_client(&python, "python_etcd_smoke.py", port, RUN_TIMEOUT);
}
