//! The lab: a run's network namespaces, bridge, firewall and traffic-control rules, and the
//! member processes in them. Everything it makes carries the run's id (`oxl<pid>`), and
//! [`Lab`]'s `Drop` takes it all down (processes by PID, namespaces, the bridge, data dirs),
//! so a run that fails or panics leaves nothing behind. [`sweep_stale`] removes what a killed
//! harness left.
//!
//! It does not decide which fault to inject when (the nemesis does) nor check anything.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where Debian's libfaketime lives (package `libfaketime`).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The preload shim that delays or fails fsync and fdatasync as a control file says
/// (`<delay ms> <fail percent>`), compiled with the system C compiler at the start of a run.
const FSYNC_SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int faulted(void) {
    const char *path = getenv("OXCD_LIVE_DISK");
    if (!path) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long delay_ms = 0, fail_pct = 0;
    int got = fscanf(f, "%ld %ld", &delay_ms, &fail_pct);
    fclose(f);
    if (got < 1) return 0;
    if (delay_ms > 0) {
        struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000L };
        syscall(SYS_nanosleep, &ts, NULL);
    }
    return fail_pct > 0 && (random() % 100) < fail_pct;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (faulted()) { errno = EIO; return -1; }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (faulted()) { errno = EIO; return -1; }
    return real(fd);
}
"#;

/// Runs a command to completion; its stderr in the error when it fails.
pub fn sh(program: &str, args: &[&str]) -> io::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    succeeded(program, args, out)
}

/// Like [`sh`], with `input` on stdin.
fn sh_in(program: &str, args: &[&str], input: &str) -> io::Result<()> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())?;
    succeeded(program, args, child.wait_with_output()?)
}

/// A finished command's verdict: its stderr in the error when it failed.
fn succeeded(program: &str, args: &[&str], out: std::process::Output) -> io::Result<()> {
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Removes the namespaces, links and data of earlier runs whose harness no longer lives.
pub fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("oxl") else {
            continue;
        };
        let pid = rest.split('m').next().unwrap_or("");
        if !pid.is_empty() && !alive(pid) {
            kill_in_netns(name);
            let _ = sh("ip", &["netns", "del", name]);
            let _ = sh("ip", &["link", "del", &format!("oxl{pid}br")]);
            let _ = fs::remove_dir_all(format!("/tmp/oxcd-live-{pid}"));
        }
    }
}

/// SIGKILLs whatever still runs inside namespace `ns`.
fn kill_in_netns(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = sh("kill", &["-9", pid]);
        }
    }
}

/// One member's process and where it keeps its things.
pub struct Proc {
    pub child: Option<Child>,
    pub paused: bool,
    /// Removed from the cluster (by the membership fault), not running.
    pub removed: bool,
    /// `--initial-cluster-state` and `--initial-cluster` it was (re)created with.
    pub state: &'static str,
    pub initial_cluster: String,
}

/// A run's namespaces, bridge and member processes.
pub struct Lab {
    pub id: String,
    pub nodes: usize,
    /// The first three octets of the run's /24.
    net: String,
    pub work: PathBuf,
    pub logs: PathBuf,
    pub server: PathBuf,
    /// Extra environment for every member (a planted mistake, say).
    pub env: Vec<(String, String)>,
    /// libfaketime and the fsync shim, preloaded into every member (they reach a server that
    /// calls libc for its clock and its syncs; Go's etcd goes to the kernel directly and is
    /// not reached).
    preload: Option<String>,
    pub procs: Vec<Proc>,
    /// Each member's CLOCK_MONOTONIC/BOOTTIME offset for its next start, in seconds (the
    /// kernel takes none that would put the clock below zero: forward only).
    pub time_offsets: Vec<i64>,
    /// What netem/tbf the kernel offers for the `net` fault.
    pub netem: bool,
    torn_down: bool,
}

impl Lab {
    /// Makes the namespaces and the bridge, and compiles the fsync shim (when a C compiler
    /// and libfaketime are there: clock and disk faults need them).
    pub fn create(nodes: usize, server: &Path, logs: &Path) -> io::Result<Lab> {
        sweep_stale();
        let pid = std::process::id();
        let id = format!("oxl{pid}");
        let net = format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 250);
        let work = PathBuf::from(format!("/tmp/oxcd-live-{pid}"));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work)?;
        fs::create_dir_all(logs)?;
        let mut lab = Lab {
            id,
            nodes,
            net,
            work,
            logs: logs.to_path_buf(),
            server: server.to_path_buf(),
            env: Vec::new(),
            preload: None,
            procs: Vec::new(),
            time_offsets: vec![0; nodes],
            netem: false,
            torn_down: false,
        };
        let br = lab.bridge();
        sh("ip", &["link", "add", &br, "type", "bridge"])?;
        sh(
            "ip",
            &["addr", "add", &format!("{}.254/24", lab.net), "dev", &br],
        )?;
        sh("ip", &["link", "set", &br, "up"])?;
        for i in 0..nodes {
            let ns = lab.ns(i);
            let (inner, outer) = (format!("{}v{i}", lab.id), format!("{}h{i}", lab.id));
            sh("ip", &["netns", "add", &ns])?;
            sh(
                "ip",
                &[
                    "link", "add", &inner, "type", "veth", "peer", "name", &outer,
                ],
            )?;
            sh("ip", &["link", "set", &inner, "netns", &ns])?;
            sh("ip", &["link", "set", &outer, "master", &br, "up"])?;
            sh(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", lab.ip(i)),
                    "dev",
                    &inner,
                ],
            )?;
            sh("ip", &["-n", &ns, "link", "set", &inner, "up"])?;
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        // netem where the kernel has it (this machine's does not: CONFIG_NET_SCH_NETEM).
        let dev = lab.dev(0);
        lab.netem = sh(
            "ip",
            &[
                "netns",
                "exec",
                &lab.ns(0),
                "tc",
                "qdisc",
                "add",
                "dev",
                &dev,
                "root",
                "netem",
                "delay",
                "1ms",
            ],
        )
        .is_ok();
        let _ = sh(
            "ip",
            &[
                "netns",
                "exec",
                &lab.ns(0),
                "tc",
                "qdisc",
                "del",
                "dev",
                &dev,
                "root",
            ],
        );
        let shim_c = lab.work.join("fsync_shim.c");
        let shim = lab.work.join("fsync_shim.so");
        fs::write(&shim_c, FSYNC_SHIM)?;
        let compiled = sh(
            "cc",
            &[
                "-shared",
                "-fPIC",
                "-O2",
                "-o",
                &shim.to_string_lossy(),
                &shim_c.to_string_lossy(),
                "-ldl",
            ],
        )
        .is_ok();
        let mut preload = Vec::new();
        if compiled {
            preload.push(shim.to_string_lossy().into_owned());
        }
        if Path::new(LIBFAKETIME).exists() {
            preload.push(LIBFAKETIME.to_string());
        }
        lab.preload = (!preload.is_empty()).then(|| preload.join(" "));
        for i in 0..nodes {
            lab.set_clock_offset(i, "+0")?;
            lab.set_disk(i, 0, 0)?;
        }
        Ok(lab)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.id)
    }

    pub fn ns(&self, i: usize) -> String {
        format!("{}m{i}", self.id)
    }

    /// Member `i`'s interface inside its namespace.
    fn dev(&self, i: usize) -> String {
        format!("{}v{i}", self.id)
    }

    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.net, i + 1)
    }

    pub fn client_url(&self, i: usize) -> String {
        format!("http://{}:2379", self.ip(i))
    }

    pub fn peer_url(&self, i: usize) -> String {
        format!("http://{}:2380", self.ip(i))
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.work.join(format!("m{i}.data"))
    }

    /// Which faults reach the server binary: (clock via libfaketime, disk via the shim).
    pub fn preload_reaches(&self) -> (bool, bool) {
        // Dynamically linked, and not Go: Go reads clocks through the vDSO and syncs with
        // raw system calls even when it links libc (Debian's etcd 3.4 does).
        let dynamic = fs::read(&self.server)
            .map(|b| {
                let head = &b[..b.len().min(4096)];
                head.windows(8).any(|w| w == b"ld-linux")
                    && !b.windows(12).any(|w| w == b"Go buildinf:")
            })
            .unwrap_or(false);
        let p = self.preload.as_deref().unwrap_or("");
        (
            dynamic && p.contains("faketime"),
            dynamic && p.contains("fsync_shim"),
        )
    }

    /// The whole cluster's `--initial-cluster`.
    pub fn initial_cluster(&self) -> String {
        (0..self.nodes)
            .map(|j| format!("m{j}={}", self.peer_url(j)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i` (again): on its data dir, in its namespace, in a time namespace of
    /// its own with the monotonic offset [`Lab::time_offsets`] says, preloads set.
    pub fn start(&mut self, i: usize) -> io::Result<()> {
        let (state, initial) = match self.procs.get(i) {
            Some(p) => (p.state, p.initial_cluster.clone()),
            None => ("new", self.initial_cluster()),
        };
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("m{i}.log")))?;
        let offset = self.time_offsets[i].to_string();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(i)]);
        cmd.args([
            "unshare",
            "--time",
            "--monotonic",
            &offset,
            "--boottime",
            &offset,
        ]);
        cmd.arg("env");
        if let Some(p) = &self.preload {
            cmd.arg(format!("LD_PRELOAD={p}"));
            cmd.arg(format!(
                "FAKETIME_TIMESTAMP_FILE={}",
                self.clock_file(i).display()
            ));
            cmd.arg("FAKETIME_CACHE_DURATION=1");
            cmd.arg("FAKETIME_DONT_FAKE_MONOTONIC=1");
            cmd.arg(format!("OXCD_LIVE_DISK={}", self.disk_file(i).display()));
        }
        for (k, v) in &self.env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.arg(&self.server);
        let data = self.data_dir(i);
        cmd.args([
            "--name",
            &format!("m{i}"),
            "--data-dir",
            &data.to_string_lossy(),
            "--listen-client-urls",
            &self.client_url(i),
            "--advertise-client-urls",
            &self.client_url(i),
            "--listen-peer-urls",
            &self.peer_url(i),
            "--initial-advertise-peer-urls",
            &self.peer_url(i),
            "--initial-cluster",
            &initial,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            &self.id,
        ]);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn()?;
        let p = Proc {
            child: Some(child),
            paused: false,
            removed: false,
            state,
            initial_cluster: initial,
        };
        if i < self.procs.len() {
            self.procs[i] = p;
        } else {
            self.procs.push(p);
        }
        Ok(())
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.procs[i].paused = false;
    }

    pub fn signal(&mut self, i: usize, sig: &str) {
        if let Some(c) = &self.procs[i].child {
            let _ = sh("kill", &[sig, &c.id().to_string()]);
            self.procs[i].paused = sig == "-STOP";
        }
    }

    pub fn running(&self, i: usize) -> bool {
        self.procs[i].child.is_some()
    }

    /// Members whose process ended on its own since the last look: their exit status.
    pub fn reap(&mut self) -> Vec<(usize, std::process::ExitStatus)> {
        let mut out = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            if let Some(c) = &mut p.child
                && let Ok(Some(status)) = c.try_wait()
            {
                out.push((i, status));
                p.child = None;
            }
        }
        out
    }

    fn clock_file(&self, i: usize) -> PathBuf {
        self.work.join(format!("m{i}.faketime"))
    }

    fn disk_file(&self, i: usize) -> PathBuf {
        self.work.join(format!("m{i}.disk"))
    }

    /// Sets member `i`'s CLOCK_REALTIME offset (libfaketime syntax: `+120`, `-3600`), read
    /// by the member within a second.
    pub fn set_clock_offset(&self, i: usize, spec: &str) -> io::Result<()> {
        write_atomically(&self.clock_file(i), &format!("{spec}\n"))
    }

    /// Delays each fsync/fdatasync of member `i` by `delay_ms`, and fails `fail_percent` of
    /// them with EIO.
    pub fn set_disk(&self, i: usize, delay_ms: u64, fail_percent: u32) -> io::Result<()> {
        write_atomically(&self.disk_file(i), &format!("{delay_ms} {fail_percent}\n"))
    }

    /// Drops, in member `i`'s namespace, packets from the members in `blocked_from`, and
    /// `loss_percent` of the rest. An empty set and zero loss lift every rule.
    pub fn set_rules(&self, i: usize, blocked_from: &[usize], loss_percent: u32) -> io::Result<()> {
        let mut script = String::from("table inet oxlive\ndelete table inet oxlive\n");
        script += "table inet oxlive {\n chain input {\n  type filter hook input priority 0; policy accept;\n";
        if !blocked_from.is_empty() {
            let ips: Vec<String> = blocked_from.iter().map(|&j| self.ip(j)).collect();
            let _ = writeln!(script, "  ip saddr {{ {} }} drop", ips.join(", "));
        }
        if loss_percent > 0 {
            let _ = writeln!(script, "  numgen random mod 100 < {loss_percent} drop");
        }
        script += " }\n}\n";
        sh_in(
            "ip",
            &["netns", "exec", &self.ns(i), "nft", "-f", "-"],
            &script,
        )
    }

    /// Slows member `i`'s outgoing traffic: netem's delay, jitter and reordering where the
    /// kernel has netem, otherwise a token bucket (tbf) narrow enough to queue packets for
    /// up to `delay_ms`. `None` lifts it.
    pub fn set_latency(&self, i: usize, delay_ms: Option<u64>) -> io::Result<()> {
        let (ns, dev) = (self.ns(i), self.dev(i));
        let _ = sh(
            "ip",
            &[
                "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &dev, "root",
            ],
        );
        let Some(ms) = delay_ms else { return Ok(()) };
        let (d, j) = (format!("{ms}ms"), format!("{}ms", ms / 2));
        let lat = format!("{}ms", ms.max(1));
        let args: Vec<&str> = if self.netem {
            vec![
                "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &dev, "root", "netem", "delay",
                &d, &j, "reorder", "10%",
            ]
        } else {
            vec![
                "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &dev, "root", "tbf", "rate",
                "512kbit", "burst", "4kb", "latency", &lat,
            ]
        };
        sh("ip", &args)
    }

    /// Stops every process, removes the namespaces, the bridge and the data dirs.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for i in 0..self.procs.len() {
            if self.procs[i].paused {
                self.signal(i, "-CONT");
            }
            self.kill(i);
        }
        for i in 0..self.nodes {
            let ns = self.ns(i);
            kill_in_netns(&ns);
            let _ = sh("ip", &["netns", "del", &ns]);
            // Its peer goes with the namespace, but not at once: delete it now.
            let _ = sh("ip", &["link", "del", &format!("{}h{i}", self.id)]);
        }
        let _ = sh("ip", &["link", "del", &self.bridge()]);
        let _ = fs::remove_dir_all(&self.work);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(tmp, path)
}
