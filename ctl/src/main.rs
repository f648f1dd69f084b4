//! oxctl, the command-line client: etcdctl 3.4's commands, flags and outputs (see
//! [`oxctl`]). Failures print `Error: <why>` on stderr and exit with etcdctl's codes.

// mimalloc (see `oxcd::alloc`): the same allocator as the server's.
#[cfg(not(madsim))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(not(madsim))]
oxcd::set_options_at_load!();

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    use std::io::Write;
    let cli = oxctl::Cli::parse();
    let runtime = if cli.is_bench() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build()
    .expect("a tokio runtime");
    let (out, err) = match runtime.block_on(cli.run()) {
        Ok(out) => (out, None),
        Err((out, err)) => (out, Some(err)),
    };
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    match err {
        None => std::process::ExitCode::SUCCESS,
        Some(e) => {
            if !e.message.is_empty() {
                eprintln!("Error: {}", e.message);
            }
            std::process::ExitCode::from(e.code.clamp(1, 255) as u8)
        }
    }
}

/// The client talks to real endpoints; the simulation has no use for it.
#[cfg(madsim)]
fn main() {}
