//! Lease IDs the server picks for grants that ask for none (ID 0), before proposing them.

use super::LeaseId;

/// Bits of the time-and-counter part: the low 40 bits of the start time in milliseconds,
/// followed by an 8-bit counter; the counter carries into the time bits.
const SUFFIX_BITS: u32 = 48;
const COUNTER_BITS: u32 = 8;

/// A deterministic generator of lease IDs in etcd's layout: the low 16 bits of the member ID
/// in the top bits, then 40 bits of the start time in milliseconds and an 8-bit counter. The
/// sign bit is cleared, so IDs are positive; 0 is skipped.
///
/// Members have distinct IDs, and a restarted member starts from a later time, so IDs do not
/// repeat in practice; a client-chosen ID may still collide, and the grant then fails with
/// `Error::Exists` on apply, as in etcd.
#[derive(Clone, Debug)]
pub struct IdGen {
    prefix: u64,
    suffix: u64,
}

impl IdGen {
    /// `start_ms` is any time that differs between restarts of the member (the server passes
    /// its wall clock at start-up; the core reads none).
    pub fn new(member_id: u64, start_ms: u64) -> IdGen {
        let time_bits = SUFFIX_BITS - COUNTER_BITS;
        IdGen {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            suffix: (start_ms & ((1 << time_bits) - 1)) << COUNTER_BITS,
        }
    }

    /// The next ID: positive, and different from the previous `2^48 - 1` it gave.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> LeaseId {
        loop {
            self.suffix = (self.suffix + 1) & ((1 << SUFFIX_BITS) - 1);
            let id = (self.prefix | self.suffix) & (i64::MAX as u64);
            if id != 0 {
                let id = LeaseId::try_from(id).expect("the sign bit is cleared");
                debug_assert!(id > 0);
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_member_then_time_then_a_counter() {
        let mut g = IdGen::new(0x1234_abcd, 0x0a_0000_0001);
        // Member bits 0xabcd lose their top bit to the sign.
        assert_eq!(g.next(), 0x2bcd_0a00_0000_0101);
        assert_eq!(g.next(), 0x2bcd_0a00_0000_0102);
        // The counter carries into the time bits.
        let mut g = IdGen::new(1, 5);
        let ids: Vec<LeaseId> = (0..300).map(|_| g.next()).collect();
        assert_eq!(ids[0], 0x0001_0000_0000_0501);
        assert_eq!(ids[254], 0x0001_0000_0000_05ff);
        assert_eq!(ids[255], 0x0001_0000_0000_0600);
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "increasing, hence distinct"
        );
    }

    #[test]
    fn the_same_member_and_start_give_the_same_ids() {
        let (mut a, mut b) = (
            IdGen::new(7, 1_700_000_000_000),
            IdGen::new(7, 1_700_000_000_000),
        );
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        let mut c = IdGen::new(8, 1_700_000_000_000);
        assert_ne!(a.next(), c.next(), "members differ in the top bits");
    }

    #[test]
    fn ids_are_positive_and_never_zero_even_when_the_suffix_wraps() {
        // Member 0x8000: its bit lands on the sign bit and is cleared, so the prefix is 0 and
        // the suffix's wrap to 0 would give ID 0.
        let mut g = IdGen::new(0x8000, (1 << 40) - 1);
        let ids: Vec<LeaseId> = (0..600).map(|_| g.next()).collect();
        assert!(ids.iter().all(|&id| id > 0), "{ids:?}");
        assert_eq!(ids[254], 0x0000_ffff_ffff_ffff);
        assert_eq!(ids[255], 1, "wrapped past 0");
    }
}
