#![cfg(not(madsim))]
//! A client oxcd did not write, over the JSON gateway: OpenStack's `etcd3gw` (PyPI, 2.7.0)
//! runs `tests/clients/etcd3gw_smoke.py` against a one-member oxcd: put, get, prefixes,
//! create/replace/delete (transactions), leases with keys and refresh (keep-alive stream),
//! watches of a key and a prefix (watch stream), its transaction-based lock, and an error.
//!
//! The client lives in a virtualenv that `scripts/test` makes (`target/pyenv`, or the one
//! `OXCD_PYENV` names); without it the test fails and says how to make it, it never skips.

mod procs;

use procs::{Cluster, Kind, Timing};
use std::time::Duration;

/// The whole Python run's wall time (it makes a few dozen requests).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn etcd3gw_client_works_against_oxcd() {
    let python = procs::python_with("etcd3gw", "etcd3gw==2.7.0");
    let cluster = Cluster::start(Kind::Oxcd, 1, Timing::default());
    let port = cluster.members[0].client_port;
    procs::run_python_client(&python, "etcd3gw_smoke.py", port, RUN_TIMEOUT);
}
