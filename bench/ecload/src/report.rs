//! What a run measured and the JSON object it prints: the latency histogram (microseconds,
//! printed in milliseconds), the error count with the first error, and workload extras.
//! It owns no timing decisions: workloads say when a request starts and ends.

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

/// Largest latency the histogram holds; a slower request is recorded as this.
const LATENCY_US_MAX: u64 = 60_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// A request's failure as a line for `first_error`: a gRPC status by its message.
pub(crate) fn why(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) if !s.message().is_empty() => s.message().to_string(),
        other => other.to_string(),
    }
}

/// Latencies and failures, as each task collects them and then merged.
pub(crate) struct Tally {
    pub(crate) latency_us: Histogram<u64>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            latency_us: histogram(),
            errors: 0,
            first_error: None,
        }
    }

    /// Times a request sent at `started` and answered now.
    pub(crate) fn record(&mut self, started: Instant) {
        self.record_latency(started.elapsed());
    }

    /// Records a latency measured by the caller.
    pub(crate) fn record_latency(&mut self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        self.latency_us.record(us).expect("clamped into bounds");
    }

    /// Times an answer, or counts a failure.
    pub(crate) fn settle<T>(&mut self, started: Instant, answer: Result<T, etcd_client::Error>) {
        match answer {
            Ok(_) => self.record(started),
            Err(e) => self.fail(why(e)),
        }
    }

    pub(crate) fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.latency_us.add(other.latency_us).expect("same bounds");
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// A finished run.
pub(crate) struct Report {
    workload: &'static str,
    /// Operations completed (for watchers: events delivered).
    ops: u64,
    pub(crate) tally: Tally,
    elapsed: Duration,
    /// Workload-specific fields, after the common ones.
    extra: Map<String, Value>,
}

impl Report {
    pub(crate) fn new(workload: &'static str, ops: u64, tally: Tally, elapsed: Duration) -> Report {
        Report {
            workload,
            ops,
            tally,
            elapsed,
            extra: Map::new(),
        }
    }

    /// A run that failed before it measured anything.
    pub(crate) fn failed(workload: &'static str, why: String) -> Report {
        let mut tally = Tally::new();
        tally.fail(why);
        Report::new(workload, 0, tally, Duration::ZERO)
    }

    /// Adds a workload-specific field.
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Report {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub(crate) fn ok(&self) -> bool {
        self.tally.errors == 0
    }

    /// One JSON object on one line, in `oxctl -w json bench`'s shape plus the extras.
    pub(crate) fn json(&self) -> String {
        let h = &self.tally.latency_us;
        let ms = |us: f64| us / 1000.0;
        let q = |q: f64| ms(h.value_at_quantile(q) as f64);
        let mut out = json!({
            "workload": self.workload,
            "total": self.ops,
            "errors": self.tally.errors,
            "first_error": self.tally.first_error,
            "seconds": self.elapsed.as_secs_f64(),
            "ops_per_sec": self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9),
            "latency_ms": {
                "mean": ms(h.mean()),
                "stddev": ms(h.stdev()),
                "min": ms(h.min() as f64),
                "p50": q(0.50),
                "p90": q(0.90),
                "p99": q(0.99),
                "p999": q(0.999),
                "max": ms(h.max() as f64),
            },
        });
        let fields = out.as_object_mut().expect("an object");
        for (k, v) in &self.extra {
            fields.insert(k.clone(), v.clone());
        }
        out.to_string() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_has_the_common_fields_and_the_extras() {
        let mut tally = Tally::new();
        for us in 1..=1000 {
            tally.latency_us.record(us).unwrap();
        }
        let r = Report::new("put", 1000, tally, Duration::from_secs(2)).with("keys", 7);
        let j: Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["ops_per_sec"].as_f64(), Some(500.0));
        assert_eq!(j["keys"].as_u64(), Some(7));
        assert!(j["first_error"].is_null() && r.ok());
        let p = |k: &str| j["latency_ms"][k].as_f64().unwrap();
        assert!((p("p50") - 0.5).abs() < 0.01, "{j}");
        assert!(p("p50") < p("p99") && p("p99") <= p("max"));
        let failed = Report::failed("range", "no".into());
        assert!(!failed.ok() && failed.json().contains("\"errors\":1"));
    }
}
