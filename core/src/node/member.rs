//! A member with durable state: the Raft core and the apply side over one [`Engine`], and the
//! one place that knows how the two meet the disk.
//!
//! [`Member::open`] recovers: the Raft log, hard state and snapshot metadata
//! ([`RaftStore::open`]), the MVCC store with its key index rebuilt and the leases with their
//! keys ([`Applier::recover`]), and the applied index stored with the last applied command. The
//! Raft core starts at that index, so it hands out exactly the committed entries above it:
//! every entry is applied once, across any number of crashes.
//!
//! [`Member::handle_ready`] carries out one Ready in the order `Ready`'s docs require: the
//! snapshot, entries and hard state go to the engine in one batch with one sync (group
//! commit), then the messages are released, then committed entries are applied, each command
//! in one unsynced batch with its applied index (the log is the durable record; a crash loses
//! at most applies that recovery redoes). A received snapshot's data replaces the state
//! machine in the same atomic batch as the snapshot metadata.
//!
//! Any storage error stops the member for good: every later call returns
//! [`StorageError::Stopped`]. It serves nothing it cannot vouch for; restarting it from the
//! disk is the way back.
//!
//! What it does not do: it opens no socket and reads no clock (time comes in as `now_ms`),
//! and it answers no client. The server's driver owns a `Member` and does those.

use super::apply::{Applied, Applier, ApplyError, Command};
use super::codec::RequestId;
use crate::lease::{Lessor, LessorConfig};
use crate::mvcc::{self, BackendError, RangeRequest, RangeResponse, WatchConfig, Watchers};
use crate::raft::{
    self, ConfChange, ConfChangeKind, ConfState, EntryKind, Message, MessageKind, NodeId, RawNode,
    ReadState, SnapshotMetadata, SoftState,
};
use crate::storage::{
    Engine, EngineBackend, ForcedRestart, RaftStore, Space, StorageError, WriteBatch, codec,
    meta_key, read_meta, snapshot, stage_meta,
};
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;

/// The member's identity lives in the Raft keyspace: a snapshot from the leader replaces the
/// state machine's keyspaces, never this.
const MEMBER_ID: &[u8] = b"member_id";
const CLUSTER_ID: &[u8] = b"cluster_id";

/// How to open a member.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    /// Raft's settings; `id` is this member's ID. `applied` is ignored: the stored applied
    /// index is used.
    pub raft: raft::Config,
    /// The founding voters, used only when the disk is fresh. Empty: a member joining an
    /// existing cluster, which learns the membership from the leader.
    pub initial_voters: Vec<NodeId>,
    /// Stored on a fresh disk and checked on every later open.
    pub cluster_id: u64,
    /// The founding members' records (opaque to the member; the server's encoding), stored
    /// with the founding voters. Ignored unless the disk is fresh.
    pub initial_members: Vec<(u64, Bytes)>,
    /// The lessor's limits and timings.
    pub lessor: LessorConfig,
    /// The watchers' limits.
    pub watch: WatchConfig,
    /// The most operations one transaction level may hold (etcd's `--max-txn-ops`).
    pub txn_ops_max: usize,
    /// Restart as the only member of the cluster, keeping the data (etcd's
    /// `--force-new-cluster`; see [`RaftStore::force_new_cluster`]). Ignored on a fresh disk.
    pub force_new_cluster: bool,
}

/// What became of one committed entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A leader's empty entry.
    Empty,
    /// A command, with the store's revision after it.
    Command {
        /// What the command did, or why it was refused.
        result: Result<Applied, ApplyError>,
        /// The store's revision after the command.
        revision: i64,
    },
    /// A configuration change: the membership after it, or why it was refused.
    ConfChange(Result<ConfState, raft::Error>),
}

/// A committed entry as applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    /// The entry's log index.
    pub index: u64,
    /// The entry's term.
    pub term: u64,
    /// The request that proposed it, when it was proposed with one.
    pub request: Option<RequestId>,
    /// The proposer's bytes (the encoded command), for matching waiting requests.
    pub data: Bytes,
    /// What applying it did.
    pub outcome: Outcome,
}

/// What one handled Ready produced, for the driver to carry out.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to send, in order; everything they promise is durable.
    pub messages: Vec<Message>,
    /// The entries applied, in log order.
    pub applied: Vec<AppliedEntry>,
    /// Reads that may be served now (their index is applied).
    pub read_states: Vec<ReadState>,
    /// The new leader or role, when either changed.
    pub soft_state: Option<SoftState>,
}

/// A Raft member and its data, durable in `E`.
pub struct Member<E: Engine> {
    raw: RawNode<RaftStore<E>>,
    applier: Applier<EngineBackend<E>>,
    config: MemberConfig,
    /// The highest index whose effects the state machine holds (a received snapshot may hold
    /// more than Raft's snapshot index says: entries up to here are not applied again).
    applied: u64,
    /// The membership from each applied configuration change since the open, after the one
    /// known at the open: what a log compaction at an earlier index must record.
    conf_history: Vec<(u64, ConfState)>,
    stopped: Option<StorageError>,
    /// A Ready whose early messages [`Member::early_messages`] handed out, waiting for
    /// [`Member::handle_ready`] to carry out the rest.
    started_ready: Option<raft::Ready>,
    /// What `--force-new-cluster` did on open.
    forced: Option<ForcedRestart>,
}

fn apply_storage_error(e: ApplyError) -> StorageError {
    StorageError::Io(format!("apply: {e}"))
}

/// The state machine as `engine` holds it: store, leases with their keys, fresh watchers.
fn recover_applier<E: Engine>(
    engine: E,
    config: &MemberConfig,
    now_ms: u64,
) -> Result<Applier<EngineBackend<E>>, StorageError> {
    let watchers = Watchers::new(config.watch.clone(), now_ms)
        .map_err(|e| StorageError::Inconsistent(format!("watch config: {e}")))?;
    Applier::recover(
        EngineBackend::new(engine),
        Lessor::new(config.lessor.clone()),
        watchers,
        config.txn_ops_max,
        now_ms,
    )
    .map_err(apply_storage_error)
}

impl<E: Engine> Member<E> {
    /// Recovers the member stored on `engine`, or founds it there when the engine is fresh.
    pub fn open(
        engine: E,
        config: MemberConfig,
        rng: ChaCha8Rng,
        now_ms: u64,
    ) -> Result<Member<E>, StorageError> {
        let id = config.raft.id;
        let mut store = RaftStore::open(engine.clone())?;
        let fresh = store.is_fresh();
        if fresh {
            let mut batch = WriteBatch::default();
            stage_meta(&mut batch, Space::Raft, MEMBER_ID, id as i64);
            stage_meta(
                &mut batch,
                Space::Raft,
                CLUSTER_ID,
                config.cluster_id as i64,
            );
            if !config.initial_voters.is_empty() {
                // A founding member: a bootstrap snapshot at index 1 carries the membership
                // (as etcd's raft bootstraps), applied by definition.
                stage_meta(
                    &mut batch,
                    Space::Meta,
                    meta_key(crate::mvcc::MetaKey::AppliedIndex),
                    1,
                );
                // etcd's store starts at revision 1 (the first write is revision 2); clients
                // and tests compare revisions, so a founded cluster starts there too. A data
                // dir restored from a snapshot keeps its revision.
                let current = meta_key(crate::mvcc::MetaKey::CurrentRevision);
                if read_meta(&engine, Space::Meta, current)?.is_none() {
                    stage_meta(&mut batch, Space::Meta, current, 1);
                }
                for (member, record) in &config.initial_members {
                    let key = codec::member_key(*member);
                    let value = codec::encode_member(&key, record);
                    batch.put(Space::Meta, key, value);
                }
                let meta = raft::SnapshotMetadata {
                    conf_state: ConfState::with_voters(config.initial_voters.iter().copied()),
                    index: 1,
                    term: 1,
                };
                let hs = raft::HardState {
                    term: 1,
                    vote: 0,
                    commit: 1,
                };
                store.persist(Some(&meta), &[], Some(&hs), batch, true)?;
            } else {
                store.persist(None, &[], None, batch, true)?;
            }
        }
        for (key, want) in [(MEMBER_ID, id), (CLUSTER_ID, config.cluster_id)] {
            let stored = read_meta(&engine, Space::Raft, key)?;
            if stored != Some(want as i64) {
                return Err(StorageError::Inconsistent(format!(
                    "the data dir belongs to {} {:x}, not {want:x}",
                    String::from_utf8_lossy(key).replace('_', " "),
                    stored.unwrap_or(0)
                )));
            }
        }
        let applier = recover_applier(engine, &config, now_ms)?;
        let applied = applier.applied_index().map_err(apply_storage_error)?;
        // The state machine and the log file are synced apart: a hard state that only moved
        // the commit index is written unsynced (as raft's `must_sync` allows), and the
        // entries it applied may reach the disk before it does. An entry is applied only
        // once committed, and its append was synced before: take the commit index up to it.
        store.commit_applied(applied)?;
        let snap = store.snapshot_metadata().index;
        let commit = store.hard_state().commit;
        if applied < snap || applied > commit.max(snap) {
            return Err(StorageError::Inconsistent(format!(
                "applied index {applied} outside [snapshot {snap}, commit {commit}]"
            )));
        }
        let forced = if config.force_new_cluster && !fresh {
            Some(store.force_new_cluster(id, applied)?)
        } else {
            None
        };
        let mut raft_config = config.raft.clone();
        raft_config.applied = applied;
        let conf_history = vec![(applied, store.conf_state().clone())];
        let raw = RawNode::new(&raft_config, store, rng)
            .map_err(|e| StorageError::Inconsistent(format!("raft: {e}")))?;
        Ok(Member {
            raw,
            applier,
            config,
            applied,
            conf_history,
            stopped: None,
            started_ready: None,
            forced,
        })
    }

    /// What `--force-new-cluster` did when this member opened, if it was asked for.
    pub fn forced_restart(&self) -> Option<&ForcedRestart> {
        self.forced.as_ref()
    }

    /// The member and cluster IDs stored on `engine`, or `None` for a fresh engine: a
    /// restarted member takes its identity from its disk.
    pub fn stored_identity(engine: &E) -> Result<Option<(u64, u64)>, StorageError> {
        let member = read_meta(engine, Space::Raft, MEMBER_ID)?;
        let cluster = read_meta(engine, Space::Raft, CLUSTER_ID)?;
        Ok(match (member, cluster) {
            (Some(m), Some(c)) => Some((m as u64, c as u64)),
            _ => None,
        })
    }

    /// This member's ID.
    pub fn id(&self) -> NodeId {
        self.config.raft.id
    }

    /// The Raft core.
    pub fn raw(&self) -> &RawNode<RaftStore<E>> {
        &self.raw
    }

    /// The Raft core, for ticks, steps, proposals and status.
    pub fn raw_mut(&mut self) -> &mut RawNode<RaftStore<E>> {
        &mut self.raw
    }

    /// The member's data: store, lessor, watchers, members and alarms.
    pub fn applier(&self) -> &Applier<EngineBackend<E>> {
        &self.applier
    }

    /// The member's data, mutably: for staging, flushing and the watcher and lessor calls.
    pub fn applier_mut(&mut self) -> &mut Applier<EngineBackend<E>> {
        &mut self.applier
    }

    /// Why the member stopped, if it did.
    pub fn stopped(&self) -> Option<&StorageError> {
        self.stopped.as_ref()
    }

    fn check_running(&self) -> Result<(), StorageError> {
        match &self.stopped {
            None => Ok(()),
            Some(e) => Err(StorageError::Stopped(e.to_string())),
        }
    }

    /// Records `e` as the reason the member stopped, and returns it.
    fn stop(&mut self, e: StorageError) -> StorageError {
        self.stopped.get_or_insert(e).clone()
    }

    /// Reads from the store (a serializable read: what this member applied). A storage error
    /// stops the member: a read that cannot be vouched for is never answered with data.
    pub fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse, mvcc::Error> {
        if let Err(e) = self.check_running() {
            return Err(mvcc::Error::Backend(BackendError(e.to_string())));
        }
        let r = self.applier.kv().range(req);
        if let Err(mvcc::Error::Backend(e)) = &r {
            self.stop(StorageError::Io(e.to_string()));
        }
        r
    }

    /// Proposes `cmd` (it is applied once committed).
    pub fn propose(&mut self, cmd: &Command) -> Result<(), raft::Error> {
        self.raw.propose(cmd.encode())
    }

    /// Proposes `cmd` on behalf of request `id`; its [`AppliedEntry`] names the request.
    pub fn propose_request(&mut self, id: RequestId, cmd: &Command) -> Result<(), raft::Error> {
        self.raw.propose(cmd.encode_proposal(id))
    }

    /// Starts the pending Ready, if any, and hands out the messages that may leave before it
    /// is durable (step 1 of [`raft::Ready`]'s order: a leader's appends and heartbeats), so
    /// that followers store entries while this member does. Snapshot messages stay behind:
    /// [`Member::handle_ready`] returns them, for the caller to fill in. Call
    /// [`Member::handle_ready`] next.
    pub fn early_messages(&mut self) -> Vec<Message> {
        if self.stopped.is_some() || self.started_ready.is_some() || !self.raw.has_ready() {
            return Vec::new();
        }
        let mut rd = self.raw.ready();
        let (early, late) = std::mem::take(&mut rd.messages)
            .into_iter()
            .partition(|m| m.kind != MessageKind::Snapshot);
        rd.messages = late;
        self.started_ready = Some(rd);
        early
    }

    /// Carries out the pending Ready, if any, or the rest of the one
    /// [`Member::early_messages`] started (see the module docs for the order).
    pub fn handle_ready(&mut self, now_ms: u64) -> Result<Option<Output>, StorageError> {
        self.check_running()?;
        if self.started_ready.is_none() && !self.raw.has_ready() {
            return Ok(None);
        }
        match self.handle_ready_inner(now_ms) {
            Ok(out) => Ok(Some(out)),
            Err(e) => Err(self.stop(e)),
        }
    }

    fn handle_ready_inner(&mut self, now_ms: u64) -> Result<Output, StorageError> {
        let mut rd = match self.started_ready.take() {
            Some(rd) => rd,
            None => self.raw.ready(),
        };
        let mut extra = WriteBatch::default();
        if let Some(snap) = &rd.snapshot {
            let restored = snapshot::read_snapshot(&snap.data)?;
            extra = snapshot::restore_batch(self.raw.storage().engine(), restored)?;
        }
        let snapshot_meta = rd.snapshot.as_ref().map(|s| s.metadata.clone());
        self.raw.storage_mut().persist(
            snapshot_meta.as_ref(),
            &rd.entries,
            rd.hard_state.as_ref(),
            extra,
            rd.must_sync,
        )?;
        if snapshot_meta.is_some() {
            // The state machine was replaced: read it back as recovery does.
            let engine = self.raw.storage().engine().clone();
            let mut applier = recover_applier(engine, &self.config, now_ms)?;
            applier.keep_v2_hub(&mut self.applier);
            self.applier = applier;
            self.applied = self.applier.applied_index().map_err(apply_storage_error)?;
            let cs = self.raw.storage().conf_state().clone();
            let index = snapshot_meta.as_ref().map_or(0, |m| m.index);
            self.conf_history = vec![(index, cs)];
        }
        let mut out = Output {
            messages: std::mem::take(&mut rd.messages),
            soft_state: rd.soft_state.take(),
            read_states: std::mem::take(&mut rd.read_states),
            applied: Vec::with_capacity(rd.committed_entries.len()),
        };
        out.messages.append(&mut rd.persisted_messages);
        for e in std::mem::take(&mut rd.committed_entries) {
            let (request, outcome) = self.apply_entry(&e, now_ms)?;
            out.applied.push(AppliedEntry {
                index: e.index,
                term: e.term,
                request,
                data: e.data,
                outcome,
            });
        }
        self.applier.flush().map_err(apply_storage_error)?;
        self.raw.advance();
        Ok(out)
    }

    fn apply_entry(
        &mut self,
        e: &raft::Entry,
        now_ms: u64,
    ) -> Result<(Option<RequestId>, Outcome), StorageError> {
        let done = e.index <= self.applied;
        self.applied = self.applied.max(e.index);
        match e.kind {
            // Already in the state machine (from a snapshot taken after this entry).
            EntryKind::Normal if done => Ok((None, Outcome::Empty)),
            EntryKind::Normal if e.data.is_empty() => {
                self.applier.stage_applied(e.index);
                Ok((None, Outcome::Empty))
            }
            EntryKind::Normal => {
                let (request, cmd) = Command::decode_entry(&e.data).map_err(|err| {
                    StorageError::Inconsistent(format!("committed entry {}: {err}", e.index))
                })?;
                let (result, revision) = self.applier.apply_at(e.index, &cmd, now_ms);
                if let Err(err) = &result
                    && err.is_storage()
                {
                    return Err(apply_storage_error(err.clone()));
                }
                Ok((request, Outcome::Command { result, revision }))
            }
            EntryKind::ConfChange => {
                let cc = ConfChange::decode(&e.data);
                let result = cc
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|cc| self.raw.apply_conf_change(cc));
                // A change the state machine already holds (from a snapshot taken after it)
                // has its records there already; only Raft's configuration is rebuilt.
                if let (Ok(cc), Ok(_), false) = (&cc, &result, done) {
                    // The member records travel in the change's context.
                    for single in &cc.changes {
                        let record = match single.kind {
                            ConfChangeKind::RemoveNode => None,
                            _ if cc.context.is_empty() => continue,
                            _ => Some(cc.context.clone()),
                        };
                        self.applier.stage_member(single.node_id, record);
                    }
                }
                // The membership, what the applier staged (the member records, the v2 index
                // that counts them) and the applied index land together, in one batch: a
                // crash in between would apply the change twice.
                let mut batch = EngineBackend::<E>::to_write_batch(self.applier.take_staged());
                stage_meta(
                    &mut batch,
                    Space::Meta,
                    meta_key(crate::mvcc::MetaKey::AppliedIndex),
                    // Never behind what the state machine holds (a change it already held).
                    self.applied as i64,
                );
                let store = self.raw.storage_mut();
                if let Ok(cs) = &result {
                    store.stage_conf_state(&mut batch, cs);
                }
                store.engine().write(batch)?;
                if let Ok(cs) = &result {
                    store.conf_state_persisted(cs.clone());
                    self.conf_history.push((e.index, cs.clone()));
                }
                Ok((None, Outcome::ConfChange(result)))
            }
        }
    }

    /// Takes a snapshot at the applied index and drops the log before it, keeping `keep`
    /// entries for slow followers (etcd's snapshot-catchup-entries).
    pub fn compact_log(&mut self, keep: u64) -> Result<(), StorageError> {
        self.check_running()?;
        let applied = self.raw.status().applied;
        let Some(index) = applied.checked_sub(keep).filter(|i| *i > 0) else {
            return Ok(());
        };
        // The membership as of `index`; unknown before the open (then wait for more log).
        let Some(at) = self.conf_history.iter().rposition(|(i, _)| *i <= index) else {
            return Ok(());
        };
        let cs = self.conf_history[at].1.clone();
        self.conf_history.drain(..at);
        let r = self.raw.storage_mut().compact(index, cs);
        r.map_err(|e| self.stop(e))
    }

    /// The metadata that goes with [`Member::snapshot_data`] taken now: the applied index, its
    /// term and the membership as of it. The stored snapshot's metadata can be older than the
    /// data a leader sends (a founded cluster's is its bootstrap, which lacks every member
    /// added since), and a member refuses a snapshot whose membership does not name it.
    pub fn snapshot_metadata_now(&self) -> Result<SnapshotMetadata, StorageError> {
        self.check_running()?;
        let index = self.raw.status().applied;
        let term = self.raw.raft.raft_log.term(index).map_err(|e| {
            StorageError::Inconsistent(format!("the term of applied index {index}: {e}"))
        })?;
        let conf_state = self
            .conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .expect("the membership is known from the open on");
        Ok(SnapshotMetadata {
            conf_state,
            index,
            term,
        })
    }

    /// The state machine as a snapshot stream (the data of a Raft snapshot, or a backup).
    pub fn snapshot_data(&self) -> Result<Bytes, StorageError> {
        self.check_running()?;
        snapshot::snapshot_bytes(self.raw.storage().engine())
    }

    /// A frozen view of the state machine as applied now, to read out off the member's loop
    /// (a client's snapshot in etcd's format: [`crate::storage::etcd_format::encode`]).
    pub fn state_view(&self) -> Result<E::View, StorageError> {
        self.check_running()?;
        Ok(self.raw.storage().engine().view())
    }
}
