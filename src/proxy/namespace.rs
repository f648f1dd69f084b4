//! `--namespace`: the proxy's clients see a keyspace of their own. Every key and range they
//! send is moved under the prefix, and the prefix is taken off every key in the answers (watch
//! events, previous values, transaction results, locks and elections included), so a client
//! can neither name nor see a key outside its namespace.
//!
//! What it does not do: send anything. These are pure rewrites of the wire messages, applied
//! by the services on the way up and on the way down.

pub use crate::mvcc::prefix_end;
use crate::pb::etcdserverpb::{
    self as pb, request_op::Request as Op, response_op::Response as OpResponse,
};
use crate::pb::mvccpb;
use crate::pb::{v3electionpb as el, v3lockpb as lk};
use bytes::{BufMut, Bytes, BytesMut};

/// A namespace: the prefix put before every key (empty: the proxy adds none).
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    prefix: Bytes,
}

impl Namespace {
    /// The namespace under `prefix`.
    pub fn new(prefix: &str) -> Namespace {
        Namespace {
            prefix: Bytes::copy_from_slice(prefix.as_bytes()),
        }
    }

    /// Whether there is a prefix to add.
    pub fn is_set(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// `key` under the prefix. An empty key stays empty, so the member refuses it as it
    /// would refuse it from a client.
    pub fn key(&self, key: &Bytes) -> Bytes {
        if !self.is_set() || key.is_empty() {
            return key.clone();
        }
        let mut out = BytesMut::with_capacity(self.prefix.len() + key.len());
        out.put_slice(&self.prefix);
        out.put_slice(key);
        out.freeze()
    }

    /// A range's end under the prefix: none stays none, `\0` (every key from the start on)
    /// becomes the end of the namespace, any other end is prefixed.
    pub fn range_end(&self, end: &Bytes) -> Bytes {
        if !self.is_set() || end.is_empty() {
            end.clone()
        } else if end.as_ref() == b"\0" {
            prefix_end(&self.prefix)
        } else {
            let mut out = BytesMut::with_capacity(self.prefix.len() + end.len());
            out.put_slice(&self.prefix);
            out.put_slice(end);
            out.freeze()
        }
    }

    /// `key` with the prefix taken off (a key from outside the namespace, which the member
    /// never sends for a prefixed request, is left whole).
    pub fn strip(&self, key: &mut Bytes) {
        if self.is_set() && key.starts_with(&self.prefix) {
            *key = key.slice(self.prefix.len()..);
        }
    }

    fn strip_kv(&self, kv: &mut mvccpb::KeyValue) {
        self.strip(&mut kv.key);
    }

    /// A range request moved under the prefix.
    pub fn range(&self, r: &mut pb::RangeRequest) {
        r.key = self.key(&r.key);
        r.range_end = self.range_end(&r.range_end);
    }

    /// A range response as the client sees it.
    pub fn range_response(&self, r: &mut pb::RangeResponse) {
        r.kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
    }

    pub fn put(&self, r: &mut pb::PutRequest) {
        r.key = self.key(&r.key);
    }

    pub fn put_response(&self, r: &mut pb::PutResponse) {
        if let Some(kv) = r.prev_kv.as_mut() {
            self.strip_kv(kv);
        }
    }

    pub fn delete(&self, r: &mut pb::DeleteRangeRequest) {
        r.key = self.key(&r.key);
        r.range_end = self.range_end(&r.range_end);
    }

    pub fn delete_response(&self, r: &mut pb::DeleteRangeResponse) {
        r.prev_kvs.iter_mut().for_each(|kv| self.strip_kv(kv));
    }

    /// A transaction moved under the prefix: its compares and both branches, nested
    /// transactions included.
    pub fn txn(&self, t: &mut pb::TxnRequest) {
        for c in &mut t.compare {
            c.key = self.key(&c.key);
            c.range_end = self.range_end(&c.range_end);
        }
        for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
            match op.request.as_mut() {
                Some(Op::RequestRange(r)) => self.range(r),
                Some(Op::RequestPut(r)) => self.put(r),
                Some(Op::RequestDeleteRange(r)) => self.delete(r),
                Some(Op::RequestTxn(r)) => self.txn(r),
                None => {}
            }
        }
    }

    pub fn txn_response(&self, t: &mut pb::TxnResponse) {
        for op in &mut t.responses {
            match op.response.as_mut() {
                Some(OpResponse::ResponseRange(r)) => self.range_response(r),
                Some(OpResponse::ResponsePut(r)) => self.put_response(r),
                Some(OpResponse::ResponseDeleteRange(r)) => self.delete_response(r),
                Some(OpResponse::ResponseTxn(r)) => self.txn_response(r),
                None => {}
            }
        }
    }

    /// A watch event as the client sees it.
    pub fn event(&self, e: &mut mvccpb::Event) {
        if let Some(kv) = e.kv.as_mut() {
            self.strip_kv(kv);
        }
        if let Some(kv) = e.prev_kv.as_mut() {
            self.strip_kv(kv);
        }
    }

    /// A lease's keys as the client sees them: those of its namespace only, unprefixed.
    pub fn lease_keys(&self, keys: &mut Vec<Bytes>) {
        if !self.is_set() {
            return;
        }
        keys.retain(|k| k.starts_with(&self.prefix));
        keys.iter_mut().for_each(|k| self.strip(k));
    }

    pub fn lock(&self, r: &mut lk::LockRequest) {
        r.name = self.key(&r.name);
    }

    pub fn lock_response(&self, r: &mut lk::LockResponse) {
        self.strip(&mut r.key);
    }

    pub fn unlock(&self, r: &mut lk::UnlockRequest) {
        r.key = self.key(&r.key);
    }

    /// An election's leader key moved under the prefix (its name and its key).
    pub fn leader_key(&self, l: &mut el::LeaderKey) {
        l.name = self.key(&l.name);
        l.key = self.key(&l.key);
    }

    pub fn leader_key_response(&self, l: &mut el::LeaderKey) {
        self.strip(&mut l.name);
        self.strip(&mut l.key);
    }

    pub fn leader_response(&self, r: &mut el::LeaderResponse) {
        if let Some(kv) = r.kv.as_mut() {
            self.strip_kv(kv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn keys_and_ranges_move_under_the_prefix() {
        let ns = Namespace::new("a/");
        assert_eq!(ns.key(&b(b"k")), b(b"a/k"));
        assert_eq!(
            ns.key(&b(b"")),
            b(b""),
            "an empty key stays for the member to refuse"
        );
        assert_eq!(ns.range_end(&b(b"")), b(b""));
        assert_eq!(ns.range_end(&b(b"l")), b(b"a/l"));
        // `\0`: from the key to the end of the keyspace, which is the namespace's end.
        assert_eq!(ns.range_end(&b(b"\0")), b(b"a0"));
        assert_eq!(prefix_end(b"a\xff\xff"), b(b"b"));
        assert_eq!(prefix_end(b"\xff"), b(b"\0"));
        let mut k = b(b"a/k");
        ns.strip(&mut k);
        assert_eq!(k, b(b"k"));
        let mut outside = b(b"b/k");
        ns.strip(&mut outside);
        assert_eq!(outside, b(b"b/k"));
    }

    #[test]
    fn no_namespace_changes_nothing() {
        let ns = Namespace::default();
        assert_eq!(ns.key(&b(b"k")), b(b"k"));
        assert_eq!(ns.range_end(&b(b"\0")), b(b"\0"));
        let mut keys = vec![b(b"x")];
        ns.lease_keys(&mut keys);
        assert_eq!(keys, vec![b(b"x")]);
    }

    #[test]
    fn nested_transactions_and_their_answers_are_rewritten() {
        let ns = Namespace::new("p/");
        let put = |k: &[u8]| pb::RequestOp {
            request: Some(Op::RequestPut(pb::PutRequest {
                key: b(k),
                ..Default::default()
            })),
        };
        let mut t = pb::TxnRequest {
            compare: vec![pb::Compare {
                key: b(b"c"),
                range_end: b(b"\0"),
                ..Default::default()
            }],
            success: vec![pb::RequestOp {
                request: Some(Op::RequestTxn(pb::TxnRequest {
                    failure: vec![put(b"inner")],
                    ..Default::default()
                })),
            }],
            failure: vec![put(b"outer")],
        };
        ns.txn(&mut t);
        assert_eq!(t.compare[0].key, b(b"p/c"));
        assert_eq!(t.compare[0].range_end, b(b"p0"));
        let Some(Op::RequestTxn(inner)) = &t.success[0].request else {
            panic!("the nested txn")
        };
        let Some(Op::RequestPut(p)) = &inner.failure[0].request else {
            panic!("the nested put")
        };
        assert_eq!(p.key, b(b"p/inner"));
        let Some(Op::RequestPut(p)) = &t.failure[0].request else {
            panic!("the put")
        };
        assert_eq!(p.key, b(b"p/outer"));

        let kv = |k: &[u8]| mvccpb::KeyValue {
            key: b(k),
            ..Default::default()
        };
        let mut resp = pb::TxnResponse {
            responses: vec![pb::ResponseOp {
                response: Some(OpResponse::ResponseTxn(pb::TxnResponse {
                    responses: vec![pb::ResponseOp {
                        response: Some(OpResponse::ResponseRange(pb::RangeResponse {
                            kvs: vec![kv(b"p/x")],
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        ns.txn_response(&mut resp);
        let Some(OpResponse::ResponseTxn(inner)) = &resp.responses[0].response else {
            panic!("the nested answer")
        };
        let Some(OpResponse::ResponseRange(r)) = &inner.responses[0].response else {
            panic!("the range answer")
        };
        assert_eq!(r.kvs[0].key, b(b"x"));
    }

    #[test]
    fn lease_keys_outside_the_namespace_are_hidden() {
        let ns = Namespace::new("p/");
        let mut keys = vec![b(b"p/a"), b(b"q/b"), b(b"p/c")];
        ns.lease_keys(&mut keys);
        assert_eq!(keys, vec![b(b"a"), b(b"c")]);
    }
}
