//! One member's Raft protocol state and its transitions: roles, terms, votes, replication,
//! commitment, read rounds, leader transfer and membership. Driven by `RawNode`; inputs are
//! messages and ticks, outputs are queued messages and the log's unstable and committed parts.
//!
//! Role logic lives in `step_leader`, `step_candidate` and `step_follower`; `step` handles what
//! every role shares (term comparison and voting).

use super::changer::{self, Changer};
use super::conf_change::ConfChange;
use super::config::Config;
use super::error::{DropReason, Error, Result, StorageError};
use super::log::RaftLog;
use super::message::{
    CAMPAIGN_TRANSFER, ConfState, Entry, EntryKind, HardState, Message, MessageKind, NONE, NodeId,
    ReadState, Snapshot,
};
use super::progress::{Progress, ProgressState};
use super::quorum::VoteResult;
use super::read_only::{Added, ReadOnly, decode_round, encode_round};
use super::storage::Storage;
use super::tracker::{ProgressMap, ProgressTracker, TrackerConfig};
use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A member's role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StateRole {
    /// Follows a leader, or waits for one; starts an election when the timeout passes.
    #[default]
    Follower,
    /// Asking whether an election could be won, without raising the term yet.
    PreCandidate,
    /// Asking for votes in a raised term.
    Candidate,
    /// Leads the term: takes proposals and replicates the log.
    Leader,
}

/// Volatile state worth telling the owner about when it changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftState {
    /// The leader this member knows of, or [`NONE`].
    pub leader_id: NodeId,
    /// This member's role.
    pub role: StateRole,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Campaign {
    PreElection,
    Election,
    Transfer,
}

/// Deliberate mistakes, to prove that the simulator catches each of them. They can be switched
/// on only with the `planted-bugs` feature (through `Config::planted_bug`); without it,
/// `Raft::bug` is constantly false and the compiler removes the mistakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Grant a vote in a message that leaves before the vote is durable.
    VoteBeforePersist,
    /// Commit an entry of an older term by counting its replicas.
    CommitOldTerm,
    /// Answer ReadIndex with the commit index at once, without a heartbeat round.
    ReadIndexWithoutHeartbeat,
    /// Accept appends whose previous entry does not match the follower's log.
    AcceptConflictingAppend,
}

/// The Raft state machine of one member. [`RawNode`](super::RawNode) drives it; the fields are
/// open for the owner's inspection and for tests.
pub struct Raft<S: Storage> {
    /// This member's ID.
    pub id: NodeId,
    /// The current term.
    pub term: u64,
    /// The candidate voted for in `term`, or [`NONE`].
    pub vote: NodeId,
    /// This member's role.
    pub state: StateRole,
    /// The leader of `term` as known here, or [`NONE`].
    pub lead: NodeId,
    /// Whether this member is a learner (receives the log but does not vote).
    pub is_learner: bool,
    /// The log and its commit, applied and persisted marks.
    pub raft_log: RaftLog<S>,
    /// The membership, each member's progress (meaningful on a leader) and election votes.
    pub tracker: ProgressTracker,
    /// Reads answered locally, for the owner.
    pub read_states: Vec<ReadState>,
    /// Messages that may leave at once.
    pub msgs: Vec<Message>,
    /// Messages that may leave only once the current Ready is durable.
    pub msgs_after_persist: Vec<Message>,
    /// The member leadership is being handed to, or [`NONE`].
    pub lead_transferee: NodeId,
    /// The index of the latest configuration change the leader appended; no other may be
    /// proposed until it is applied.
    pub pending_conf_index: u64,
    uncommitted_bytes: u64,
    read_only: ReadOnly,
    /// Reads that arrived before this leader committed an entry of its term.
    reads_before_commit: Vec<Message>,
    election_elapsed: usize,
    heartbeat_elapsed: usize,
    randomized_election_ticks: usize,
    config: Config,
    rng: ChaCha8Rng,
}

/// Upper bound on reads held back until a new leader commits its first entry.
const READS_BEFORE_COMMIT_MAX: usize = 4096;

impl<S: Storage> Raft<S> {
    /// A member over `storage`, restored from its hard state and membership, as a follower.
    /// `rng` draws the randomized election timeouts.
    pub fn new(config: &Config, storage: S, rng: ChaCha8Rng) -> Result<Raft<S>> {
        config.validate()?;
        let raft_log = RaftLog::new(storage);
        let (hard_state, conf_state) = raft_log.storage.initial_state()?;
        let (cfg, prs) =
            changer::restore(&conf_state, raft_log.last_index(), config.max_inflight_msgs)?;
        let mut r = Raft {
            id: config.id,
            term: 0,
            vote: NONE,
            state: StateRole::Follower,
            lead: NONE,
            is_learner: false,
            raft_log,
            tracker: ProgressTracker::new(config.max_inflight_msgs),
            read_states: Vec::new(),
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            lead_transferee: NONE,
            pending_conf_index: 0,
            uncommitted_bytes: 0,
            read_only: ReadOnly::default(),
            reads_before_commit: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_ticks: config.election_ticks,
            config: config.clone(),
            rng,
        };
        r.switch_to_config(cfg, prs);
        if !hard_state.is_empty() {
            r.load_state(hard_state);
        }
        if config.applied > 0 {
            r.raft_log.applied_to(config.applied);
        }
        r.become_follower(r.term, NONE);
        Ok(r)
    }

    fn load_state(&mut self, hs: HardState) {
        assert!(
            hs.commit >= self.raft_log.committed && hs.commit <= self.raft_log.last_index(),
            "{}: stored commit {} is out of range [{}, {}]",
            self.id,
            hs.commit,
            self.raft_log.committed,
            self.raft_log.last_index()
        );
        self.raft_log.committed = hs.commit;
        self.term = hs.term;
        self.vote = hs.vote;
    }

    #[inline(always)]
    pub(crate) fn bug(&self, _bug: PlantedBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        return self.config.planted_bug == Some(_bug);
        #[cfg(not(feature = "planted-bugs"))]
        false
    }

    /// The volatile state: the known leader and the role.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.lead,
            role: self.state,
        }
    }

    /// The state that must be durable: term, vote and commit index.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    /// The configuration this member runs under.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reads waiting for a heartbeat round on this leader.
    pub fn pending_read_count(&self) -> usize {
        self.read_only.pending_count() + self.reads_before_commit.len()
    }

    // ----- sending -------------------------------------------------------------------------

    fn send(&mut self, mut m: Message) {
        if m.from == NONE {
            m.from = self.id;
        }
        match m.kind {
            MessageKind::RequestVote
            | MessageKind::RequestPreVote
            | MessageKind::RequestVoteResponse
            | MessageKind::RequestPreVoteResponse => {
                assert!(m.term != 0, "{:?} must carry a term", m.kind);
            }
            MessageKind::Propose | MessageKind::ReadIndex => {
                // Forwarded to the leader as if local to it: no term.
            }
            _ => {
                assert!(m.term == 0, "{:?} term is set by send", m.kind);
                m.term = self.term;
            }
        }
        let early = m.kind.may_send_before_persist()
            || (self.bug(PlantedBug::VoteBeforePersist)
                && m.kind == MessageKind::RequestVoteResponse
                && !m.reject);
        if early {
            self.msgs.push(m);
        } else {
            self.msgs_after_persist.push(m);
        }
    }

    /// Sends an append (or a snapshot) to `to` if it is not paused. With `send_if_empty`, an
    /// append with no entries goes too (it carries the commit index and probes the log).
    fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.tracker.progress.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let prev_index = pr.next - 1;
        let prev_term = self.raft_log.term(prev_index);
        let entries = if pr.state != ProgressState::Replicate || !pr.inflights.full() {
            self.raft_log.entries(pr.next, self.config.max_size_per_msg)
        } else {
            Ok(Vec::new())
        };
        if entries.as_ref().is_ok_and(|e| e.is_empty()) && !send_if_empty {
            return false;
        }
        let (Ok(prev_term), Ok(entries)) = (prev_term, entries) else {
            return self.send_snapshot(to);
        };
        let last = entries.last().map(|e| e.index);
        self.send(Message {
            kind: MessageKind::Append,
            to,
            index: prev_index,
            log_term: prev_term,
            entries,
            commit: self.raft_log.committed,
            ..Message::default()
        });
        if let Some(last) = last {
            let pr = self.tracker.progress.get_mut(&to).expect("checked above");
            match pr.state {
                ProgressState::Replicate => {
                    pr.optimistic_update(last);
                    pr.inflights.add(last);
                }
                ProgressState::Probe => pr.probe_sent = true,
                ProgressState::Snapshot => unreachable!("paused progress sent an append"),
            }
        }
        true
    }

    /// The follower's next entries are compacted away: send the snapshot instead.
    fn send_snapshot(&mut self, to: NodeId) -> bool {
        if !self.tracker.progress[&to].recent_active {
            return false;
        }
        let snapshot = match self.raft_log.snapshot() {
            Ok(s) => s,
            Err(StorageError::SnapshotTemporarilyUnavailable) => return false,
            Err(e) => panic!("{}: failed to get a snapshot for {to}: {e}", self.id),
        };
        assert!(
            !snapshot.is_empty(),
            "{}: need a non-empty snapshot",
            self.id
        );
        let index = snapshot.metadata.index;
        self.tracker
            .progress
            .get_mut(&to)
            .expect("checked by caller")
            .become_snapshot(index);
        self.send(Message {
            kind: MessageKind::Snapshot,
            to,
            snapshot: Some(snapshot),
            ..Message::default()
        });
        true
    }

    fn send_append(&mut self, to: NodeId) {
        self.maybe_send_append(to, true);
    }

    fn peers(&self) -> Vec<NodeId> {
        self.tracker
            .progress
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    fn bcast_append(&mut self) {
        for id in self.peers() {
            self.send_append(id);
        }
    }

    fn bcast_heartbeat(&mut self) {
        let round = self.read_only.heartbeat_round();
        self.bcast_heartbeat_with(round);
    }

    fn bcast_heartbeat_with(&mut self, round: Option<u64>) {
        let context = round.map(encode_round).unwrap_or_default();
        for id in self.peers() {
            let pr = &self.tracker.progress[&id];
            // A follower may not hold entries past its match: never tell it to commit them.
            let commit = pr.matched.min(self.raft_log.committed);
            self.send(Message {
                kind: MessageKind::Heartbeat,
                to: id,
                commit,
                context: context.clone(),
                ..Message::default()
            });
        }
    }

    // ----- role changes --------------------------------------------------------------------

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = NONE;
        }
        self.lead = NONE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_election_ticks = self
            .rng
            .gen_range(self.config.election_ticks..2 * self.config.election_ticks);
        self.lead_transferee = NONE;
        self.tracker.reset_votes();
        let last = self.raft_log.last_index();
        let persisted = self.raft_log.persisted;
        let inflight_max = self.config.max_inflight_msgs;
        for (&id, pr) in self.tracker.progress.iter_mut() {
            let is_learner = pr.is_learner;
            *pr = Progress::new(last + 1, inflight_max);
            pr.is_learner = is_learner;
            if id == self.id {
                // The leader counts only what is durable in its own log.
                pr.matched = persisted;
                pr.recent_active = true;
            }
        }
        self.pending_conf_index = 0;
        self.uncommitted_bytes = 0;
        self.read_only.reset();
        self.reads_before_commit.clear();
    }

    /// Becomes a follower in `term`, with `lead` as the known leader ([`NONE`] if unknown).
    pub fn become_follower(&mut self, term: u64, lead: NodeId) {
        self.reset(term);
        self.lead = lead;
        self.state = StateRole::Follower;
    }

    fn become_pre_candidate(&mut self) {
        assert!(
            self.state != StateRole::Leader,
            "leader cannot pre-campaign"
        );
        // No term change, no vote: a pre-vote round changes nothing durable.
        self.tracker.reset_votes();
        self.lead = NONE;
        self.state = StateRole::PreCandidate;
    }

    fn become_candidate(&mut self) {
        assert!(self.state != StateRole::Leader, "leader cannot campaign");
        self.reset(self.term + 1);
        self.vote = self.id;
        self.state = StateRole::Candidate;
    }

    fn become_leader(&mut self) {
        assert!(
            self.state == StateRole::Candidate,
            "only a candidate becomes leader"
        );
        self.reset(self.term);
        self.lead = self.id;
        self.state = StateRole::Leader;
        self.tracker
            .progress
            .get_mut(&self.id)
            .expect("a leader is in its configuration")
            .become_replicate();
        // Conservatively treat every configuration change in the log as pending.
        self.pending_conf_index = self.raft_log.last_index();
        let appended = self.append_entries(vec![Entry::default()]);
        assert!(appended, "a new leader can always append its empty entry");
        self.bcast_append();
    }

    fn promotable(&self) -> bool {
        self.tracker
            .progress
            .get(&self.id)
            .is_some_and(|p| !p.is_learner)
            && self.raft_log.pending_snapshot().is_none()
    }

    fn has_unapplied_conf_changes(&self) -> bool {
        if self.raft_log.applied >= self.raft_log.committed {
            return false;
        }
        self.raft_log
            .all_between(self.raft_log.applied, self.raft_log.committed)
            .iter()
            .any(|e| e.kind == EntryKind::ConfChange)
    }

    fn hup(&mut self, campaign: Campaign) {
        if self.state == StateRole::Leader || !self.promotable() {
            return;
        }
        if self.has_unapplied_conf_changes() {
            return;
        }
        self.campaign(campaign);
    }

    fn campaign(&mut self, campaign: Campaign) {
        let (term, kind) = if campaign == Campaign::PreElection {
            self.become_pre_candidate();
            (self.term + 1, MessageKind::RequestPreVote)
        } else {
            self.become_candidate();
            (self.term, MessageKind::RequestVote)
        };
        if self.poll(self.id, true) == VoteResult::Won {
            // A single voter wins at once.
            if campaign == Campaign::PreElection {
                self.campaign(Campaign::Election);
            } else {
                self.become_leader();
            }
            return;
        }
        let context = if campaign == Campaign::Transfer {
            Bytes::from_static(CAMPAIGN_TRANSFER)
        } else {
            Bytes::new()
        };
        let (index, log_term) = (self.raft_log.last_index(), self.raft_log.last_term());
        for id in self.tracker.voter_ids() {
            if id == self.id {
                continue;
            }
            self.send(Message {
                kind,
                to: id,
                term,
                index,
                log_term,
                context: context.clone(),
                ..Message::default()
            });
        }
    }

    fn poll(&mut self, id: NodeId, granted: bool) -> VoteResult {
        self.tracker.record_vote(id, granted);
        self.tracker.tally_votes().2
    }

    // ----- ticks ---------------------------------------------------------------------------

    /// Advances the logical clock one tick: heartbeats on a leader, the election timeout elsewhere.
    pub fn tick(&mut self) {
        if self.state == StateRole::Leader {
            self.tick_heartbeat();
        } else {
            self.tick_election();
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_ticks {
            self.election_elapsed = 0;
            self.hup(if self.config.pre_vote {
                Campaign::PreElection
            } else {
                Campaign::Election
            });
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum {
                self.check_quorum();
            }
            // A transfer that did not finish within an election timeout is abandoned.
            if self.state == StateRole::Leader {
                self.lead_transferee = NONE;
            }
        }
        if self.state != StateRole::Leader {
            return;
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
    }

    fn check_quorum(&mut self) {
        if !self.tracker.quorum_active(self.id) {
            self.become_follower(self.term, NONE);
        }
        let id = self.id;
        for (&peer, pr) in self.tracker.progress.iter_mut() {
            if peer != id {
                pr.recent_active = false;
            }
        }
    }

    // ----- stepping ------------------------------------------------------------------------

    /// Handles one message (local or from the network).
    pub fn step(&mut self, mut m: Message) -> Result<()> {
        if m.term == 0 {
            // Local message, or a forwarded proposal or read.
        } else if m.term > self.term {
            if matches!(
                m.kind,
                MessageKind::RequestVote | MessageKind::RequestPreVote
            ) {
                let forced = m.context.as_ref() == CAMPAIGN_TRANSFER;
                let in_lease = self.config.check_quorum
                    && self.lead != NONE
                    && self.election_elapsed < self.config.election_ticks;
                if !forced && in_lease {
                    // We heard from a live leader within the election timeout: a member
                    // that cannot reach it must not depose it.
                    return Ok(());
                }
            }
            match m.kind {
                MessageKind::RequestPreVote => {}
                MessageKind::RequestPreVoteResponse if !m.reject => {}
                MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot => {
                    self.become_follower(m.term, m.from)
                }
                _ => self.become_follower(m.term, NONE),
            }
        } else if m.term < self.term {
            if (self.config.check_quorum || self.config.pre_vote)
                && matches!(m.kind, MessageKind::Heartbeat | MessageKind::Append)
            {
                // A stale leader: tell it our term so that it steps down (it may be unable to
                // learn it any other way once pre-vote or check-quorum keeps us from voting).
                self.send(Message {
                    kind: MessageKind::AppendResponse,
                    to: m.from,
                    ..Message::default()
                });
            } else if m.kind == MessageKind::RequestPreVote {
                self.send(Message {
                    kind: MessageKind::RequestPreVoteResponse,
                    to: m.from,
                    term: self.term,
                    reject: true,
                    ..Message::default()
                });
            }
            return Ok(());
        }

        match m.kind {
            MessageKind::Hup => {
                self.hup(if self.config.pre_vote {
                    Campaign::PreElection
                } else {
                    Campaign::Election
                });
                Ok(())
            }
            MessageKind::RequestVote | MessageKind::RequestPreVote => {
                self.handle_vote_request(m);
                Ok(())
            }
            _ => match self.state {
                StateRole::Leader => self.step_leader(&mut m),
                StateRole::Candidate | StateRole::PreCandidate => self.step_candidate(m),
                StateRole::Follower => self.step_follower(m),
            },
        }
    }

    fn handle_vote_request(&mut self, m: Message) {
        let pre = m.kind == MessageKind::RequestPreVote;
        let response = if pre {
            MessageKind::RequestPreVoteResponse
        } else {
            MessageKind::RequestVoteResponse
        };
        let can_vote = self.vote == m.from
            || (self.vote == NONE && self.lead == NONE)
            || (pre && m.term > self.term);
        if can_vote && self.raft_log.is_up_to_date(m.index, m.log_term) {
            self.send(Message {
                kind: response,
                to: m.from,
                term: m.term,
                ..Message::default()
            });
            if !pre {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            self.send(Message {
                kind: response,
                to: m.from,
                term: self.term,
                reject: true,
                ..Message::default()
            });
        }
    }

    fn step_leader(&mut self, m: &mut Message) -> Result<()> {
        match m.kind {
            MessageKind::Beat => {
                self.bcast_heartbeat();
                return Ok(());
            }
            MessageKind::CheckQuorum => {
                self.check_quorum();
                return Ok(());
            }
            MessageKind::Propose => return self.propose_as_leader(std::mem::take(&mut m.entries)),
            MessageKind::ReadIndex => return self.read_index_as_leader(std::mem::take(m)),
            _ => {}
        }
        if !self.tracker.progress.contains_key(&m.from) {
            return Ok(());
        }
        match m.kind {
            MessageKind::AppendResponse => self.handle_append_response(m),
            MessageKind::HeartbeatResponse => self.handle_heartbeat_response(m),
            MessageKind::SnapshotStatus => {
                let pr = self.tracker.progress.get_mut(&m.from).expect("checked");
                if pr.state == ProgressState::Snapshot {
                    if m.reject {
                        pr.pending_snapshot = 0;
                    }
                    pr.become_probe();
                    // Wait for an append response (or, after a failure, a heartbeat response)
                    // before sending again.
                    pr.probe_sent = true;
                }
            }
            MessageKind::Unreachable => {
                let pr = self.tracker.progress.get_mut(&m.from).expect("checked");
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
            }
            MessageKind::TransferLeader => self.handle_transfer_leader(m.from),
            _ => {}
        }
        Ok(())
    }

    fn propose_as_leader(&mut self, mut entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Err(Error::InvalidMessage {
                from: NONE,
                why: "empty proposal",
            });
        }
        if !self.tracker.progress.contains_key(&self.id) {
            return Err(Error::ProposalDropped(DropReason::NotMember));
        }
        if self.lead_transferee != NONE {
            return Err(Error::ProposalDropped(DropReason::LeaderTransfer));
        }
        let last = self.raft_log.last_index();
        let mut conf_index = None;
        for (i, e) in entries.iter_mut().enumerate() {
            if e.kind != EntryKind::ConfChange {
                continue;
            }
            let Ok(cc) = ConfChange::decode(&e.data) else {
                return Err(Error::ProposalDropped(DropReason::ConfChangeRefused));
            };
            let pending = conf_index.is_some() || self.pending_conf_index > self.raft_log.applied;
            let joint = self.tracker.config.voters.is_joint();
            let leaves = cc.is_leave_joint();
            if pending || joint != leaves {
                return Err(Error::ProposalDropped(DropReason::ConfChangeRefused));
            }
            conf_index = Some(last + i as u64 + 1);
        }
        if !self.append_entries(entries) {
            return Err(Error::ProposalDropped(DropReason::UncommittedLimit));
        }
        // Only now: a refused proposal must not leave a change marked pending.
        if let Some(index) = conf_index {
            self.pending_conf_index = index;
        }
        self.bcast_append();
        Ok(())
    }

    /// Appends entries of this leader's term; false (and nothing appended) when they would
    /// exceed the uncommitted byte limit.
    fn append_entries(&mut self, mut entries: Vec<Entry>) -> bool {
        let last = self.raft_log.last_index();
        for (i, e) in entries.iter_mut().enumerate() {
            e.term = self.term;
            e.index = last + 1 + i as u64;
        }
        let bytes: u64 = entries.iter().map(Entry::payload_bytes).sum();
        let limit = self.config.max_uncommitted_bytes;
        if limit > 0
            && self.uncommitted_bytes > 0
            && bytes > 0
            && self.uncommitted_bytes + bytes > limit
        {
            return false;
        }
        self.uncommitted_bytes += bytes;
        self.raft_log.append(&entries);
        // The leader's own acknowledgement comes when the entries are durable (`on_persisted`).
        true
    }

    /// Commits what a quorum holds, if it is of this term.
    fn maybe_commit(&mut self) -> bool {
        let index = self.tracker.committed();
        let skip_term_check = self.bug(PlantedBug::CommitOldTerm);
        self.raft_log
            .maybe_commit(index, self.term, skip_term_check)
    }

    /// Whether a ReadIndex read would be answered at once, with no heartbeat round: this
    /// member leads alone (the only voter, no joint change) and has committed an entry of its
    /// term. No other member can lead then, so its commit index is the cluster's.
    pub fn reads_at_once(&self) -> bool {
        self.state == StateRole::Leader
            && self.tracker.is_singleton()
            && self
                .tracker
                .config
                .voters
                .incoming
                .voters
                .contains(&self.id)
            && self.committed_entry_in_current_term()
    }

    fn committed_entry_in_current_term(&self) -> bool {
        self.raft_log.term_or_zero(self.raft_log.committed) == self.term
    }

    /// After the commit index moved: release reads that waited for this term's first commit,
    /// and tell followers.
    fn on_commit(&mut self) {
        if !self.reads_before_commit.is_empty() && self.committed_entry_in_current_term() {
            for m in std::mem::take(&mut self.reads_before_commit) {
                // Refused reads here were forwarded or local ones already acknowledged: their
                // callers time out and retry, as after a leader change.
                let _ = self.read_index_as_leader(m);
            }
        }
        self.bcast_append();
    }

    /// Takes a read on the leader. Refused (typed) when too many reads wait already.
    fn read_index_as_leader(&mut self, m: Message) -> Result<()> {
        if self.bug(PlantedBug::ReadIndexWithoutHeartbeat) {
            let index = self.raft_log.committed;
            self.answer_read(m, index);
            return Ok(());
        }
        let refused = Err(Error::ProposalDropped(DropReason::PendingReadLimit));
        if !self.committed_entry_in_current_term() {
            // A new leader's commit index may lag behind entries committed by its
            // predecessors: it serves no read until it commits an entry of its own term.
            if self.reads_before_commit.len() >= READS_BEFORE_COMMIT_MAX {
                return refused;
            }
            self.reads_before_commit.push(m);
            return Ok(());
        }
        let index = self.raft_log.committed;
        if self.tracker.is_singleton() {
            self.answer_read(m, index);
            return Ok(());
        }
        match self.read_only.add(m, index) {
            Added::Refused => refused,
            Added::Queued => Ok(()),
            Added::StartRound(round) => {
                self.bcast_heartbeat_with(Some(round));
                Ok(())
            }
        }
    }

    fn answer_read(&mut self, m: Message, index: u64) {
        if m.from == NONE || m.from == self.id {
            self.read_states.push(ReadState {
                index,
                request_ctx: m.context,
            });
        } else {
            self.send(Message {
                kind: MessageKind::ReadIndexResponse,
                to: m.from,
                index,
                context: m.context,
                ..Message::default()
            });
        }
    }

    fn handle_append_response(&mut self, m: &Message) {
        let last_index = self.raft_log.last_index();
        let pr = self.tracker.progress.get_mut(&m.from).expect("checked");
        pr.recent_active = true;
        if m.reject {
            let mut next_probe = m.reject_hint;
            if m.log_term > 0 {
                next_probe = self
                    .raft_log
                    .find_conflict_by_term(m.reject_hint, m.log_term)
                    .0;
            }
            let pr = self.tracker.progress.get_mut(&m.from).expect("checked");
            if pr.maybe_decr_to(m.index, next_probe) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(m.from);
            }
            return;
        }
        let was_paused = pr.is_paused();
        if !pr.maybe_update(m.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot => {
                if pr.matched + 1 >= self.raft_log.first_index() {
                    pr.become_probe();
                    pr.become_replicate();
                }
            }
            ProgressState::Replicate => pr.inflights.free_le(m.index),
        }
        let matched = pr.matched;
        if self.maybe_commit() {
            self.on_commit();
        } else if was_paused {
            self.send_append(m.from);
        }
        while self.maybe_send_append(m.from, false) {}
        if m.from == self.lead_transferee && matched == last_index {
            self.send_timeout_now(m.from);
        }
    }

    fn handle_heartbeat_response(&mut self, m: &Message) {
        let pr = self.tracker.progress.get_mut(&m.from).expect("checked");
        pr.recent_active = true;
        pr.probe_sent = false;
        if pr.state == ProgressState::Replicate && pr.inflights.full() {
            pr.inflights.free_first_one();
        }
        if pr.matched < self.raft_log.last_index() {
            self.send_append(m.from);
        }
        let Some(round) = decode_round(&m.context) else {
            return;
        };
        self.read_only.record_ack(m.from, round);
        self.release_confirmed_reads();
    }

    /// Answers every read whose round a quorum has confirmed, and starts the round that
    /// waiting reads need. Also called when the configuration changes (a smaller quorum may
    /// confirm rounds already answered by enough peers, or by the leader alone).
    fn release_confirmed_reads(&mut self) {
        loop {
            let id = self.id;
            let voters = &self.tracker.config.voters;
            let done = self.read_only.confirmed(|acked| {
                voters.committed_index(&|peer| {
                    if peer == id {
                        Some(u64::MAX)
                    } else {
                        acked.get(&peer).copied()
                    }
                })
            });
            for read in done {
                self.answer_read(read.request, read.index);
            }
            let Some(round) = self.read_only.start_waiting_round() else {
                return;
            };
            if !self.tracker.is_singleton() {
                self.bcast_heartbeat_with(Some(round));
                return;
            }
            // Alone in the configuration: the new round is confirmed at once.
        }
    }

    fn handle_transfer_leader(&mut self, transferee: NodeId) {
        if self.tracker.progress[&transferee].is_learner {
            return;
        }
        if self.lead_transferee != NONE {
            if self.lead_transferee == transferee {
                return;
            }
            self.lead_transferee = NONE;
        }
        if transferee == self.id {
            return;
        }
        self.election_elapsed = 0;
        self.lead_transferee = transferee;
        if self.tracker.progress[&transferee].matched == self.raft_log.last_index() {
            self.send_timeout_now(transferee);
        } else {
            self.send_append(transferee);
        }
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        self.send(Message {
            kind: MessageKind::TimeoutNow,
            to,
            ..Message::default()
        });
    }

    fn step_candidate(&mut self, m: Message) -> Result<()> {
        let my_response = if self.state == StateRole::PreCandidate {
            MessageKind::RequestPreVoteResponse
        } else {
            MessageKind::RequestVoteResponse
        };
        match m.kind {
            MessageKind::Propose | MessageKind::ReadIndex | MessageKind::TransferLeader => {
                return Err(Error::ProposalDropped(DropReason::NoLeader));
            }
            MessageKind::Append => {
                self.become_follower(m.term, m.from);
                self.handle_append(m);
            }
            MessageKind::Heartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(m);
            }
            MessageKind::Snapshot => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot(m);
            }
            kind if kind == my_response => match self.poll(m.from, !m.reject) {
                VoteResult::Won => {
                    if self.state == StateRole::PreCandidate {
                        self.campaign(Campaign::Election);
                    } else {
                        self.become_leader();
                    }
                }
                VoteResult::Lost => self.become_follower(self.term, NONE),
                VoteResult::Pending => {}
            },
            _ => {}
        }
        Ok(())
    }

    fn step_follower(&mut self, mut m: Message) -> Result<()> {
        match m.kind {
            MessageKind::Propose => {
                if self.lead == NONE {
                    return Err(Error::ProposalDropped(DropReason::NoLeader));
                }
                if self.config.disable_proposal_forwarding {
                    return Err(Error::ProposalDropped(DropReason::ForwardingDisabled));
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageKind::ReadIndex | MessageKind::TransferLeader => {
                if self.lead == NONE {
                    return Err(Error::ProposalDropped(DropReason::NoLeader));
                }
                m.to = self.lead;
                if m.kind == MessageKind::TransferLeader {
                    m.term = 0;
                }
                self.send(m);
            }
            MessageKind::Append => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append(m);
            }
            MessageKind::Heartbeat => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(m);
            }
            MessageKind::Snapshot => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot(m);
            }
            MessageKind::TimeoutNow => self.hup(Campaign::Transfer),
            MessageKind::ReadIndexResponse => self.read_states.push(ReadState {
                index: m.index,
                request_ctx: m.context,
            }),
            _ => {}
        }
        Ok(())
    }

    fn handle_append(&mut self, m: Message) {
        let committed = self.raft_log.committed;
        if m.index < committed {
            self.send(Message {
                kind: MessageKind::AppendResponse,
                to: m.from,
                index: committed,
                ..Message::default()
            });
            return;
        }
        let skip_prev_check = self.bug(PlantedBug::AcceptConflictingAppend);
        match self
            .raft_log
            .maybe_append(m.index, m.log_term, m.commit, &m.entries, skip_prev_check)
        {
            Some(last) => self.send(Message {
                kind: MessageKind::AppendResponse,
                to: m.from,
                index: last,
                ..Message::default()
            }),
            None => {
                let hint = m.index.min(self.raft_log.last_index());
                let (hint, hint_term) = self.raft_log.find_conflict_by_term(hint, m.log_term);
                self.send(Message {
                    kind: MessageKind::AppendResponse,
                    to: m.from,
                    index: m.index,
                    reject: true,
                    reject_hint: hint,
                    log_term: hint_term,
                    ..Message::default()
                });
            }
        }
    }

    fn handle_heartbeat(&mut self, m: Message) {
        self.raft_log.commit_to(m.commit);
        self.send(Message {
            kind: MessageKind::HeartbeatResponse,
            to: m.from,
            context: m.context,
            ..Message::default()
        });
    }

    fn handle_snapshot(&mut self, mut m: Message) {
        let snapshot = m.snapshot.take().unwrap_or_default();
        let index = if self.restore(snapshot) {
            self.raft_log.last_index()
        } else {
            self.raft_log.committed
        };
        self.send(Message {
            kind: MessageKind::AppendResponse,
            to: m.from,
            index,
            ..Message::default()
        });
    }

    /// Replaces the log with `snapshot` when it is news. Returns whether it did.
    fn restore(&mut self, snapshot: Snapshot) -> bool {
        let meta = &snapshot.metadata;
        if snapshot.is_empty() || meta.index <= self.raft_log.committed {
            return false;
        }
        if self.state != StateRole::Follower {
            // Only a follower of the sender's term gets here; anything else is a bug in the
            // sender. Stepping into a new term forces a fresh election.
            self.become_follower(self.term + 1, NONE);
            return false;
        }
        if !meta.conf_state.contains(self.id) {
            return false;
        }
        if self.has_unapplied_conf_changes() {
            // The owner is about to apply configuration changes that the snapshot already
            // contains; applying them on top of its membership would corrupt it. Refuse now;
            // the leader sends it again once they are applied.
            return false;
        }
        if self.raft_log.match_term(meta.index, meta.term) {
            // We hold the snapshot's last entry: just move the commit index forward.
            self.raft_log.commit_to(meta.index);
            return false;
        }
        let Ok((cfg, prs)) =
            changer::restore(&meta.conf_state, meta.index, self.config.max_inflight_msgs)
        else {
            // A correct leader never sends this; refuse it rather than adopt it.
            return false;
        };
        self.raft_log.restore(snapshot);
        self.tracker = ProgressTracker::new(self.config.max_inflight_msgs);
        self.switch_to_config(cfg, prs);
        true
    }

    // ----- membership ----------------------------------------------------------------------

    /// Applies a committed configuration change. An invalid change leaves the configuration
    /// as it was (every member decides the same way, so they stay in agreement).
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> Result<ConfState> {
        let changer = Changer {
            tracker: &self.tracker,
            last_index: self.raft_log.last_index(),
        };
        let (cfg, prs) = if cc.is_leave_joint() {
            changer.leave_joint()?
        } else if let Some(auto_leave) = cc.enters_joint() {
            changer.enter_joint(auto_leave, &cc.changes)?
        } else {
            changer.simple(&cc.changes)?
        };
        Ok(self.switch_to_config(cfg, prs))
    }

    fn switch_to_config(&mut self, cfg: TrackerConfig, prs: ProgressMap) -> ConfState {
        self.tracker.config = cfg;
        self.tracker.progress = prs;
        let conf_state = self.tracker.conf_state();
        let me = self.tracker.progress.get(&self.id);
        self.is_learner = me.is_some_and(|p| p.is_learner);
        if (me.is_none() || self.is_learner) && self.state == StateRole::Leader {
            // Removed or demoted: step down, and let the remaining voters elect a leader.
            self.become_follower(self.term, NONE);
            return conf_state;
        }
        if self.state != StateRole::Leader || conf_state.voters.is_empty() {
            return conf_state;
        }
        if self.maybe_commit() {
            self.on_commit();
        } else {
            for id in self.peers() {
                self.maybe_send_append(id, false);
            }
        }
        if self.lead_transferee != NONE
            && !self.tracker.config.voters.contains(self.lead_transferee)
        {
            self.lead_transferee = NONE;
        }
        // A smaller quorum may already confirm waiting reads (the leader alone, at the least).
        self.release_confirmed_reads();
        conf_state
    }

    /// Checks the invariants that hold between any two inputs. Cheap enough for every step in
    /// debug builds (tests and the simulator run with them).
    pub fn debug_assert_invariants(&self) {
        let log = &self.raft_log;
        debug_assert!(
            log.applied <= log.committed,
            "{}: applied {} > committed {}",
            self.id,
            log.applied,
            log.committed
        );
        debug_assert!(
            log.committed <= log.last_index(),
            "{}: committed {} > last {}",
            self.id,
            log.committed,
            log.last_index()
        );
        debug_assert!(log.persisted <= log.last_index());
        debug_assert!(log.first_index() >= 1 && log.first_index() <= log.last_index() + 1);
        match self.state {
            StateRole::Leader => {
                debug_assert_eq!(self.lead, self.id, "a leader leads");
                debug_assert_eq!(self.vote, self.id, "a leader voted for itself");
                let me = self.tracker.progress.get(&self.id);
                debug_assert!(
                    me.is_some_and(|p| p.matched <= log.persisted),
                    "{}: a leader counts only its durable log",
                    self.id
                );
            }
            StateRole::Candidate => debug_assert_eq!(self.vote, self.id),
            StateRole::PreCandidate | StateRole::Follower => {}
        }
        for (id, pr) in &self.tracker.progress {
            debug_assert!(
                pr.next > pr.matched,
                "{id}: next {} <= match {}",
                pr.next,
                pr.matched
            );
        }
    }

    // ----- acknowledgements from the owner ---------------------------------------------------

    /// The owner made the log durable up to `raft_log.persisted`: a leader counts its own copy.
    pub fn on_persisted(&mut self) {
        if self.state != StateRole::Leader {
            return;
        }
        let persisted = self.raft_log.persisted;
        let updated = self
            .tracker
            .progress
            .get_mut(&self.id)
            .is_some_and(|pr| pr.maybe_update(persisted));
        if updated && self.maybe_commit() {
            self.on_commit();
        }
    }

    /// The owner applied entries up to `raft_log.applied`, `payload_bytes` of them this time.
    pub fn on_applied(&mut self, payload_bytes: u64) {
        if self.state != StateRole::Leader {
            return;
        }
        self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(payload_bytes);
        if self.tracker.config.auto_leave
            && self.raft_log.applied >= self.pending_conf_index
            && self.lead_transferee == NONE
        {
            // The joint configuration is in force: propose leaving it.
            let entry = Entry {
                kind: EntryKind::ConfChange,
                data: ConfChange::leave_joint().encode(),
                ..Entry::default()
            };
            debug_assert!(entry.data.is_empty(), "leave-joint encodes as no bytes");
            let appended = self.append_entries(vec![entry]);
            assert!(appended, "an entry without payload always fits");
            self.pending_conf_index = self.raft_log.last_index();
            self.bcast_append();
        }
    }
}
