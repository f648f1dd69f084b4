//! Watchers: etcd's watch streams as a pure state machine.
//!
//! It owns one member's watch streams, their watchers, which of those are synced (handed every
//! event up to the store's current revision, so each write goes straight to them) and which
//! catch up from history, and each stream's bounded outbox of responses. It does not store
//! events (the store does, and lends them through [`History`]), write or compact anything,
//! read a clock (time arrives as `now_ms`) or send anything (the driver drains
//! [`Watchers::poll_response`] into the client's gRPC stream).
//!
//! # Guarantees, per watcher
//! - Events arrive in revision order, each once, none skipped from the start revision on,
//!   until the watcher is canceled (by the client, or with `compact_revision` set when the
//!   history it still needs was compacted away).
//! - A revision's events travel in one response, unless the watcher asked for `fragment`
//!   and they exceed `response_bytes_max`: then they travel in consecutive pieces, all but
//!   the last marked `fragment`. A catch-up response may hold several whole revisions.
//! - Header revision rule: once a response with header revision R that is neither `created`
//!   nor `canceled` has been delivered for a watcher (or for the stream, watch id -1), that
//!   watcher has been delivered every matching event up to R. Progress responses rest on it.
//!   (`created` carries the revision at creation, as etcd's does, before any catch-up.)
//! - Writers never wait: [`Watchers::notify`] does work in proportion to the watchers the
//!   write matches and never reads history. A watcher whose stream is full leaves the synced
//!   set; [`Watchers::sync`] later reads what it missed from history, in bounded batches, once
//!   its client drained room. A slow client slows only itself.

mod config;
mod index;
mod message;
mod stream;
#[cfg(test)]
mod tests;
mod watcher;

use super::error::{Error, Result};
use super::history::History;
use super::kv::Event;
use bytes::Bytes;
use index::SyncedIndex;
use std::collections::{BTreeMap, BTreeSet};
use stream::Stream;
use watcher::Watcher;

pub use config::WatchConfig;
pub use message::{AUTO_WATCH_ID, INVALID_WATCH_ID, WatchCreate, WatchFilters, WatchResponse};

/// Above this many watchers the invariant check looks only at totals: the full check is
/// linear, and fan-out tests with thousands of watchers would turn quadratic.
const INVARIANT_WATCHERS_MAX: usize = 512;

/// One client's watch stream, from [`Watchers::open_stream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u64);

/// A watcher's identity across streams; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct WatcherRef(u64);

/// All watch streams of one member.
///
/// # Call order
/// 1. [`Watchers::new`]; [`Watchers::open_stream`] for each client watch stream.
/// 2. A client's requests: [`Watchers::create`], [`Watchers::cancel`],
///    [`Watchers::progress_request`]. On [`Error::WatchStreamFull`], drain that stream before
///    reading more of its client's requests.
/// 3. After the store applies each write revision, and before any other call:
///    [`Watchers::notify`] with that revision's events. (Revisions the store held before
///    the first call need no notify.)
/// 4. While [`Watchers::needs_sync`]: [`Watchers::sync`]; each call does bounded work, so
///    interleave it with writes.
/// 5. When [`Watchers::poll_timeout`] passes: [`Watchers::tick`].
/// 6. For each of [`Watchers::ready_streams`]: [`Watchers::poll_response`] until `None`,
///    sending each response in order. Draining frees room, which may make `needs_sync` true.
/// 7. [`Watchers::close_stream`] when the client's stream ends.
#[derive(Debug)]
pub struct Watchers {
    config: WatchConfig,
    streams: BTreeMap<StreamId, Stream>,
    watchers: BTreeMap<WatcherRef, Watcher>,
    synced: SyncedIndex,
    /// Unsynced watchers by the next revision each needs, so `sync` reads from the lowest.
    unsynced: BTreeSet<(i64, WatcherRef)>,
    /// Streams with responses to poll.
    ready: BTreeSet<StreamId>,
    /// Watchers with `progress_notify`: while there are any, ticks are wanted.
    progress_watchers: usize,
    /// Watchers with `prev_kv`: while there are none, writes need not find previous values.
    prev_kv_watchers: usize,
    progress_deadline_ms: u64,
    now_ms: u64,
    /// The store's revision as of the last call; `None` before the first.
    revision: Option<i64>,
    next_stream: u64,
    next_watcher: u64,
}

impl Watchers {
    /// Watchers with no streams, under `config` (refused if out of bounds), at time `now_ms`.
    pub fn new(config: WatchConfig, now_ms: u64) -> Result<Watchers> {
        config.validate()?;
        let progress_deadline_ms = now_ms.saturating_add(config.progress_interval_ms);
        Ok(Watchers {
            config,
            streams: BTreeMap::new(),
            watchers: BTreeMap::new(),
            synced: SyncedIndex::default(),
            unsynced: BTreeSet::new(),
            ready: BTreeSet::new(),
            progress_watchers: 0,
            prev_kv_watchers: 0,
            progress_deadline_ms,
            now_ms,
            revision: None,
            next_stream: 0,
            next_watcher: 0,
        })
    }

    /// The limits the watchers run under.
    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// Opens a new client stream with no watchers and returns its ID.
    pub fn open_stream(&mut self) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        let fresh = self.streams.insert(id, Stream::default()).is_none();
        assert!(fresh, "stream ids are never reused");
        id
    }

    /// Drops the stream, its watchers and its undelivered responses. Closing a stream that is
    /// not open does nothing.
    pub fn close_stream(&mut self, stream_id: StreamId) {
        let Some(stream) = self.streams.get(&stream_id) else {
            return;
        };
        let refs: Vec<WatcherRef> = stream.watch_ids.values().copied().collect();
        for w in refs {
            self.remove_watcher(w);
        }
        self.streams.remove(&stream_id);
        self.ready.remove(&stream_id);
        self.debug_assert_invariants();
    }

    /// Creates a watcher; answers on the stream with `created` (header: the current revision),
    /// followed at once by a compaction cancel when the start revision is compacted.
    ///
    /// Returns the watch id, or the refusal: [`Error::WatchStreamFull`] changed nothing and
    /// sent nothing; any other refusal was answered with a failed create (`created` and
    /// `canceled`, watch id -1, the error's text as `cancel_reason`).
    pub fn create<H: History>(
        &mut self,
        stream_id: StreamId,
        request: WatchCreate,
        history: &H,
    ) -> Result<i64> {
        let current = self.observe(history);
        let compact = history.compact_revision();
        assert!(
            compact <= current,
            "compacted {compact} beyond current {current}"
        );
        let config = &self.config;
        let stream = self.streams.get_mut(&stream_id);
        let stream = stream.unwrap_or_else(|| panic!("create on {stream_id:?}, not open"));
        if !stream.control_room(config.control_responses_max) {
            let control_responses_max = config.control_responses_max;
            return Err(Error::WatchStreamFull {
                control_responses_max,
            });
        }
        // etcd watches "\0", the smallest key, for an empty key.
        let key = if request.key.is_empty() {
            Bytes::from_static(b"\0")
        } else {
            request.key.clone()
        };
        let refusal = Self::refusal(config, stream, &key, &request);
        self.ready.insert(stream_id);
        if let Some(error) = refusal {
            stream.push_control(WatchResponse {
                header_revision: current,
                watch_id: INVALID_WATCH_ID,
                created: true,
                canceled: true,
                cancel_reason: error.to_string(),
                ..WatchResponse::default()
            });
            self.debug_assert_invariants();
            return Err(error);
        }
        let watch_id = if request.watch_id == AUTO_WATCH_ID {
            while stream.watch_ids.contains_key(&stream.next_auto_id) {
                stream.next_auto_id += 1;
            }
            stream.next_auto_id += 1;
            stream.next_auto_id - 1
        } else {
            request.watch_id
        };
        stream.push_control(WatchResponse {
            header_revision: current,
            watch_id,
            created: true,
            ..WatchResponse::default()
        });
        let start = request.start_revision;
        if start != 0 && start < compact {
            // etcd finds this on its next sync; answering at once is the same to the client,
            // and such a watcher never has to exist. etcd's answer has no revision in its
            // header (the compacted watcher's response carries none).
            stream.push_control(WatchResponse {
                header_revision: 0,
                watch_id,
                canceled: true,
                compact_revision: compact,
                ..WatchResponse::default()
            });
            self.debug_assert_invariants();
            return Ok(watch_id);
        }
        // Start 0 means the next write; a start beyond it is synced too, skipping what comes
        // before; anything else catches up from history first.
        let (synced, next_revision) = match start {
            0 => (true, current + 1),
            start if start > current => (true, start),
            start => (false, start),
        };
        let w = WatcherRef(self.next_watcher);
        self.next_watcher += 1;
        let watcher = Watcher {
            stream: stream_id,
            watch_id,
            key,
            range_end: request.range_end,
            filters: request.filters,
            prev_kv: request.prev_kv,
            fragment: request.fragment,
            progress_notify: request.progress_notify,
            next_revision,
            synced,
            events_since_tick: false,
        };
        stream.watch_ids.insert(watch_id, w);
        if synced {
            self.synced.insert(w, &watcher.key, &watcher.range_end);
        } else {
            stream.unsynced += 1;
            self.unsynced.insert((next_revision, w));
        }
        self.progress_watchers += usize::from(watcher.progress_notify);
        self.prev_kv_watchers += usize::from(watcher.prev_kv);
        self.watchers.insert(w, watcher);
        self.debug_assert_invariants();
        Ok(watch_id)
    }

    /// Why a create must fail, checked in etcd's order (range first, then the id).
    fn refusal(
        config: &WatchConfig,
        stream: &Stream,
        key: &Bytes,
        request: &WatchCreate,
    ) -> Option<Error> {
        let range_end = &request.range_end;
        let bounded = !range_end.is_empty() && range_end.as_ref() != b"\0";
        let (watch_id, start_revision) = (request.watch_id, request.start_revision);
        if bounded && key >= range_end {
            Some(Error::WatchRangeEmpty)
        } else if watch_id < 0 {
            Some(Error::WatchIdNegative { watch_id })
        } else if start_revision < 0 {
            Some(Error::WatchRevisionNegative { start_revision })
        } else if watch_id != AUTO_WATCH_ID && stream.watch_ids.contains_key(&watch_id) {
            Some(Error::WatchIdDuplicate { watch_id })
        } else if stream.watch_ids.len() >= config.watchers_per_stream_max {
            let watchers_max = config.watchers_per_stream_max;
            Some(Error::WatchersFull { watchers_max })
        } else {
            None
        }
    }

    /// Cancels a watcher: answers `canceled` and sends it nothing more. An unknown watch id
    /// is ignored, as etcd does (the watcher may have been canceled for compaction already).
    /// Returns whether a watcher was canceled.
    pub fn cancel(&mut self, stream_id: StreamId, watch_id: i64) -> bool {
        let stream = self.streams.get(&stream_id);
        let stream = stream.unwrap_or_else(|| panic!("cancel on {stream_id:?}, not open"));
        let Some(&w) = stream.watch_ids.get(&watch_id) else {
            return false;
        };
        let current = self
            .revision
            .expect("a watcher exists, so a call saw the store");
        self.remove_watcher(w);
        let stream = self.streams.get_mut(&stream_id).expect("checked above");
        stream.push_control(WatchResponse {
            header_revision: current,
            watch_id,
            canceled: true,
            ..WatchResponse::default()
        });
        self.ready.insert(stream_id);
        self.settle_progress(stream_id, current);
        self.debug_assert_invariants();
        true
    }

    /// A stream-wide progress request: a response with watch id -1 and the current revision,
    /// once every watcher of the stream is synced (at once if they are). Answering earlier
    /// would claim events the stream has not delivered (etcd 3.5 defers it the same way).
    /// A request while one waits joins it.
    pub fn progress_request<H: History>(&mut self, stream_id: StreamId, history: &H) -> Result<()> {
        let current = self.observe(history);
        let config = &self.config;
        let stream = self.streams.get_mut(&stream_id);
        let stream =
            stream.unwrap_or_else(|| panic!("progress request on {stream_id:?}, not open"));
        if stream.progress_pending {
            return Ok(());
        }
        if stream.unsynced > 0 {
            stream.progress_pending = true;
        } else if stream.control_room(config.control_responses_max) {
            stream.push_control(WatchResponse::events(INVALID_WATCH_ID, current, Vec::new()));
            self.ready.insert(stream_id);
        } else {
            let control_responses_max = config.control_responses_max;
            return Err(Error::WatchStreamFull {
                control_responses_max,
            });
        }
        self.debug_assert_invariants();
        Ok(())
    }

    /// Hands one write revision's events, in sub-revision order, to the synced watchers they
    /// match. Call it after the store applied the write, before any other call.
    ///
    /// It never waits and never reads history (only `current_revision`, to check the call
    /// order): a watcher whose stream is full leaves the synced set and `sync` catches it up.
    pub fn notify<H: History>(&mut self, events: &[Event], history: &H) {
        let revision = events.first().expect("a write has an event").revision();
        assert!(
            events.iter().all(|e| e.revision() == revision),
            "notify takes the events of one revision"
        );
        assert_eq!(
            history.current_revision(),
            revision,
            "notify comes after the store applied the write"
        );
        if let Some(last) = self.revision {
            assert_eq!(
                revision,
                last + 1,
                "notify comes once per revision, in order"
            );
        }
        self.revision = Some(revision);

        let mut matches: Vec<(WatcherRef, usize)> = Vec::new();
        for (i, event) in events.iter().enumerate() {
            self.synced
                .for_each_match(&event.kv.key, |w| matches.push((w, i)));
        }
        matches.sort_unstable();
        let (bytes_max, responses_max) = (
            self.config.response_bytes_max,
            self.config.stream_responses_max,
        );
        for group in matches.chunk_by(|a, b| a.0 == b.0) {
            let w = group[0].0;
            let watcher = self.watchers.get_mut(&w).expect("indexed watchers exist");
            debug_assert!(watcher.synced);
            if revision < watcher.next_revision {
                continue;
            }
            let delivered: Vec<Event> = group
                .iter()
                .map(|&(_, i)| &events[i])
                .filter(|e| watcher.filters.pass(e))
                .map(|e| watcher.shape(e))
                .collect();
            if delivered.is_empty() {
                continue;
            }
            let stream = self.streams.get_mut(&watcher.stream).expect("open");
            if stream.event_room(responses_max) {
                stream.push_events(watcher.pieces(revision, delivered, bytes_max));
                self.ready.insert(watcher.stream);
                watcher.next_revision = revision + 1;
                watcher.events_since_tick = true;
            } else {
                // Rather than make the writer wait, the watcher falls behind: `sync` reads
                // this revision back from history once its client made room.
                self.synced.remove(w, &watcher.key, &watcher.range_end);
                watcher.synced = false;
                watcher.next_revision = revision;
                stream.unsynced += 1;
                self.unsynced.insert((revision, w));
            }
        }
        self.debug_assert_invariants();
    }

    /// Whether `sync` has work it can do now: an unsynced watcher whose stream has room.
    pub fn needs_sync(&self) -> bool {
        let responses_max = self.config.stream_responses_max;
        !self.unsynced.is_empty()
            && (self.streams.values()).any(|s| s.unsynced > 0 && s.event_room(responses_max))
    }

    /// Catches unsynced watchers up, with bounded work: serves at most `sync_watchers_max`
    /// watchers whose streams have room, lowest next revision first, from one read of at most
    /// `sync_events_max` events of history (whole revisions). Watchers whose history was
    /// compacted are canceled with `compact_revision`. A watcher that reaches the current
    /// revision rejoins the synced set; a stream whose watchers are all synced again gets its
    /// waiting progress response. Errors are the store's, from `History::events`.
    pub fn sync<H: History>(&mut self, history: &H) -> Result<()> {
        let current = self.observe(history);
        let compact = history.compact_revision();
        assert!(
            compact <= current,
            "compacted {compact} beyond current {current}"
        );
        let responses_max = self.config.stream_responses_max;
        let (mut chosen, mut compacted) = (Vec::new(), Vec::new());
        for &(next, w) in &self.unsynced {
            if chosen.len() + compacted.len() >= self.config.sync_watchers_max {
                break;
            }
            let stream = &self.streams[&self.watchers[&w].stream];
            if !stream.event_room(responses_max) {
                continue;
            }
            if next < compact {
                compacted.push(w);
            } else {
                chosen.push(w);
            }
        }
        let mut touched = BTreeSet::new();
        for w in compacted {
            let stream_id = self.watchers[&w].stream;
            // An earlier watcher of the same stream may have taken the last slot.
            if !self.streams[&stream_id].event_room(responses_max) {
                continue;
            }
            let watch_id = self.remove_watcher(w).watch_id;
            let stream = self.streams.get_mut(&stream_id).expect("open");
            stream.push_canceled(WatchResponse {
                header_revision: current,
                watch_id,
                canceled: true,
                compact_revision: compact,
                ..WatchResponse::default()
            });
            self.ready.insert(stream_id);
            touched.insert(stream_id);
        }
        if let Some(first) = chosen.first() {
            let from = self.watchers[first].next_revision;
            debug_assert!(
                chosen
                    .iter()
                    .all(|w| self.watchers[w].next_revision >= from)
            );
            assert!(
                compact <= from && from <= current,
                "unsynced at {from}, {compact}..={current}"
            );
            let events_max = self.config.sync_events_max;
            let (window, last) = history.events(from, current, events_max)?;
            assert!(
                from <= last && last <= current,
                "history window {from}..={last}"
            );
            debug_assert!(
                window
                    .windows(2)
                    .all(|p| p[0].revision() <= p[1].revision())
            );
            debug_assert!(window.iter().all(|e| (from..=last).contains(&e.revision())));
            for w in chosen {
                touched.insert(self.watchers[&w].stream);
                self.catch_up(w, &window, last, current);
            }
        }
        for stream_id in touched {
            self.settle_progress(stream_id, current);
        }
        self.debug_assert_invariants();
        Ok(())
    }

    /// Hands an unsynced watcher its events of `window` (history through `last`), batch by
    /// batch while its stream has room, and moves it to the synced set if that reached the
    /// current revision.
    fn catch_up(&mut self, w: WatcherRef, window: &[Event], last: i64, current: i64) {
        let (bytes_max, responses_max) = (
            self.config.response_bytes_max,
            self.config.stream_responses_max,
        );
        let watcher = &self.watchers[&w];
        let next = watcher.next_revision;
        debug_assert!(!watcher.synced);
        if next > last {
            return;
        }
        let from = window.partition_point(|e| e.revision() < next);
        let batches = watcher.batches(&window[from..], bytes_max);
        let stream_id = watcher.stream;
        let stream = self.streams.get_mut(&stream_id).expect("open");
        let mut next_after = last + 1;
        let mut delivered = false;
        let firsts: Vec<i64> = batches.iter().map(|b| b.first_revision).collect();
        for (i, batch) in batches.into_iter().enumerate() {
            if !stream.event_room(responses_max) {
                next_after = batch.first_revision;
                break;
            }
            // Every matching event up to just before the next batch is now delivered.
            let header = firsts.get(i + 1).map_or(last, |first| first - 1);
            stream.push_events(watcher.pieces(header, batch.events, bytes_max));
            delivered = true;
        }
        if delivered {
            self.ready.insert(stream_id);
        }
        let watcher = self.watchers.get_mut(&w).expect("exists");
        assert!(next_after >= next, "catch-up never moves back");
        let found = self.unsynced.remove(&(next, w));
        debug_assert!(found);
        watcher.next_revision = next_after;
        watcher.events_since_tick |= delivered;
        if next_after > current {
            debug_assert_eq!(next_after, current + 1);
            watcher.synced = true;
            stream.unsynced -= 1;
            self.synced.insert(w, &watcher.key, &watcher.range_end);
        } else {
            self.unsynced.insert((next_after, w));
        }
    }

    /// Progress notifications: every `progress_interval_ms`, each synced watcher with
    /// `progress_notify` that got no events since the last one gets an empty response with
    /// the current revision. Unsynced watchers get none (it would run ahead of their events),
    /// nor do watchers whose stream is full (their client has responses to read).
    pub fn tick<H: History>(&mut self, now_ms: u64, history: &H) {
        let current = self.observe(history);
        assert!(
            now_ms >= self.now_ms,
            "time went back from {} to {now_ms}",
            self.now_ms
        );
        self.now_ms = now_ms;
        if now_ms < self.progress_deadline_ms {
            return;
        }
        self.progress_deadline_ms = now_ms.saturating_add(self.config.progress_interval_ms);
        let responses_max = self.config.stream_responses_max;
        for watcher in self.watchers.values_mut() {
            if !watcher.progress_notify {
                continue;
            }
            let quiet = !std::mem::replace(&mut watcher.events_since_tick, false);
            let stream = self.streams.get_mut(&watcher.stream).expect("open");
            if quiet && watcher.synced && stream.event_room(responses_max) {
                let progress = WatchResponse::events(watcher.watch_id, current, Vec::new());
                stream.push_events(vec![progress]);
                self.ready.insert(watcher.stream);
            }
        }
        self.debug_assert_invariants();
    }

    /// When `tick` next has work: while any watcher asked for progress notifications.
    pub fn poll_timeout(&self) -> Option<u64> {
        (self.progress_watchers > 0).then_some(self.progress_deadline_ms)
    }

    /// The next response for the stream's client, in order; `None` when there is none or the
    /// stream is closed. Each frees room in the stream's outbox.
    pub fn poll_response(&mut self, stream_id: StreamId) -> Option<WatchResponse> {
        let stream = self.streams.get_mut(&stream_id)?;
        let response = stream.pop();
        if stream.is_empty() {
            self.ready.remove(&stream_id);
        }
        response
    }

    /// Streams with responses to poll.
    pub fn ready_streams(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.ready.iter().copied()
    }

    /// Whether any watcher wants `prev_kv`: until one does, the events handed to
    /// [`Watchers::notify`] may leave it out.
    pub fn wants_prev_kv(&self) -> bool {
        self.prev_kv_watchers > 0
    }

    /// How many watchers exist, over all streams.
    pub fn watchers_len(&self) -> usize {
        self.watchers.len()
    }

    /// Watchers catching up from history (whether or not their stream has room now).
    pub fn unsynced_len(&self) -> usize {
        self.unsynced.len()
    }

    /// Whether the stream is open (a snapshot restore starts the watchers afresh).
    pub fn is_open(&self, stream_id: StreamId) -> bool {
        self.streams.contains_key(&stream_id)
    }

    /// How many streams are open.
    pub fn streams_len(&self) -> usize {
        self.streams.len()
    }

    /// The store's current revision; every call that takes the history checks that `notify`
    /// saw each revision since the first call.
    fn observe<H: History>(&mut self, history: &H) -> i64 {
        let current = history.current_revision();
        match self.revision {
            Some(seen) => assert_eq!(
                current, seen,
                "the store wrote revisions after {seen} without notifying the watchers"
            ),
            None => self.revision = Some(current),
        }
        current
    }

    /// Answers the stream's waiting progress request if its watchers are all synced now.
    fn settle_progress(&mut self, stream_id: StreamId, current: i64) {
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return;
        };
        if stream.progress_pending && stream.unsynced == 0 {
            stream.progress_pending = false;
            // Not held to the control budget: there is at most one waiting per stream.
            stream.push_control(WatchResponse::events(INVALID_WATCH_ID, current, Vec::new()));
            self.ready.insert(stream_id);
        }
    }

    /// Forgets a watcher everywhere; the caller answers the client.
    fn remove_watcher(&mut self, w: WatcherRef) -> Watcher {
        let watcher = self.watchers.remove(&w).expect("watcher exists");
        let stream = self.streams.get_mut(&watcher.stream).expect("open");
        let found = stream.watch_ids.remove(&watcher.watch_id);
        assert_eq!(found, Some(w), "the stream knows its watcher by its id");
        if watcher.synced {
            self.synced.remove(w, &watcher.key, &watcher.range_end);
        } else {
            let found = self.unsynced.remove(&(watcher.next_revision, w));
            assert!(found, "an unsynced watcher is in the unsynced set");
            stream.unsynced -= 1;
        }
        self.progress_watchers -= usize::from(watcher.progress_notify);
        self.prev_kv_watchers -= usize::from(watcher.prev_kv);
        watcher
    }

    fn debug_assert_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        self.synced.debug_assert_invariants();
        debug_assert_eq!(self.synced.len() + self.unsynced.len(), self.watchers.len());
        debug_assert!(self.ready.iter().all(|s| !self.streams[s].is_empty()));
        if self.watchers.len() > INVARIANT_WATCHERS_MAX {
            return;
        }
        let revision = self.revision.unwrap_or(0);
        for (&w, watcher) in &self.watchers {
            let stream = &self.streams[&watcher.stream];
            debug_assert_eq!(stream.watch_ids.get(&watcher.watch_id), Some(&w));
            debug_assert!(watcher.watch_id >= 0 && !watcher.key.is_empty());
            debug_assert!(watcher.next_revision >= 1);
            let in_unsynced = self.unsynced.contains(&(watcher.next_revision, w));
            let in_synced = self.synced.contains(w, &watcher.key, &watcher.range_end);
            debug_assert!(in_synced != in_unsynced, "{w:?} is in exactly one set");
            debug_assert_eq!(watcher.synced, in_synced);
            // Unsynced means there is history to read: it cannot be ahead of the store.
            debug_assert!(watcher.synced || watcher.next_revision <= revision);
        }
        for &(next, w) in &self.unsynced {
            debug_assert!(
                self.watchers
                    .get(&w)
                    .is_some_and(|x| !x.synced && x.next_revision == next)
            );
        }
        for w in self.synced.iter() {
            debug_assert!(self.watchers.get(&w).is_some_and(|x| x.synced));
        }
        for (id, stream) in &self.streams {
            stream.debug_assert_invariants(self.config.stream_responses_max);
            debug_assert_eq!(self.ready.contains(id), !stream.is_empty());
            debug_assert!(stream.watch_ids.len() <= self.config.watchers_per_stream_max);
            let unsynced = stream
                .watch_ids
                .values()
                .filter(|w| !self.watchers[*w].synced);
            debug_assert_eq!(stream.unsynced, unsynced.count());
            debug_assert!(
                stream
                    .watch_ids
                    .values()
                    .all(|w| self.watchers[w].stream == *id)
            );
        }
        let progress = self.watchers.values().filter(|w| w.progress_notify).count();
        debug_assert_eq!(self.progress_watchers, progress);
        let prev_kv = self.watchers.values().filter(|w| w.prev_kv).count();
        debug_assert_eq!(self.prev_kv_watchers, prev_kv);
    }
}
