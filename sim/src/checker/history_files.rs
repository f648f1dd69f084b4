//! Recorded histories from the Porcupine test suite (`/work/shared/data/porcupine`), read into
//! [`Operation`]s with the models that check them.
//!
//! This module owns two file formats and their models:
//! - [`Format::JepsenRegister`]: Jepsen's log of a single compare-and-set register on etcd
//!   (`jepsen/etcd_NNN.log`), checked with [`RegisterModel`];
//! - [`Format::PorcupineKv`]: EDN lines of a string-valued map with get/put/append
//!   (`kv/cNN-{ok,bad}.txt`), checked per key with [`KvModel`].
//!
//! It does not decide linearizability itself ([`super::linearizability`] does) nor print
//! reports. Operation times are the 1-based line numbers of the invocation and completion, so a
//! [`Counterexample`](super::linearizability::Counterexample) can be shown as lines of the file.
//!
//! Completions, in both formats: `:ok` carries the result; `:fail` means the operation
//! certainly did not take effect (but see [`RegisterModel`] for a failed compare-and-set);
//! `:info`, or no completion at all, means the outcome is unknown. Reads whose outcome is
//! unknown are dropped: they neither constrain nor change anything.

use std::collections::BTreeMap;
use std::path::Path;

use super::linearizability::{Counterexample, Limits, Model, Operation, Verdict, check_operations};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    JepsenRegister,
    PorcupineKv,
}

/// Reads and checks one history file with the default [`Limits`].
pub fn check_file(format: Format, path: &Path) -> Result<Verdict, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_text(format, &text, Limits::default()).map_err(|e| format!("{}: {e}", path.display()))
}

/// The lines of `path` that the operations of `cx.window` span (from the earliest call to the
/// latest return), numbered from 1: what a person reads to see the violation.
pub fn window_lines(
    format: Format,
    path: &Path,
    cx: &Counterexample,
) -> Result<Vec<(u64, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Operation times are line numbers, so the window's span is a range of lines.
    let spans: Vec<(u64, u64)> = match format {
        Format::JepsenRegister => spans(&parse_jepsen_register(&text)?, &cx.window),
        Format::PorcupineKv => spans(&parse_porcupine_kv(&text)?, &cx.window),
    };
    let from = spans.iter().map(|s| s.0).min().unwrap_or(1);
    let to = spans.iter().map(|s| s.1).max().unwrap_or(from);
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l))
        .filter(|(n, _)| (from..=to).contains(n))
        .map(|(n, l)| (n, l.to_string()))
        .collect())
}

fn spans<I, O>(ops: &[Operation<I, O>], window: &[usize]) -> Vec<(u64, u64)> {
    window
        .iter()
        .map(|&i| {
            let op = &ops[i];
            // An unknown outcome has no return line: its call is what shows.
            let ret = if op.output.is_some() { op.ret } else { op.call };
            (op.call, ret)
        })
        .collect()
}

/// Checks a history given as the text of a file.
pub fn check_text(format: Format, text: &str, limits: Limits) -> Result<Verdict, String> {
    Ok(match format {
        Format::JepsenRegister => {
            check_operations::<RegisterModel>(&parse_jepsen_register(text)?, limits)
        }
        Format::PorcupineKv => check_operations::<KvModel>(&parse_porcupine_kv(text)?, limits),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    Read,
    Write(u64),
    Cas { from: u64, to: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    /// The value read; `None` for an absent register.
    Read(Option<u64>),
    Write,
    /// Whether the compare matched and the new value was written.
    Cas {
        ok: bool,
    },
}

/// One compare-and-set register, absent at first.
///
/// A compare-and-set that completed `:fail` is taken as "the compare did not match", so it must
/// linearize where the register holds something other than `from` (Porcupine reads the logs the
/// same way); dropping it instead, as "did not happen", accepts more histories.
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = Option<u64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init() -> Option<u64> {
        None
    }

    fn step(
        state: &Option<u64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<Option<u64>> {
        match (input, output) {
            (RegisterInput::Read, None) => Some(*state),
            (RegisterInput::Read, Some(RegisterOutput::Read(value))) => {
                (value == state).then_some(*state)
            }
            (RegisterInput::Write(value), None | Some(RegisterOutput::Write)) => Some(Some(*value)),
            (RegisterInput::Cas { from, to }, None | Some(RegisterOutput::Cas { .. })) => {
                let matched = *state == Some(*from);
                if let Some(RegisterOutput::Cas { ok }) = output
                    && *ok != matched
                {
                    return None;
                }
                Some(if matched { Some(*to) } else { *state })
            }
            (input, Some(output)) => panic!("{input:?} cannot answer {output:?}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    Get,
    Put(String),
    Append(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvInput {
    pub key: String,
    pub op: KvOp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    /// What a get returned.
    Value(String),
    /// A put or append finished.
    Done,
}

/// A map from string keys to string values, each key starting as the empty string. Keys are
/// independent, so the history is checked one key at a time.
pub struct KvModel;

impl Model for KvModel {
    /// The value of the partition's one key.
    type State = String;
    type Input = KvInput;
    type Output = KvOutput;

    fn init() -> String {
        String::new()
    }

    fn step(state: &String, input: &KvInput, output: Option<&KvOutput>) -> Option<String> {
        match (&input.op, output) {
            (KvOp::Get, None) => Some(state.clone()),
            (KvOp::Get, Some(KvOutput::Value(value))) => (value == state).then(|| state.clone()),
            (KvOp::Put(value), None | Some(KvOutput::Done)) => Some(value.clone()),
            (KvOp::Append(value), None | Some(KvOutput::Done)) => Some(format!("{state}{value}")),
            (op, Some(output)) => panic!("{op:?} cannot answer {output:?}"),
        }
    }

    /// One partition per key, in key order.
    fn partition(ops: &[Operation<KvInput, KvOutput>]) -> Vec<Vec<usize>> {
        let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            by_key.entry(&op.input.key).or_default().push(i);
        }
        by_key.into_values().collect()
    }
}

/// How an operation ended, as a history file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Completion {
    Ok,
    Fail,
    Info,
}

/// Builds operations from invocations and completions matched by process.
struct Builder<I, O> {
    ops: Vec<Operation<I, O>>,
    /// Operations known not to have taken effect, or whose outcome cannot matter.
    dropped: Vec<bool>,
    /// Process -> its invoked, not yet completed operation.
    open: BTreeMap<u64, usize>,
}

impl<I, O> Builder<I, O> {
    fn new() -> Self {
        Builder {
            ops: Vec::new(),
            dropped: Vec::new(),
            open: BTreeMap::new(),
        }
    }

    fn invoke(&mut self, process: u64, input: I, line: u64) -> Result<(), String> {
        if let Some(&i) = self.open.get(&process) {
            return Err(format!(
                "process {process} invokes again before completing line {}",
                self.ops[i].call
            ));
        }
        self.open.insert(process, self.ops.len());
        self.ops.push(Operation {
            client: process,
            input,
            call: line,
            output: None,
            ret: u64::MAX,
        });
        self.dropped.push(false);
        Ok(())
    }

    /// Closes `process`'s open operation at `line`; returns its index.
    fn complete(&mut self, process: u64, line: u64) -> Result<usize, String> {
        let i = self
            .open
            .remove(&process)
            .ok_or_else(|| format!("process {process} completes an operation it never invoked"))?;
        self.ops[i].ret = line;
        Ok(i)
    }

    /// The history in invocation order; operations never completed keep an unknown outcome.
    fn finish(self) -> Vec<Operation<I, O>> {
        self.ops
            .into_iter()
            .zip(self.dropped)
            .filter_map(|(op, dropped)| (!dropped).then_some(op))
            .collect()
    }
}

fn parse_completion(word: &str) -> Option<Completion> {
    match word {
        ":ok" => Some(Completion::Ok),
        ":fail" => Some(Completion::Fail),
        ":info" => Some(Completion::Info),
        _ => None,
    }
}

/// Reads a Jepsen etcd register log: lines `INFO  jepsen.util - PROCESS TYPE F VALUE`, fields
/// separated by tabs (or, in a few logs, spaces), e.g. `INFO  jepsen.util - 3 :ok :cas [1 4]`.
pub fn parse_jepsen_register(
    text: &str,
) -> Result<Vec<Operation<RegisterInput, RegisterOutput>>, String> {
    let mut history = Builder::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        parse_jepsen_line(&mut history, line, line_no)
            .map_err(|e| format!("line {line_no}: {e}"))?;
    }
    Ok(history.finish())
}

fn parse_jepsen_line(
    history: &mut Builder<RegisterInput, RegisterOutput>,
    line: &str,
    line_no: u64,
) -> Result<(), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [_level, "jepsen.util", "-", process, kind, f, value @ ..] = words.as_slice() else {
        return Err(format!("not a jepsen.util operation: {line:?}"));
    };
    let process: u64 = process
        .parse()
        .map_err(|_| format!("bad process {process:?}"))?;
    let value = value.join(" ");
    if *kind == ":invoke" {
        let input = match *f {
            ":read" => RegisterInput::Read,
            ":write" => RegisterInput::Write(parse_number(&value)?),
            ":cas" => {
                let (from, to) = parse_pair(&value)?;
                RegisterInput::Cas { from, to }
            }
            _ => return Err(format!("unknown operation {f:?}")),
        };
        return history.invoke(process, input, line_no);
    }
    let completion = parse_completion(kind).ok_or_else(|| format!("unknown type {kind:?}"))?;
    let i = history.complete(process, line_no)?;
    let input = history.ops[i].input;
    let f_matches = matches!(
        (*f, input),
        (":read", RegisterInput::Read)
            | (":write", RegisterInput::Write(_))
            | (":cas", RegisterInput::Cas { .. })
    );
    if !f_matches {
        return Err(format!("{f} completes {input:?}"));
    }
    let output = match (completion, input) {
        // A timed-out read: it constrains nothing.
        (Completion::Fail | Completion::Info, RegisterInput::Read) => {
            history.dropped[i] = true;
            return Ok(());
        }
        (Completion::Info, _) => None,
        (Completion::Fail, RegisterInput::Write(_)) => {
            history.dropped[i] = true;
            return Ok(());
        }
        (Completion::Ok, RegisterInput::Read) => {
            let read = if value == "nil" {
                None
            } else {
                Some(parse_number(&value)?)
            };
            Some(RegisterOutput::Read(read))
        }
        (Completion::Ok, RegisterInput::Write(v)) => {
            if parse_number(&value)? != v {
                return Err(format!("completion {value:?} differs from {input:?}"));
            }
            Some(RegisterOutput::Write)
        }
        (Completion::Ok | Completion::Fail, RegisterInput::Cas { from, to }) => {
            if parse_pair(&value)? != (from, to) {
                return Err(format!("completion {value:?} differs from {input:?}"));
            }
            Some(RegisterOutput::Cas {
                ok: completion == Completion::Ok,
            })
        }
    };
    history.ops[i].output = output;
    Ok(())
}

fn parse_number(word: &str) -> Result<u64, String> {
    word.parse().map_err(|_| format!("bad value {word:?}"))
}

/// `[FROM TO]`.
fn parse_pair(value: &str) -> Result<(u64, u64), String> {
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| format!("bad pair {value:?}"))?;
    match inner.split_whitespace().collect::<Vec<_>>().as_slice() {
        [from, to] => Ok((parse_number(from)?, parse_number(to)?)),
        _ => Err(format!("bad pair {value:?}")),
    }
}

/// Reads Porcupine's key-value histories: one EDN map a line, e.g.
/// `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}`.
pub fn parse_porcupine_kv(text: &str) -> Result<Vec<Operation<KvInput, KvOutput>>, String> {
    let mut history = Builder::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        parse_kv_line(&mut history, line, line_no).map_err(|e| format!("line {line_no}: {e}"))?;
    }
    Ok(history.finish())
}

fn parse_kv_line(
    history: &mut Builder<KvInput, KvOutput>,
    line: &str,
    line_no: u64,
) -> Result<(), String> {
    let map = parse_edn_map(line)?;
    let field = |name: &str| map.get(name).ok_or_else(|| format!("no :{name}"));
    let process = match field("process")? {
        Edn::Int(p) => u64::try_from(*p).map_err(|_| format!("bad process {p}"))?,
        other => return Err(format!("bad process {other:?}")),
    };
    let Edn::Keyword(kind) = field("type")? else {
        return Err("bad :type".to_string());
    };
    let Edn::Keyword(f) = field("f")? else {
        return Err("bad :f".to_string());
    };
    let value = match field("value")? {
        Edn::Str(s) => Some(s.clone()),
        Edn::Nil => None,
        other => return Err(format!("bad value {other:?}")),
    };
    if kind == "invoke" {
        let Edn::Str(key) = field("key")? else {
            return Err("bad :key".to_string());
        };
        let string_value = || value.clone().ok_or_else(|| format!(":{f} of nil"));
        let op = match f.as_str() {
            "get" => KvOp::Get,
            "put" => KvOp::Put(string_value()?),
            "append" => KvOp::Append(string_value()?),
            _ => return Err(format!("unknown operation :{f}")),
        };
        let key = key.clone();
        return history.invoke(process, KvInput { key, op }, line_no);
    }
    let completion =
        parse_completion(&format!(":{kind}")).ok_or_else(|| format!("unknown type :{kind}"))?;
    let i = history.complete(process, line_no)?;
    let op = &history.ops[i].input.op;
    let f_matches = matches!(
        (f.as_str(), op),
        ("get", KvOp::Get) | ("put", KvOp::Put(_)) | ("append", KvOp::Append(_))
    );
    if !f_matches {
        return Err(format!(":{f} completes {op:?}"));
    }
    let output = match (completion, op) {
        (Completion::Fail, _) | (Completion::Info, KvOp::Get) => {
            history.dropped[i] = true;
            return Ok(());
        }
        (Completion::Info, _) => None,
        // Keys start as the empty string, so reading nil (absent) is reading "".
        (Completion::Ok, KvOp::Get) => Some(KvOutput::Value(value.unwrap_or_default())),
        (Completion::Ok, _) => Some(KvOutput::Done),
    };
    history.ops[i].output = output;
    Ok(())
}

/// The EDN values these files use.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Edn {
    Nil,
    Int(i64),
    Str(String),
    /// Without its leading colon.
    Keyword(String),
}

/// Parses one flat EDN map with keyword keys; commas are whitespace, as in EDN.
fn parse_edn_map(line: &str) -> Result<BTreeMap<String, Edn>, String> {
    let inner = line
        .trim()
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .ok_or_else(|| format!("not an EDN map: {line:?}"))?;
    let mut chars = inner.chars().peekable();
    let mut items = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let Some(&first) = chars.peek() else {
            break;
        };
        let item = if first == '"' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated string".to_string()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some('r') => s.push('\r'),
                        Some(c @ ('"' | '\\')) => s.push(c),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some(c) => s.push(c),
                }
            }
            Edn::Str(s)
        } else {
            let mut word = String::new();
            while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != ',' && *c != '"') {
                word.push(c);
            }
            if let Some(keyword) = word.strip_prefix(':') {
                Edn::Keyword(keyword.to_string())
            } else if word == "nil" {
                Edn::Nil
            } else {
                Edn::Int(
                    word.parse()
                        .map_err(|_| format!("bad EDN value {word:?}"))?,
                )
            }
        };
        items.push(item);
    }
    if items.len() % 2 != 0 {
        return Err("EDN map with an odd number of forms".to_string());
    }
    let mut map = BTreeMap::new();
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        let Edn::Keyword(key) = key else {
            return Err(format!("EDN map key {key:?} is not a keyword"));
        };
        if map.insert(key.clone(), value).is_some() {
            return Err(format!("EDN map repeats :{key}"));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jepsen(lines: &[&str]) -> String {
        lines
            .iter()
            .map(|l| format!("INFO  jepsen.util - {}\n", l.replace(' ', "\t")))
            .collect()
    }

    fn check(format: Format, text: &str) -> Verdict {
        check_text(format, text, Limits::default()).expect("parses")
    }

    #[test]
    fn jepsen_lines_become_operations() {
        let text = jepsen(&[
            "0 :invoke :cas [1 4]",
            "1 :invoke :read nil",
            "1 :ok :read 3",
        ]) + "INFO  jepsen.util - 0 :ok :cas [1 4]\n";
        let ops = parse_jepsen_register(&text).expect("parses");
        assert_eq!(
            ops,
            vec![
                Operation {
                    client: 0,
                    input: RegisterInput::Cas { from: 1, to: 4 },
                    call: 1,
                    output: Some(RegisterOutput::Cas { ok: true }),
                    ret: 4,
                },
                Operation {
                    client: 1,
                    input: RegisterInput::Read,
                    call: 2,
                    output: Some(RegisterOutput::Read(Some(3))),
                    ret: 3,
                },
            ]
        );
    }

    #[test]
    fn jepsen_timeouts_and_missing_completions() {
        let text = jepsen(&[
            "0 :invoke :write 1",
            "1 :invoke :read nil",
            "2 :invoke :cas [1 2]",
            "0 :info :write :timed-out",
            "1 :fail :read :timed-out",
            "5 :invoke :write 3",
        ]);
        let ops = parse_jepsen_register(&text).expect("parses");
        let summary: Vec<_> = ops.iter().map(|op| (op.client, op.output)).collect();
        assert_eq!(summary, vec![(0, None), (2, None), (5, None)]);
    }

    #[test]
    fn jepsen_failed_cas_needs_a_mismatch() {
        // The register holds 1 throughout, so a compare of 1 cannot fail.
        let text = jepsen(&[
            "0 :invoke :write 1",
            "0 :ok :write 1",
            "0 :invoke :cas [1 2]",
            "0 :fail :cas [1 2]",
        ]);
        assert!(matches!(
            check(Format::JepsenRegister, &text),
            Verdict::NotLinearizable(_)
        ));
        let text = jepsen(&["0 :invoke :cas [1 2]", "0 :fail :cas [1 2]"]);
        assert_eq!(check(Format::JepsenRegister, &text), Verdict::Linearizable);
    }

    #[test]
    fn jepsen_unknown_cas_may_take_effect_late() {
        let text = jepsen(&[
            "0 :invoke :write 1",
            "0 :ok :write 1",
            "1 :invoke :cas [1 2]",
            "1 :info :cas :timed-out",
            "0 :invoke :read nil",
            "0 :ok :read 1",
            "0 :invoke :read nil",
            "0 :ok :read 2",
        ]);
        assert_eq!(check(Format::JepsenRegister, &text), Verdict::Linearizable);
    }

    #[test]
    fn jepsen_stale_read() {
        let text = jepsen(&[
            "0 :invoke :write 1",
            "0 :ok :write 1",
            "1 :invoke :read nil",
            "1 :ok :read nil",
        ]);
        let Verdict::NotLinearizable(c) = check(Format::JepsenRegister, &text) else {
            panic!("stale read accepted");
        };
        assert_eq!((c.prefix, c.blocked), (vec![0], 1));
    }

    #[test]
    fn jepsen_rejects_malformed_lines() {
        for bad in [
            jepsen(&["0 :ok :read 1"]),
            jepsen(&["0 :invoke :read nil", "0 :invoke :read nil"]),
            jepsen(&["0 :invoke :write 1", "0 :ok :write 2"]),
            jepsen(&["0 :invoke :cas [1]"]),
            jepsen(&["0 :invoke :read nil", "0 :ok :write 1"]),
            "WARN something else\n".to_string(),
        ] {
            assert!(parse_jepsen_register(&bad).is_err(), "{bad:?}");
        }
    }

    const KV_OK: &str = r#"{:process 0, :type :invoke, :f :append, :key "a", :value "x"}
{:process 1, :type :invoke, :f :get, :key "a", :value nil}
{:process 0, :type :ok, :f :append, :key "a", :value "x"}
{:process 1, :type :ok, :f :get, :key "a", :value ""}
{:process 0, :type :invoke, :f :put, :key "b", :value "y"}
{:process 0, :type :ok, :f :put, :key "b", :value "y"}
{:process 0, :type :invoke, :f :append, :key "a", :value "z"}
{:process 0, :type :ok, :f :append, :key "a", :value "z"}
{:process 1, :type :invoke, :f :get, :key "a", :value nil}
{:process 1, :type :ok, :f :get, :key "a", :value "xz"}
"#;

    #[test]
    fn kv_appends_concatenate() {
        assert_eq!(check(Format::PorcupineKv, KV_OK), Verdict::Linearizable);
    }

    #[test]
    fn kv_failure_names_its_key_partition() {
        let bad = KV_OK.replace(r#":value "xz""#, r#":value "zx""#);
        let Verdict::NotLinearizable(c) = check(Format::PorcupineKv, &bad) else {
            panic!("wrong append order accepted");
        };
        // Partitions are in key order: "a" first.
        assert_eq!(c.partition, 0);
        assert_eq!(c.blocked, 4);
    }

    #[test]
    fn kv_parses_edn_escapes_and_rejects_garbage() {
        let line = r#"{:process 3, :type :invoke, :f :put, :key "k\"1", :value "a\\b"}"#;
        let ops = parse_porcupine_kv(line).expect("parses");
        assert_eq!(
            ops[0].input,
            KvInput {
                key: "k\"1".to_string(),
                op: KvOp::Put("a\\b".to_string()),
            }
        );
        for bad in [
            "{:process 0, :type :invoke}",
            "{:process 0 :type}",
            r#"{:process 0, :type :invoke, :f :put, :key "k", :value "unterminated}"#,
            r#"{:process 0, :type :ok, :f :get, :key "k", :value ""}"#,
            "not a map",
        ] {
            assert!(parse_porcupine_kv(bad).is_err(), "{bad:?}");
        }
    }
}
