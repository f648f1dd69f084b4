//! Simple tokens: `<random letters>.<raft index>`, registered on every member when the
//! `Authenticate` entry that made them applies, each valid for a time-to-live that every use
//! renews. Memory only: a restart forgets them (clients log in again), as etcd's do.

use std::collections::BTreeMap;

/// etcd's `--auth-token-ttl` default: 300 seconds.
pub const TOKEN_TTL_MS_DEFAULT: u64 = 300_000;

/// The simple tokens a member knows.
#[derive(Clone, Debug)]
pub struct Tokens {
    ttl_ms: u64,
    /// Token → (user, expiry).
    by_token: BTreeMap<String, (String, u64)>,
}

impl Tokens {
    /// No tokens; each one assigned lives `ttl_ms` past its last use.
    pub fn new(ttl_ms: u64) -> Tokens {
        assert!(ttl_ms > 0, "a token lives a while");
        Tokens {
            ttl_ms,
            by_token: BTreeMap::new(),
        }
    }

    /// Registers `token` for `user` at `now_ms`.
    pub fn assign(&mut self, token: String, user: String, now_ms: u64) {
        self.by_token
            .insert(token, (user, now_ms.saturating_add(self.ttl_ms)));
    }

    /// The user `token` names, renewing it, or `None` when it is unknown or expired.
    pub fn lookup(&mut self, token: &str, now_ms: u64) -> Option<String> {
        let (user, expires_ms) = self.by_token.get_mut(token)?;
        if *expires_ms <= now_ms {
            self.by_token.remove(token);
            return None;
        }
        *expires_ms = now_ms.saturating_add(self.ttl_ms);
        Some(user.clone())
    }

    /// Forgets the tokens of `user` (deleted, or its password changed).
    pub fn invalidate_user(&mut self, user: &str) {
        self.by_token.retain(|_, (u, _)| u != user);
    }

    /// Forgets every token (auth disabled).
    pub fn clear(&mut self) {
        self.by_token.clear();
    }

    /// Forgets expired tokens, so unused ones do not pile up.
    pub fn purge(&mut self, now_ms: u64) {
        self.by_token
            .retain(|_, (_, expires_ms)| *expires_ms > now_ms);
    }

    /// How many tokens are live or not yet purged.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_renews_and_silence_expires() {
        let mut t = Tokens::new(1000);
        t.assign("abc.7".into(), "alice".into(), 0);
        assert_eq!(t.lookup("abc.7", 999).as_deref(), Some("alice"));
        assert_eq!(t.lookup("abc.7", 1998).as_deref(), Some("alice"));
        assert_eq!(t.lookup("abc.7", 2998), None);
        assert_eq!(t.lookup("nope", 0), None);
    }

    #[test]
    fn invalidation_by_user_and_whole() {
        let mut t = Tokens::new(1000);
        t.assign("a.1".into(), "alice".into(), 0);
        t.assign("b.2".into(), "bob".into(), 0);
        t.invalidate_user("alice");
        assert_eq!(t.lookup("a.1", 1), None);
        assert_eq!(t.lookup("b.2", 1).as_deref(), Some("bob"));
        t.clear();
        assert!(t.is_empty());
    }
}
