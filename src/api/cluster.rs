//! The Cluster service: membership as etcd's clients see it. Adds and removes are Raft
//! configuration changes carrying the member's record; updates re-store the record; a promote
//! turns a learner that has caught up into a voter (decided on the leader, where the
//! followers' progress is known; a follower forwards it).

use super::error::ServerError;
use super::kv::header;
use crate::node::{Applied, Command};
use crate::pb::etcdserverpb::{self as pb, cluster_client::ClusterClient, cluster_server::Cluster};
use crate::raft::{ConfChange, ConfChangeKind};
use crate::server::cluster::{MemberInfo, ToPb, check_url, member_id};
use crate::server::driver::{Header, NodeHandle};
use tonic::{Request, Response, Status};

pub struct ClusterService {
    h: NodeHandle,
}

impl ClusterService {
    pub fn new(h: NodeHandle) -> ClusterService {
        ClusterService { h }
    }

    async fn members(&self, linearizable: bool) -> Result<(Vec<pb::Member>, Header), Status> {
        self.h
            .run(linearizable, |d| {
                let members = d
                    .members()
                    .into_iter()
                    .map(|(m, learner)| m.to_pb(learner))
                    .collect();
                // etcd's cluster responses carry no revision.
                let mut at = d.header();
                at.revision = 0;
                Ok((members, at))
            })
            .await
            .map_err(Status::from)
    }

    async fn member(&self, id: u64) -> Result<(MemberInfo, bool), Status> {
        self.h
            .run(false, move |d| Ok(d.server().find_member(id)?))
            .await
            .map_err(Status::from)
    }
}

fn check_urls(urls: &[String]) -> Result<(), Status> {
    if urls.is_empty() || urls.iter().any(|u| check_url(u).is_err()) {
        return Err(ServerError::MemberBadUrls.status());
    }
    Ok(())
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.h
            .check_admin(super::credential(&self.h, &request))
            .await?;
        let req = request.into_inner();
        check_urls(&req.peer_ur_ls)?;
        let urls = req.peer_ur_ls.clone();
        let learner = req.is_learner;
        let taken = self
            .h
            .run(false, move |d| {
                d.server().check_member_add(&urls, learner)?;
                let mut taken: Vec<u64> = d.members().iter().map(|(m, _)| m.id).collect();
                taken.extend(d.removed.lock().expect("not poisoned").iter().copied());
                Ok(taken)
            })
            .await?;
        // etcd's ID for a member added now; should it name a member known here (the same
        // URLs removed and added back within the second), the next second's.
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = (now_s..)
            .map(|s| member_id(&req.peer_ur_ls, "", Some(s)))
            .find(|id| *id != 0 && !taken.contains(id))
            .expect("an unused ID");
        let info = MemberInfo {
            id,
            name: String::new(),
            peer_urls: req.peer_ur_ls,
            client_urls: Vec::new(),
            version: String::new(),
        };
        let kind = if learner {
            ConfChangeKind::AddLearnerNode
        } else {
            ConfChangeKind::AddNode
        };
        let mut cc = ConfChange::simple(kind, id);
        cc.context = info.encode();
        self.h.conf_change(cc).await?;
        let (members, at) = self.members(false).await?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(header(&self.h, at)),
            member: Some(info.to_pb(learner)),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.h
            .check_admin(super::credential(&self.h, &request))
            .await?;
        let id = request.into_inner().id;
        self.member(id).await?;
        self.h
            .conf_change(ConfChange::simple(ConfChangeKind::RemoveNode, id))
            .await?;
        let (members, at) = self.members(false).await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(header(&self.h, at)),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        self.h
            .check_admin(super::credential(&self.h, &request))
            .await?;
        let req = request.into_inner();
        check_urls(&req.peer_ur_ls)?;
        let (mut info, _) = self.member(req.id).await?;
        info.peer_urls = req.peer_ur_ls;
        let cmd = Command::SetMember {
            id: info.id,
            record: info.encode(),
        };
        match self.h.propose(cmd).await? {
            (Applied::SetMember, _) => {}
            (other, _) => return Err(super::kv::unexpected(&other)),
        }
        let (members, at) = self.members(false).await?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(header(&self.h, at)),
            members,
        }))
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let (members, at) = self.members(request.into_inner().linearizable).await?;
        Ok(Response::new(pb::MemberListResponse {
            header: Some(header(&self.h, at)),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.h
            .check_admin(super::credential(&self.h, &request))
            .await?;
        let id = request.into_inner().id;
        let (info, _) = self.member(id).await?;
        let leading = self
            .h
            .run(false, move |d| Ok(d.server().check_promote(id)?))
            .await?;
        if !leading {
            let channel = crate::peer::forward::leader_channel(&self.h).await?;
            return ClusterClient::new(channel)
                .member_promote(pb::MemberPromoteRequest { id })
                .await;
        }
        let mut cc = ConfChange::simple(ConfChangeKind::AddNode, id);
        cc.context = info.encode();
        self.h.conf_change(cc).await?;
        let (members, at) = self.members(false).await?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(header(&self.h, at)),
            members,
        }))
    }
}
