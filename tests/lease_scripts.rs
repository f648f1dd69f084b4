//! Data-driven tests for the lessor: every `tests/testdata/lease/*.txt` script drives the
//! lessors of a few members through grants, keep-alives, checkpoints, leader changes and
//! expiries, and pins what they answer.
//!
//! What it does not do: no clock and no randomness. Time is the `now=` of each command, on
//! each member's own clock; nothing happens between commands.
//!
//! # Script format
//!
//! The format of `tests/raft_scripts.rs`: blocks separated by blank lines, `#` comments
//! between blocks, each block a command line, `----`, and the expected output. A mismatch fails
//! with a diff naming the file and line; with `OXCD_REWRITE=1` the files are rewritten with
//! the actual output instead (review the diff before committing).
//!
//! # Commands
//!
//! Members are `m1`, `m2`, ... A `now=` takes one time for every member, or one per member
//! (`now=(1000,1010,1020)`).
//!
//! - `lessors <n> [election=1000] [heartbeat=100] [checkpoint-interval=<ms>]
//!   [checkpoint-delay=<ms>] [revoke-retry=<ms>] [batch-max=<n>]`: `n` fresh lessors with
//!   `LessorConfig::new(election, heartbeat)` and the given overrides. The grace for `promote`
//!   defaults to the election timeout.
//! - Replicated operations, applied on every member (as the apply layer would, in log order):
//!   `grant id=<id> ttl=<s> now=..`, `revoke id=<id>`, `checkpoint now=.. (<id>:<remaining_ms>,..)`,
//!   `attach id=<id> key=<k>`, `detach id=<id> key=<k>`. Each prints its result once when
//!   every member agrees (they must), else per member.
//! - `promote <m> now=<ms> [grace=<ms>]` (prints the expiries), `demote <m>`.
//! - Leader side: `renew <m> id=<id> now=<ms>`, `ttl <m> id=<id> now=<ms> [keys]`,
//!   `poll-timeout <m>`, `expired <m> now=<ms>` and `checkpoints <m> now=<ms>`. The last two
//!   queue what they return as proposals: a revoke per expired lease, one checkpoint batch.
//! - `commit now=..`: applies every queued proposal on every member, in order. `drop`: the
//!   queued proposals are lost (their leader failed before they committed).
//! - `status [<m>..] [now=<ms>]`, `leases <m>`: a member's leases (with the expiry when
//!   primary); with `now=`, also how long until each expires.
//! - `restart <m> now=..`: the member comes back with a fresh lessor (its monotonic clock may
//!   restart too) and re-applies every replicated operation so far at that time.
//! - `ids member=<id> start=<ms> n=<count>`: the IDs an `IdGen` picks.

use bytes::Bytes;
use oxcd::lease::{IdGen, LeaseId, Lessor, LessorConfig};
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[test]
fn lease_scripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/lease");
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
        .filter_map(|f| run_file(f, rewrite).err())
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
fn run_file(path: &Path, rewrite: bool) -> Result<(), String> {
    let name = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let lines: Vec<&str> = text.lines().collect();
    let blocks = parse_script(&lines).map_err(|e| format!("{name}:{e}"))?;
    let mut env = Env::default();
    let mut outputs = Vec::with_capacity(blocks.len());
    let mut report = Vec::new();
    for block in &blocks {
        let actual = match env.run(&block.command) {
            Ok(actual) => actual,
            Err(e) => {
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

// ----- scripts (the shape of tests/raft_scripts.rs) ------------------------------------------

struct Block {
    /// 1-based line of the command.
    line: usize,
    command: Command,
    /// The expected output, as indexes into the file's lines.
    expected: Range<usize>,
}

struct Command {
    text: String,
    name: String,
    args: Vec<Arg>,
}

/// `key=value`, `key=(a,b)`, or a bare word (a key with no values).
struct Arg {
    key: String,
    values: Option<Vec<String>>,
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
        match lines.get(i).map(|l| l.trim_end()) {
            Some("----") => {}
            _ => return Err(format!("{line}: expected `----` after command")),
        }
        i += 1;
        let start = i;
        while i < lines.len() && !lines[i].trim_end().is_empty() {
            i += 1;
        }
        blocks.push(Block {
            line,
            command,
            expected: start..i,
        });
    }
    Ok(blocks)
}

fn parse_command(text: &str) -> Result<Command, String> {
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
fn parse_list(value: &str) -> Result<Vec<String>, String> {
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
    fn positional(&self) -> Vec<&str> {
        self.args
            .iter()
            .filter(|a| a.values.is_none())
            .map(|a| a.key.as_str())
            .collect()
    }

    fn values(&self, key: &str) -> Option<&[String]> {
        self.args
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.values.as_deref())
    }

    fn one(&self, key: &str) -> Result<Option<&str>, String> {
        match self.values(key) {
            None => Ok(None),
            Some([v]) => Ok(Some(v.as_str())),
            Some(_) => Err(format!("{key} takes one value")),
        }
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        self.one(key)?.map(parse_num).transpose()
    }

    fn need<T: std::str::FromStr>(&self, key: &str) -> Result<T, String> {
        self.num(key)?.ok_or_else(|| format!("missing {key}="))
    }

    /// Refuses keys the command does not know (a typo would otherwise pass silently).
    fn allow_keys(&self, allowed: &[&str]) -> Result<(), String> {
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

fn parse_num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
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

/// A replicated operation, as the apply layer hands it to every member.
#[derive(Clone, Debug)]
enum Op {
    Grant { id: LeaseId, ttl_s: i64 },
    Revoke { id: LeaseId },
    Checkpoint(Vec<(LeaseId, u64)>),
    Attach { id: LeaseId, key: Bytes },
    Detach { id: LeaseId, key: Bytes },
}

#[derive(Default)]
struct Env {
    config: Option<LessorConfig>,
    grace_ms: u64,
    members: Vec<Lessor>,
    /// Every replicated operation applied so far, for `restart`.
    log: Vec<Op>,
    /// Proposals from `expired` and `checkpoints`, not yet committed.
    proposed: Vec<Op>,
}

type Output = Result<String, String>;

impl Env {
    fn run(&mut self, cmd: &Command) -> Output {
        if cmd.name != "lessors" && cmd.name != "ids" && self.members.is_empty() {
            return Err("start with `lessors <n>`".into());
        }
        match cmd.name.as_str() {
            "lessors" => self.lessors(cmd),
            "ids" => {
                cmd.allow_keys(&["member", "start", "n"])?;
                let mut g = IdGen::new(cmd.need("member")?, cmd.need("start")?);
                let ids: Vec<String> = (0..cmd.need::<usize>("n")?)
                    .map(|_| format!("{:#018x}", g.next()))
                    .collect();
                Ok(format!("{}\n", ids.join(" ")))
            }
            "grant" => {
                cmd.allow_keys(&["id", "ttl", "now"])?;
                let op = Op::Grant {
                    id: cmd.need("id")?,
                    ttl_s: cmd.need("ttl")?,
                };
                self.apply_all(&[op], cmd, false)
            }
            "revoke" => {
                cmd.allow_keys(&["id", "now"])?;
                self.apply_all(
                    &[Op::Revoke {
                        id: cmd.need("id")?,
                    }],
                    cmd,
                    false,
                )
            }
            "checkpoint" => {
                cmd.allow_keys(&["now"])?;
                let batch = cmd
                    .positional()
                    .iter()
                    .map(|w| parse_list(w))
                    .collect::<Result<Vec<_>, _>>()?
                    .concat()
                    .iter()
                    .map(|pair| {
                        let (id, ms) = pair
                            .split_once(':')
                            .ok_or_else(|| format!("{pair}: expected <id>:<remaining_ms>"))?;
                        Ok((parse_num(id)?, parse_num(ms)?))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                self.apply_all(&[Op::Checkpoint(batch)], cmd, false)
            }
            "attach" | "detach" => {
                cmd.allow_keys(&["id", "key", "now"])?;
                let id = cmd.need("id")?;
                let key = Bytes::from(cmd.need::<String>("key")?);
                let op = if cmd.name == "attach" {
                    Op::Attach { id, key }
                } else {
                    Op::Detach { id, key }
                };
                self.apply_all(&[op], cmd, false)
            }
            "commit" => {
                cmd.allow_keys(&["now"])?;
                if self.proposed.is_empty() {
                    return Ok("nothing proposed\n".into());
                }
                let ops = std::mem::take(&mut self.proposed);
                self.apply_all(&ops, cmd, true)
            }
            "drop" => {
                cmd.allow_keys(&[])?;
                let n = std::mem::take(&mut self.proposed).len();
                Ok(format!("dropped {n} proposal(s)\n"))
            }
            "promote" => {
                cmd.allow_keys(&["now", "grace"])?;
                let (m, now) = (self.member(cmd)?, cmd.need("now")?);
                let grace = cmd.num("grace")?.unwrap_or(self.grace_ms);
                self.members[m].promote(now, grace);
                Ok(self.status(m, None))
            }
            "demote" => {
                cmd.allow_keys(&[])?;
                let m = self.member(cmd)?;
                self.members[m].demote();
                Ok("ok\n".into())
            }
            "renew" => {
                cmd.allow_keys(&["id", "now"])?;
                let (m, id, now) = (self.member(cmd)?, cmd.need("id")?, cmd.need("now")?);
                let l = &mut self.members[m];
                Ok(match l.renew(id, now) {
                    Ok(ttl_s) => format!("ttl={ttl_s} expiry={}\n", l.expiry_ms(id).unwrap()),
                    Err(e) => format!("error: {e} ({e:?})\n"),
                })
            }
            "ttl" => {
                cmd.allow_keys(&["id", "now"])?;
                let (m, id, now) = (self.member(cmd)?, cmd.need("id")?, cmd.need("now")?);
                let keys = cmd.positional().contains(&"keys");
                Ok(match self.members[m].time_to_live(id, now, keys) {
                    Ok(t) => format!(
                        "id={} ttl={} granted={} keys={}\n",
                        t.id,
                        t.ttl_s,
                        t.granted_ttl_s,
                        fmt_keys(&t.keys)
                    ),
                    Err(e) => format!("error: {e} ({e:?})\n"),
                })
            }
            "poll-timeout" => {
                cmd.allow_keys(&[])?;
                let m = self.member(cmd)?;
                Ok(match self.members[m].poll_timeout() {
                    Some(ms) => format!("{ms}\n"),
                    None => "none\n".into(),
                })
            }
            "expired" => {
                cmd.allow_keys(&["now"])?;
                let (m, now) = (self.member(cmd)?, cmd.need("now")?);
                let expired = self.members[m].expired(now);
                self.proposed
                    .extend(expired.iter().map(|&id| Op::Revoke { id }));
                Ok(format!("expired {}\n", fmt_list(expired)))
            }
            "checkpoints" => {
                cmd.allow_keys(&["now"])?;
                let (m, now) = (self.member(cmd)?, cmd.need("now")?);
                let batch = self.members[m].poll_checkpoints(now);
                if batch.is_empty() {
                    return Ok("no checkpoints due\n".into());
                }
                let out = format!("batch {}\n", fmt_batch(&batch));
                self.proposed.push(Op::Checkpoint(batch));
                Ok(out)
            }
            "status" => {
                cmd.allow_keys(&["now"])?;
                let now = cmd.num("now")?;
                let ms = if cmd.positional().is_empty() {
                    (0..self.members.len()).collect()
                } else {
                    self.members_named(cmd)?
                };
                Ok(ms.into_iter().map(|m| self.status(m, now)).collect())
            }
            "leases" => {
                cmd.allow_keys(&[])?;
                let m = self.member(cmd)?;
                Ok(format!("{}\n", fmt_list(self.members[m].leases())))
            }
            "restart" => {
                cmd.allow_keys(&["now"])?;
                let (m, now) = (self.member(cmd)?, cmd.need("now")?);
                let config = self.config.clone().expect("set by lessors");
                self.members[m] = Lessor::new(config);
                for op in self.log.clone() {
                    apply(&mut self.members[m], &op, now);
                }
                Ok(self.status(m, None))
            }
            other => Err(format!("unknown command {other}")),
        }
    }

    fn lessors(&mut self, cmd: &Command) -> Output {
        cmd.allow_keys(&[
            "election",
            "heartbeat",
            "checkpoint-interval",
            "checkpoint-delay",
            "revoke-retry",
            "batch-max",
        ])?;
        let [n] = cmd.positional()[..] else {
            return Err("usage: lessors <n> [key=value..]".into());
        };
        let election = cmd.num("election")?.unwrap_or(1000);
        let mut c = LessorConfig::new(election, cmd.num("heartbeat")?.unwrap_or(100));
        c.checkpoint_interval_ms = cmd
            .num("checkpoint-interval")?
            .unwrap_or(c.checkpoint_interval_ms);
        c.renew_checkpoint_delay_ms = cmd
            .num("checkpoint-delay")?
            .unwrap_or(c.renew_checkpoint_delay_ms);
        c.revoke_retry_ms = cmd.num("revoke-retry")?.unwrap_or(c.revoke_retry_ms);
        c.batch_max = cmd.num("batch-max")?.unwrap_or(c.batch_max);
        self.members = (0..parse_num::<usize>(n)?)
            .map(|_| Lessor::new(c.clone()))
            .collect();
        self.grace_ms = election;
        let out = format!(
            "ttl_min={}s ttl_max={}s checkpoint_interval={}ms checkpoint_delay={}ms \
             revoke_retry={}ms batch_max={} grace={}ms\n",
            c.ttl_min_s,
            c.ttl_max_s,
            c.checkpoint_interval_ms,
            c.renew_checkpoint_delay_ms,
            c.revoke_retry_ms,
            c.batch_max,
            election
        );
        self.config = Some(c);
        self.log.clear();
        self.proposed.clear();
        Ok(out)
    }

    /// The members named by the positional words `m1`, `m2`, ...
    fn members_named(&self, cmd: &Command) -> Result<Vec<usize>, String> {
        cmd.positional()
            .iter()
            .filter(|w| **w != "keys")
            .map(|w| {
                let n: usize = w
                    .strip_prefix('m')
                    .ok_or_else(|| format!("{w}: members are m1, m2, .."))
                    .and_then(parse_num)?;
                (1..=self.members.len())
                    .contains(&n)
                    .then_some(n - 1)
                    .ok_or_else(|| format!("no member {w}"))
            })
            .collect()
    }

    fn member(&self, cmd: &Command) -> Result<usize, String> {
        match self.members_named(cmd)?[..] {
            [m] => Ok(m),
            _ => Err("name exactly one member".into()),
        }
    }

    /// Each member's `now`: `now=t` for all, or `now=(t1,t2,..)` one each; 0 when absent.
    fn nows(&self, cmd: &Command) -> Result<Vec<u64>, String> {
        let n = self.members.len();
        match cmd.values("now") {
            None => Ok(vec![0; n]),
            Some([t]) => Ok(vec![parse_num(t)?; n]),
            Some(ts) if ts.len() == n => ts.iter().map(|t| parse_num(t)).collect(),
            Some(_) => Err(format!("now= takes one time or {n}")),
        }
    }

    /// Applies `ops` on every member in order, printing each result once if all agree
    /// (prefixed with the operation when `label`).
    fn apply_all(&mut self, ops: &[Op], cmd: &Command, label: bool) -> Output {
        let timed = ops
            .iter()
            .any(|op| matches!(op, Op::Grant { .. } | Op::Checkpoint(_)));
        if timed && cmd.values("now").is_none() {
            return Err("grants and checkpoints need now=".into());
        }
        let nows = self.nows(cmd)?;
        let mut out = String::new();
        for op in ops {
            let results: Vec<String> = self
                .members
                .iter_mut()
                .zip(&nows)
                .map(|(l, &now)| apply(l, op, now))
                .collect();
            let what = match op {
                Op::Checkpoint(batch) => format!("checkpoint {}: ", fmt_batch(batch)),
                Op::Revoke { id } if label => format!("revoke {id}: "),
                _ => String::new(),
            };
            if results.iter().all(|r| *r == results[0]) {
                writeln!(out, "{what}{}", results[0]).unwrap();
            } else {
                for (m, r) in results.iter().enumerate() {
                    writeln!(out, "{what}m{}: {r} (members disagree!)", m + 1).unwrap();
                }
            }
            self.log.push(op.clone());
        }
        Ok(out)
    }

    fn status(&self, m: usize, now: Option<u64>) -> String {
        let l = &self.members[m];
        let role = if l.is_primary() {
            "primary"
        } else {
            "follower"
        };
        let mut out = format!("m{}: {role}\n", m + 1);
        for id in l.leases() {
            let lease = l.lease(id).unwrap();
            write!(
                out,
                "  {id}: ttl={}s remaining={}ms anchor={} keys={}",
                lease.ttl_s(),
                lease.remaining_ms(),
                lease.anchor_ms(),
                fmt_keys(&lease.keys().iter().cloned().collect::<Vec<_>>())
            )
            .unwrap();
            if let Some(expiry) = l.expiry_ms(id) {
                write!(out, " expiry={expiry}").unwrap();
                if let Some(now) = now {
                    write!(out, " (in {}ms)", expiry as i64 - now as i64).unwrap();
                }
            }
            writeln!(out).unwrap();
        }
        out
    }
}

/// Applies one replicated operation to one member, describing the result.
fn apply(l: &mut Lessor, op: &Op, now: u64) -> String {
    let err = |e: oxcd::lease::Error| format!("error: {e} ({e:?})");
    match op {
        Op::Grant { id, ttl_s } => match l.grant(*id, *ttl_s, now) {
            Ok(g) => format!("granted id={} ttl={}", g.id, g.ttl_s),
            Err(e) => err(e),
        },
        Op::Revoke { id } => match l.revoke(*id) {
            Ok(keys) => format!("revoked keys={}", fmt_keys(&keys)),
            Err(e) => err(e),
        },
        Op::Checkpoint(batch) => {
            l.apply_checkpoint(batch, now);
            "applied".into()
        }
        Op::Attach { id, key } => match l.attach(*id, key.clone()) {
            Ok(()) => "attached".into(),
            Err(e) => err(e),
        },
        Op::Detach { id, key } => {
            if l.detach(*id, key) {
                "detached".into()
            } else {
                "not attached".into()
            }
        }
    }
}

fn fmt_list(ids: Vec<LeaseId>) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("({})", ids.join(","))
}

fn fmt_batch(batch: &[(LeaseId, u64)]) -> String {
    let pairs: Vec<String> = batch.iter().map(|(id, ms)| format!("{id}:{ms}")).collect();
    format!("({})", pairs.join(","))
}

fn fmt_keys(keys: &[Bytes]) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    format!("({})", keys.join(","))
}
