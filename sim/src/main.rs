//! The `sim` command: seeded simulations of oxcd and their checkers. Built normally it runs the
//! Raft simulator, the history checker and the benchmarks (`tools_main.rs`); built with
//! `--cfg madsim` (`sim/run`) it runs the full-stack cluster simulation (`cluster_main.rs`).

#[cfg(madsim)]
#[path = "cluster_main.rs"]
mod entry;
#[cfg(not(madsim))]
#[path = "tools_main.rs"]
mod entry;

fn main() -> std::process::ExitCode {
    entry::main()
}
