//! The sans-IO core reads no clock, draws no OS randomness, opens no socket or file, and
//! starts no thread or task: time, randomness and storage come in as arguments and traits.
//! This test keeps it that way for every core module that exists.

use std::path::Path;

/// Each core module is a `name.rs` file and a `name/` directory of its parts.
const CORE: &[&str] = &["raft", "mvcc", "lease", "auth", "node"];

const FORBIDDEN: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "OsRng",
    "from_entropy",
    "std::thread",
    "std::net",
    "std::fs",
    "tokio::",
    "madsim::",
    "HashMap",
    "HashSet",
];

fn scan(dir: &Path, hits: &mut Vec<String>, files: &mut usize) {
    for entry in std::fs::read_dir(dir).expect("core dir is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            scan(&path, hits, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            scan_file(&path, hits, files);
        }
    }
}

fn scan_file(path: &Path, hits: &mut Vec<String>, files: &mut usize) {
    *files += 1;
    let text = std::fs::read_to_string(path).expect("source is readable");
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for word in FORBIDDEN {
            if code.contains(word) {
                hits.push(format!("{}:{}: {word}", path.display(), n + 1));
            }
        }
    }
}

#[test]
fn the_core_takes_time_randomness_and_io_as_arguments() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mut hits, mut files) = (Vec::new(), 0);
    for name in CORE {
        let dir = root.join("src").join(name);
        if dir.is_dir() {
            scan(&dir, &mut hits, &mut files);
        }
        let file = root.join("src").join(format!("{name}.rs"));
        if file.is_file() {
            scan_file(&file, &mut hits, &mut files);
        }
    }
    assert!(
        files >= 10,
        "found only {files} core files: is the scan looking in the right place?"
    );
    assert!(
        hits.is_empty(),
        "the core reaches outside itself:\n{}",
        hits.join("\n")
    );
}
