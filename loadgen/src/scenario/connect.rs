//! The `connect` scenario: open N sessions at a given rate, join the realm, optionally
//! subscribe each to one topic, hold them, then verify that every one is alive: one extra
//! session publishes a broadcast (acknowledged) that each must receive, and calls the
//! router's `wamp.session.count` where it has one. With `call_every`, one more session
//! registers [`SAMPLE_PROCEDURE`] and every `call_every`-th session calls it once it got the
//! broadcast (a sample of RPCs through the loaded router). Reports the connection rate,
//! connect latency, failures by cause and this process's RSS. What it does not do: no traffic
//! during the hold (idle sessions are the point), no reconnection of failed sessions.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use switchyard_core::message::{Message, Payload};

use crate::scenario::pubsub::fail;
use crate::scenario::{sleep_until, Shard};
use crate::session::Session;
use crate::stats::Stats;
use crate::sys::now_ns;

/// The topic the broadcast goes to.
pub const BROADCAST_TOPIC: &str = "com.switchyard.load.broadcast";

/// Sessions of one executor that may be connecting, handshaking and subscribing at once:
/// past it, a session waits for its turn instead of piling up handshakes a busy router
/// cannot answer before the connect timeout (its wait counts in the connect latency).
pub const MAX_CONNECTING: u64 = 256;

/// The procedure the sampled sessions call.
pub const SAMPLE_PROCEDURE: &str = "com.switchyard.load.sample";

/// Options of the `connect` scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    /// Sessions to open.
    pub sessions: u64,
    /// New sessions per second, over all processes.
    pub rate: f64,
    /// Subscribe every session to the broadcast topic (otherwise only the session count
    /// verifies them).
    pub subscribe: bool,
    /// Seconds one connection attempt may take.
    pub connect_timeout_secs: f64,
    /// Every `call_every`-th session calls [`SAMPLE_PROCEDURE`] after the broadcast
    /// (0 = no calls).
    #[serde(default)]
    pub call_every: u64,
}

impl Config {
    /// How many sessions call [`SAMPLE_PROCEDURE`]: sessions 0, `call_every`, ….
    pub fn sampled(&self) -> u64 {
        if self.call_every == 0 {
            0
        } else {
            self.sessions.div_ceil(self.call_every)
        }
    }

    fn samples(&self, i: u64) -> bool {
        self.call_every > 0 && i % self.call_every == 0
    }
}

/// Runs one shard's sessions; shard 0 also runs the broadcaster.
pub async fn run_shard(shard: Shard, c: Config) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let gate = Rc::new(glommio::sync::Semaphore::new(MAX_CONNECTING));
    let mut tasks = Vec::new();
    for i in shard.owned(c.sessions) {
        let (shard, c, stats, gate) = (shard.clone(), c.clone(), stats.clone(), gate.clone());
        tasks.push(glommio::spawn_local(async move {
            session(&shard, &c, i, &stats, &gate).await
        }));
    }
    if shard.index == 0 {
        let (shard, c, stats) = (shard.clone(), c.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            broadcaster(&shard, &c, &stats).await
        }));
    }
    // The callee lives on the last shard, so that with several processes (of the load
    // generator and, by hashing, of the router) the sampled calls cross between them.
    if c.call_every > 0 && shard.index + 1 == shard.count {
        let (shard, c, stats) = (shard.clone(), c.clone(), stats.clone());
        tasks.push(glommio::spawn_local(async move {
            sample_callee(&shard, &c, &stats).await
        }));
    }
    let t = shard.plan.timeline();
    sleep_until(t.measure_end).await;
    if let Some(rss) = rss_kib(None) {
        // Each executor of a process reads the same RSS; only executor 0 of each process
        // reports it so that the sum over processes is right.
        if shard.index % shard.plan.common.cores.max(1) as u64 == 0 {
            stats.borrow_mut().add("loadgen_rss_kib", rss);
        }
    }
    for t in tasks {
        t.await;
    }
    Rc::try_unwrap(stats)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| rc.borrow().clone())
}

async fn session(
    shard: &Shard,
    c: &Config,
    i: u64,
    stats: &RefCell<Stats>,
    gate: &glommio::sync::Semaphore,
) {
    let t = shard.plan.timeline();
    let due = t.start + (i as f64 * 1e9 / c.rate.max(1e-3)) as u64;
    sleep_until(due).await;
    let t0 = now_ns();
    // The semaphore is never closed, so acquiring only waits.
    let permit = gate.acquire_permit(1).await;
    let connect = Session::connect(&shard.target, Some(shard.source(i)), shard.seed(i));
    let timeout = (c.connect_timeout_secs * 1e9) as u64;
    let res = futures_lite::future::or(async { Some(connect.await) }, async {
        glommio::timer::sleep(std::time::Duration::from_nanos(timeout)).await;
        None
    })
    .await;
    let mut s = match res {
        Some(Ok(s)) => s,
        Some(Err(e)) => return fail(shard, stats, &format!("connect:{}", e.cause())),
        None => return fail(shard, stats, "connect:timeout"),
    };
    stats.borrow_mut().connect.record(now_ns() - t0);
    if c.subscribe {
        if let Err(e) = s.subscribe(BROADCAST_TOPIC).await {
            return fail(shard, stats, &format!("subscribe:{}", e.cause()));
        }
    }
    drop(permit);
    shard.progress.sessions.fetch_add(1, Ordering::Relaxed);
    stats.borrow_mut().add("sessions_open", 1);
    if now_ns() > t.setup_end {
        stats.borrow_mut().fail("setup-late");
    }
    // Hold, then wait for the broadcast (published at measure_end); stay joined until
    // drain_end so that the router's session count, taken after the broadcast, sees us.
    let mut got = false;
    loop {
        match s.recv_until(t.drain_end).await {
            Ok(Some(Message::Event(_))) => {
                got = true;
                shard.progress.received.fetch_add(1, Ordering::Relaxed);
                if c.samples(i) {
                    sample_call(&mut s, t.drain_end, stats).await;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return fail(shard, stats, &format!("hold:{}", e.cause())),
        }
    }
    let mut st = stats.borrow_mut();
    st.add("sessions_alive_at_end", 1);
    if got {
        st.add("broadcast_received", 1);
    } else if c.subscribe {
        st.fail("broadcast-missing");
    }
}

async fn broadcaster(shard: &Shard, c: &Config, stats: &RefCell<Stats>) {
    let t = shard.plan.timeline();
    let i = c.sessions;
    let mut s = match Session::connect(&shard.target, Some(shard.source(i)), shard.seed(i)).await {
        Ok(s) => s,
        Err(e) => return fail(shard, stats, &format!("broadcaster:{}", e.cause())),
    };
    sleep_until(t.measure_end).await;
    let payload = Payload::new(
        shard.target.serializer,
        Some(match shard.target.serializer {
            switchyard_core::codec::Serializer::Json => {
                bytes::Bytes::from_static(b"[\"broadcast\"]")
            }
            switchyard_core::codec::Serializer::MsgPack => {
                bytes::Bytes::from_static(b"\x91\xa9broadcast")
            }
        }),
        None,
    );
    match s.publish_acknowledged(BROADCAST_TOPIC, payload).await {
        Ok(_) => stats.borrow_mut().add("broadcast_published", 1),
        Err(e) => fail(shard, stats, &format!("broadcast:{}", e.cause())),
    }
    // The router's own count, where it offers the meta API; absence is not a failure.
    let deadline = t.drain_end;
    let call = s.call("wamp.session.count", Payload::empty());
    let r = futures_lite::future::or(async { Some(call.await) }, async {
        sleep_until(deadline).await;
        None
    })
    .await;
    if let Some(Ok(r)) = r {
        if let Some(n) = r
            .payload
            .args()
            .and_then(|a| first_uint(shard.target.serializer, a))
        {
            stats.borrow_mut().add("router_session_count", n);
        }
    }
}

/// One sampled call, bounded by `deadline`; counts `sample_calls_ok` or a failure.
async fn sample_call(s: &mut Session, deadline: u64, stats: &RefCell<Stats>) {
    let call = s.call(SAMPLE_PROCEDURE, Payload::empty());
    let r = futures_lite::future::or(async { Some(call.await) }, async {
        sleep_until(deadline).await;
        None
    })
    .await;
    match r {
        Some(Ok(_)) => stats.borrow_mut().add("sample_calls_ok", 1),
        Some(Err(e)) => stats
            .borrow_mut()
            .fail(&format!("sample-call:{}", e.cause())),
        None => stats.borrow_mut().fail("sample-call:timeout"),
    }
}

/// The session that registers [`SAMPLE_PROCEDURE`] and answers it until the drain ends.
async fn sample_callee(shard: &Shard, c: &Config, stats: &RefCell<Stats>) {
    let t = shard.plan.timeline();
    let i = c.sessions + 1;
    let mut s = match Session::connect(&shard.target, Some(shard.source(i)), shard.seed(i)).await {
        Ok(s) => s,
        Err(e) => return fail(shard, stats, &format!("sample-callee:{}", e.cause())),
    };
    if let Err(e) = s.register(SAMPLE_PROCEDURE).await {
        return fail(shard, stats, &format!("sample-callee:{}", e.cause()));
    }
    loop {
        match s.recv_until(t.drain_end).await {
            Ok(Some(Message::Invocation(inv))) => {
                let sent = s.queue_yield(inv.request, Payload::empty());
                let flushed = match sent {
                    Ok(()) => s.flush().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = flushed {
                    return fail(shard, stats, &format!("sample-callee:{}", e.cause()));
                }
                stats.borrow_mut().add("sample_invocations", 1);
            }
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => return fail(shard, stats, &format!("sample-callee:{}", e.cause())),
        }
    }
}

fn first_uint(ser: switchyard_core::codec::Serializer, args: &[u8]) -> Option<u64> {
    match ser {
        switchyard_core::codec::Serializer::Json => {
            serde_json::from_slice::<Vec<serde_json::Value>>(args)
                .ok()?
                .first()?
                .as_u64()
        }
        switchyard_core::codec::Serializer::MsgPack => {
            let mut rd = args;
            rmp::decode::read_array_len(&mut rd).ok()?;
            rmp::decode::read_int(&mut rd).ok()
        }
    }
}

/// The resident set size of `pid` (this process when `None`), in KiB.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time (user + system) of `pid` so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces, start after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `pid` and all its descendants (a router's worker processes), from `/proc`.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
                .and_then(|x| x.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}
