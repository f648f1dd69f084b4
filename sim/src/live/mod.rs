//! The live harness: Jepsen-style checks of a real server binary (oxcd by default, or any
//! etcd-compatible one: etcd 3.4 and 3.5 are the controls). It starts N member processes,
//! each in a network namespace of its own on a bridge inside this machine, runs the shared
//! workloads ([`crate::workload`]) against them through the real gRPC client, injects real
//! faults from a seeded schedule ([`nemesis`]), heals, runs the shared checkers, and writes a
//! report ([`report`]). Everything it starts it stops ([`lab`]), failing or not.
//!
//! Unlike the madsim harness, a live run is not replayable bit for bit: the seed fixes the
//! fault schedule and the workloads' choices, the kernel and the processes' timing do the
//! rest.

mod lab;
mod nemesis;
mod report;

use crate::workload::{self, Findings, Plan, Running, Spawner};
use lab::Lab;
use nemesis::Nemesis;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

pub use nemesis::{KINDS, parse as parse_faults};

/// One live run's settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server binary (etcd's flags).
    pub server: PathBuf,
    pub nodes: usize,
    /// How long faults are injected (the workloads run as long).
    pub duration: Duration,
    pub faults: Vec<&'static str>,
    pub seed: u64,
    /// Register clients.
    pub clients: usize,
    /// The results directory of this run.
    pub report: PathBuf,
    /// A planted mistake for a test build of oxcd (`OXCD_PLANTED_BUG`).
    pub bug: Option<String>,
    /// The command line, for the report's head.
    pub command: String,
}

/// What a run found.
pub struct Summary {
    pub ops: usize,
    pub faults: usize,
    pub violations: Vec<String>,
    pub report: PathBuf,
    /// The summary line: `live seeds=.. nodes=.. ops=.. faults=.. violations=N report=DIR`.
    pub line: String,
    /// For a failing run: its seed, faults, the smallest windows that show each violation.
    pub details: String,
}

/// Tasks are tokio tasks: the harness process is the clients' host.
struct Tasks;

impl Spawner for Tasks {
    fn spawn<F>(&self, _name: &str, _ip: &str, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(task)
    }
}

/// Runs one live run to the end (or to Ctrl-C) and writes its report.
pub fn run(opts: &Options) -> Result<Summary, String> {
    preflight()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // A run that cannot end is a harness bug: bound it well past its faults and checks.
    let bound = opts.duration * 2 + Duration::from_secs(20 * 60);
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = term.recv() => Err("terminated (everything the run started is stopped)".into()),
            r = tokio::time::timeout(bound, scenario(opts)) => r.unwrap_or_else(|_| {
                Err(format!("the run did not end within {bound:?} (everything it started is stopped)"))
            }),
            _ = tokio::signal::ctrl_c() => Err("interrupted (everything the run started is stopped)".into()),
        }
    })
}

/// The tools a run needs, with what to install when one is missing.
fn preflight() -> Result<(), String> {
    let has = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("tc", "iproute2"),
        ("unshare", "util-linux"),
    ]
    .into_iter()
    .filter(|(cmd, _)| !has(cmd))
    .map(|(_, pkg)| pkg)
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing tools: apt-get install {}",
            missing.join(" ")
        ));
    }
    if !std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
    {
        return Err("a live run makes network namespaces: run it as root".into());
    }
    Ok(())
}

/// The server's own `--version`, first line.
fn server_version(server: &Path) -> String {
    std::process::Command::new(server)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|e| format!("({e})"))
}

async fn scenario(opts: &Options) -> Result<Summary, String> {
    let n = opts.nodes;
    if !(1..=7).contains(&n) {
        return Err("--nodes takes 1 to 7".into());
    }
    let version = server_version(&opts.server);
    std::fs::create_dir_all(&opts.report).map_err(|e| format!("{}: {e}", opts.report.display()))?;
    let mut lab = Lab::create(n, &opts.server, &opts.report.join("logs"))
        .map_err(|e| format!("cannot make the lab: {e}"))?;
    if let Some(bug) = &opts.bug {
        lab.env.push(("OXCD_PLANTED_BUG".into(), bug.clone()));
    }
    workload::set_endpoints(
        (0..n)
            .map(|i| (lab.client_url(i), lab.peer_url(i)))
            .collect(),
    );
    let clock_enabled = opts.faults.contains(&"clock");
    let (clock_ok, disk_ok) = lab.preload_reaches();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x6c69_7665);
    for i in 0..n {
        if clock_enabled {
            use rand::Rng;
            lab.time_offsets[i] = rng.gen_range(0i64..30) * 86_400;
        }
        lab.start(i)
            .map_err(|e| format!("cannot start m{i}: {e}"))?;
    }
    if let Err(e) = workload::live_within(n, Duration::from_secs(30)).await {
        return Err(format!(
            "the cluster did not come up: {e} (logs in {})",
            opts.report.join("logs").display()
        ));
    }
    let start = Instant::now();
    let until = start + opts.duration;
    let running = Running::start(
        &Tasks,
        Plan {
            seed: opts.seed,
            nodes: n,
            clients: opts.clients,
            others: true,
            start,
            until,
        },
    );
    let mut nemesis = Nemesis {
        lab,
        rng,
        start,
        faults: Vec::new(),
        round: Vec::new(),
        counts: Default::default(),
        unexpected_exits: Vec::new(),
        clock_enabled,
        clock_ok,
        disk_ok,
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    while Instant::now() < until {
        // The members' data grows all run long (nothing is compacted: the checks read every
        // revision): stop before the machine's disk fills rather than test a full disk.
        if let Some(free) = free_bytes(&nemesis.lab.work)
            && free < DISK_FREE_MIN
        {
            return Err(format!(
                "stopped after {:?}: {} MiB left on the disk of {} (at least {} MiB wanted); \
                 nothing was checked",
                start.elapsed(),
                free >> 20,
                nemesis.lab.work.display(),
                DISK_FREE_MIN >> 20
            ));
        }
        nemesis.step(&opts.faults).await;
    }
    nemesis.heal().await;
    let healed = Instant::now();
    let mut found: Findings = running.finish(&Tasks, healed, Vec::new()).await;
    for (i, status) in nemesis.lab.reap() {
        nemesis
            .unexpected_exits
            .push(format!("m{i} exited ({status}) after the healing"));
    }
    found.checks.push(workload::Check {
        name: "processes",
        looked_at: n,
        violations: nemesis.unexpected_exits.clone(),
        informational: false,
    });
    let logs_bytes = dir_size(&opts.report.join("logs"));
    nemesis.lab.teardown();
    let violations = found.violations();
    let ops = found.recorded.len() + found.txns.len();
    let fault_count = nemesis.faults.len();
    let report = report::Report {
        opts,
        version: &version,
        found: &found,
        faults: &nemesis.faults,
        netem: nemesis.lab.netem,
        clock_ok,
        disk_ok,
        logs_bytes,
    };
    report
        .write()
        .map_err(|e| format!("cannot write the report: {e}"))?;
    let counts: Vec<String> = nemesis
        .counts
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let line = format!(
        "live seeds={} nodes={n} ops={ops} faults={} violations={} report={}",
        opts.seed,
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(",")
        },
        violations.len(),
        opts.report.display()
    );
    let details = if violations.is_empty() {
        String::new()
    } else {
        report.details()
    };
    Ok(Summary {
        ops,
        faults: fault_count,
        violations,
        report: opts.report.clone(),
        line,
        details,
    })
}

/// The least free disk space a run goes on with.
const DISK_FREE_MIN: u64 = 1 << 30;

/// Free bytes on the file system holding `path` (`df`'s answer).
fn free_bytes(path: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
