//! The client workloads and their checkers, one implementation shared by the two harnesses
//! that run a real oxcd: the madsim cluster simulation (`cluster`, simulated network, disk and
//! clock) and the live harness (`live`, real processes in network namespaces, real faults).
//!
//! This module owns what clients do and what is checked afterwards: registers with
//! compare-and-set (linearizability), list-append transactions (strict serializability), a
//! watcher and a slow watcher (watch guarantees), leases (no key outlives its lease; no lease
//! renewed in time lapses early), locks and elections through the services (mutual exclusion,
//! one leader), and after healing: liveness, equal HashKV at a common revision, no acknowledged
//! write lost. It does not own starting members or injecting faults (each harness does), nor
//! the linearizability search itself ([`crate::checker`]).
//!
//! Workloads find members through [`client_url`]: the harness names the endpoints once with
//! [`set_endpoints`]. Tasks start through a [`Spawner`], so that under madsim each client runs
//! on a node of its own (killing a member never kills a client) and live they are tokio tasks.

pub mod appends;
pub mod elections;
pub mod leases;
pub mod locks;
pub mod membership;
pub mod registers;
pub mod timeline;
pub mod watcher;

use crate::checker::history_files::RegisterInput;
use crate::checker::linearizability::{Limits, Operation, Verdict, check_operations};
use crate::checker::registers::RegistersModel;
use oxcd::pb::etcdserverpb as pb;
use oxcd::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use registers::{History, Outcome, Recorded, SerialReads, perform};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Registers the workload uses: few, so that operations contend.
pub const KEYS: u32 = 3;
/// How long a client waits for one answer before it counts the outcome as unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one member gets to hand over a history after the run before the next is asked.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(20);
/// After the faults stop: the bound for a write to succeed again.
const LIVENESS_BOUND: Duration = Duration::from_secs(30);
/// Beyond a lease's lapse (or the healing, if later): a leader change's grace of one election
/// timeout, and time for the revoke to commit.
const LEASE_GRACE: Duration = Duration::from_secs(3);
/// Clients taking the one lock: the even ones through the Lock service, the odd ones with the
/// client-side recipe.
const LOCK_CLIENTS: usize = 3;
/// Candidates in the one election (and one observer).
const ELECTION_CANDIDATES: usize = 2;
/// Clients of the multi-key transaction (list-append) workload.
const TXN_CLIENTS: usize = 2;
/// A client's pause between operations, at most.
pub const THINK_MS_MAX: u64 = 30;
/// The linearizability search's budget per run.
const SEARCH_STEPS_MAX: u64 = 5_000_000;

/// Each member's client and peer URL.
static ENDPOINTS: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());

/// Names the members' client and peer URLs, member `i` at index `i`.
pub fn set_endpoints(urls: Vec<(String, String)>) {
    *ENDPOINTS.write().expect("not poisoned") = urls;
}

/// Member `m`'s client URL.
pub fn client_url(m: usize) -> String {
    ENDPOINTS.read().expect("not poisoned")[m].0.clone()
}

/// Member `m`'s peer URL (how the member list names it).
pub fn peer_url(m: usize) -> String {
    ENDPOINTS.read().expect("not poisoned")[m].1.clone()
}

/// Starts a workload task: `name` and `ip` say where (madsim gives each client a node with
/// that address; live runs ignore both).
pub trait Spawner {
    fn spawn<F>(&self, name: &str, ip: &str, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
}

/// What a run's workloads are.
#[derive(Clone, Debug)]
pub struct Plan {
    pub seed: u64,
    pub nodes: usize,
    /// Register clients.
    pub clients: usize,
    /// Run the other workloads too (transactions, watchers, leases, locks, elections).
    pub others: bool,
    pub start: Instant,
    pub until: Instant,
}

/// One checker's verdict.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    /// What it looked at (operations, events, acquisitions).
    pub looked_at: usize,
    pub violations: Vec<String>,
    /// A finding that is not a violation of what the store promises (locks seen from the
    /// clients, which leases cannot make safe).
    pub informational: bool,
}

/// Everything a run's checks found.
#[derive(Debug, Default)]
pub struct Findings {
    pub checks: Vec<Check>,
    /// The register history, sorted by call, unknown writes resolved where the store tells.
    pub recorded: Vec<Recorded>,
    /// The register operations that show a linearizability violation.
    pub marked: Vec<usize>,
    /// Partitions the linearizability search gave up on (neither verdict).
    pub undecided: usize,
    /// Counts the madsim trace hash covers (lock acquisitions, transactions, watch events...).
    pub counts: Vec<u64>,
    pub txns: Vec<appends::TxnRecord>,
    pub acquired: Vec<locks::Acquired>,
    /// What the run exercised, beyond the verdicts (the slow watcher's catching up, say).
    pub notes: Vec<String>,
}

impl Findings {
    /// Every violation, each prefixed by its checker (informational findings left out).
    pub fn violations(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.informational)
            .flat_map(|c| c.violations.iter().map(move |v| format!("{}: {v}", c.name)))
            .collect()
    }

    fn add(&mut self, name: &'static str, looked_at: usize, violations: Vec<String>) {
        self.checks.push(Check {
            name,
            looked_at,
            violations,
            informational: false,
        });
    }
}

/// The workloads of a run, started.
pub struct Running {
    plan: Plan,
    history: History,
    serial: SerialReads,
    clients: Vec<JoinHandle<()>>,
    watch: Option<JoinHandle<watcher::WatchLog>>,
    slow_watch: Option<JoinHandle<watcher::WatchLog>>,
    lease: Option<JoinHandle<leases::LeaseLog>>,
    locks: Vec<JoinHandle<Vec<locks::Acquired>>>,
    candidates: Vec<JoinHandle<elections::Candidacy>>,
    observer: Option<JoinHandle<Vec<Vec<elections::Told>>>>,
    txns: Vec<JoinHandle<Vec<appends::TxnRecord>>>,
}

impl Running {
    /// Starts every workload of `plan`; each runs until `plan.until`.
    pub fn start(sp: &impl Spawner, plan: Plan) -> Running {
        let (seed, n, start, until) = (plan.seed, plan.nodes, plan.start, plan.until);
        let history: History = Arc::new(Mutex::new(Vec::new()));
        let serial: SerialReads = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..plan.clients)
            .map(|c| {
                let (h, s) = (history.clone(), serial.clone());
                sp.spawn(
                    &format!("client{c}"),
                    &format!("10.0.1.{}", c + 1),
                    registers::client(c, seed, n, start, until, h, s),
                )
            })
            .collect();
        let others = plan.others;
        let watch = others.then(|| {
            sp.spawn(
                "watcher",
                "10.0.1.100",
                watcher::follow(seed, n, until, None),
            )
        });
        let lease = others.then(|| sp.spawn("leaser", "10.0.1.101", leases::run(seed, n, until)));
        let locks = (0..if others { LOCK_CLIENTS } else { 0 })
            .map(|c| {
                sp.spawn(
                    &format!("locker{c}"),
                    &format!("10.0.1.{}", 110 + c),
                    async move {
                        if c % 2 == 0 {
                            locks::run_service(c, seed, n, until).await
                        } else {
                            locks::run(c, seed, n, until).await
                        }
                    },
                )
            })
            .collect();
        let candidates = (0..if others { ELECTION_CANDIDATES } else { 0 })
            .map(|c| {
                sp.spawn(
                    &format!("candidate{c}"),
                    &format!("10.0.1.{}", 140 + c),
                    elections::candidate(c, seed, n, until),
                )
            })
            .collect();
        let observer = others.then(|| {
            sp.spawn(
                "observer",
                "10.0.1.150",
                elections::observer(seed, n, until),
            )
        });
        let txns = (0..if others { TXN_CLIENTS } else { 0 })
            .map(|c| {
                sp.spawn(
                    &format!("txn{c}"),
                    &format!("10.0.1.{}", 120 + c),
                    appends::run(c, seed, n, start, until),
                )
            })
            .collect();
        let slow_watch = others.then(|| {
            sp.spawn(
                "slow-watcher",
                "10.0.1.102",
                watcher::follow(seed ^ 0x736c_6f77, n, until, Some(watcher::SLOW_READ)),
            )
        });
        Running {
            plan,
            history,
            serial,
            clients,
            watch,
            slow_watch,
            lease,
            locks,
            candidates,
            observer,
            txns,
        }
    }

    /// Waits for the workloads to end, then checks everything against the store (through
    /// `sp`, from a node named `checker`). `healed`: when the faults stopped. `jumps`: when a
    /// member's lease clock jumped forward (renewals spanning one are not held to their TTL).
    pub async fn finish(self, sp: &impl Spawner, healed: Instant, jumps: Vec<Instant>) -> Findings {
        let n = self.plan.nodes;
        let mut f = Findings::default();
        let mut failed = Vec::new();
        for t in self.clients {
            if t.await.is_err() {
                failed.push("a client task failed".to_string());
            }
        }
        let watch_log = join_one(self.watch, "the watcher", &mut failed).await;
        let slow_log = join_one(self.slow_watch, "the slow watcher", &mut failed).await;
        let leased = join_one(self.lease, "the lease task", &mut failed).await;
        let acquired = join_lists(self.locks, "a lock client failed", &mut failed).await;
        let mut elected = Vec::new();
        let mut election_problems = Vec::new();
        for t in self.candidates {
            match t.await {
                Ok(c) => {
                    elected.extend(c.elected);
                    election_problems.extend(c.problems);
                }
                Err(_) => failed.push("an election candidate failed".to_string()),
            }
        }
        let observed = join_one(self.observer, "the election observer", &mut failed).await;
        let txns = join_lists(self.txns, "a transaction client failed", &mut failed).await;
        f.add("workloads", 0, failed);
        f.notes.push(format!(
            "slow watcher: {} responses caught up from history (header ahead of their events), \
             up to {} revisions behind; {} streams opened",
            slow_log.catch_up, slow_log.lag_max, slow_log.resumes
        ));
        f.notes.push(format!(
            "lease renewal: {} probes of renewed leases read back",
            leased.probes.len()
        ));
        f.counts = vec![
            acquired.len() as u64,
            txns.len() as u64,
            watch_log.events.len() as u64,
            watch_log.resumes,
            leased.keys.len() as u64,
            elected.len() as u64,
            observed.iter().map(Vec::len).sum::<usize>() as u64,
        ];
        let after = sp
            .spawn("checker", "10.0.3.1", async move {
                let mut g = Findings::default();
                let live = live_within(n, LIVENESS_BOUND).await;
                let ok = live.is_ok();
                g.add("liveness", 1, live.err().into_iter().collect());
                if !ok {
                    return (g, None);
                }
                let hashes = hashes_agree(n).await;
                g.add("hashkv", n, hashes.err().into_iter().collect());
                let mut problems = Vec::new();
                let written = registers::written_values(n)
                    .await
                    .map_err(|e| problems.push(format!("history: {e}")))
                    .ok();
                // A history that could not be read is a violation of its own ("history");
                // the checks that need it are then not run.
                match locks::history(n, "lock/", "lock0").await {
                    Ok(lock_keys) => g.add(
                        "lock",
                        acquired.len(),
                        locks::check("lock", &acquired, &lock_keys),
                    ),
                    Err(e) => problems.push(format!("history: {e}")),
                }
                g.checks.push(Check {
                    name: "lock (client view)",
                    looked_at: acquired.len(),
                    violations: locks::overlaps(&acquired),
                    informational: true,
                });
                match locks::history(n, elections::PREFIX, elections::PREFIX_END).await {
                    Ok(election_keys) => {
                        let mut v = election_problems;
                        v.extend(locks::check("election", &elected, &election_keys));
                        v.extend(elections::check_observed(&observed, &election_keys));
                        g.add("election", elected.len(), v);
                    }
                    Err(e) => problems.push(format!("history: {e}")),
                }
                match appends::history(n).await {
                    Ok(lists) => g.add("list-append", txns.len(), appends::check(&txns, &lists)),
                    Err(e) => problems.push(format!("history: {e}")),
                }
                g.add(
                    "lease expiry",
                    leased.keys.len(),
                    leases::check(&leased.keys, n, healed, LEASE_GRACE).await,
                );
                g.add(
                    "lease renewal",
                    leased.probes.len(),
                    leases::check_renewals(&leased.probes, &jumps),
                );
                if let Some(written) = &written {
                    let v = watcher::check(&watch_log, written);
                    g.add("watch", watch_log.events.len(), v);
                    let v = watcher::check(&slow_log, written);
                    g.add("slow watch", slow_log.events.len(), v);
                }
                g.add("history", 0, problems);
                g.txns = txns;
                g.acquired = acquired;
                (g, written)
            })
            .await;
        let written = match after {
            Ok((g, written)) => {
                f.checks.extend(g.checks);
                f.txns = g.txns;
                f.acquired = g.acquired;
                written
            }
            Err(e) => {
                f.add("liveness", 1, vec![format!("the checker task failed: {e}")]);
                None
            }
        };
        let mut recorded = self.history.lock().expect("one thread").clone();
        recorded.sort_by_key(|r| (r.op.call, r.op.client));
        // Without the store's history (a violation already), writes of unknown outcome stay
        // unknown.
        if let Some(written) = &written {
            let end = registers::nanos(self.plan.start);
            let lost = registers::resolve(&mut recorded, written, end);
            f.add("lost or invented writes", recorded.len(), lost);
            let serial = self.serial.lock().expect("one thread").clone();
            let stale = registers::check_serializable(&serial, written);
            f.add("serializable reads", serial.len(), stale);
        }
        f.add(
            "revision invariants",
            recorded.len(),
            registers::revision_violations(&recorded),
        );
        let ops: Vec<Operation<_, _>> = recorded.iter().map(|r| r.op.clone()).collect();
        let mut lin = Vec::new();
        match check_operations::<RegistersModel>(
            &ops,
            Limits {
                steps_max: SEARCH_STEPS_MAX,
            },
        ) {
            Verdict::Linearizable => {}
            Verdict::Unknown { unfinished, .. } => f.undecided = unfinished.len(),
            Verdict::NotLinearizable(cx) => {
                f.marked = cx.window.clone();
                let mut window: Vec<String> = cx
                    .window
                    .iter()
                    .map(|&i| registers::describe(&recorded[i]))
                    .collect();
                window.insert(
                    0,
                    format!(
                        "register reg/{} has no linearization; the operations that show it:",
                        recorded[cx.blocked].op.input.key
                    ),
                );
                lin.push(window.join("\n    "));
            }
        }
        f.add("linearizability", recorded.len(), lin);
        f.recorded = recorded;
        f
    }
}

/// Joins an optional task; a failure adds `what` to `failed` and gives the default.
async fn join_one<T: Default>(
    task: Option<JoinHandle<T>>,
    what: &str,
    failed: &mut Vec<String>,
) -> T {
    match task {
        Some(t) => t.await.unwrap_or_else(|_| {
            failed.push(format!("{what} failed"));
            T::default()
        }),
        None => T::default(),
    }
}

/// Joins `tasks` in order and concatenates what they returned; each task that failed adds
/// `failed` to `violations`.
async fn join_lists<T>(
    tasks: Vec<JoinHandle<Vec<T>>>,
    failed: &str,
    violations: &mut Vec<String>,
) -> Vec<T> {
    let mut all = Vec::new();
    for t in tasks {
        match t.await {
            Ok(items) => all.extend(items),
            Err(_) => violations.push(failed.to_string()),
        }
    }
    all
}

/// Asks each member in turn, [`HISTORY_TIMEOUT`] each, until one answers `ask`; otherwise
/// fails with the last member's reason, as "no member gave {what}: m{i}: {why}".
async fn from_any_member<T, Fut>(
    nodes: usize,
    what: &str,
    mut ask: impl FnMut(usize) -> Fut,
) -> Result<T, String>
where
    Fut: Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for m in 0..nodes {
        match tokio::time::timeout(HISTORY_TIMEOUT, ask(m)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => last = format!("m{m}: {e}"),
            Err(_) => last = format!("m{m}: timed out"),
        }
    }
    Err(format!("no member gave {what}: {last}"))
}

/// A put that succeeds within `bound`, through any member: the cluster is live.
pub async fn live_within(nodes: usize, bound: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut attempt = 0;
    while started.elapsed() < bound {
        let m = attempt % nodes;
        attempt += 1;
        if let Outcome::Done(..) = perform(m, KEYS, RegisterInput::Write(attempt as u64)).await {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "no write succeeded within {bound:?} after the faults stopped"
    ))
}

/// Every member's HashKV at one revision they all have: equal, or a violation.
async fn hashes_agree(nodes: usize) -> Result<(), String> {
    // Wait (bounded) until every member has applied the same revision.
    let mut revisions = Vec::new();
    for _ in 0..100 {
        revisions.clear();
        for m in 0..nodes {
            let ask = async {
                let mut c = MaintenanceClient::connect(client_url(m)).await.ok()?;
                c.hash_kv(pb::HashKvRequest { revision: 0 }).await.ok()
            };
            let Ok(Some(r)) = tokio::time::timeout(OP_TIMEOUT, ask).await else {
                break;
            };
            revisions.push(r.into_inner().header.map_or(0, |h| h.revision));
        }
        if revisions.len() == nodes && revisions.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if revisions.len() != nodes {
        return Err(format!("not every member answered HashKV: {revisions:?}"));
    }
    let at = *revisions.iter().min().expect("members");
    let mut hashes = Vec::new();
    for m in 0..nodes {
        let ask = async {
            let mut c = MaintenanceClient::connect(client_url(m))
                .await
                .map_err(|e| format!("m{m}: {e}"))?;
            c.hash_kv(pb::HashKvRequest { revision: at })
                .await
                .map_err(|e| format!("m{m} HashKV at {at}: {e}"))
        };
        let r = tokio::time::timeout(HISTORY_TIMEOUT, ask)
            .await
            .map_err(|_| format!("m{m} HashKV at {at}: timed out"))??
            .into_inner();
        hashes.push(r.hash);
    }
    if hashes.windows(2).all(|w| w[0] == w[1]) {
        Ok(())
    } else {
        Err(format!(
            "HashKV at revision {at} differs between members: {hashes:?}"
        ))
    }
}
