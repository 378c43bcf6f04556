//! One router worker process under the controller: it reads its initial links from the
//! control socket (its standard input), then serves its shards like a single-process node,
//! and keeps installing the links the controller makes to restarted workers.
//!
//! Global shard index = worker × threads + thread; the router has workers × threads shards.
//! A restarted worker's shards start with `Shard::rejoin`. The worker shuts down
//! gracefully on SIGINT/SIGTERM (the controller forwards them; the kernel sends SIGTERM
//! when the controller dies) and when the control socket ends (the controller is gone, so
//! nobody would restart or link anything).
//!
//! It does not spawn processes or make links: that is the controller's job
//! ([`crate::controller`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::control::{self, ControlMsg};
use super::{serve, Handed, Layout, ServerError};
use crate::config::NodeConfig;

/// Which worker this process is, as the controller's command line says.
#[derive(Clone, Copy, Debug)]
pub struct WorkerPlan {
    /// The worker's index, from 0.
    pub index: u16,
    /// Workers in the node.
    pub workers: u16,
    /// Threads (one shard each) per worker.
    pub threads: u16,
    /// The worker replaces one that died: its shards rejoin the running router.
    pub rejoin: bool,
    /// The node's epoch on the system-wide monotonic clock, in microseconds (the shards'
    /// time origin, the same in every worker).
    pub epoch_us: u64,
}

/// Runs one worker process: waits for its links on standard input (the control socket),
/// then serves until told to stop.
pub fn run_worker(config: NodeConfig, plan: &WorkerPlan) -> Result<(), ServerError> {
    let count = u32::from(plan.workers) * u32::from(plan.threads);
    let Ok(count) = u16::try_from(count) else {
        return Err(ServerError::Unsupported(format!(
            "{count} shards ({} workers x {} threads; at most 65535)",
            plan.workers, plan.threads
        )));
    };
    if plan.index >= plan.workers || plan.threads == 0 {
        return Err(ServerError::Unsupported(format!(
            "worker {} of {} with {} threads",
            plan.index, plan.workers, plan.threads
        )));
    }
    let layout = Layout {
        worker: plan.index,
        threads: usize::from(plan.threads),
        count,
        rejoin: plan.rejoin,
        epoch_us: Some(plan.epoch_us),
    };
    // If the controller dies (even by SIGKILL), this worker gets SIGTERM and stops
    // gracefully; the end of the control socket says the same a moment later.
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
    {
        tracing::warn!(worker = plan.index, error = %e, "no parent-death signal");
    }
    let control = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(ServerError::Runtime)?;
    let mut remote: Vec<Vec<(u16, OwnedFd)>> = (0..layout.threads).map(|_| Vec::new()).collect();
    let mut unix = Vec::new();
    loop {
        match control::recv(&control) {
            Ok(Some(ControlMsg::Link {
                local,
                remote: to,
                fd,
            })) => match fits(&layout, local, to) {
                Some(thread) => remote[thread].push((to, fd)),
                None => tracing::warn!(local, remote = to, "a link that does not fit; ignored"),
            },
            Ok(Some(ControlMsg::Listener { transport, fd })) => {
                let is_unix = config
                    .transports
                    .get(usize::from(transport))
                    .is_some_and(|t| matches!(t.endpoint, crate::config::Endpoint::Unix(_)));
                if is_unix {
                    unix.push((transport, fd));
                } else {
                    tracing::warn!(
                        transport,
                        "a listener for no Unix-socket transport; ignored"
                    );
                }
            }
            Ok(Some(ControlMsg::Ready)) => break,
            Ok(Some(other)) => tracing::warn!(msg = ?other, "unexpected control message"),
            Ok(None) => {
                return Err(ServerError::Runtime(io::Error::other(
                    "the controller went away before the worker started",
                )))
            }
            Err(e) => return Err(ServerError::Runtime(io::Error::other(e.to_string()))),
        }
    }
    let links: usize = remote.iter().map(Vec::len).sum();
    tracing::info!(
        worker = plan.index,
        pid = std::process::id(),
        shards = layout.threads,
        links,
        rejoin = plan.rejoin,
        "worker starting"
    );
    let handed = Handed {
        remote,
        unix,
        control: Some(control),
    };
    serve(&config, &layout, handed)
}

/// The local thread for a link between shard `local` (this worker's) and shard `remote`
/// (another worker's), if the pair makes sense.
fn fits(layout: &Layout, local: u16, remote: u16) -> Option<usize> {
    let thread = layout.thread_of(local)?;
    (remote < layout.count && layout.thread_of(remote).is_none()).then_some(thread)
}

/// The control thread: hands each later link to the thread that owns its local shard;
/// when the controller goes away, shuts the worker down.
pub(super) fn control_loop(
    layout: &Layout,
    control: &OwnedFd,
    late: &[flume::Sender<(u16, OwnedFd)>],
    shutdowns: &[flume::Sender<()>],
) {
    loop {
        match control::recv(control) {
            Ok(Some(ControlMsg::Link { local, remote, fd })) => {
                match fits(layout, local, remote).and_then(|t| late.get(t)) {
                    Some(tx) => {
                        // A core that is gone (shutting down) needs no more links.
                        let _ = tx.send((remote, fd));
                    }
                    None => tracing::warn!(local, remote, "a link that does not fit; ignored"),
                }
            }
            Ok(Some(ControlMsg::Ready)) => {}
            Ok(Some(other)) => tracing::warn!(msg = ?other, "unexpected control message"),
            Ok(None) => {
                tracing::warn!(
                    worker = layout.worker,
                    "the controller is gone: shutting down"
                );
                break;
            }
            Err(control::ControlError::Io(e)) => {
                tracing::error!(worker = layout.worker, error = %e, "control socket failed: shutting down");
                break;
            }
            Err(e) => tracing::error!(worker = layout.worker, error = %e, "bad control message"),
        }
    }
    for tx in shutdowns {
        let _ = tx.try_send(());
    }
}
