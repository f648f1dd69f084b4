//! The register workload: clients that read, write and compare-and-set a few hot keys through
//! the real gRPC client, the history they record, and what the store's own history says of it
//! (unknown outcomes resolved, lost or invented writes, revision invariants). Serializable
//! reads are recorded apart, outside the linearizability check (they may be stale): each
//! must show the register as the store held it at the revision its answer names.

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

/// A serializable read that was answered: what it saw, at which revision, from which member.
#[derive(Clone, Debug)]
pub struct SerialRead {
    pub client: usize,
    pub key: u32,
    pub member: usize,
    pub value: Option<u64>,
    /// The answer's header revision: the member's store as of it is what the read saw.
    pub revision: i64,
}

pub(crate) type SerialReads = Arc<Mutex<Vec<SerialRead>>>;

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
                let (value, revision) = read(&mut c, k, false).await?;
                Some((RegisterOutput::Read(value), revision))
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

/// A read of register `k`: its value (none when absent) and the answer's header revision;
/// `None` when it was not answered or did not parse.
async fn read(
    c: &mut KvClient<tonic::transport::Channel>,
    k: Bytes,
    serializable: bool,
) -> Option<(Option<u64>, i64)> {
    let r = c
        .range(pb::RangeRequest {
            key: k,
            serializable,
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner();
    let value = match r.kvs.first() {
        Some(kv) => Some(std::str::from_utf8(&kv.value).ok()?.parse().ok()?),
        None => None,
    };
    Some((value, r.header?.revision))
}

/// A serializable read of register `key` from member `m`, or `None` when it was not
/// answered in time.
async fn read_serializable(m: usize, key: u32) -> Option<(Option<u64>, i64)> {
    let answered = async {
        let mut c = KvClient::connect(client_url(m)).await.ok()?;
        read(&mut c, Bytes::from(format!("reg/{key}")), true).await
    };
    tokio::time::timeout(OP_TIMEOUT, answered)
        .await
        .ok()
        .flatten()
}

/// A client: random reads, writes of unique values and compare-and-sets on the registers,
/// each to a random member, until `until`; one operation in eleven is a serializable read,
/// recorded in `serial`.
pub(crate) async fn client(
    id: usize,
    seed: u64,
    nodes: usize,
    start: Instant,
    until: Instant,
    history: History,
    serial: SerialReads,
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
        let op = match rng.gen_range(0..11) {
            0..=3 => RegisterInput::Read,
            4..=6 => RegisterInput::Write(fresh),
            10 => {
                if let Some((value, revision)) = read_serializable(m, key).await {
                    serial.lock().expect("one thread").push(SerialRead {
                        client: id,
                        key,
                        member: m,
                        value,
                        revision,
                    });
                }
                let think = rng.gen_range(0..=THINK_MS_MAX);
                tokio::time::sleep(Duration::from_millis(think)).await;
                continue;
            }
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

/// Serializable reads against the store's history (`written`: value -> (register, revision),
/// every write there was): each read must have seen the last value written to its register
/// at or before its answer's revision (none, if nothing was), since a member answers from
/// its store as of the revision it names. Stale is allowed; a mix of states is not.
pub(crate) fn check_serializable(
    reads: &[SerialRead],
    written: &BTreeMap<u64, (u32, i64)>,
) -> Vec<String> {
    let mut by_key: BTreeMap<u32, BTreeMap<i64, u64>> = BTreeMap::new();
    for (&value, &(key, rev)) in written {
        by_key.entry(key).or_default().insert(rev, value);
    }
    let mut out = Vec::new();
    for r in reads {
        let held = by_key
            .get(&r.key)
            .and_then(|revs| revs.range(..=r.revision).next_back())
            .map(|(_, &v)| v);
        if held != r.value {
            out.push(format!(
                "a serializable read of reg/{} via m{} (client {}) saw {:?} at revision {}; the store held {:?} then",
                r.key, r.member, r.client, r.value, r.revision, held
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(key: u32, value: Option<u64>, revision: i64) -> SerialRead {
        SerialRead {
            client: 0,
            key,
            member: 0,
            value,
            revision,
        }
    }

    #[test]
    fn a_serializable_read_must_show_the_store_as_of_its_revision() {
        // reg/0: 11 at revision 5, 12 at 9; reg/1: 21 at 7.
        let written = BTreeMap::from([(11, (0, 5)), (12, (0, 9)), (21, (1, 7))]);
        let fine = [
            read(0, None, 4),
            read(0, Some(11), 5),
            read(0, Some(11), 8),
            read(0, Some(12), 9),
            read(1, None, 6),
            read(1, Some(21), 30),
        ];
        assert!(check_serializable(&fine, &written).is_empty());
        let wrong = [
            // Older than its revision says.
            read(0, Some(11), 9),
            // Newer than its revision says.
            read(0, Some(12), 8),
            // Gone while the store held it.
            read(1, None, 7),
            // Another register's value.
            read(1, Some(11), 8),
        ];
        assert_eq!(check_serializable(&wrong, &written).len(), wrong.len());
    }
}
