//! The oxcd server binary. Not yet a server: the Raft core and its simulator exist, and the
//! etcd v3 gRPC server comes with the server issue. Until then it says so and exits.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "oxcd {}: the server is not built yet.\n\
         It will start a one-member cluster on 127.0.0.1:2379 (clients) and 127.0.0.1:2380\n\
         (peers) with its data in ./default.oxcd, speaking etcd's v3 gRPC API, and take etcd's\n\
         flags (--name, --data-dir, --listen-client-urls, --initial-cluster, ...).\n\
         What exists today: the sans-IO Raft core, and its simulator:\n\
         cargo run --release -p sim -- raft --seed 1 --count 2000 --nodes 5",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::FAILURE
}
