//! The large-range workloads: big-load fills "big/" with values of `--val-size`, big-read
//! reads all of it back in one unlimited range while sampling the members' resident memory.
//!
//! It does not clean up after itself: big-read reads what big-load wrote, in a later run.

use crate::kv::{self, Op};
use crate::report::{Report, Tally, why};
use crate::rss::{self, PeakSampler};
use crate::{Args, connect};
use etcd_client::GetOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Between two samples of the members' resident memory during big-read.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);
/// The client-side limit on big-read's answer: no practical limit (the server's own is what
/// is measured).
const READ_DECODE_BYTES_MAX: usize = usize::MAX;

/// `big-load`: ceil(`bytes` / `--val-size`) puts into "big/<index>".
pub(crate) async fn load(args: Arc<Args>, bytes: u64) -> Result<Report, String> {
    let conns = crate::connect_all(&args).await?;
    let keys = bytes.div_ceil(args.val_size as u64);
    let run = kv::requests(&args, &conns, Op::BigPut, keys).await?;
    Ok(kv::report("big-load", keys, run)
        .with("keys", keys)
        .with("bytes", keys * args.val_size as u64))
}

/// `big-read`: one serializable range over the prefix "big/" with no limit, from the first
/// endpoint.
pub(crate) async fn read(args: Arc<Args>) -> Result<Report, String> {
    let client = connect(&args.endpoints[0]).await?;
    let mut kv = client
        .kv_client()
        .max_decoding_message_size(READ_DECODE_BYTES_MAX);
    let options = GetOptions::new().with_prefix().with_serializable();
    let rss_before = rss::max_mib(&args.member_pid);
    let sampler = PeakSampler::start(args.member_pid.clone(), RSS_SAMPLE_INTERVAL);
    let mut tally = Tally::new();
    let t = Instant::now();
    let answer = kv.get("big/", Some(options)).await;
    let elapsed = t.elapsed();
    let rss_peak = sampler.stop();
    let (mut keys, mut bytes) = (0u64, 0u64);
    match answer {
        Ok(r) => {
            tally.record_latency(elapsed);
            keys = r.kvs().len() as u64;
            bytes = r
                .kvs()
                .iter()
                .map(|kv| (kv.key().len() + kv.value().len()) as u64)
                .sum();
        }
        Err(e) => tally.fail(why(e)),
    }
    let ops = 1 - tally.errors;
    Ok(Report::new("big-read", ops, tally, elapsed)
        .with("bytes_received", bytes)
        .with("keys", keys)
        .with("rss_before_mib", rss_before)
        .with("rss_peak_mib", rss_peak))
}
