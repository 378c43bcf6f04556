//! The per-address throttle of failed authentications (see [`super::super::AuthLimits`]).
//!
//! A bounded table from peer address (IP without port) to its recent failures. A failure
//! past the free ones yields a delay (doubling, capped) the shard waits before sending the
//! ABORT. What it does not do: block addresses outright, or share counts across shards.

use crate::hash::Map;

use super::super::{AuthLimits, Time};

#[derive(Debug)]
struct Entry {
    failures: u32,
    last: Time,
}

/// Recent failures per address, at most `limits.throttled_addresses` of them.
#[derive(Debug, Default)]
pub(in crate::router) struct Throttle {
    table: Map<String, Entry>,
}

/// The address part of a transport's peer (`tcp4:1.2.3.4:5678` → `1.2.3.4`): the port
/// changes with every connection, the address does not.
pub(in crate::router) fn address(peer: &str) -> &str {
    let rest = peer
        .strip_prefix("tcp4:")
        .or_else(|| peer.strip_prefix("tcp6:"));
    match rest {
        Some(r) => r
            .rsplit_once(':')
            .map_or(r, |(a, _)| a)
            .trim_start_matches('[')
            .trim_end_matches(']'),
        None => peer,
    }
}

impl Throttle {
    /// Counts a failure from `addr` at `now`; the delay before answering it, if any (ms).
    pub(in crate::router) fn failure(
        &mut self,
        limits: &AuthLimits,
        addr: &str,
        now: Time,
    ) -> Option<u64> {
        if limits.throttled_addresses == 0 {
            return None;
        }
        let forget = limits.forget_ms.saturating_mul(1000);
        if !self.table.contains_key(addr) && self.table.len() >= limits.throttled_addresses {
            // Full: drop what is stale, else the oldest, so the table stays bounded.
            self.table
                .retain(|_, e| now.0.saturating_sub(e.last.0) < forget);
            if self.table.len() >= limits.throttled_addresses {
                let oldest = self
                    .table
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.table.remove(&k);
                }
            }
        }
        let e = self.table.entry(addr.to_owned()).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if now.0.saturating_sub(e.last.0) >= forget {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        let past = e.failures.checked_sub(limits.free_failures)?;
        if past == 0 {
            return None;
        }
        let doubling = 1u64.checked_shl(past - 1).unwrap_or(u64::MAX);
        Some(
            limits
                .failure_delay_ms
                .saturating_mul(doubling)
                .min(limits.max_failure_delay_ms),
        )
    }

    /// A success from `addr` clears its failures.
    pub(in crate::router) fn success(&mut self, addr: &str) {
        self.table.remove(addr);
    }

    /// How many addresses are remembered.
    #[cfg(test)]
    pub(in crate::router) fn len(&self) -> usize {
        self.table.len()
    }
}
