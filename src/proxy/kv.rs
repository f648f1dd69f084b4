//! The proxy's KV service: requests moved into the namespace and sent to the members, with
//! serializable ranges answered from the cache ([`super::cache`]) when they can be. A write
//! that succeeds through the proxy drops the cached answers it touches; a compaction drops
//! them all. A linearizable range's answer is cached too, for later serializable reads.
//!
//! What it does not do: answer a linearizable read itself.

use super::cache::RangeCache;
use super::namespace::Namespace;
use super::upstream::{Upstream, token_of};
use crate::pb::etcdserverpb::{
    self as pb, kv_client::KvClient, kv_server::Kv, request_op::Request as Op,
};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tonic::{Request, Response, Status};

/// The KV service.
#[derive(Clone)]
pub struct KvProxy {
    upstream: Upstream,
    namespace: Namespace,
    cache: Arc<Mutex<RangeCache>>,
}

/// The numbers `/metrics` shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheCounts {
    pub keys: usize,
    pub hits: u64,
    pub misses: u64,
}

impl KvProxy {
    pub fn new(upstream: Upstream, namespace: Namespace) -> KvProxy {
        KvProxy {
            upstream,
            namespace,
            cache: Arc::new(Mutex::new(RangeCache::new())),
        }
    }

    pub fn counts(&self) -> CacheCounts {
        let c = self.cache.lock().expect("range cache");
        CacheCounts {
            keys: c.len(),
            hits: c.hits,
            misses: c.misses,
        }
    }

    /// Drops the cached answers a transaction's operations (either branch) may touch.
    fn invalidate_txn(cache: &mut RangeCache, t: &pb::TxnRequest) {
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(Op::RequestPut(p)) => cache.invalidate(&p.key, &bytes::Bytes::new()),
                Some(Op::RequestDeleteRange(d)) => cache.invalidate(&d.key, &d.range_end),
                Some(Op::RequestTxn(inner)) => Self::invalidate_txn(cache, inner),
                Some(Op::RequestRange(_)) | None => {}
            }
        }
    }
}

#[tonic::async_trait]
impl Kv for KvProxy {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let mut r = request.get_ref().clone();
        self.namespace.range(&mut r);
        let token = token_of(&request);
        let key = RangeCache::key(&r, token.as_ref().map(|t| t.as_bytes()));
        // One look at the cache: its answer, or the generation to store the fetched one under.
        let generation = {
            let mut cache = self.cache.lock().expect("range cache");
            if r.serializable
                && let Some(mut hit) = cache.get(&key, Instant::now())
            {
                drop(cache);
                self.namespace.range_response(&mut hit);
                return Ok(Response::new(hit));
            }
            cache.generation()
        };
        let mut answer = forward_call!(
            self.upstream,
            KvClient,
            request.metadata(),
            range,
            r.clone()
        )?;
        self.cache.lock().expect("range cache").store(
            key,
            &r,
            answer.get_ref().clone(),
            generation,
            Instant::now(),
        );
        self.namespace.range_response(answer.get_mut());
        Ok(answer)
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let mut r = request.get_ref().clone();
        self.namespace.put(&mut r);
        let answer = forward_call!(self.upstream, KvClient, request.metadata(), put, r.clone());
        // Dropped whatever the answer: a put that timed out may still have been applied.
        self.cache
            .lock()
            .expect("range cache")
            .invalidate(&r.key, &bytes::Bytes::new());
        let mut answer = answer?;
        self.namespace.put_response(answer.get_mut());
        Ok(answer)
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let mut r = request.get_ref().clone();
        self.namespace.delete(&mut r);
        let answer = forward_call!(
            self.upstream,
            KvClient,
            request.metadata(),
            delete_range,
            r.clone()
        );
        self.cache
            .lock()
            .expect("range cache")
            .invalidate(&r.key, &r.range_end);
        let mut answer = answer?;
        self.namespace.delete_response(answer.get_mut());
        Ok(answer)
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let mut r = request.get_ref().clone();
        self.namespace.txn(&mut r);
        let answer = forward_call!(self.upstream, KvClient, request.metadata(), txn, r.clone());
        Self::invalidate_txn(&mut self.cache.lock().expect("range cache"), &r);
        let mut answer = answer?;
        self.namespace.txn_response(answer.get_mut());
        Ok(answer)
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let answer = {
            let (md, _, message) = request.into_parts();
            forward_call!(self.upstream, KvClient, &md, compact, message)
        };
        self.cache.lock().expect("range cache").clear();
        answer
    }
}
