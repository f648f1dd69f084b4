//! The `sim` command as built normally: `sim raft` runs the Raft core in a deterministic
//! in-process world and checks Raft's safety and liveness after every step; `sim member` runs
//! whole member servers (Raft, apply and the member's policy) with clients and checks their
//! histories; `sim check`
//! decides whether stored histories are linearizable; `sim bench-mvcc` and `sim bench-storage`
//! are benchmarks that print figures.

use clap::{Parser, Subcommand, ValueEnum};
use oxcd::raft::PlantedBug;
use sim::raft_sim::{self, Options, Report};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "sim", about = "oxcd's deterministic simulators")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[global_allocator]
static ALLOC: sim::alloc_count::CountingAlloc = sim::alloc_count::CountingAlloc;

#[derive(Subcommand)]
enum Command {
    /// Simulate a Raft cluster of the real core under faults, for seeds S..S+N-1.
    Raft(RaftArgs),
    /// Simulate a cluster of member servers with clients under faults, for seeds S..S+N-1.
    Member(MemberArgs),
    /// Measure the MVCC store and its watchers (a benchmark: prints figures).
    BenchMvcc(BenchArgs),
    /// Put keys into a one-member cluster on a data dir, printing `ack <i> <revision>` for
    /// each applied put (the load the SIGKILL test kills).
    StorageLoad(LoadArgs),
    /// Measure fdatasync, the Raft log on fjall and recovery (a benchmark: prints figures).
    BenchStorage(BenchStorageArgs),
    /// Decide whether stored histories are linearizable: one verdict line per file.
    Check(CheckArgs),
    /// Jepsen-style checks of a real server binary: N member processes in network
    /// namespaces, real faults (nftables, tc, signals, libfaketime, time namespaces, an
    /// fsync shim, membership changes), the shared workloads and checkers, a report.
    Live(LiveArgs),
    /// bench-storage's recovery step, run in a process of its own so its peak RSS is its own.
    #[command(hide = true)]
    BenchStorageRecover(RecoverArgs),
}

#[derive(clap::Args)]
struct LiveArgs {
    /// The server binary: oxcd (the default: target/release/oxcd, or the one beside this
    /// program), etcd 3.4 (/usr/bin/etcd), etcd 3.5, any etcd-compatible one.
    #[arg(long)]
    server: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// How long faults are injected (and the workloads run): `90s`, `2m`, `30m`.
    #[arg(long, default_value = "2m", value_parser = parse_span)]
    duration: std::time::Duration,
    /// `all`, `none`, or a comma-separated list of partition, net, crash, pause, clock, disk,
    /// member, transfer.
    #[arg(long, default_value = "all")]
    faults: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Register clients.
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// The results directory (default: target/live/<server>-seed<S>-<unix time>).
    #[arg(long)]
    report: Option<PathBuf>,
    /// A planted mistake for a test build of oxcd (built with the `planted-bugs` feature, as
    /// `cargo test` builds target/debug/oxcd): e.g. local-linearizable-reads.
    #[arg(long)]
    bug: Option<String>,
    /// Exit 0 only if the run found a violation (for proving the harness on a planted bug).
    #[arg(long)]
    expect_violation: bool,
}

/// `90s`, `2m`, `1h` or plain seconds.
fn parse_span(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("not a duration: {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("not a duration: {s:?} (90s, 2m, 1h)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

fn live(args: LiveArgs) -> ExitCode {
    let faults = match sim::live::parse_faults(&args.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("live: {e}");
            return ExitCode::from(2);
        }
    };
    let server = args.server.unwrap_or_else(|| {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.join("oxcd")));
        match beside {
            Some(p) if p.exists() => p,
            _ => PathBuf::from("target/release/oxcd"),
        }
    });
    let server = std::fs::canonicalize(&server).unwrap_or(server);
    let name = server
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let report = args
        .report
        .unwrap_or_else(|| PathBuf::from(format!("target/live/{name}-seed{}-{unix}", args.seed)));
    let opts = sim::live::Options {
        server,
        nodes: args.nodes,
        duration: args.duration,
        faults,
        seed: args.seed,
        clients: args.clients,
        report,
        bug: args.bug,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    match sim::live::run(&opts) {
        Ok(s) => {
            if !s.details.is_empty() {
                eprint!("{}", s.details);
            }
            println!("{}", s.line);
            let failed = !s.violations.is_empty();
            if failed == args.expect_violation {
                ExitCode::SUCCESS
            } else {
                if args.expect_violation {
                    eprintln!("live: the planted mistake went unnoticed");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("live: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
struct LoadArgs {
    /// The data dir (created if missing).
    #[arg(long)]
    dir: std::path::PathBuf,
    /// The number of the first put.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Stop after this many puts (default: never).
    #[arg(long)]
    count: Option<u64>,
}

#[derive(clap::Args)]
struct RecoverArgs {
    /// The member's data dir.
    #[arg(long)]
    dir: PathBuf,
    /// Keys the dir holds (checked).
    #[arg(long)]
    keys: usize,
    #[arg(long)]
    seed: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum HistoryFormat {
    /// Jepsen's etcd logs of one compare-and-set register.
    JepsenRegister,
    /// Porcupine's EDN key-value histories (get, put, append).
    PorcupineKv,
}

#[derive(clap::Args)]
struct CheckArgs {
    #[arg(long, value_enum)]
    format: HistoryFormat,
    /// For a history that is not linearizable, print the lines of the operations that show it.
    #[arg(long)]
    explain: bool,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Keys stored (and operations per figure).
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct BenchStorageArgs {
    /// Where to make the scratch dir (removed at the end) [default: the system temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Entries (and records) per group-commit run.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Entries (and records) per run that syncs after each one.
    #[arg(long, default_value_t = 5_000)]
    unbatched_entries: usize,
    /// Payload bytes per entry (and per record of the fdatasync runs).
    #[arg(long, default_value_t = 256)]
    entry_bytes: usize,
    /// Entries per sync, one group-commit run per size.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64, 256])]
    batch: Vec<usize>,
    /// Keys loaded through a member for the recovery figure.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    /// Bytes per value of the loaded keys.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct RaftArgs {
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many seeds to run.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Founding voters: 3, 5 or 7.
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    nodes: usize,
    /// Ticks of the fault phase of each run (a liveness phase follows).
    #[arg(long, default_value_t = raft_sim::DEFAULT_TICKS)]
    ticks: u64,
    /// Switch on a deliberate mistake (to see the simulator catch it).
    #[arg(long, value_enum)]
    bug: Option<Bug>,
    /// Worker threads (each seed runs on one; results do not depend on this).
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(clap::Args)]
struct MemberArgs {
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many seeds to run.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Founding voters: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = parse_member_nodes)]
    nodes: usize,
    /// Ticks (100 simulated ms each) of the fault phase of each run.
    #[arg(long, default_value_t = 600)]
    ticks: u64,
    /// Switch on a deliberate policy mistake (to see the simulator catch it).
    #[arg(long, value_enum)]
    bug: Option<MemberBug>,
    /// The lessors' `renew_cover_ms` instead of half an election timeout (more than a whole
    /// one is a mistake the simulator should catch).
    #[arg(long)]
    renew_cover_ms: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum MemberBug {
    KeepAliveBeforeCheckpoint,
    AlarmNotReplicated,
    ExpiredLeasesKept,
    AuthCheckedOnEntryOnly,
    V2ExpiryNotProposed,
}

impl From<MemberBug> for oxcd::node::PolicyBug {
    fn from(b: MemberBug) -> oxcd::node::PolicyBug {
        match b {
            MemberBug::KeepAliveBeforeCheckpoint => {
                oxcd::node::PolicyBug::KeepAliveBeforeCheckpoint
            }
            MemberBug::AlarmNotReplicated => oxcd::node::PolicyBug::AlarmNotReplicated,
            MemberBug::ExpiredLeasesKept => oxcd::node::PolicyBug::ExpiredLeasesKept,
            MemberBug::AuthCheckedOnEntryOnly => oxcd::node::PolicyBug::AuthCheckedOnEntryOnly,
            MemberBug::V2ExpiryNotProposed => oxcd::node::PolicyBug::V2ExpiryNotProposed,
        }
    }
}

fn parse_member_nodes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (3 | 5)) => Ok(n),
        _ => Err("nodes must be 3 or 5".into()),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Bug {
    VoteBeforePersist,
    CommitOldTerm,
    ReadIndexWithoutHeartbeat,
    AcceptConflictingAppend,
}

impl From<Bug> for PlantedBug {
    fn from(b: Bug) -> PlantedBug {
        match b {
            Bug::VoteBeforePersist => PlantedBug::VoteBeforePersist,
            Bug::CommitOldTerm => PlantedBug::CommitOldTerm,
            Bug::ReadIndexWithoutHeartbeat => PlantedBug::ReadIndexWithoutHeartbeat,
            Bug::AcceptConflictingAppend => PlantedBug::AcceptConflictingAppend,
        }
    }
}

fn parse_nodes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (3 | 5 | 7)) => Ok(n),
        _ => Err("nodes must be 3, 5 or 7".into()),
    }
}

pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Raft(args) => raft(args),
        Command::Member(args) => member(args),
        Command::Check(args) => check(args),
        Command::BenchMvcc(args) => bench_mvcc(args),
        Command::StorageLoad(args) => storage_load(args),
        Command::BenchStorage(args) => bench_storage(args),
        Command::Live(args) => live(args),
        Command::BenchStorageRecover(args) => {
            match sim::bench_storage::recover(&args.dir, args.keys, args.seed) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench-storage-recover: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn storage_load(args: LoadArgs) -> ExitCode {
    use sim::storage_load;
    let result = oxcd::storage::FjallEngine::open(&args.dir)
        .map_err(|e| e.to_string())
        .and_then(|engine| storage_load::open_single(engine).map_err(|e| e.to_string()))
        .and_then(|mut m| {
            storage_load::run(
                &mut m,
                args.start,
                args.count,
                &mut std::io::stdout().lock(),
            )
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storage-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sim check`: exits 0 when every file was decided (whatever the verdicts), 1 otherwise.
fn check(args: CheckArgs) -> ExitCode {
    use sim::checker::history_files::{self, Format};
    use sim::checker::linearizability::Verdict;
    let format = match args.format {
        HistoryFormat::JepsenRegister => Format::JepsenRegister,
        HistoryFormat::PorcupineKv => Format::PorcupineKv,
    };
    let started = Instant::now();
    let mut undecided = 0;
    for file in &args.files {
        let name = file.display();
        match history_files::check_file(format, file) {
            Ok(Verdict::Linearizable) => println!("{name} linearizable"),
            Ok(Verdict::NotLinearizable(cx)) => {
                println!("{name} not-linearizable");
                if args.explain {
                    match history_files::window_lines(format, file, &cx) {
                        Ok(lines) => {
                            for (number, line) in lines {
                                println!("  {number:>6}  {line}");
                            }
                        }
                        Err(e) => println!("  (cannot show the window: {e})"),
                    }
                }
            }
            Ok(Verdict::Unknown { steps, .. }) => {
                undecided += 1;
                println!("{name} unknown (gave up after {steps} steps)");
            }
            Err(e) => {
                undecided += 1;
                println!("{name} error: {e}");
            }
        }
    }
    println!(
        "checked {} histories in {:.3} s",
        args.files.len(),
        started.elapsed().as_secs_f64()
    );
    if undecided == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn raft(args: RaftArgs) -> ExitCode {
    let started = Instant::now();
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let options: Vec<Options> = (0..args.count)
        .map(|i| {
            let mut o = Options::new(args.seed + i, args.nodes);
            o.ticks = args.ticks;
            o.bug = args.bug.map(PlantedBug::from);
            o
        })
        .collect();
    let reports = sim::raft_sim::run_many(&options, jobs);
    let elapsed = started.elapsed().as_secs_f64();
    let failed: Vec<&Report> = reports.iter().filter(|r| r.violation.is_some()).collect();
    let bug_flag = args
        .bug
        .and_then(|b| b.to_possible_value())
        .map(|v| format!(" --bug {}", v.get_name()))
        .unwrap_or_default();
    for r in failed.iter().take(5) {
        println!(
            "FAIL seed={}: {}",
            r.seed,
            r.violation.as_ref().expect("failed")
        );
        println!(
            "  replay: cargo run --release -p sim -- raft --seed {} --count 1 --nodes {} --ticks {}{}",
            r.seed, args.nodes, args.ticks, bug_flag
        );
    }
    println!("{}", raft_sim::summary(&reports, args.nodes, elapsed));
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn member(args: MemberArgs) -> ExitCode {
    use sim::member_sim;
    let started = Instant::now();
    let bug_flag = args
        .bug
        .and_then(|b| b.to_possible_value())
        .map(|v| format!(" --bug {}", v.get_name()))
        .unwrap_or_default();
    let bug_flag = match args.renew_cover_ms {
        Some(ms) => format!("{bug_flag} --renew-cover-ms {ms}"),
        None => bug_flag,
    };
    let (mut failed, mut ticks, mut ops, mut known, mut acked, mut last_hash) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut watch_events, mut streams, mut changes) = (0u64, 0u64, 0u64);
    let (mut auth_changes, mut auth_writes) = (0u64, 0u64);
    let (mut covered, mut probes) = (0u64, 0u64);
    let (mut v2_known, mut v2_events, mut v2_gaps) = (0u64, 0u64, 0u64);
    for seed in args.seed..args.seed + args.count {
        let mut o = member_sim::Options::new(seed, args.nodes);
        o.ticks = args.ticks;
        o.bug = args.bug.map(Into::into);
        o.renew_cover_ms = args.renew_cover_ms;
        let r = member_sim::run(&o);
        ticks += r.ticks;
        ops += r.register_ops;
        known += r.register_ops_known;
        acked += r.keep_alives_acked;
        covered += r.keep_alives_covered;
        probes += r.keep_alives_after_revoke;
        watch_events += r.watch_events;
        streams += r.watch_streams;
        changes += r.membership_changes;
        auth_changes += r.auth_changes;
        auth_writes += r.auth_writes;
        v2_known += r.v2_ops_known;
        v2_events += r.v2_watch_events;
        v2_gaps += r.v2_watch_gaps;
        last_hash = r.hash;
        if let Some(why) = &r.violation {
            failed += 1;
            if failed <= 5 {
                println!("FAIL seed={seed}: {why}");
                println!(
                    "  replay: cargo run --release -p sim -- member --seed {seed} --count 1 --nodes {} --ticks {}{bug_flag}",
                    args.nodes, args.ticks
                );
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let simulated_s = ticks as f64 * 0.1;
    println!(
        "member sim: {} seeds on {} members, {failed} failed; {ops} register ops ({known} with \
         known outcome), {acked} keep-alives acknowledged ({covered} covered, {probes} after a revoke), {watch_events} watch events ({streams} \
         streams), {changes} membership changes, {auth_changes} auth changes ({auth_writes} \
         writes as a user), {v2_known} v2 register ops with known outcome, {v2_events} v2 watch \
         events ({v2_gaps} resumes past a cleared history); {simulated_s:.0} simulated s in \
         {elapsed:.1} s ({:.0}x real time); last hash {last_hash:016x}",
        args.count,
        args.nodes,
        simulated_s / elapsed.max(1e-9)
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn bench_mvcc(args: BenchArgs) -> ExitCode {
    let options = sim::bench_mvcc::Options {
        keys: args.keys.max(1000),
        value_bytes: args.value_bytes,
        seed: args.seed,
    };
    println!(
        "bench-mvcc: in-memory backend, one thread, {} keys of 14 bytes, {}-byte values",
        options.keys, options.value_bytes
    );
    let (figures, bytes_per_key) = sim::bench_mvcc::run_kv(&options);
    for f in &figures {
        println!("{f}");
    }
    println!(
        "{}",
        sim::bench_mvcc::run_watch(&options, 10_000, 100, false)
    );
    println!(
        "{}",
        sim::bench_mvcc::run_watch(&options, 10_000, 100, true)
    );
    println!(
        "{:<34} {:>10.0} bytes (key and value alone: {} bytes)",
        "memory per stored key",
        bytes_per_key,
        14 + options.value_bytes
    );
    ExitCode::SUCCESS
}

fn bench_storage(args: BenchStorageArgs) -> ExitCode {
    let options = sim::bench_storage::Options {
        dir: args.dir,
        entries: args.entries,
        unbatched_entries: args.unbatched_entries,
        entry_bytes: args.entry_bytes,
        batches: args.batch,
        keys: args.keys,
        value_bytes: args.value_bytes,
        seed: args.seed,
    };
    match sim::bench_storage::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-storage: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent_and_names_the_recovery_step_as_bench_storage_spawns_it() {
        Cli::command().debug_assert();
        let name = sim::bench_storage::RECOVER_SUBCOMMAND;
        assert!(Cli::command().find_subcommand(name).is_some(), "{name}");
    }
}
