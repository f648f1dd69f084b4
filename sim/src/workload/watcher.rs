//! The watch workload and its checker: a client follows the registers' prefix through the
//! faults, reconnecting to another member and resuming from its last revision whenever its
//! stream breaks or goes quiet; afterwards its events are compared with the store's history.
//!
//! The guarantees checked (etcd's watch contract): events arrive in revision order, each once
//! (ordered, unique), with none missing from where the watch (re)started (reliable, resumable),
//! with the right previous value (prev_kv), and all events of one revision in one response
//! (atomic: here every revision writes one key, so a revision split across responses would
//! show as a duplicate or a gap), and progress notifications (asked for every 700 ms) never
//! ahead of the events delivered.

use super::{KEYS, client_url};
use bytes::Bytes;
use oxcd::pb::etcdserverpb::{self as pb, watch_client::WatchClient};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// A stream that says nothing for this long is taken as cut off (a partition): the watcher
/// moves to another member.
const QUIET_MAX: Duration = Duration::from_secs(3);
/// How often the watcher asks for a progress notification.
const PROGRESS_EVERY: Duration = Duration::from_millis(700);
/// The slow watcher's pause after each response it reads: slow enough that, with the
/// register clients writing, its stream's outbox fills, the member drops it from the synced
/// watchers and it catches up from history.
pub const SLOW_READ: Duration = Duration::from_millis(150);

/// One event as the watcher saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub revision: i64,
    pub key: u32,
    pub value: u64,
    pub prev: Option<u64>,
}

/// What the watcher saw, and how often it had to resume.
#[derive(Clone, Debug, Default)]
pub struct WatchLog {
    pub events: Vec<Seen>,
    pub resumes: u64,
    /// Progress requests sent, and progress notifications received.
    pub progress_asked: u64,
    pub progress_seen: u64,
    /// Protocol problems seen on the way (a cancel, an undecodable event).
    pub problems: Vec<String>,
    /// Responses whose header revision ran ahead of their last event: the member was sending
    /// from history (the watcher had fallen behind), and the largest such lead in revisions.
    pub catch_up: u64,
    pub lag_max: i64,
}

/// A register value (a decimal number).
pub fn parse(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// An open watch on the registers from `start_revision` on member `m`: the response stream,
/// and the request side (dropping it ends the watch).
pub type OpenWatch = (
    tonic::Streaming<pb::WatchResponse>,
    tokio::sync::mpsc::Sender<pb::WatchRequest>,
);

/// Opens a watch on `reg/` at member `m`.
pub async fn open(m: usize, start_revision: i64, prev_kv: bool) -> Result<OpenWatch, String> {
    open_prefix(m, "reg/", "reg0", start_revision, prev_kv).await
}

/// Opens a watch on the keys in `[key, range_end)` at member `m`.
pub async fn open_prefix(
    m: usize,
    key: &'static str,
    range_end: &'static str,
    start_revision: i64,
    prev_kv: bool,
) -> Result<OpenWatch, String> {
    // etcd sends a catch-up from history as one response of any size: take what comes.
    let mut client = WatchClient::connect(client_url(m))
        .await
        .map_err(|e| e.to_string())?
        .max_decoding_message_size(usize::MAX);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: Bytes::from_static(key.as_bytes()),
                range_end: Bytes::from_static(range_end.as_bytes()),
                start_revision,
                prev_kv,
                ..Default::default()
            },
        )),
    };
    tx.send(create).await.map_err(|e| e.to_string())?;
    let stream = client
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok((stream, tx))
}

/// The events of an open watch up to revision `until` (the newest write under its keys):
/// how the post-run readers read a prefix's whole history. Fails when the stream ends or the
/// watch is canceled first.
pub async fn kvs_until(
    stream: &mut tonic::Streaming<pb::WatchResponse>,
    until: i64,
) -> Result<Vec<oxcd::pb::mvccpb::KeyValue>, String> {
    let mut kvs = Vec::new();
    // Only events say how far the history has come.
    let mut seen = 0;
    while seen < until {
        let Some(r) = stream.message().await.map_err(|e| e.to_string())? else {
            return Err("the watch ended".to_string());
        };
        if r.canceled {
            return Err(format!("the watch was canceled: {}", r.cancel_reason));
        }
        for e in r.events {
            let kv = e.kv.unwrap_or_default();
            seen = seen.max(kv.mod_revision);
            kvs.push(kv);
        }
    }
    Ok(kvs)
}

/// The number a workload's key carries after its `prefix` (`reg/7` is 7).
pub fn key_number(key: &[u8], prefix: &str) -> Result<u32, String> {
    key.strip_prefix(prefix.as_bytes())
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| format!("an unexpected key {key:?}"))
}

/// Follows `reg/` from revision 1 until `until`; with `slow`, pauses that long after each
/// response (the slow watcher).
pub async fn follow(seed: u64, nodes: usize, until: Instant, slow: Option<Duration>) -> WatchLog {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7761_7463_6865_7273);
    let mut log = WatchLog::default();
    let mut next = 1i64;
    while Instant::now() < until {
        let m = rng.gen_range(0..nodes);
        let Ok(Ok((stream, tx))) = tokio::time::timeout(QUIET_MAX, open(m, next, true)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stream = stream;
        log.resumes += 1;
        // A progress notification at revision R says every event up to R was delivered:
        // none at or below R may come after it on this stream.
        let mut progress_floor = 0i64;
        let mut ask = tokio::time::interval(PROGRESS_EVERY);
        let mut last_heard = Instant::now();
        while Instant::now() < until {
            let next_msg = tokio::time::timeout(QUIET_MAX, stream.message());
            let msg = tokio::select! {
                r = next_msg => match r {
                    Ok(Ok(Some(r))) => r,
                    // Quiet, broken or ended: resume elsewhere.
                    _ => break,
                },
                _ = ask.tick() => {
                    if last_heard.elapsed() > QUIET_MAX {
                        // Progress asked for and not answered: cut off.
                        break;
                    }
                    let req = pb::WatchRequest {
                        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                            pb::WatchProgressRequest {},
                        )),
                    };
                    if tx.send(req).await.is_err() {
                        break;
                    }
                    log.progress_asked += 1;
                    continue;
                }
            };
            last_heard = Instant::now();
            if msg.events.is_empty() && !msg.created && !msg.canceled {
                let at = msg.header.map_or(0, |h| h.revision);
                progress_floor = progress_floor.max(at);
                log.progress_seen += 1;
                continue;
            }
            if let Some(e) = msg.events.iter().find(|e| {
                e.kv.as_ref()
                    .is_some_and(|kv| kv.mod_revision <= progress_floor)
            }) {
                log.problems.push(format!(
                    "m{m} delivered an event at revision {} after a progress notification at {progress_floor}",
                    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
                ));
            }
            if msg.canceled {
                log.problems.push(format!(
                    "m{m} canceled the watch from revision {next}: {} (compact revision {})",
                    msg.cancel_reason, msg.compact_revision
                ));
                break;
            }
            let header = msg.header.map_or(0, |h| h.revision);
            if let Some(last) = msg.events.last().and_then(|e| e.kv.as_ref())
                && header > last.mod_revision
            {
                log.catch_up += 1;
                log.lag_max = log.lag_max.max(header - last.mod_revision);
            }
            for e in msg.events {
                let kv = e.kv.unwrap_or_default();
                let Some(key) = std::str::from_utf8(&kv.key[4.min(kv.key.len())..])
                    .ok()
                    .and_then(|k| k.parse::<u32>().ok())
                else {
                    log.problems.push(format!("an event for key {:?}", kv.key));
                    continue;
                };
                next = next.max(kv.mod_revision + 1);
                if key >= KEYS {
                    continue;
                }
                let (Some(value), prev) = (parse(&kv.value), e.prev_kv.map(|p| parse(&p.value)))
                else {
                    log.problems
                        .push(format!("an event with value {:?}", kv.value));
                    continue;
                };
                log.events.push(Seen {
                    revision: kv.mod_revision,
                    key,
                    value,
                    prev: prev.flatten(),
                });
            }
            if let Some(pause) = slow {
                tokio::time::sleep(pause).await;
            }
        }
        drop(tx);
    }
    log
}

/// The watcher's events against the store's history (`written`: value → key and revision).
pub fn check(log: &WatchLog, written: &BTreeMap<u64, (u32, i64)>) -> Vec<String> {
    let mut out: Vec<String> = log.problems.iter().map(|p| format!("watch: {p}")).collect();
    // The history in revision order, each event with the key's previous value.
    let mut by_revision: Vec<(i64, u32, u64)> =
        written.iter().map(|(&v, &(k, r))| (r, k, v)).collect();
    by_revision.sort_unstable();
    let mut last_value: BTreeMap<u32, u64> = BTreeMap::new();
    let mut truth: Vec<Seen> = Vec::with_capacity(by_revision.len());
    for (revision, key, value) in by_revision {
        let prev = last_value.insert(key, value);
        truth.push(Seen {
            revision,
            key,
            value,
            prev,
        });
    }
    // The watcher started at revision 1 and resumed after its last event each time, so what
    // it saw must be exactly the history up to its last event.
    let seen = &log.events;
    for (i, (s, t)) in seen.iter().zip(&truth).enumerate() {
        if s != t {
            out.push(format!(
                "watch: event {i} was {s:?}, the store's history has {t:?} there{}",
                if i > 0 {
                    format!(" (after {:?})", seen[i - 1])
                } else {
                    String::new()
                }
            ));
            return out;
        }
    }
    if seen.len() > truth.len() {
        out.push(format!(
            "watch: {} events beyond the store's history, first {:?}",
            seen.len() - truth.len(),
            seen[truth.len()]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(items: &[(u64, u32, i64)]) -> BTreeMap<u64, (u32, i64)> {
        items.iter().map(|&(v, k, r)| (v, (k, r))).collect()
    }

    fn seen(revision: i64, key: u32, value: u64, prev: Option<u64>) -> Seen {
        Seen {
            revision,
            key,
            value,
            prev,
        }
    }

    #[test]
    fn a_gap_a_duplicate_and_a_wrong_prev_are_each_caught() {
        let w = written(&[(10, 0, 2), (11, 1, 3), (12, 0, 4)]);
        let good = WatchLog {
            events: vec![
                seen(2, 0, 10, None),
                seen(3, 1, 11, None),
                seen(4, 0, 12, Some(10)),
            ],
            ..WatchLog::default()
        };
        assert!(check(&good, &w).is_empty());
        let prefix = WatchLog {
            events: good.events[..2].to_vec(),
            ..WatchLog::default()
        };
        assert!(check(&prefix, &w).is_empty(), "a watch may end early");
        for bad in [
            vec![seen(2, 0, 10, None), seen(4, 0, 12, Some(10))],
            vec![seen(2, 0, 10, None), seen(2, 0, 10, None)],
            vec![
                seen(2, 0, 10, None),
                seen(3, 1, 11, None),
                seen(4, 0, 12, None),
            ],
        ] {
            let log = WatchLog {
                events: bad.clone(),
                ..WatchLog::default()
            };
            assert!(!check(&log, &w).is_empty(), "{bad:?} passed");
        }
    }
}
