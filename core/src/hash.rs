//! Deterministic hash maps for `core`.
//!
//! `std`'s default hasher seeds itself from the OS, which would make iteration order (and
//! so the router's behaviour) differ between runs. `core` uses foldhash with a fixed seed
//! instead; a caller that faces untrusted keys can pick its own seed with [`seeded`].

use std::collections::{HashMap, HashSet};

/// The hasher state used by every map in `core`.
pub type State = foldhash::fast::FixedState;

/// A `HashMap` with the deterministic [`State`] hasher.
pub type Map<K, V> = HashMap<K, V, State>;

/// A `HashSet` with the deterministic [`State`] hasher.
pub type Set<K> = HashSet<K, State>;

/// A hasher state from a caller-chosen seed (for example from the node's configuration).
pub fn seeded(seed: u64) -> State {
    State::with_seed(seed)
}
