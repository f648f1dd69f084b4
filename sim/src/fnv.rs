//! FNV-1a, 64-bit: a small, stable hash for trace hashes and entry digests. Stable across Rust
//! releases and platforms, unlike `DefaultHasher`, so a seed's trace hash can be compared
//! between machines.

#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn bytes(&mut self, data: &[u8]) -> &mut Self {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// The hash of one byte string.
pub fn hash(data: &[u8]) -> u64 {
    Fnv::default().bytes(data).finish()
}
