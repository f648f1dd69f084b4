//! The v2 tree: keys and directories under `/`, one global index, TTLs, and the operations
//! etcd's v2 API applies (set, create, update, compare-and-swap, delete, compare-and-delete,
//! expiry). Every member applies the same commands in the same order and so holds the same
//! tree; the times in commands (expirations, the expiry cutoff) were read by the member that
//! proposed them, so applying reads no clock.
//!
//! What it does not do: it watches nothing (the [`super::WatchHub`] takes its events), parses
//! no request and decides no TTL on its own. It remembers which nodes changed
//! ([`V2Store::take_changes`]) so that the caller persists exactly those.

use super::auth::{self, AuthCommand, AuthReply, V2Auth, V2AuthError};
use super::error::{self, V2Error};
use crate::storage::codec::{CodecError, Reader, Writer};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet};

/// What a v2 event did, with etcd's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A read (only in answers to GET).
    Get,
    /// A key or directory written regardless of what was there.
    Set,
    /// A new key or directory (`prevExist=false`, or a POST).
    Create,
    /// An existing key or directory rewritten (`prevExist=true`).
    Update,
    /// A compare-and-swap that matched.
    CompareAndSwap,
    /// A key or directory removed.
    Delete,
    /// A compare-and-delete that matched.
    CompareAndDelete,
    /// A key or directory whose TTL ran out.
    Expire,
}

impl Action {
    /// etcd's name for the action.
    pub fn name(self) -> &'static str {
        match self {
            Action::Get => "get",
            Action::Set => "set",
            Action::Create => "create",
            Action::Update => "update",
            Action::CompareAndSwap => "compareAndSwap",
            Action::Delete => "delete",
            Action::CompareAndDelete => "compareAndDelete",
            Action::Expire => "expire",
        }
    }
}

/// A node as an answer shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node's path; empty for the root.
    pub key: String,
    /// A key's value (`None` for a directory).
    pub value: Option<String>,
    /// Whether it is a directory.
    pub dir: bool,
    /// When it expires, in milliseconds since the Unix epoch (`None`: permanent).
    pub expiration_ms: Option<u64>,
    /// A directory's children, when they were asked for; hidden ones left out.
    pub nodes: Option<Vec<NodeView>>,
    /// The index of its last change.
    pub modified_index: u64,
    /// The index it was created at.
    pub created_index: u64,
}

/// What a write did, or what a read found: etcd's v2 event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub action: Action,
    /// The node after the change (for deletes: its key, indexes and kind only).
    pub node: NodeView,
    /// The node before the change, where there was one.
    pub prev_node: Option<NodeView>,
    /// The store's index after the event (`X-Etcd-Index`).
    pub etcd_index: u64,
    /// A TTL refresh: kept in the history, but not sent to watchers.
    pub refresh: bool,
}

impl Event {
    /// The event's index: the index its node was modified at.
    pub fn index(&self) -> u64 {
        self.node.modified_index
    }
}

/// The TTL part of a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    /// When the node expires, in milliseconds since the Unix epoch (`None`: never).
    pub at_ms: Option<u64>,
    /// Only the TTL changes: the value stays, and watchers are not told.
    pub refresh: bool,
}

/// A v2 write, as it is replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum V2Command {
    /// PUT without conditions: writes the key (or creates the directory) whatever was there.
    Set {
        /// The key's path.
        path: String,
        /// A directory instead of a key.
        dir: bool,
        /// The value (empty for a directory).
        value: String,
        /// Its TTL.
        expiry: Expiry,
    },
    /// PUT with `prevExist=false`, or POST (`unique`: a child named by the next index).
    Create {
        /// The path (for `unique`, the directory to create in).
        path: String,
        /// A directory instead of a key.
        dir: bool,
        /// The value.
        value: String,
        /// Name the new node after the index it is created at, under `path`.
        unique: bool,
        /// Its TTL.
        expiry: Expiry,
    },
    /// PUT with `prevExist=true` and no other condition.
    Update {
        /// The path.
        path: String,
        /// The new value (empty for a directory, whose TTL is all that changes).
        value: String,
        /// Its TTL.
        expiry: Expiry,
    },
    /// PUT with `prevValue` or `prevIndex`.
    CompareAndSwap {
        /// The path.
        path: String,
        /// The value it must have (empty: any).
        prev_value: String,
        /// The index it must have been modified at (0: any).
        prev_index: u64,
        /// The new value.
        value: String,
        /// Its TTL.
        expiry: Expiry,
    },
    /// DELETE without conditions.
    Delete {
        /// The path.
        path: String,
        /// Allow deleting an (empty) directory.
        dir: bool,
        /// Delete a directory with everything in it.
        recursive: bool,
    },
    /// DELETE with `prevValue` or `prevIndex`.
    CompareAndDelete {
        /// The path.
        path: String,
        /// The value it must have (empty: any).
        prev_value: String,
        /// The index it must have been modified at (0: any).
        prev_index: u64,
    },
    /// The leader's clock: every node that expires at or before `now_ms` (milliseconds since
    /// the Unix epoch) goes, as etcd's SYNC request does.
    Sync {
        /// The leader's time.
        now_ms: u64,
    },
}

const V2_SET: u8 = 1;
const V2_CREATE: u8 = 2;
const V2_UPDATE: u8 = 3;
const V2_CAS: u8 = 4;
const V2_DELETE: u8 = 5;
const V2_CAD: u8 = 6;
const V2_SYNC: u8 = 7;

impl V2Command {
    /// Writes the command: a tag, then its fields.
    pub(crate) fn write(&self, w: &mut Writer) {
        let s = |w: &mut Writer, v: &str| w.bytes(v.as_bytes());
        let ttl = |w: &mut Writer, e: &Expiry| {
            w.u64(e.at_ms.map_or(0, |t| t.max(1)));
            w.bool(e.refresh);
        };
        match self {
            V2Command::Set {
                path,
                dir,
                value,
                expiry,
            } => {
                w.u8(V2_SET);
                s(w, path);
                w.bool(*dir);
                s(w, value);
                ttl(w, expiry);
            }
            V2Command::Create {
                path,
                dir,
                value,
                unique,
                expiry,
            } => {
                w.u8(V2_CREATE);
                s(w, path);
                w.bool(*dir);
                s(w, value);
                w.bool(*unique);
                ttl(w, expiry);
            }
            V2Command::Update {
                path,
                value,
                expiry,
            } => {
                w.u8(V2_UPDATE);
                s(w, path);
                s(w, value);
                ttl(w, expiry);
            }
            V2Command::CompareAndSwap {
                path,
                prev_value,
                prev_index,
                value,
                expiry,
            } => {
                w.u8(V2_CAS);
                s(w, path);
                s(w, prev_value);
                w.u64(*prev_index);
                s(w, value);
                ttl(w, expiry);
            }
            V2Command::Delete {
                path,
                dir,
                recursive,
            } => {
                w.u8(V2_DELETE);
                s(w, path);
                w.bool(*dir);
                w.bool(*recursive);
            }
            V2Command::CompareAndDelete {
                path,
                prev_value,
                prev_index,
            } => {
                w.u8(V2_CAD);
                s(w, path);
                s(w, prev_value);
                w.u64(*prev_index);
            }
            V2Command::Sync { now_ms } => {
                w.u8(V2_SYNC);
                w.u64(*now_ms);
            }
        }
    }

    /// Reads a command [`write`](Self::write) wrote.
    pub(crate) fn read(r: &mut Reader) -> Result<V2Command, CodecError> {
        let s = |r: &mut Reader| {
            String::from_utf8(r.bytes()?.to_vec()).map_err(|_| CodecError::Malformed {
                why: "a v2 string is not UTF-8",
            })
        };
        let ttl = |r: &mut Reader| -> Result<Expiry, CodecError> {
            let at = r.u64()?;
            Ok(Expiry {
                at_ms: (at != 0).then_some(at),
                refresh: r.bool()?,
            })
        };
        Ok(match r.u8()? {
            V2_SET => V2Command::Set {
                path: s(r)?,
                dir: r.bool()?,
                value: s(r)?,
                expiry: ttl(r)?,
            },
            V2_CREATE => V2Command::Create {
                path: s(r)?,
                dir: r.bool()?,
                value: s(r)?,
                unique: r.bool()?,
                expiry: ttl(r)?,
            },
            V2_UPDATE => V2Command::Update {
                path: s(r)?,
                value: s(r)?,
                expiry: ttl(r)?,
            },
            V2_CAS => V2Command::CompareAndSwap {
                path: s(r)?,
                prev_value: s(r)?,
                prev_index: r.u64()?,
                value: s(r)?,
                expiry: ttl(r)?,
            },
            V2_DELETE => V2Command::Delete {
                path: s(r)?,
                dir: r.bool()?,
                recursive: r.bool()?,
            },
            V2_CAD => V2Command::CompareAndDelete {
                path: s(r)?,
                prev_value: s(r)?,
                prev_index: r.u64()?,
            },
            V2_SYNC => V2Command::Sync { now_ms: r.u64()? },
            _ => {
                return Err(CodecError::Malformed {
                    why: "unknown v2 command tag",
                });
            }
        })
    }

    /// The path the command names (`Sync` names none).
    pub fn path(&self) -> Option<&str> {
        match self {
            V2Command::Set { path, .. }
            | V2Command::Create { path, .. }
            | V2Command::Update { path, .. }
            | V2Command::CompareAndSwap { path, .. }
            | V2Command::Delete { path, .. }
            | V2Command::CompareAndDelete { path, .. } => Some(path),
            V2Command::Sync { .. } => None,
        }
    }

    /// Whether the command can add data (refused while NOSPACE is raised).
    pub fn grows(&self) -> bool {
        !matches!(
            self,
            V2Command::Delete { .. } | V2Command::CompareAndDelete { .. } | V2Command::Sync { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Body {
    Value(String),
    Dir(BTreeMap<String, Node>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    created: u64,
    modified: u64,
    expire_ms: Option<u64>,
    body: Body,
}

impl Node {
    fn dir(index: u64, expire_ms: Option<u64>) -> Node {
        Node {
            created: index,
            modified: index,
            expire_ms,
            body: Body::Dir(BTreeMap::new()),
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir(_))
    }

    fn children(&self) -> Option<&BTreeMap<String, Node>> {
        match &self.body {
            Body::Dir(c) => Some(c),
            Body::Value(_) => None,
        }
    }

    fn children_mut(&mut self) -> Option<&mut BTreeMap<String, Node>> {
        match &mut self.body {
            Body::Dir(c) => Some(c),
            Body::Value(_) => None,
        }
    }

    fn value(&self) -> &str {
        match &self.body {
            Body::Value(v) => v,
            Body::Dir(_) => "",
        }
    }

    /// Its view; a directory's children down to `depth` levels (0: none listed).
    fn view(&self, path: &str, depth: usize) -> NodeView {
        let nodes = match (&self.body, depth) {
            (Body::Dir(children), d) if d > 0 => Some(
                children
                    .iter()
                    .filter(|(name, _)| !name.starts_with('_'))
                    .map(|(name, child)| child.view(&join(path, name), d - 1))
                    .collect(),
            ),
            _ => None,
        };
        NodeView {
            key: if path == "/" {
                String::new()
            } else {
                path.to_string()
            },
            value: match &self.body {
                Body::Value(v) => Some(v.clone()),
                Body::Dir(_) => None,
            },
            dir: self.is_dir(),
            expiration_ms: self.expire_ms,
            nodes,
            modified_index: self.modified,
            created_index: self.created,
        }
    }

    /// A stored node's own fields (not its children).
    fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u8(u8::from(self.is_dir()));
        b.put_u64(self.created);
        b.put_u64(self.modified);
        b.put_u64(self.expire_ms.map_or(0, |t| t.max(1)));
        b.put_slice(self.value().as_bytes());
        b.freeze()
    }

    fn decode(buf: &[u8]) -> Result<Node, String> {
        if buf.len() < 25 {
            return Err(format!("a v2 node of {} bytes", buf.len()));
        }
        let n = |i: usize| u64::from_be_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
        let (created, modified, expire) = (n(1), n(9), n(17));
        let rest = &buf[25..];
        let body = match buf[0] {
            0 => Body::Value(
                String::from_utf8(rest.to_vec()).map_err(|_| "a v2 value is not UTF-8")?,
            ),
            1 if rest.is_empty() => Body::Dir(BTreeMap::new()),
            k => {
                return Err(format!(
                    "a v2 node of kind {k} ({} value bytes)",
                    rest.len()
                ));
            }
        };
        Ok(Node {
            created,
            modified,
            expire_ms: (expire != 0).then_some(expire),
            body,
        })
    }
}

/// The longest key path a write may name, in bytes, and the deepest, in directories: each
/// level costs a node and a stored record, and the tree's walks recurse once per level.
pub const PATH_BYTES_MAX: usize = 4096;
/// See [`PATH_BYTES_MAX`].
pub const PATH_DEPTH_MAX: usize = 128;
/// The cause of the error a path past those limits gets.
pub const PATH_TOO_LONG: &str = "key path longer than 4096 bytes or deeper than 128 levels";

/// `path` cleaned as etcd cleans it: rooted, no empty, `.` or `..` segments, no trailing slash.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The path's segments (none for the root).
fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The v2 tree with its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V2Store {
    root: Node,
    index: u64,
    /// Nodes with a TTL, by expiry time.
    ttls: BTreeSet<(u64, String)>,
    /// Nodes changed since [`V2Store::take_changes`]: their new record, or `None` if gone.
    changed: BTreeMap<String, Option<Bytes>>,
    /// Nodes expired since this member started (a statistic: not stored).
    expired: u64,
    /// The v2 auth state, which counts in the same index.
    auth: V2Auth,
}

impl Default for V2Store {
    fn default() -> Self {
        V2Store::new()
    }
}

impl V2Store {
    /// An empty tree at index 0.
    pub fn new() -> V2Store {
        V2Store {
            root: Node::dir(0, None),
            index: 0,
            ttls: BTreeSet::new(),
            changed: BTreeMap::new(),
            expired: 0,
            auth: V2Auth::default(),
        }
    }

    /// The tree stored as `records` (path → a node's own record, from
    /// [`V2Store::take_changes`]) at `index`.
    pub fn recover(index: u64, records: Vec<(String, Bytes)>) -> Result<V2Store, String> {
        let mut s = V2Store::new();
        s.index = index;
        let mut nodes: Vec<(String, Node)> = Vec::with_capacity(records.len());
        for (path, rec) in records {
            if path.starts_with(auth::RECORD_PREFIX) {
                s.auth.recover(&path, &rec)?;
                continue;
            }
            let node = Node::decode(&rec).map_err(|e| format!("{path}: {e}"))?;
            if clean(&path) != path || path == "/" {
                return Err(format!("a v2 node stored at {path:?}"));
            }
            nodes.push((path, node));
        }
        // Parents before children: fewer segments first.
        nodes.sort_by(|a, b| {
            segments(&a.0)
                .len()
                .cmp(&segments(&b.0).len())
                .then(a.0.cmp(&b.0))
        });
        for (path, node) in nodes {
            let (parent, name) = path.rsplit_once('/').expect("rooted");
            let parent = if parent.is_empty() { "/" } else { parent };
            if let Some(t) = node.expire_ms {
                s.ttls.insert((t, path.clone()));
            }
            let dir = s
                .node_mut(parent)
                .and_then(Node::children_mut)
                .ok_or_else(|| format!("v2 node {path} has no parent directory"))?;
            dir.insert(name.to_string(), node);
        }
        Ok(s)
    }

    /// The index of the last change.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Counts a change the tree does not hold (etcd counts its membership records in the same
    /// index), so indexes run as etcd's do.
    pub fn bump_index(&mut self) {
        self.index += 1;
    }

    /// Nodes expired since this member started.
    pub fn expired_count(&self) -> u64 {
        self.expired
    }

    /// Whether any node has a TTL.
    pub fn has_ttls(&self) -> bool {
        !self.ttls.is_empty()
    }

    /// The earliest expiry, in milliseconds since the Unix epoch.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.ttls.first().map(|(t, _)| *t)
    }

    /// The number of keys and directories (the root not counted).
    pub fn len(&self) -> usize {
        fn count(n: &Node) -> usize {
            n.children()
                .map_or(0, |c| c.values().map(|n| 1 + count(n)).sum())
        }
        count(&self.root)
    }

    /// Whether the tree holds nothing but the root.
    pub fn is_empty(&self) -> bool {
        self.root.children().is_none_or(BTreeMap::is_empty)
    }

    /// The nodes changed since the last call, in path order: each one's record to store, or
    /// `None` to remove it.
    pub fn take_changes(&mut self) -> Vec<(String, Option<Bytes>)> {
        let mut all: Vec<_> = std::mem::take(&mut self.changed).into_iter().collect();
        all.extend(self.auth.take_changes());
        all
    }

    /// The v2 auth state.
    pub fn auth(&self) -> &V2Auth {
        &self.auth
    }

    /// Applies a change to the v2 auth state; each record it stores takes an index.
    pub fn apply_auth(&mut self, cmd: &AuthCommand) -> Result<AuthReply, V2AuthError> {
        self.auth.apply(cmd, &mut self.index)
    }

    fn node(&self, path: &str) -> Option<&Node> {
        let mut n = &self.root;
        for seg in segments(path) {
            n = n.children()?.get(seg)?;
        }
        Some(n)
    }

    fn node_mut(&mut self, path: &str) -> Option<&mut Node> {
        let mut n = &mut self.root;
        for seg in segments(path) {
            n = n.children_mut()?.get_mut(seg)?;
        }
        Some(n)
    }

    fn mark(&mut self, path: &str) {
        let rec = self.node(path).map(Node::encode);
        self.changed.insert(path.to_string(), rec);
    }

    /// The node at `path`, or etcd's error for the walk there: 104 at the first file on the
    /// way, 100 at the first missing name.
    fn lookup(&self, path: &str) -> Result<&Node, V2Error> {
        let mut n = &self.root;
        let mut at = String::from("/");
        for seg in segments(path) {
            let Some(children) = n.children() else {
                return Err(V2Error::new(error::NOT_DIR, at, self.index));
            };
            at = join(&at, seg);
            n = children
                .get(seg)
                .ok_or_else(|| V2Error::new(error::KEY_NOT_FOUND, at.clone(), self.index))?;
        }
        Ok(n)
    }

    /// Reads `path`: a key, or a directory listed one level deep (every level with
    /// `recursive`), hidden children left out.
    pub fn get(&self, path: &str, recursive: bool) -> Result<Event, V2Error> {
        let path = clean(path);
        let n = self.lookup(&path)?;
        let depth = if !n.is_dir() {
            0
        } else if recursive {
            usize::MAX
        } else {
            1
        };
        Ok(Event {
            action: Action::Get,
            node: n.view(&path, depth),
            prev_node: None,
            etcd_index: self.index,
            refresh: false,
        })
    }

    /// Applies a write; on success the event (which the caller hands to the watch hub), with
    /// the paths it removed (watchers there are told even when not recursive).
    pub fn apply(&mut self, cmd: &V2Command) -> Result<Vec<(Event, Vec<String>)>, V2Error> {
        if let Some(path) = cmd.path()
            && (path.len() > PATH_BYTES_MAX || segments(path).len() > PATH_DEPTH_MAX)
        {
            return Err(V2Error::new(
                error::INVALID_FIELD,
                PATH_TOO_LONG,
                self.index,
            ));
        }
        let mut removed = Vec::new();
        let events = match cmd {
            V2Command::Set {
                path,
                dir,
                value,
                expiry,
            } => vec![self.set(path, *dir, value, *expiry)?],
            V2Command::Create {
                path,
                dir,
                value,
                unique,
                expiry,
            } => {
                let mut path = clean(path);
                if *unique {
                    path = join(&path, &format!("{:020}", self.index + 1));
                }
                vec![self.create(&path, *dir, value, false, *expiry, Action::Create)?]
            }
            V2Command::Update {
                path,
                value,
                expiry,
            } => vec![self.update(path, value, *expiry)?],
            V2Command::CompareAndSwap {
                path,
                prev_value,
                prev_index,
                value,
                expiry,
            } => vec![self.compare_and_swap(path, prev_value, *prev_index, value, *expiry)?],
            V2Command::Delete {
                path,
                dir,
                recursive,
            } => vec![self.delete(path, *dir, *recursive, &mut removed)?],
            V2Command::CompareAndDelete {
                path,
                prev_value,
                prev_index,
            } => vec![self.compare_and_delete(path, prev_value, *prev_index, &mut removed)?],
            V2Command::Sync { now_ms } => return Ok(self.expire(*now_ms)),
        };
        Ok(events.into_iter().map(|e| (e, removed.clone())).collect())
    }

    fn read_only(&self, path: &str) -> Result<(), V2Error> {
        if path == "/" {
            return Err(V2Error::new(error::ROOT_READ_ONLY, "/", self.index));
        }
        Ok(())
    }

    fn set(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        expiry: Expiry,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        let existing = match self.lookup(&path) {
            Ok(n) => Ok(n.view(&path, 0)),
            Err(e) if e.code == error::KEY_NOT_FOUND => Err(e),
            Err(e) => return Err(e),
        };
        let value = match (existing, expiry.refresh) {
            // A refresh needs the key.
            (Err(missing), true) => return Err(missing),
            (Ok(prev), true) => prev.value.unwrap_or_default(),
            _ => value.to_string(),
        };
        let mut e = self.create(&path, dir, &value, true, expiry, Action::Set)?;
        e.refresh = expiry.refresh;
        Ok(e)
    }

    /// etcd's internal create: makes the missing directories on the way, then the node
    /// (replacing a key when `replace`).
    fn create(
        &mut self,
        path: &str,
        dir: bool,
        value: &str,
        replace: bool,
        expiry: Expiry,
        action: Action,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        self.read_only(&path)?;
        let next = self.index + 1;
        let (parent, name) = path.rsplit_once('/').expect("rooted");
        let parent = if parent.is_empty() { "/" } else { parent };
        // The walk makes missing directories, as etcd's does, and stops at a file.
        let mut at = String::from("/");
        for seg in segments(parent) {
            let child = join(&at, seg);
            let n = self.node(&at).expect("walked");
            match n.children().expect("a directory").get(seg) {
                Some(c) if c.is_dir() => {}
                Some(_) => return Err(V2Error::new(error::NOT_DIR, child, self.index)),
                None => {
                    let d = self
                        .node_mut(&at)
                        .and_then(Node::children_mut)
                        .expect("dir");
                    d.insert(seg.to_string(), Node::dir(next, None));
                    self.mark(&child);
                }
            }
            at = child;
        }
        let mut prev_node = None;
        if let Some(n) = self.node(&path) {
            if !replace {
                return Err(V2Error::new(error::NODE_EXIST, path, self.index));
            }
            if n.is_dir() {
                return Err(V2Error::new(error::NOT_FILE, path, self.index));
            }
            prev_node = Some(n.view(&path, 0));
            if let Some(t) = n.expire_ms {
                self.ttls.remove(&(t, path.clone()));
            }
        }
        let node = if dir {
            Node::dir(next, expiry.at_ms)
        } else {
            Node {
                created: next,
                modified: next,
                expire_ms: expiry.at_ms,
                body: Body::Value(value.to_string()),
            }
        };
        if let Some(t) = node.expire_ms {
            self.ttls.insert((t, path.clone()));
        }
        let view = node.view(&path, 0);
        let d = self
            .node_mut(parent)
            .and_then(Node::children_mut)
            .expect("dir");
        d.insert(name.to_string(), node);
        self.mark(&path);
        self.index = next;
        Ok(Event {
            action,
            node: view,
            prev_node,
            etcd_index: next,
            refresh: false,
        })
    }

    fn set_ttl(&mut self, path: &str, at_ms: Option<u64>) {
        let n = self.node_mut(path).expect("present");
        let old = std::mem::replace(&mut n.expire_ms, at_ms);
        if let Some(t) = old {
            self.ttls.remove(&(t, path.to_string()));
        }
        if let Some(t) = at_ms {
            self.ttls.insert((t, path.to_string()));
        }
    }

    fn update(&mut self, path: &str, value: &str, expiry: Expiry) -> Result<Event, V2Error> {
        let path = clean(path);
        self.read_only(&path)?;
        let n = self.lookup(&path)?;
        if n.is_dir() && !value.is_empty() {
            return Err(V2Error::new(error::NOT_FILE, path, self.index));
        }
        let prev = n.view(&path, 0);
        let value = if expiry.refresh {
            n.value().to_string()
        } else {
            value.to_string()
        };
        self.rewrite(&path, &value, expiry, Action::Update, prev)
    }

    /// Writes `value` (for a key) and the TTL at the next index.
    fn rewrite(
        &mut self,
        path: &str,
        value: &str,
        expiry: Expiry,
        action: Action,
        prev: NodeView,
    ) -> Result<Event, V2Error> {
        let next = self.index + 1;
        let n = self.node_mut(path).expect("present");
        // A directory keeps its modified index (etcd's write fails on it before the index
        // is set, and only the TTL changes); the event still carries the new index.
        if let Body::Value(v) = &mut n.body {
            *v = value.to_string();
            n.modified = next;
        }
        self.set_ttl(path, expiry.at_ms);
        self.mark(path);
        self.index = next;
        let mut node = self.node(path).expect("present").view(path, 0);
        node.modified_index = next;
        Ok(Event {
            action,
            node,
            prev_node: Some(prev),
            etcd_index: next,
            refresh: expiry.refresh,
        })
    }

    /// The file at `path` if it matches `prev_value` and `prev_index` (empty and 0 match
    /// anything), or etcd's error.
    fn compare(&self, path: &str, prev_value: &str, prev_index: u64) -> Result<NodeView, V2Error> {
        let n = self.lookup(path)?;
        if n.is_dir() {
            // etcd names the root by its internal path, which its answer trims to nothing.
            let cause = if path == "/" { "" } else { path };
            return Err(V2Error::new(error::NOT_FILE, cause, self.index));
        }
        let index_ok = prev_index == 0 || n.modified == prev_index;
        let value_ok = prev_value.is_empty() || n.value() == prev_value;
        let cause = match (value_ok, index_ok) {
            (true, true) => return Ok(n.view(path, 0)),
            (false, true) => format!("[{prev_value} != {}]", n.value()),
            (true, false) => format!("[{prev_index} != {}]", n.modified),
            (false, false) => format!(
                "[{prev_value} != {}] [{prev_index} != {}]",
                n.value(),
                n.modified
            ),
        };
        Err(V2Error::new(error::TEST_FAILED, cause, self.index))
    }

    fn compare_and_swap(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
        value: &str,
        expiry: Expiry,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        self.read_only(&path)?;
        let prev = self.compare(&path, prev_value, prev_index)?;
        let value = if expiry.refresh {
            prev.value.clone().unwrap_or_default()
        } else {
            value.to_string()
        };
        self.rewrite(&path, &value, expiry, Action::CompareAndSwap, prev)
    }

    /// Removes `path` and everything under it, recording each removed path (deepest first,
    /// the node itself last).
    fn remove(&mut self, path: &str, removed: &mut Vec<String>) {
        let (parent, name) = path.rsplit_once('/').expect("rooted");
        let parent = if parent.is_empty() { "/" } else { parent };
        let node = self
            .node_mut(parent)
            .and_then(Node::children_mut)
            .and_then(|c| c.remove(name))
            .expect("present");
        fn walk(s: &mut V2Store, path: &str, n: &Node, removed: &mut Vec<String>) {
            if let Some(children) = n.children() {
                for (name, c) in children {
                    walk(s, &join(path, name), c, removed);
                }
            }
            if let Some(t) = n.expire_ms {
                s.ttls.remove(&(t, path.to_string()));
            }
            s.changed.insert(path.to_string(), None);
            removed.push(path.to_string());
        }
        walk(self, path, &node, removed);
    }

    fn delete(
        &mut self,
        path: &str,
        dir: bool,
        recursive: bool,
        removed: &mut Vec<String>,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        self.read_only(&path)?;
        let dir = dir || recursive;
        let n = self.lookup(&path)?;
        if n.is_dir() {
            if !dir {
                return Err(V2Error::new(error::NOT_FILE, path, self.index));
            }
            if !recursive && n.children().is_some_and(|c| !c.is_empty()) {
                return Err(V2Error::new(error::DIR_NOT_EMPTY, path, self.index));
            }
        }
        let prev = n.view(&path, 0);
        let next = self.index + 1;
        self.remove(&path, removed);
        self.index = next;
        Ok(self.removal(Action::Delete, &path, prev, next))
    }

    fn removal(&self, action: Action, path: &str, prev: NodeView, index: u64) -> Event {
        Event {
            action,
            node: NodeView {
                key: path.to_string(),
                value: None,
                dir: prev.dir,
                expiration_ms: None,
                nodes: None,
                modified_index: index,
                created_index: prev.created_index,
            },
            prev_node: Some(prev),
            etcd_index: index,
            refresh: false,
        }
    }

    fn compare_and_delete(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
        removed: &mut Vec<String>,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        let prev = self.compare(&path, prev_value, prev_index)?;
        let next = self.index + 1;
        self.remove(&path, removed);
        self.index = next;
        Ok(self.removal(Action::CompareAndDelete, &path, prev, next))
    }

    /// Removes every node expired at `now_ms`, earliest first, one index each.
    /// Each expiry with the paths it removed (its watchers, and only they, are told).
    fn expire(&mut self, now_ms: u64) -> Vec<(Event, Vec<String>)> {
        let mut events = Vec::new();
        while let Some((t, path)) = self.ttls.first().cloned() {
            if t > now_ms {
                break;
            }
            let prev = self.node(&path).expect("a TTL names a node").view(&path, 0);
            let next = self.index + 1;
            let mut removed = Vec::new();
            self.remove(&path, &mut removed);
            self.index = next;
            self.expired += 1;
            events.push((self.removal(Action::Expire, &path, prev, next), removed));
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(path: &str, value: &str) -> V2Command {
        V2Command::Set {
            path: path.into(),
            dir: false,
            value: value.into(),
            expiry: Expiry::default(),
        }
    }

    fn one(s: &mut V2Store, cmd: V2Command) -> Result<Event, V2Error> {
        s.apply(&cmd).map(|mut e| e.remove(0).0)
    }

    #[test]
    fn set_get_replace_and_dirs_on_the_way() {
        let mut s = V2Store::new();
        let e = one(&mut s, set("/a/b/c", "1")).unwrap();
        assert_eq!(
            (e.action, e.node.created_index, e.etcd_index),
            (Action::Set, 1, 1)
        );
        assert_eq!(e.prev_node, None);
        let e = one(&mut s, set("a/b//c/", "2")).unwrap();
        assert_eq!(e.prev_node.unwrap().value.as_deref(), Some("1"));
        assert_eq!((e.node.key.as_str(), e.node.created_index), ("/a/b/c", 2));
        let dir = s.get("/a", false).unwrap().node;
        assert!(dir.dir);
        let kids = dir.nodes.unwrap();
        assert_eq!(kids.len(), 1);
        assert_eq!(
            (kids[0].key.as_str(), kids[0].nodes.is_none()),
            ("/a/b", true)
        );
        let all = s.get("/", true).unwrap().node;
        assert_eq!(all.key, "");
        assert_eq!(
            all.nodes.unwrap()[0].nodes.as_ref().unwrap()[0]
                .nodes
                .as_ref()
                .unwrap()[0]
                .value
                .as_deref(),
            Some("2")
        );
        let err = one(&mut s, set("/a/b/c/d", "x")).unwrap_err();
        assert_eq!(
            (err.code, err.cause.as_str(), err.index),
            (104, "/a/b/c", 2)
        );
        let err = one(&mut s, set("/a", "x")).unwrap_err();
        assert_eq!(err.code, 102);
        let err = s.get("/a/zz/q", false).unwrap_err();
        assert_eq!((err.code, err.cause.as_str()), (100, "/a/zz"));
        assert_eq!(one(&mut s, set("/", "x")).unwrap_err().code, 107);
    }

    #[test]
    fn compare_and_swap_and_delete_give_etcds_causes() {
        let mut s = V2Store::new();
        one(&mut s, set("/k", "v")).unwrap();
        let cas = |pv: &str, pi| V2Command::CompareAndSwap {
            path: "/k".into(),
            prev_value: pv.into(),
            prev_index: pi,
            value: "w".into(),
            expiry: Expiry::default(),
        };
        let err = one(&mut s, cas("x", 0)).unwrap_err();
        assert_eq!((err.code, err.cause.as_str()), (101, "[x != v]"));
        let err = one(&mut s, cas("", 9)).unwrap_err();
        assert_eq!(err.cause, "[9 != 1]");
        let err = one(&mut s, cas("x", 9)).unwrap_err();
        assert_eq!(err.cause, "[x != v] [9 != 1]");
        let e = one(&mut s, cas("v", 1)).unwrap();
        assert_eq!(
            (e.action, e.node.modified_index, e.node.created_index),
            (Action::CompareAndSwap, 2, 1)
        );
        let cad = V2Command::CompareAndDelete {
            path: "/k".into(),
            prev_value: "v".into(),
            prev_index: 0,
        };
        assert_eq!(one(&mut s, cad).unwrap_err().code, 101);
        let cad = V2Command::CompareAndDelete {
            path: "/k".into(),
            prev_value: "w".into(),
            prev_index: 2,
        };
        let e = one(&mut s, cad).unwrap();
        assert_eq!(
            (e.action, e.node.modified_index, e.etcd_index),
            (Action::CompareAndDelete, 3, 3)
        );
        assert!(s.is_empty());
    }

    #[test]
    fn deletes_of_directories_follow_dir_and_recursive() {
        let mut s = V2Store::new();
        one(&mut s, set("/d/x", "1")).unwrap();
        let del = |dir, recursive| V2Command::Delete {
            path: "/d".into(),
            dir,
            recursive,
        };
        assert_eq!(one(&mut s, del(false, false)).unwrap_err().code, 102);
        assert_eq!(one(&mut s, del(true, false)).unwrap_err().code, 108);
        let events = s.apply(&del(false, true)).unwrap();
        assert_eq!(events[0].1, vec!["/d/x".to_string(), "/d".to_string()]);
        let e = &events[0].0;
        assert!(e.node.dir && e.prev_node.as_ref().unwrap().dir);
        assert_eq!(s.index(), 2);
        assert_eq!(
            s.take_changes(),
            vec![("/d".to_string(), None), ("/d/x".to_string(), None)]
        );
    }

    #[test]
    fn unique_keys_are_named_by_their_index_and_hidden_ones_not_listed() {
        let mut s = V2Store::new();
        one(&mut s, set("/q/_hidden", "h")).unwrap();
        let post = V2Command::Create {
            path: "/q".into(),
            dir: false,
            value: "job".into(),
            unique: true,
            expiry: Expiry::default(),
        };
        let e = one(&mut s, post).unwrap();
        assert_eq!(e.node.key, "/q/00000000000000000002");
        let kids = s.get("/q", false).unwrap().node.nodes.unwrap();
        assert_eq!(kids.len(), 1);
        assert_eq!(
            s.get("/q/_hidden", false).unwrap().node.value.as_deref(),
            Some("h")
        );
        let create = V2Command::Create {
            path: "/q/_hidden".into(),
            dir: false,
            value: "x".into(),
            unique: false,
            expiry: Expiry::default(),
        };
        let err = one(&mut s, create).unwrap_err();
        assert_eq!((err.code, err.index), (105, 2));
    }

    #[test]
    fn ttls_expire_in_order_refresh_keeps_the_value_and_update_can_clear_them() {
        let mut s = V2Store::new();
        let ttl = |at| Expiry {
            at_ms: Some(at),
            refresh: false,
        };
        one(
            &mut s,
            V2Command::Set {
                path: "/t1".into(),
                dir: false,
                value: "a".into(),
                expiry: ttl(2000),
            },
        )
        .unwrap();
        one(
            &mut s,
            V2Command::Set {
                path: "/dir".into(),
                dir: true,
                value: String::new(),
                expiry: ttl(1000),
            },
        )
        .unwrap();
        one(&mut s, set("/dir/in", "x")).unwrap();
        let refresh = V2Command::Set {
            path: "/t1".into(),
            dir: false,
            value: String::new(),
            expiry: Expiry {
                at_ms: Some(3000),
                refresh: true,
            },
        };
        let e = one(&mut s, refresh).unwrap();
        assert!(e.refresh);
        assert_eq!(e.node.value.as_deref(), Some("a"));
        assert_eq!(s.next_expiry_ms(), Some(1000));
        let events = s.apply(&V2Command::Sync { now_ms: 2500 }).unwrap();
        assert_eq!(events.len(), 1);
        let (e, removed) = &events[0];
        assert_eq!((e.action, e.node.key.as_str()), (Action::Expire, "/dir"));
        assert_eq!(*removed, vec!["/dir/in".to_string(), "/dir".to_string()]);
        let upd = V2Command::Update {
            path: "/t1".into(),
            value: "b".into(),
            expiry: Expiry::default(),
        };
        let e = one(&mut s, upd).unwrap();
        assert_eq!((e.action, e.node.expiration_ms), (Action::Update, None));
        assert!(!s.has_ttls());
        let missing = V2Command::Set {
            path: "/nope".into(),
            dir: false,
            value: String::new(),
            expiry: Expiry {
                at_ms: Some(1),
                refresh: true,
            },
        };
        assert_eq!(one(&mut s, missing).unwrap_err().code, 100);
    }

    #[test]
    fn paths_past_the_limits_are_refused_before_anything_changes() {
        let mut s = V2Store::new();
        let deep = "/d".repeat(PATH_DEPTH_MAX + 1);
        let err = one(&mut s, set(&deep, "v")).unwrap_err();
        assert_eq!(
            (err.code, err.cause.as_str()),
            (error::INVALID_FIELD, PATH_TOO_LONG)
        );
        let long = format!("/{}", "k".repeat(PATH_BYTES_MAX));
        assert_eq!(
            one(&mut s, set(&long, "v")).unwrap_err().code,
            error::INVALID_FIELD
        );
        assert!(s.is_empty() && s.index() == 0 && s.take_changes().is_empty());
        one(&mut s, set(&"/d".repeat(PATH_DEPTH_MAX), "v")).unwrap();
    }

    #[test]
    fn each_expiry_names_only_the_paths_it_removed() {
        let mut s = V2Store::new();
        let ttl = Expiry {
            at_ms: Some(10),
            refresh: false,
        };
        for path in ["/a", "/b/x"] {
            let cmd = V2Command::Set {
                path: path.into(),
                dir: false,
                value: "v".into(),
                expiry: ttl,
            };
            one(&mut s, cmd).unwrap();
        }
        let events = s.apply(&V2Command::Sync { now_ms: 10 }).unwrap();
        let named: Vec<_> = events
            .iter()
            .map(|(e, removed)| (e.node.key.clone(), removed.clone()))
            .collect();
        assert_eq!(
            named,
            vec![
                ("/a".to_string(), vec!["/a".to_string()]),
                ("/b/x".to_string(), vec!["/b/x".to_string()])
            ]
        );
    }

    #[test]
    fn recovery_from_the_changes_rebuilds_the_same_tree() {
        let mut s = V2Store::new();
        let mut stored: BTreeMap<String, Bytes> = BTreeMap::new();
        let cmds = vec![
            set("/a/b", "1"),
            V2Command::Set {
                path: "/a/t".into(),
                dir: false,
                value: "x".into(),
                expiry: Expiry {
                    at_ms: Some(50),
                    refresh: false,
                },
            },
            set("/c", "2"),
            V2Command::Delete {
                path: "/c".into(),
                dir: false,
                recursive: false,
            },
            V2Command::Set {
                path: "/e".into(),
                dir: true,
                value: String::new(),
                expiry: Expiry::default(),
            },
        ];
        for c in cmds {
            s.apply(&c).unwrap();
            for (p, r) in s.take_changes() {
                match r {
                    Some(r) => stored.insert(p, r),
                    None => stored.remove(&p),
                };
            }
        }
        let back = V2Store::recover(s.index(), stored.into_iter().collect()).unwrap();
        assert_eq!(back, s);
        assert!(V2Store::recover(1, vec![("/x/y".into(), Node::dir(1, None).encode())]).is_err());
    }
}
