//! The KV service: Range, Put, DeleteRange, Txn and Compact. Requests are checked here as
//! etcd checks them before they enter the log; writes go through Raft, reads through the
//! driver (linearizable ones after a ReadIndex round).

use super::convert;
use super::error::{ServerError, mvcc_status};
use crate::mvcc;
use crate::node::{Applied, Command, Credential};
use crate::pb::etcdserverpb::{self as pb, kv_server::Kv};
use crate::server::driver::{Header, NodeHandle};
use prost::Message;
use tonic::{Request, Response, Status};

pub struct KvService {
    h: NodeHandle,
}

impl KvService {
    pub fn new(h: NodeHandle) -> KvService {
        KvService { h }
    }

    /// A range for the client `who` (also what the in-member recipes read with).
    pub async fn range_as(
        &self,
        who: Credential,
        req: pb::RangeRequest,
    ) -> Result<pb::RangeResponse, Status> {
        let req = convert::range_request(req)?;
        mvcc::check_range(&req).map_err(|e| mvcc_status(&e))?;
        let (resp, at) = self.h.range(who, req).await?;
        Ok(convert::range_response(resp, header(&self.h, at)))
    }

    /// A transaction for the client `who`.
    pub async fn txn_as(
        &self,
        who: Credential,
        pbreq: pb::TxnRequest,
    ) -> Result<pb::TxnResponse, Status> {
        check_size(&self.h, &pbreq)?;
        let req = convert::txn_request(pbreq)?;
        mvcc::check_txn(&req, self.h.config.max_txn_ops).map_err(|e| mvcc_status(&e))?;
        match self.h.propose_as(who, Command::Txn(req)).await? {
            (Applied::Txn(r), at) => Ok(convert::txn_response(r, header(&self.h, at))),
            (other, _) => Err(unexpected(&other)),
        }
    }
}

/// The response header for a driver's [`Header`].
pub fn header(h: &NodeHandle, at: Header) -> pb::ResponseHeader {
    convert::header(h.cluster_id, h.member_id, at.revision, at.raft_term)
}

/// etcd refuses a request whose encoding exceeds `--max-request-bytes` before proposing it.
pub fn check_size(h: &NodeHandle, m: &impl Message) -> Result<(), Status> {
    if m.encoded_len() > h.config.max_request_bytes {
        return Err(ServerError::RequestTooLarge.status());
    }
    Ok(())
}

pub(super) fn unexpected(a: &Applied) -> Status {
    Status::internal(format!("etcdserver: unexpected apply result {a:?}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let who = super::credential(&self.h, &request);
        Ok(Response::new(
            self.range_as(who, request.into_inner()).await?,
        ))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let who = super::credential(&self.h, &request);
        let pbreq = request.into_inner();
        check_size(&self.h, &pbreq)?;
        let req = convert::put_request(pbreq);
        mvcc::check_put(&req).map_err(|e| mvcc_status(&e))?;
        match self.h.propose_as(who, Command::Put(req)).await? {
            (Applied::Put(r), at) => {
                Ok(Response::new(convert::put_response(r, header(&self.h, at))))
            }
            (other, _) => Err(unexpected(&other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let who = super::credential(&self.h, &request);
        let pbreq = request.into_inner();
        check_size(&self.h, &pbreq)?;
        let req = convert::delete_range_request(pbreq);
        mvcc::check_delete(&req).map_err(|e| mvcc_status(&e))?;
        match self.h.propose_as(who, Command::DeleteRange(req)).await? {
            (Applied::DeleteRange(r), at) => Ok(Response::new(convert::delete_range_response(
                r,
                header(&self.h, at),
            ))),
            (other, _) => Err(unexpected(&other)),
        }
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let who = super::credential(&self.h, &request);
        Ok(Response::new(self.txn_as(who, request.into_inner()).await?))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let req = request.into_inner();
        let cmd = Command::Compact {
            revision: req.revision,
        };
        match self.h.propose(cmd).await? {
            (Applied::Compact, at) => Ok(Response::new(pb::CompactionResponse {
                header: Some(header(&self.h, at)),
            })),
            (other, _) => Err(unexpected(&other)),
        }
    }
}
