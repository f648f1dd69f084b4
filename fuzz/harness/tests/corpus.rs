//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/*`) through the harness each
//! cargo-fuzz target calls (`oxcd_fuzzing`), on the stable toolchain and without libFuzzer:
//! every input the fuzzer once found interesting stays a regression test.
//!
//! It fails when a target has no corpus directory or an empty one, or a corpus directory has
//! no target, so it cannot pass by replaying nothing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// A harness: panics when the input exposes a bug.
type Harness = fn(&[u8]);

/// Each cargo-fuzz target (`fuzz/fuzz_targets/<name>.rs`) and the harness it calls.
const TARGETS: &[(&str, Harness)] = &[
    ("command_decode", oxcd_fuzzing::command_decode),
    ("conf_change_decode", oxcd_fuzzing::conf_change_decode),
    ("raft_step", oxcd_fuzzing::raft_step),
    ("request_decode", oxcd_fuzzing::request_decode),
    ("snapshot_read", oxcd_fuzzing::snapshot_read),
    ("stored_value_decode", oxcd_fuzzing::stored_value_decode),
    ("wal_read", oxcd_fuzzing::wal_read),
];

/// `fuzz/`, the cargo-fuzz crate's directory, which holds this crate's (`fuzz/harness/`).
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the harness lives in fuzz/harness")
        .to_path_buf()
}

/// The names of the entries in `dir` (files or directories, as `want_dirs` says), sorted.
fn names(dir: &Path, want_dirs: bool) -> Vec<String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
        .filter(|e| e.path().is_dir() == want_dirs)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn replay(target: &str, harness: Harness) {
    let dir = fuzz_dir().join("corpus").join(target);
    let files = names(&dir, false);
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    let mut failed = Vec::new();
    for name in &files {
        let path = dir.join(name);
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs failed (replay one with `cargo fuzz run {target} <file>`):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn command_decode_corpus() {
    replay("command_decode", oxcd_fuzzing::command_decode);
}

#[test]
fn conf_change_decode_corpus() {
    replay("conf_change_decode", oxcd_fuzzing::conf_change_decode);
}

#[test]
fn raft_step_corpus() {
    replay("raft_step", oxcd_fuzzing::raft_step);
}

#[test]
fn request_decode_corpus() {
    replay("request_decode", oxcd_fuzzing::request_decode);
}

#[test]
fn every_target_has_a_corpus_and_every_corpus_a_target() {
    let mut known: Vec<&str> = TARGETS.iter().map(|&(name, _)| name).collect();
    known.sort();
    let sources: Vec<String> = names(&fuzz_dir().join("fuzz_targets"), false)
        .into_iter()
        .filter_map(|f| f.strip_suffix(".rs").map(str::to_owned))
        .collect();
    assert_eq!(
        sources, known,
        "fuzz_targets/*.rs and this test's TARGETS differ"
    );
    assert_eq!(
        names(&fuzz_dir().join("corpus"), true),
        known,
        "fuzz/corpus/* and the fuzz targets differ"
    );
}

#[test]
fn snapshot_read_corpus() {
    replay("snapshot_read", oxcd_fuzzing::snapshot_read);
}

#[test]
fn stored_value_decode_corpus() {
    replay("stored_value_decode", oxcd_fuzzing::stored_value_decode);
}
