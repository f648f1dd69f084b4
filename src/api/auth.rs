//! The Auth service: etcd's users, roles and permissions, and `Authenticate`. Every call is an
//! auth command through the log, checked against the caller's credentials there (the member
//! decides; see `auth` in the core). Passwords are hashed here with bcrypt before they are
//! proposed (the log never holds a password), and verified here before `Authenticate` is
//! proposed: bcrypt costs tens of milliseconds, so it runs on a blocking thread, never in the
//! member's loop.

use super::error::auth_status;
use super::kv::{header, unexpected};
use crate::auth::{AuthApplied, AuthCommand, AuthError, PermKind, Permission};
use crate::node::{Applied, Command, Credential};
use crate::pb::authpb;
use crate::pb::etcdserverpb::{self as pb, auth_server::Auth};
use crate::server::driver::{Header, NodeHandle};
use bytes::Bytes;
use rand::Rng;
use tonic::{Request, Response, Status};

/// etcd's default bcrypt cost (`--bcrypt-cost`).
pub const BCRYPT_COST_DEFAULT: u32 = 10;

pub struct AuthService {
    h: NodeHandle,
}

impl AuthService {
    pub fn new(h: NodeHandle) -> AuthService {
        AuthService { h }
    }

    /// Runs `cmd` for the request's caller: what it answered and the header.
    async fn run<T>(
        &self,
        request: &Request<T>,
        cmd: AuthCommand,
    ) -> Result<(AuthApplied, pb::ResponseHeader), Status> {
        let who = super::credential(&self.h, request);
        self.run_as(who, cmd).await
    }

    async fn run_as(
        &self,
        who: Credential,
        cmd: AuthCommand,
    ) -> Result<(AuthApplied, pb::ResponseHeader), Status> {
        match self.h.propose_as(who, Command::Auth(cmd)).await? {
            (Applied::Auth(a), at) => Ok((a, self.header(at))),
            (other, _) => Err(unexpected(&other)),
        }
    }

    fn header(&self, at: Header) -> pb::ResponseHeader {
        header(&self.h, at)
    }

    fn bcrypt_cost(&self) -> u32 {
        self.h.config.bcrypt_cost
    }
}

/// `f`'s result, computed off the async threads (in simulation, where no thread may block,
/// in place).
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    #[cfg(not(madsim))]
    return tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(e.to_string()));
    #[cfg(madsim)]
    return Ok(f());
}

/// `password`'s bcrypt hash.
pub(crate) async fn hash(password: String, cost: u32) -> Result<Bytes, Status> {
    let hashed = blocking(move || bcrypt::hash(password, cost))
        .await?
        .map_err(|e| Status::internal(format!("etcdserver: {e}")))?;
    Ok(Bytes::from(hashed))
}

/// Whether `password` matches `hashed`.
pub(crate) async fn verify(password: String, hashed: Bytes) -> bool {
    blocking(move || {
        let hashed = std::str::from_utf8(&hashed).unwrap_or_default();
        bcrypt::verify(password, hashed).unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A simple token's random part: 16 letters, as etcd's.
fn token_prefix() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char)
        .collect()
}

fn names(a: AuthApplied) -> Result<Vec<String>, Status> {
    match a {
        AuthApplied::Names(n) | AuthApplied::User(n) => Ok(n),
        other => Err(Status::internal(format!(
            "unexpected auth answer {other:?}"
        ))),
    }
}

fn permission(p: authpb::Permission) -> Result<Permission, Status> {
    let kind = PermKind::from_i32(p.perm_type)
        .ok_or_else(|| Status::invalid_argument("etcdserver: invalid permission type"))?;
    Ok(Permission {
        kind,
        key: p.key,
        range_end: p.range_end,
    })
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        let (_, header) = self.run(&request, AuthCommand::Enable).await?;
        Ok(Response::new(pb::AuthEnableResponse {
            header: Some(header),
        }))
    }

    async fn auth_disable(
        &self,
        request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        let (_, header) = self.run(&request, AuthCommand::Disable).await?;
        Ok(Response::new(pb::AuthDisableResponse {
            header: Some(header),
        }))
    }

    async fn auth_status(
        &self,
        request: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        match self.run(&request, AuthCommand::Status).await? {
            (AuthApplied::Status { enabled, revision }, header) => {
                Ok(Response::new(pb::AuthStatusResponse {
                    header: Some(header),
                    enabled,
                    auth_revision: revision,
                }))
            }
            (other, _) => Err(Status::internal(format!(
                "unexpected auth answer {other:?}"
            ))),
        }
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let req = request.into_inner();
        // The user's hash and the auth revision it holds, from a linearizable read.
        let name = req.name.clone();
        let (user, revision, at) = self
            .h
            .run(true, move |d| {
                let auth = d.member().applier().auth();
                if !auth.enabled() {
                    return Err(crate::node::ApplyError::Auth(AuthError::AuthNotEnabled).into());
                }
                Ok((auth.user(&name).cloned(), auth.revision(), d.header()))
            })
            .await?;
        let Some(user) = user else {
            return Err(auth_status(&AuthError::AuthFailed));
        };
        if user.no_password {
            return Err(auth_status(&AuthError::NoPasswordUser));
        }
        if !verify(req.password, user.password).await {
            return Err(auth_status(&AuthError::AuthFailed));
        }
        // A signed token needs nothing replicated: its claims carry the user and revision.
        if let Some(jwt) = &self.h.config.jwt {
            let token = jwt.sign(&req.name, revision).map_err(Status::unknown)?;
            return Ok(Response::new(pb::AuthenticateResponse {
                header: Some(self.header(at)),
                token,
            }));
        }
        let cmd = AuthCommand::Authenticate {
            name: req.name,
            token_prefix: token_prefix(),
            revision,
        };
        match self.run_as(Credential::None, cmd).await? {
            (AuthApplied::Token(token), header) => Ok(Response::new(pb::AuthenticateResponse {
                header: Some(header),
                token,
            })),
            (other, _) => Err(Status::internal(format!(
                "unexpected auth answer {other:?}"
            ))),
        }
    }

    async fn user_add(
        &self,
        request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let who = super::credential(&self.h, &request);
        let req = request.into_inner();
        if req.name.is_empty() {
            return Err(auth_status(&AuthError::UserEmpty));
        }
        let no_password = req.options.is_some_and(|o| o.no_password);
        let password = if no_password {
            Bytes::new()
        } else if !req.hashed_password.is_empty() {
            Bytes::from(req.hashed_password)
        } else {
            hash(req.password, self.bcrypt_cost()).await?
        };
        let cmd = AuthCommand::UserAdd {
            name: req.name,
            password,
            no_password,
        };
        let (_, header) = self.run_as(who, cmd).await?;
        Ok(Response::new(pb::AuthUserAddResponse {
            header: Some(header),
        }))
    }

    async fn user_get(
        &self,
        request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        let name = request.get_ref().name.clone();
        let (a, header) = self.run(&request, AuthCommand::UserGet { name }).await?;
        Ok(Response::new(pb::AuthUserGetResponse {
            header: Some(header),
            roles: names(a)?,
        }))
    }

    async fn user_list(
        &self,
        request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        let (a, header) = self.run(&request, AuthCommand::UserList).await?;
        Ok(Response::new(pb::AuthUserListResponse {
            header: Some(header),
            users: names(a)?,
        }))
    }

    async fn user_delete(
        &self,
        request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        let name = request.get_ref().name.clone();
        let (_, header) = self.run(&request, AuthCommand::UserDelete { name }).await?;
        Ok(Response::new(pb::AuthUserDeleteResponse {
            header: Some(header),
        }))
    }

    async fn user_change_password(
        &self,
        request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let who = super::credential(&self.h, &request);
        let req = request.into_inner();
        let password = if !req.hashed_password.is_empty() {
            Bytes::from(req.hashed_password)
        } else {
            hash(req.password, self.bcrypt_cost()).await?
        };
        let cmd = AuthCommand::UserChangePassword {
            name: req.name,
            password,
        };
        let (_, header) = self.run_as(who, cmd).await?;
        Ok(Response::new(pb::AuthUserChangePasswordResponse {
            header: Some(header),
        }))
    }

    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        let r = request.get_ref();
        let cmd = AuthCommand::UserGrantRole {
            user: r.user.clone(),
            role: r.role.clone(),
        };
        let (_, header) = self.run(&request, cmd).await?;
        Ok(Response::new(pb::AuthUserGrantRoleResponse {
            header: Some(header),
        }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let r = request.get_ref();
        let cmd = AuthCommand::UserRevokeRole {
            name: r.name.clone(),
            role: r.role.clone(),
        };
        let (_, header) = self.run(&request, cmd).await?;
        Ok(Response::new(pb::AuthUserRevokeRoleResponse {
            header: Some(header),
        }))
    }

    async fn role_add(
        &self,
        request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        let name = request.get_ref().name.clone();
        let (_, header) = self.run(&request, AuthCommand::RoleAdd { name }).await?;
        Ok(Response::new(pb::AuthRoleAddResponse {
            header: Some(header),
        }))
    }

    async fn role_get(
        &self,
        request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        let name = request.get_ref().role.clone();
        let (a, header) = self.run(&request, AuthCommand::RoleGet { name }).await?;
        let AuthApplied::Role(perms) = a else {
            return Err(Status::internal(format!("unexpected auth answer {a:?}")));
        };
        Ok(Response::new(pb::AuthRoleGetResponse {
            header: Some(header),
            perm: perms
                .into_iter()
                .map(|p| authpb::Permission {
                    perm_type: p.kind as i32,
                    key: p.key,
                    range_end: p.range_end,
                })
                .collect(),
        }))
    }

    async fn role_list(
        &self,
        request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        let (a, header) = self.run(&request, AuthCommand::RoleList).await?;
        Ok(Response::new(pb::AuthRoleListResponse {
            header: Some(header),
            roles: names(a)?,
        }))
    }

    async fn role_delete(
        &self,
        request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        let name = request.get_ref().role.clone();
        let (_, header) = self.run(&request, AuthCommand::RoleDelete { name }).await?;
        Ok(Response::new(pb::AuthRoleDeleteResponse {
            header: Some(header),
        }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let r = request.get_ref();
        let perm = permission(r.perm.clone().unwrap_or_default())?;
        let cmd = AuthCommand::RoleGrantPermission {
            name: r.name.clone(),
            perm,
        };
        let (_, header) = self.run(&request, cmd).await?;
        Ok(Response::new(pb::AuthRoleGrantPermissionResponse {
            header: Some(header),
        }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let r = request.get_ref();
        let cmd = AuthCommand::RoleRevokePermission {
            name: r.role.clone(),
            key: r.key.clone(),
            range_end: r.range_end.clone(),
        };
        let (_, header) = self.run(&request, cmd).await?;
        Ok(Response::new(pb::AuthRoleRevokePermissionResponse {
            header: Some(header),
        }))
    }
}
