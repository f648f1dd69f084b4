//! Compiles `proto/` into Rust for both builds: real tonic (`OUT_DIR/<pkg>.rs`) and madsim's
//! (`OUT_DIR/sim/<pkg>.rs`); `tonic::include_proto!` picks the one the build needs. protox
//! parses the files, so no system `protoc` is needed.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/kv.proto",
    "proto/auth.proto",
    "proto/rpc.proto",
    "proto/lock.proto",
    "proto/election.proto",
    "proto/health.proto",
    "proto/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    let fds_path = out_dir.join("protos.fds.bin");
    std::fs::write(&fds_path, prost::Message::encode_to_vec(&fds))?;
    tonic_build::configure()
        .file_descriptor_set_path(&fds_path)
        .skip_protoc_run()
        .bytes(["."])
        .compile_protos(PROTOS, &["proto"])?;
    Ok(())
}
