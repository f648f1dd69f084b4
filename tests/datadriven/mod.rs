//! The data-driven script runner shared by the `*_scripts` tests: scripts of commands with
//! their expected output, in the style of etcd-io/raft's testdata. Each test supplies an [`Env`]
//! that runs the commands.
//!
//! A script is a sequence of blocks separated by blank lines; lines starting with `#` between
//! blocks are comments. A block is a command line (`name arg key=value key=(a,b)`), optional
//! input lines, `----`, and the expected output (no blank lines). A mismatch fails the test
//! with a diff naming the file and line; `OXCD_REWRITE=1` rewrites the files with the actual
//! output instead (review the diff before committing).

#![allow(dead_code)] // each test uses the parts it needs

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What a script drives: it runs one command (with its input lines) and says what happened.
pub trait Env {
    fn run(&mut self, cmd: &Command, input: &[String]) -> Result<String, String>;
}

/// Runs every `tests/testdata/<subdir>/*.txt` script, each against a fresh environment, and
/// fails with a report of every mismatch (or rewrites the files with `OXCD_REWRITE=1`).
pub fn run_dir<E: Env>(subdir: &str, fresh: impl Fn() -> E) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(subdir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scripts in {}", dir.display());
    let rewrite = std::env::var_os("OXCD_REWRITE").is_some_and(|v| v == "1");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| run_file(f, rewrite, fresh()).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{}\n\n{} script(s) failed; rerun with OXCD_REWRITE=1 to accept the actual output \
         (then review it)",
        failures.join("\n\n"),
        failures.len()
    );
}

/// Runs one script; on mismatch returns a report of every differing block.
fn run_file<E: Env>(path: &Path, rewrite: bool, mut env: E) -> Result<(), String> {
    let name = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let lines: Vec<&str> = text.lines().collect();
    let blocks = parse_script(&lines).map_err(|e| format!("{name}:{e}"))?;
    let mut outputs = Vec::with_capacity(blocks.len());
    let mut report = Vec::new();
    for block in &blocks {
        let actual = match env.run(&block.command, &block.input) {
            Ok(actual) => actual,
            Err(e) => {
                // A broken script: report it with any earlier mismatches, and stop here (the
                // nodes' state no longer follows the script).
                report.push(format!(
                    "{name}:{}: `{}`: {e}",
                    block.line, block.command.text
                ));
                return Err(report.join("\n"));
            }
        };
        assert!(
            !actual.lines().any(str::is_empty),
            "{name}:{}: output must not contain blank lines",
            block.line
        );
        let expected = &lines[block.expected.clone()];
        let actual_lines: Vec<&str> = actual.lines().collect();
        if actual_lines != expected {
            report.push(format!(
                "{name}:{}: `{}` output differs (- expected, + actual):\n{}",
                block.line,
                block.command.text,
                diff(expected, &actual_lines)
            ));
        }
        outputs.push(actual);
    }
    if rewrite {
        if !report.is_empty() {
            std::fs::write(path, splice(&lines, &blocks, &outputs))
                .map_err(|e| format!("{name}: {e}"))?;
            eprintln!("rewrote {name} ({} block(s) changed)", report.len());
        }
        return Ok(());
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report.join("\n"))
    }
}

// ----- scripts -------------------------------------------------------------------------------

struct Block {
    /// 1-based line of the command.
    line: usize,
    command: Command,
    input: Vec<String>,
    /// The expected output, as indexes into the file's lines.
    expected: Range<usize>,
}

pub struct Command {
    pub text: String,
    pub name: String,
    pub args: Vec<Arg>,
}

/// `key=value`, `key=(a,b)`, or a bare word (a key with no values).
pub struct Arg {
    pub key: String,
    pub values: Option<Vec<String>>,
}

fn parse_script(lines: &[&str]) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let text = lines[i].trim_end();
        if text.is_empty() || text.starts_with('#') {
            i += 1;
            continue;
        }
        let line = i + 1;
        let command = parse_command(text).map_err(|e| format!("{line}: {e}"))?;
        i += 1;
        let mut input = Vec::new();
        loop {
            match lines.get(i).map(|l| l.trim_end()) {
                None | Some("") => return Err(format!("{line}: expected `----` after command")),
                Some("----") => break,
                Some(l) => input.push(l.to_string()),
            }
            i += 1;
        }
        i += 1;
        let start = i;
        while i < lines.len() && !lines[i].trim_end().is_empty() {
            i += 1;
        }
        blocks.push(Block {
            line,
            command,
            input,
            expected: start..i,
        });
    }
    Ok(blocks)
}

pub fn parse_command(text: &str) -> Result<Command, String> {
    let mut words = text.split_whitespace();
    let name = words.next().expect("line is not empty").to_string();
    let mut args = Vec::new();
    for word in words {
        let arg = match word.split_once('=') {
            None => Arg {
                key: word.to_string(),
                values: None,
            },
            Some((key, value)) => Arg {
                key: key.to_string(),
                values: Some(parse_list(value)?),
            },
        };
        args.push(arg);
    }
    Ok(Command {
        text: text.to_string(),
        name,
        args,
    })
}

/// `(1,2,3)` or `()` or a single value.
pub fn parse_list(value: &str) -> Result<Vec<String>, String> {
    match value.strip_prefix('(') {
        None => Ok(vec![value.to_string()]),
        Some(inner) => {
            let inner = inner
                .strip_suffix(')')
                .ok_or_else(|| format!("unclosed list {value}"))?;
            Ok(inner
                .split(',')
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect())
        }
    }
}

impl Command {
    /// Bare words, in order.
    pub fn positional(&self) -> Vec<&str> {
        self.args
            .iter()
            .filter(|a| a.values.is_none())
            .map(|a| a.key.as_str())
            .collect()
    }

    pub fn ids(&self) -> Result<Vec<u64>, String> {
        self.positional().into_iter().map(parse_num).collect()
    }

    pub fn id(&self) -> Result<u64, String> {
        match self.ids()?.as_slice() {
            [id] => Ok(*id),
            _ => Err("expected exactly one node id".into()),
        }
    }

    pub fn values(&self, key: &str) -> Option<&[String]> {
        self.args
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.values.as_deref())
    }

    pub fn list(&self, key: &str) -> Result<Vec<u64>, String> {
        self.values(key)
            .unwrap_or_default()
            .iter()
            .map(|v| parse_num(v))
            .collect()
    }

    pub fn one(&self, key: &str) -> Result<Option<&str>, String> {
        match self.values(key) {
            None => Ok(None),
            Some([v]) => Ok(Some(v.as_str())),
            Some(_) => Err(format!("{key} takes one value")),
        }
    }

    pub fn num<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        self.one(key)?.map(parse_num).transpose()
    }

    /// A `key=value` the command cannot do without.
    pub fn need<T: std::str::FromStr>(&self, key: &str) -> Result<T, String> {
        self.num(key)?.ok_or_else(|| format!("missing {key}="))
    }

    pub fn flag(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.one(key)? {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("{key}={v} is not true or false")),
        }
    }

    /// Refuses keys the command does not know (a typo would otherwise pass silently).
    pub fn allow_keys(&self, allowed: &[&str]) -> Result<(), String> {
        match self
            .args
            .iter()
            .find(|a| a.values.is_some() && !allowed.contains(&a.key.as_str()))
        {
            Some(a) => Err(format!("unknown argument {}", a.key)),
            None => Ok(()),
        }
    }
}

pub fn parse_num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{s:?} is not a number"))
}

/// The file with every block's expected output replaced by its actual output.
fn splice(lines: &[&str], blocks: &[Block], outputs: &[String]) -> String {
    let mut out = String::new();
    let mut cursor = 0;
    for (block, actual) in blocks.iter().zip(outputs) {
        for l in &lines[cursor..block.expected.start] {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(actual);
        cursor = block.expected.end;
    }
    for l in &lines[cursor..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// A line diff (longest common subsequence), small inputs only.
fn diff(expected: &[&str], actual: &[&str]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            writeln!(out, "  {}", expected[i]).unwrap();
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            writeln!(out, "- {}", expected[i]).unwrap();
            i += 1;
        } else {
            writeln!(out, "+ {}", actual[j]).unwrap();
            j += 1;
        }
    }
    out
}

// ----- the environment -----------------------------------------------------------------------
