//! Scenarios and the machinery that runs them: pinned glommio executors in this process,
//! several worker processes of its own past the per-process file limit, one shared
//! timeline, a live progress line, and statistics merged across executors and processes.
//!
//! Every process and executor gets the same [`Plan`]; the global shard index (worker ×
//! cores + executor) picks which sessions it owns (session `i` belongs to shard
//! `i % shards`). Phases are absolute times on the system-wide monotonic clock
//! ([`crate::sys::now_ns`]), so processes agree on them without talking: setup (connect,
//! subscribe, register) until `setup_end`, warm-up until `measure_start`, the measured
//! window until `measure_end`, then a drain until `drain_end`, when everything stops by
//! itself. What it does not do: no scenario logic here (see the submodules), no printing
//! of results (see [`crate::report`]).

pub mod capacity;
pub mod connect;
pub mod pubsub;
pub mod rpc;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use serde::{Deserialize, Serialize};
use switchyard_core::codec::Serializer;

use crate::stats::Stats;
use crate::sys::now_ns;
use crate::target::Target;

/// Options every scenario shares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Common {
    /// The router URL (`ws://…` or `rs://…`).
    pub url: String,
    /// The realm.
    pub realm: String,
    /// `json` or `msgpack`.
    pub serializer: String,
    /// Executors per process.
    pub cores: usize,
    /// CPUs to pin executors to (all online CPUs when empty).
    pub cpus: Vec<usize>,
    /// Seconds for connecting and subscribing before the load starts.
    pub setup_secs: f64,
    /// Seconds of load before measuring.
    pub warmup_secs: f64,
    /// Seconds measured.
    pub duration_secs: f64,
    /// Seconds after the window for the last messages to arrive.
    pub drain_secs: f64,
    /// Source addresses in 127.0.0.0/8 to spread connections over.
    pub sources: u64,
    /// Seed for WebSocket keys and masks.
    pub seed: u64,
    /// Microseconds each executor spins looking for work before it sleeps (0: sleeps at
    /// once). Spinning removes the wake-up latency of an idle core, at the price of
    /// that core's time: for a core dedicated to the load generator.
    #[serde(default)]
    pub spin_us: u64,
}

impl Common {
    /// The parsed target.
    pub fn target(&self) -> anyhow::Result<Target> {
        let ser = match self.serializer.as_str() {
            "json" => Serializer::Json,
            "msgpack" => Serializer::MsgPack,
            other => anyhow::bail!("unknown serializer {other:?} (json or msgpack)"),
        };
        Ok(Target::parse(&self.url, &self.realm, ser)?)
    }
}

/// Which scenario, with its own options.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Scenario {
    /// Open and hold sessions, then verify them.
    Connect(connect::Config),
    /// Publishers × subscribers × topics.
    PubSub(pubsub::Config),
    /// Callers × callees.
    Rpc(rpc::Config),
}

impl Scenario {
    /// Connections this scenario opens in total (for limits and worker counts).
    pub fn connections(&self) -> u64 {
        match self {
            Self::Connect(c) => c.sessions + 1 + u64::from(c.call_every > 0),
            Self::PubSub(c) => c.publishers + c.subscribers,
            Self::Rpc(c) => c.callers + c.callees,
        }
    }

    /// The scenario's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::PubSub(_) => "pubsub",
            Self::Rpc(_) => "rpc",
        }
    }
}

/// Everything a process needs to run its share.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Shared options.
    pub common: Common,
    /// The scenario.
    pub scenario: Scenario,
    /// This process's index among the workers.
    pub worker: usize,
    /// Worker processes in all.
    pub workers: usize,
    /// The start of setup, on the system-wide monotonic clock.
    pub t_start_ns: u64,
}

/// The phase boundaries of a plan, in nanoseconds of the monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// Setup begins.
    pub start: u64,
    /// Setup must be done; load begins.
    pub setup_end: u64,
    /// Warm-up ends; measuring begins.
    pub measure_start: u64,
    /// Measuring ends; no new load.
    pub measure_end: u64,
    /// Everything stops.
    pub drain_end: u64,
}

fn secs(s: f64) -> u64 {
    (s.max(0.0) * 1e9) as u64
}

impl Plan {
    /// The plan's phase boundaries.
    pub fn timeline(&self) -> Timeline {
        let c = &self.common;
        let setup_end = self.t_start_ns + secs(c.setup_secs);
        let measure_start = setup_end + secs(c.warmup_secs);
        let measure_end = measure_start + secs(c.duration_secs);
        Timeline {
            start: self.t_start_ns,
            setup_end,
            measure_start,
            measure_end,
            drain_end: measure_end + secs(c.drain_secs),
        }
    }
}

/// Live counters the progress line shows, shared by the executors of one process.
#[derive(Debug, Default)]
pub struct Progress {
    /// Sessions joined.
    pub sessions: AtomicU64,
    /// Messages sent (publications or calls).
    pub sent: AtomicU64,
    /// Messages received (events or results).
    pub received: AtomicU64,
    /// Failures.
    pub failures: AtomicU64,
}

/// A snapshot of [`Progress`], as workers send it to the parent.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct ProgressSnapshot {
    /// Sessions joined.
    pub sessions: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Failures.
    pub failures: u64,
}

impl Progress {
    /// The current values.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            sessions: self.sessions.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// What one executor is given.
#[derive(Clone)]
pub struct Shard {
    /// The plan.
    pub plan: Rc<Plan>,
    /// The target.
    pub target: Rc<Target>,
    /// Global shard index.
    pub index: u64,
    /// Shards in all processes.
    pub count: u64,
    /// Live counters.
    pub progress: Arc<Progress>,
}

impl Shard {
    /// The global indices in `0..n` this shard owns.
    pub fn owned(&self, n: u64) -> impl Iterator<Item = u64> {
        (self.index..n).step_by(self.count.max(1) as usize)
    }

    /// The source address for connection `i` (global numbering).
    pub fn source(&self, i: u64) -> std::net::Ipv4Addr {
        crate::sys::source_address(i, self.plan.common.sources)
    }

    /// A per-connection seed.
    pub fn seed(&self, i: u64) -> u64 {
        self.plan.common.seed ^ (i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

/// Sleeps until `t_ns` on the monotonic clock.
pub async fn sleep_until(t_ns: u64) {
    let now = now_ns();
    if t_ns > now {
        glommio::timer::sleep(Duration::from_nanos(t_ns - now)).await;
    }
}

/// Runs this process's share of `plan` on `plan.common.cores` pinned executors and returns
/// the merged statistics.
pub fn run_local(plan: &Plan, progress: Arc<Progress>) -> anyhow::Result<Stats> {
    let target = plan.common.target()?;
    let cores = plan.common.cores.max(1);
    let cpus = if plan.common.cpus.is_empty() {
        None
    } else {
        let wanted = plan.common.cpus.clone();
        Some(
            CpuSet::online()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .filter(move |l| wanted.contains(&l.cpu)),
        )
    };
    let next = Arc::new(AtomicUsize::new(0));
    let plan2 = plan.clone();
    // Several processes without a CPU list would each pin their executors to the same
    // first CPUs of the topology; unpinned, the kernel spreads them.
    let placement = if cpus.is_none() && plan.workers > 1 {
        PoolPlacement::Unbound(cores)
    } else {
        PoolPlacement::MaxSpread(cores, cpus)
    };
    let mut builder = LocalExecutorPoolBuilder::new(placement).name("switchyard-load");
    if plan.common.spin_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(plan.common.spin_us));
    }
    let handles = builder
        .on_all_shards(move || {
            let local = next.fetch_add(1, Ordering::SeqCst) as u64;
            let plan = plan2.clone();
            let target = target.clone();
            let progress = progress.clone();
            async move {
                let count = (plan.workers * plan.common.cores.max(1)) as u64;
                let shard = Shard {
                    index: plan.worker as u64 * plan.common.cores.max(1) as u64 + local,
                    count,
                    plan: Rc::new(plan),
                    target: Rc::new(target),
                    progress,
                };
                match shard.plan.scenario.clone() {
                    Scenario::Connect(c) => connect::run_shard(shard, c).await,
                    Scenario::PubSub(c) => pubsub::run_shard(shard, c).await,
                    Scenario::Rpc(c) => rpc::run_shard(shard, c).await,
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start executors: {e}"))?;
    let mut total = Stats::default();
    for r in handles.join_all() {
        match r {
            Ok(s) => total.merge(&s),
            Err(e) => anyhow::bail!("an executor failed: {e}"),
        }
    }
    Ok(total)
}

/// A line a worker prints on stdout.
#[derive(Debug, Serialize, Deserialize)]
pub enum WorkerLine {
    /// Live counters.
    Progress(ProgressSnapshot),
    /// The final statistics.
    Done(Box<Stats>),
}

/// The body of `switchyard-load worker PLAN`: runs the share, printing progress and the
/// result as JSON lines on stdout.
pub fn worker_main(plan: &Plan) -> anyhow::Result<()> {
    let progress = Arc::new(Progress::default());
    let p2 = progress.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let ticker = std::thread::spawn(move || {
        while !d2.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(500));
            let line = serde_json::to_string(&WorkerLine::Progress(p2.snapshot()));
            if let Ok(line) = line {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    });
    let stats = run_local(plan, progress);
    done.store(true, Ordering::SeqCst);
    let _ = ticker.join();
    let stats = stats?;
    let line = serde_json::to_string(&WorkerLine::Done(Box::new(stats)))?;
    println!("{line}");
    Ok(())
}

/// Runs `plan` over `workers` processes (this one alone when 1), showing a live progress
/// line on stderr, and returns the merged statistics.
pub fn run(mut plan: Plan, workers: usize) -> anyhow::Result<Stats> {
    plan.workers = workers.max(1);
    let timeline = plan.timeline();
    let snapshots = Arc::new(Mutex::new(vec![ProgressSnapshot::default(); plan.workers]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let printer = {
        let (snapshots, stop) = (snapshots.clone(), stop.clone());
        std::thread::spawn(move || progress_line(&snapshots, &stop, timeline))
    };
    let result = if plan.workers == 1 {
        let progress = Arc::new(Progress::default());
        let feeder = {
            let (p, snapshots, stop) = (progress.clone(), snapshots.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(mut s) = snapshots.lock() {
                        s[0] = p.snapshot();
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        let r = run_local(&plan, progress);
        stop.store(true, Ordering::SeqCst);
        let _ = feeder.join();
        r
    } else {
        run_workers(&plan, &snapshots)
    };
    stop.store(true, Ordering::SeqCst);
    let _ = printer.join();
    eprintln!();
    result
}

fn run_workers(
    plan: &Plan,
    snapshots: &Arc<Mutex<Vec<ProgressSnapshot>>>,
) -> anyhow::Result<Stats> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for w in 0..plan.workers {
        let mut p = plan.clone();
        p.worker = w;
        let mut cmd = Command::new(&exe);
        cmd.arg("worker")
            .arg(serde_json::to_string(&p)?)
            .stdout(Stdio::piped())
            .stdin(Stdio::null());
        crate::sys::die_with_parent(&mut cmd, libc::SIGKILL);
        let child = cmd.spawn()?;
        children.push(child);
    }
    let mut readers = Vec::new();
    for (w, child) in children.iter_mut().enumerate() {
        let Some(stdout) = child.stdout.take() else {
            anyhow::bail!("worker {w} has no stdout");
        };
        let snapshots = snapshots.clone();
        readers.push(std::thread::spawn(move || {
            let mut done = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<WorkerLine>(&line) {
                    Ok(WorkerLine::Progress(p)) => {
                        if let Ok(mut s) = snapshots.lock() {
                            s[w] = p;
                        }
                    }
                    Ok(WorkerLine::Done(s)) => done = Some(*s),
                    Err(_) => eprintln!("worker {w}: {line}"),
                }
            }
            done
        }));
    }
    let mut total = Stats::default();
    for (w, (child, reader)) in children.iter_mut().zip(readers).enumerate() {
        let status = child.wait()?;
        match reader.join() {
            Ok(Some(s)) => total.merge(&s),
            _ => {
                total.fail("worker-died");
                eprintln!("worker {w} ended ({status}) without statistics");
            }
        }
    }
    Ok(total)
}

fn progress_line(
    snapshots: &Mutex<Vec<ProgressSnapshot>>,
    stop: &std::sync::atomic::AtomicBool,
    t: Timeline,
) {
    let mut last = ProgressSnapshot::default();
    let mut last_t = now_ns();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(1000));
        let sum = snapshots.lock().map(|s| {
            s.iter()
                .fold(ProgressSnapshot::default(), |a, b| ProgressSnapshot {
                    sessions: a.sessions + b.sessions,
                    sent: a.sent + b.sent,
                    received: a.received + b.received,
                    failures: a.failures + b.failures,
                })
        });
        let Ok(sum) = sum else { return };
        let now = now_ns();
        let dt = (now - last_t) as f64 / 1e9;
        let phase = if now < t.setup_end {
            "setup"
        } else if now < t.measure_start {
            "warm-up"
        } else if now < t.measure_end {
            "measure"
        } else {
            "drain"
        };
        eprint!(
            "\r[{phase:>7}] {:>6.1}s sessions {:>7} sent/s {:>9.0} recv/s {:>9.0} failures {:>5}   ",
            (now.saturating_sub(t.start)) as f64 / 1e9,
            sum.sessions,
            (sum.sent - last.sent.min(sum.sent)) as f64 / dt,
            (sum.received - last.received.min(sum.received)) as f64 / dt,
            sum.failures,
        );
        last = sum;
        last_t = now;
    }
}
