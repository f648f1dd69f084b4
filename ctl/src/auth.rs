//! The `auth`, `user` and `role` commands: etcdctl 3.4's arguments, checks (in its order:
//! arguments, then the password, then the connection) and outputs, plus `auth status` as
//! etcdctl 3.5 has it. What a response prints is [`crate::print`]'s business; the token that
//! `--user` puts on requests is [`crate::token`]'s.

use super::token::{ask_password, prompt_failed, scan_word};
use super::{Cli, CtlError, EXIT_BAD_ARGS, Out};
use bytes::Bytes;
use clap::Subcommand;
use oxcd::pb::authpb;
use oxcd::pb::etcdserverpb as pb;
use pb::auth_client::AuthClient;

#[derive(Subcommand)]
pub(crate) enum AuthCommand {
    /// Enables authentication.
    Enable { args: Vec<String> },
    /// Disables authentication.
    Disable { args: Vec<String> },
    /// Returns authentication status (etcdctl 3.5).
    Status { args: Vec<String> },
}

/// etcdctl's `--interactive`: a bool flag that is on by default (`--interactive=false`).
#[derive(clap::Args)]
pub(crate) struct Interactive {
    /// Read password from the terminal (false: the first word of stdin).
    #[arg(
        long,
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    interactive: bool,
}

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Adds a new user.
    Add {
        #[command(flatten)]
        interactive: Interactive,
        /// Supply password from the command line flag.
        #[arg(long = "new-user-password", default_value = "")]
        new_user_password: String,
        /// Create a user without password (CN based auth only).
        #[arg(long = "no-password")]
        no_password: bool,
        args: Vec<String>,
    },
    /// Deletes a user.
    Delete { args: Vec<String> },
    /// Gets detailed information of a user.
    Get {
        /// Show permissions of roles granted to the user.
        #[arg(long)]
        detail: bool,
        args: Vec<String>,
    },
    /// Lists all users.
    List { args: Vec<String> },
    /// Changes password of user.
    Passwd {
        #[command(flatten)]
        interactive: Interactive,
        args: Vec<String>,
    },
    /// Grants a role to a user.
    GrantRole { args: Vec<String> },
    /// Revokes a role from a user.
    RevokeRole { args: Vec<String> },
}

/// `--prefix` / `--from-key` of the permission commands.
#[derive(clap::Args)]
pub(crate) struct PermFlags {
    /// A prefix permission.
    #[arg(long)]
    prefix: bool,
    /// A permission of keys greater than or equal to the given key (byte compare).
    #[arg(long = "from-key")]
    from_key: bool,
}

#[derive(Subcommand)]
pub(crate) enum RoleCommand {
    /// Adds a new role.
    Add { args: Vec<String> },
    /// Deletes a role.
    Delete { args: Vec<String> },
    /// Gets detailed information of a role.
    Get { args: Vec<String> },
    /// Lists all roles.
    List { args: Vec<String> },
    /// Grants a key to a role: <role name> <permission type> <key> [endkey].
    GrantPermission {
        #[command(flatten)]
        flags: PermFlags,
        args: Vec<String>,
    },
    /// Revokes a key from a role: <role name> <key> [endkey].
    RevokePermission {
        #[command(flatten)]
        flags: PermFlags,
        args: Vec<String>,
    },
}

fn bad_args(why: &str) -> CtlError {
    CtlError::new(EXIT_BAD_ARGS, why.to_string())
}

/// Requires exactly `n` arguments, or fails with etcdctl's words.
fn exactly<'a>(args: &'a [String], n: usize, why: &str) -> Result<&'a [String], CtlError> {
    if args.len() == n {
        Ok(args)
    } else {
        Err(bad_args(why))
    }
}

/// etcdctl's `readPasswordInteractive`: asked twice, must be non-empty and the same.
fn password_twice(name: &str) -> Result<String, CtlError> {
    let first = ask_password(&format!("Password of {name}: ")).map_err(prompt_failed)?;
    if first.is_empty() {
        return Err(bad_args("empty password"));
    }
    let second = ask_password(&format!("Type password of {name} again for confirmation: "))
        .map_err(prompt_failed)?;
    if first != second {
        return Err(bad_args("given passwords are different"));
    }
    Ok(first)
}

fn read_password(interactive: &Interactive, name: &str) -> Result<String, CtlError> {
    if interactive.interactive {
        password_twice(name)
    } else {
        Ok(scan_word())
    }
}

/// `clientv3.StrToPermissionType`: read, write or readwrite, in any case.
fn perm_type(s: &str) -> Result<authpb::permission::Type, CtlError> {
    match s.to_uppercase().as_str() {
        "READ" => Ok(authpb::permission::Type::Read),
        "WRITE" => Ok(authpb::permission::Type::Write),
        "READWRITE" => Ok(authpb::permission::Type::Readwrite),
        _ => Err(bad_args(&format!("invalid permission type: {s}"))),
    }
}

/// etcdctl's `permRange`: the key and range end of a permission from KEY [ENDKEY] and the
/// flags. An empty key means every key ("\x00", with range end "\x00" under either flag).
fn perm_range(args: &[String], f: &PermFlags) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    let key = args[0].as_bytes();
    if key.is_empty() {
        if f.prefix && f.from_key {
            return Err(bad_args(
                "--from-key and --prefix flags are mutually exclusive",
            ));
        }
        let end = if f.prefix || f.from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return Ok((vec![0], end));
    }
    let end = match (args.get(1), f.prefix, f.from_key) {
        (None, true, true) => {
            return Err(bad_args(
                "--from-key and --prefix flags are mutually exclusive",
            ));
        }
        (None, true, false) => super::txn::prefix_end(key),
        (None, false, true) => vec![0],
        (None, false, false) => Vec::new(),
        (Some(_), true, _) => {
            return Err(bad_args("unexpected endkey argument with --prefix flag"));
        }
        (Some(_), false, true) => {
            return Err(bad_args("unexpected endkey argument with --from-key flag"));
        }
        (Some(end), false, false) => end.clone().into_bytes(),
    };
    Ok((key.to_vec(), end))
}

impl Cli {
    async fn auth_client(&self) -> Result<AuthClient<super::token::Authed>, CtlError> {
        Ok(AuthClient::new(self.channel().await?))
    }

    pub(crate) async fn auth(&self, a: &AuthCommand, out: &mut Out) -> Result<(), CtlError> {
        match a {
            AuthCommand::Enable { args } => {
                exactly(args, 0, "auth enable command does not accept any arguments")?;
                let mut c = self.auth_client().await?;
                // etcdctl's loop: a root user without the root role gets it (and the role is
                // created), then enabling is tried again.
                loop {
                    match self.timed(c.auth_enable(pb::AuthEnableRequest {})).await {
                        Ok(_) => break,
                        Err(e) if e.message == "etcdserver: root user does not have root role" => {
                            self.timed(c.role_add(pb::AuthRoleAddRequest {
                                name: "root".into(),
                            }))
                            .await?;
                            self.timed(c.user_grant_role(pb::AuthUserGrantRoleRequest {
                                user: "root".into(),
                                role: "root".into(),
                            }))
                            .await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                out.stdout += "Authentication Enabled\n";
            }
            AuthCommand::Disable { args } => {
                exactly(
                    args,
                    0,
                    "auth disable command does not accept any arguments",
                )?;
                let mut c = self.auth_client().await?;
                self.timed(c.auth_disable(pb::AuthDisableRequest {}))
                    .await?;
                out.stdout += "Authentication Disabled\n";
            }
            AuthCommand::Status { args } => {
                exactly(args, 0, "auth status command does not accept any arguments")?;
                let mut c = self.auth_client().await?;
                let r = self.timed(c.auth_status(pb::AuthStatusRequest {})).await?;
                out.stdout += &self.printer(false).auth_status(&r)?;
            }
        }
        Ok(())
    }

    pub(crate) async fn user(&self, u: &UserCommand, out: &mut Out) -> Result<(), CtlError> {
        let p = self.printer(false);
        match u {
            UserCommand::Add {
                interactive,
                new_user_password,
                no_password,
                args,
            } => {
                let args = exactly(
                    args,
                    1,
                    "user add command requires user name as its argument",
                )?;
                let arg = &args[0];
                let (name, password) = if *no_password {
                    (arg.clone(), String::new())
                } else if !new_user_password.is_empty() {
                    (arg.clone(), new_user_password.clone())
                } else if let Some((name, pw)) = arg.split_once(':') {
                    if name.is_empty() {
                        return Err(bad_args("empty user name is not allowed"));
                    }
                    (name.to_string(), pw.to_string())
                } else {
                    (arg.clone(), read_password(interactive, arg)?)
                };
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(c.user_add(pb::AuthUserAddRequest {
                        name: name.clone(),
                        password,
                        options: Some(authpb::UserAddOptions {
                            no_password: *no_password,
                        }),
                        hashed_password: String::new(),
                    }))
                    .await?;
                out.stdout += &p.header_only(format!("User {name} created\n"), &r.header)?;
            }
            UserCommand::Delete { args } => {
                let args = exactly(
                    args,
                    1,
                    "user delete command requires user name as its argument",
                )?;
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(c.user_delete(pb::AuthUserDeleteRequest {
                        name: args[0].clone(),
                    }))
                    .await?;
                out.stdout += &p.header_only(format!("User {} deleted\n", args[0]), &r.header)?;
            }
            UserCommand::Get { detail, args } => {
                let args = exactly(
                    args,
                    1,
                    "user get command requires user name as its argument",
                )?;
                let name = &args[0];
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(c.user_get(pb::AuthUserGetRequest { name: name.clone() }))
                    .await?;
                if *detail {
                    out.stdout += &format!("User: {name}\n");
                    for role in &r.roles {
                        out.stdout.push('\n');
                        let rr = self
                            .timed(c.role_get(pb::AuthRoleGetRequest { role: role.clone() }))
                            .await?;
                        out.stdout += &p.role_get(role, &rr)?;
                    }
                } else {
                    out.stdout += &p.user_get(name, &r)?;
                }
            }
            UserCommand::List { args } => {
                exactly(args, 0, "user list command requires no arguments")?;
                let mut c = self.auth_client().await?;
                let r = self.timed(c.user_list(pb::AuthUserListRequest {})).await?;
                out.stdout += &p.user_list(&r)?;
            }
            UserCommand::Passwd { interactive, args } => {
                let args = exactly(
                    args,
                    1,
                    "user passwd command requires user name as its argument",
                )?;
                let password = read_password(interactive, &args[0])?;
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(c.user_change_password(pb::AuthUserChangePasswordRequest {
                        name: args[0].clone(),
                        password,
                        hashed_password: String::new(),
                    }))
                    .await?;
                out.stdout += &p.header_only("Password updated\n".into(), &r.header)?;
            }
            UserCommand::GrantRole { args } => {
                let args = exactly(
                    args,
                    2,
                    "user grant command requires user name and role name as its argument",
                )?;
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(c.user_grant_role(pb::AuthUserGrantRoleRequest {
                        user: args[0].clone(),
                        role: args[1].clone(),
                    }))
                    .await?;
                let text = format!("Role {} is granted to user {}\n", args[1], args[0]);
                out.stdout += &p.header_only(text, &r.header)?;
            }
            UserCommand::RevokeRole { args } => {
                let args = exactly(
                    args,
                    2,
                    "user revoke-role requires user name and role name as its argument",
                )?;
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(c.user_revoke_role(pb::AuthUserRevokeRoleRequest {
                        name: args[0].clone(),
                        role: args[1].clone(),
                    }))
                    .await?;
                let text = format!("Role {} is revoked from user {}\n", args[1], args[0]);
                out.stdout += &p.header_only(text, &r.header)?;
            }
        }
        Ok(())
    }

    pub(crate) async fn role(&self, r: &RoleCommand, out: &mut Out) -> Result<(), CtlError> {
        let p = self.printer(false);
        match r {
            RoleCommand::Add { args } => {
                let args = exactly(
                    args,
                    1,
                    "role add command requires role name as its argument",
                )?;
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(c.role_add(pb::AuthRoleAddRequest {
                        name: args[0].clone(),
                    }))
                    .await?;
                out.stdout += &p.header_only(format!("Role {} created\n", args[0]), &r.header)?;
            }
            RoleCommand::Delete { args } => {
                let args = exactly(
                    args,
                    1,
                    "role delete command requires role name as its argument",
                )?;
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(c.role_delete(pb::AuthRoleDeleteRequest {
                        role: args[0].clone(),
                    }))
                    .await?;
                out.stdout += &p.header_only(format!("Role {} deleted\n", args[0]), &r.header)?;
            }
            RoleCommand::Get { args } => {
                let args = exactly(
                    args,
                    1,
                    "role get command requires role name as its argument",
                )?;
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(c.role_get(pb::AuthRoleGetRequest {
                        role: args[0].clone(),
                    }))
                    .await?;
                out.stdout += &p.role_get(&args[0], &r)?;
            }
            RoleCommand::List { args } => {
                exactly(args, 0, "role list command requires no arguments")?;
                let mut c = self.auth_client().await?;
                let r = self.timed(c.role_list(pb::AuthRoleListRequest {})).await?;
                out.stdout += &p.role_list(&r)?;
            }
            RoleCommand::GrantPermission { flags, args } => {
                if args.len() < 3 {
                    return Err(bad_args(
                        "role grant command requires role name, permission type, and key [endkey] as its argument",
                    ));
                }
                let perm_type = perm_type(&args[1])?;
                let (key, range_end) = perm_range(&args[2..], flags)?;
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(c.role_grant_permission(pb::AuthRoleGrantPermissionRequest {
                        name: args[0].clone(),
                        perm: Some(authpb::Permission {
                            perm_type: perm_type as i32,
                            key: Bytes::from(key),
                            range_end: Bytes::from(range_end),
                        }),
                    }))
                    .await?;
                out.stdout += &p.header_only(format!("Role {} updated\n", args[0]), &r.header)?;
            }
            RoleCommand::RevokePermission { flags, args } => {
                if args.len() < 2 {
                    return Err(bad_args(
                        "role revoke-permission command requires role name and key [endkey] as its argument",
                    ));
                }
                let (key, range_end) = perm_range(&args[1..], flags)?;
                let mut c = self.auth_client().await?;
                let r = self
                    .timed(
                        c.role_revoke_permission(pb::AuthRoleRevokePermissionRequest {
                            role: args[0].clone(),
                            key: Bytes::from(key),
                            range_end: Bytes::from(range_end.clone()),
                        }),
                    )
                    .await?;
                // The text names the key as given (not the "\x00" an empty one is sent as).
                let (role, key) = (&args[0], &args[1]);
                let text = match range_end.as_slice() {
                    [] => format!("Permission of key {key} is revoked from role {role}\n"),
                    [0] => format!(
                        "Permission of range [{key}, <open ended> is revoked from role {role}\n"
                    ),
                    end => format!(
                        "Permission of range [{key}, {}) is revoked from role {role}\n",
                        String::from_utf8_lossy(end)
                    ),
                };
                out.stdout += &p.header_only(text, &r.header)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(prefix: bool, from_key: bool) -> PermFlags {
        PermFlags { prefix, from_key }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn permission_ranges_follow_etcdctl() {
        let r = |a: &[&str], p, f| perm_range(&args(a), &flags(p, f));
        assert_eq!(r(&["foo"], false, false), Ok((b"foo".to_vec(), vec![])));
        assert_eq!(
            r(&["/p/"], true, false),
            Ok((b"/p/".to_vec(), b"/p0".to_vec()))
        );
        assert_eq!(r(&["z"], false, true), Ok((b"z".to_vec(), vec![0])));
        assert_eq!(
            r(&["a", "c"], false, false),
            Ok((b"a".to_vec(), b"c".to_vec()))
        );
        assert_eq!(r(&[""], false, false), Ok((vec![0], vec![])));
        assert_eq!(r(&[""], true, false), Ok((vec![0], vec![0])));
        assert_eq!(
            r(&["a", "c"], true, false).unwrap_err().message,
            "unexpected endkey argument with --prefix flag"
        );
        assert_eq!(r(&["a"], true, true).unwrap_err().code, EXIT_BAD_ARGS);
    }

    #[test]
    fn permission_types_ignore_case() {
        assert_eq!(
            perm_type("ReadWrite"),
            Ok(authpb::permission::Type::Readwrite)
        );
        assert_eq!(perm_type("read"), Ok(authpb::permission::Type::Read));
        assert_eq!(
            perm_type("123").unwrap_err().message,
            "invalid permission type: 123"
        );
    }
}
