//! One simulated member: a `RawNode` over `MemStorage` (which holds exactly what this member
//! made durable), the Ready whose write is under way on its simulated disk, and a toy state
//! machine (a digest of every applied entry).

use crate::fnv::Fnv;
use bytes::Bytes;
use oxcd::raft::{ConfState, Entry, MemStorage, NodeId, RawNode, Ready, Snapshot};

/// A Ready handed out and being written; it completes at `complete_at` unless the member
/// crashes first (then its writes are lost, or torn).
pub struct PendingWrite {
    pub ready: Ready,
    pub complete_at: u64,
}

/// The applied state: index, a digest chained over every applied entry, and the membership.
#[derive(Clone, Debug, Default)]
pub struct StateMachine {
    pub applied: u64,
    pub digest: u64,
    pub conf_state: ConfState,
}

impl StateMachine {
    /// Restores from a snapshot written by `snapshot_data` (the bootstrap snapshot has no data:
    /// an empty state at its index).
    pub fn from_snapshot(snapshot: &Snapshot) -> StateMachine {
        let (applied, digest) =
            decode_snapshot_data(&snapshot.data).unwrap_or((snapshot.metadata.index, 0));
        assert_eq!(
            applied, snapshot.metadata.index,
            "snapshot data and metadata disagree"
        );
        StateMachine {
            applied,
            digest,
            conf_state: snapshot.metadata.conf_state.clone(),
        }
    }

    pub fn apply(&mut self, e: &Entry) {
        assert_eq!(e.index, self.applied + 1, "entries apply in order");
        self.applied = e.index;
        self.digest = Fnv::default()
            .u64(self.digest)
            .u64(e.index)
            .u64(e.term)
            .bytes(&e.data)
            .finish();
    }

    pub fn snapshot_data(&self) -> Bytes {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.applied.to_le_bytes());
        v.extend_from_slice(&self.digest.to_le_bytes());
        Bytes::from(v)
    }
}

fn decode_snapshot_data(data: &[u8]) -> Option<(u64, u64)> {
    if data.len() != 16 {
        return None;
    }
    let index = u64::from_le_bytes(data[..8].try_into().ok()?);
    let digest = u64::from_le_bytes(data[8..].try_into().ok()?);
    Some((index, digest))
}

pub struct SimNode {
    pub id: NodeId,
    /// The running member; `None` while crashed or after it was removed and stopped.
    pub raw: Option<RawNode<MemStorage>>,
    /// What survives while the member is down.
    pub durable: MemStorage,
    pub pending: Option<PendingWrite>,
    pub sm: StateMachine,
    pub down_until: u64,
    /// Removed from the cluster and stopped for good.
    pub retired: bool,
    /// Has been part of an applied configuration (a joining member is not, until its snapshot).
    pub was_member: bool,
    /// Checker observations.
    pub last_commit: u64,
    pub last_persisted_commit: u64,
    pub leader_term: u64,
}

impl SimNode {
    pub fn new(id: NodeId, storage: MemStorage) -> SimNode {
        let commit = storage.hard_state().commit;
        SimNode {
            id,
            raw: None,
            durable: storage,
            pending: None,
            sm: StateMachine::default(),
            down_until: 0,
            retired: false,
            was_member: false,
            last_commit: commit,
            last_persisted_commit: commit,
            leader_term: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.raw.is_some()
    }
}
