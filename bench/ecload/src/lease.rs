//! The lease workloads: lease-keepalive (renewals over keep-alive streams, each timed from
//! the request's send to its answer) and lease-storm (many leases expiring while puts run).
//!
//! It does not judge how fast a server expires leases: lease-storm reports when the last
//! "storm/" key was gone and the puts' latencies across that moment, nothing more.

use crate::kv::{self, Op};
use crate::report::{Report, Tally, why};
use crate::{Args, Work, connect_all};
use etcd_client::{Client, GetOptions, PutOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time to live of the leases lease-keepalive renews.
const KEEPALIVE_LEASE_TTL_S: i64 = 60;
/// Between two polls for the storm's keys.
const STORM_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long after the time to live the storm's keys may take to go.
const STORM_EXPIRY_WAIT_MAX: Duration = Duration::from_secs(60);

/// `lease-keepalive`: each client grants a lease, then renews it over one keep-alive stream
/// until `--total` renewals are answered over all clients; the lease is revoked after.
pub(crate) async fn keepalive(args: Arc<Args>) -> Result<Report, String> {
    let conns = connect_all(&args).await?;
    let work = Arc::new(Work::new(args.total));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for c in 0..args.clients {
        let (client, work) = (conns[c % conns.len()].clone(), work.clone());
        tasks.push(tokio::spawn(renewals(client, work)));
    }
    let mut tally = Tally::new();
    for t in tasks {
        tally.merge(t.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed();
    Ok(kv::report("lease-keepalive", args.total, (tally, elapsed)))
}

/// One keep-alive client. etcd-client opens the stream by sending the first renewal and
/// waiting for its answer: that call is timed as the first renewal.
async fn renewals(client: Client, work: Arc<Work>) -> Tally {
    let mut tally = Tally::new();
    let mut lease = client.lease_client();
    let id = match lease.grant(KEEPALIVE_LEASE_TTL_S, None).await {
        Ok(r) => r.id(),
        Err(e) => {
            // Every renewal this client would have made fails with the grant.
            let why = why(e);
            while work.take().is_some() {
                tally.fail(why.clone());
            }
            return tally;
        }
    };
    let mut stream = None;
    while work.take().is_some() {
        let t = Instant::now();
        let Some((keeper, answers)) = &mut stream else {
            match lease.keep_alive(id).await {
                Ok(opened) => {
                    tally.record(t);
                    stream = Some(opened);
                }
                Err(e) => tally.fail(why(e)),
            }
            continue;
        };
        if let Err(e) = keeper.keep_alive().await {
            tally.fail(why(e));
            continue;
        }
        match answers.message().await {
            Ok(Some(r)) if r.ttl() > 0 => tally.record(t),
            Ok(Some(_)) => tally.fail("the lease expired".into()),
            Ok(None) => tally.fail("the keep-alive stream ended".into()),
            Err(e) => tally.fail(why(e)),
        }
    }
    drop(stream);
    let _ = lease.revoke(id).await;
    tally
}

/// `lease-storm`: grants `leases` leases of `ttl_s` (one key "storm/<i>" on each) with the
/// clients, waits until one second before the first could expire, then runs the put workload
/// while polling for the storm's keys to be gone.
pub(crate) async fn storm(args: Arc<Args>, leases: u64, ttl_s: i64) -> Result<Report, String> {
    let conns = connect_all(&args).await?;
    let ttl = Duration::from_secs(ttl_s as u64);
    let first_grant = Instant::now();
    let grants = grant_all(&args, &conns, leases, ttl_s).await?;
    let grant_seconds = first_grant.elapsed().as_secs_f64();
    eprintln!("ecload lease-storm: {leases} leases granted in {grant_seconds:.3} s");
    let puts_at = first_grant + ttl - Duration::from_secs(1);
    tokio::time::sleep_until(puts_at.into()).await;

    let poller = tokio::spawn(storm_gone(conns[0].clone(), first_grant, ttl));
    let puts_started = Instant::now();
    let (mut tally, elapsed) = kv::requests(&args, &conns, Op::Put, args.total).await?;
    let put_errors = tally.errors;
    let gone = poller.await.map_err(|e| e.to_string())?;
    let expired_seconds = match gone {
        Ok(at) => {
            if puts_started + elapsed < first_grant + at {
                eprintln!("ecload lease-storm: the puts ended before the storm's keys were gone");
            }
            Some(at.as_secs_f64())
        }
        Err(why) => {
            tally.fail(why);
            None
        }
    };
    tally.merge(grants);
    Ok(
        Report::new("lease-storm", args.total - put_errors, tally, elapsed)
            .with("grant_seconds", grant_seconds)
            .with("expired_seconds", expired_seconds)
            .with("leases", leases),
    )
}

/// Grants the storm's leases and puts a key on each, `--clients` at a time; the failures.
async fn grant_all(
    args: &Arc<Args>,
    conns: &[Client],
    leases: u64,
    ttl_s: i64,
) -> Result<Tally, String> {
    let work = Arc::new(Work::new(leases));
    let mut tasks = Vec::with_capacity(args.clients);
    for c in 0..args.clients {
        let client = conns[c % conns.len()].clone();
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lease, mut kv) = (client.lease_client(), client.kv_client());
            let mut tally = Tally::new();
            while let Some(i) = work.take() {
                let granted = match lease.grant(ttl_s, None).await {
                    Ok(r) => r.id(),
                    Err(e) => {
                        tally.fail(format!("lease grant: {}", why(e)));
                        continue;
                    }
                };
                let on_lease = PutOptions::new().with_lease(granted);
                if let Err(e) = kv.put(format!("storm/{i}"), "x", Some(on_lease)).await {
                    tally.fail(format!("put on a lease: {}", why(e)));
                }
            }
            tally
        }));
    }
    let mut tally = Tally::new();
    for t in tasks {
        tally.merge(t.await.map_err(|e| e.to_string())?);
    }
    Ok(tally)
}

/// Polls (count-only, serializable) until no "storm/" key is left: the time from the first
/// grant when that was seen, or why it was not.
async fn storm_gone(
    client: Client,
    first_grant: Instant,
    ttl: Duration,
) -> Result<Duration, String> {
    let mut kv = client.kv_client();
    let deadline = first_grant + ttl + STORM_EXPIRY_WAIT_MAX;
    let mut left = None;
    while Instant::now() < deadline {
        let options = GetOptions::new()
            .with_prefix()
            .with_count_only()
            .with_serializable();
        match kv.get("storm/", Some(options)).await {
            Ok(r) if r.count() == 0 => return Ok(first_grant.elapsed()),
            Ok(r) => left = Some(r.count()),
            Err(e) => eprintln!("ecload lease-storm: polling: {}", why(e)),
        }
        tokio::time::sleep(STORM_POLL_INTERVAL).await;
    }
    Err(format!(
        "{} storm keys left {} s after the ttl",
        left.map_or("some".into(), |n| n.to_string()),
        STORM_EXPIRY_WAIT_MAX.as_secs()
    ))
}
