//! Statistics gathered by every executor and every worker process, and merged into one.
//!
//! [`Latency`] is an HDR histogram of nanoseconds (1 ns to 60 s, 3 significant digits) that
//! serializes to JSON as `[value, count]` pairs, so that worker processes can send theirs to
//! the parent on stdout and the parent can merge them exactly. [`SeqTracker`] follows one
//! sender's sequence numbers at one receiver and counts gaps, late (reordered or
//! duplicated) arrivals and, given what was sent, loss. [`Stats`] holds both plus counters
//! and failures by cause. What it does not do: no clock reads (callers pass durations), no
//! printing (see [`crate::report`]).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest latency recorded; longer ones are clamped to it (and still counted).
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "Vec<[u64; 2]>", into = "Vec<[u64; 2]>")]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
        // 3 significant digits), so construction cannot fail.
        Self(Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).unwrap_or_else(|_| unreachable!()))
    }
}

impl PartialEq for Latency {
    fn eq(&self, other: &Self) -> bool {
        Vec::<[u64; 2]>::from(self.clone()) == Vec::<[u64; 2]>::from(other.clone())
    }
}

impl From<Latency> for Vec<[u64; 2]> {
    fn from(l: Latency) -> Self {
        l.0.iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect()
    }
}

impl From<Vec<[u64; 2]>> for Latency {
    fn from(pairs: Vec<[u64; 2]>) -> Self {
        let mut l = Self::default();
        for [value, count] in pairs {
            let _ = l.0.record_n(value.clamp(1, MAX_LATENCY_NS), count);
        }
        l
    }
}

impl Latency {
    /// Records one latency (clamped to the histogram's range).
    pub fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Self) {
        // Both histograms have the same bounds, which is all `add` requires.
        let _ = self.0.add(&other.0);
    }

    /// The number of samples.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at quantile `q` (0..=1), in nanoseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    /// The largest sample, in nanoseconds.
    pub fn max(&self) -> u64 {
        self.0.max()
    }

    /// The mean, in nanoseconds.
    pub fn mean(&self) -> f64 {
        self.0.mean()
    }
}

/// What one arrival told a [`SeqTracker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The next expected number.
    InOrder,
    /// Ahead of the expected number: this many were skipped (lost, or reordered later).
    Gap(u64),
    /// Behind the expected number, filling an earlier gap: reordered.
    Late,
    /// Behind the expected number and not missing: a duplicate.
    Duplicate,
}

/// Numbers skipped and still awaited are remembered up to this many per tracker; past it a
/// late arrival is counted as reordered without checking, so a huge gap cannot grow memory.
const MAX_MISSING: usize = 4096;

/// One sender's sequence numbers as seen by one receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqTracker {
    /// The next sequence number expected.
    pub next: u64,
    /// Distinct arrivals.
    pub received: u64,
    /// Arrivals that skipped numbers.
    pub gaps: u64,
    /// Arrivals that filled an earlier gap.
    pub late: u64,
    /// Arrivals seen before.
    pub duplicates: u64,
    missing: std::collections::BTreeSet<u64>,
    missing_overflow: bool,
}

impl SeqTracker {
    /// Notes the arrival of `seq`.
    pub fn observe(&mut self, seq: u64) -> Seen {
        if seq == self.next {
            self.next += 1;
            self.received += 1;
            Seen::InOrder
        } else if seq > self.next {
            let skipped = seq - self.next;
            for m in self.next..seq {
                if self.missing.len() >= MAX_MISSING {
                    self.missing_overflow = true;
                    break;
                }
                self.missing.insert(m);
            }
            self.gaps += 1;
            self.next = seq + 1;
            self.received += 1;
            Seen::Gap(skipped)
        } else if self.missing.remove(&seq) || self.missing_overflow {
            self.late += 1;
            self.received += 1;
            Seen::Late
        } else {
            self.duplicates += 1;
            Seen::Duplicate
        }
    }

    /// Messages that never arrived, given that `sent` were sent.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.received)
    }
}

/// Everything one executor, one process or the whole run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Named counts (sessions opened, events received, calls answered, …).
    pub counters: BTreeMap<String, u64>,
    /// Failures by cause.
    pub failures: BTreeMap<String, u64>,
    /// End-to-end latency of events or calls inside the measured window.
    pub latency: Latency,
    /// Time from starting a connection to WELCOME.
    pub connect: Latency,
    /// Per sender (global index): messages sent.
    pub sent_by_origin: BTreeMap<u64, u64>,
    /// Per sender (global index): sum over receivers of messages received.
    pub received_by_origin: BTreeMap<u64, u64>,
    /// Arrivals that skipped sequence numbers (a loss, or a reordering to come).
    pub gaps: u64,
    /// Arrivals that filled an earlier gap (reordered).
    pub late: u64,
    /// Arrivals seen before.
    pub duplicates: u64,
}

impl Stats {
    /// Adds `n` to counter `name`.
    pub fn add(&mut self, name: &str, n: u64) {
        *self.counters.entry(name.to_owned()).or_default() += n;
    }

    /// Counter `name` (0 if never added to).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Counts one failure of `cause`.
    pub fn fail(&mut self, cause: &str) {
        *self.failures.entry(cause.to_owned()).or_default() += 1;
    }

    /// All failures.
    pub fn failure_count(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Folds a receiver's tracker for sender `origin` into the totals.
    pub fn absorb_tracker(&mut self, origin: u64, t: &SeqTracker) {
        *self.received_by_origin.entry(origin).or_default() += t.received;
        self.gaps += t.gaps;
        self.late += t.late;
        self.duplicates += t.duplicates;
    }

    /// Adds everything in `other`.
    pub fn merge(&mut self, other: &Self) {
        for (k, v) in &other.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.sent_by_origin {
            *self.sent_by_origin.entry(*k).or_default() += v;
        }
        for (k, v) in &other.received_by_origin {
            *self.received_by_origin.entry(*k).or_default() += v;
        }
        self.latency.merge(&other.latency);
        self.connect.merge(&other.connect);
        self.gaps += other.gaps;
        self.late += other.late;
        self.duplicates += other.duplicates;
    }

    /// Messages lost: for each sender, `sent × fanout(sender)` expected deliveries minus
    /// the distinct deliveries counted.
    pub fn lost(&self, fanout: impl Fn(u64) -> u64) -> u64 {
        self.sent_by_origin
            .iter()
            .map(|(o, sent)| {
                let expected = sent * fanout(*o);
                expected.saturating_sub(self.received_by_origin.get(o).copied().unwrap_or(0))
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_seq(arrivals: &[u64], sent: u64, expect: (&[Seen], u64, u64, u64)) {
        let mut t = SeqTracker::default();
        let seen: Vec<Seen> = arrivals.iter().map(|s| t.observe(*s)).collect();
        assert_eq!(
            (seen.as_slice(), t.gaps, t.late, t.lost(sent)),
            expect,
            "{arrivals:?}"
        );
    }

    #[test]
    fn sequences() {
        use Seen::*;
        check_seq(&[0, 1, 2, 3], 4, (&[InOrder; 4], 0, 0, 0));
        // An injected loss: 2 never arrives.
        check_seq(&[0, 1, 3], 4, (&[InOrder, InOrder, Gap(1)], 1, 0, 1));
        // A reordering: 2 arrives after 3; nothing is lost.
        check_seq(
            &[0, 1, 3, 2],
            4,
            (&[InOrder, InOrder, Gap(1), Late], 1, 1, 0),
        );
        // A duplicate is not a second delivery.
        check_seq(&[0, 0, 1], 2, (&[InOrder, Duplicate, InOrder], 0, 0, 0));
        check_seq(
            &[0, 2, 2, 1],
            3,
            (&[InOrder, Gap(1), Duplicate, Late], 1, 1, 0),
        );
        // The tail lost.
        check_seq(&[0, 1], 5, (&[InOrder, InOrder], 0, 0, 3));
        check_seq(&[], 3, (&[], 0, 0, 3));
    }

    #[test]
    fn histograms_merge_exactly() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        let mut all = Latency::default();
        for i in 1..=1000u64 {
            let v = i * i * 37;
            if i % 3 == 0 {
                a.record(v);
            } else {
                b.record(v);
            }
            all.record(v);
        }
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(m, all);
        assert_eq!(m.count(), 1000);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(m.quantile(q), all.quantile(q));
        }
        // Through JSON, as worker processes send them.
        let json = serde_json::to_string(&m).unwrap();
        let back: Latency = serde_json::from_str(&json).unwrap();
        assert_eq!(back, all);
        assert_eq!(back.quantile(0.99), all.quantile(0.99));
    }

    #[test]
    fn stats_merge_and_loss() {
        let mut a = Stats::default();
        a.add("events", 3);
        a.fail("timeout");
        a.sent_by_origin.insert(0, 10);
        let mut t = SeqTracker::default();
        for s in (0..10).filter(|s| *s != 4) {
            t.observe(s);
        }
        a.absorb_tracker(0, &t);
        let mut b = Stats::default();
        b.add("events", 2);
        b.fail("timeout");
        b.fail("eof");
        let mut t = SeqTracker::default();
        for s in 0..10 {
            t.observe(s);
        }
        b.absorb_tracker(0, &t);
        let json = serde_json::to_string(&b).unwrap();
        let b: Stats = serde_json::from_str(&json).unwrap();
        a.merge(&b);
        assert_eq!(a.counter("events"), 5);
        assert_eq!(a.failures.get("timeout"), Some(&2));
        assert_eq!(a.failure_count(), 3);
        assert_eq!(a.gaps, 1);
        // Two receivers of origin 0: 20 expected, 19 arrived.
        assert_eq!(a.lost(|_| 2), 1);
    }
}
