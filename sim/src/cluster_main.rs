//! `sim cluster` (madsim builds, through `sim/run`): the full-stack simulation for seeds
//! S..S+N-1, one report line for the set, and for each failing seed what was violated and the
//! command that replays it.

use clap::{Parser, Subcommand};
use sim::cluster::{self, Faults, Options};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "sim", about = "oxcd's full-stack simulation (madsim build)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Real oxcd members under faults, for seeds S..S+N-1; every history checked.
    Cluster(ClusterArgs),
}

#[derive(clap::Args)]
struct ClusterArgs {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 1)]
    count: u64,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// The fault phase in simulated time: `60s`, `2m`.
    #[arg(long, default_value = "60s", value_parser = parse_secs)]
    duration: Duration,
    /// `all`, `none`, or a list of partition, crash, pause, skew, disk, net, transfer, member.
    #[arg(long, default_value = "all", value_parser = Faults::parse)]
    faults: Faults,
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Run each seed twice and require the same trace hash.
    #[arg(long)]
    check_determinism: bool,
    /// Switch on a planted server mistake (local-linearizable-reads, expired-leases-kept,
    /// auth-checked-on-entry-only, campaign-without-waiting, observe-skips-leaders).
    #[arg(long, value_parser = cluster::parse_bug)]
    bug: Option<oxcd::server::ServerBug>,
    /// Run the auth workload instead of the others: users with partial permissions,
    /// granted and revoked during the run, and its check.
    #[arg(long)]
    auth: bool,
    /// Run the one seed `--seed` in this process and print its report (what the parent
    /// process runs each seed with: a process per seed, so that nothing a run leaves in the
    /// process reaches the next, and a seed replays alone exactly as it ran in a set).
    #[arg(long, hide = true)]
    one: bool,
}

/// One seed's figures, as a child process reports them on its last line.
#[derive(Default)]
struct SeedReport {
    ops: u64,
    sim_ms: u64,
    undecided: u64,
    violations: u64,
    hash: u64,
    faults: Vec<(String, u64)>,
}

const REPORT_PREFIX: &str = "seed-report ";

fn parse_report(line: &str) -> Option<SeedReport> {
    let mut r = SeedReport::default();
    for field in line.strip_prefix(REPORT_PREFIX)?.split(' ') {
        let (k, v) = field.split_once('=')?;
        match k {
            "ops" => r.ops = v.parse().ok()?,
            "sim_ms" => r.sim_ms = v.parse().ok()?,
            "undecided" => r.undecided = v.parse().ok()?,
            "violations" => r.violations = v.parse().ok()?,
            "hash" => r.hash = u64::from_str_radix(v, 16).ok()?,
            "faults" => {
                for kv in v.split(',').filter(|s| !s.is_empty()) {
                    let (name, n) = kv.split_once(':')?;
                    r.faults.push((name.to_string(), n.parse().ok()?));
                }
            }
            _ => {}
        }
    }
    Some(r)
}

/// Runs seed `opts.seed` in a child process: what it printed (its report line apart), and
/// its report.
fn run_child(args: &ClusterArgs, opts: &Options) -> (String, Option<SeedReport>) {
    let exe = std::env::current_exe().expect("the sim binary's path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "cluster",
        "--one",
        "--seed",
        &opts.seed.to_string(),
        "--nodes",
        &args.nodes.to_string(),
        "--duration",
        &format!("{}s", args.duration.as_secs()),
        "--faults",
        &args.faults.name(),
        "--clients",
        &args.clients.to_string(),
    ]);
    if let Some(bug) = args.bug {
        cmd.args(["--bug", cluster::bug_name(bug)]);
    }
    if args.auth {
        cmd.arg("--auth");
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => return (format!("seed {}: cannot run: {e}\n", opts.seed), None),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut text = String::new();
    let mut report = None;
    for line in stdout.lines() {
        match parse_report(line) {
            Some(r) => report = Some(r),
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    if report.is_none() {
        text.push_str(&format!(
            "seed {}: the run ended without a report ({}):\n{}",
            opts.seed,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    (text, report)
}

/// `--one`: runs one seed here, prints its violations and its report line.
fn run_one(opts: &Options) -> ExitCode {
    let report = cluster::run(opts);
    let seed = opts.seed;
    if !report.violations.is_empty() {
        println!("seed {seed}: {} violation(s):", report.violations.len());
        for v in &report.violations {
            println!("  {v}");
        }
        println!("  replay: {}", cluster::replay_command(opts));
        if let Some(html) = &report.timeline_html {
            let dir = std::path::Path::new("target/sim-failures");
            let path = dir.join(format!("cluster-seed-{seed}.html"));
            match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, html)) {
                Ok(()) => println!("  timeline: {}", path.display()),
                Err(e) => println!("  timeline not written: {e}"),
            }
        }
    }
    let faults: Vec<String> = report
        .faults
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    println!(
        "{REPORT_PREFIX}seed={seed} ops={} sim_ms={} undecided={} violations={} hash={:016x} faults={}",
        report.ops,
        report.sim_ms,
        report.undecided,
        report.violations.len(),
        report.hash,
        faults.join(",")
    );
    ExitCode::SUCCESS
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("bad duration unit in {s:?} (s or m)")),
    }
}

pub fn main() -> ExitCode {
    let Command::Cluster(args) = Cli::parse().command;
    let started = Instant::now();
    let (mut ops, mut sim_ms, mut violations, mut undecided) = (0, 0, 0, 0);
    let mut faults: std::collections::BTreeMap<String, u64> = Default::default();
    let mut hash = 0;
    if args.one {
        return run_one(&Options {
            seed: args.seed,
            nodes: args.nodes,
            duration: args.duration,
            faults: args.faults,
            clients: args.clients,
            bug: args.bug,
            auth: args.auth,
        });
    }
    for seed in args.seed..args.seed + args.count {
        let opts = Options {
            seed,
            nodes: args.nodes,
            duration: args.duration,
            faults: args.faults,
            clients: args.clients,
            bug: args.bug,
            auth: args.auth,
        };
        let (text, report) = run_child(&args, &opts);
        print!("{text}");
        let Some(report) = report else {
            violations += 1;
            continue;
        };
        if args.check_determinism {
            let (_, again) = run_child(&args, &opts);
            let again = again.map_or(0, |r| r.hash);
            if again != report.hash {
                println!(
                    "seed {seed}: non-determinism: trace hash {:016x} then {again:016x}\n  replay: {} --check-determinism",
                    report.hash,
                    cluster::replay_command(&opts)
                );
                violations += 1;
            }
        }
        ops += report.ops;
        sim_ms += report.sim_ms;
        undecided += report.undecided;
        violations += report.violations;
        hash = report.hash;
        for (k, v) in report.faults {
            *faults.entry(k).or_default() += v;
        }
    }
    let faults: Vec<String> = Faults::KINDS
        .iter()
        .map(|k| format!("{k}:{}", faults.get(*k).copied().unwrap_or(0)))
        .collect();
    println!(
        "cluster seeds={} sim_s={:.1} wall_s={:.2} ops={ops} faults={} undecided={undecided} violations={violations} hash={hash:016x}",
        args.count,
        sim_ms as f64 / 1000.0,
        started.elapsed().as_secs_f64(),
        faults.join(","),
    );
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
