#![cfg(not(madsim))]
//! `--proxy on` and `--proxy readonly` (etcd 3.4's v2 proxy) next to etcd 3.4.23's on the same
//! steps: each proxy finds the member through `--initial-cluster`'s peer, passes v2 requests
//! to it, and the readonly one refuses every method but GET with 501. Statuses and bodies must
//! be equal, with v2 indexes shown relative to the first write (a fresh etcd's v2 index
//! counts its member records and cluster version first; see `tests/v2.rs`).

mod procs;

use procs::{Cluster, Kind, READY_TIMEOUT, Timing, free_port, poll_until};
use std::process::{Child, Command, Stdio};

/// A proxy process, stopped by PID when dropped, with its data dir.
struct V2Proxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for V2Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_proxy(kind: Kind, cluster: &Cluster, mode: &str) -> V2Proxy {
    let port = free_port();
    let dir = tempfile::tempdir().expect("a data dir");
    let url = format!("http://127.0.0.1:{port}");
    let member = &cluster.members[0];
    let mut c = Command::new(kind.bin());
    c.args([
        "--name",
        "p",
        "--proxy",
        mode,
        "--data-dir",
        dir.path().to_str().expect("UTF-8"),
        "--listen-client-urls",
        &url,
        "--initial-cluster",
        &format!("{}={}", member.name, member.peer_url()),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    procs::die_with_parent(&mut c);
    let child = c.spawn().expect("the proxy starts");
    let p = V2Proxy {
        child,
        port,
        _dir: dir,
    };
    // Ready once it found the member: a request through it is the member's answer.
    poll_until("the v2 proxy to pass requests", READY_TIMEOUT, || {
        (curl(port, "GET", "/version").0 == 200).then_some(())
    });
    p
}

/// One request: the status and the body.
fn curl(port: u16, method: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn transcript(kind: Kind) -> Vec<String> {
    let cluster = Cluster::start_with_flags(kind, 1, Timing::default(), &["--enable-v2"]);
    let on = start_proxy(kind, &cluster, "on");
    let ro = start_proxy(kind, &cluster, "readonly");
    let steps = [
        (on.port, "on", "PUT", "/v2/keys/a?value=1"),
        (on.port, "on", "GET", "/v2/keys/a"),
        (ro.port, "readonly", "GET", "/v2/keys/a"),
        (ro.port, "readonly", "PUT", "/v2/keys/b?value=2"),
        (ro.port, "readonly", "DELETE", "/v2/keys/a"),
        (ro.port, "readonly", "POST", "/v2/keys/q?value=3"),
        (on.port, "on", "DELETE", "/v2/keys/a"),
        (ro.port, "readonly", "GET", "/v2/keys/b"),
    ];
    let answers: Vec<(u16, String)> = steps
        .iter()
        .map(|(port, _, method, path)| curl(*port, method, path))
        .collect();
    let index =
        regex::Regex::new(r#""(modifiedIndex|createdIndex|index)":(\d+)"#).expect("a regex");
    let base: i64 = index
        .captures(&answers[0].1)
        .and_then(|c| c[2].parse().ok())
        .unwrap_or_else(|| panic!("the first write's index: {answers:?}"));
    steps
        .iter()
        .zip(answers)
        .map(|((_, name, method, path), (code, body))| {
            let body = index.replace_all(&body, |c: &regex::Captures| {
                let n: i64 = c[2].parse().expect("digits");
                format!("\"{}\":first{:+}", &c[1], n - base)
            });
            format!("{name} {method} {path} -> {code}\n{body}")
        })
        .collect()
}

#[test]
fn v2_proxies_pass_requests_as_etcds_do() {
    let want = transcript(Kind::Etcd);
    let got = transcript(Kind::Oxcd);
    assert!(
        want[3].contains("-> 501"),
        "etcd's readonly proxy refuses a PUT: {want:?}"
    );
    procs::assert_same_transcripts(&want, &got, "etcd 3.4.23", "oxcd");
}
