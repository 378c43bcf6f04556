//! The shard's seeded random source and its id allocation rules.
//!
//! `core` may not read OS randomness, so every random choice a shard makes (global ids, the
//! `random` shared-registration policy) comes from a SplitMix64 generator seeded by the
//! caller through [`super::ShardConfig::seed`]. SplitMix64 is tiny, passes BigCrush and is
//! fully determined by its seed, which is what a deterministic simulation needs. It is not
//! a cryptographic generator: WAMP ids are not secrets.
//!
//! What it does not do: it does not check ids for collisions (the caller knows which table
//! an id must be unique in) and it does not seed itself.

use crate::id::Id;

/// A SplitMix64 generator.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose whole output is determined by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`), by rejection so that it is unbiased.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let r = self.next_u64();
            if r < zone {
                return r % n;
            }
        }
    }

    /// A random global id in `[1, 2^53]` with `id % count == index`, so that the shard
    /// that allocated it can be derived from the id alone.
    pub(crate) fn global_id(&mut self, index: u16, count: u16) -> Id {
        let count = u64::from(count.max(1));
        let index = u64::from(index);
        loop {
            // 53 random bits, then moved down to the nearest value in the shard's class.
            let r = self.next_u64() >> 11;
            let v = r - r % count + index;
            if let Some(id) = Id::new(v) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_class() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        for count in [1u16, 2, 3, 7, 64] {
            for index in 0..count {
                for _ in 0..100 {
                    let id = a.global_id(index, count).get();
                    assert!((1..=1 << 53).contains(&id));
                    assert_eq!(id % u64::from(count), u64::from(index));
                }
            }
        }
    }

    #[test]
    fn below_stays_below() {
        let mut r = SplitMix64::new(1);
        let mut seen = [false; 5];
        for _ in 0..200 {
            seen[r.below(5) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
