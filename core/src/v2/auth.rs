//! etcd 3.4's v2 auth state: users (a bcrypt hash and role names), roles (key patterns to
//! read and to write), the virtual `root` role, the `guest` role made at the first enabling,
//! and the enabled flag, with the rules etcd applies to each change. Changes arrive as
//! [`AuthCommand`]s through the log, and each stored change consumes one v2 index, as etcd's
//! do (it keeps this state in its v2 store under `/2`, beside the keys). The first change also
//! consumes the four indexes etcd spends creating `/2`, its two directories and the flag.
//!
//! What it does not do: hash or check passwords (bcrypt is slow and salted, so the server does
//! it before proposing and when a request arrives), parse JSON, or know who is asking: the
//! server checks that the caller holds `root` before it proposes a change.

use crate::storage::codec::{CodecError, Reader, Writer};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// The role that may do anything; never stored, always listed.
pub const ROOT: &str = "root";
/// The role of requests that carry no credentials.
pub const GUEST: &str = "guest";

/// A user as stored: the name, a bcrypt hash, the role names (`None`: etcd's `null`, which a
/// user created without roles keeps until its first update).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// The name.
    pub name: String,
    /// The bcrypt hash (empty in answers).
    pub password: String,
    /// The role names.
    pub roles: Option<Vec<String>>,
}

impl User {
    /// The user as etcd reads it: `root` always holds the `root` role.
    fn read(&self) -> User {
        let mut u = self.clone();
        if u.name == ROOT && !u.has_role(ROOT) {
            u.roles.get_or_insert_with(Vec::new).push(ROOT.to_string());
        }
        u
    }

    /// Whether the user holds role `name`.
    pub fn has_role(&self, name: &str) -> bool {
        self.roles.iter().flatten().any(|r| r == name)
    }

    /// The user without its hash, as answers show it.
    pub fn public(&self) -> User {
        User {
            password: String::new(),
            ..self.clone()
        }
    }
}

/// Key patterns: a pattern ending in `*` matches every key it prefixes, any other only itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Perms {
    /// Patterns that may be read (`None`: etcd's `null`).
    pub read: Option<Vec<String>>,
    /// Patterns that may be written.
    pub write: Option<Vec<String>>,
}

impl Perms {
    /// Whether neither list names a pattern.
    pub fn is_empty(&self) -> bool {
        self.read.iter().chain(&self.write).all(Vec::is_empty)
    }
}

/// A role: its name and what it may read and write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Role {
    /// The name.
    pub name: String,
    /// Its patterns.
    pub perms: Perms,
}

impl Role {
    /// The virtual `root` role, as listed.
    pub fn root() -> Role {
        Role::everything(ROOT)
    }

    fn everything(name: &str) -> Role {
        let all = Some(vec!["/*".to_string()]);
        Role {
            name: name.to_string(),
            perms: Perms {
                read: all.clone(),
                write: all,
            },
        }
    }

    /// Whether the role lets `key` be written (`write`) or read. `recursive`: the request
    /// covers everything under the key, which only a `*` pattern grants.
    pub fn grants(&self, key: &str, write: bool, recursive: bool) -> bool {
        let list = if write {
            &self.perms.write
        } else {
            &self.perms.read
        };
        list.iter().flatten().any(|p| match p.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => !recursive && p == key,
        })
    }
}

/// A refusal, as etcd's auth API answers it: an HTTP status and `{"message": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct V2AuthError {
    /// The HTTP status.
    pub status: u16,
    /// The message, with etcd's `auth: ` prefix.
    pub message: String,
}

fn refuse(status: u16, message: String) -> V2AuthError {
    V2AuthError {
        status,
        message: format!("auth: {message}"),
    }
}

/// How a user write treats a user that exists (or does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserWrite {
    /// Create it with roles; 409 if it exists.
    Create,
    /// Create it, or update it if it exists (etcd's PUT without roles or grants).
    CreateOrUpdate,
    /// Update it (grants and revokes); 404 if it is missing.
    Update,
}

/// A change to the v2 auth state, as it is replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthCommand {
    /// PUT `/v2/auth/users/<name>`.
    PutUser {
        /// What to do with an existing user.
        mode: UserWrite,
        /// The name.
        name: String,
        /// The new bcrypt hash (empty: unchanged, or refused for a new user).
        password: String,
        /// The roles a new user gets.
        roles: Option<Vec<String>>,
        /// Roles to add to an existing user.
        grant: Vec<String>,
        /// Roles to take from an existing user.
        revoke: Vec<String>,
    },
    /// DELETE `/v2/auth/users/<name>`.
    DeleteUser {
        /// The name.
        name: String,
    },
    /// PUT `/v2/auth/roles/<name>` without grants or revokes.
    CreateRole(Role),
    /// PUT `/v2/auth/roles/<name>` with grants or revokes.
    UpdateRole {
        /// The name.
        name: String,
        /// Patterns to add (`None`: none given).
        grant: Option<Perms>,
        /// Patterns to take away (`None`: none given).
        revoke: Option<Perms>,
    },
    /// DELETE `/v2/auth/roles/<name>`.
    DeleteRole {
        /// The name.
        name: String,
    },
    /// PUT (`true`) or DELETE `/v2/auth/enable`.
    SetEnabled(bool),
}

/// What a change answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthReply {
    /// The user as written (no hash); `created`: it is new (etcd answers 201).
    User {
        /// The user.
        user: User,
        /// Created by a create-or-update.
        created: bool,
    },
    /// The role as written; `created`: it is new.
    Role {
        /// The role.
        role: Role,
        /// Created.
        created: bool,
    },
    /// Done, nothing to show.
    Done,
}

/// The v2 auth state. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V2Auth {
    /// The enabled flag; `None` until the first change created it (with `/2` and its
    /// directories).
    enabled: Option<bool>,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    /// Records changed since [`V2Auth::take_changes`].
    changed: BTreeSet<String>,
}

/// The prefix of the auth records among the v2 records (no key path starts with it).
pub const RECORD_PREFIX: &str = "@auth/";
const ENABLED: &str = "@auth/enabled";
const USERS: &str = "@auth/users/";
const ROLES: &str = "@auth/roles/";

fn strings(w: &mut Writer, v: &Option<Vec<String>>) {
    w.bool(v.is_some());
    let v = v.as_deref().unwrap_or_default();
    w.u64(v.len() as u64);
    for s in v {
        w.bytes(s.as_bytes());
    }
}

fn string(r: &mut Reader) -> Result<String, CodecError> {
    String::from_utf8(r.bytes()?.to_vec()).map_err(|_| CodecError::Malformed {
        why: "a v2 auth string is not UTF-8",
    })
}

fn read_strings(r: &mut Reader) -> Result<Option<Vec<String>>, CodecError> {
    let some = r.bool()?;
    let n = r.u64()?;
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(string(r)?);
    }
    Ok(some.then_some(v))
}

fn write_perms(w: &mut Writer, p: &Perms) {
    strings(w, &p.read);
    strings(w, &p.write);
}

fn read_perms(r: &mut Reader) -> Result<Perms, CodecError> {
    Ok(Perms {
        read: read_strings(r)?,
        write: read_strings(r)?,
    })
}

fn write_opt_perms(w: &mut Writer, p: &Option<Perms>) {
    w.bool(p.is_some());
    if let Some(p) = p {
        write_perms(w, p);
    }
}

fn read_opt_perms(r: &mut Reader) -> Result<Option<Perms>, CodecError> {
    Ok(if r.bool()? {
        Some(read_perms(r)?)
    } else {
        None
    })
}

impl User {
    fn write(&self, w: &mut Writer) {
        w.bytes(self.name.as_bytes());
        w.bytes(self.password.as_bytes());
        strings(w, &self.roles);
    }

    fn read_from(r: &mut Reader) -> Result<User, CodecError> {
        Ok(User {
            name: string(r)?,
            password: string(r)?,
            roles: read_strings(r)?,
        })
    }
}

impl Role {
    fn write(&self, w: &mut Writer) {
        w.bytes(self.name.as_bytes());
        write_perms(w, &self.perms);
    }

    fn read_from(r: &mut Reader) -> Result<Role, CodecError> {
        Ok(Role {
            name: string(r)?,
            perms: read_perms(r)?,
        })
    }
}

const PUT_USER: u8 = 1;
const DELETE_USER: u8 = 2;
const CREATE_ROLE: u8 = 3;
const UPDATE_ROLE: u8 = 4;
const DELETE_ROLE: u8 = 5;
const SET_ENABLED: u8 = 6;

impl AuthCommand {
    /// Writes the command: a tag, then its fields.
    pub(crate) fn write(&self, w: &mut Writer) {
        match self {
            AuthCommand::PutUser {
                mode,
                name,
                password,
                roles,
                grant,
                revoke,
            } => {
                w.u8(PUT_USER);
                w.u8(match mode {
                    UserWrite::Create => 0,
                    UserWrite::CreateOrUpdate => 1,
                    UserWrite::Update => 2,
                });
                User {
                    name: name.clone(),
                    password: password.clone(),
                    roles: roles.clone(),
                }
                .write(w);
                strings(w, &Some(grant.clone()));
                strings(w, &Some(revoke.clone()));
            }
            AuthCommand::DeleteUser { name } => {
                w.u8(DELETE_USER);
                w.bytes(name.as_bytes());
            }
            AuthCommand::CreateRole(role) => {
                w.u8(CREATE_ROLE);
                role.write(w);
            }
            AuthCommand::UpdateRole {
                name,
                grant,
                revoke,
            } => {
                w.u8(UPDATE_ROLE);
                w.bytes(name.as_bytes());
                write_opt_perms(w, grant);
                write_opt_perms(w, revoke);
            }
            AuthCommand::DeleteRole { name } => {
                w.u8(DELETE_ROLE);
                w.bytes(name.as_bytes());
            }
            AuthCommand::SetEnabled(on) => {
                w.u8(SET_ENABLED);
                w.bool(*on);
            }
        }
    }

    /// Reads a command [`write`](Self::write) wrote.
    pub(crate) fn read(r: &mut Reader) -> Result<AuthCommand, CodecError> {
        Ok(match r.u8()? {
            PUT_USER => {
                let mode = match r.u8()? {
                    0 => UserWrite::Create,
                    1 => UserWrite::CreateOrUpdate,
                    2 => UserWrite::Update,
                    _ => {
                        return Err(CodecError::Malformed {
                            why: "unknown v2 user write",
                        });
                    }
                };
                let u = User::read_from(r)?;
                AuthCommand::PutUser {
                    mode,
                    name: u.name,
                    password: u.password,
                    roles: u.roles,
                    grant: read_strings(r)?.unwrap_or_default(),
                    revoke: read_strings(r)?.unwrap_or_default(),
                }
            }
            DELETE_USER => AuthCommand::DeleteUser { name: string(r)? },
            CREATE_ROLE => AuthCommand::CreateRole(Role::read_from(r)?),
            UPDATE_ROLE => AuthCommand::UpdateRole {
                name: string(r)?,
                grant: read_opt_perms(r)?,
                revoke: read_opt_perms(r)?,
            },
            DELETE_ROLE => AuthCommand::DeleteRole { name: string(r)? },
            SET_ENABLED => AuthCommand::SetEnabled(r.bool()?),
            _ => {
                return Err(CodecError::Malformed {
                    why: "unknown v2 auth command tag",
                });
            }
        })
    }
}

/// Adds `add` to the set `have` (refusing a name already there with `dup`), then takes
/// `take` away (a name not there: `missing`, or ignored when that is `None`); sorted.
fn merge(
    have: &Option<Vec<String>>,
    add: &[String],
    take: &[String],
    dup: impl Fn(&str) -> V2AuthError,
    missing: Option<&dyn Fn(&str) -> V2AuthError>,
) -> Result<Vec<String>, V2AuthError> {
    let mut set: BTreeSet<String> = have.iter().flatten().cloned().collect();
    for a in add {
        if !set.insert(a.clone()) {
            return Err(dup(a));
        }
    }
    for t in take {
        if !set.remove(t)
            && let Some(missing) = missing
        {
            return Err(missing(t));
        }
    }
    Ok(set.into_iter().collect())
}

impl V2Auth {
    /// Whether auth is on.
    pub fn enabled(&self) -> bool {
        self.enabled == Some(true)
    }

    /// The user `name`, as etcd reads it (`root` holds `root`).
    pub fn user(&self, name: &str) -> Option<User> {
        self.users.get(name).map(User::read)
    }

    /// Every user, by name.
    pub fn users(&self) -> impl Iterator<Item = User> + '_ {
        self.users.values().map(User::read)
    }

    /// The role `name` (`root` is always there).
    pub fn role(&self, name: &str) -> Option<Role> {
        if name == ROOT {
            return Some(Role::root());
        }
        self.roles.get(name).cloned()
    }

    /// Every role by name, `root` among them.
    pub fn roles(&self) -> Vec<Role> {
        let mut all: Vec<Role> = self.roles.values().cloned().collect();
        all.push(Role::root());
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Whether `user` (`None`: a request without credentials, which gets `guest`'s
    /// permissions, never recursively) may read or `write` `key`.
    pub fn allows(&self, user: Option<&User>, key: &str, write: bool, recursive: bool) -> bool {
        if !self.enabled() {
            return true;
        }
        let Some(user) = user else {
            return self
                .roles
                .get(GUEST)
                .is_some_and(|g| g.grants(key, write, false));
        };
        user.has_role(ROOT)
            || user
                .roles
                .iter()
                .flatten()
                .filter_map(|r| self.roles.get(r))
                .any(|r| r.grants(key, write, recursive))
    }

    /// The records changed since the last call: each one's name among the v2 records, with
    /// its new value or `None` when it is gone.
    pub fn take_changes(&mut self) -> Vec<(String, Option<Bytes>)> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|k| {
                let rec = if k == ENABLED {
                    self.enabled.map(|on| Bytes::from(vec![u8::from(on)]))
                } else if let Some(name) = k.strip_prefix(USERS) {
                    self.users.get(name).map(|u| {
                        let mut w = Writer::with_capacity(64);
                        u.write(&mut w);
                        w.finish()
                    })
                } else {
                    let name = k.strip_prefix(ROLES).expect("a role record");
                    self.roles.get(name).map(|r| {
                        let mut w = Writer::with_capacity(64);
                        r.write(&mut w);
                        w.finish()
                    })
                };
                (k, rec)
            })
            .collect()
    }

    /// Reads back one record [`take_changes`](Self::take_changes) gave.
    pub fn recover(&mut self, key: &str, rec: &[u8]) -> Result<(), String> {
        let bad = |e: CodecError| format!("{key}: {e}");
        if key == ENABLED {
            self.enabled = Some(rec == [1]);
        } else if let Some(name) = key.strip_prefix(USERS) {
            let u = User::read_from(&mut Reader::new(rec)).map_err(bad)?;
            self.users.insert(name.to_string(), u);
        } else if let Some(name) = key.strip_prefix(ROLES) {
            let r = Role::read_from(&mut Reader::new(rec)).map_err(bad)?;
            self.roles.insert(name.to_string(), r);
        } else {
            return Err(format!("an unknown v2 auth record {key:?}"));
        }
        Ok(())
    }

    /// Before the first stored change: etcd creates `/2`, `/2/users/`, `/2/roles/` and
    /// `/2/enabled` (false), one index each.
    fn ensure_created(&mut self, index: &mut u64) {
        if self.enabled.is_none() {
            *index += 4;
            self.enabled = Some(false);
            self.changed.insert(ENABLED.to_string());
        }
    }

    fn store_user(&mut self, u: User, index: &mut u64) {
        self.ensure_created(index);
        *index += 1;
        self.changed.insert(format!("{USERS}{}", u.name));
        self.users.insert(u.name.clone(), u);
    }

    fn store_role(&mut self, r: Role, index: &mut u64) {
        self.ensure_created(index);
        *index += 1;
        self.changed.insert(format!("{ROLES}{}", r.name));
        self.roles.insert(r.name.clone(), r);
    }

    /// Records that record `key` is `gone` (one index), or `Err` if there was none.
    fn removed(&mut self, gone: bool, key: String, index: &mut u64) -> Result<AuthReply, ()> {
        if !gone {
            return Err(());
        }
        *index += 1;
        self.changed.insert(key);
        Ok(AuthReply::Done)
    }

    /// Applies a change; each stored write advances `index` (the v2 store's) by one.
    pub fn apply(&mut self, cmd: &AuthCommand, index: &mut u64) -> Result<AuthReply, V2AuthError> {
        let root_role =
            |name: &str| refuse(403, format!("Cannot modify role {name}: is root role."));
        match cmd {
            AuthCommand::PutUser {
                mode,
                name,
                password,
                roles,
                grant,
                revoke,
            } => {
                let exists = self.users.contains_key(name);
                if *mode == UserWrite::Update || (*mode == UserWrite::CreateOrUpdate && exists) {
                    let old = self
                        .user(name)
                        .ok_or_else(|| refuse(404, format!("User {name} does not exist.")))?;
                    let dup = |r: &str| {
                        refuse(409, format!("Granting duplicate role {r} for user {name}"))
                    };
                    let missing = |r: &str| {
                        refuse(409, format!("Revoking ungranted role {r} for user {name}"))
                    };
                    let new = User {
                        name: name.clone(),
                        password: if password.is_empty() {
                            old.password.clone()
                        } else {
                            password.clone()
                        },
                        roles: Some(merge(&old.roles, grant, revoke, dup, Some(&missing))?),
                    };
                    if new == old {
                        return Err(refuse(
                            400,
                            "User not updated. Use grant/revoke/password to update the user."
                                .into(),
                        ));
                    }
                    let user = new.public();
                    self.store_user(new, index);
                    return Ok(AuthReply::User {
                        user,
                        created: false,
                    });
                }
                if password.is_empty() {
                    return Err(refuse(
                        400,
                        format!("Cannot create user {name} with an empty password"),
                    ));
                }
                self.ensure_created(index);
                if exists {
                    return Err(refuse(409, format!("User {name} already exists.")));
                }
                let new = User {
                    name: name.clone(),
                    password: password.clone(),
                    roles: roles.clone(),
                }
                .read();
                let user = new.public();
                self.store_user(new, index);
                Ok(AuthReply::User {
                    user,
                    created: *mode == UserWrite::CreateOrUpdate,
                })
            }
            AuthCommand::DeleteUser { name } => {
                if self.enabled() && name == ROOT {
                    return Err(refuse(
                        403,
                        "Cannot delete root user while auth is enabled.".into(),
                    ));
                }
                self.ensure_created(index);
                let gone = self.users.remove(name).is_some();
                self.removed(gone, format!("{USERS}{name}"), index)
                    .map_err(|()| refuse(404, format!("User {name} does not exist")))
            }
            AuthCommand::CreateRole(role) => {
                if role.name == ROOT {
                    return Err(root_role(&role.name));
                }
                self.ensure_created(index);
                if self.roles.contains_key(&role.name) {
                    return Err(refuse(409, format!("Role {} already exists.", role.name)));
                }
                self.store_role(role.clone(), index);
                Ok(AuthReply::Role {
                    role: role.clone(),
                    created: true,
                })
            }
            AuthCommand::UpdateRole {
                name,
                grant,
                revoke,
            } => {
                if name == ROOT {
                    return Err(root_role(name));
                }
                let old = self
                    .roles
                    .get(name)
                    .ok_or_else(|| refuse(404, format!("Role {name} does not exist.")))?;
                let mut new = old.clone();
                let none = Perms::default();
                let (g, t) = (
                    grant.as_ref().unwrap_or(&none),
                    revoke.as_ref().unwrap_or(&none),
                );
                let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
                for write in [false, true] {
                    let (have, add, take, what) = if write {
                        (&old.perms.write, &g.write, &t.write, "write")
                    } else {
                        (&old.perms.read, &g.read, &t.read, "read")
                    };
                    let dup =
                        |p: &str| refuse(409, format!("Granting duplicate {what} permission {p}"));
                    let merged = Some(merge(have, &list(add), &list(take), dup, None)?);
                    if write {
                        new.perms.write = merged;
                    } else {
                        new.perms.read = merged;
                    }
                }
                if &new == old {
                    return Err(refuse(
                        400,
                        "Role not updated. Use grant/revoke to update the role.".into(),
                    ));
                }
                self.store_role(new.clone(), index);
                Ok(AuthReply::Role {
                    role: new,
                    created: false,
                })
            }
            AuthCommand::DeleteRole { name } => {
                if name == ROOT {
                    return Err(root_role(name));
                }
                self.ensure_created(index);
                let gone = self.roles.remove(name).is_some();
                self.removed(gone, format!("{ROLES}{name}"), index)
                    .map_err(|()| refuse(404, format!("Role {name} doesn't exist.")))
            }
            AuthCommand::SetEnabled(on) => {
                if self.enabled() == *on {
                    let m = if *on {
                        "already enabled"
                    } else {
                        "already disabled"
                    };
                    return Err(refuse(409, m.into()));
                }
                if *on {
                    if !self.users.contains_key(ROOT) {
                        return Err(refuse(
                            409,
                            "No root user available, please create one".into(),
                        ));
                    }
                    if !self.roles.contains_key(GUEST) {
                        self.store_role(Role::everything(GUEST), index);
                    }
                }
                self.ensure_created(index);
                *index += 1;
                self.enabled = Some(*on);
                self.changed.insert(ENABLED.to_string());
                Ok(AuthReply::Done)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_user(mode: UserWrite, name: &str, password: &str) -> AuthCommand {
        AuthCommand::PutUser {
            mode,
            name: name.into(),
            password: password.into(),
            roles: None,
            grant: vec![],
            revoke: vec![],
        }
    }

    fn grant_user(name: &str, grant: &[&str], revoke: &[&str]) -> AuthCommand {
        AuthCommand::PutUser {
            mode: UserWrite::Update,
            name: name.into(),
            password: String::new(),
            roles: None,
            grant: grant.iter().map(|s| s.to_string()).collect(),
            revoke: revoke.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn err(a: &mut V2Auth, cmd: AuthCommand, index: &mut u64) -> (u16, String) {
        let e = a.apply(&cmd, index).unwrap_err();
        (e.status, e.message)
    }

    #[test]
    fn indexes_run_as_etcds() {
        let (mut a, mut i) = (V2Auth::default(), 10);
        // The first stored change pays for /2, its directories and the flag.
        a.apply(&put_user(UserWrite::CreateOrUpdate, "u", "h1"), &mut i)
            .unwrap();
        assert_eq!(i, 15);
        // A refused change stores nothing.
        let e = err(&mut a, put_user(UserWrite::Create, "u", "h2"), &mut i);
        assert_eq!(e, (409, "auth: User u already exists.".into()));
        assert_eq!(i, 15);
        // Enabling without root is refused; with root it makes guest, then flips the flag.
        let e = err(&mut a, AuthCommand::SetEnabled(true), &mut i);
        assert_eq!(e.0, 409);
        a.apply(&put_user(UserWrite::CreateOrUpdate, "root", "h"), &mut i)
            .unwrap();
        a.apply(&AuthCommand::SetEnabled(true), &mut i).unwrap();
        assert_eq!(i, 18);
        assert_eq!(a.role(GUEST), Some(Role::everything(GUEST)));
        let e = err(
            &mut a,
            AuthCommand::DeleteUser { name: ROOT.into() },
            &mut i,
        );
        assert_eq!(e.0, 403);
        // Records: the flag, two users, guest.
        let changes = a.take_changes();
        assert_eq!(changes.len(), 4);
        let mut b = V2Auth::default();
        for (k, v) in changes {
            b.recover(&k, &v.unwrap()).unwrap();
        }
        assert_eq!(b, a);
    }

    #[test]
    fn user_updates_follow_etcds_merge() {
        let (mut a, mut i) = (V2Auth::default(), 0);
        a.apply(&put_user(UserWrite::CreateOrUpdate, "u", "h"), &mut i)
            .unwrap();
        let e = err(&mut a, grant_user("nobody", &["r"], &[]), &mut i);
        assert_eq!(e, (404, "auth: User nobody does not exist.".into()));
        let got = a.apply(&grant_user("u", &["b", "a"], &[]), &mut i).unwrap();
        let AuthReply::User { user, created } = got else {
            panic!("{got:?}")
        };
        assert!(!created);
        assert_eq!(user.roles, Some(vec!["a".into(), "b".into()]));
        assert!(user.password.is_empty());
        let e = err(&mut a, grant_user("u", &["a"], &[]), &mut i);
        assert_eq!(
            e,
            (409, "auth: Granting duplicate role a for user u".into())
        );
        let e = err(&mut a, grant_user("u", &[], &["c"]), &mut i);
        assert_eq!(
            e,
            (409, "auth: Revoking ungranted role c for user u".into())
        );
        let e = err(&mut a, grant_user("u", &["c"], &["c"]), &mut i);
        assert_eq!(e.0, 400);
        // null roles become [] on the first update, then nothing changes.
        a.apply(&put_user(UserWrite::CreateOrUpdate, "v", "h"), &mut i)
            .unwrap();
        a.apply(&grant_user("v", &[], &[]), &mut i).unwrap();
        assert_eq!(a.user("v").unwrap().roles, Some(vec![]));
        let e = err(&mut a, grant_user("v", &[], &[]), &mut i);
        assert_eq!(e.0, 400);
        // root always holds root.
        a.apply(&put_user(UserWrite::CreateOrUpdate, "root", "h"), &mut i)
            .unwrap();
        assert!(a.user(ROOT).unwrap().has_role(ROOT));
    }

    #[test]
    fn roles_grant_as_etcds_patterns() {
        let (mut a, mut i) = (V2Auth::default(), 0);
        let role = Role {
            name: "r".into(),
            perms: Perms {
                read: Some(vec!["/foo/*".into(), "/k".into(), String::new()]),
                write: None,
            },
        };
        a.apply(&AuthCommand::CreateRole(role), &mut i).unwrap();
        let r = a.role("r").unwrap();
        assert!(r.grants("/foo/", false, false));
        assert!(r.grants("/foo/a", false, true));
        assert!(!r.grants("/foo", false, false));
        assert!(r.grants("/k", false, false));
        assert!(!r.grants("/k", false, true));
        assert!(!r.grants("/k/", false, false));
        assert!(!r.grants("/k", true, false));
        let e = err(
            &mut a,
            AuthCommand::UpdateRole {
                name: "r".into(),
                grant: Some(Perms {
                    read: Some(vec!["/k".into()]),
                    write: None,
                }),
                revoke: None,
            },
            &mut i,
        );
        assert_eq!(
            e,
            (409, "auth: Granting duplicate read permission /k".into())
        );
        // Revoking what is not there is no error, but nothing changed... except null → [].
        let revoke_x = AuthCommand::UpdateRole {
            name: "r".into(),
            grant: None,
            revoke: Some(Perms {
                read: Some(vec!["/x".into()]),
                write: None,
            }),
        };
        a.apply(&revoke_x, &mut i).unwrap();
        assert_eq!(a.role("r").unwrap().perms.write, Some(vec![]));
        assert_eq!(err(&mut a, revoke_x, &mut i).0, 400);
        let e = err(
            &mut a,
            AuthCommand::DeleteRole { name: ROOT.into() },
            &mut i,
        );
        assert_eq!(
            e,
            (403, "auth: Cannot modify role root: is root role.".into())
        );
        // Guest (once enabled) never reads recursively; a user's roles do.
        a.apply(&put_user(UserWrite::CreateOrUpdate, "root", "h"), &mut i)
            .unwrap();
        a.apply(&AuthCommand::SetEnabled(true), &mut i).unwrap();
        let u = User {
            name: "u".into(),
            password: String::new(),
            roles: Some(vec!["r".into(), "ghost".into()]),
        };
        assert!(a.allows(Some(&u), "/foo/a", false, true));
        assert!(!a.allows(Some(&u), "/bar", false, false));
        assert!(a.allows(None, "/bar", true, false));
    }
}
