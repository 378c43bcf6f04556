//! The `rpc` scenario: callers × callees, open-loop call rate or flat out with a fixed
//! number of calls in flight per caller, payload size. Measures calls per second, latency
//! (from the intended send time in open loop, so coordinated omission is corrected) and
//! errors by URI. Callee `c` registers `com.switchyard.load.echo.c` and answers every
//! invocation with its arguments; caller `k` calls callee `k % callees`. What it does not
//! do: no shared registrations, no progressive results, no cancellation.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use switchyard_core::message::Message;

use crate::payload::{self, Stamp};
use crate::scenario::pubsub::fail;
use crate::scenario::{sleep_until, Shard, Timeline};
use crate::session::{Session, SessionError};
use crate::stats::Stats;
use crate::sys::now_ns;

/// The most calls one caller keeps in flight; bounds its bookkeeping.
pub const MAX_IN_FLIGHT: usize = 65_536;

/// Options of the `rpc` scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Calling sessions.
    pub callers: u64,
    /// Registering sessions.
    pub callees: u64,
    /// Bytes of `args` per call.
    pub payload: usize,
    /// Calls per second over all callers; 0 runs flat out (closed loop).
    pub rate: f64,
    /// Closed loop: calls in flight per caller (1 = sequential round trips).
    pub in_flight: usize,
}

/// The procedure of callee `c`.
pub fn procedure(c: u64) -> String {
    format!("com.switchyard.load.echo.{c}")
}

/// Runs one shard's callees and callers.
pub async fn run_shard(shard: Shard, c: Config) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let mut tasks = Vec::new();
    for k in shard.owned(c.callees) {
        let (shard, stats) = (shard.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            callee(&shard, k, &stats).await
        }));
    }
    for k in shard.owned(c.callers) {
        let (shard, c, stats) = (shard.clone(), c.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            caller(&shard, &c, k, &stats).await
        }));
    }
    for t in tasks {
        t.await;
    }
    Rc::try_unwrap(stats)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| rc.borrow().clone())
}

async fn callee(shard: &Shard, k: u64, stats: &RefCell<Stats>) {
    let t = shard.plan.timeline();
    let t0 = now_ns();
    let mut s = match Session::connect(&shard.target, Some(shard.source(k)), shard.seed(k)).await {
        Ok(x) => x,
        Err(e) => return fail(shard, stats, &e.cause()),
    };
    stats.borrow_mut().connect.record(now_ns() - t0);
    if let Err(e) = s.register(&procedure(k)).await {
        return fail(shard, stats, &e.cause());
    }
    shard.progress.sessions.fetch_add(1, Ordering::Relaxed);
    loop {
        let first = match s.recv_until(t.drain_end).await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => return fail(shard, stats, &e.cause()),
        };
        // Every invocation the last read brought is answered before one write of all the
        // YIELDs: one system call per read, not one per call.
        let mut next: Option<Result<Message, SessionError>> = Some(Ok(first));
        let mut answered = 0;
        while let Some(m) = next {
            match m {
                Ok(Message::Invocation(i)) => {
                    if let Err(e) = s.queue_yield(i.request, i.payload) {
                        return fail(shard, stats, &e.cause());
                    }
                    answered += 1;
                }
                Ok(_) => {}
                Err(e) => return fail(shard, stats, &e.cause()),
            }
            next = s.try_recv();
        }
        if let Err(e) = s.flush().await {
            return fail(shard, stats, &e.cause());
        }
        stats.borrow_mut().add("invocations", answered);
    }
}

async fn caller(shard: &Shard, c: &Config, k: u64, stats: &RefCell<Stats>) {
    let t = shard.plan.timeline();
    let conn = c.callees + k;
    let t0 = now_ns();
    let mut s =
        match Session::connect(&shard.target, Some(shard.source(conn)), shard.seed(conn)).await {
            Ok(x) => x,
            Err(e) => return fail(shard, stats, &e.cause()),
        };
    stats.borrow_mut().connect.record(now_ns() - t0);
    shard.progress.sessions.fetch_add(1, Ordering::Relaxed);
    let ser = shard.target.serializer;
    let proc_ = procedure(k % c.callees.max(1));
    sleep_until(t.setup_end).await;
    let interval = if c.rate > 0.0 {
        Some((1e9 / (c.rate / c.callers.max(1) as f64)).max(1.0))
    } else {
        None
    };
    let offset = interval.map_or(0, |i| (i * k as f64 / c.callers.max(1) as f64) as u64);
    let window = if interval.is_some() {
        MAX_IN_FLIGHT
    } else {
        c.in_flight.clamp(1, MAX_IN_FLIGHT)
    };
    let mut outstanding: HashSet<u64> = HashSet::new();
    let mut seq = 0u64;
    let mut done_sending = false;
    loop {
        let now = now_ns();
        if now >= t.measure_end {
            done_sending = true;
        }
        // Send what is due.
        while !done_sending && outstanding.len() < window {
            let due = match interval {
                Some(i) => t.setup_end + offset + (seq as f64 * i) as u64,
                None => now_ns(),
            };
            if due >= t.measure_end {
                done_sending = true;
                break;
            }
            if due > now_ns() {
                break;
            }
            let stamp = Stamp {
                origin: k,
                seq,
                sent_ns: due,
            };
            match s.queue_call(&proc_, payload::encode(ser, stamp, c.payload)) {
                Ok(rq) => {
                    outstanding.insert(rq.get());
                }
                Err(e) => return fail(shard, stats, &e.cause()),
            }
            seq += 1;
            shard.progress.sent.fetch_add(1, Ordering::Relaxed);
            if interval.is_none() && outstanding.len() >= window {
                break;
            }
        }
        if s.queued() > 0 {
            if let Err(e) = s.flush().await {
                return fail(shard, stats, &e.cause());
            }
        }
        if done_sending && outstanding.is_empty() {
            break;
        }
        let wake = match interval {
            Some(i) if !done_sending => {
                (t.setup_end + offset + (seq as f64 * i) as u64).min(t.drain_end)
            }
            _ => t.drain_end,
        };
        let first = match s.recv_until(wake).await {
            Ok(Some(m)) => m,
            Ok(None) if now_ns() >= t.drain_end => break,
            Ok(None) => continue,
            Err(e) => return fail(shard, stats, &e.cause()),
        };
        // Every reply the last read brought is counted before the next calls go out in
        // one write.
        let mut next = Some(Ok(first));
        while let Some(m) = next {
            if let Err(e) = on_reply(shard, &t, m, &mut outstanding, stats) {
                return fail(shard, stats, &e.cause());
            }
            next = s.try_recv();
        }
    }
    let mut st = stats.borrow_mut();
    st.add("calls_sent", seq);
    for _ in 0..outstanding.len() {
        st.fail("call-unanswered");
    }
}

/// Accounts one message a caller received.
fn on_reply(
    shard: &Shard,
    t: &Timeline,
    m: Result<Message, SessionError>,
    outstanding: &mut HashSet<u64>,
    stats: &RefCell<Stats>,
) -> Result<(), SessionError> {
    match m {
        Ok(Message::Result(r)) => {
            let now = now_ns();
            outstanding.remove(&r.request.get());
            shard.progress.received.fetch_add(1, Ordering::Relaxed);
            let mut st = stats.borrow_mut();
            st.add("calls_ok", 1);
            match payload::decode(&r.payload) {
                Ok(stamp) if stamp.sent_ns >= t.measure_start && stamp.sent_ns < t.measure_end => {
                    st.add("calls_measured", 1);
                    st.latency.record(now.saturating_sub(stamp.sent_ns));
                }
                Ok(_) => {}
                Err(_) => st.fail("foreign-payload"),
            }
        }
        Ok(Message::Error(e)) => {
            outstanding.remove(&e.request.get());
            fail(shard, stats, &format!("error:{}", e.error));
        }
        Ok(_) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}
