//! The apply side of a member: what a committed command does to the data. It keeps the MVCC
//! store, the lessor and the watchers in step: a put attaches its key to its lease (moving it
//! from another), a delete detaches it, a revoke deletes the lease's keys in one revision, and
//! every write's events reach the watchers.
//!
//! What it does not do: it decodes no Raft entry (commands arrive typed), answers no client and
//! chooses nothing on its own: lease IDs and the time come from the caller, and the leader-only
//! lease work (keep-alive, expiry, checkpoints) is the lessor's, driven by the node.

use crate::auth::{
    AuthApplied, AuthCommand, AuthError, AuthStore, PermKind, TOKEN_TTL_MS_DEFAULT, Tokens,
};
use crate::lease::{self, Granted, LeaseId, Lessor};
use crate::mvcc::{
    self, Alarm, Backend, BackendError, Batch, DeleteRangeRequest, DeleteRangeResponse, Event,
    EventKind, KvStore, LeaseRecord, MetaKey, PutRequest, PutResponse, RequestOp, TxnRequest,
    TxnResponse, Watchers, Write,
};
use crate::v2::{self, AuthReply, V2, V2AuthError, V2Command, V2Error, V2Store, WatchHub};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// A command that has been committed to the log, in the order every member applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Writes one key.
    Put(PutRequest),
    /// Deletes a key or a range of keys.
    DeleteRange(DeleteRangeRequest),
    /// A transaction.
    Txn(TxnRequest),
    /// Forgets history at or below a revision.
    Compact {
        /// The revision to compact at.
        revision: i64,
    },
    /// The ID is never 0: the member that proposes a grant picks it.
    LeaseGrant {
        /// The ID of the new lease.
        id: LeaseId,
        /// The TTL asked for, in seconds (clamped to the lessor's bounds).
        ttl_s: i64,
    },
    /// Revokes a lease, deleting its keys.
    LeaseRevoke {
        /// The lease to revoke.
        id: LeaseId,
    },
    /// Remaining TTLs the leader measured, in milliseconds.
    LeaseCheckpoint(Vec<(LeaseId, u64)>),
    /// Stores a cluster member's record (its name and URLs, in the server's encoding): how a
    /// member publishes itself and how its peer URLs are updated. Members join and leave by
    /// configuration changes, which carry the record too.
    SetMember {
        /// The member's ID.
        id: u64,
        /// The member's record; stored as given.
        record: Bytes,
    },
    /// Lists, raises or clears an alarm, as etcd's `Alarm` call does: through the log, so every
    /// member holds the same alarms and gates the same commands on them.
    Alarm {
        /// Whether to list, raise or clear.
        action: AlarmAction,
        /// The member the alarm names (stored as given: 0 is a member ID like any other).
        member: u64,
        /// etcd's `AlarmType` number; for `Get`, 0 lists every type.
        kind: i32,
    },
    /// Changes or reads the auth state, for a client without credentials (a plain one) or
    /// for the user of the [`Command::Authed`] that carries it.
    Auth(AuthCommand),
    /// A client's command with who sent it: the user (empty: no credentials) and the auth
    /// revision its credentials were checked at (0: none). Applying checks the user's
    /// permissions again against the auth state of that moment, so a grant revoked while the
    /// command was in flight refuses it. Commands the members propose themselves (lease
    /// expiry, alarms, member records) are plain and unchecked.
    Authed {
        /// The user; empty without credentials.
        user: String,
        /// The auth revision the user's credentials were checked at; 0 without any.
        revision: u64,
        /// The command; never another `Authed`.
        cmd: Box<Command>,
    },
    /// A write to the v2 store (kept apart from the v3 data).
    V2(V2Command),
    /// A change to the v2 auth state (users, roles, the enabled flag).
    V2Auth(v2::AuthCommand),
}

/// etcd's `AlarmRequest.AlarmAction`, with its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmAction {
    /// Lists the raised alarms.
    Get = 0,
    /// Raises an alarm.
    Activate = 1,
    /// Clears an alarm.
    Deactivate = 2,
}

/// etcd's `AlarmType.NOSPACE`: the data outgrew its quota; writes that add data are refused.
pub const ALARM_NOSPACE: i32 = 1;
/// etcd's `AlarmType.CORRUPT`: members disagree about the data; every write is refused.
pub const ALARM_CORRUPT: i32 = 2;

/// What a command did. Every variant comes with the store's revision after it (the response
/// header's revision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A put's answer.
    Put(PutResponse),
    /// A delete's answer.
    DeleteRange(DeleteRangeResponse),
    /// A transaction's answer.
    Txn(TxnResponse),
    /// The store was compacted.
    Compact,
    /// The lease granted, with its clamped TTL.
    LeaseGrant(Granted),
    /// How many keys the revoke deleted.
    LeaseRevoke {
        /// The number of keys deleted.
        deleted: i64,
    },
    /// The checkpointed TTLs were recorded.
    LeaseCheckpoint,
    /// The member record was stored.
    SetMember,
    /// The alarms the call names: every raised one of the type asked for (`Get`), the one it
    /// raised (`Activate`, also when it was up already) or cleared (`Deactivate`; none when
    /// it was not raised).
    Alarm(Vec<Alarm>),
    /// An auth command's answer.
    Auth(AuthApplied),
    /// A v2 write's events (one, or those a `Sync` expired).
    V2(Vec<v2::Event>),
    /// A v2 auth change's answer.
    V2Auth(AuthReply),
}

/// Why a command was refused, or the storage failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ApplyError {
    /// The store refused the command, or its backend failed.
    #[error(transparent)]
    Mvcc(#[from] mvcc::Error),
    /// The lessor refused the command.
    #[error(transparent)]
    Lease(#[from] lease::Error),
    /// The NOSPACE alarm is raised and the command could add data.
    #[error("database space exceeded")]
    NoSpace,
    /// The CORRUPT alarm is raised.
    #[error("corrupt cluster")]
    Corrupt,
    /// The auth state refused the command.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The v2 store refused the write.
    #[error(transparent)]
    V2(#[from] V2Error),
    /// The v2 auth state refused the change.
    #[error(transparent)]
    V2Auth(#[from] V2AuthError),
}

impl ApplyError {
    /// Whether the storage failed (the member must stop), as opposed to the command being
    /// refused (its answer to the client).
    pub fn is_storage(&self) -> bool {
        matches!(self, ApplyError::Mvcc(mvcc::Error::Backend(_)))
    }
}

impl Command {
    /// Whether the command can make the data bigger: refused while NOSPACE is raised (deletes,
    /// revokes and compactions are what frees space, so they pass), as etcd's capped applier
    /// refuses puts, transactions that put and lease grants.
    pub fn grows(&self) -> bool {
        match self {
            Command::Put(_) | Command::LeaseGrant { .. } | Command::V2Auth(_) => true,
            Command::Txn(t) => t.has_put(),
            Command::Authed { cmd, .. } => cmd.grows(),
            Command::V2(c) => c.grows(),
            _ => false,
        }
    }

    /// The command an [`Command::Authed`] carries, or this one.
    pub fn inner(&self) -> &Command {
        match self {
            Command::Authed { cmd, .. } => cmd,
            c => c,
        }
    }
}

/// Whether the CORRUPT alarm refuses the command, as etcd's corrupt applier refuses every
/// change to the keys and leases (alarms stay manageable, and the store keeps its members).
/// A transaction that only reads passes: etcd serves those beside its applier.
fn refused_when_corrupt(cmd: &Command) -> bool {
    match cmd {
        Command::Txn(t) => t.has_write(),
        Command::Put(_)
        | Command::DeleteRange(_)
        | Command::Compact { .. }
        | Command::LeaseGrant { .. }
        | Command::LeaseRevoke { .. }
        | Command::V2(_)
        | Command::V2Auth(_) => true,
        Command::LeaseCheckpoint(_)
        | Command::SetMember { .. }
        | Command::Alarm { .. }
        | Command::Auth(_) => false,
        Command::Authed { cmd, .. } => refused_when_corrupt(cmd),
    }
}

/// A member's data: the store, its leases, its watchers and the cluster's member records.
pub struct Applier<B: Backend> {
    kv: KvStore<B>,
    lessor: Lessor,
    watchers: Watchers,
    txn_ops_max: usize,
    members: BTreeMap<u64, Bytes>,
    alarms: BTreeSet<Alarm>,
    auth: AuthStore,
    tokens: Tokens,
    v2: V2,
    /// The Raft index of the command being applied (completes simple tokens).
    applying_index: u64,
}

impl<B: Backend> Applier<B> {
    /// An applier over a store, lessor and watchers, with no members or alarms loaded;
    /// `txn_ops_max` bounds the operations of each transaction level.
    pub fn new(kv: KvStore<B>, lessor: Lessor, watchers: Watchers, txn_ops_max: usize) -> Self {
        Applier {
            kv,
            lessor,
            watchers,
            txn_ops_max,
            members: BTreeMap::new(),
            alarms: BTreeSet::new(),
            auth: AuthStore::new(),
            tokens: Tokens::new(TOKEN_TTL_MS_DEFAULT),
            v2: V2::default(),
            applying_index: 0,
        }
    }

    /// A member's data as `backend` holds it after a restart: the store reopened, the leases
    /// restored (counting down from `now_ms`) with the keys that name them attached.
    pub fn recover(
        backend: B,
        mut lessor: Lessor,
        watchers: Watchers,
        txn_ops_max: usize,
        now_ms: u64,
    ) -> Result<Self, ApplyError> {
        let leases = backend.leases().map_err(mvcc::Error::from)?;
        let members = backend.members().map_err(mvcc::Error::from)?;
        let alarms = backend.alarms().map_err(mvcc::Error::from)?;
        let auth = match backend.auth().map_err(mvcc::Error::from)? {
            Some(stored) => AuthStore::decode(&stored).map_err(|e| {
                mvcc::Error::Backend(BackendError(format!("the stored auth state: {e}")))
            })?,
            None => AuthStore::new(),
        };
        let v2_index = backend.meta(MetaKey::V2Index).map_err(mvcc::Error::from)?;
        let v2_store = V2Store::recover(
            v2_index.unwrap_or(0) as u64,
            backend.v2_nodes().map_err(mvcc::Error::from)?,
        )
        .map_err(|e| mvcc::Error::Backend(BackendError(format!("the stored v2 tree: {e}"))))?;
        let (kv, leased) = KvStore::open_with_leases(backend)?;
        for l in leases {
            lessor.restore(l.id, l.ttl_s, l.remaining_ms, now_ms);
        }
        for (key, id) in leased {
            lessor.attach(id, key.clone()).map_err(|_| {
                mvcc::Error::Backend(BackendError(format!(
                    "key {key:?} names lease {id:x}, which is not stored"
                )))
            })?;
        }
        let mut applier = Applier::new(kv, lessor, watchers, txn_ops_max);
        applier.members = members.into_iter().collect();
        applier.alarms = alarms.into_iter().collect();
        applier.auth = auth;
        applier.v2.hub = WatchHub::starting_after(v2_store.index());
        applier.v2.store = v2_store;
        Ok(applier)
    }

    /// The cluster's member records by ID, as applied.
    pub fn members(&self) -> &BTreeMap<u64, Bytes> {
        &self.members
    }

    /// The raised alarms, in [`Alarm`] order.
    pub fn alarms(&self) -> &BTreeSet<Alarm> {
        &self.alarms
    }

    /// The auth state, as applied.
    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    /// The v2 tree and this member's v2 watchers.
    pub fn v2(&self) -> &V2 {
        &self.v2
    }

    /// The v2 watch hub, for watches and their events (the tree stays the log's to change).
    pub fn v2_hub_mut(&mut self) -> (&mut WatchHub, &V2Store) {
        (&mut self.v2.hub, &self.v2.store)
    }

    /// Moves `other`'s v2 watchers' hub here after the state machine was replaced by a
    /// snapshot: its watchers are cancelled (they would miss what the snapshot covers), the
    /// watcher IDs keep counting up.
    pub fn keep_v2_hub(&mut self, other: &mut Applier<B>) {
        let mut hub = std::mem::take(&mut other.v2.hub);
        hub.restart_after(self.v2.store.index());
        self.v2.hub = hub;
    }

    /// Counts a membership change in the v2 index, as etcd's v2 store (which holds the
    /// member records) counts it.
    fn bump_v2_index(&mut self) {
        self.v2.store.bump_index();
        self.kv.stage(Batch {
            meta: vec![(MetaKey::V2Index, self.v2.store.index() as i64)],
            ..Batch::default()
        });
    }

    fn apply_v2(&mut self, c: &V2Command) -> Result<Vec<v2::Event>, V2Error> {
        let events = self.v2.apply(c)?;
        self.stage_v2();
        Ok(events)
    }

    /// Stages the v2 index and the v2 records changed since the last call.
    fn stage_v2(&mut self) {
        self.kv.stage(Batch {
            meta: vec![(MetaKey::V2Index, self.v2.store.index() as i64)],
            v2: self.v2.store.take_changes(),
            ..Batch::default()
        });
    }

    /// Sets how long a simple token lives past its last use (etcd's `--auth-token-ttl`).
    pub fn set_token_ttl_ms(&mut self, ttl_ms: u64) {
        self.tokens = Tokens::new(ttl_ms);
    }

    /// The user a simple token names at `now_ms` (renewing it), or `None`.
    pub fn token_user(&mut self, token: &str, now_ms: u64) -> Option<String> {
        self.tokens.lookup(token, now_ms)
    }

    /// Forgets the expired tokens.
    pub fn purge_tokens(&mut self, now_ms: u64) {
        self.tokens.purge(now_ms);
    }

    /// Whether `user`, whose credentials were resolved at auth revision `revision`, may run
    /// `cmd` as the auth state is now: the check an authed command gets when it applies.
    pub fn check(&self, user: &str, revision: u64, cmd: &Command) -> Result<(), AuthError> {
        let auth = &self.auth;
        if !auth.enabled() {
            return Ok(());
        }
        let key = |key: &[u8], end: &[u8], need| auth.check_key(user, revision, key, end, need);
        match cmd {
            Command::Put(p) => self.check_put(user, revision, p),
            Command::DeleteRange(d) => {
                key(&d.key, &d.range_end, PermKind::Write)?;
                if d.prev_kv {
                    key(&d.key, &d.range_end, PermKind::Read)?;
                }
                Ok(())
            }
            Command::Txn(t) => self.check_txn(user, revision, t),
            Command::LeaseRevoke { id } => self.check_lease_keys(user, revision, *id),
            Command::Auth(c) => auth.check_command(user, c),
            Command::Authed { .. } => Err(AuthError::PermissionDenied),
            Command::Compact { .. }
            | Command::LeaseGrant { .. }
            | Command::LeaseCheckpoint(_)
            | Command::SetMember { .. }
            | Command::Alarm { .. }
            | Command::V2(_)
            | Command::V2Auth(_) => Ok(()),
        }
    }

    /// Whether `user` may read `[key, range_end)` (a range or a watch).
    pub fn check_read(
        &self,
        user: &str,
        revision: u64,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        self.auth
            .check_key(user, revision, key, range_end, PermKind::Read)
    }

    fn check_put(&self, user: &str, revision: u64, p: &PutRequest) -> Result<(), AuthError> {
        let auth = &self.auth;
        auth.check_key(user, revision, &p.key, &[], PermKind::Write)?;
        if p.lease != 0 {
            self.check_lease_keys(user, revision, p.lease)?;
        }
        if p.prev_kv {
            auth.check_key(user, revision, &p.key, &[], PermKind::Read)?;
        }
        Ok(())
    }

    /// Write permission on every key attached to lease `id` (none when it is unknown).
    fn check_lease_keys(&self, user: &str, revision: u64, id: LeaseId) -> Result<(), AuthError> {
        let Some(lease) = self.lessor.lease(id) else {
            return Ok(());
        };
        for key in lease.keys() {
            self.auth
                .check_key(user, revision, key, &[], PermKind::Write)?;
        }
        Ok(())
    }

    /// Read on every compare; then every operation of both branches, as etcd checks them.
    /// Unlike etcd 3.4, nested transactions are checked too (etcd 3.4 lets them through
    /// unchecked, a hole later etcd versions closed).
    fn check_txn(&self, user: &str, revision: u64, t: &TxnRequest) -> Result<(), AuthError> {
        let auth = &self.auth;
        for c in &t.compare {
            auth.check_key(user, revision, &c.key, &c.range_end, PermKind::Read)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match op {
                RequestOp::Range(r) => {
                    auth.check_key(user, revision, &r.key, &r.range_end, PermKind::Read)?
                }
                RequestOp::Put(p) => self.check_put(user, revision, p)?,
                RequestOp::DeleteRange(d) => {
                    if d.prev_kv {
                        auth.check_key(user, revision, &d.key, &d.range_end, PermKind::Read)?;
                    }
                    auth.check_key(user, revision, &d.key, &d.range_end, PermKind::Write)?;
                }
                RequestOp::Txn(inner) => self.check_txn(user, revision, inner)?,
            }
        }
        Ok(())
    }

    /// Whether an alarm of type `kind` is raised, for any member.
    pub fn alarm_raised(&self, kind: i32) -> bool {
        self.alarms.iter().any(|a| a.kind == kind)
    }

    /// Stages a member record (`None`: removed), to land with the next write; for the
    /// configuration changes that add and remove members.
    pub fn stage_member(&mut self, id: u64, record: Option<Bytes>) {
        match &record {
            Some(r) => self.members.insert(id, r.clone()),
            None => self.members.remove(&id),
        };
        self.kv.stage(Batch {
            members: vec![(id, record)],
            ..Batch::default()
        });
        self.bump_v2_index();
    }

    /// The Raft index of the last command applied, as stored (0: none yet).
    pub fn applied_index(&self) -> Result<u64, ApplyError> {
        let stored = self.kv.backend().meta(MetaKey::AppliedIndex);
        Ok(stored.map_err(mvcc::Error::from)?.unwrap_or(0) as u64)
    }

    /// Applies the command at Raft index `index`: as [`Applier::apply`], with the index stored
    /// in the same atomic batch as the command's changes (also when the command fails, since
    /// failing is its outcome), so recovery resumes after it and never applies it twice. An
    /// error from the backend (`ApplyError::is_storage`) means the member must stop.
    pub fn apply_at(
        &mut self,
        index: u64,
        cmd: &Command,
        now_ms: u64,
    ) -> (Result<Applied, ApplyError>, i64) {
        self.stage_applied(index);
        self.applying_index = index;
        // Events carry prev_kv only for watchers that want it (a read of the backend saved
        // per put otherwise).
        self.kv
            .set_prev_values_wanted(self.watchers.wants_prev_kv());
        let (result, revision) = self.apply(cmd, now_ms);
        if let Err(ApplyError::Mvcc(e)) = &result
            && matches!(e, mvcc::Error::Backend(_))
        {
            // The storage failed: the command's outcome is unknown, so nothing may record it
            // as applied (recovery must apply it again).
            self.kv.stop_after(e);
            return (result, revision);
        }
        if let Err(e) = self.kv.flush_staged() {
            return (Err(e.into()), revision);
        }
        (result, revision)
    }

    /// Stages `index` as applied, for an entry that carries no command (a leader's empty
    /// entry, a configuration change): written by the next write, or by [`Applier::flush`].
    pub fn stage_applied(&mut self, index: u64) {
        self.kv.stage(Batch {
            meta: vec![(MetaKey::AppliedIndex, index as i64)],
            ..Batch::default()
        });
    }

    /// Takes whatever is staged (member records, meta numbers; never records), for a write
    /// of the caller's that must carry it.
    pub fn take_staged(&mut self) -> Batch {
        let staged = self.kv.take_staged();
        debug_assert!(staged.puts.is_empty() && staged.deletes.is_empty());
        staged
    }

    /// Writes whatever is staged.
    pub fn flush(&mut self) -> Result<(), ApplyError> {
        Ok(self.kv.flush_staged()?)
    }

    /// The key-value store, for reads and its revisions.
    pub fn kv(&self) -> &KvStore<B> {
        &self.kv
    }

    /// Counts the store's footprint afresh (after a defragment).
    pub fn recount_footprint(&mut self) -> Result<(), ApplyError> {
        Ok(self.kv.recount_footprint()?)
    }

    /// The lessor, for lookups and time-to-live answers.
    pub fn lessor(&self) -> &Lessor {
        &self.lessor
    }

    /// The lessor, for the leader-only calls (promote, renew, expired, poll_checkpoints).
    pub fn lessor_mut(&mut self) -> &mut Lessor {
        &mut self.lessor
    }

    /// The watchers, for their counts and limits.
    pub fn watchers(&self) -> &Watchers {
        &self.watchers
    }

    /// The watchers and the store they read history from, for the stream calls
    /// (create, cancel, progress requests, sync, tick, poll_response).
    pub fn watchers_mut(&mut self) -> (&mut Watchers, &KvStore<B>) {
        (&mut self.watchers, &self.kv)
    }

    /// Applies one committed command at `now_ms` on this member's clock. An error leaves the
    /// data as it was (every check runs before the first change), so every member, applying
    /// the same log, fails the same commands the same way.
    pub fn apply(&mut self, cmd: &Command, now_ms: u64) -> (Result<Applied, ApplyError>, i64) {
        let result = self.apply_inner(cmd, now_ms);
        (result, self.kv.current_revision())
    }

    fn apply_inner(&mut self, cmd: &Command, now_ms: u64) -> Result<Applied, ApplyError> {
        // etcd swaps in a refusing applier while these alarms are raised; every member holds
        // the same alarms at the same index, so every member refuses the same commands.
        if self.alarm_raised(ALARM_CORRUPT) && refused_when_corrupt(cmd) {
            return Err(ApplyError::Corrupt);
        }
        if self.alarm_raised(ALARM_NOSPACE) && cmd.grows() {
            return Err(ApplyError::NoSpace);
        }
        let lessor = &self.lessor;
        let exists = |id: LeaseId| lessor.contains(id);
        Ok(match cmd {
            Command::Put(p) => {
                let w = self.kv.put(p, &exists)?;
                Applied::Put(self.written(w))
            }
            Command::DeleteRange(d) => {
                let w = self.kv.delete_range(d)?;
                Applied::DeleteRange(self.written(w))
            }
            Command::Txn(t) => {
                let w = self.kv.txn(t, self.txn_ops_max, &exists)?;
                Applied::Txn(self.written(w))
            }
            Command::Compact { revision } => {
                self.kv.compact(*revision)?;
                Applied::Compact
            }
            Command::LeaseGrant { id, ttl_s } => {
                let granted = self.lessor.grant(*id, *ttl_s, now_ms)?;
                self.stage_leases(&[*id]);
                Applied::LeaseGrant(granted)
            }
            Command::LeaseRevoke { id } => {
                let keys = self.lessor.revoke(*id)?;
                self.stage_leases(&[*id]);
                let w = self.kv.delete_keys(&keys)?;
                debug_assert_eq!(w.response as usize, keys.len(), "a lease's keys are live");
                Applied::LeaseRevoke {
                    deleted: self.written(w),
                }
            }
            Command::LeaseCheckpoint(batch) => {
                self.lessor.apply_checkpoint(batch, now_ms);
                let ids: Vec<LeaseId> = batch.iter().map(|(id, _)| *id).collect();
                self.stage_leases(&ids);
                Applied::LeaseCheckpoint
            }
            Command::SetMember { id, record } => {
                self.stage_member(*id, Some(record.clone()));
                Applied::SetMember
            }
            Command::Alarm {
                action,
                member,
                kind,
            } => Applied::Alarm(self.alarm(*action, *member, *kind)),
            Command::Auth(c) => {
                self.auth.check_command("", c)?;
                Applied::Auth(self.apply_auth(c, now_ms)?)
            }
            Command::V2(c) => Applied::V2(self.apply_v2(c)?),
            Command::V2Auth(c) => {
                let reply = self.v2.store.apply_auth(c);
                // A refused change may still have created etcd's /2 directories.
                self.stage_v2();
                Applied::V2Auth(reply?)
            }
            Command::Authed {
                user,
                revision,
                cmd,
            } => {
                self.check(user, *revision, cmd)?;
                match &**cmd {
                    Command::Auth(c) => Applied::Auth(self.apply_auth(c, now_ms)?),
                    Command::Authed { .. } => unreachable!("refused by the check"),
                    cmd => self.apply_inner(cmd, now_ms)?,
                }
            }
        })
    }

    fn apply_auth(&mut self, c: &AuthCommand, now_ms: u64) -> Result<AuthApplied, AuthError> {
        let before = self.auth.revision();
        let was_enabled = self.auth.enabled();
        let applied = self.auth.apply(c)?;
        match c {
            AuthCommand::Authenticate {
                name, token_prefix, ..
            } => {
                let token = format!("{token_prefix}.{}", self.applying_index);
                self.tokens.assign(token.clone(), name.clone(), now_ms);
                return Ok(AuthApplied::Token(token));
            }
            AuthCommand::UserDelete { name } | AuthCommand::UserChangePassword { name, .. } => {
                self.tokens.invalidate_user(name)
            }
            AuthCommand::Disable => self.tokens.clear(),
            _ => {}
        }
        if self.auth.revision() != before || self.auth.enabled() != was_enabled {
            self.kv.stage(Batch {
                auth: Some(self.auth.encode()),
                ..Batch::default()
            });
        }
        Ok(applied)
    }

    fn alarm(&mut self, action: AlarmAction, member: u64, kind: i32) -> Vec<Alarm> {
        let alarm = Alarm { kind, member };
        match action {
            AlarmAction::Get => self
                .alarms
                .iter()
                .filter(|a| kind == 0 || a.kind == kind)
                .copied()
                .collect(),
            AlarmAction::Activate => {
                if self.alarms.insert(alarm) {
                    self.kv.stage(Batch {
                        alarms: vec![(alarm, true)],
                        ..Batch::default()
                    });
                }
                vec![alarm]
            }
            AlarmAction::Deactivate => {
                if !self.alarms.remove(&alarm) {
                    return Vec::new();
                }
                self.kv.stage(Batch {
                    alarms: vec![(alarm, false)],
                    ..Batch::default()
                });
                vec![alarm]
            }
        }
    }

    /// Stages the stored form of leases `ids` as the lessor now holds them (gone: removed), to
    /// land with the command's next write.
    fn stage_leases(&mut self, ids: &[LeaseId]) {
        let leases = ids
            .iter()
            .map(|&id| {
                let record = self.lessor.lease(id).map(|l| LeaseRecord {
                    id,
                    ttl_s: l.ttl_s(),
                    remaining_ms: l.remaining_ms(),
                });
                (id, record)
            })
            .collect();
        self.kv.stage(Batch {
            leases,
            ..Batch::default()
        });
    }

    /// Brings the lessor's key lists in line with a write's events, in order, and hands the
    /// events to the watchers.
    fn written<T>(&mut self, w: Write<T>) -> T {
        for e in &w.events {
            self.follow_lease(e);
        }
        if !w.events.is_empty() {
            self.watchers.notify(&w.events, &self.kv);
        }
        w.response
    }

    fn follow_lease(&mut self, e: &Event) {
        let key = &e.kv.key;
        let held = self.lessor.key_lease(key);
        let wanted = match e.kind {
            EventKind::Put if e.kv.lease != 0 => Some(e.kv.lease),
            _ => None,
        };
        if held == wanted {
            return;
        }
        if let Some(old) = held {
            self.lessor.detach(old, key);
        }
        if let Some(new) = wanted {
            self.lessor
                .attach(new, key.clone())
                .expect("the store checked the lease exists");
        }
    }
}
