//! Requests and responses of the KV operations, field by field as etcd's `etcdserverpb` names
//! them (headers aside: the API edge adds cluster, member and term), and the checks etcd makes
//! before a request may enter the log.

use super::error::{Error, Result};
use super::kv::KeyValue;
use bytes::Bytes;
use std::collections::BTreeSet;

/// etcd's `--max-txn-ops` default.
pub const TXN_OPS_MAX_DEFAULT: usize = 128;

/// The order a range returns its keys in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// No sort asked for: keys come in key order.
    #[default]
    None,
    /// Smallest first.
    Ascend,
    /// Largest first.
    Descend,
}

/// What a range sorts its keys by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    /// The key bytes.
    #[default]
    Key,
    /// The key's version (puts since it was created).
    Version,
    /// The revision the key was created at.
    Create,
    /// The revision the key was last modified at.
    Mod,
    /// The value bytes.
    Value,
}

/// A read of one key or a range of keys (etcd's `RangeRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// The key, or the start of the range.
    pub key: Bytes,
    /// End of the range, exclusive: empty for `key` alone, `"\0"` for every key from `key` on.
    pub range_end: Bytes,
    /// At most this many keys; 0 for no limit.
    pub limit: i64,
    /// Read as of this revision; 0 (or less) for the current one.
    pub revision: i64,
    /// The order to return keys in.
    pub sort_order: SortOrder,
    /// What to sort by when `sort_order` is not `None`.
    pub sort_target: SortTarget,
    /// Served from the local member without a ReadIndex round (the store ignores it).
    pub serializable: bool,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count, no keys.
    pub count_only: bool,
    /// Filters on the versions found (0: no bound).
    pub min_mod_revision: i64,
    /// Upper bound on the revision a key was last modified at (0: none).
    pub max_mod_revision: i64,
    /// Lower bound on the revision a key was created at (0: none).
    pub min_create_revision: i64,
    /// Upper bound on the revision a key was created at (0: none).
    pub max_create_revision: i64,
}

/// The answer to a [`RangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The matching keys, in the order asked for, at most `limit` of them.
    pub kvs: Vec<KeyValue>,
    /// More keys matched than `limit` let through.
    pub more: bool,
    /// Keys in the range at the revision read, regardless of `limit` and of the revision filters.
    pub count: i64,
}

/// A write of one key (etcd's `PutRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key to write.
    pub key: Bytes,
    /// The value to write.
    pub value: Bytes,
    /// The lease to attach the key to; 0 for none.
    pub lease: i64,
    /// Return the key's value as it was before this put.
    pub prev_kv: bool,
    /// Keep the key's current value, changing only its lease; the key must exist.
    pub ignore_value: bool,
    /// Keep the key's current lease, changing only its value; the key must exist.
    pub ignore_lease: bool,
}

/// The answer to a [`PutRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The key's previous version, when asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// A delete of one key or a range of keys (etcd's `DeleteRangeRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// The key, or the start of the range.
    pub key: Bytes,
    /// End of the range, exclusive: empty for `key` alone, `"\0"` for every key from `key` on.
    pub range_end: Bytes,
    /// Return the deleted keys as they were before the delete.
    pub prev_kv: bool,
}

/// The answer to a [`DeleteRangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted keys, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// How a compare relates the key's current value to the operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareResult {
    /// The key's value equals the operand.
    Equal,
    /// The key's value is greater than the operand.
    Greater,
    /// The key's value is less than the operand.
    Less,
    /// The key's value differs from the operand.
    NotEqual,
}

/// What a compare looks at, with the operand it compares against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0 when it does not exist).
    Version(i64),
    /// The revision the key was created at.
    Create(i64),
    /// The revision the key was last modified at.
    Mod(i64),
    /// The key's value.
    Value(Bytes),
    /// The lease the key is attached to (0 for none).
    Lease(i64),
}

/// One guard of a transaction: a key, or every key of a range, compared against an operand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The relation that must hold.
    pub result: CompareResult,
    /// What to compare, and against what.
    pub target: CompareTarget,
    /// The key compared, or the start of the range.
    pub key: Bytes,
    /// Non-empty: every key in `[key, range_end)` must satisfy the compare.
    pub range_end: Bytes,
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    /// A read.
    Range(RangeRequest),
    /// A write.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested transaction.
    Txn(TxnRequest),
}

/// A transaction: if every compare holds, run `success`, else `failure`; atomic, at one
/// revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// The guards; all must hold for `success` to run.
    pub compare: Vec<Compare>,
    /// The operations run when every compare holds.
    pub success: Vec<RequestOp>,
    /// The operations run when some compare fails.
    pub failure: Vec<RequestOp>,
}

impl TxnRequest {
    /// Whether either branch, nested transactions included, holds a put.
    pub fn has_put(&self) -> bool {
        self.success.iter().chain(&self.failure).any(|op| match op {
            RequestOp::Put(_) => true,
            RequestOp::Txn(t) => t.has_put(),
            RequestOp::Range(_) | RequestOp::DeleteRange(_) => false,
        })
    }

    /// Whether either branch, nested transactions included, holds a put or a delete.
    pub fn has_write(&self) -> bool {
        self.success.iter().chain(&self.failure).any(|op| match op {
            RequestOp::Put(_) | RequestOp::DeleteRange(_) => true,
            RequestOp::Txn(t) => t.has_write(),
            RequestOp::Range(_) => false,
        })
    }
}

/// The answer to one [`RequestOp`], of the same kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    /// The answer to a read.
    Range(RangeResponse),
    /// The answer to a write.
    Put(PutResponse),
    /// The answer to a delete.
    DeleteRange(DeleteRangeResponse),
    /// The answer to a nested transaction.
    Txn(TxnResponse),
}

/// The answer to a [`TxnRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held, so the `success` branch ran.
    pub succeeded: bool,
    /// One answer per operation of the branch that ran, in order.
    pub responses: Vec<ResponseOp>,
}

/// The checks etcd makes on a range before serving it.
pub fn check_range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::KeyNotProvided);
    }
    Ok(())
}

/// The checks etcd makes on a put before proposing it.
pub fn check_put(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::KeyNotProvided);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// The checks etcd makes on a delete before proposing it.
pub fn check_delete(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::KeyNotProvided);
    }
    Ok(())
}

/// The checks etcd makes on a transaction before proposing it, in etcd's order: too many
/// operations at any level, then each operation (empty keys, put flags), then keys written twice.
pub fn check_txn(r: &TxnRequest, ops_max: usize) -> Result<()> {
    check_txn_ops(r, ops_max)?;
    writes_of(&r.success)?;
    writes_of(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, ops_max: usize) -> Result<()> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > ops_max {
        return Err(Error::TooManyTxnOps { ops_max });
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::KeyNotProvided);
    }
    for op in r.success.iter().chain(&r.failure) {
        match op {
            RequestOp::Range(q) => check_range(q)?,
            RequestOp::Put(q) => check_put(q)?,
            RequestOp::DeleteRange(q) => check_delete(q)?,
            RequestOp::Txn(t) => check_txn_ops(t, ops_max)?,
        }
    }
    Ok(())
}

/// A deleted range as half-open bounds.
#[derive(Clone, Debug)]
struct Span {
    start: Bytes,
    end: Bytes,
}

impl Span {
    /// The span a delete covers for the duplicate-key check. A delete to the end of the key
    /// space (`range_end` "\0") covers nothing here: etcd 3.4 builds that interval literally
    /// as `[key, "\0")`, which its interval order sees as empty, so it accepts a put after
    /// such a delete in one transaction; so does oxcd (the put then follows the delete).
    fn of(key: &Bytes, range_end: &Bytes) -> Option<Span> {
        match range_end.as_ref() {
            [] => {
                let mut end = key.to_vec();
                end.push(0);
                Some(Span {
                    start: key.clone(),
                    end: Bytes::from(end),
                })
            }
            [0] => None,
            _ => Some(Span {
                start: key.clone(),
                end: range_end.clone(),
            }),
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_ref() && key < self.end.as_ref()
    }
}

/// The keys put and ranges deleted by one list of operations, refusing a key written twice on
/// any path that can run: a put of a key already put at this level or by a nested transaction,
/// or a put inside a range deleted at this level or by an earlier nested transaction. The two
/// branches of a nested transaction may write the same key, since only one of them runs.
fn writes_of(ops: &[RequestOp]) -> Result<(BTreeSet<Bytes>, Vec<Span>)> {
    let mut dels: Vec<Span> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Span::of(&d.key, &d.range_end),
            _ => None,
        })
        .collect();
    let deleted = |dels: &[Span], k: &[u8]| dels.iter().any(|s| s.contains(k));
    let mut puts = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(t) = op else { continue };
        let (puts_then, dels_then) = writes_of(&t.success)?;
        let (puts_else, dels_else) = writes_of(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(Error::DuplicateKey);
            }
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || deleted(&dels, k) {
                return Err(Error::DuplicateKey);
            }
        }
        puts.extend(puts_then);
        puts.extend(puts_else);
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &'static str) -> RequestOp {
        RequestOp::Put(PutRequest {
            key: Bytes::from_static(k.as_bytes()),
            ..Default::default()
        })
    }

    fn del(k: &'static str, end: &'static str) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest {
            key: Bytes::from_static(k.as_bytes()),
            range_end: Bytes::from_static(end.as_bytes()),
            prev_kv: false,
        })
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    #[test]
    fn duplicate_keys_are_refused_where_both_writes_can_run() {
        let ok = |t: TxnRequest| check_txn(&t, 128);
        assert_eq!(
            ok(txn(vec![put("a"), put("a")], vec![])),
            Err(Error::DuplicateKey)
        );
        assert_eq!(ok(txn(vec![put("a")], vec![put("a")])), Ok(()));
        assert_eq!(
            ok(txn(vec![del("a", "c"), put("b")], vec![])),
            Err(Error::DuplicateKey)
        );
        assert_eq!(ok(txn(vec![del("a", "c"), put("c")], vec![])), Ok(()));
        // etcd 3.4's quirk: a delete to the end of the key space conflicts with nothing.
        assert_eq!(ok(txn(vec![del("a", "\0"), put("z")], vec![])), Ok(()));
        assert_eq!(ok(txn(vec![del("\0", "\0"), put("z")], vec![])), Ok(()));
        assert_eq!(ok(txn(vec![del("a", "b"), del("a", "c")], vec![])), Ok(()));
        let nested = RequestOp::Txn(txn(vec![put("a")], vec![put("a")]));
        assert_eq!(ok(txn(vec![nested.clone()], vec![])), Ok(()));
        assert_eq!(
            ok(txn(vec![nested.clone(), put("a")], vec![])),
            Err(Error::DuplicateKey)
        );
        let nested_del = RequestOp::Txn(txn(vec![del("a", "")], vec![]));
        assert_eq!(
            ok(txn(vec![nested_del, put("a")], vec![])),
            Err(Error::DuplicateKey)
        );
    }

    #[test]
    fn limits_and_empty_keys_come_first() {
        let many = txn((0..129).map(|_| put("a")).collect(), vec![]);
        assert_eq!(
            check_txn(&many, 128),
            Err(Error::TooManyTxnOps { ops_max: 128 })
        );
        let nested_many = txn(vec![RequestOp::Txn(many)], vec![]);
        assert_eq!(
            check_txn(&nested_many, 128),
            Err(Error::TooManyTxnOps { ops_max: 128 })
        );
        assert_eq!(
            check_txn(&txn(vec![put("")], vec![]), 128),
            Err(Error::KeyNotProvided)
        );
        let bad_put = RequestOp::Put(PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            ignore_value: true,
            ..Default::default()
        });
        assert_eq!(
            check_txn(&txn(vec![bad_put], vec![]), 128),
            Err(Error::ValueProvided)
        );
    }
}
