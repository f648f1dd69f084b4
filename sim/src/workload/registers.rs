//! The register workload: clients that read, write and compare-and-set a few hot keys through
//! the real gRPC client, the history they record, and what the store's own history says of it
//! (unknown outcomes resolved, lost or invented writes, revision invariants).

use super::{KEYS, OP_TIMEOUT, THINK_MS_MAX, client_url, watcher};
use crate::checker::history_files::{RegisterInput, RegisterOutput};
use crate::checker::linearizability::Operation;
use crate::checker::registers::KeyedInput;
use bytes::Bytes;
use oxcd::pb::etcdserverpb::kv_client::KvClient;
use oxcd::pb::etcdserverpb::{self as pb, compare, request_op};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// One recorded operation: the checker's input plus the response revision.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub op: Operation<KeyedInput, RegisterOutput>,
    pub revision: Option<i64>,
    pub member: usize,
    /// An unknown outcome that the store's history resolved (its return time is the end).
    pub resolved: bool,
}

pub(crate) type History = Arc<Mutex<Vec<Recorded>>>;

pub(crate) fn nanos(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64
}

/// How one operation ended.
pub(crate) enum Outcome {
    Done(RegisterOutput, i64),
    /// Never sent (no connection): it did not happen.
    NotSent,
    /// Sent, and then no answer or an error: it may or may not have happened.
    Unknown,
}

/// Sends one operation to member `m`.
pub(crate) async fn perform(m: usize, key: u32, op: RegisterInput) -> Outcome {
    let connect = tokio::time::timeout(OP_TIMEOUT, KvClient::connect(client_url(m))).await;
    let Ok(Ok(c)) = connect else {
        return Outcome::NotSent;
    };
    match tokio::time::timeout(OP_TIMEOUT, send(c, key, op)).await {
        Ok(Some((output, revision))) => Outcome::Done(output, revision),
        _ => Outcome::Unknown,
    }
}

pub(crate) async fn send(
    mut c: KvClient<tonic::transport::Channel>,
    key: u32,
    op: RegisterInput,
) -> Option<(RegisterOutput, i64)> {
    let k = Bytes::from(format!("reg/{key}"));
    {
        match op {
            RegisterInput::Read => {
                let r = c
                    .range(pb::RangeRequest {
                        key: k,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                let value = match r.kvs.first() {
                    Some(kv) => Some(std::str::from_utf8(&kv.value).ok()?.parse().ok()?),
                    None => None,
                };
                Some((RegisterOutput::Read(value), r.header?.revision))
            }
            RegisterInput::Write(v) => {
                let r = c
                    .put(pb::PutRequest {
                        key: k,
                        value: Bytes::from(v.to_string()),
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                Some((RegisterOutput::Write, r.header?.revision))
            }
            RegisterInput::Cas { from, to } => {
                let r = c
                    .txn(pb::TxnRequest {
                        compare: vec![pb::Compare {
                            result: compare::CompareResult::Equal as i32,
                            target: compare::CompareTarget::Value as i32,
                            key: k.clone(),
                            target_union: Some(compare::TargetUnion::Value(Bytes::from(
                                from.to_string(),
                            ))),
                            ..Default::default()
                        }],
                        success: vec![pb::RequestOp {
                            request: Some(request_op::Request::RequestPut(pb::PutRequest {
                                key: k,
                                value: Bytes::from(to.to_string()),
                                ..Default::default()
                            })),
                        }],
                        failure: vec![],
                    })
                    .await
                    .ok()?
                    .into_inner();
                Some((RegisterOutput::Cas { ok: r.succeeded }, r.header?.revision))
            }
        }
    }
}

/// A client: random reads, writes of unique values and compare-and-sets on the registers,
/// each to a random member, until `until`.
pub(crate) async fn client(
    id: usize,
    seed: u64,
    nodes: usize,
    start: Instant,
    until: Instant,
    history: History,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x5eed_c11e_u64 + id as u64));
    let mut seq = 0u64;
    let mut last_seen: BTreeMap<u32, u64> = BTreeMap::new();
    while Instant::now() < until {
        let key = rng.gen_range(0..KEYS);
        let m = rng.gen_range(0..nodes);
        seq += 1;
        // Values are unique per client and operation, so every write is told apart.
        let fresh = (id as u64 + 1) * 1_000_000 + seq;
        let op = match rng.gen_range(0..10) {
            0..=3 => RegisterInput::Read,
            4..=6 => RegisterInput::Write(fresh),
            _ => RegisterInput::Cas {
                from: last_seen.get(&key).copied().unwrap_or(0),
                to: fresh,
            },
        };
        let call = nanos(start);
        let result = perform(m, key, op).await;
        let ret = nanos(start);
        let (output, revision) = match result {
            Outcome::Done(output, revision) => {
                match (op, output) {
                    (_, RegisterOutput::Read(Some(v))) => {
                        last_seen.insert(key, v);
                    }
                    (RegisterInput::Write(v), _)
                    | (RegisterInput::Cas { to: v, .. }, RegisterOutput::Cas { ok: true }) => {
                        last_seen.insert(key, v);
                    }
                    _ => {}
                }
                (Some(output), Some(revision))
            }
            Outcome::NotSent => (None, None),
            // A read that failed constrains nothing; a write may or may not have happened
            // (the checks resolve it from the store's history).
            Outcome::Unknown if op == RegisterInput::Read => (None, None),
            Outcome::Unknown => (None, Some(-1)),
        };
        if output.is_some() || revision == Some(-1) {
            history.lock().expect("one thread").push(Recorded {
                op: Operation {
                    client: id as u64,
                    input: KeyedInput { key, op },
                    call,
                    output,
                    ret,
                },
                revision: revision.filter(|&r| r >= 0),
                member: m,
                resolved: false,
            });
        }
        let think = rng.gen_range(0..=THINK_MS_MAX);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
}

/// Every value the store holds or held for the registers, with the revision that wrote it:
/// a watch from revision 1 (nothing is compacted in a run) read up to the current revision.
pub(crate) async fn written_values(nodes: usize) -> Result<BTreeMap<u64, (u32, i64)>, String> {
    super::from_any_member(nodes, "the registers' history", |m| async move {
        let mut kv = KvClient::connect(client_url(m))
            .await
            .map_err(|e| e.to_string())?;
        // The last revision that wrote a register (other keys, the leases', share the
        // revision counter): the history is complete once the watch reaches it.
        let now = kv
            .range(pb::RangeRequest {
                key: Bytes::from_static(b"reg/"),
                range_end: Bytes::from_static(b"reg0"),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .kvs
            .iter()
            .map(|kv| kv.mod_revision)
            .max()
            .unwrap_or(0);
        let (mut stream, tx) = watcher::open(m, 1, false).await?;
        let mut out = BTreeMap::new();
        for kv in watcher::kvs_until(&mut stream, now).await? {
            let key = watcher::key_number(&kv.key, "reg/")?;
            if key >= KEYS {
                continue;
            }
            let value = watcher::parse(&kv.value)
                .ok_or_else(|| format!("an unexpected value {:?}", kv.value))?;
            if out.insert(value, (key, kv.mod_revision)).is_some() {
                return Err(format!("value {value} written twice"));
            }
        }
        drop(tx);
        Ok(out)
    })
    .await
}

/// Resolves writes of unknown outcome from the store's history (a value that is there was
/// written, at its revision; one that is not never was: a run compacts nothing), and checks
/// that the history holds exactly what clients wrote: every acknowledged write at the revision
/// its answer named, and nothing no client wrote.
pub(crate) fn resolve(
    history: &mut Vec<Recorded>,
    written: &BTreeMap<u64, (u32, i64)>,
    end: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut attempted = std::collections::BTreeSet::new();
    history.retain_mut(|r| {
        let value = match r.op.input.op {
            RegisterInput::Write(v) | RegisterInput::Cas { to: v, .. } => v,
            RegisterInput::Read => return true,
        };
        attempted.insert(value);
        let there = written.get(&value);
        match (&r.op.output, there) {
            (None, Some(&(_, rev))) => {
                r.op.output = Some(match r.op.input.op {
                    RegisterInput::Write(_) => RegisterOutput::Write,
                    _ => RegisterOutput::Cas { ok: true },
                });
                r.op.ret = end.max(r.op.call);
                r.revision = Some(rev);
                r.resolved = true;
                true
            }
            // Never written: it did not happen (a compare that failed changes nothing either).
            (None, None) => false,
            (Some(RegisterOutput::Write | RegisterOutput::Cas { ok: true }), there) => {
                match there {
                    Some(&(key, rev)) if key == r.op.input.key && Some(rev) == r.revision => {}
                    other => out.push(format!(
                        "an acknowledged write is not in the store as answered: {:?} (answered revision {:?}; the store: {other:?})",
                        r.op, r.revision
                    )),
                }
                true
            }
            (Some(_), Some(&(_, rev))) => {
                out.push(format!(
                    "a compare-and-set answered 'not applied' but its value is in the store at revision {rev}: {:?}",
                    r.op
                ));
                true
            }
            (Some(_), None) => true,
        }
    });
    for (value, (key, rev)) in written {
        if !attempted.contains(value) {
            out.push(format!(
                "reg/{key} holds {value} at revision {rev}, which no client wrote"
            ));
        }
    }
    out
}

/// Revision invariants of the recorded history: no two acknowledged writes share a revision,
/// and each client's linearizable answers never go back in revision.
pub(crate) fn revision_violations(history: &[Recorded]) -> Vec<String> {
    let mut out = Vec::new();
    let mut writes: BTreeMap<i64, &Recorded> = BTreeMap::new();
    let mut last_by_client: BTreeMap<u64, &Recorded> = BTreeMap::new();
    let mut by_call: Vec<&Recorded> = history.iter().collect();
    by_call.sort_by_key(|r| (r.op.call, r.op.client));
    for r in by_call {
        let Some(rev) = r.revision else { continue };
        let wrote = matches!(
            (r.op.input.op, r.op.output),
            (RegisterInput::Write(_), Some(_)) | (_, Some(RegisterOutput::Cas { ok: true }))
        );
        if wrote && let Some(other) = writes.insert(rev, r) {
            out.push(format!(
                "two acknowledged writes at revision {rev}:\n    {}\n    {}",
                describe(other),
                describe(r)
            ));
        }
        if r.resolved {
            // The client never saw this answer.
            continue;
        }
        if let Some(prev) = last_by_client.get(&r.op.client)
            && prev.revision.is_some_and(|p| rev < p)
        {
            out.push(format!(
                "a client saw the revision go back:\n    {}\n    {}",
                describe(prev),
                describe(r)
            ));
        }
        last_by_client.insert(r.op.client, r);
    }
    out
}

pub(crate) fn describe(r: &Recorded) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    let output = match r.op.output {
        Some(o) => format!("{o:?}"),
        None => "unknown".to_string(),
    };
    format!(
        "client {} via m{}: reg/{} {:?} called {:.3} ms, returned {:.3} ms: {output}, revision {:?}",
        r.op.client,
        r.member,
        r.op.input.key,
        r.op.input.op,
        ms(r.op.call),
        if r.op.output.is_some() {
            ms(r.op.ret)
        } else {
            f64::NAN
        },
        r.revision
    )
}
