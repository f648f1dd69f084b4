//! Authentication and role-based access control, as etcd 3.4 keeps them: users (with a
//! password hash, or none for certificate-only login), roles holding key permissions, the
//! root rules, an auth revision raised by every change, and the simple tokens handed out by
//! `Authenticate`.
//!
//! - [`AuthStore`]: the replicated state. Every change is an [`AuthCommand`] applied from the
//!   log on every member, and the whole state is stored with the state machine (so it is in
//!   snapshots and survives restarts).
//! - [`Tokens`]: the simple tokens, registered when an `Authenticate` entry applies (so every
//!   member knows every token), valid for a sliding time-to-live, kept in memory only (a
//!   restart invalidates them, as etcd's).
//! - Key permission checks ([`AuthStore::check_key`]) against the union of the intervals a
//!   user's roles grant.
//!
//! What it does not do: hash or verify passwords (bcrypt is slow and belongs off the member's
//! loop: the API edge hashes before proposing and verifies before authenticating; this store
//! keeps and hands out hashes), draw randomness (a token's random part comes with its command),
//! read a clock (time is `now_ms`), or know gRPC codes (its errors are [`AuthError`]s).

mod perms;
mod store;
mod tokens;

pub use perms::{PermKind, Permission};
pub use store::{AuthApplied, AuthCommand, AuthError, AuthStore, ROOT, Role, User};
pub use tokens::{TOKEN_TTL_MS_DEFAULT, Tokens};
