//! etcd's v2 store: a tree of keys and directories with one global index, TTLs decided by the
//! proposing member's clock and expired through the log (the leader's `Sync`), and a watch
//! hub with etcd's 1,000-event window. It is kept apart from the v3 data: its own commands,
//! its own records in the backend (`v2/` in the meta keyspace) and its own watchers, so that
//! it can be deleted whole one day.
//!
//! What it does not do: HTTP (the server's `api::v2` parses requests and renders JSON) or
//! anything with the v3 keys. A v2 write never touches MVCC, and a v3 write never the tree.

pub mod auth;
pub mod error;
pub mod store;
pub mod watch;

pub use auth::{AuthCommand, AuthReply, V2Auth, V2AuthError};
pub use error::V2Error;
pub use store::{Action, Event, Expiry, NodeView, V2Command, V2Store};
pub use watch::{WatchHub, Watched, WatcherId};

/// A member's v2 state: the replicated tree and this member's watch hub.
#[derive(Clone, Debug, Default)]
pub struct V2 {
    /// The tree.
    pub store: V2Store,
    /// The watchers and the event history.
    pub hub: WatchHub,
}

impl V2 {
    /// Applies a write and tells the watchers.
    pub fn apply(&mut self, cmd: &V2Command) -> Result<Vec<Event>, V2Error> {
        let events = self.store.apply(cmd)?;
        for (e, removed) in &events {
            self.hub.notify(e, removed);
        }
        Ok(events.into_iter().map(|(e, _)| e).collect())
    }
}
