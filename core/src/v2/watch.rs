//! The v2 watch hub: the last [`HISTORY_EVENTS_MAX`] events, and the watchers waiting on a key
//! (or, `recursive`, on everything under it) for an event at or after an index. A plain
//! watcher gets one event and is gone; a stream watcher stays until it is cancelled.
//!
//! What it does not do: it holds no connection. Events for watchers queue here and leave by
//! [`WatchHub::poll_event`]; the caller sends them and cancels the watchers whose client left.
//! The history is this member's own (not replicated, not persisted), as etcd's is.

use super::error::{self, V2Error};
use super::store::Event;
use std::collections::{BTreeMap, VecDeque};

/// How many events the history keeps (etcd's window).
pub const HISTORY_EVENTS_MAX: usize = 1000;
/// Watchers one member holds at most; a watch beyond it is refused.
pub const WATCHERS_MAX: usize = 100_000;
/// Events queued for delivery at most; past it the oldest watchers' events are dropped and
/// those watchers cancelled (their clients see the stream end).
pub const QUEUED_EVENTS_MAX: usize = 100_000;

/// A watcher's ID, unique within one hub.
pub type WatcherId = u64;

#[derive(Clone, Debug)]
struct Watcher {
    key: String,
    recursive: bool,
    stream: bool,
    since: u64,
}

/// What a watch found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watched {
    /// The history already holds events for it: the first (a plain watch; the watcher is not
    /// kept) or all of them (a stream, kept as `Some` for what follows).
    Found(Vec<super::store::Event>, Option<WatcherId>),
    /// Nothing yet: the watcher waits, and its events come from [`WatchHub::poll_event`].
    Waiting(WatcherId),
}

/// The hub. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct WatchHub {
    /// The lowest index the history can answer for: events before it were dropped (or
    /// happened before this member started).
    start: u64,
    history: VecDeque<Event>,
    watchers: BTreeMap<WatcherId, Watcher>,
    next_id: WatcherId,
    out: VecDeque<(WatcherId, Event)>,
}

/// Whether the event at `key` lies under a hidden name below `watched`.
fn hidden_below(watched: &str, key: &str) -> bool {
    match key.strip_prefix(watched) {
        Some(rest) => format!("/{rest}").contains("/_"),
        None => false,
    }
}

/// Whether a watcher on `key` (`recursive`) is interested in history event `e`.
fn matches(key: &str, recursive: bool, e: &Event) -> bool {
    if e.refresh {
        return false;
    }
    let k = &e.node.key;
    let dir_prefix = if key == "/" {
        "/".to_string()
    } else {
        format!("{key}/")
    };
    let mut ok = k == key || (recursive && k.starts_with(&dir_prefix));
    // A deleted or expired directory takes every watcher under it along.
    if let Some(prev) = &e.prev_node
        && prev.dir
        && matches!(
            e.action,
            super::store::Action::Delete | super::store::Action::Expire
        )
    {
        ok = ok || key.starts_with(&prev.key);
    }
    // Unlike a waiting watcher, a scan of the history does not skip hidden names (as etcd's).
    ok
}

impl WatchHub {
    /// An empty hub.
    pub fn new() -> WatchHub {
        WatchHub::default()
    }

    /// A hub whose history starts after `index` (what the store held when it opened).
    pub fn starting_after(index: u64) -> WatchHub {
        WatchHub {
            start: index + 1,
            ..WatchHub::default()
        }
    }

    /// Cancels every watcher and forgets the history, which now starts after `index`: the
    /// tree was replaced (a snapshot), and what happened in between is not known here.
    pub fn restart_after(&mut self, index: u64) {
        self.watchers.clear();
        self.out.clear();
        self.history.clear();
        self.start = index + 1;
    }

    /// The number of waiting watchers.
    pub fn watchers(&self) -> usize {
        self.watchers.len()
    }

    /// Watches `key` for events at or after `since` (0: the next one, after `store_index`).
    /// An index older than the history answers etcd's 401 at `store_index`.
    pub fn watch(
        &mut self,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
        store_index: u64,
    ) -> Result<Watched, V2Error> {
        let since = if since == 0 { store_index + 1 } else { since };
        let start = self.start;
        if since < start {
            return Err(V2Error::new(
                error::EVENT_INDEX_CLEARED,
                format!("the requested history has been cleared [{start}/{since}]"),
                store_index,
            ));
        }
        let mut found: Vec<Event> = Vec::new();
        for e in self.history.iter().filter(|e| e.index() >= since) {
            if matches(key, recursive, e) {
                let mut e = e.clone();
                e.etcd_index = store_index;
                found.push(e);
                if !stream {
                    break;
                }
            }
        }
        if !found.is_empty() && !stream {
            return Ok(Watched::Found(found, None));
        }
        if self.watchers.len() >= WATCHERS_MAX {
            return Err(V2Error::new(
                error::RAFT_INTERNAL,
                "too many watchers",
                store_index,
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        let since = self
            .history
            .back()
            .map_or(since, |e| since.max(e.index() + 1));
        self.watchers.insert(
            id,
            Watcher {
                key: key.to_string(),
                recursive,
                stream,
                since,
            },
        );
        Ok(if found.is_empty() {
            Watched::Waiting(id)
        } else {
            Watched::Found(found, Some(id))
        })
    }

    /// Forgets a watcher (its client left); its queued events stay queued for the caller to
    /// drop.
    pub fn cancel(&mut self, id: WatcherId) {
        self.watchers.remove(&id);
    }

    /// Records an event and queues it for every watcher it concerns: watchers on its key, on
    /// a directory above it (`recursive`, unless a hidden name lies between), and on any of
    /// the `removed` paths (a deleted directory's watchers below it).
    pub fn notify(&mut self, e: &Event, removed: &[String]) {
        self.history.push_back(e.clone());
        while self.history.len() > HISTORY_EVENTS_MAX {
            self.history.pop_front();
            self.start = self.history.front().map_or(self.start, Event::index);
        }
        if e.refresh {
            return;
        }
        let key = &e.node.key;
        let mut done = Vec::new();
        for (&id, w) in &self.watchers {
            if e.index() < w.since {
                continue;
            }
            let own = &w.key == key;
            let above = w.recursive
                && (w.key == "/" || key.starts_with(&format!("{}/", w.key)))
                && !hidden_below(&w.key, key);
            let gone = removed.iter().any(|p| p == &w.key);
            if own || above || gone {
                self.out.push_back((id, e.clone()));
                if !w.stream {
                    done.push(id);
                }
            }
        }
        for id in done {
            self.watchers.remove(&id);
        }
        while self.out.len() > QUEUED_EVENTS_MAX {
            if let Some((id, _)) = self.out.pop_front() {
                // It missed an event: none of its later ones go out either.
                self.watchers.remove(&id);
                self.out.retain(|(w, _)| *w != id);
            }
        }
    }

    /// The next event for a watcher.
    pub fn poll_event(&mut self) -> Option<(WatcherId, Event)> {
        self.out.pop_front()
    }

    /// Whether a watcher is still waiting.
    pub fn is_watching(&self, id: WatcherId) -> bool {
        self.watchers.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::store::{Expiry, V2Command, V2Store};

    fn run(s: &mut V2Store, hub: &mut WatchHub, cmd: V2Command) {
        let Ok(events) = s.apply(&cmd) else {
            return;
        };
        for (e, removed) in &events {
            hub.notify(e, removed);
        }
    }

    fn set(path: &str) -> V2Command {
        V2Command::Set {
            path: path.into(),
            dir: false,
            value: "v".into(),
            expiry: Expiry::default(),
        }
    }

    #[test]
    fn plain_watchers_fire_once_streams_stay_recursive_sees_below() {
        let (mut s, mut hub) = (V2Store::new(), WatchHub::new());
        let Watched::Waiting(plain) = hub.watch("/a", false, false, 0, s.index()).unwrap() else {
            panic!()
        };
        let Watched::Waiting(rec) = hub.watch("/", true, true, 0, s.index()).unwrap() else {
            panic!()
        };
        run(&mut s, &mut hub, set("/a/b"));
        run(&mut s, &mut hub, set("/a"));
        // Not /a/b for the plain watcher (not recursive); /a fails (a directory), so only the
        // recursive stream saw anything, and the plain watcher still waits.
        assert_eq!(
            hub.poll_event().map(|(id, e)| (id, e.node.key)),
            Some((rec, "/a/b".into()))
        );
        assert!(hub.poll_event().is_none());
        assert!(hub.is_watching(plain));
        run(
            &mut s,
            &mut hub,
            V2Command::Delete {
                path: "/a".into(),
                dir: true,
                recursive: true,
            },
        );
        let got: Vec<_> = std::iter::from_fn(|| hub.poll_event())
            .map(|(id, e)| (id, e.index()))
            .collect();
        assert_eq!(got, vec![(plain, 2), (rec, 2)]);
        assert!(!hub.is_watching(plain) && hub.is_watching(rec));
        run(&mut s, &mut hub, set("/x/_h/y"));
        assert!(hub.poll_event().is_none(), "hidden below the watched dir");
    }

    #[test]
    fn history_answers_old_indexes_and_refuses_cleared_ones() {
        let (mut s, mut hub) = (V2Store::new(), WatchHub::new());
        for i in 0..1005 {
            run(&mut s, &mut hub, set(&format!("/k{}", i % 3)));
        }
        let err = hub.watch("/k0", false, false, 2, s.index()).unwrap_err();
        assert_eq!((err.code, err.index), (401, 1005));
        assert_eq!(err.cause, "the requested history has been cleared [6/2]");
        let Watched::Found(found, None) = hub.watch("/k1", false, false, 7, s.index()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (found.len(), found[0].index(), found[0].etcd_index),
            (1, 8, 1005)
        );
        let Watched::Found(found, Some(id)) =
            hub.watch("/k2", false, true, 1000, s.index()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            found.iter().map(Event::index).collect::<Vec<_>>(),
            vec![1002, 1005]
        );
        run(&mut s, &mut hub, set("/k2"));
        assert_eq!(
            hub.poll_event().map(|(i, e)| (i, e.index())),
            Some((id, 1006))
        );
    }
}
