//! The `watchers` workload: what many watchers cost a member (resident memory per watcher)
//! and how fast it delivers their events. S streams over the connections, W watchers each on
//! distinct keys "w/<i>", then E puts to every key while the streams count the events.
//!
//! Memory is the sum of VmRSS over `--member-pid` (the watchers are spread over the
//! endpoints), sampled once before the first create and once after the last is confirmed.
//! It does not time events (oxctl's watch-latency does): the latencies are the puts'.

use crate::kv::{self, Op};
use crate::report::{Report, Tally, why};
use crate::{Args, connect_all, rss};
use etcd_client::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long all watchers may take to be created.
const CREATE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the streams may take, after the last put was answered, to see every event.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the streams count together.
struct Delivery {
    /// Events received over all streams.
    events: AtomicU64,
    /// Nanoseconds from `origin` to the latest event received.
    last_event_ns: AtomicU64,
    origin: Instant,
}

pub(crate) async fn run(
    args: Arc<Args>,
    streams: usize,
    per_stream: usize,
    events_per_key: u64,
) -> Result<Report, String> {
    let conns = connect_all(&args).await?;
    let watchers = (streams * per_stream) as u64;
    let events_expected = watchers * events_per_key;
    let delivery = Arc::new(Delivery {
        events: AtomicU64::new(0),
        last_event_ns: AtomicU64::new(0),
        origin: Instant::now(),
    });

    let rss_before = rss::sum_mib(&args.member_pid);
    let mut tasks = Vec::with_capacity(streams);
    let mut created = Vec::with_capacity(streams);
    for s in 0..streams {
        let (tx, rx) = oneshot::channel();
        let client = conns[s % conns.len()].clone();
        let first = s * per_stream;
        let per_stream_events = per_stream as u64 * events_per_key;
        tasks.push(tokio::spawn(stream(
            client,
            first..first + per_stream,
            per_stream_events,
            delivery.clone(),
            tx,
        )));
        created.push(rx);
    }
    let create_deadline = tokio::time::Instant::now() + CREATE_TIMEOUT;
    for (s, rx) in created.into_iter().enumerate() {
        match tokio::time::timeout_at(create_deadline, rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(why))) => return Err(format!("watch stream {s}: {why}")),
            Ok(Err(_)) => return Err(format!("watch stream {s} ended before its creates")),
            Err(_) => return Err(format!("watch stream {s}: creates timed out")),
        }
    }
    let rss_after = rss::sum_mib(&args.member_pid);
    eprintln!("ecload watchers: {watchers} watchers created");

    let started = Instant::now();
    let (mut tally, _) = kv::requests(
        &args,
        &conns,
        Op::WatchedPut { keys: watchers },
        events_expected,
    )
    .await?;
    let drain_deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    for t in tasks {
        // A stream short of events is counted below; one that failed says why.
        if let Ok(joined) = tokio::time::timeout_at(drain_deadline, t).await {
            tally.merge(joined.map_err(|e| e.to_string())?);
        }
    }
    let delivered = delivery.events.load(Ordering::Relaxed);
    let last_event = Duration::from_nanos(delivery.last_event_ns.load(Ordering::Relaxed));
    let elapsed = (delivery.origin + last_event).saturating_duration_since(started);
    if tally.errors == 0 && delivered < events_expected {
        tally.fail(format!(
            "{} of {events_expected} events not delivered",
            events_expected - delivered
        ));
    }
    let per_watcher_kib = match (rss_before, rss_after) {
        (Some(before), Some(after)) => Some((after - before) * 1024.0 / watchers as f64),
        _ => None,
    };
    Ok(Report::new("watchers", delivered, tally, elapsed)
        .with("watchers", watchers)
        .with("events", delivered)
        .with("rss_before_mib", rss_before)
        .with("rss_after_mib", rss_after)
        .with("rss_per_watcher_kib", per_watcher_kib))
}

/// One watch stream with a watcher on each key "w/<i>" of `keys`: says on `created` when all
/// are confirmed, then counts events until `events_expected`.
async fn stream(
    client: Client,
    keys: std::ops::Range<usize>,
    events_expected: u64,
    delivery: Arc<Delivery>,
    created: oneshot::Sender<Result<(), String>>,
) -> Tally {
    let mut tally = Tally::new();
    let watchers = keys.len();
    let opened = client
        .watch_client()
        .watch(format!("w/{}", keys.start), None)
        .await;
    let (mut sender, mut answers) = match opened {
        Ok(s) => s.split(),
        Err(e) => {
            let _ = created.send(Err(why(e)));
            return tally;
        }
    };
    // The creates are sent by their own task while this one reads the confirmations, so
    // neither side's buffers can stall the other.
    let rest = keys.start + 1..keys.end;
    let creates = tokio::spawn(async move {
        for k in rest {
            sender.watch(format!("w/{k}"), None).await?;
        }
        Ok::<_, etcd_client::Error>(sender)
    });
    let mut confirmed = 0;
    while confirmed < watchers {
        match answers.message().await {
            Ok(Some(r)) if r.created() => confirmed += 1,
            Ok(Some(r)) if r.canceled() => {
                let _ = created.send(Err(format!("a watch was canceled: {}", r.cancel_reason())));
                return tally;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = created.send(Err("the stream ended".into()));
                return tally;
            }
            Err(e) => {
                let _ = created.send(Err(why(e)));
                return tally;
            }
        }
    }
    // Closing the sending side would end the stream: it is kept until the events are in.
    let _sender = match creates.await {
        Ok(Ok(sender)) => sender,
        Ok(Err(e)) => {
            let _ = created.send(Err(why(e)));
            return tally;
        }
        Err(e) => {
            let _ = created.send(Err(e.to_string()));
            return tally;
        }
    };
    let _ = created.send(Ok(()));

    let mut seen = 0;
    while seen < events_expected {
        match answers.message().await {
            Ok(Some(r)) => {
                let n = r.events().len() as u64;
                if n > 0 {
                    seen += n;
                    delivery.events.fetch_add(n, Ordering::Relaxed);
                    let now_ns = delivery.origin.elapsed().as_nanos() as u64;
                    delivery.last_event_ns.fetch_max(now_ns, Ordering::Relaxed);
                }
            }
            Ok(None) => {
                tally.fail("a watch stream ended".into());
                break;
            }
            Err(e) => {
                tally.fail(why(e));
                break;
            }
        }
    }
    tally
}
