//! The replicated auth state and the commands that change it, with etcd 3.4's rules.

use super::perms::{self, PermKind, Permission};
use crate::storage::codec::{CodecError, Reader, Writer};
use bytes::Bytes;
use std::collections::BTreeMap;
use thiserror::Error;

/// The name of the root user and of the root role: a user holding the root role may do
/// everything.
pub const ROOT: &str = "root";

/// A user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The password's hash (bcrypt), empty for a user without a password.
    pub password: Bytes,
    /// Created with `--no-password`: no password logs it in (certificate CN only).
    pub no_password: bool,
    /// Its roles, sorted.
    pub roles: Vec<String>,
}

/// A role: key permissions, sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Role {
    /// Its permissions, sorted by key.
    pub perms: Vec<Permission>,
}

/// Why an auth command or check failed: etcd's auth errors.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AuthError {
    /// Enabling auth needs a root user.
    #[error("auth: root user does not exist")]
    RootUserNotExist,
    /// Enabling auth needs the root user to hold the root role.
    #[error("auth: root user does not have root role")]
    RootRoleNotExist,
    /// The user exists already.
    #[error("auth: user already exists")]
    UserAlreadyExist,
    /// No user name (also: a request without credentials while auth is on).
    #[error("auth: user name is empty")]
    UserEmpty,
    /// No such user.
    #[error("auth: user not found")]
    UserNotFound,
    /// The role exists already.
    #[error("auth: role already exists")]
    RoleAlreadyExist,
    /// No such role.
    #[error("auth: role not found")]
    RoleNotFound,
    /// No role name.
    #[error("auth: role name is empty")]
    RoleEmpty,
    /// Wrong user or password.
    #[error("auth: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// The user may not do this.
    #[error("auth: permission denied")]
    PermissionDenied,
    /// The user does not hold the role.
    #[error("auth: role is not granted to the user")]
    RoleNotGranted,
    /// The role holds no such permission.
    #[error("auth: permission is not granted to the role")]
    PermissionNotGranted,
    /// Auth is off.
    #[error("auth: authentication is not enabled")]
    AuthNotEnabled,
    /// The token is unknown or expired.
    #[error("auth: invalid auth token")]
    InvalidAuthToken,
    /// Removing root's powers while auth is on.
    #[error("auth: invalid auth management")]
    InvalidAuthMgmt,
    /// The request was checked against an older auth state.
    #[error("auth: revision in header is old")]
    AuthOldRevision,
    /// A password was given for a user created without one.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
}

/// A change to (or a read of) the auth state, applied from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthCommand {
    /// Turns auth on (needs root with the root role).
    Enable,
    /// Turns auth off.
    Disable,
    /// Whether auth is on, and the auth revision.
    Status,
    /// Registers a token for `name`, whose password the proposer verified against the state
    /// at auth revision `revision`: refused if the state moved since.
    Authenticate {
        /// The user.
        name: String,
        /// The token's random part; the applied index completes it.
        token_prefix: String,
        /// The auth revision the password was verified at.
        revision: u64,
    },
    /// Adds a user with a password hash (empty and `no_password`: none).
    UserAdd {
        /// The user's name.
        name: String,
        /// The password's bcrypt hash.
        password: Bytes,
        /// Whether the user logs in without a password.
        no_password: bool,
    },
    /// Deletes a user.
    UserDelete {
        /// The user's name.
        name: String,
    },
    /// Replaces a user's password hash.
    UserChangePassword {
        /// The user's name.
        name: String,
        /// The new password's bcrypt hash.
        password: Bytes,
    },
    /// Grants a role to a user.
    UserGrantRole {
        /// The user's name.
        user: String,
        /// The role's name.
        role: String,
    },
    /// Revokes a role from a user.
    UserRevokeRole {
        /// The user's name.
        name: String,
        /// The role's name.
        role: String,
    },
    /// A user's roles.
    UserGet {
        /// The user's name.
        name: String,
    },
    /// Every user's name.
    UserList,
    /// Adds a role.
    RoleAdd {
        /// The role's name.
        name: String,
    },
    /// Deletes a role, and takes it from its users.
    RoleDelete {
        /// The role's name.
        name: String,
    },
    /// Grants a key permission to a role (replacing the kind of one on the same keys).
    RoleGrantPermission {
        /// The role's name.
        name: String,
        /// The permission.
        perm: Permission,
    },
    /// Revokes a role's permissions on exactly these keys.
    RoleRevokePermission {
        /// The role's name.
        name: String,
        /// The permission's key.
        key: Bytes,
        /// The permission's range end.
        range_end: Bytes,
    },
    /// A role's permissions.
    RoleGet {
        /// The role's name.
        name: String,
    },
    /// Every role's name.
    RoleList,
}

/// What an applied auth command answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthApplied {
    /// Done; nothing to tell.
    Done,
    /// Auth's state: on or off, and the auth revision.
    Status {
        /// Whether auth is on.
        enabled: bool,
        /// The auth revision.
        revision: u64,
    },
    /// The token an `Authenticate` registered.
    Token(String),
    /// A user's roles.
    User(Vec<String>),
    /// A role's permissions.
    Role(Vec<Permission>),
    /// Names, sorted.
    Names(Vec<String>),
}

impl AuthCommand {
    /// Whether only a user holding the root role may run it (while auth is on).
    pub fn admin_only(&self) -> bool {
        !matches!(
            self,
            AuthCommand::Authenticate { .. }
                | AuthCommand::Status
                | AuthCommand::UserGet { .. }
                | AuthCommand::RoleGet { .. }
        )
    }
}

/// The replicated auth state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

impl Default for AuthStore {
    fn default() -> Self {
        AuthStore::new()
    }
}

impl AuthStore {
    /// A fresh store: auth off, no users or roles, auth revision 1 (as etcd starts it).
    pub fn new() -> AuthStore {
        AuthStore {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }

    /// A store holding exactly these parts (a state read from another format, e.g. etcd's
    /// backend). Each user's roles and each role's permissions are sorted, as commands keep
    /// them.
    pub fn from_parts(
        enabled: bool,
        revision: u64,
        mut users: BTreeMap<String, User>,
        mut roles: BTreeMap<String, Role>,
    ) -> AuthStore {
        for u in users.values_mut() {
            u.roles.sort();
            u.roles.dedup();
        }
        for r in roles.values_mut() {
            r.perms.sort_by(|a, b| a.key.cmp(&b.key));
        }
        AuthStore {
            enabled,
            revision,
            users,
            roles,
        }
    }

    /// Every user, by name.
    pub fn users(&self) -> &BTreeMap<String, User> {
        &self.users
    }

    /// Every role, by name.
    pub fn roles(&self) -> &BTreeMap<String, Role> {
        &self.roles
    }

    /// Whether auth is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision: raised by every change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A user, for checking its password.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Whether `user` holds `role`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// Whether `user` may run admin-only commands: anyone while auth is off; else a user
    /// holding the root role.
    pub fn check_admin(&self, user: &str) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if !self.users.contains_key(user) {
            return Err(AuthError::UserNotFound);
        }
        if !self.has_role(user, ROOT) {
            return Err(AuthError::PermissionDenied);
        }
        Ok(())
    }

    /// Whether `user`, checked at auth revision `revision` (0: no credentials), may do `need`
    /// on `key` (with `range_end` in etcd's encoding). Anyone may while auth is off.
    pub fn check_key(
        &self,
        user: &str,
        revision: u64,
        key: &[u8],
        range_end: &[u8],
        need: PermKind,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        let Some(u) = self.users.get(user) else {
            return Err(AuthError::PermissionDenied);
        };
        if u.roles.iter().any(|r| r == ROOT) {
            return Ok(());
        }
        let granted = u
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.perms.iter());
        if perms::covered(granted, need, key, range_end) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether `user` may run `cmd` (admin-only commands need the root role; a user may get
    /// itself and the roles it holds).
    pub fn check_command(&self, user: &str, cmd: &AuthCommand) -> Result<(), AuthError> {
        match cmd {
            AuthCommand::UserGet { name } if self.enabled && !user.is_empty() && name == user => {
                Ok(())
            }
            AuthCommand::UserGet { name } if self.enabled && user.is_empty() && name.is_empty() => {
                Ok(())
            }
            AuthCommand::RoleGet { name } if self.enabled && self.has_role(user, name) => Ok(()),
            AuthCommand::UserGet { .. } | AuthCommand::RoleGet { .. } => self.check_admin(user),
            c if c.admin_only() => self.check_admin(user),
            _ => Ok(()),
        }
    }

    /// Applies `cmd`. An error changes nothing. `Authenticate` answers with the token's
    /// user; the caller completes and registers the token.
    pub fn apply(&mut self, cmd: &AuthCommand) -> Result<AuthApplied, AuthError> {
        use AuthCommand as C;
        let done = Ok(AuthApplied::Done);
        match cmd {
            C::Enable => {
                if self.enabled {
                    return done;
                }
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !root.roles.iter().any(|r| r == ROOT) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.enabled = true;
                done
            }
            C::Disable => {
                if self.enabled {
                    self.enabled = false;
                    self.revision += 1;
                }
                done
            }
            C::Status => Ok(AuthApplied::Status {
                enabled: self.enabled,
                revision: self.revision,
            }),
            C::Authenticate { name, revision, .. } => {
                if !self.enabled {
                    return Err(AuthError::AuthNotEnabled);
                }
                let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
                if user.no_password || *revision != self.revision {
                    return Err(AuthError::AuthFailed);
                }
                done
            }
            C::UserAdd {
                name,
                password,
                no_password,
            } => {
                if name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let user = User {
                    password: if *no_password {
                        Bytes::new()
                    } else {
                        password.clone()
                    },
                    no_password: *no_password,
                    roles: Vec::new(),
                };
                self.users.insert(name.clone(), user);
                self.bump()
            }
            C::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(name).ok_or(AuthError::UserNotFound)?;
                self.bump()
            }
            C::UserChangePassword { name, password } => {
                let user = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                user.password = password.clone();
                self.bump()
            }
            C::UserGrantRole { user, role } => {
                let known = role == ROOT || self.roles.contains_key(role);
                let u = self.users.get_mut(user).ok_or(AuthError::UserNotFound)?;
                if !known {
                    return Err(AuthError::RoleNotFound);
                }
                match u.roles.binary_search(role) {
                    Ok(_) => done,
                    Err(at) => {
                        u.roles.insert(at, role.clone());
                        self.bump()
                    }
                }
            }
            C::UserRevokeRole { name, role } => {
                if self.enabled && name == ROOT && role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let u = self.users.get_mut(name).ok_or(AuthError::UserNotFound)?;
                let at = u
                    .roles
                    .iter()
                    .position(|r| r == role)
                    .ok_or(AuthError::RoleNotGranted)?;
                u.roles.remove(at);
                self.bump()
            }
            C::UserGet { name } => {
                let u = self.users.get(name).ok_or(AuthError::UserNotFound)?;
                Ok(AuthApplied::User(u.roles.clone()))
            }
            C::UserList => Ok(AuthApplied::Names(self.users.keys().cloned().collect())),
            C::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.roles.insert(name.clone(), Role::default());
                self.bump()
            }
            C::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
                for u in self.users.values_mut() {
                    u.roles.retain(|r| r != name);
                }
                self.bump()
            }
            C::RoleGrantPermission { name, perm } => {
                let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
                // As etcd: only the first permission at or after the key is looked at; if it
                // has the same keys its kind is replaced, else the grant is added (so a key
                // granted beside a range from the same key can be listed twice, as etcd does).
                let at = role.perms.partition_point(|p| p.key < perm.key);
                match role.perms.get_mut(at) {
                    Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                        p.kind = perm.kind
                    }
                    _ => {
                        role.perms.push(perm.clone());
                        role.perms.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
                self.bump()
            }
            C::RoleRevokePermission {
                name,
                key,
                range_end,
            } => {
                let role = self.roles.get_mut(name).ok_or(AuthError::RoleNotFound)?;
                let before = role.perms.len();
                role.perms
                    .retain(|p| !(p.key == *key && p.range_end == *range_end));
                if role.perms.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
                self.bump()
            }
            C::RoleGet { name } => {
                let role = self.roles.get(name).ok_or(AuthError::RoleNotFound)?;
                Ok(AuthApplied::Role(role.perms.clone()))
            }
            C::RoleList => Ok(AuthApplied::Names(self.roles.keys().cloned().collect())),
        }
    }

    fn bump(&mut self) -> Result<AuthApplied, AuthError> {
        self.revision += 1;
        Ok(AuthApplied::Done)
    }

    // Encoding: the whole state as one stored value (auth changes are rare and the state is
    // small), in the checksummed codec's conventions.

    /// The state's stored form.
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::with_capacity(64);
        w.bool(self.enabled);
        w.u64(self.revision);
        w.u32(self.users.len() as u32);
        for (name, u) in &self.users {
            w.bytes(name.as_bytes());
            w.bytes(&u.password);
            w.bool(u.no_password);
            w.u32(u.roles.len() as u32);
            for r in &u.roles {
                w.bytes(r.as_bytes());
            }
        }
        w.u32(self.roles.len() as u32);
        for (name, r) in &self.roles {
            w.bytes(name.as_bytes());
            w.u32(r.perms.len() as u32);
            for p in &r.perms {
                write_perm(&mut w, p);
            }
        }
        w.finish()
    }

    /// The state from its stored form.
    pub fn decode(payload: &[u8]) -> Result<AuthStore, CodecError> {
        let mut r = Reader::new(payload);
        let enabled = r.bool()?;
        let revision = r.u64()?;
        let mut users = BTreeMap::new();
        for _ in 0..count(&mut r, 4 + 4 + 1 + 4)? {
            let name = read_string(&mut r)?;
            let password = r.bytes()?;
            let no_password = r.bool()?;
            let mut roles = Vec::new();
            for _ in 0..count(&mut r, 4)? {
                roles.push(read_string(&mut r)?);
            }
            users.insert(
                name,
                User {
                    password,
                    no_password,
                    roles,
                },
            );
        }
        let mut roles = BTreeMap::new();
        for _ in 0..count(&mut r, 4 + 4)? {
            let name = read_string(&mut r)?;
            let mut perms = Vec::new();
            for _ in 0..count(&mut r, 1 + 4 + 4)? {
                perms.push(read_perm(&mut r)?);
            }
            roles.insert(name, Role { perms });
        }
        r.finish()?;
        Ok(AuthStore {
            enabled,
            revision,
            users,
            roles,
        })
    }
}

const AUTH_ENABLE: u8 = 1;
const AUTH_DISABLE: u8 = 2;
const AUTH_STATUS: u8 = 3;
const AUTH_AUTHENTICATE: u8 = 4;
const AUTH_USER_ADD: u8 = 5;
const AUTH_USER_DELETE: u8 = 6;
const AUTH_USER_PASSWORD: u8 = 7;
const AUTH_USER_GRANT: u8 = 8;
const AUTH_USER_REVOKE: u8 = 9;
const AUTH_USER_GET: u8 = 10;
const AUTH_USER_LIST: u8 = 11;
const AUTH_ROLE_ADD: u8 = 12;
const AUTH_ROLE_DELETE: u8 = 13;
const AUTH_ROLE_GRANT: u8 = 14;
const AUTH_ROLE_REVOKE: u8 = 15;
const AUTH_ROLE_GET: u8 = 16;
const AUTH_ROLE_LIST: u8 = 17;

impl AuthCommand {
    /// Writes the command: a tag, then its fields.
    pub(crate) fn write(&self, w: &mut Writer) {
        use AuthCommand as C;
        let s = |w: &mut Writer, v: &str| w.bytes(v.as_bytes());
        match self {
            C::Enable => w.u8(AUTH_ENABLE),
            C::Disable => w.u8(AUTH_DISABLE),
            C::Status => w.u8(AUTH_STATUS),
            C::Authenticate {
                name,
                token_prefix,
                revision,
            } => {
                w.u8(AUTH_AUTHENTICATE);
                s(w, name);
                s(w, token_prefix);
                w.u64(*revision);
            }
            C::UserAdd {
                name,
                password,
                no_password,
            } => {
                w.u8(AUTH_USER_ADD);
                s(w, name);
                w.bytes(password);
                w.bool(*no_password);
            }
            C::UserDelete { name } => {
                w.u8(AUTH_USER_DELETE);
                s(w, name);
            }
            C::UserChangePassword { name, password } => {
                w.u8(AUTH_USER_PASSWORD);
                s(w, name);
                w.bytes(password);
            }
            C::UserGrantRole { user, role } => {
                w.u8(AUTH_USER_GRANT);
                s(w, user);
                s(w, role);
            }
            C::UserRevokeRole { name, role } => {
                w.u8(AUTH_USER_REVOKE);
                s(w, name);
                s(w, role);
            }
            C::UserGet { name } => {
                w.u8(AUTH_USER_GET);
                s(w, name);
            }
            C::UserList => w.u8(AUTH_USER_LIST),
            C::RoleAdd { name } => {
                w.u8(AUTH_ROLE_ADD);
                s(w, name);
            }
            C::RoleDelete { name } => {
                w.u8(AUTH_ROLE_DELETE);
                s(w, name);
            }
            C::RoleGrantPermission { name, perm } => {
                w.u8(AUTH_ROLE_GRANT);
                s(w, name);
                write_perm(w, perm);
            }
            C::RoleRevokePermission {
                name,
                key,
                range_end,
            } => {
                w.u8(AUTH_ROLE_REVOKE);
                s(w, name);
                w.bytes(key);
                w.bytes(range_end);
            }
            C::RoleGet { name } => {
                w.u8(AUTH_ROLE_GET);
                s(w, name);
            }
            C::RoleList => w.u8(AUTH_ROLE_LIST),
        }
    }

    /// Reads a command [`write`](Self::write) wrote.
    pub(crate) fn read(r: &mut Reader) -> Result<AuthCommand, CodecError> {
        use AuthCommand as C;
        Ok(match r.u8()? {
            AUTH_ENABLE => C::Enable,
            AUTH_DISABLE => C::Disable,
            AUTH_STATUS => C::Status,
            AUTH_AUTHENTICATE => C::Authenticate {
                name: read_string(r)?,
                token_prefix: read_string(r)?,
                revision: r.u64()?,
            },
            AUTH_USER_ADD => C::UserAdd {
                name: read_string(r)?,
                password: r.bytes()?,
                no_password: r.bool()?,
            },
            AUTH_USER_DELETE => C::UserDelete {
                name: read_string(r)?,
            },
            AUTH_USER_PASSWORD => C::UserChangePassword {
                name: read_string(r)?,
                password: r.bytes()?,
            },
            AUTH_USER_GRANT => C::UserGrantRole {
                user: read_string(r)?,
                role: read_string(r)?,
            },
            AUTH_USER_REVOKE => C::UserRevokeRole {
                name: read_string(r)?,
                role: read_string(r)?,
            },
            AUTH_USER_GET => C::UserGet {
                name: read_string(r)?,
            },
            AUTH_USER_LIST => C::UserList,
            AUTH_ROLE_ADD => C::RoleAdd {
                name: read_string(r)?,
            },
            AUTH_ROLE_DELETE => C::RoleDelete {
                name: read_string(r)?,
            },
            AUTH_ROLE_GRANT => C::RoleGrantPermission {
                name: read_string(r)?,
                perm: read_perm(r)?,
            },
            AUTH_ROLE_REVOKE => C::RoleRevokePermission {
                name: read_string(r)?,
                key: r.bytes()?,
                range_end: r.bytes()?,
            },
            AUTH_ROLE_GET => C::RoleGet {
                name: read_string(r)?,
            },
            AUTH_ROLE_LIST => C::RoleList,
            _ => {
                return Err(CodecError::Malformed {
                    why: "unknown auth command",
                });
            }
        })
    }
}

fn write_perm(w: &mut Writer, p: &Permission) {
    w.u8(p.kind as u8);
    w.bytes(&p.key);
    w.bytes(&p.range_end);
}

fn read_perm(r: &mut Reader) -> Result<Permission, CodecError> {
    let kind = PermKind::from_i32(i32::from(r.u8()?)).ok_or(CodecError::Malformed {
        why: "unknown permission type",
    })?;
    Ok(Permission {
        kind,
        key: r.bytes()?,
        range_end: r.bytes()?,
    })
}

fn read_string(r: &mut Reader) -> Result<String, CodecError> {
    String::from_utf8(r.bytes()?.to_vec()).map_err(|_| CodecError::Malformed {
        why: "name not UTF-8",
    })
}

/// A list's count, checked against the bytes left (each item takes at least `item_bytes_min`).
fn count(r: &mut Reader, item_bytes_min: usize) -> Result<usize, CodecError> {
    let n = r.u32()? as usize;
    if n > r.remaining() / item_bytes_min {
        return Err(CodecError::Malformed {
            why: "list runs past the payload",
        });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &mut AuthStore, name: &str) {
        let add = AuthCommand::UserAdd {
            name: name.into(),
            password: Bytes::from_static(b"hash"),
            no_password: false,
        };
        s.apply(&add).unwrap();
    }

    fn grant(s: &mut AuthStore, user: &str, role: &str) -> Result<AuthApplied, AuthError> {
        s.apply(&AuthCommand::UserGrantRole {
            user: user.into(),
            role: role.into(),
        })
    }

    #[test]
    fn enable_needs_root_with_the_root_role_and_revisions_move_as_etcds() {
        let mut s = AuthStore::new();
        assert_eq!(s.revision(), 1);
        assert_eq!(
            s.apply(&AuthCommand::Enable),
            Err(AuthError::RootUserNotExist)
        );
        user(&mut s, ROOT);
        assert_eq!(
            s.apply(&AuthCommand::Enable),
            Err(AuthError::RootRoleNotExist)
        );
        // Granting root needs no root role object.
        grant(&mut s, ROOT, ROOT).unwrap();
        assert_eq!(s.revision(), 3);
        s.apply(&AuthCommand::Enable).unwrap();
        assert_eq!(s.revision(), 3, "enable does not raise the revision");
        assert!(s.enabled());
        s.apply(&AuthCommand::Disable).unwrap();
        assert_eq!(s.revision(), 4, "disable does");
        s.apply(&AuthCommand::Disable).unwrap();
        assert_eq!(s.revision(), 4);
    }

    #[test]
    fn root_rules_hold_while_enabled_only() {
        let mut s = AuthStore::new();
        user(&mut s, ROOT);
        grant(&mut s, ROOT, ROOT).unwrap();
        s.apply(&AuthCommand::Enable).unwrap();
        let del = AuthCommand::UserDelete { name: ROOT.into() };
        assert_eq!(s.apply(&del), Err(AuthError::InvalidAuthMgmt));
        let revoke = AuthCommand::UserRevokeRole {
            name: ROOT.into(),
            role: ROOT.into(),
        };
        assert_eq!(s.apply(&revoke), Err(AuthError::InvalidAuthMgmt));
        s.apply(&AuthCommand::Disable).unwrap();
        s.apply(&revoke).unwrap();
        s.apply(&del).unwrap();
    }

    #[test]
    fn permission_checks_follow_grants_revokes_and_revisions() {
        let mut s = AuthStore::new();
        user(&mut s, ROOT);
        grant(&mut s, ROOT, ROOT).unwrap();
        user(&mut s, "alice");
        s.apply(&AuthCommand::RoleAdd { name: "r".into() }).unwrap();
        let perm = |kind| Permission {
            kind,
            key: Bytes::from_static(b"foo"),
            range_end: Bytes::new(),
        };
        s.apply(&AuthCommand::RoleGrantPermission {
            name: "r".into(),
            perm: perm(PermKind::Read),
        })
        .unwrap();
        // Granting again on the same key replaces the kind.
        s.apply(&AuthCommand::RoleGrantPermission {
            name: "r".into(),
            perm: perm(PermKind::Write),
        })
        .unwrap();
        grant(&mut s, "alice", "r").unwrap();
        s.apply(&AuthCommand::Enable).unwrap();
        let rev = s.revision();
        assert_eq!(
            s.check_key("alice", rev, b"foo", b"", PermKind::Write),
            Ok(())
        );
        assert_eq!(
            s.check_key("alice", rev, b"foo", b"", PermKind::Read),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(
            s.check_key("alice", 0, b"foo", b"", PermKind::Write),
            Err(AuthError::UserEmpty)
        );
        assert_eq!(
            s.check_key(ROOT, rev, b"any", b"\0", PermKind::Read),
            Ok(())
        );
        s.apply(&AuthCommand::RoleRevokePermission {
            name: "r".into(),
            key: Bytes::from_static(b"foo"),
            range_end: Bytes::new(),
        })
        .unwrap();
        assert_eq!(
            s.check_key("alice", rev, b"foo", b"", PermKind::Write),
            Err(AuthError::AuthOldRevision),
            "checked under the revision before the revoke"
        );
        assert_eq!(
            s.check_key("alice", s.revision(), b"foo", b"", PermKind::Write),
            Err(AuthError::PermissionDenied)
        );
        // Deleting a role takes it from its users.
        s.apply(&AuthCommand::RoleDelete { name: "r".into() })
            .unwrap();
        assert_eq!(
            s.apply(&AuthCommand::UserGet {
                name: "alice".into()
            }),
            Ok(AuthApplied::User(Vec::new()))
        );
    }

    #[test]
    fn the_state_and_every_command_round_trip() {
        let mut s = AuthStore::new();
        user(&mut s, ROOT);
        grant(&mut s, ROOT, ROOT).unwrap();
        s.apply(&AuthCommand::RoleAdd { name: "r".into() }).unwrap();
        let perm = Permission {
            kind: PermKind::ReadWrite,
            key: Bytes::from_static(b"a"),
            range_end: Bytes::from_static(b"\0"),
        };
        let grant_perm = AuthCommand::RoleGrantPermission {
            name: "r".into(),
            perm,
        };
        s.apply(&grant_perm).unwrap();
        s.apply(&AuthCommand::Enable).unwrap();
        assert_eq!(AuthStore::decode(&s.encode()), Ok(s.clone()));
        let mut bytes = s.encode().to_vec();
        bytes.push(0);
        assert!(AuthStore::decode(&bytes).is_err());
        let commands = [
            AuthCommand::Enable,
            AuthCommand::Disable,
            AuthCommand::Status,
            AuthCommand::Authenticate {
                name: "u".into(),
                token_prefix: "abc".into(),
                revision: 9,
            },
            AuthCommand::UserAdd {
                name: "u".into(),
                password: Bytes::from_static(b"h"),
                no_password: true,
            },
            AuthCommand::UserDelete { name: "u".into() },
            AuthCommand::UserChangePassword {
                name: "u".into(),
                password: Bytes::from_static(b"h2"),
            },
            AuthCommand::UserGrantRole {
                user: "u".into(),
                role: "r".into(),
            },
            AuthCommand::UserRevokeRole {
                name: "u".into(),
                role: "r".into(),
            },
            AuthCommand::UserGet { name: "u".into() },
            AuthCommand::UserList,
            AuthCommand::RoleAdd { name: "r".into() },
            AuthCommand::RoleDelete { name: "r".into() },
            grant_perm,
            AuthCommand::RoleRevokePermission {
                name: "r".into(),
                key: Bytes::from_static(b"a"),
                range_end: Bytes::new(),
            },
            AuthCommand::RoleGet { name: "r".into() },
            AuthCommand::RoleList,
        ];
        for c in commands {
            let mut w = Writer::with_capacity(16);
            c.write(&mut w);
            let bytes = w.finish();
            let mut r = Reader::new(&bytes);
            assert_eq!(AuthCommand::read(&mut r), Ok(c.clone()));
            r.finish().unwrap();
        }
    }
}
