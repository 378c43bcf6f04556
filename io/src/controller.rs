//! The controller process of a node with several router worker processes
//! (`switchyard start --workers N`): it spawns the workers (re-executing this binary's
//! hidden `worker` subcommand), links every pair of shards in different workers with a
//! Unix stream socket pair, restarts a worker that dies, and forwards SIGINT/SIGTERM.
//!
//! Each worker's standard input is its control socket ([`crate::server::control`]): the
//! controller passes it one end of each of its links (`SCM_RIGHTS`), then `Ready`. When a
//! worker dies, the other workers see end of stream on their links to it and drop what its
//! shards held; the controller logs the death and starts a new worker with the same index
//! and `--rejoin` (its shards rejoin with `Shard::rejoin`), with new links to every running
//! worker, whose ends it passes to those workers over their control sockets. A worker that
//! dies [`RESTART_LIMIT`] times within [`RESTART_WINDOW`] is given up (logged); the others
//! keep serving. A worker that exits with status 0 on its own was asked to stop by someone
//! and is not restarted.
//!
//! Workers report trouble over their control sockets, and the controller restarts the
//! worker at fault (SIGKILL, then the usual restart), so that the router converges again:
//! - `Stalled`: a shard's link to a shard of another (or its own) worker broke at its queue
//!   limit (`options.link_backlog`): that shard stopped reading (a stopped or wedged
//!   process). Both sides already treat each other as down; nobody would ever link two
//!   live workers again, so the stalled side is restarted and rejoins.
//! - `Silent`: a restarted worker's shard is still waiting for a shard's state after
//!   `options.rejoin_timeout`: that shard's worker is restarted (its death also ends the
//!   wait, so the rejoining shard opens for sessions).
//!
//! A report about a worker that was restarted after the report arrived is stale and
//! ignored.
//!
//! Unix-socket endpoints are bound by the controller (a Unix socket cannot be bound once
//! per process with SO_REUSEPORT) and the listening socket is passed to every worker, and
//! every restarted one, over its control socket; all the workers' cores accept on that
//! one socket. The controller removes the socket files when it stops.
//!
//! The node directory's [`WORKERS_FILE`] lists each worker's pid, state and restarts for
//! `switchyard status`; the controller rewrites it on every change.
//!
//! SIGINT/SIGTERM: SIGTERM to every worker (each sends GOODBYE
//! `wamp.close.system_shutdown` and drains), then wait up to [`STOP_DEADLINE`]; stragglers
//! are killed; the controller returns `Ok` (exit 0).
//!
//! It does not route or accept connections (TCP endpoints are bound by each worker; the
//! controller binds each once before starting, only to report a port in use as one clear
//! error).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::NodeConfig;
use crate::server::control::ControlMsg;
use crate::server::{self, control, ServerError, SharedUnix, DRAIN_DEADLINE};

/// Deaths within [`RESTART_WINDOW`] after which a worker is not restarted any more.
pub const RESTART_LIMIT: usize = 5;
/// The window over which a worker's deaths are counted.
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How long shutdown waits for the workers (their own drain deadline plus a margin).
pub const STOP_DEADLINE: Duration = Duration::from_secs(DRAIN_DEADLINE.as_secs() + 5);
/// The file in the node directory that lists the workers for `switchyard status`: one line
/// per worker, `index pid state restarts` (state `running`, `given-up` or `starting`).
pub const WORKERS_FILE: &str = "node.workers";

/// How to start the workers.
#[derive(Clone, Debug)]
pub struct ControllerPlan {
    /// Worker processes.
    pub workers: u16,
    /// Threads (one shard each) per worker.
    pub threads: u16,
    /// The program to run (this binary).
    pub program: PathBuf,
    /// Its arguments: the `worker` subcommand and its options, without `--index` and
    /// `--rejoin`, which the controller adds.
    pub args: Vec<OsString>,
    /// Where to keep the [`WORKERS_FILE`] (the node directory), if anywhere.
    pub node_dir: Option<PathBuf>,
}

impl ControllerPlan {
    /// The plan for `workers` workers of `threads` threads (default: the machine's cores
    /// split between the workers, at least one each).
    pub fn threads_for(workers: u16, threads: Option<usize>) -> u16 {
        let threads = threads.unwrap_or_else(|| server::available_cores() / usize::from(workers));
        u16::try_from(threads.max(1)).unwrap_or(u16::MAX)
    }
}

/// Why the controller stopped with an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum ControllerError {
    /// The configuration cannot be served (a port in use, an unsupported endpoint).
    Server(ServerError),
    /// More shards than the router can number.
    TooManyShards {
        /// Workers asked for.
        workers: u16,
        /// Threads per worker asked for.
        threads: u16,
    },
    /// Signals or the first links could not be set up.
    Setup(io::Error),
    /// Every worker is gone and none will be restarted.
    AllWorkersGone,
}

impl fmt::Display for ControllerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server(e) => write!(f, "{e}"),
            Self::TooManyShards { workers, threads } => write!(
                f,
                "{workers} workers x {threads} threads is more than 65535 shards"
            ),
            Self::Setup(e) => write!(f, "cannot start the workers: {e}"),
            Self::AllWorkersGone => write!(f, "every worker process failed; giving up"),
        }
    }
}

impl std::error::Error for ControllerError {}

/// One worker's place in the node.
struct Slot {
    index: u16,
    /// The running process and the controller's end of its control socket.
    running: Option<(Child, OwnedFd)>,
    /// When the running process started: reports received before are about an earlier
    /// process.
    started: Instant,
    /// When it died recently.
    deaths: VecDeque<Instant>,
    /// Times it was restarted.
    restarts: u32,
    /// Not restarted any more.
    given_up: bool,
}

/// What the controller's loop waits for.
enum Event {
    /// A signal (SIGINT, SIGTERM, SIGCHLD).
    Signal(i32),
    /// A message from worker `worker`'s control socket, received at `at`.
    Report {
        worker: u16,
        at: Instant,
        msg: ControlMsg,
    },
}

/// The controller's state.
struct Controller<'a> {
    plan: &'a ControllerPlan,
    slots: Vec<Slot>,
    count: u16,
    /// The Unix-socket listeners every worker accepts on.
    unix: SharedUnix,
    /// Where the control-socket readers send the workers' reports.
    events: mpsc::Sender<Event>,
}

/// Runs the controller until SIGINT/SIGTERM (then `Ok`) or until no worker is left.
pub fn run(config: &NodeConfig, plan: &ControllerPlan) -> Result<(), ControllerError> {
    let too_many = ControllerError::TooManyShards {
        workers: plan.workers,
        threads: plan.threads,
    };
    let count =
        u16::try_from(u32::from(plan.workers) * u32::from(plan.threads)).map_err(|_| too_many)?;
    server::probe_listeners(config).map_err(ControllerError::Server)?;
    let unix = server::bind_shared_unix(config).map_err(ControllerError::Server)?;
    // Signals first, so that no child's death goes unnoticed.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGCHLD]).map_err(ControllerError::Setup)?;
    let signals_handle = signals.handle();
    let (events, queue) = mpsc::channel();
    let forward = events.clone();
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                if forward.send(Event::Signal(signal)).is_err() {
                    break;
                }
            }
        })
        .map_err(ControllerError::Setup)?;
    let mut ctl = Controller {
        plan,
        slots: (0..plan.workers)
            .map(|index| Slot {
                index,
                running: None,
                started: Instant::now(),
                deaths: VecDeque::new(),
                restarts: 0,
                given_up: false,
            })
            .collect(),
        count,
        unix,
        events,
    };
    tracing::info!(
        workers = plan.workers,
        threads = plan.threads,
        shards = count,
        "controller starting {} worker process(es) of {} thread(s)",
        plan.workers,
        plan.threads
    );
    let result = ctl.serve(&queue);
    signals_handle.close();
    ctl.remove_status();
    result
}

impl Controller<'_> {
    /// Starts the workers, then handles signals and reports until shutdown.
    fn serve(&mut self, queue: &mpsc::Receiver<Event>) -> Result<(), ControllerError> {
        let plan = self.plan;
        let ctl = self;
        for w in 0..plan.workers {
            if let Err(e) = ctl.spawn(w, false) {
                ctl.stop();
                return Err(ControllerError::Setup(e));
            }
        }
        if let Err(e) = ctl.link_all() {
            ctl.stop();
            return Err(ControllerError::Setup(e));
        }
        ctl.write_status();
        while let Ok(event) = queue.recv() {
            match event {
                Event::Signal(SIGCHLD) => {
                    ctl.reap();
                    ctl.write_status();
                    if ctl.slots.iter().all(|s| s.running.is_none()) {
                        return if ctl.slots.iter().any(|s| s.given_up) {
                            Err(ControllerError::AllWorkersGone)
                        } else {
                            tracing::info!("every worker stopped on its own");
                            Ok(())
                        };
                    }
                }
                Event::Signal(signal) => {
                    tracing::info!(signal, "shutting down the workers");
                    ctl.stop();
                    return Ok(());
                }
                Event::Report { worker, at, msg } => ctl.report(worker, at, msg),
            }
        }
        Ok(())
    }

    fn worker_of(&self, shard: u16) -> u16 {
        shard / self.plan.threads
    }

    fn shards_of(&self, worker: u16) -> std::ops::Range<u16> {
        let first = worker * self.plan.threads;
        first..first + self.plan.threads
    }

    /// Starts worker `index` (its control socket as its standard input, the node's cookie
    /// key in its environment).
    fn spawn(&mut self, index: u16, rejoin: bool) -> io::Result<()> {
        let (mine, theirs) = control::pair()?;
        let mut cmd = Command::new(&self.plan.program);
        cmd.args(&self.plan.args)
            .arg("--index")
            .arg(index.to_string())
            .env(server::COOKIE_KEY_ENV, node_cookie_key())
            .stdin(Stdio::from(theirs));
        if rejoin {
            cmd.arg("--rejoin");
        }
        let child = cmd.spawn()?;
        tracing::info!(worker = index, pid = child.id(), rejoin, "worker started");
        // The Unix-socket listeners first: the worker serves them once `Ready` arrives.
        for (transport, listener) in &self.unix.listeners {
            control::send_listener(mine.as_fd(), *transport, listener.as_fd())?;
        }
        // The worker's reports, read on a thread of their own so that the loop waits for
        // signals and reports alike. The thread ends when the worker's end closes.
        let reader = mine.try_clone()?;
        let events = self.events.clone();
        std::thread::Builder::new()
            .name(format!("control-{index}"))
            .spawn(move || read_reports(index, &reader, &events))?;
        let slot = &mut self.slots[usize::from(index)];
        slot.running = Some((child, mine));
        slot.started = Instant::now();
        Ok(())
    }

    /// Acts on a worker's report: restarts the worker of a stalled or silent shard.
    fn report(&mut self, worker: u16, at: Instant, msg: ControlMsg) {
        let (reporter, shard, what) = match msg {
            ControlMsg::Stalled { reporter, shard } => (
                reporter,
                shard,
                "stopped reading its link (the link's queue limit was reached)",
            ),
            ControlMsg::Silent { reporter, shard } => (
                reporter,
                shard,
                "did not answer a restarted shard within the rejoin timeout",
            ),
            other => {
                tracing::warn!(worker, msg = ?other, "unexpected control message from a worker");
                return;
            }
        };
        if shard >= self.count || self.worker_of(reporter) != worker {
            tracing::warn!(
                worker,
                reporter,
                shard,
                "a report that does not fit; ignored"
            );
            return;
        }
        let target = self.worker_of(shard);
        let slot = &self.slots[usize::from(target)];
        let Some((child, _)) = &slot.running else {
            return;
        };
        if slot.started > at {
            // About a process that is already gone: its successor is not at fault.
            return;
        }
        tracing::error!(
            worker = target,
            pid = child.id(),
            shard,
            reporter,
            "shard {shard} (worker {target}) {what}: restarting worker {target}"
        );
        // Its death is reaped on SIGCHLD and it restarts like any dead worker.
        let _ = kill_process(Pid::from_child(child), Signal::KILL);
    }

    /// Rewrites the node directory's [`WORKERS_FILE`] (through a temporary file, so a
    /// reader never sees half of it).
    fn write_status(&self) {
        let Some(dir) = &self.plan.node_dir else {
            return;
        };
        let mut text = String::new();
        for slot in &self.slots {
            let (pid, state) = match &slot.running {
                Some((child, _)) => (child.id(), "running"),
                None if slot.given_up => (0, "given-up"),
                None => (0, "starting"),
            };
            text.push_str(&format!("{} {pid} {state} {}\n", slot.index, slot.restarts));
        }
        let file = dir.join(WORKERS_FILE);
        let temp = dir.join(format!("{WORKERS_FILE}.tmp"));
        if let Err(e) = std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, &file)) {
            tracing::warn!(file = %file.display(), error = %e, "cannot write the workers file");
        }
    }

    fn remove_status(&self) {
        if let Some(dir) = &self.plan.node_dir {
            let _ = std::fs::remove_file(dir.join(WORKERS_FILE));
        }
    }

    /// The first links: every pair of shards in different workers, then `Ready` to all.
    fn link_all(&self) -> io::Result<()> {
        for a in 0..self.count {
            for b in a + 1..self.count {
                if self.worker_of(a) != self.worker_of(b) {
                    self.link(a, b)?;
                }
            }
        }
        for slot in &self.slots {
            if let Some((_, control)) = &slot.running {
                control::send_ready(control.as_fd())?;
            }
        }
        Ok(())
    }

    /// Makes one link between shards `a` and `b` and passes each its end.
    fn link(&self, a: u16, b: u16) -> io::Result<()> {
        let (end_a, end_b) = control::link_pair()?;
        for (local, remote, end) in [(a, b, &end_a), (b, a, &end_b)] {
            let slot = &self.slots[usize::from(self.worker_of(local))];
            if let Some((_, control)) = &slot.running {
                control::send_link(control.as_fd(), local, remote, end.as_fd())?;
            }
        }
        // The controller's copies close here: each worker holds the only descriptor of its
        // end, so a worker's death is end of stream for the other.
        Ok(())
    }

    /// Collects dead workers and restarts them.
    fn reap(&mut self) {
        for w in 0..self.slots.len() {
            let status = match &mut self.slots[w].running {
                Some((child, _)) => match child.try_wait() {
                    Ok(Some(status)) => Some((child.id(), status)),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::error!(worker = w, error = %e, "cannot wait for a worker");
                        None
                    }
                },
                None => None,
            };
            if let Some((pid, status)) = status {
                self.slots[w].running = None;
                self.died(w as u16, pid, status);
            }
        }
    }

    fn died(&mut self, index: u16, pid: u32, status: ExitStatus) {
        if status.success() {
            tracing::info!(
                worker = index,
                pid,
                "worker stopped on its own; not restarted"
            );
            return;
        }
        tracing::error!(worker = index, pid, %status, "worker died");
        let now = Instant::now();
        let slot = &mut self.slots[usize::from(index)];
        slot.deaths.push_back(now);
        while slot
            .deaths
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            slot.deaths.pop_front();
        }
        if slot.deaths.len() >= RESTART_LIMIT {
            slot.given_up = true;
            tracing::error!(
                worker = index,
                "worker died {} times within {} s: not restarting it",
                slot.deaths.len(),
                RESTART_WINDOW.as_secs()
            );
            return;
        }
        if let Err(e) = self.restart(index) {
            tracing::error!(worker = index, error = %e, "cannot restart the worker");
            self.slots[usize::from(index)].given_up = true;
            if let Some((mut child, _)) = self.slots[usize::from(index)].running.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Starts worker `index` again and links its shards to every running worker's.
    fn restart(&mut self, index: u16) -> io::Result<()> {
        self.spawn(index, true)?;
        self.slots[usize::from(index)].restarts += 1;
        for a in self.shards_of(index) {
            for b in 0..self.count {
                let other = self.worker_of(b);
                if other == index || self.slots[usize::from(other)].running.is_none() {
                    continue;
                }
                if let Err(e) = self.link(a, b) {
                    // The other worker may have died meanwhile: its own death is handled
                    // when it is reaped. The new worker then counts its shard as down.
                    tracing::warn!(worker = other, error = %e, "cannot pass a link");
                }
            }
        }
        if let Some((_, control)) = &self.slots[usize::from(index)].running {
            control::send_ready(control.as_fd())?;
        }
        tracing::info!(worker = index, "worker restarted and linked");
        Ok(())
    }

    /// SIGTERM to every worker; waits up to [`STOP_DEADLINE`], then kills the rest.
    fn stop(&mut self) {
        for slot in &self.slots {
            if let Some((child, _)) = &slot.running {
                let _ = kill_process(Pid::from_child(child), Signal::TERM);
            }
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            let mut left = 0;
            for slot in &mut self.slots {
                if let Some((child, _)) = &mut slot.running {
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            tracing::info!(worker = slot.index, %status, "worker stopped");
                            slot.running = None;
                        }
                        Ok(None) => left += 1,
                        Err(_) => slot.running = None,
                    }
                }
            }
            if left == 0 {
                return;
            }
            if Instant::now() > deadline {
                for slot in &mut self.slots {
                    if let Some((mut child, _)) = slot.running.take() {
                        tracing::warn!(
                            worker = slot.index,
                            "worker still runs after {} s: killing it",
                            STOP_DEADLINE.as_secs()
                        );
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Forwards worker `index`'s reports to the controller's loop until its control socket
/// ends (the worker is gone) or the loop is gone.
fn read_reports(index: u16, socket: &OwnedFd, events: &mpsc::Sender<Event>) {
    loop {
        match control::recv(socket) {
            Ok(Some(msg)) => {
                let report = Event::Report {
                    worker: index,
                    at: Instant::now(),
                    msg,
                };
                if events.send(report).is_err() {
                    return;
                }
            }
            Ok(None) | Err(control::ControlError::Io(_)) => return,
            Err(e) => tracing::warn!(worker = index, error = %e, "bad report from a worker"),
        }
    }
}

/// The node's cookie key (hex), the same for every worker this controller starts and
/// restarts, so that a tracking cookie set by one worker verifies on all.
fn node_cookie_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(server::random_key_hex)
}
