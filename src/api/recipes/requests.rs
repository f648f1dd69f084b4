//! The requests etcd's concurrency recipes make, as values: a contender's key under a
//! recipe's prefix, the writes and reads a transaction puts it in, the read of the contender
//! created first or last, and the create-revision comparison that says whether a key is
//! still the one a contender wrote.
//!
//! Shared by the member's Lock and Election services ([`super`]) and by oxctl, which runs
//! the same recipes as a client, as etcdctl does. Nothing here sends a request.

use crate::mvcc;
use crate::pb::etcdserverpb::{self as pb, compare, request_op};
use bytes::Bytes;

/// The prefix a recipe named `name` keeps its contenders under (`name/`).
pub fn prefix_of(name: &[u8]) -> Bytes {
    let mut p = name.to_vec();
    p.push(b'/');
    Bytes::from(p)
}

/// The key a session's contender writes under `prefix`: its lease as Go's `%x` prints an
/// int64 (a sign, then the magnitude, for the negative IDs no server grants).
pub fn contender_key(prefix: &Bytes, lease: i64) -> Bytes {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    let mut k = prefix.to_vec();
    k.extend_from_slice(hex.as_bytes());
    Bytes::from(k)
}

/// The key under `prefix` created first (`first`) or last, created at `max_create` or before
/// (0: any): clientv3's `WithFirstCreate` / `WithLastCreate`.
pub fn by_creation(prefix: &Bytes, first: bool, max_create: i64) -> pb::RangeRequest {
    use pb::range_request::{SortOrder, SortTarget};
    pb::RangeRequest {
        key: prefix.clone(),
        range_end: mvcc::prefix_end(prefix),
        limit: 1,
        sort_order: if first {
            SortOrder::Ascend
        } else {
            SortOrder::Descend
        } as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create,
        ..Default::default()
    }
}

/// Whether `key` was created at `revision` (0: it does not exist).
pub fn created_at(key: &Bytes, revision: i64) -> pb::Compare {
    pb::Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.clone(),
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

/// `r` as one operation of a transaction.
pub fn op(r: request_op::Request) -> pb::RequestOp {
    pb::RequestOp { request: Some(r) }
}

/// Reads `key`.
pub fn get(key: &Bytes) -> pb::RequestOp {
    op(request_op::Request::RequestRange(pb::RangeRequest {
        key: key.clone(),
        ..Default::default()
    }))
}

/// Writes `value` to `key` under `lease`.
pub fn put(key: &Bytes, value: Bytes, lease: i64) -> pb::RequestOp {
    op(request_op::Request::RequestPut(pb::PutRequest {
        key: key.clone(),
        value,
        lease,
        ..Default::default()
    }))
}

/// Deletes `key`.
pub fn delete(key: &Bytes) -> pb::RequestOp {
    op(request_op::Request::RequestDeleteRange(
        pb::DeleteRangeRequest {
            key: key.clone(),
            ..Default::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contender_keys_name_the_lease_as_go_prints_it() {
        let p = prefix_of(b"n");
        assert_eq!(contender_key(&p, 0x694d), Bytes::from_static(b"n/694d"));
        assert_eq!(contender_key(&p, -0x1f), Bytes::from_static(b"n/-1f"));
    }
}
