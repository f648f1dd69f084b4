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
    /// Switch on a planted server mistake (local-linearizable-reads).
    #[arg(long, value_parser = cluster::parse_bug)]
    bug: Option<oxcd::server::ServerBug>,
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
    let mut faults: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let mut hash = 0;
    for seed in args.seed..args.seed + args.count {
        let opts = Options {
            seed,
            nodes: args.nodes,
            duration: args.duration,
            faults: args.faults,
            clients: args.clients,
            bug: args.bug,
        };
        let report = cluster::run(&opts);
        if args.check_determinism {
            let again = cluster::run(&opts);
            if again.hash != report.hash {
                println!(
                    "seed {seed}: non-determinism: trace hash {:016x} then {:016x}\n  replay: {} --check-determinism",
                    report.hash,
                    again.hash,
                    cluster::replay_command(&opts)
                );
                violations += 1;
            }
        }
        ops += report.ops;
        sim_ms += report.sim_ms;
        undecided += report.undecided;
        hash = report.hash;
        for (k, v) in &report.faults {
            *faults.entry(k).or_default() += v;
        }
        if !report.violations.is_empty() {
            violations += report.violations.len();
            println!("seed {seed}: {} violation(s):", report.violations.len());
            for v in &report.violations {
                println!("  {v}");
            }
            println!("  replay: {}", cluster::replay_command(&opts));
            if let Some(html) = &report.timeline_html {
                let dir = std::path::Path::new("target/sim-failures");
                let path = dir.join(format!("cluster-seed-{seed}.html"));
                match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, html)) {
                    Ok(()) => println!("  timeline: {}", path.display()),
                    Err(e) => println!("  timeline not written: {e}"),
                }
            }
        }
    }
    let faults: Vec<String> = [
        "partition",
        "crash",
        "pause",
        "skew",
        "disk",
        "net",
        "transfer",
        "member",
    ]
    .iter()
    .map(|k| format!("{k}:{}", faults.get(k).copied().unwrap_or(0)))
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
