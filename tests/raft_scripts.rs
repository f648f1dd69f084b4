//! Data-driven interaction tests for the Raft core: every `tests/testdata/raft/*.txt` script
//! drives a few in-memory `RawNode`s step by step and pins what they say and do.
//!
//! What it does not do: no clock, no threads, no randomness beyond each node's
//! `ChaCha8Rng::seed_from_u64(id)`. A message moves only when a command moves it, so every run
//! of a script prints the same thing.
//!
//! # Script format
//!
//! A script is a sequence of blocks separated by blank lines. Lines starting with `#` between
//! blocks are comments. A block is
//!
//! ```text
//! command arg key=value key=(1,2,3)
//! optional input lines
//! ----
//! expected output (no blank lines)
//! ```
//!
//! The harness runs each command and compares its output with the expected lines; a mismatch
//! fails the test with a diff naming the file and the command's line. With `OXCD_REWRITE=1`
//! the files are rewritten with the actual output instead (review the diff before committing).
//!
//! # Commands
//!
//! - `add-nodes <n> [voters=(..)] [learners=(..)] [pre-vote=true] [check-quorum=true]
//!   [election-ticks=10] [heartbeat-ticks=1] [max-size-per-msg=<bytes>] [max-inflight=<n>]
//!   [forwarding=false]`: adds `n` nodes with the next free ids. With voters or learners, each
//!   starts from a bootstrap snapshot (index 1, term 1) holding that membership; without,
//!   from empty storage (a member that joins later). Pre-vote and check-quorum default to off.
//! - `campaign <id>`, `propose <id> <data>`, `read-index <id> <ctx>`,
//!   `transfer-leader from=<id> to=<id>`: the `RawNode` calls of the same names. Print `ok` or
//!   the error.
//! - `propose-conf-change <id> [transition=auto|implicit|explicit]`, with input lines of
//!   changes like `v4 l5 r2` (add voter 4, add learner 5, remove 2); no changes means "leave
//!   the joint configuration".
//! - `tick <id> <n>`; `tick-heartbeat <id>` (heartbeat_ticks ticks); `tick-election <id>` (a
//!   leader: election_ticks ticks, one check-quorum round; anyone else: ticks until its
//!   election timeout fires, at most 2 * election_ticks).
//! - `process-ready <id>..`: takes a Ready, prints it, persists it into the node's `MemStorage`
//!   (snapshot, entries, hard state), applies committed configuration changes, queues
//!   `messages` and `persisted_messages` in the recipients' inboxes, and calls `advance`.
//! - `deliver-msgs <id>.. [from=(..)]`: steps every queued message (or those from the given
//!   senders) into each node, in arrival order.
//! - `stabilize [<id>..]`: process-ready and deliver-msgs on the nodes (all by default) until
//!   nothing moves.
//! - `status <id>`, `raft-log <id>`: print a node's state and its log.
//! - `compact <id> <index>`: snapshots the applied state at `index` (with the membership in
//!   force there) and compacts the storage up to it.
//! - `report-snapshot <leader> <peer> [failure]`: tells the leader how sending a snapshot went.
//! - `restart <id>`: the node crashes and restarts from its storage (what was not persisted is
//!   lost; queued messages stay in the network). Prints its status.
//! - `isolate <id>`, `partition (..) (..)..`, `heal`: cut links (messages across a cut are
//!   dropped when sent, and queued ones when the cut is made), or restore them all.
//!
//! # Output notation
//!
//! `t/i` is the entry at index `i` of term `t`: `log=1/3` in an append is the entry the new
//! ones follow; `last=` in a vote request is the candidate's last entry. An append response's
//! `index` is the last index accepted (or the one rejected, with the follower's `hint` and
//! `hint_term` for the leader's next probe). `round=` on heartbeats is the read round they
//! confirm; `transfer` on a vote request marks an election forced by a leader transfer.
//! `(dropped)` marks a message sent across a cut link. A Ready's `Messages` may leave before it
//! is persisted, `Messages after persist` only after.

mod datadriven;

use bytes::Bytes;
use datadriven::{Command, parse_list, parse_num};
use oxcd::raft::{
    CAMPAIGN_TRANSFER, ConfChange, ConfChangeKind, ConfChangeSingle, ConfChangeTransition,
    ConfState, Config, Entry, EntryKind, MemStorage, Message, MessageKind, NodeId, ProgressState,
    RawNode, Snapshot, SnapshotStatus, StateRole,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

/// Upper bound on process-ready / deliver rounds in one `stabilize`.
const STABILIZE_ROUNDS_MAX: usize = 1000;

#[test]
fn raft_scripts() {
    datadriven::run_dir("raft", Env::default);
}

impl datadriven::Env for Env {
    fn run(&mut self, cmd: &Command, input: &[String]) -> Result<String, String> {
        Env::run(self, cmd, input)
    }
}

struct Node {
    raw: RawNode<MemStorage>,
    /// Messages sent to this node and not yet delivered, in arrival order.
    inbox: VecDeque<Message>,
    /// The membership in force from each index on, to put into snapshots made by `compact`.
    confs: Vec<(u64, ConfState)>,
}

#[derive(Default)]
struct Env {
    nodes: BTreeMap<NodeId, Node>,
    /// Cut links, smaller id first.
    cuts: BTreeSet<(NodeId, NodeId)>,
}

type Output = Result<String, String>;

impl Env {
    fn run(&mut self, cmd: &Command, input: &[String]) -> Output {
        if !input.is_empty() && cmd.name != "propose-conf-change" {
            return Err("this command takes no input lines".into());
        }
        match cmd.name.as_str() {
            "add-nodes" => self.add_nodes(cmd),
            "campaign" => {
                cmd.allow_keys(&[])?;
                let r = self.node(cmd.id()?)?.raw.campaign();
                Ok(result_line(r))
            }
            "propose" => {
                cmd.allow_keys(&[])?;
                let [id, data] = cmd.positional()[..] else {
                    return Err("usage: propose <id> <data>".into());
                };
                let r = self
                    .node(parse_num(id)?)?
                    .raw
                    .propose(Bytes::from(data.to_string()));
                Ok(result_line(r))
            }
            "propose-conf-change" => self.propose_conf_change(cmd, input),
            "read-index" => {
                cmd.allow_keys(&[])?;
                let [id, ctx] = cmd.positional()[..] else {
                    return Err("usage: read-index <id> <ctx>".into());
                };
                let r = self
                    .node(parse_num(id)?)?
                    .raw
                    .read_index(Bytes::from(ctx.to_string()));
                Ok(result_line(r))
            }
            "transfer-leader" => {
                cmd.allow_keys(&["from", "to"])?;
                let (Some(from), Some(to)) = (cmd.num("from")?, cmd.num("to")?) else {
                    return Err("usage: transfer-leader from=<id> to=<id>".into());
                };
                self.node(from)?.raw.transfer_leader(to);
                Ok("ok\n".into())
            }
            "tick" => {
                cmd.allow_keys(&[])?;
                let [id, n] = cmd.positional()[..] else {
                    return Err("usage: tick <id> <n>".into());
                };
                let node = self.node(parse_num(id)?)?;
                for _ in 0..parse_num(n)? {
                    node.raw.tick();
                }
                Ok("ok\n".into())
            }
            "tick-heartbeat" => {
                cmd.allow_keys(&[])?;
                let node = self.node(cmd.id()?)?;
                for _ in 0..node.raw.raft.config().heartbeat_ticks {
                    node.raw.tick();
                }
                Ok("ok\n".into())
            }
            "tick-election" => {
                cmd.allow_keys(&[])?;
                self.node(cmd.id()?)?.tick_election();
                Ok("ok\n".into())
            }
            "process-ready" => {
                cmd.allow_keys(&[])?;
                let mut out = String::new();
                for id in cmd.ids()? {
                    self.node(id)?;
                    self.process_ready(id, &mut out);
                }
                Ok(out)
            }
            "deliver-msgs" => {
                cmd.allow_keys(&["from"])?;
                let from = cmd.values("from").map(|_| cmd.list("from")).transpose()?;
                let mut out = String::new();
                for id in cmd.ids()? {
                    self.node(id)?;
                    self.deliver(id, from.as_deref(), &mut out);
                }
                Ok(out)
            }
            "stabilize" => {
                cmd.allow_keys(&[])?;
                let mut ids = cmd.ids()?;
                if ids.is_empty() {
                    ids = self.nodes.keys().copied().collect();
                }
                self.stabilize(&ids)
            }
            "status" => {
                cmd.allow_keys(&[])?;
                Ok(describe_status(&self.node(cmd.id()?)?.raw))
            }
            "raft-log" => {
                cmd.allow_keys(&[])?;
                Ok(describe_log(&self.node(cmd.id()?)?.raw))
            }
            "compact" => {
                cmd.allow_keys(&[])?;
                let [id, index] = cmd.positional()[..] else {
                    return Err("usage: compact <id> <index>".into());
                };
                self.node(parse_num(id)?)?.compact(parse_num(index)?)
            }
            "report-snapshot" => {
                cmd.allow_keys(&[])?;
                let (leader, peer, status) = match cmd.positional()[..] {
                    [l, p] => (l, p, SnapshotStatus::Finish),
                    [l, p, "failure"] => (l, p, SnapshotStatus::Failure),
                    _ => return Err("usage: report-snapshot <leader> <peer> [failure]".into()),
                };
                let peer = parse_num(peer)?;
                self.node(parse_num(leader)?)?
                    .raw
                    .report_snapshot(peer, status);
                Ok("ok\n".into())
            }
            "restart" => {
                cmd.allow_keys(&[])?;
                self.node(cmd.id()?)?.restart()
            }
            "isolate" => {
                cmd.allow_keys(&[])?;
                let id = cmd.id()?;
                let rest: Vec<NodeId> = self.nodes.keys().copied().filter(|&n| n != id).collect();
                Ok(self.cut(&[vec![id], rest]))
            }
            "partition" => {
                let groups: Vec<Vec<NodeId>> = cmd
                    .args
                    .iter()
                    .map(|a| match &a.values {
                        None if a.key.starts_with('(') => parse_list(&a.key)?
                            .iter()
                            .map(|v| parse_num(v))
                            .collect::<Result<Vec<_>, _>>(),
                        _ => Err(format!("usage: partition (1,2) (3) ..; got {}", a.key)),
                    })
                    .collect::<Result<_, _>>()?;
                Ok(self.cut(&groups))
            }
            "heal" => {
                cmd.allow_keys(&[])?;
                self.cuts.clear();
                Ok("ok\n".into())
            }
            other => Err(format!("unknown command {other}")),
        }
    }

    fn node(&mut self, id: NodeId) -> Result<&mut Node, String> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))
    }

    fn add_nodes(&mut self, cmd: &Command) -> Output {
        cmd.allow_keys(&[
            "voters",
            "learners",
            "pre-vote",
            "check-quorum",
            "election-ticks",
            "heartbeat-ticks",
            "max-size-per-msg",
            "max-inflight",
            "forwarding",
        ])?;
        let n = cmd.id()?;
        let voters = cmd.list("voters")?;
        let learners = cmd.list("learners")?;
        let first = self.nodes.keys().next_back().map_or(1, |&id| id + 1);
        let mut out = String::new();
        for id in first..first + n {
            let mut config = Config::new(id);
            config.pre_vote = cmd.flag("pre-vote", false)?;
            config.check_quorum = cmd.flag("check-quorum", false)?;
            config.disable_proposal_forwarding = !cmd.flag("forwarding", true)?;
            if let Some(v) = cmd.num::<u64>("election-ticks")? {
                config.election_ticks = v as usize;
            }
            if let Some(v) = cmd.num::<u64>("heartbeat-ticks")? {
                config.heartbeat_ticks = v as usize;
            }
            if let Some(v) = cmd.num::<u64>("max-size-per-msg")? {
                config.max_size_per_msg = v;
            }
            if let Some(v) = cmd.num::<u64>("max-inflight")? {
                config.max_inflight_msgs = v as usize;
            }
            let (storage, confs) = if voters.is_empty() && learners.is_empty() {
                (MemStorage::new(), Vec::new())
            } else {
                let cs = ConfState {
                    voters: voters.clone(),
                    learners: learners.clone(),
                    ..ConfState::default()
                };
                (MemStorage::new_with_conf_state(cs.clone()), vec![(1, cs)])
            };
            let raw = RawNode::new(&config, storage, ChaCha8Rng::seed_from_u64(id))
                .map_err(|e| format!("node {id}: {e:?}"))?;
            let hs = raw.raft.hard_state();
            writeln!(
                out,
                "{id}: term={} commit={} last={} {}",
                hs.term,
                hs.commit,
                raw.raft.raft_log.last_index(),
                fmt_conf_state(&raw.status().conf_state)
            )
            .unwrap();
            self.nodes.insert(
                id,
                Node {
                    raw,
                    inbox: VecDeque::new(),
                    confs,
                },
            );
        }
        Ok(out)
    }

    fn propose_conf_change(&mut self, cmd: &Command, input: &[String]) -> Output {
        cmd.allow_keys(&["transition"])?;
        let transition = match cmd.one("transition")? {
            None | Some("auto") => ConfChangeTransition::Auto,
            Some("implicit") => ConfChangeTransition::JointImplicit,
            Some("explicit") => ConfChangeTransition::JointExplicit,
            Some(t) => return Err(format!("unknown transition {t}")),
        };
        let mut changes = Vec::new();
        for word in input.iter().flat_map(|l| l.split_whitespace()) {
            let (kind, id) = word.split_at(1);
            let kind = match kind {
                "v" => ConfChangeKind::AddNode,
                "l" => ConfChangeKind::AddLearnerNode,
                "r" => ConfChangeKind::RemoveNode,
                _ => return Err(format!("bad change {word}: want v<id>, l<id> or r<id>")),
            };
            changes.push(ConfChangeSingle {
                kind,
                node_id: parse_num(id)?,
            });
        }
        let cc = ConfChange {
            transition,
            changes,
            context: Bytes::new(),
        };
        let r = self.node(cmd.id()?)?.raw.propose_conf_change(&cc);
        Ok(result_line(r))
    }

    /// Cuts every link between members of different groups, dropping queued messages across
    /// the cuts.
    fn cut(&mut self, groups: &[Vec<NodeId>]) -> String {
        for (i, a) in groups.iter().enumerate() {
            for b in &groups[i + 1..] {
                for &x in a {
                    for &y in b {
                        self.cuts.insert((x.min(y), x.max(y)));
                    }
                }
            }
        }
        let mut out = String::new();
        for node in self.nodes.values_mut() {
            let cuts = &self.cuts;
            node.inbox.retain(|m| {
                let cut = cuts.contains(&(m.from.min(m.to), m.from.max(m.to)));
                if cut {
                    writeln!(out, "dropped: {}", fmt_msg(m)).unwrap();
                }
                !cut
            });
        }
        if out.is_empty() {
            out.push_str("ok\n");
        }
        out
    }

    fn process_ready(&mut self, id: NodeId, out: &mut String) {
        let node = self.nodes.get_mut(&id).expect("checked by caller");
        if !node.raw.has_ready() {
            writeln!(out, "> {id} has no Ready").unwrap();
            return;
        }
        let rd = node.raw.ready();
        writeln!(out, "> {id} handling Ready").unwrap();
        if let Some(ss) = &rd.soft_state {
            writeln!(out, "  State: {:?} leader={}", ss.role, ss.leader_id).unwrap();
        }
        if let Some(hs) = &rd.hard_state {
            let hs = format!("term={} vote={} commit={}", hs.term, hs.vote, hs.commit);
            writeln!(out, "  HardState: {hs}").unwrap();
        }
        if let Some(snap) = &rd.snapshot {
            writeln!(out, "  Snapshot: {}", fmt_snapshot(snap)).unwrap();
        }
        if !rd.entries.is_empty() {
            writeln!(out, "  Entries:").unwrap();
            for e in &rd.entries {
                writeln!(out, "    {}", fmt_entry(e)).unwrap();
            }
        }

        // Persist: snapshot, then entries, then hard state.
        let storage = node.raw.storage_mut();
        if let Some(snap) = &rd.snapshot {
            storage
                .apply_snapshot(snap.clone())
                .expect("a snapshot from Ready is never out of date");
            node.confs
                .push((snap.metadata.index, snap.metadata.conf_state.clone()));
        }
        storage
            .append(&rd.entries)
            .expect("MemStorage accepts entries from Ready");
        if let Some(hs) = rd.hard_state {
            storage.set_hard_state(hs);
        }

        // Apply.
        if !rd.committed_entries.is_empty() {
            writeln!(out, "  Committed:").unwrap();
        }
        for e in &rd.committed_entries {
            writeln!(out, "    {}", fmt_entry(e)).unwrap();
            if e.kind != EntryKind::ConfChange {
                continue;
            }
            let applied =
                ConfChange::decode(&e.data).and_then(|cc| node.raw.apply_conf_change(&cc));
            match applied {
                Ok(cs) => {
                    writeln!(out, "      applied: {}", fmt_conf_state(&cs)).unwrap();
                    node.confs.push((e.index, cs));
                }
                Err(err) => writeln!(out, "      refused: {err:?}").unwrap(),
            }
        }
        if !rd.read_states.is_empty() {
            writeln!(out, "  ReadStates:").unwrap();
            for rs in &rd.read_states {
                let ctx = String::from_utf8_lossy(&rs.request_ctx);
                writeln!(out, "    index={} ctx={ctx:?}", rs.index).unwrap();
            }
        }
        node.raw.advance();

        // Send. Everything was made durable above, so both kinds of message may go.
        for (title, msgs) in [
            ("Messages", rd.messages),
            ("Messages after persist", rd.persisted_messages),
        ] {
            if msgs.is_empty() {
                continue;
            }
            writeln!(out, "  {title}:").unwrap();
            for m in msgs {
                let delivered = self.route(m.clone());
                let note = if delivered { "" } else { " (dropped)" };
                writeln!(out, "    {}{note}", fmt_msg(&m)).unwrap();
            }
        }
    }

    /// Queues `m` at its recipient unless the link is cut; returns whether it was queued.
    fn route(&mut self, m: Message) -> bool {
        if self.cuts.contains(&(m.from.min(m.to), m.from.max(m.to))) {
            return false;
        }
        match self.nodes.get_mut(&m.to) {
            Some(node) => {
                node.inbox.push_back(m);
                true
            }
            None => false,
        }
    }

    fn deliver(&mut self, id: NodeId, from: Option<&[NodeId]>, out: &mut String) {
        let node = self.nodes.get_mut(&id).expect("checked by caller");
        let (take, keep): (VecDeque<Message>, VecDeque<Message>) = node
            .inbox
            .drain(..)
            .partition(|m| from.is_none_or(|f| f.contains(&m.from)));
        node.inbox = keep;
        if take.is_empty() {
            writeln!(out, "> {id} has no messages").unwrap();
            return;
        }
        writeln!(out, "> {id} receiving messages").unwrap();
        for m in take {
            writeln!(out, "  {}", fmt_msg(&m)).unwrap();
            if let Err(e) = node.raw.step(m) {
                writeln!(out, "    error: {e:?}").unwrap();
            }
        }
    }

    fn stabilize(&mut self, ids: &[NodeId]) -> Output {
        let mut out = String::new();
        for id in ids {
            self.node(*id)?;
        }
        for _ in 0..STABILIZE_ROUNDS_MAX {
            let mut moved = false;
            for &id in ids {
                if self.nodes[&id].raw.has_ready() {
                    self.process_ready(id, &mut out);
                    moved = true;
                }
            }
            for &id in ids {
                if !self.nodes[&id].inbox.is_empty() {
                    self.deliver(id, None, &mut out);
                    moved = true;
                }
            }
            if !moved {
                if out.is_empty() {
                    out.push_str("ok\n");
                }
                return Ok(out);
            }
        }
        Err(format!(
            "did not stabilize within {STABILIZE_ROUNDS_MAX} rounds"
        ))
    }
}

impl Node {
    /// A leader ticks through one election timeout (one check-quorum round); anyone else
    /// ticks until its randomized election timeout fires.
    fn tick_election(&mut self) {
        let election_ticks = self.raw.raft.config().election_ticks;
        if self.raw.raft.state == StateRole::Leader {
            for _ in 0..election_ticks {
                self.raw.tick();
            }
            return;
        }
        let r = &self.raw.raft;
        let before = (r.state, r.term, r.msgs.len(), r.msgs_after_persist.len());
        for _ in 0..2 * election_ticks {
            self.raw.tick();
            let r = &self.raw.raft;
            if (r.state, r.term, r.msgs.len(), r.msgs_after_persist.len()) != before {
                return;
            }
        }
    }

    /// Crash and restart: everything not persisted (unstable entries, volatile state) is lost;
    /// the node comes back from its storage with a fresh state machine, so committed entries
    /// after the snapshot are handed out (and configuration changes applied) again.
    fn restart(&mut self) -> Output {
        let id = self.raw.raft.id;
        let mut config = self.raw.raft.config().clone();
        config.applied = 0;
        let storage = self.raw.storage().clone();
        self.raw = RawNode::new(&config, storage, ChaCha8Rng::seed_from_u64(id))
            .map_err(|e| format!("restarting {id}: {e:?}"))?;
        Ok(describe_status(&self.raw))
    }

    fn compact(&mut self, index: u64) -> Output {
        let applied = self.raw.raft.raft_log.applied;
        if index > applied {
            return Err(format!(
                "index {index} is above the applied index {applied}"
            ));
        }
        let conf_state = self
            .confs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .ok_or_else(|| format!("no membership known at {index}"))?;
        let storage = self.raw.storage_mut();
        let r = storage
            .create_snapshot(index, conf_state, Bytes::new())
            .and_then(|_| storage.compact(index));
        Ok(match r {
            Ok(()) => "ok\n".into(),
            Err(e) => format!("error: {e:?}\n"),
        })
    }
}

// ----- formatting ----------------------------------------------------------------------------

fn result_line(r: oxcd::raft::Result<()>) -> String {
    match r {
        Ok(()) => "ok\n".into(),
        Err(e) => format!("error: {e:?}\n"),
    }
}

fn fmt_ids(ids: &[NodeId]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("({})", ids.join(","))
}

fn fmt_conf_state(cs: &ConfState) -> String {
    let mut s = format!("voters={}", fmt_ids(&cs.voters));
    if !cs.voters_outgoing.is_empty() {
        write!(s, "&&{}", fmt_ids(&cs.voters_outgoing)).unwrap();
    }
    if !cs.learners.is_empty() {
        write!(s, " learners={}", fmt_ids(&cs.learners)).unwrap();
    }
    if !cs.learners_next.is_empty() {
        write!(s, " learners_next={}", fmt_ids(&cs.learners_next)).unwrap();
    }
    if cs.auto_leave {
        s.push_str(" autoleave");
    }
    s
}

fn fmt_snapshot(s: &Snapshot) -> String {
    let m = &s.metadata;
    format!("{}/{} {}", m.term, m.index, fmt_conf_state(&m.conf_state))
}

fn fmt_entry(e: &Entry) -> String {
    let body = match e.kind {
        EntryKind::Normal => format!("EntryNormal {:?}", String::from_utf8_lossy(&e.data)),
        EntryKind::ConfChange => match ConfChange::decode(&e.data) {
            Ok(cc) => format!("EntryConfChange {}", fmt_conf_change(&cc)),
            Err(err) => format!("EntryConfChange <{err:?}>"),
        },
    };
    format!("{}/{} {body}", e.term, e.index)
}

fn fmt_conf_change(cc: &ConfChange) -> String {
    if cc.is_leave_joint() {
        return "leave-joint".into();
    }
    let mut words: Vec<String> = cc
        .changes
        .iter()
        .map(|c| {
            let kind = match c.kind {
                ConfChangeKind::AddNode => "v",
                ConfChangeKind::AddLearnerNode => "l",
                ConfChangeKind::RemoveNode => "r",
            };
            format!("{kind}{}", c.node_id)
        })
        .collect();
    match cc.transition {
        ConfChangeTransition::Auto => {}
        ConfChangeTransition::JointImplicit => words.push("transition=implicit".into()),
        ConfChangeTransition::JointExplicit => words.push("transition=explicit".into()),
    }
    words.join(" ")
}

fn fmt_msg(m: &Message) -> String {
    use MessageKind as K;
    let mut s = format!("{}->{} {:?} term={}", m.from, m.to, m.kind, m.term);
    match m.kind {
        K::Append => write!(s, " log={}/{}", m.log_term, m.index).unwrap(),
        K::RequestVote | K::RequestPreVote => {
            write!(s, " last={}/{}", m.log_term, m.index).unwrap()
        }
        _ => {
            if m.index != 0 {
                write!(s, " index={}", m.index).unwrap();
            }
            if m.log_term != 0 && !m.reject {
                write!(s, " log_term={}", m.log_term).unwrap();
            }
        }
    }
    if m.commit != 0 {
        write!(s, " commit={}", m.commit).unwrap();
    }
    if m.reject {
        s.push_str(" reject");
        if m.kind == K::AppendResponse {
            write!(s, " hint={} hint_term={}", m.reject_hint, m.log_term).unwrap();
        } else if m.reject_hint != 0 {
            write!(s, " hint={}", m.reject_hint).unwrap();
        }
    }
    if !m.entries.is_empty() {
        let entries: Vec<String> = m.entries.iter().map(fmt_entry).collect();
        write!(s, " entries=[{}]", entries.join(", ")).unwrap();
    }
    if let Some(snap) = &m.snapshot {
        write!(s, " snapshot={}", fmt_snapshot(snap)).unwrap();
    }
    if !m.context.is_empty() {
        let round: Option<[u8; 8]> = m.context.as_ref().try_into().ok();
        match (m.kind, round) {
            (K::Heartbeat | K::HeartbeatResponse, Some(b)) => {
                write!(s, " round={}", u64::from_be_bytes(b)).unwrap()
            }
            (K::RequestVote | K::RequestPreVote, _) if m.context.as_ref() == CAMPAIGN_TRANSFER => {
                s.push_str(" transfer")
            }
            _ => write!(s, " ctx={:?}", String::from_utf8_lossy(&m.context)).unwrap(),
        }
    }
    s
}

fn describe_status(raw: &RawNode<MemStorage>) -> String {
    let st = raw.status();
    let r = &raw.raft;
    let mut out = format!(
        "{}: {:?} term={} vote={} leader={} commit={} applied={} last={}",
        st.id,
        st.soft_state.role,
        st.hard_state.term,
        st.hard_state.vote,
        st.soft_state.leader_id,
        st.hard_state.commit,
        st.applied,
        r.raft_log.last_index()
    );
    if st.lead_transferee != 0 {
        write!(out, " transferee={}", st.lead_transferee).unwrap();
    }
    if r.pending_read_count() > 0 {
        write!(out, " pending_reads={}", r.pending_read_count()).unwrap();
    }
    writeln!(out).unwrap();
    writeln!(out, "  conf: {}", fmt_conf_state(&st.conf_state)).unwrap();
    for (id, pr) in &st.progress {
        write!(
            out,
            "  {id}: {:?} match={} next={}",
            pr.state, pr.matched, pr.next
        )
        .unwrap();
        if pr.is_learner {
            out.push_str(" learner");
        }
        if pr.state == ProgressState::Snapshot {
            write!(out, " pending_snapshot={}", pr.pending_snapshot).unwrap();
        }
        if pr.inflights.count() > 0 {
            write!(out, " inflight={}", pr.inflights.count()).unwrap();
        }
        if pr.is_paused() {
            out.push_str(" paused");
        }
        if *id != st.id && !pr.recent_active {
            out.push_str(" inactive");
        }
        writeln!(out).unwrap();
    }
    out
}

fn describe_log(raw: &RawNode<MemStorage>) -> String {
    let log = &raw.raft.raft_log;
    let snap = log.snapshot().expect("MemStorage always has a snapshot");
    let mut out = String::new();
    if !snap.is_empty() {
        writeln!(out, "snapshot: {}", fmt_snapshot(&snap)).unwrap();
    }
    let first = log.first_index();
    let entries = log.all_between(first - 1, log.last_index());
    for e in &entries {
        writeln!(out, "{}", fmt_entry(e)).unwrap();
    }
    if out.is_empty() {
        out.push_str("(empty)\n");
    }
    out
}
