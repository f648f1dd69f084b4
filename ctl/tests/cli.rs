//! The `oxctl` binary as a user runs it, where no server is needed: what it prints and the
//! exit code it ends with for `version`, for arguments it refuses before it connects, and for
//! a snapshot file it cannot read. The commands against servers are tested at the root
//! (`tests/etcdctl_compat.rs` and the other tests that run `Client::Oxctl`), which find this
//! binary beside oxcd's: being this crate's test, this file also makes `cargo test
//! --workspace` build it first.

use std::process::{Command, Output};

/// Runs oxctl with `args`, without the `ETCDCTL_*` variables of the caller's environment.
fn oxctl(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxctl"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD") {
            cmd.env_remove(&k);
        }
    }
    cmd.args(args).output().expect("oxctl starts")
}

/// Asserts that `out` exited with `code`, printed nothing on stdout and exactly `stderr`.
fn assert_failed(out: &Output, code: i32, stderr: &str) {
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        stderr,
        "stderr (stdout: {:?})",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(code));
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn version_prints_the_crate_and_api_versions() {
    let out = oxctl(&["version"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "oxctl version: {}\nAPI version: 3.4\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn bad_arguments_exit_128_before_connecting() {
    // Port 1 refuses: had oxctl tried to connect, it would exit 2 instead.
    let out = oxctl(&["--endpoints", "127.0.0.1:1", "get"]);
    assert_failed(
        &out,
        128,
        "Error: get command needs one argument as key and an optional argument as range_end\n",
    );
    let out = oxctl(&["--endpoints", "127.0.0.1:1", "watch"]);
    assert_failed(&out, 128, "Error: bad number of arguments\n");
    let out = oxctl(&["--endpoints", "127.0.0.1:1", "lock"]);
    assert_failed(
        &out,
        128,
        "Error: lock takes a lock name argument and an optional command to execute\n",
    );
    let out = oxctl(&["--endpoints", "127.0.0.1:1", "elect", "e", "p", "extra"]);
    assert_failed(
        &out,
        128,
        "Error: elect takes one election name argument and an optional proposal argument\n",
    );
}

#[test]
fn an_unknown_consistency_is_an_unsupported_feature() {
    let out = oxctl(&[
        "--endpoints",
        "127.0.0.1:1",
        "get",
        "foo",
        "--consistency",
        "x",
    ]);
    assert_failed(&out, 4, "Error: unknown consistency flag \"x\"\n");
}

#[test]
fn an_unknown_command_is_refused_by_the_parser() {
    let out = oxctl(&["frobnicate"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unrecognized subcommand 'frobnicate'"),
        "{stderr}"
    );
}

#[test]
fn snapshot_status_of_a_missing_file_names_it() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("oxctl-no-such.db");
    let path = path.to_str().expect("a UTF-8 path");
    let out = oxctl(&["snapshot", "status", path]);
    assert_failed(
        &out,
        1,
        // etcdctl's words (Go's `os.Stat` error).
        &format!("Error: stat {path}: no such file or directory\n"),
    );
}

#[test]
fn snapshot_status_refuses_a_file_that_is_no_snapshot() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("oxctl-not-a-snapshot.db");
    std::fs::write(&path, b"not a snapshot").expect("the temporary file is written");
    let out = oxctl(&["snapshot", "status", path.to_str().expect("a UTF-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr.starts_with("Error: "), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
}
