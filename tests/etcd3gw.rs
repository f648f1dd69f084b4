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
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole Python run's wall time (it makes a few dozen requests).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn python() -> PathBuf {
    let venv = std::env::var_os("OXCD_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv"));
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import etcd3gw"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "etcd3gw is not installed in {}: run scripts/test, or python3 -m venv {0} && {0}/bin/pip install etcd3gw==2.7.0",
        venv.display()
    );
    python
}

#[test]
fn etcd3gw_client_works_against_oxcd() {
    let python = python();
    let cluster = Cluster::start(Kind::Oxcd, 1, Timing::default());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/etcd3gw_smoke.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg("127.0.0.1")
        .arg(cluster.members[0].client_port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // By PID: only the child this test started.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(procs::POLL_INTERVAL);
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.is_some_and(|s| s.success()) && stdout.contains("all checks passed"),
        "etcd3gw against oxcd failed ({status:?}):\n{stdout}\n{stderr}"
    );
}
