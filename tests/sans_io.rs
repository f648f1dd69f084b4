//! The sans-IO core reads no clock, draws no OS randomness, opens no socket or file, and
//! starts no thread or task: time, randomness and storage come in as arguments and traits.
//! The crate line does most of it: the core is the `oxcd-core` crate, which does not depend on
//! tokio, tonic or fjall (checked below on its dependency tree). The scan below catches what a
//! crate line cannot: the standard library's clock, threads, sockets and files, OS randomness,
//! and hash maps whose order could reach an output.

use std::path::Path;

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
    let core = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("core")
        .join("src");
    let (mut hits, mut files) = (Vec::new(), 0);
    scan(&core, &mut hits, &mut files);
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

/// The packages no build of the core may pull in, directly or through another crate.
const IO_PACKAGES: &[&str] = &[
    "tokio",
    "madsim-tokio",
    "tonic",
    "madsim-tonic",
    "fjall",
    "mio",
];

#[test]
fn the_core_crate_depends_on_no_io_crate() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "oxcd-core",
            "-e",
            "normal,build",
            "--target",
            "all",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let packages: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        packages.contains(&"oxcd-core") && packages.contains(&"bytes"),
        "the tree lists the core and its dependencies:\n{tree}"
    );
    let io: Vec<&&str> = IO_PACKAGES
        .iter()
        .filter(|p| packages.contains(p))
        .collect();
    assert!(io.is_empty(), "the core depends on {io:?}:\n{tree}");
}
