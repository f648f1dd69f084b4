//! Compiles `proto/` into Rust for both builds: real tonic (`OUT_DIR/<pkg>.rs`) and madsim's
//! (`OUT_DIR/sim/<pkg>.rs`); `tonic::include_proto!` picks the one the build needs. protox
//! parses the files, so no system `protoc` is needed.
//!
//! It also generates serde impls for etcd's packages (`OUT_DIR/<pkg>.serde.rs`, included by
//! `src/pb.rs` outside simulation) for the JSON gateway: pbjson-build's proto3 JSON mapping
//! with the proto's own field names on output (as etcd's gateway writes them) and unknown
//! fields ignored on input. Two of its helpers decode more leniently than Go does (base64
//! without padding or URL-safe; numbers through an untagged enum whose errors say nothing),
//! so the generated code is pointed at the gateway's own (`crate::api::gateway::json`),
//! which accept and refuse what etcd's gateway does, with its messages.

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
    let fds_bytes = prost::Message::encode_to_vec(&fds);
    std::fs::write(&fds_path, &fds_bytes)?;
    tonic_build::configure()
        .file_descriptor_set_path(&fds_path)
        .skip_protoc_run()
        .bytes(["."])
        .compile_protos(PROTOS, &["proto"])?;
    sized_codec(&out_dir)?;
    json(&fds_bytes, &out_dir)?;
    Ok(())
}

/// Points the generated (non-simulated) services and clients at `crate::api::codec`'s codec,
/// which sizes each message's buffer once (the builder offers no setting for it).
fn sized_codec(out_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    const PROST: &str = "tonic_prost::ProstCodec::default()";
    const SIZED: &str = "crate::api::codec::SizedCodec::default()";
    let mut patched = 0;
    for entry in std::fs::read_dir(out_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            let code = std::fs::read_to_string(&path)?;
            if code.contains(PROST) {
                std::fs::write(&path, code.replace(PROST, SIZED))?;
                patched += 1;
            }
        }
    }
    assert!(
        patched > 0,
        "no generated service names {PROST}: the generator changed"
    );
    Ok(())
}

/// The packages the JSON gateway speaks (not the health service's, nor the peer protocol's).
const JSON_PACKAGES: &[&str] = &[
    ".mvccpb",
    ".authpb",
    ".etcdserverpb",
    ".v3lockpb",
    ".v3electionpb",
];

/// An unknown enum name refused in jsonpb's words (`unknown value "X" for enum
/// etcdserverpb.RangeRequest_SortOrder`: Go names a nested enum Outer_Inner) rather than
/// serde's: each enum's deserializer is found by its `impl` line.
fn go_enum_errors(code: &str, package: &str) -> String {
    const IMPL: &str = "impl<'de> serde::Deserialize<'de> for ";
    const SERDE: &str = "serde::de::Error::unknown_variant(value, FIELDS)";
    let mut go_name = String::new();
    let mut out = String::with_capacity(code.len());
    for line in code.lines() {
        if let Some(path) = line.strip_prefix(IMPL) {
            let path = path.trim_end_matches(" {");
            let parts: Vec<String> = path
                .split("::")
                .map(|p| {
                    p.split('_')
                        .map(|w| {
                            let mut c = w.chars();
                            c.next()
                                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .collect();
            go_name = format!("{package}.{}", parts.join("_"));
        }
        if line.contains(SERDE) {
            let ours = format!(
                "serde::de::Error::custom(format!(\"unknown value \\\"{{value}}\\\" for enum {go_name}\"))"
            );
            out.push_str(&line.replace(SERDE, &ours));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// pbjson's helpers, and the gateway's stand-ins for them.
const JSON_HELPERS: &[(&str, &str)] = &[
    (
        "::pbjson::private::BytesDeserialize",
        "crate::api::gateway::json::GoBytes",
    ),
    (
        "::pbjson::private::NumberDeserialize",
        "crate::api::gateway::json::GoNumber",
    ),
];

fn json(fds: &[u8], out_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    pbjson_build::Builder::new()
        .register_descriptors(fds)?
        .out_dir(out_dir)
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(JSON_PACKAGES)?;
    for package in JSON_PACKAGES {
        let path = out_dir.join(format!("{}.serde.rs", &package[1..]));
        let mut code = std::fs::read_to_string(&path)?;
        for (theirs, ours) in JSON_HELPERS {
            assert!(
                code.contains(theirs) || !package.contains("etcdserverpb"),
                "pbjson-build no longer calls {theirs}: check the gateway's JSON helpers"
            );
            code = code.replace(theirs, ours);
        }
        let code = go_enum_errors(&code, &package[1..]);
        std::fs::write(&path, code)?;
    }
    Ok(())
}
