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

mod datadriven;

use bytes::Bytes;
use datadriven::{Command, parse_list, parse_num};
use oxcd::lease::{IdGen, LeaseId, Lessor, LessorConfig};
use std::fmt::Write as _;

#[test]
fn lease_scripts() {
    datadriven::run_dir("lease", Env::default);
}

impl datadriven::Env for Env {
    fn run(&mut self, cmd: &Command, input: &[String]) -> Result<String, String> {
        if !input.is_empty() {
            return Err("lease commands take no input lines".into());
        }
        Env::run(self, cmd)
    }
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
