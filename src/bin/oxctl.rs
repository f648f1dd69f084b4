//! oxctl, the command-line client (etcdctl-compatible). Not built yet: it comes with the
//! server issue. Until then it says so and exits.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "oxctl {}: the client is not built yet; it will take etcdctl's commands and flags.",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::FAILURE
}
