//! A member's clock: how the driver reads elapsed time (for lease expiry and checkpoints) and
//! how long its Raft tick is. In production it is the monotonic clock as it is. In the
//! full-stack simulation each member gets a clock of its own that drifts (runs fast or slow by
//! a rate) and jumps forward when the nemesis says so, because madsim has one clock for all.
//!
//! What it does not do: keep wall-clock time. Only elapsed time matters to a member, and a
//! jump backwards is not modelled (the monotonic clock never goes back).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Parts per million: the unit of a drift rate.
const PPM: i128 = 1_000_000;
/// A drift beyond ±50% is a broken clock, not a skewed one.
pub const DRIFT_PPM_MAX: i64 = 500_000;

/// The skew of a simulated clock: a drift rate set once, and jumps added while it runs.
#[derive(Debug, Default)]
pub struct Skew {
    drift_ppm: i64,
    jumped_ms: AtomicU64,
}

impl Skew {
    /// Moves the clock forward by `ms` at once.
    pub fn jump(&self, ms: u64) {
        self.jumped_ms.fetch_add(ms, Ordering::Relaxed);
    }

    pub fn drift_ppm(&self) -> i64 {
        self.drift_ppm
    }
}

/// A member's clock. `Clock::default()` is the system's monotonic clock.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    skew: Option<Arc<Skew>>,
}

impl Clock {
    /// A clock that runs `drift_ppm` parts per million fast (negative: slow), and the handle
    /// that jumps it.
    pub fn skewed(drift_ppm: i64) -> (Clock, Arc<Skew>) {
        assert!(
            drift_ppm.abs() <= DRIFT_PPM_MAX,
            "a drift of {drift_ppm} ppm is not a clock"
        );
        let skew = Arc::new(Skew {
            drift_ppm,
            jumped_ms: AtomicU64::new(0),
        });
        (
            Clock {
                skew: Some(skew.clone()),
            },
            skew,
        )
    }

    /// Milliseconds of this clock since `start` (a monotonic instant).
    pub fn since_ms(&self, start: Instant) -> u64 {
        self.reading_ms(start.elapsed().as_millis() as u64)
    }

    /// What this clock reads after `real_ms` of real time.
    pub fn reading_ms(&self, real_ms: u64) -> u64 {
        match &self.skew {
            None => real_ms,
            Some(s) => {
                let drifted = i128::from(real_ms) * (PPM + i128::from(s.drift_ppm)) / PPM;
                drifted as u64 + s.jumped_ms.load(Ordering::Relaxed)
            }
        }
    }

    /// How long `ms` of this clock's time takes in real time (a fast clock's tick comes
    /// sooner).
    pub fn real_duration(&self, ms: u64) -> Duration {
        match &self.skew {
            None => Duration::from_millis(ms),
            Some(s) => {
                let micros = i128::from(ms) * 1000 * PPM / (PPM + i128::from(s.drift_ppm));
                Duration::from_micros(micros.max(1) as u64)
            }
        }
    }
}

/// Milliseconds since the Unix epoch on the system's wall clock (0 before 1970): for the
/// few things that are wall-clock times by contract (etcd's v2 TTLs), never for elapsed time.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_drifts_and_jumps_forward() {
        let (fast, skew) = Clock::skewed(50_000);
        assert_eq!(Clock::default().reading_ms(10_000), 10_000);
        assert_eq!(fast.reading_ms(10_000), 10_500);
        skew.jump(2_000);
        assert_eq!(fast.reading_ms(10_000), 12_500);
        assert_eq!(fast.real_duration(105), Duration::from_millis(100));
        let (slow, _) = Clock::skewed(-50_000);
        assert_eq!(slow.reading_ms(10_000), 9_500);
        assert_eq!(
            Clock::default().real_duration(100),
            Duration::from_millis(100)
        );
    }
}
