//! The `pubsub` scenario: publishers × subscribers × topics, payload size, open-loop
//! publish rate or flat out. Measures delivered events per second and end-to-end latency
//! (the intended send time travels in the payload, which corrects open-loop runs for
//! coordinated omission), and detects loss and reordering with per-publisher sequence
//! numbers. Publisher `p` publishes to topic `p % topics`, subscriber `s` subscribes to
//! topic `s % topics`; publishers are not subscribers. What it does not do: no pattern
//! subscriptions, no publisher exclusion tests.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use switchyard_core::message::Message;

use crate::payload::{self, Stamp};
use crate::scenario::{sleep_until, Shard};
use crate::session::Session;
use crate::stats::{SeqTracker, Stats};
use crate::sys::now_ns;

/// Options of the `pubsub` scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Publishing sessions.
    pub publishers: u64,
    /// Subscribing sessions.
    pub subscribers: u64,
    /// Topics.
    pub topics: u64,
    /// Bytes of `args` per event.
    pub payload: usize,
    /// Publications per second over all publishers; 0 publishes flat out.
    pub rate: f64,
    /// Flat out: publications written per flush.
    pub batch: usize,
    /// Drop every n-th event at the subscriber before counting it (0: never): a test hook
    /// proving that loss is detected end to end.
    pub drop_every: u64,
}

/// The topic of publisher or subscriber `i`.
pub fn topic(i: u64, topics: u64) -> String {
    format!("com.switchyard.load.t{}", i % topics.max(1))
}

/// How many subscribers receive what publisher `p` publishes.
pub fn fanout(c: &Config, p: u64) -> u64 {
    let t = c.topics.max(1);
    let k = p % t;
    if k >= c.subscribers {
        0
    } else {
        (c.subscribers - k).div_ceil(t)
    }
}

/// Runs one shard's publishers and subscribers.
pub async fn run_shard(shard: Shard, c: Config) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let mut tasks = Vec::new();
    for s in shard.owned(c.subscribers) {
        let (shard, c, stats) = (shard.clone(), c.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            subscriber(&shard, &c, s, &stats).await;
        }));
    }
    for p in shard.owned(c.publishers) {
        let (shard, c, stats) = (shard.clone(), c.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            publisher(&shard, &c, p, &stats).await;
        }));
    }
    for t in tasks {
        t.await;
    }
    Rc::try_unwrap(stats)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| rc.borrow().clone())
}

async fn subscriber(shard: &Shard, c: &Config, s: u64, stats: &RefCell<Stats>) {
    let t = shard.plan.timeline();
    let conn = c.publishers + s;
    let t0 = now_ns();
    let mut session =
        match Session::connect(&shard.target, Some(shard.source(conn)), shard.seed(conn)).await {
            Ok(x) => x,
            Err(e) => return fail(shard, stats, &e.cause()),
        };
    stats.borrow_mut().connect.record(now_ns() - t0);
    if let Err(e) = session.subscribe(&topic(s, c.topics)).await {
        return fail(shard, stats, &e.cause());
    }
    shard.progress.sessions.fetch_add(1, Ordering::Relaxed);
    if now_ns() > t.setup_end {
        stats.borrow_mut().fail("setup-late");
    }
    let mut trackers: HashMap<u64, SeqTracker> = HashMap::new();
    let mut seen = 0u64;
    loop {
        match session.recv_until(t.drain_end).await {
            Ok(Some(Message::Event(e))) => {
                let now = now_ns();
                seen += 1;
                if c.drop_every > 0 && seen % c.drop_every == 0 {
                    continue;
                }
                let Ok(stamp) = payload::decode(&e.payload) else {
                    stats.borrow_mut().fail("foreign-payload");
                    continue;
                };
                trackers.entry(stamp.origin).or_default().observe(stamp.seq);
                shard.progress.received.fetch_add(1, Ordering::Relaxed);
                let mut st = stats.borrow_mut();
                st.add("events_received", 1);
                if stamp.sent_ns >= t.measure_start && stamp.sent_ns < t.measure_end {
                    st.add("events_measured", 1);
                    st.latency.record(now.saturating_sub(stamp.sent_ns));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                fail(shard, stats, &e.cause());
                break;
            }
        }
    }
    let mut st = stats.borrow_mut();
    for (origin, tr) in &trackers {
        st.absorb_tracker(*origin, tr);
    }
}

async fn publisher(shard: &Shard, c: &Config, p: u64, stats: &RefCell<Stats>) {
    let t = shard.plan.timeline();
    let t0 = now_ns();
    let mut session =
        match Session::connect(&shard.target, Some(shard.source(p)), shard.seed(p)).await {
            Ok(x) => x,
            Err(e) => return fail(shard, stats, &e.cause()),
        };
    stats.borrow_mut().connect.record(now_ns() - t0);
    shard.progress.sessions.fetch_add(1, Ordering::Relaxed);
    let ser = shard.target.serializer;
    let topic = topic(p, c.topics);
    sleep_until(t.setup_end).await;
    let mut seq = 0u64;
    let mut result = Ok(());
    if c.rate > 0.0 {
        // Open loop: publication k is due at setup_end + k × interval, whether or not the
        // previous ones went out on time; its stamp carries the due time.
        let per_pub = c.rate / c.publishers.max(1) as f64;
        let interval = (1e9 / per_pub).max(1.0);
        // Publishers start at staggered offsets so that they do not all fire at once.
        let offset = (interval * (p as f64 / c.publishers.max(1) as f64)) as u64;
        loop {
            let due = t.setup_end + offset + (seq as f64 * interval) as u64;
            if due >= t.measure_end {
                break;
            }
            sleep_until(due).await;
            let stamp = Stamp {
                origin: p,
                seq,
                sent_ns: due,
            };
            result = session
                .queue_publish(&topic, payload::encode(ser, stamp, c.payload), false)
                .map(|_| ());
            if result.is_ok() {
                result = session.flush().await;
            }
            if result.is_err() {
                break;
            }
            seq += 1;
            shard.progress.sent.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        'outer: while now_ns() < t.measure_end {
            for _ in 0..c.batch.max(1) {
                let stamp = Stamp {
                    origin: p,
                    seq,
                    sent_ns: now_ns(),
                };
                if let Err(e) =
                    session.queue_publish(&topic, payload::encode(ser, stamp, c.payload), false)
                {
                    result = Err(e);
                    break 'outer;
                }
                seq += 1;
            }
            shard
                .progress
                .sent
                .fetch_add(c.batch.max(1) as u64, Ordering::Relaxed);
            if let Err(e) = session.flush().await {
                result = Err(e);
                break;
            }
        }
    }
    {
        let mut st = stats.borrow_mut();
        *st.sent_by_origin.entry(p).or_default() += seq;
        st.add("published", seq);
    }
    if let Err(e) = result {
        return fail(shard, stats, &e.cause());
    }
    // Stay connected through the drain: a router may drop a publisher's queued
    // publications when it leaves.
    while let Ok(Some(_)) = session.recv_until(t.drain_end).await {}
}

pub(crate) fn fail(shard: &Shard, stats: &RefCell<Stats>, cause: &str) {
    shard.progress.failures.fetch_add(1, Ordering::Relaxed);
    stats.borrow_mut().fail(cause);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_counts_subscribers_per_topic() {
        let c = |subscribers, topics| Config {
            publishers: 10,
            subscribers,
            topics,
            payload: 0,
            rate: 0.0,
            batch: 1,
            drop_every: 0,
        };
        let check = |cfg: Config, expect: &[u64]| {
            let got: Vec<u64> = (0..expect.len() as u64).map(|p| fanout(&cfg, p)).collect();
            assert_eq!(got, expect);
        };
        check(c(1000, 1), &[1000, 1000]);
        check(c(10, 3), &[4, 3, 3, 4]);
        check(c(2, 4), &[1, 1, 0, 0, 1]);
        check(c(0, 4), &[0, 0]);
    }
}
