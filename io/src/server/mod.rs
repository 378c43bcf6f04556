//! The thread-per-core server: one pinned monoio runtime per core, each with its own
//! SO_REUSEPORT listener per transport and its own shard, linked to the other cores by
//! bounded FIFO mailboxes.
//!
//! [`run`] binds every listener first (so a port in use is one clear error before anything
//! starts), then starts one thread per core: io_uring where the kernel allows it, monoio's
//! epoll driver otherwise (logged). A connection lives and dies on the core that accepted
//! it, and its session belongs to that core's shard. Cross-core messages travel over one
//! bounded `flume` channel per (from, to) pair, drained in batches; a send wakes the idle
//! receiving runtime through its eventfd (monoio's `sync` feature), so an idle core costs
//! nothing. SIGINT/SIGTERM: every core stops accepting, sends GOODBYE
//! `wamp.close.system_shutdown` to each session, drains writes until [`DRAIN_DEADLINE`],
//! and `run` returns.
//!
//! A fan-out is framed once per transport kind (uncompressed WebSocket, RawSocket) and the
//! same `Bytes` frame is queued on every such connection; a connection writes its batch
//! of queued frames with one vectored write (`writev`).
//!
//! What it does not do yet: TLS, Unix-socket endpoints, several worker processes (the
//! configuration check refuses them).

mod conn;
mod core;
mod writev;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::net::TcpListener;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socket2::{Domain, Socket, Type};
use switchyard_core::router::{Shard, ShardConfig};

use self::core::{Core, LinkOut, BACKLOG_LIMIT, LINK_CAPACITY, MAILBOX_BATCH};
use crate::config::{Endpoint, NodeConfig, Transport, TransportKind, WebSocketRoutes};
use crate::echo::{self, EchoConfig};

/// How long shutdown waits for queued writes after the GOODBYEs.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How often a core checks its shard's timers (call timeouts).
const TICK: Duration = Duration::from_millis(20);

/// Why the server could not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// A listener could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The transport's configuration path.
        transport: String,
        /// The system's reason.
        source: io::Error,
    },
    /// The configuration asks for something this build cannot serve yet.
    Unsupported(String),
    /// A core's thread or runtime could not start.
    Runtime(io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bind {
                addr,
                transport,
                source,
            } => write!(f, "cannot listen on {addr} ({transport}): {source}"),
            Self::Unsupported(what) => write!(f, "not supported by this build: {what}"),
            Self::Runtime(e) => write!(f, "cannot start a core: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Serves `config` until SIGINT or SIGTERM, then shuts down gracefully.
pub fn run(config: NodeConfig) -> Result<(), ServerError> {
    if config.workers > 1 {
        return Err(ServerError::Unsupported(format!(
            "{} worker processes (only 1 for now)",
            config.workers
        )));
    }
    let cores = config.cores.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let count = u16::try_from(cores).unwrap_or(u16::MAX);
    let cores = usize::from(count);

    // Every listener of every core is bound here, before any thread starts.
    let mut listeners: Vec<Vec<(std::net::TcpListener, Rc<Transport>)>> = Vec::new();
    for _ in 0..cores {
        let mut mine = Vec::new();
        for transport in &config.transports {
            let tcp = match &transport.endpoint {
                Endpoint::Tcp(tcp) => tcp,
                Endpoint::Unix(u) => {
                    return Err(ServerError::Unsupported(format!(
                        "unix endpoint {} ({})",
                        u.path.display(),
                        transport.path
                    )))
                }
            };
            let listener = bind(tcp.addr, tcp.backlog).map_err(|source| ServerError::Bind {
                addr: tcp.addr,
                transport: transport.path.clone(),
                source,
            })?;
            mine.push((listener, Rc::new(transport.clone())));
        }
        listeners.push(mine);
    }
    for transport in &config.transports {
        if let Endpoint::Tcp(tcp) = &transport.endpoint {
            tracing::info!(
                "listening on {} ({:?}, {}) on {cores} core(s)",
                tcp.addr,
                transport.kind,
                transport.path
            );
        }
    }
    tracing::info!("monoio driver: {:?}", echo::driver());

    // Links: links[from][to] is the (sender, receiver) pair of one FIFO.
    let mut senders: Vec<Vec<Option<flume::Sender<Bytes>>>> = vec![vec![None; cores]; cores];
    let mut receivers: Vec<Vec<(u16, flume::Receiver<Bytes>)>> =
        (0..cores).map(|_| Vec::new()).collect();
    for (from, row) in senders.iter_mut().enumerate() {
        for (to, slot) in row.iter_mut().enumerate() {
            if from != to {
                let (tx, rx) = flume::bounded(LINK_CAPACITY);
                *slot = Some(tx);
                receivers[to].push((from as u16, rx));
            }
        }
    }
    let mut shutdowns = Vec::new();
    let router = Arc::new(config.router.clone());
    let start = Instant::now();
    let seed = random_seed();
    let mut threads = Vec::new();
    for (index, ((mine, links_out), links_in)) in listeners
        .into_iter()
        .zip(senders)
        .zip(receivers)
        .enumerate()
    {
        let (stop_tx, stop_rx) = flume::bounded::<()>(1);
        shutdowns.push(stop_tx);
        let shard_config = ShardConfig {
            index: index as u16,
            count,
            seed: seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            router: Arc::clone(&router),
        };
        // `Rc` is not `Send`: the thread gets plain data and rebuilds its own handles.
        let mine: Vec<(std::net::TcpListener, Transport)> =
            mine.into_iter().map(|(l, t)| (l, (*t).clone())).collect();
        let thread = std::thread::Builder::new()
            .name(format!("core-{index}"))
            .spawn(move || {
                core_thread(
                    index,
                    cores,
                    shard_config,
                    mine,
                    links_out,
                    links_in,
                    stop_rx,
                    start,
                )
            })
            .map_err(ServerError::Runtime)?;
        threads.push(thread);
    }

    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(ServerError::Runtime)?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "shutting down");
                for tx in &shutdowns {
                    let _ = tx.send(());
                }
            }
        })
        .map_err(ServerError::Runtime)?;
    let mut failure = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(ServerError::Runtime(e)),
            Err(_) => failure = Some(ServerError::Runtime(io::Error::other("a core panicked"))),
        }
    }
    handle.close();
    failure.map_or(Ok(()), Err)
}

/// A non-blocking SO_REUSEPORT listener: every core binds its own on the same address.
fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// A seed for the shards' id generators, from the standard library's per-process random
/// hasher keys (the OS random source), so ids differ between runs.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

#[allow(clippy::too_many_arguments)]
fn core_thread(
    index: usize,
    cores: usize,
    shard_config: ShardConfig,
    listeners: Vec<(std::net::TcpListener, Transport)>,
    links_out: Vec<Option<flume::Sender<Bytes>>>,
    links_in: Vec<(u16, flume::Receiver<Bytes>)>,
    stop: flume::Receiver<()>,
    start: Instant,
) -> io::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if let Err(e) = monoio::utils::bind_to_cpu_set([index % cpus]) {
        tracing::warn!(core = index, error = %e, "cannot pin the thread to a CPU");
    }
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    runtime.block_on(async move {
        let links: Vec<Option<Rc<LinkOut>>> = links_out
            .into_iter()
            .map(|tx| tx.map(|tx| Rc::new(LinkOut::new(tx, BACKLOG_LIMIT))))
            .collect();
        for link in links.iter().flatten() {
            monoio::spawn(Rc::clone(link).pump());
        }
        let core = Rc::new(RefCell::new(Core::new(
            Shard::new(shard_config),
            links,
            start,
        )));
        for (from, rx) in links_in {
            monoio::spawn(mailbox(Rc::clone(&core), from, rx));
        }
        monoio::spawn(ticker(Rc::clone(&core)));
        let mut accepting = Vec::new();
        for (listener, transport) in listeners {
            let listener = TcpListener::from_std(listener)?;
            let task = if transport.kind == TransportKind::WebSocketTestee {
                let WebSocketRoutes::Any(service) = &transport.websocket else {
                    continue;
                };
                let mut echo_config = EchoConfig {
                    connection: service.conn.clone(),
                    opening_timeout: service.opening_timeout,
                    ..EchoConfig::default()
                };
                if service.deflate.is_some() {
                    echo_config.handshake.deflate = service.deflate.clone();
                }
                monoio::spawn(async move {
                    let _ = echo::serve(listener, Rc::new(echo_config)).await;
                })
            } else {
                monoio::spawn(accept(Rc::clone(&core), listener, Rc::new(transport)))
            };
            accepting.push(task);
        }
        tracing::debug!(core = index, cores, "core serving");
        // Serve until the signal thread says stop (or goes away).
        let _ = stop.recv_async().await;
        drop(accepting);
        shutdown(&core).await;
        io::Result::Ok(())
    })
}

/// Accepts connections on one listener and spawns a driver for each.
async fn accept(core: Rc<RefCell<Core>>, listener: TcpListener, transport: Rc<Transport>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) if core.borrow().stopping => drop(stream),
            Ok((stream, peer)) => {
                monoio::spawn(conn::serve(
                    Rc::clone(&core),
                    stream,
                    peer,
                    Rc::clone(&transport),
                ));
            }
            Err(e) => {
                // Out of descriptors or a connection reset before accept: keep serving.
                tracing::warn!(error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Delivers the messages of one incoming link to the shard, in batches.
async fn mailbox(core: Rc<RefCell<Core>>, from: u16, rx: flume::Receiver<Bytes>) {
    while let Ok(first) = rx.recv_async().await {
        let mut c = core.borrow_mut();
        let now = c.now();
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(bytes) = next {
            if let Err(e) = c.shard.handle_peer(now, from, &bytes) {
                tracing::error!(from, error = ?e, "bad message from another core");
            }
            handled += 1;
            next = if handled < MAILBOX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        c.dispatch();
    }
}

/// Runs the shard's timers.
async fn ticker(core: Rc<RefCell<Core>>) {
    loop {
        monoio::time::sleep(TICK).await;
        let mut c = core.borrow_mut();
        let now = c.now();
        if c.shard.poll_timeout().is_some_and(|at| at <= now) {
            c.shard.handle_timeout(now);
            c.dispatch();
        }
    }
}

/// GOODBYE to every session, then wait for the connections to finish or the deadline.
async fn shutdown(core: &Rc<RefCell<Core>>) {
    core.borrow_mut().goodbye_all();
    let deadline = Instant::now() + DRAIN_DEADLINE;
    while core.borrow().connection_count() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}
