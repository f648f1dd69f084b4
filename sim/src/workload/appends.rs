//! The multi-key transaction workload (list-append, as in Jepsen's Elle) and its checker.
//!
//! Each transaction touches up to three of a few keys whose values are lists: it appends a
//! unique element to some and reads others. A client reads the keys, then sends one etcd `Txn`
//! that compares every touched key's mod revision with what it read, puts the extended lists
//! and gets the read keys: committed, it took effect whole at one revision; a failed compare
//! took no effect at all.
//!
//! The checker replays the store's history of the keys, revision by revision, and requires
//! strict serializability in revision order: every change the store made is exactly one
//! transaction's appends (an unknown outcome is resolved by whether its element is there),
//! each committed transaction read the lists as they were at its revision, and a transaction
//! that finished before another started has the earlier (or, when it wrote nothing, an equal)
//! revision.

use super::client_url;
use bytes::Bytes;
use oxcd::pb::etcdserverpb::{self as pb, compare, kv_client::KvClient, request_op, response_op};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Keys of the workload at a time: five, numbered from `epoch * KEYS`, zero-padded so that
/// their names sort as their numbers (`la/00000000` .. `la/00000004` in the first epoch).
const KEYS: u32 = 5;
/// Clients move to the next five keys every this many seconds (Jepsen's Elle retires a key
/// after a number of writes the same way): lists stay short, so neither the store's history
/// nor the post-run read of it grows with the square of the run's length.
const EPOCH_S: u64 = 10;
const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicroOp {
    Append(u32, u64),
    Read(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Took effect at `revision`; the lists the reads returned, by key.
    Committed {
        revision: i64,
        reads: BTreeMap<u32, Vec<u64>>,
    },
    /// A compare failed: it took no effect.
    Aborted,
    /// No answer: it may or may not have taken effect.
    Unknown,
}

#[derive(Clone, Debug)]
pub struct TxnRecord {
    pub client: usize,
    pub call_ns: u64,
    pub ret_ns: u64,
    pub ops: Vec<MicroOp>,
    pub outcome: Outcome,
}

fn key_name(k: u32) -> Bytes {
    Bytes::from(format!("la/{k:08}"))
}

fn decode(v: &[u8]) -> Option<Vec<u64>> {
    let s = std::str::from_utf8(v).ok()?;
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',').map(|x| x.parse().ok()).collect()
}

fn encode(list: &[u64]) -> Bytes {
    let parts: Vec<String> = list.iter().map(u64::to_string).collect();
    Bytes::from(parts.join(","))
}

/// Reads every key of `epoch`: its list and mod revision.
async fn read_all(
    c: &mut KvClient<tonic::transport::Channel>,
    epoch: u32,
) -> Option<BTreeMap<u32, (Vec<u64>, i64)>> {
    let r = c
        .range(pb::RangeRequest {
            key: key_name(epoch * KEYS),
            range_end: key_name((epoch + 1) * KEYS),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner();
    let mut out = BTreeMap::new();
    for kv in r.kvs {
        let k: u32 = std::str::from_utf8(&kv.key[3..]).ok()?.parse().ok()?;
        out.insert(k, (decode(&kv.value)?, kv.mod_revision));
    }
    Some(out)
}

/// One transaction of `ops` (on keys of `epoch`) through member `m`.
async fn perform(m: usize, ops: &[MicroOp], epoch: u32) -> Outcome {
    let go = async {
        let mut c = KvClient::connect(client_url(m)).await.ok()?;
        let seen = read_all(&mut c, epoch).await?;
        let mut compare = Vec::new();
        let mut success = Vec::new();
        for op in ops {
            let (MicroOp::Append(k, _) | MicroOp::Read(k)) = *op;
            let (list, rev) = seen.get(&k).cloned().unwrap_or_default();
            compare.push(pb::Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Mod as i32,
                key: key_name(k),
                target_union: Some(compare::TargetUnion::ModRevision(rev)),
                ..Default::default()
            });
            success.push(pb::RequestOp {
                request: Some(match *op {
                    MicroOp::Append(_, v) => {
                        let mut list = list;
                        list.push(v);
                        request_op::Request::RequestPut(pb::PutRequest {
                            key: key_name(k),
                            value: encode(&list),
                            ..Default::default()
                        })
                    }
                    MicroOp::Read(_) => request_op::Request::RequestRange(pb::RangeRequest {
                        key: key_name(k),
                        ..Default::default()
                    }),
                }),
            });
        }
        let r = c
            .txn(pb::TxnRequest {
                compare,
                success,
                failure: vec![],
            })
            .await
            .ok()?
            .into_inner();
        if !r.succeeded {
            return Some(Outcome::Aborted);
        }
        let mut reads = BTreeMap::new();
        for (op, resp) in ops.iter().zip(&r.responses) {
            if let (MicroOp::Read(k), Some(response_op::Response::ResponseRange(rr))) =
                (op, &resp.response)
            {
                let list = match rr.kvs.first() {
                    Some(kv) => decode(&kv.value)?,
                    None => Vec::new(),
                };
                reads.insert(*k, list);
            }
        }
        Some(Outcome::Committed {
            revision: r.header?.revision,
            reads,
        })
    };
    match tokio::time::timeout(TIMEOUT, go).await {
        Ok(Some(outcome)) => outcome,
        _ => Outcome::Unknown,
    }
}

/// Sends transactions until `until`; times are nanoseconds since `start`.
pub async fn run(
    client: usize,
    seed: u64,
    nodes: usize,
    start: Instant,
    until: Instant,
) -> Vec<TxnRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x6170_7065_6e64_0000 + client as u64));
    let mut out = Vec::new();
    let mut seq = 0u64;
    while Instant::now() < until {
        let epoch = (start.elapsed().as_secs() / EPOCH_S) as u32;
        let mut keys: Vec<u32> = (epoch * KEYS..(epoch + 1) * KEYS).collect();
        for i in (1..keys.len()).rev() {
            keys.swap(i, rng.gen_range(0..=i));
        }
        let ops: Vec<MicroOp> = keys[..rng.gen_range(1..=3)]
            .iter()
            .map(|&k| {
                if rng.gen_bool(0.5) {
                    seq += 1;
                    MicroOp::Append(k, (client as u64 + 1) << 32 | seq)
                } else {
                    MicroOp::Read(k)
                }
            })
            .collect();
        let m = rng.gen_range(0..nodes);
        let call_ns = start.elapsed().as_nanos() as u64;
        let outcome = perform(m, &ops, epoch).await;
        let ret_ns = start.elapsed().as_nanos() as u64;
        out.push(TxnRecord {
            client,
            call_ns,
            ret_ns,
            ops,
            outcome,
        });
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
    }
    out
}

/// The keys' history from the store: each revision that changed them, with the new lists.
pub async fn history(nodes: usize) -> Result<BTreeMap<i64, BTreeMap<u32, Vec<u64>>>, String> {
    super::from_any_member(nodes, "the list keys' history", |m| async move {
        let mut c = KvClient::connect(client_url(m))
            .await
            .map_err(|e| e.to_string())?;
        // The newest write to any list key, every epoch's (names only).
        let now = c
            .range(pb::RangeRequest {
                key: Bytes::from_static(b"la/"),
                range_end: Bytes::from_static(b"la0"),
                keys_only: true,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot read the keys: {e}"))?
            .into_inner()
            .kvs
            .iter()
            .map(|kv| kv.mod_revision)
            .max()
            .unwrap_or(0);
        let mut out: BTreeMap<i64, BTreeMap<u32, Vec<u64>>> = BTreeMap::new();
        if now == 0 {
            return Ok(out);
        }
        let (mut stream, _tx) = super::watcher::open_prefix(m, "la/", "la0", 1, false).await?;
        for kv in super::watcher::kvs_until(&mut stream, now).await? {
            let k = super::watcher::key_number(&kv.key, "la/")?;
            let list = decode(&kv.value).ok_or("a bad value")?;
            out.entry(kv.mod_revision).or_default().insert(k, list);
        }
        Ok(out)
    })
    .await
}

/// Strict serializability in revision order (see the module docs).
pub fn check(txns: &[TxnRecord], history: &BTreeMap<i64, BTreeMap<u32, Vec<u64>>>) -> Vec<String> {
    let mut out = Vec::new();
    // Which transaction wrote each element.
    let mut writer: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, t) in txns.iter().enumerate() {
        for op in &t.ops {
            if let MicroOp::Append(_, v) = op {
                writer.insert(*v, i);
            }
        }
    }
    // Committed (or, for unknown outcomes, resolved) transactions by revision.
    let mut at: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, t) in txns.iter().enumerate() {
        if let Outcome::Committed { revision, .. } = t.outcome {
            at.entry(revision).or_default().push(i);
        }
    }
    let mut state: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut revisions: Vec<i64> = at.keys().chain(history.keys()).copied().collect();
    revisions.sort_unstable();
    revisions.dedup();
    for rev in revisions {
        // The change the store made at `rev`, explained by one transaction's appends.
        if let Some(changed) = history.get(&rev) {
            let new_elements: Vec<(u32, u64)> = changed
                .iter()
                .filter_map(|(&k, list)| {
                    let before = state.get(&k).map_or(0, Vec::len);
                    (list.len() == before + 1
                        && list[..before] == *state.get(&k).map_or(&[][..], |l| &l[..]))
                    .then(|| (k, list[before]))
                })
                .collect();
            if new_elements.len() != changed.len() {
                out.push(format!(
                    "appends: at revision {rev} the store changed {changed:?} from {state:?}, which is not one append per key"
                ));
                return out;
            }
            let by = new_elements
                .first()
                .and_then(|(_, v)| writer.get(v))
                .copied();
            let Some(w) = by else {
                out.push(format!("appends: at revision {rev} the store holds elements no client appended: {new_elements:?}"));
                return out;
            };
            let appended: Vec<(u32, u64)> = txns[w]
                .ops
                .iter()
                .filter_map(|op| match op {
                    MicroOp::Append(k, v) => Some((*k, *v)),
                    MicroOp::Read(_) => None,
                })
                .collect();
            let mut sorted = new_elements.clone();
            sorted.sort_unstable();
            let mut want = appended.clone();
            want.sort_unstable();
            if sorted != want {
                out.push(format!(
                    "appends: at revision {rev} the store applied {new_elements:?}, but the transaction appended {appended:?} (not atomic)"
                ));
                return out;
            }
            match &txns[w].outcome {
                Outcome::Committed { revision, .. } if *revision == rev => {}
                Outcome::Unknown => {}
                other => {
                    out.push(format!(
                        "appends: the store applied {appended:?} at revision {rev}, the client was told {other:?}"
                    ));
                    return out;
                }
            }
            for (k, v) in new_elements {
                state.entry(k).or_default().push(v);
            }
        }
        // Every transaction committed at `rev` read the lists as they are now.
        for &i in at.get(&rev).map_or(&[][..], |v| &v[..]) {
            let Outcome::Committed { reads, .. } = &txns[i].outcome else {
                continue;
            };
            for (k, list) in reads {
                let have = state.get(k).map_or(&[][..], |l| &l[..]);
                if list[..] != *have {
                    out.push(format!(
                        "appends: client {} read la/{k} = {list:?} at revision {rev}, where it was {have:?}",
                        txns[i].client
                    ));
                }
            }
            let wrote = txns[i]
                .ops
                .iter()
                .any(|op| matches!(op, MicroOp::Append(..)));
            if wrote && !history.contains_key(&rev) {
                out.push(format!(
                    "appends: client {}'s committed appends {:?} at revision {rev} are not in the store",
                    txns[i].client, txns[i].ops
                ));
            }
        }
    }
    // Real time: what finished before another began has a revision no later.
    let mut committed: Vec<(u64, u64, i64, bool)> = txns
        .iter()
        .filter_map(|t| match t.outcome {
            Outcome::Committed { revision, .. } => Some((
                t.call_ns,
                t.ret_ns,
                revision,
                t.ops.iter().any(|op| matches!(op, MicroOp::Append(..))),
            )),
            _ => None,
        })
        .collect();
    committed.sort_unstable();
    let mut by_ret = committed.clone();
    by_ret.sort_unstable_by_key(|c| c.1);
    let mut max_before = (0i64, false);
    let mut j = 0;
    for &(call, _, rev, wrote) in &committed {
        while j < by_ret.len() && by_ret[j].1 < call {
            if by_ret[j].2 > max_before.0 {
                max_before = (by_ret[j].2, by_ret[j].3);
            }
            j += 1;
        }
        let later_ok = if wrote && max_before.1 {
            rev > max_before.0
        } else {
            rev >= max_before.0
        };
        if !later_ok {
            out.push(format!(
                "appends: a transaction begun at {call} ns committed at revision {rev}, after one that had finished at revision {}",
                max_before.0
            ));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(client: usize, call: u64, ret: u64, ops: Vec<MicroOp>, outcome: Outcome) -> TxnRecord {
        TxnRecord {
            client,
            call_ns: call,
            ret_ns: ret,
            ops,
            outcome,
        }
    }

    fn committed(revision: i64, reads: &[(u32, &[u64])]) -> Outcome {
        Outcome::Committed {
            revision,
            reads: reads.iter().map(|(k, l)| (*k, l.to_vec())).collect(),
        }
    }

    #[test]
    fn a_serial_history_passes_and_each_anomaly_is_caught() {
        use MicroOp::*;
        let history: BTreeMap<i64, BTreeMap<u32, Vec<u64>>> = [
            (2, [(0, vec![1]), (1, vec![2])].into()),
            (3, [(0, vec![1, 3])].into()),
        ]
        .into();
        let good = vec![
            txn(
                0,
                0,
                10,
                vec![Append(0, 1), Append(1, 2)],
                committed(2, &[]),
            ),
            txn(
                1,
                11,
                20,
                vec![Append(0, 3), Read(1)],
                committed(3, &[(1, &[2])]),
            ),
            txn(2, 21, 30, vec![Read(0)], committed(3, &[(0, &[1, 3])])),
            txn(2, 31, 40, vec![Append(2, 9)], Outcome::Aborted),
        ];
        assert_eq!(check(&good, &history), Vec::<String>::new());

        let mut stale = good.clone();
        stale[2].outcome = committed(3, &[(0, &[1])]);
        assert!(!check(&stale, &history).is_empty(), "a stale read");

        let mut torn = good.clone();
        torn[0].ops.push(Append(3, 4));
        assert!(
            !check(&torn, &history).is_empty(),
            "half a transaction applied"
        );

        let mut late = good.clone();
        late[1].call_ns = 50;
        late[1].ret_ns = 60;
        late[2].call_ns = 70;
        late[2].ret_ns = 80;
        late[2].outcome = committed(2, &[(0, &[1])]);
        assert!(
            !check(&late, &history).is_empty(),
            "a read that went back in time"
        );
    }
}
