//! The v2 workload of `sim member`: two clients on the v2 store through any member, and a
//! v2 watcher.
//!
//! - Registers: reads (after a ReadIndex round, as `quorum=true`), sets and compare-and-swaps
//!   of `/v2r/k<n>`, in the same linearizability check as the v3 registers (their own keys).
//! - In-order keys: POSTs to `/v2q`; each acknowledged one must be named after its index
//!   and be in the tree at the end.
//! - TTLs: keys under `/v2t` written with TTLs of 1-3 s (sometimes refreshed); at the end no
//!   member may hold one more than [`V2_GRACE_MS`] past its expiry.
//! - The watcher: one recursive stream watcher on `/v2r` on one member at a time; when its
//!   member goes away or cancels it (a snapshot replaced the tree), it resumes on another from
//!   the index after its last event. Each event must come once and in order, and every
//!   acknowledged write in the indexes it covered must be among them, with its value. A
//!   resume older than a member's history (etcd's 401) leaves a gap, which is allowed.

use super::{NodeId, Pending, RegisterInput, RegisterOutput, Server, TICK_MS, World};
use oxcd::node::{Applied, ApplyError, Command, Refusal, Response, V2_SYNC_INTERVAL_MS};
use oxcd::v2::auth::{AuthCommand, Perms, Role, UserWrite};
use oxcd::v2::{Expiry, V2Command, Watched, WatcherId, error as v2error};
use rand::Rng;
use std::collections::BTreeMap;

/// Keys of the v2 registers.
const V2_KEYS: u32 = 4;
/// The v2 registers' keys in the shared register history start here (the v3 ones are below).
const V2_HISTORY_KEY_BASE: u32 = 1000;
/// Keys with TTLs.
const V2_TTL_KEYS: u32 = 4;
/// How long past its expiry a v2 key may still be held: the leader proposes the expiry at
/// most every [`V2_SYNC_INTERVAL_MS`], then it must commit and apply (a few ticks).
pub(super) const V2_GRACE_MS: u64 = V2_SYNC_INTERVAL_MS + 5 * TICK_MS;

/// A v2 client's request in flight.
#[derive(Clone, Debug)]
pub(super) enum V2Op {
    Register {
        key: u32,
        input: RegisterInput,
        history: usize,
    },
    Queue,
    Ttl,
    /// A v2 auth change: its answer is not checked here; the members' auth states are (they
    /// are in [`v2_state`]), and its index counts in the register and watcher checks.
    Auth,
}

/// What the v2 clients and the watcher learned.
#[derive(Default)]
pub(super) struct V2Model {
    /// Acknowledged register writes: index → (key, value).
    acked: BTreeMap<u64, (u32, u64)>,
    /// Acknowledged in-order keys: (index, key).
    queued: Vec<(u64, String)>,
    watcher: V2Watcher,
}

#[derive(Default)]
struct V2Watcher {
    at: Option<(NodeId, WatcherId)>,
    /// The next index it waits for (0: not started).
    next_index: u64,
    /// The first index it covers.
    first: u64,
    /// Indexes it could not cover (a history cleared under it): `[from, to)`.
    gaps: Vec<(u64, u64)>,
    /// What it got: index → (key, value).
    seen: BTreeMap<u64, (String, Option<String>)>,
}

fn register_path(key: u32) -> String {
    format!("/v2r/k{key}")
}

impl World {
    /// A v2 client's next request, sent to member `at`.
    pub(super) fn v2_op(&mut self, c: usize, at: NodeId) {
        let now = self.now_ms();
        match self.rng.gen_range(0..20) {
            0..=12 => {
                let key = self.rng.gen_range(0..V2_KEYS);
                let (input, history) = self.start_register_op(c, V2_HISTORY_KEY_BASE + key, 0..3);
                let pending = Pending::V2(V2Op::Register {
                    key,
                    input,
                    history,
                });
                let path = register_path(key);
                let cmd = match input {
                    RegisterInput::Read => {
                        self.send(c, at, pending, |s, t, now| s.handle_read(t, now));
                        return;
                    }
                    RegisterInput::Write(v) => V2Command::Set {
                        path,
                        dir: false,
                        value: v.to_string(),
                        expiry: Expiry::default(),
                    },
                    RegisterInput::Cas { from, to } => V2Command::CompareAndSwap {
                        path,
                        prev_value: from.to_string(),
                        prev_index: 0,
                        value: to.to_string(),
                        expiry: Expiry::default(),
                    },
                };
                let cmd = Command::V2(cmd);
                self.send(c, at, pending, |s, t, now| s.handle_propose(cmd, t, now));
            }
            13 => {
                let cmd = Command::V2Auth(self.v2_auth_change());
                let pending = Pending::V2(V2Op::Auth);
                self.send(c, at, pending, |s, t, now| s.handle_propose(cmd, t, now));
            }
            14 | 15 => {
                let cmd = Command::V2(V2Command::Create {
                    path: "/v2q".into(),
                    dir: false,
                    value: format!("c{c}"),
                    unique: true,
                    expiry: Expiry::default(),
                });
                let pending = Pending::V2(V2Op::Queue);
                self.send(c, at, pending, |s, t, now| s.handle_propose(cmd, t, now));
            }
            _ => {
                let key = self.rng.gen_range(0..V2_TTL_KEYS);
                let ttl_ms = self.rng.gen_range(1000..=3000u64);
                let expiry = Expiry {
                    at_ms: Some(now + ttl_ms),
                    refresh: self.rng.gen_bool(0.3),
                };
                let path = format!("/v2t/k{key}");
                let cmd = if expiry.refresh {
                    V2Command::Update {
                        path,
                        value: String::new(),
                        expiry,
                    }
                } else {
                    V2Command::Set {
                        path,
                        dir: false,
                        value: "t".into(),
                        expiry,
                    }
                };
                let cmd = Command::V2(cmd);
                let pending = Pending::V2(V2Op::Ttl);
                self.send(c, at, pending, |s, t, now| s.handle_propose(cmd, t, now));
            }
        }
    }

    /// A random change to the v2 auth state, among a few users and roles.
    fn v2_auth_change(&mut self) -> AuthCommand {
        let user = format!("u{}", self.rng.gen_range(0..3));
        let role = format!("r{}", self.rng.gen_range(0..3));
        let some = |v: &str| Some(vec![v.to_string()]);
        match self.rng.gen_range(0..7) {
            0 => AuthCommand::PutUser {
                mode: UserWrite::CreateOrUpdate,
                name: if self.rng.gen_bool(0.3) {
                    "root".into()
                } else {
                    user
                },
                // Any text: hashing is the server's, not the log's.
                password: format!("h{}", self.rng.r#gen::<u8>()),
                roles: None,
                grant: vec![],
                revoke: vec![],
            },
            1 | 2 => {
                let grant = self.rng.gen_bool(0.5);
                AuthCommand::PutUser {
                    mode: UserWrite::Update,
                    name: user,
                    password: String::new(),
                    roles: None,
                    grant: if grant { vec![role.clone()] } else { vec![] },
                    revoke: if grant { vec![] } else { vec![role] },
                }
            }
            3 => AuthCommand::CreateRole(Role {
                name: role,
                perms: Perms {
                    read: some("/v2r/*"),
                    write: None,
                },
            }),
            4 => AuthCommand::UpdateRole {
                name: role,
                grant: Some(Perms {
                    read: None,
                    write: some(&format!("/v2r/k{}", self.rng.gen_range(0..V2_KEYS))),
                }),
                revoke: None,
            },
            5 => AuthCommand::DeleteUser { name: user },
            _ => AuthCommand::SetEnabled(self.rng.gen_bool(0.5)),
        }
    }

    /// A v2 request's answer.
    pub(super) fn v2_done(&mut self, at: NodeId, op: V2Op, response: Response) {
        let V2Op::Register {
            key,
            input,
            history,
        } = op
        else {
            if let (V2Op::Queue, Response::Command(Ok((Applied::V2(events), _)))) = (&op, &response)
                && let Some(e) = events.first()
            {
                self.v2
                    .queued
                    .push((e.node.modified_index, e.node.key.clone()));
            }
            return;
        };
        let refused = matches!(
            &response,
            Response::Command(Err(Refusal::Raft(_) | Refusal::NoSpace))
        ) || matches!(
            &response,
            Response::Command(Err(Refusal::Apply(e))) if !matches!(e, ApplyError::V2(_))
        );
        let output = match (input, &response) {
            (RegisterInput::Read, Response::Read(Ok(()))) => {
                let s = self.server(at).expect("it answered");
                match s
                    .member()
                    .applier()
                    .v2()
                    .store
                    .get(&register_path(key), false)
                {
                    Ok(e) => Some(RegisterOutput::Read(
                        e.node.value.as_deref().and_then(|v| v.parse().ok()),
                    )),
                    Err(e) if e.code == v2error::KEY_NOT_FOUND => Some(RegisterOutput::Read(None)),
                    Err(_) => None,
                }
            }
            (RegisterInput::Write(v), Response::Command(Ok((Applied::V2(events), _)))) => {
                if let Some(e) = events.first() {
                    self.v2.acked.insert(e.node.modified_index, (key, v));
                }
                Some(RegisterOutput::Write)
            }
            (RegisterInput::Cas { to, .. }, Response::Command(Ok((Applied::V2(events), _)))) => {
                if let Some(e) = events.first() {
                    self.v2.acked.insert(e.node.modified_index, (key, to));
                }
                Some(RegisterOutput::Cas { ok: true })
            }
            (
                RegisterInput::Cas { .. },
                Response::Command(Err(Refusal::Apply(ApplyError::V2(e)))),
            ) if matches!(e.code, v2error::TEST_FAILED | v2error::KEY_NOT_FOUND) => {
                Some(RegisterOutput::Cas { ok: false })
            }
            _ => None,
        };
        let ret = self.event();
        if self.finish_register_op(history, input, output, refused, ret) {
            self.report.v2_ops_known += 1;
        }
    }

    /// Moves the v2 watcher along: takes what its member queued for it, and (re)opens it on
    /// another member when its own went away or cancelled it.
    pub(super) fn v2_watch(&mut self) {
        if let Some((m, id)) = self.v2.watcher.at {
            let mut got = Vec::new();
            let mut watching = false;
            if let Some(s) = self.server(m) {
                let (hub, _) = s.member_mut().applier_mut().v2_hub_mut();
                while let Some((w, e)) = hub.poll_event() {
                    if w == id {
                        got.push(e);
                    }
                }
                watching = hub.is_watching(id);
            }
            for e in got {
                self.v2_seen(m, e);
            }
            if !watching || !self.in_cluster(m) {
                if let Some(s) = self.server(m) {
                    s.member_mut().applier_mut().v2_hub_mut().0.cancel(id);
                }
                self.v2.watcher.at = None;
            }
        }
        if self.v2.watcher.at.is_some() {
            return;
        }
        let up = self.up();
        if up.is_empty() {
            return;
        }
        let m = up[self.rng.gen_range(0..up.len())];
        let since = self.v2.watcher.next_index;
        let s = self.server(m).expect("up");
        let (hub, store) = s.member_mut().applier_mut().v2_hub_mut();
        let store_index = store.index();
        let watched = hub.watch("/v2r", true, true, since, store_index);
        self.trace.u64(0x2a7c).u64(m).u64(since);
        match watched {
            Ok(Watched::Found(events, Some(id))) => {
                self.v2_start(store_index);
                for e in events {
                    self.v2_seen(m, e);
                }
                self.v2.watcher.at = Some((m, id));
            }
            Ok(Watched::Waiting(id)) => {
                self.v2_start(store_index);
                self.v2.watcher.at = Some((m, id));
            }
            Ok(Watched::Found(_, None)) => unreachable!("a stream watcher is kept"),
            Err(e) if e.code == v2error::EVENT_INDEX_CLEARED => {
                // This member's history starts after the index asked for: what lies between
                // may be missed, as etcd's clients miss it (they re-read and watch again).
                let resume = store_index + 1;
                if since < resume {
                    self.v2.watcher.gaps.push((since, resume));
                    self.v2.watcher.next_index = resume;
                }
                self.report.v2_watch_gaps += 1;
            }
            Err(e) => self.violation(format!("a v2 watch on member {m} failed: {e}")),
        }
    }

    fn v2_start(&mut self, store_index: u64) {
        let w = &mut self.v2.watcher;
        if w.next_index == 0 {
            w.next_index = store_index + 1;
            w.first = w.next_index;
        }
    }

    fn v2_seen(&mut self, m: NodeId, e: oxcd::v2::Event) {
        let index = e.node.modified_index;
        if index < self.v2.watcher.next_index {
            self.violation(format!(
                "the v2 watcher got index {index} ({}) from member {m} after index {}: an event \
                 twice or out of order",
                e.node.key,
                self.v2.watcher.next_index - 1
            ));
            return;
        }
        self.trace.u64(index);
        self.v2.watcher.next_index = index + 1;
        self.v2
            .watcher
            .seen
            .insert(index, (e.node.key, e.node.value));
        self.report.v2_watch_events += 1;
    }

    /// After the run: the watcher missed no acknowledged write it covered; the in-order keys
    /// are named after their indexes and all there; no key outlived its TTL by more than the
    /// grace, on any member.
    pub(super) fn check_v2(&mut self) {
        let w = &self.v2.watcher;
        let covered = |i: u64| {
            i >= w.first && i < w.next_index && !w.gaps.iter().any(|(a, b)| i >= *a && i < *b)
        };
        let mut why = None;
        for (index, (key, value)) in &self.v2.acked {
            if !covered(*index) {
                continue;
            }
            let want = (register_path(*key), Some(value.to_string()));
            match w.seen.get(index) {
                Some(got) if *got == want => {}
                got => {
                    why = Some(format!(
                        "the v2 watcher covered index {index}, acknowledged as {want:?}, and \
                         got {got:?}"
                    ));
                    break;
                }
            }
        }
        if let Some(why) = why {
            self.violation(why);
            return;
        }
        let now = self.now_ms();
        let Some(leader) = self.leader() else {
            self.violation("no leader for the v2 checks".into());
            return;
        };
        let listed = self.nodes[&leader]
            .server
            .as_ref()
            .expect("leads")
            .member()
            .applier()
            .v2()
            .store
            .get("/v2q", false);
        let names: Vec<String> = listed
            .ok()
            .and_then(|e| e.node.nodes)
            .unwrap_or_default()
            .into_iter()
            .map(|n| n.key)
            .collect();
        for (index, key) in &self.v2.queued {
            if *key != format!("/v2q/{index:020}") {
                self.violation(format!("in-order key {key} was created at index {index}"));
                return;
            }
            if !names.contains(key) {
                self.violation(format!("acknowledged in-order key {key} is gone"));
                return;
            }
        }
        // The cluster's members (one removed while cut off never learns it, and keeps its
        // stale tree).
        let members = self.members_now(self.nodes[&leader].server.as_ref().expect("leads"));
        for id in &members {
            let Some(s) = &self.nodes[id].server else {
                continue;
            };
            let Ok(dir) = s.member().applier().v2().store.get("/v2t", false) else {
                continue;
            };
            for n in dir.node.nodes.unwrap_or_default() {
                if let Some(t) = n.expiration_ms
                    && t + V2_GRACE_MS < now
                {
                    let why = format!(
                        "v2 key {} outlived its TTL on member {id}: it expired at {t} ms, it is \
                         {now} ms",
                        n.key
                    );
                    self.violation(why);
                    return;
                }
            }
        }
    }
}

/// What the log decides of a member's v2 tree, in words: its index and a digest of it (the
/// whole tree is read: for the end of a run, not every step).
pub(super) fn v2_state(s: &Server) -> String {
    let store = &s.member().applier().v2().store;
    let mut digest = crate::fnv::Fnv::default();
    if let Ok(e) = store.get("/", true) {
        digest.bytes(format!("{:?}", e.node).as_bytes());
    }
    digest.bytes(format!("{:?}", store.auth()).as_bytes());
    format!("v2 index {} digest {:x}", store.index(), digest.finish())
}
