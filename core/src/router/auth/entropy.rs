//! Cryptographic randomness for challenges and nonces, from a seed the io layer supplies.
//!
//! `core` may not read OS randomness, so the io layer seeds an [`Entropy`] with 32 bytes
//! from the OS once per shard; tests seed it with a fixed value. The stream is
//! HMAC-SHA256(seed, counter) in counter mode, a PRF output that cannot be predicted
//! without the seed. What it does not do: reseed, or serve anything but authentication.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A keyed random stream (HMAC-SHA256 in counter mode).
pub struct Entropy {
    key: [u8; 32],
    counter: u64,
}

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The seed is as secret as the challenges it predicts.
        f.write_str("Entropy(..)")
    }
}

impl Entropy {
    /// A stream seeded with `seed` (32 bytes from the OS in production).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: seed,
            counter: 0,
        }
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(32) {
            self.counter = self.counter.wrapping_add(1);
            // HMAC accepts keys of any length, so this cannot fail.
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
                return;
            };
            mac.update(&self.counter.to_le_bytes());
            let block = mac.finalize().into_bytes();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }

    /// `N` fresh bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0; N];
        self.fill(&mut b);
        b
    }
}
