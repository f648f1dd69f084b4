//! Data-driven scripts for the MVCC store (`tests/testdata/mvcc/*.txt`): the etcd behaviours
//! that read best as a transcript — range options and their quirks, transactions, compaction
//! and the history watchers read. The runner is `tests/datadriven`.
//!
//! # Commands
//!
//! - `put <key> <value> [lease=<id>] [prev-kv] [ignore-value] [ignore-lease]` (leases 7 and 8
//!   exist; `_` is the empty value)
//! - `get <key> [<range-end>] [limit=] [rev=] [order=ascend|descend]
//!   [by=key|version|create|mod|value] [keys-only] [count-only] [min-mod=] [max-mod=]
//!   [min-create=] [max-create=]`
//! - `del <key> [<range-end>] [prev-kv]`
//! - `txn`, with input lines `if <target>(<key>[,<end>]) <=|>|<|!=> <operand>`, then
//!   `then <op>` / `else <op>` lines, each op a `put`, `get` or `del` line as above.
//! - `compact <rev>`, `hash [rev=]`, `history <from> [to=] [max=]`
//!
//! `\0` in a key or range end is the zero byte. A key-value prints as
//! `key=value c=<create> m=<mod> v=<version>` (plus `lease=` when set).

mod datadriven;

use bytes::Bytes;
use datadriven::Command;
use oxcd::mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, Event, EventKind, History, KeyValue,
    KvStore, MemBackend, PutRequest, RangeRequest, RequestOp, ResponseOp, SortOrder, SortTarget,
    TXN_OPS_MAX_DEFAULT, TxnRequest,
};
use std::fmt::Write as _;

#[test]
fn mvcc_scripts() {
    datadriven::run_dir("mvcc", || Env {
        store: KvStore::open(MemBackend::new()).expect("empty store"),
    });
}

struct Env {
    store: KvStore<MemBackend>,
}

fn lease_exists(id: i64) -> bool {
    id == 7 || id == 8
}

fn bytes(s: &str) -> Bytes {
    match s {
        "_" => Bytes::new(),
        _ => Bytes::from(s.replace("\\0", "\0")),
    }
}

fn show(b: &[u8]) -> String {
    if b.is_empty() {
        return "_".into();
    }
    String::from_utf8_lossy(b).replace('\0', "\\0")
}

fn fmt_kv(kv: &KeyValue) -> String {
    let mut s = format!(
        "{}={} c={} m={} v={}",
        show(&kv.key),
        show(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version
    );
    if kv.lease != 0 {
        write!(s, " lease={}", kv.lease).unwrap();
    }
    s
}

fn fmt_event(e: &Event) -> String {
    let kind = match e.kind {
        EventKind::Put => "PUT",
        EventKind::Delete => "DELETE",
    };
    let mut s = format!("{kind} {}", fmt_kv(&e.kv));
    if let Some(p) = &e.prev_kv {
        write!(s, " prev=({})", fmt_kv(p)).unwrap();
    }
    s
}

fn num(cmd: &Command, key: &str) -> Result<i64, String> {
    Ok(cmd.num(key)?.unwrap_or(0))
}

fn has(cmd: &Command, word: &str) -> bool {
    cmd.positional().contains(&word)
}

/// Positional words that are not flags: key and range end.
fn key_and_end(cmd: &Command, flags: &[&str]) -> Result<(Bytes, Bytes), String> {
    let words: Vec<&str> = cmd
        .positional()
        .into_iter()
        .filter(|w| !flags.contains(w))
        .collect();
    match words.as_slice() {
        [k] => Ok((bytes(k), Bytes::new())),
        [k, e] => Ok((bytes(k), bytes(e))),
        _ => Err("expected a key and an optional range end".into()),
    }
}

fn put_request(cmd: &Command) -> Result<PutRequest, String> {
    cmd.allow_keys(&["lease"])?;
    let flags = ["prev-kv", "ignore-value", "ignore-lease"];
    let (key, value) = key_and_end(cmd, &flags)?;
    Ok(PutRequest {
        key,
        value,
        lease: num(cmd, "lease")?,
        prev_kv: has(cmd, "prev-kv"),
        ignore_value: has(cmd, "ignore-value"),
        ignore_lease: has(cmd, "ignore-lease"),
    })
}

fn get_request(cmd: &Command) -> Result<RangeRequest, String> {
    cmd.allow_keys(&[
        "limit",
        "rev",
        "order",
        "by",
        "min-mod",
        "max-mod",
        "min-create",
        "max-create",
    ])?;
    let (key, range_end) = key_and_end(cmd, &["keys-only", "count-only"])?;
    let sort_order = match cmd.one("order")? {
        None => SortOrder::None,
        Some("ascend") => SortOrder::Ascend,
        Some("descend") => SortOrder::Descend,
        Some(o) => return Err(format!("unknown order {o}")),
    };
    let sort_target = match cmd.one("by")? {
        None | Some("key") => SortTarget::Key,
        Some("version") => SortTarget::Version,
        Some("create") => SortTarget::Create,
        Some("mod") => SortTarget::Mod,
        Some("value") => SortTarget::Value,
        Some(t) => return Err(format!("unknown sort target {t}")),
    };
    Ok(RangeRequest {
        key,
        range_end,
        limit: num(cmd, "limit")?,
        revision: num(cmd, "rev")?,
        sort_order,
        sort_target,
        serializable: false,
        keys_only: has(cmd, "keys-only"),
        count_only: has(cmd, "count-only"),
        min_mod_revision: num(cmd, "min-mod")?,
        max_mod_revision: num(cmd, "max-mod")?,
        min_create_revision: num(cmd, "min-create")?,
        max_create_revision: num(cmd, "max-create")?,
    })
}

fn del_request(cmd: &Command) -> Result<DeleteRangeRequest, String> {
    cmd.allow_keys(&[])?;
    let (key, range_end) = key_and_end(cmd, &["prev-kv"])?;
    Ok(DeleteRangeRequest {
        key,
        range_end,
        prev_kv: has(cmd, "prev-kv"),
    })
}

fn request_op(line: &str) -> Result<RequestOp, String> {
    let cmd = datadriven::parse_command(line)?;
    match cmd.name.as_str() {
        "put" => Ok(RequestOp::Put(put_request(&cmd)?)),
        "get" => Ok(RequestOp::Range(get_request(&cmd)?)),
        "del" => Ok(RequestOp::DeleteRange(del_request(&cmd)?)),
        other => Err(format!("unknown txn op {other}")),
    }
}

/// `version(a) = 1`, `value(a,c) != x`, ...
fn compare(text: &str) -> Result<Compare, String> {
    let (target, rest) = text.split_once('(').ok_or("expected target(key)")?;
    let (keys, rest) = rest.split_once(')').ok_or("expected )")?;
    let (key, range_end) = match keys.split_once(',') {
        Some((k, e)) => (bytes(k), bytes(e)),
        None => (bytes(keys), Bytes::new()),
    };
    let mut words = rest.split_whitespace();
    let result = match words.next() {
        Some("=") => CompareResult::Equal,
        Some("!=") => CompareResult::NotEqual,
        Some(">") => CompareResult::Greater,
        Some("<") => CompareResult::Less,
        other => return Err(format!("unknown comparison {other:?}")),
    };
    let operand = words.next().ok_or("expected an operand")?;
    let n = || operand.parse::<i64>().map_err(|e| e.to_string());
    let target = match target {
        "version" => CompareTarget::Version(n()?),
        "create" => CompareTarget::Create(n()?),
        "mod" => CompareTarget::Mod(n()?),
        "lease" => CompareTarget::Lease(n()?),
        "value" => CompareTarget::Value(bytes(operand)),
        other => return Err(format!("unknown target {other}")),
    };
    Ok(Compare {
        result,
        target,
        key,
        range_end,
    })
}

fn fmt_response(out: &mut String, indent: &str, r: &ResponseOp) {
    match r {
        ResponseOp::Range(g) => {
            writeln!(out, "{indent}get: count={} more={}", g.count, g.more).unwrap();
            for kv in &g.kvs {
                writeln!(out, "{indent}  {}", fmt_kv(kv)).unwrap();
            }
        }
        ResponseOp::Put(p) => match &p.prev_kv {
            Some(kv) => writeln!(out, "{indent}put: prev=({})", fmt_kv(kv)).unwrap(),
            None => writeln!(out, "{indent}put").unwrap(),
        },
        ResponseOp::DeleteRange(d) => {
            writeln!(out, "{indent}del: deleted={}", d.deleted).unwrap();
            for kv in &d.prev_kvs {
                writeln!(out, "{indent}  prev=({})", fmt_kv(kv)).unwrap();
            }
        }
        ResponseOp::Txn(t) => {
            writeln!(out, "{indent}txn: succeeded={}", t.succeeded).unwrap();
            for r in &t.responses {
                fmt_response(out, &format!("{indent}  "), r);
            }
        }
    }
}

impl datadriven::Env for Env {
    fn run(&mut self, cmd: &Command, input: &[String]) -> Result<String, String> {
        if !input.is_empty() && cmd.name != "txn" {
            return Err("this command takes no input lines".into());
        }
        let mut out = String::new();
        let result: Result<(), oxcd::mvcc::Error> = (|| {
            match cmd.name.as_str() {
                "put" => {
                    let w = self.store.put(&put_request(cmd).unwrap(), &lease_exists)?;
                    writeln!(out, "rev={}", w.revision).unwrap();
                    fmt_response(&mut out, "", &ResponseOp::Put(w.response));
                }
                "get" => {
                    let r = self.store.range(&get_request(cmd).unwrap())?;
                    fmt_response(&mut out, "", &ResponseOp::Range(r));
                }
                "del" => {
                    let w = self.store.delete_range(&del_request(cmd).unwrap())?;
                    writeln!(out, "rev={}", w.revision).unwrap();
                    fmt_response(&mut out, "", &ResponseOp::DeleteRange(w.response));
                }
                "txn" => {
                    let mut t = TxnRequest::default();
                    for line in input {
                        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
                        match word {
                            "if" => t.compare.push(compare(rest).unwrap()),
                            "then" => t.success.push(request_op(rest).unwrap()),
                            "else" => t.failure.push(request_op(rest).unwrap()),
                            other => panic!("txn input starts with if, then or else: {other}"),
                        }
                    }
                    let w = self.store.txn(&t, TXN_OPS_MAX_DEFAULT, &lease_exists)?;
                    writeln!(out, "rev={}", w.revision).unwrap();
                    fmt_response(&mut out, "", &ResponseOp::Txn(w.response));
                    for e in &w.events {
                        writeln!(out, "event {}", fmt_event(e)).unwrap();
                    }
                }
                "compact" => {
                    let rev = cmd.ids().unwrap()[0] as i64;
                    self.store.compact(rev)?;
                    writeln!(out, "ok").unwrap();
                }
                "hash" => {
                    let h = self.store.hash_kv(num(cmd, "rev").unwrap())?;
                    writeln!(
                        out,
                        "hash={:08x} rev={} compact={}",
                        h.hash, h.revision, h.compact_revision
                    )
                    .unwrap();
                }
                "history" => {
                    let from = cmd.ids().unwrap()[0] as i64;
                    let to = cmd.num::<i64>("to").unwrap().unwrap_or(i64::MAX);
                    let max = cmd.num::<usize>("max").unwrap().unwrap_or(1000);
                    let (events, through) = self.store.events(from, to, max)?;
                    for e in &events {
                        writeln!(out, "{}", fmt_event(e)).unwrap();
                    }
                    writeln!(out, "through={through}").unwrap();
                }
                other => panic!("unknown command {other}"),
            }
            Ok(())
        })();
        if let Err(e) = result {
            writeln!(out, "error: {e}").unwrap();
        }
        Ok(out)
    }
}
