//! The limits of one member's watchers, with etcd's defaults.

use crate::mvcc::error::{Error, Result};

/// The limits of one member's watchers. Each must be at least 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// Undelivered event and progress responses a stream may hold (etcd's per-stream channel,
    /// 128). A watcher whose stream is full leaves the synced set and catches up later.
    pub stream_responses_max: usize,
    /// Undelivered control responses (`created`, `canceled`, stream progress) a stream may
    /// hold before creates and progress requests are refused with
    /// [`Error::WatchStreamFull`] (etcd's control channel, 16). Cancels and compaction
    /// cancels are not refused: there is at most one per watcher.
    pub control_responses_max: usize,
    /// Event bytes above which a watcher with `fragment` gets a revision in pieces, and above
    /// which catch-up stops adding revisions to one response. etcd's default
    /// `--max-request-bytes` (1.5 MiB) plus its 512 KiB gRPC overhead.
    pub response_bytes_max: usize,
    /// How often synced watchers with `progress_notify` that got no events hear the current
    /// revision (etcd: 10 minutes).
    pub progress_interval_ms: u64,
    /// Events one `sync` call reads from history (whole revisions, so it may read more when
    /// one revision holds more). etcd sends at most 1000 revisions per catch-up batch.
    pub sync_events_max: usize,
    /// Unsynced watchers one `sync` call serves (etcd's `maxWatchersPerSync`, 512).
    pub sync_watchers_max: usize,
    /// Watchers one stream may hold; etcd has no limit, and Kubernetes multiplexes many
    /// watches on one stream, so the default is generous.
    pub watchers_per_stream_max: usize,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            stream_responses_max: 128,
            control_responses_max: 16,
            response_bytes_max: 1024 * 1024 * 3 / 2 + 512 * 1024,
            progress_interval_ms: 10 * 60 * 1000,
            sync_events_max: 1000,
            sync_watchers_max: 512,
            watchers_per_stream_max: 64 * 1024,
        }
    }
}

impl WatchConfig {
    /// Checks the bounds documented on each field.
    pub fn validate(&self) -> Result<()> {
        let checks = [
            (
                self.stream_responses_max,
                "stream_responses_max must be at least 1",
            ),
            (
                self.control_responses_max,
                "control_responses_max must be at least 1",
            ),
            (
                self.response_bytes_max,
                "response_bytes_max must be at least 1",
            ),
            (self.sync_events_max, "sync_events_max must be at least 1"),
            (
                self.sync_watchers_max,
                "sync_watchers_max must be at least 1",
            ),
            (
                self.watchers_per_stream_max,
                "watchers_per_stream_max must be at least 1",
            ),
        ];
        if let Some((_, why)) = checks.iter().find(|(value, _)| *value == 0) {
            return Err(Error::WatchConfigInvalid { why });
        }
        if self.progress_interval_ms == 0 {
            let why = "progress_interval_ms must be at least 1";
            return Err(Error::WatchConfigInvalid { why });
        }
        Ok(())
    }
}
