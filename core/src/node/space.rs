//! The member's database size as etcd reports and limits it: `dbSizeInUse` (the pages its
//! data takes in etcd's backend layout: records, leases and a fixed set of pages every
//! database has), `dbSize` (what the database holds until a defragment gives space back:
//! the largest in-use size since the last one, as a bbolt file keeps its freed pages), and
//! the quota (`--quota-backend-bytes`) a write that adds data must fit in.
//!
//! It owns those figures and the cost etcd charges a request; it owns neither the data
//! (the MVCC store counts its records, [`crate::mvcc::Footprint`]) nor the engine's files,
//! whose size depends on the engine (fjall preallocates its journal) and which a defragment
//! compacts on the driver's side.

use super::apply::Command;
use crate::mvcc::{RequestOp, TxnRequest};

/// bbolt's page size on the machines etcd runs on.
pub const PAGE_BYTES: u64 = 4096;
/// Pages every etcd database has in use: two meta pages, the freelist, the root bucket (an
/// empty etcd 3.4 member reports 16384 bytes in use).
const BASE_PAGES: u64 = 4;
/// What one lease takes in etcd's `lease` bucket: leaf element, ID, `leasepb.Lease`.
const LEASE_BYTES: u64 = 16 + 8 + 16;
/// etcd's charge for a put beside its key and value (`kvOverhead`), and for a lease grant.
const PUT_COST_BYTES: u64 = 256;
const LEASE_COST_BYTES: u64 = 64;

/// The database's size, as `Status` and `/metrics` report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Space {
    /// What the database holds: the largest in-use size since the last defragment.
    pub size_bytes: u64,
    /// What its data takes now.
    pub in_use_bytes: u64,
}

/// The largest in-use size since the last defragment (or since this member opened its
/// data, which a restart counts as a defragment: the engine compacts on recovery).
#[derive(Clone, Copy, Debug, Default)]
pub struct HighWater {
    bytes: u64,
}

impl HighWater {
    /// The space now, given what the data takes; remembers the high water.
    pub fn observe(&mut self, in_use_bytes: u64) -> Space {
        // A fresh database has one page beyond what it uses, as etcd's (20480 bytes).
        if self.bytes == 0 {
            self.bytes = in_use_bytes + PAGE_BYTES;
        }
        self.bytes = self.bytes.max(in_use_bytes);
        Space {
            size_bytes: self.bytes,
            in_use_bytes,
        }
    }

    /// A defragment gave the free pages back.
    pub fn defragmented(&mut self, in_use_bytes: u64) {
        self.bytes = in_use_bytes;
    }
}

/// Bytes in use for `record_bytes` of MVCC records and `leases` leases: whole pages.
pub fn in_use_bytes(record_bytes: u64, leases: u64) -> u64 {
    let data = record_bytes + leases * LEASE_BYTES;
    (BASE_PAGES + data.div_ceil(PAGE_BYTES)) * PAGE_BYTES
}

/// What etcd's quota charges `cmd`: its puts' keys and values with a fixed overhead each,
/// and a fixed cost per lease grant; nothing for a command that adds no data.
pub fn cost_bytes(cmd: &Command) -> u64 {
    match cmd.inner() {
        Command::Put(p) => (p.key.len() + p.value.len()) as u64 + PUT_COST_BYTES,
        Command::Txn(t) => txn_cost_bytes(t),
        Command::LeaseGrant { .. } => LEASE_COST_BYTES,
        _ => 0,
    }
}

/// A transaction costs its costlier branch (only one of them runs).
fn txn_cost_bytes(t: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match op {
                RequestOp::Put(p) => (p.key.len() + p.value.len()) as u64 + PUT_COST_BYTES,
                RequestOp::Txn(t) => txn_cost_bytes(t),
                RequestOp::Range(_) | RequestOp::DeleteRange(_) => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_member_reports_etcds_sizes() {
        let mut h = HighWater::default();
        let s = h.observe(in_use_bytes(0, 0));
        assert_eq!(s.in_use_bytes, 16384);
        assert_eq!(s.size_bytes, 20480);
    }

    #[test]
    fn size_keeps_its_high_water_until_a_defragment() {
        let mut h = HighWater::default();
        h.observe(in_use_bytes(0, 0));
        let big = h.observe(in_use_bytes(100 * PAGE_BYTES, 0));
        assert_eq!(big.size_bytes, big.in_use_bytes);
        let after = h.observe(in_use_bytes(PAGE_BYTES, 0));
        assert_eq!(after.size_bytes, big.size_bytes);
        assert_eq!(after.in_use_bytes, 5 * PAGE_BYTES);
        h.defragmented(after.in_use_bytes);
        assert_eq!(h.observe(after.in_use_bytes).size_bytes, 5 * PAGE_BYTES);
    }
}
