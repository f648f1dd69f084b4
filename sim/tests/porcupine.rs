//! Every history of the Porcupine suite gets the verdict its `expected.txt` gives.

use std::path::Path;
use std::time::Instant;

use sim::checker::history_files::{Format, check_file};
use sim::checker::linearizability::Verdict;

/// A copy of ../shared/data/porcupine (see its README for where the histories come from).
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/porcupine");

/// `expected.txt`: `FILE true|false` lines; `#` starts a comment.
fn expected(dir: &Path) -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(
            |l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                [file, "true"] => (file.to_string(), true),
                [file, "false"] => (file.to_string(), false),
                _ => panic!("bad expected.txt line {l:?}"),
            },
        )
        .collect()
}

fn check_suite(sub: &str, format: Format) -> usize {
    let dir = Path::new(DATA).join(sub);
    let cases = expected(&dir);
    let start = Instant::now();
    let mut wrong = Vec::new();
    for (file, linearizable) in &cases {
        let verdict = check_file(format, &dir.join(file)).expect("parses");
        let ok = match verdict {
            Verdict::Linearizable => *linearizable,
            Verdict::NotLinearizable(_) => !*linearizable,
            Verdict::Unknown { .. } => false,
        };
        if !ok {
            wrong.push(format!("{file}: expected {linearizable}, got {verdict:?}"));
        }
    }
    eprintln!("{sub}: {} histories in {:?}", cases.len(), start.elapsed());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    cases.len()
}

#[test]
fn jepsen_etcd_register_logs() {
    assert_eq!(check_suite("jepsen", Format::JepsenRegister), 102);
}

#[test]
fn porcupine_kv_histories() {
    assert_eq!(check_suite("kv", Format::PorcupineKv), 6);
}
