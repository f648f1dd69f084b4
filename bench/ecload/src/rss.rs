//! Resident memory of the member processes named by `--member-pid`, read from
//! `/proc/PID/status` (VmRSS), in MiB. It owns the sampling thread of big-read; it does not
//! decide which processes are members.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// VmRSS of `pid` in MiB, or None when the process or the field is gone.
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The largest VmRSS over `pids` (None when there are none or none could be read).
pub(crate) fn max_mib(pids: &[u32]) -> Option<f64> {
    pids.iter().filter_map(|&p| rss_mib(p)).reduce(f64::max)
}

/// The sum of VmRSS over `pids` (None when there are none or none could be read).
pub(crate) fn sum_mib(pids: &[u32]) -> Option<f64> {
    pids.iter().filter_map(|&p| rss_mib(p)).reduce(|a, b| a + b)
}

/// A thread that samples [`max_mib`] every `interval` until stopped, keeping the peak. A
/// thread, not a task, so that a runtime busy decoding a large answer does not delay it.
pub(crate) struct PeakSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<f64>>,
}

impl PeakSampler {
    pub(crate) fn start(pids: Vec<u32>, interval: Duration) -> PeakSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = max_mib(&pids);
            loop {
                let done = stopped.load(Ordering::Relaxed);
                peak = match (peak, max_mib(&pids)) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if done {
                    return peak;
                }
                std::thread::sleep(interval);
            }
        });
        PeakSampler { stop, thread }
    }

    /// Stops sampling (after one last sample) and gives the peak seen.
    pub(crate) fn stop(self) -> Option<f64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler does not panic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_size() {
        let me = std::process::id();
        assert!(rss_mib(me).is_some_and(|m| m > 0.0));
        assert_eq!(max_mib(&[]), None);
        let peak = PeakSampler::start(vec![me], Duration::from_millis(1)).stop();
        assert!(peak.is_some_and(|m| m > 0.0));
    }
}
