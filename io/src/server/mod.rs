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
//! Worker processes (`--workers N`, see [`crate::controller`]): each worker runs this same
//! server for its own shards (global shard index = worker × threads + thread) and
//! reaches the shards of the other workers over Unix socket links ([`link`]) that the
//! controller makes and passes over the worker's control socket ([`control`]).
//!
//! TLS endpoints terminate TLS with rustls in the connection driver (`tls.rs`,
//! `stream.rs`); key and certificate files are loaded before anything binds, so a missing
//! or invalid PEM file is one clear error naming its configuration key.
//!
//! Unix-socket endpoints: a Unix socket cannot be bound once per core with SO_REUSEPORT,
//! so it is bound once, before the cores start, and every core accepts on its own
//! duplicate of that one listening descriptor (one accept queue: the kernel hands each
//! connection to one waiting core). A socket file left by an earlier run is removed when
//! nothing answers on it (Crossbar removes whatever is there); a live socket or a file that
//! is not a socket is a clear error. The socket file is removed when the server stops.
//! With worker processes the controller binds it ([`bind_shared_unix`]) and passes the
//! listening socket to every worker, whose cores all accept on it.
//!
//! Supervision (worker processes only): a link that breaks at its queue bound
//! (`options.link_backlog`) is reported to the controller as a stalled shard, and a
//! restarted worker's shard that still waits for another shard's state after
//! `options.rejoin_timeout` reports that shard as silent; the controller restarts the
//! worker at fault.

mod conn;
pub(crate) mod control;
mod core;
mod link;
mod spin;
mod stream;
mod tls;
mod worker;
mod writev;

pub use self::tls::TlsError;
pub use worker::{run_worker, WorkerPlan};

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::net::{TcpListener, UnixListener};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socket2::{Domain, Socket, Type};
use switchyard_core::router::{AuthConfig, Configured, Entropy, Shard, ShardConfig};

use self::core::{Core, Link, LinkOut, LINK_CAPACITY, MAILBOX_BATCH};
use self::stream::{Link as Conn, Stream};
use crate::config::{Endpoint, NodeConfig, Transport, TransportKind, WebSocketRoutes};
use crate::echo::{self, EchoConfig};
use crate::ws::cookie::{self, CookieConfig, CookieKey};

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
    /// A Unix socket could not be bound.
    BindUnix {
        /// The socket's path.
        path: PathBuf,
        /// The transport's configuration path.
        transport: String,
        /// The reason.
        source: io::Error,
    },
    /// A TLS key or certificate file is missing or unusable.
    Tls(TlsError),
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
            Self::BindUnix {
                path,
                transport,
                source,
            } => write!(
                f,
                "cannot listen on Unix socket {} ({transport}): {source}",
                path.display()
            ),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Unsupported(what) => write!(f, "not supported by this build: {what}"),
            Self::Runtime(e) => write!(f, "cannot start a core: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Serves `config` in this process until SIGINT or SIGTERM, then shuts down gracefully.
/// Several worker processes are the controller's business ([`crate::controller`]).
pub fn run(config: NodeConfig) -> Result<(), ServerError> {
    if config.workers > 1 {
        return Err(ServerError::Unsupported(format!(
            "{} worker processes in one process (the controller starts them)",
            config.workers
        )));
    }
    let cores = config.cores.unwrap_or_else(available_cores);
    let count = u16::try_from(cores).unwrap_or(u16::MAX);
    let layout = Layout {
        worker: 0,
        threads: usize::from(count),
        count,
        rejoin: false,
        epoch_us: None,
    };
    let handed = Handed {
        remote: (0..layout.threads).map(|_| Vec::new()).collect(),
        unix: Vec::new(),
        control: None,
    };
    serve(&config, &layout, handed)
}

/// What a worker process got from the controller before it serves (nothing, in a
/// single-process node).
pub(crate) struct Handed {
    /// `remote[t]`: thread `t`'s initial links to shards of other workers.
    pub(crate) remote: Vec<Vec<(u16, OwnedFd)>>,
    /// The listening sockets of the Unix-socket transports, by transport index.
    pub(crate) unix: Vec<(u16, OwnedFd)>,
    /// The worker's control socket: later `Link` messages arrive on it, and reports go
    /// out on it.
    pub(crate) control: Option<OwnedFd>,
}

/// The Unix-socket listeners a controller binds for all its workers, by transport index;
/// the socket files are removed when this is dropped.
pub(crate) struct SharedUnix {
    /// (transport index, listening socket).
    pub(crate) listeners: Vec<(u16, std::os::unix::net::UnixListener)>,
    _files: SocketFiles,
}

/// Binds every Unix-socket endpoint of `config` once (the controller, for its workers).
pub(crate) fn bind_shared_unix(config: &NodeConfig) -> Result<SharedUnix, ServerError> {
    let mut files = SocketFiles(Vec::new());
    let mut listeners = Vec::new();
    for (i, transport) in config.transports.iter().enumerate() {
        let Endpoint::Unix(u) = &transport.endpoint else {
            continue;
        };
        let index = u16::try_from(i).map_err(|_| {
            ServerError::Unsupported(format!("more than 65535 transports ({})", transport.path))
        })?;
        let listener = bind_unix(&u.path, u.backlog).map_err(|source| ServerError::BindUnix {
            path: u.path.clone(),
            transport: transport.path.clone(),
            source,
        })?;
        files.0.push(u.path.clone());
        tracing::info!(
            "listening on Unix socket {} ({:?}, {}) for every worker",
            u.path.display(),
            transport.kind,
            transport.path
        );
        listeners.push((index, listener));
    }
    Ok(SharedUnix {
        listeners,
        _files: files,
    })
}

/// The cores the machine offers this process.
pub(crate) fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Where one process sits in the router: which shards it runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// This worker's index (0 without worker processes).
    pub(crate) worker: u16,
    /// Threads (one shard each) in this process.
    pub(crate) threads: usize,
    /// Shards in the whole router.
    pub(crate) count: u16,
    /// The worker was restarted: its shards rejoin a running router.
    pub(crate) rejoin: bool,
    /// The node's epoch (the controller's start) on the system-wide monotonic clock, in
    /// microseconds, so that every worker's shards count time from the same instant;
    /// `None`: this process's start.
    pub(crate) epoch_us: Option<u64>,
}

/// The system-wide monotonic clock (`CLOCK_MONOTONIC`, the clock `Instant` reads on
/// Linux), in microseconds: the same in every process of the machine.
pub(crate) fn monotonic_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000).saturating_add(nanos / 1000)
}

/// The `Instant` of the monotonic clock reading `epoch_us` (now, if that is in the future
/// or not representable).
fn epoch_instant(epoch_us: u64) -> Instant {
    let now = Instant::now();
    let since = Duration::from_micros(monotonic_us().saturating_sub(epoch_us));
    now.checked_sub(since).unwrap_or(now)
}

impl Layout {
    /// The global index of this process's thread `thread`.
    fn shard(&self, thread: usize) -> u16 {
        // Checked by the caller: every shard index fits u16.
        self.worker * self.threads as u16 + thread as u16
    }

    /// The thread of this process that runs global shard `shard`, if any.
    pub(crate) fn thread_of(&self, shard: u16) -> Option<usize> {
        let first = usize::from(self.shard(0));
        let shard = usize::from(shard);
        (first..first + self.threads)
            .contains(&shard)
            .then(|| shard - first)
    }
}

/// Checks that every TCP listener of `config` can be bound (then lets go of it) and that
/// its TLS files are usable, so that a port in use or a bad file is one clear error before
/// any worker process starts (Unix sockets: see [`bind_shared_unix`]).
pub(crate) fn probe_listeners(config: &NodeConfig) -> Result<(), ServerError> {
    tls_configs(config)?;
    for transport in &config.transports {
        let Endpoint::Tcp(tcp) = &transport.endpoint else {
            continue;
        };
        bind(tcp.addr, tcp.backlog).map_err(|source| ServerError::Bind {
            addr: tcp.addr,
            transport: transport.path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Serves the shards of `layout` until SIGINT or SIGTERM (or, in a worker process, until
/// the controller goes away), with what the controller `handed` over: each thread's
/// initial links, the Unix-socket listeners, and the control socket, whose later `Link`
/// messages are handed to the thread that owns the local shard.
pub(crate) fn serve(
    config: &NodeConfig,
    layout: &Layout,
    handed: Handed,
) -> Result<(), ServerError> {
    let cores = layout.threads;
    let count = usize::from(layout.count);
    let Handed {
        remote,
        unix: mut inherited,
        control,
    } = handed;
    let control = control.map(Arc::new);

    // TLS files are read first: a bad file is an error before anything binds.
    let tls_configs = tls_configs(config)?;
    // Unix sockets: bound once, shared by every core (see the module doc).
    let mut socket_files = SocketFiles(Vec::new());
    let mut unix = Vec::new();
    for (i, transport) in config.transports.iter().enumerate() {
        unix.push(match &transport.endpoint {
            Endpoint::Unix(u) => {
                if let Some(at) = inherited.iter().position(|(t, _)| usize::from(*t) == i) {
                    // The controller bound it and owns its file.
                    let fd = inherited.swap_remove(at).1;
                    unix.push(Some(std::os::unix::net::UnixListener::from(fd)));
                    continue;
                }
                let listener =
                    bind_unix(&u.path, u.backlog).map_err(|source| ServerError::BindUnix {
                        path: u.path.clone(),
                        transport: transport.path.clone(),
                        source,
                    })?;
                socket_files.0.push(u.path.clone());
                Some(listener)
            }
            Endpoint::Tcp(_) => None,
        });
    }
    // Every listener of every core is bound here, before any thread starts.
    let mut listeners: Vec<Vec<(Listener, Transport)>> = Vec::new();
    for _ in 0..cores {
        let mut mine = Vec::new();
        for (i, transport) in config.transports.iter().enumerate() {
            let listener = match (&transport.endpoint, &unix[i]) {
                (_, Some(shared)) => {
                    let dup = shared.try_clone().map_err(ServerError::Runtime)?;
                    Listener::Unix(dup)
                }
                (Endpoint::Tcp(tcp), None) => {
                    let listener =
                        bind(tcp.addr, tcp.backlog).map_err(|source| ServerError::Bind {
                            addr: tcp.addr,
                            transport: transport.path.clone(),
                            source,
                        })?;
                    Listener::Tcp(listener, tls_configs[i].clone())
                }
                (Endpoint::Unix(_), None) => continue,
            };
            mine.push((listener, transport.clone()));
        }
        listeners.push(mine);
    }
    drop(unix);
    for transport in &config.transports {
        match &transport.endpoint {
            Endpoint::Tcp(tcp) => tracing::info!(
                worker = layout.worker,
                "listening on {}{} ({:?}, {}) on {cores} core(s)",
                tcp.addr,
                if tcp.tls.is_some() { " with TLS" } else { "" },
                transport.kind,
                transport.path
            ),
            Endpoint::Unix(u) => tracing::info!(
                worker = layout.worker,
                "listening on Unix socket {} ({:?}, {}) on {cores} core(s)",
                u.path.display(),
                transport.kind,
                transport.path
            ),
        }
    }
    tracing::info!("monoio driver: {:?}", echo::driver());

    // Links between this process's threads: links[from][to] is the (sender, receiver) pair
    // of one FIFO, indexed by global shard.
    let mut senders: Vec<Vec<Option<flume::Sender<Bytes>>>> = vec![vec![None; count]; cores];
    let mut receivers: Vec<Vec<(u16, flume::Receiver<Bytes>)>> =
        (0..cores).map(|_| Vec::new()).collect();
    for (from, row) in senders.iter_mut().enumerate() {
        for to in 0..cores {
            if from != to {
                let (tx, rx) = flume::bounded(LINK_CAPACITY);
                row[usize::from(layout.shard(to))] = Some(tx);
                receivers[to].push((layout.shard(from), rx));
            }
        }
    }
    // Later links (to restarted workers), handed from the control thread to each core.
    let (late_tx, late_rx): (Vec<_>, Vec<_>) = (0..cores)
        .map(|_| flume::bounded::<(u16, OwnedFd)>(usize::from(layout.count).max(1)))
        .unzip();
    let mut shutdowns = Vec::new();
    let router = Arc::new(config.router.clone());
    let start = layout.epoch_us.map_or_else(Instant::now, epoch_instant);
    let seed = random_seed();
    let mut threads = Vec::new();
    for (thread, ((((mine, links_out), links_in), remote), late)) in listeners
        .into_iter()
        .zip(senders)
        .zip(receivers)
        .zip(remote)
        .zip(late_rx)
        .enumerate()
    {
        let (stop_tx, stop_rx) = flume::bounded::<()>(1);
        shutdowns.push(stop_tx);
        let index = layout.shard(thread);
        let shard_config = ShardConfig {
            index,
            count: layout.count,
            seed: seed ^ u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            router: Arc::clone(&router),
        };
        let name = if control.is_some() {
            format!("w{}-core-{index}", layout.worker)
        } else {
            format!("core-{index}")
        };
        let links = ThreadLinks {
            local_out: links_out,
            local_in: links_in,
            remote,
            late,
            control: control.clone(),
            link_backlog: config.link_backlog,
            rejoin_timeout: config.rejoin_timeout,
        };
        let layout = *layout;
        let busy_poll = config.busy_poll;
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                core_thread(layout, shard_config, mine, links, stop_rx, start, busy_poll)
            })
            .map_err(ServerError::Runtime)?;
        threads.push(thread);
    }

    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(ServerError::Runtime)?;
    let handle = signals.handle();
    let stop_on_signal = shutdowns.clone();
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "shutting down");
                for tx in &stop_on_signal {
                    let _ = tx.try_send(());
                }
            }
        })
        .map_err(ServerError::Runtime)?;
    if let Some(control) = control {
        let layout = *layout;
        std::thread::Builder::new()
            .name("control".to_owned())
            .spawn(move || worker::control_loop(&layout, &control, &late_tx, &shutdowns))
            .map_err(ServerError::Runtime)?;
    }
    let mut failure = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(ServerError::Runtime(e)),
            Err(_) => failure = Some(ServerError::Runtime(io::Error::other("a core panicked"))),
        }
    }
    handle.close();
    drop(socket_files);
    failure.map_or(Ok(()), Err)
}

/// The rustls configuration of each transport (by index) that has TLS.
fn tls_configs(config: &NodeConfig) -> Result<Vec<Option<Arc<rustls::ServerConfig>>>, ServerError> {
    let mut configs = Vec::new();
    for transport in &config.transports {
        configs.push(match &transport.endpoint {
            Endpoint::Tcp(tcp) => match &tcp.tls {
                Some(t) => Some(
                    tls::server_config(t, &format!("{}.endpoint.tls", transport.path))
                        .map_err(ServerError::Tls)?,
                ),
                None => None,
            },
            Endpoint::Unix(_) => None,
        });
    }
    Ok(configs)
}

/// A listener as bound before the cores start, with its endpoint's TLS configuration.
enum Listener {
    Tcp(std::net::TcpListener, Option<Arc<rustls::ServerConfig>>),
    Unix(std::os::unix::net::UnixListener),
}

/// An accepted connection, as a connection driver gets it.
pub(crate) struct Accepted {
    /// The socket (with TLS state on TLS endpoints), or why TLS could not start.
    link: io::Result<Conn>,
    /// The peer as the session meta API shows it (`tcp4:127.0.0.1:5000`, `unix`).
    peer: String,
}

/// Socket files this server created, removed when it stops (or fails to start).
struct SocketFiles(Vec<PathBuf>);

impl Drop for SocketFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the socket file");
            }
        }
    }
}

/// Binds a Unix socket at `path`. A socket file nobody answers on is stale (left by a run
/// that did not stop cleanly) and is removed first; a socket someone answers on, or a file
/// that is not a socket, is an error.
fn bind_unix(path: &Path, backlog: u32) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "a running server answers on this socket",
                ));
            }
            tracing::info!(path = %path.display(), "removing a stale socket file");
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// One core thread's links to the other shards.
struct ThreadLinks {
    /// Senders to the other threads of this process, indexed by global shard.
    local_out: Vec<Option<flume::Sender<Bytes>>>,
    /// Receivers from the other threads of this process, with their global shard.
    local_in: Vec<(u16, flume::Receiver<Bytes>)>,
    /// Initial links to shards of other workers.
    remote: Vec<(u16, OwnedFd)>,
    /// Links to restarted workers, as the controller makes them.
    late: flume::Receiver<(u16, OwnedFd)>,
    /// The worker's control socket, for reports (worker processes only).
    control: Option<Arc<OwnedFd>>,
    /// The bound of each link's backlog, in bytes.
    link_backlog: usize,
    /// How long a rejoining shard waits for the others before it reports the silent ones.
    rejoin_timeout: Duration,
}

/// A non-blocking SO_REUSEPORT listener: every core binds its own on the same address.
pub(crate) fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// The router's authenticator for one core: every service's `auth` section at the index
/// the configuration gave it (each core serves every transport, so its listeners name them
/// all), and 32 bytes of OS randomness of its own for challenges and nonces.
fn authenticator(listeners: &[(Listener, Transport)], start: Instant) -> io::Result<Configured> {
    let mut table: Vec<AuthConfig> = Vec::new();
    let mut put = |index: usize, auth: &AuthConfig| {
        if table.len() <= index {
            table.resize(index + 1, AuthConfig::default());
        }
        table[index] = auth.clone();
    };
    for (_, t) in listeners {
        if let Some(r) = &t.rawsocket {
            put(r.auth_index, &r.auth);
        }
        match &t.websocket {
            WebSocketRoutes::None => {}
            WebSocketRoutes::Any(s) => put(s.auth_index, &s.auth),
            WebSocketRoutes::Paths(paths) => {
                for (_, s) in paths {
                    put(s.auth_index, &s.auth);
                }
            }
        }
    }
    let mut seed = [0u8; 32];
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    }
    // WAMP-CRA challenges carry a wall-clock timestamp; the shard's clock counts from `start`.
    let since_start = u64::try_from(start.elapsed().as_micros()).unwrap_or(0);
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    Ok(Configured::new(
        table,
        Entropy::from_seed(seed),
        unix_now.saturating_sub(since_start),
    ))
}

/// A seed for the shards' id generators, from the standard library's per-process random
/// hasher keys (the OS random source), so ids differ between runs.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

/// The environment variable a controller passes its worker processes the node's cookie
/// key in (64 hex digits), so that a cookie set by one worker verifies on every other.
pub(crate) const COOKIE_KEY_ENV: &str = "SWITCHYARD_COOKIE_KEY";

/// The node's cookie key: from [`COOKIE_KEY_ENV`] when a controller set it, else fresh
/// from the OS random source (one process serves the node).
fn cookie_key() -> &'static CookieKey {
    static KEY: OnceLock<CookieKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let from_env = std::env::var(COOKIE_KEY_ENV).ok().and_then(|hex| {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            <[u8; 32]>::try_from(bytes).ok()
        });
        CookieKey::new(from_env.unwrap_or_else(random_key))
    })
}

/// 32 bytes from the OS random source, as 64 hex digits for [`COOKIE_KEY_ENV`].
pub(crate) fn random_key_hex() -> String {
    random_key().iter().map(|b| format!("{b:02x}")).collect()
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if getrandom::getrandom(&mut key).is_err() {
        // Without OS randomness no key is secret; a key from the per-process hasher seeds
        // is the best left, and the failure is logged.
        tracing::error!("no OS randomness for the cookie key");
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&(random_seed() ^ i as u64).to_le_bytes());
        }
    }
    key
}

/// The tracking cookie of an upgrade whose request carried `header` (see `ws::cookie`).
pub(crate) fn track_cookie(config: &CookieConfig, header: Option<&str>) -> cookie::Tracked {
    let mut random = [0u8; 48];
    if getrandom::getrandom(&mut random).is_err() {
        for (i, chunk) in random.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&(random_seed() ^ i as u64).to_le_bytes());
        }
    }
    cookie::track(cookie_key(), config, header, unix_now(), &random)
}

/// Seconds since the Unix epoch (cookie expiry is wall-clock time).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn core_thread(
    layout: Layout,
    shard_config: ShardConfig,
    listeners: Vec<(Listener, Transport)>,
    links: ThreadLinks,
    stop: flume::Receiver<()>,
    start: Instant,
    busy_poll: Duration,
) -> io::Result<()> {
    let index = usize::from(shard_config.index);
    let cores = usize::from(layout.count);
    // Threads of different workers may share a CPU (10 workers on 2 cores): pinning by the
    // global index spreads them evenly.
    if let Err(e) = monoio::utils::bind_to_cpu_set([index % available_cores()]) {
        tracing::warn!(core = index, error = %e, "cannot pin the thread to a CPU");
    }
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    runtime.block_on(async move {
        let ThreadLinks {
            local_out,
            local_in,
            remote,
            late,
            control,
            link_backlog,
            rejoin_timeout,
        } = links;
        let local: Vec<Option<Link>> = local_out
            .into_iter()
            .map(|tx| tx.map(|tx| Link::Local(Rc::new(LinkOut::new(tx, link_backlog)))))
            .collect();
        for link in local.iter().flatten() {
            if let Link::Local(link) = link {
                monoio::spawn(Rc::clone(link).pump());
            }
        }
        let mut shard = if layout.rejoin {
            Shard::rejoin(shard_config)
        } else {
            Shard::new(shard_config)
        };
        shard.set_authenticator(Box::new(authenticator(&listeners, start)?));
        let mut core = Core::new(shard, local, start, layout.worker);
        core.link_backlog = link_backlog;
        core.control = control;
        let core = Rc::new(RefCell::new(core));
        for (to, fd) in remote {
            if let Err(e) = link::install(&core, to, fd) {
                tracing::error!(core = index, shard = to, error = %e, "cannot use a link");
            }
        }
        {
            // Shards with no link belong to workers that are not running (the controller
            // gave up on them): they are down from the start.
            let mut c = core.borrow_mut();
            let now = c.now();
            // The meta API's `created` timestamps: the wall clock at the shard's time zero.
            // A clock before 1970 (or before the node started) leaves them out.
            if let Some(wall) = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| u64::try_from(d.as_micros()).ok())
                .and_then(|w| w.checked_sub(now.0))
            {
                c.shard.set_wall_clock(wall);
            }
            for down in c.unlinked_shards() {
                c.shard.handle_shard_down(now, down);
            }
            c.dispatch();
        }
        for (from, rx) in local_in {
            monoio::spawn(mailbox(Rc::clone(&core), from, rx));
        }
        monoio::spawn(late_links(Rc::clone(&core), late));
        if layout.rejoin {
            monoio::spawn(rejoin_watchdog(Rc::clone(&core), rejoin_timeout));
        }
        monoio::spawn(ticker(Rc::clone(&core)));
        monoio::spawn(spin::run(busy_poll));
        let mut accepting = Vec::new();
        for (listener, transport) in listeners {
            let task = match listener {
                Listener::Tcp(listener, tls) => {
                    let listener = TcpListener::from_std(listener)?;
                    if transport.kind == TransportKind::WebSocketTestee {
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
                        monoio::spawn(accept_tcp(
                            Rc::clone(&core),
                            listener,
                            tls,
                            Rc::new(transport),
                        ))
                    }
                }
                Listener::Unix(listener) => {
                    let listener = UnixListener::from_std(listener)?;
                    monoio::spawn(accept_unix(Rc::clone(&core), listener, Rc::new(transport)))
                }
            };
            accepting.push(task);
        }
        tracing::debug!(worker = layout.worker, core = index, cores, "core serving");
        // Serve until the signal thread says stop (or goes away).
        let _ = stop.recv_async().await;
        drop(accepting);
        shutdown(&core).await;
        io::Result::Ok(())
    })
}

/// Installs the links the controller makes to restarted workers.
async fn late_links(core: Rc<RefCell<Core>>, late: flume::Receiver<(u16, OwnedFd)>) {
    while let Ok((to, fd)) = late.recv_async().await {
        let index = core.borrow().shard.index();
        match link::install(&core, to, fd) {
            Ok(()) => tracing::info!(core = index, shard = to, "linked to a restarted shard"),
            Err(e) => tracing::error!(core = index, shard = to, error = %e, "cannot use a link"),
        }
    }
}

/// A restarted shard still waiting for other shards' state after `timeout` names each
/// of them to the controller (which restarts its worker: a survivor that cannot answer is
/// treated as failed), and checks again after each further `timeout` until it is ready.
/// A lower joiner it gave way to is named only from the second timeout on: that joiner's
/// own watchdog names the shard it waits for first, so an innocent joiner is not
/// restarted for someone else's silence.
async fn rejoin_watchdog(core: Rc<RefCell<Core>>, timeout: Duration) {
    let mut rounds = 0u32;
    loop {
        monoio::time::sleep(timeout).await;
        rounds += 1;
        let c = core.borrow();
        if c.shard.is_ready() {
            return;
        }
        let me = c.shard.index();
        let mut silent = c.shard.awaited();
        if rounds > 1 {
            silent.extend(c.shard.blocked_on().filter(|j| !silent.contains(j)));
        }
        for shard in silent {
            tracing::error!(
                core = me,
                shard,
                timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                "rejoin timed out: shard {me} still waits for shard {shard}"
            );
            if let Some(control) = &c.control {
                if let Err(e) = control::send_silent(control.as_fd(), me, shard) {
                    tracing::error!(core = me, shard, error = %e, "cannot report a silent shard");
                }
            }
        }
    }
}

/// Accepts connections on one TCP listener and spawns a driver for each.
async fn accept_tcp(
    core: Rc<RefCell<Core>>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    transport: Rc<Transport>,
) {
    let mut errors = AcceptLog::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) if core.borrow().stopping => drop(stream),
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let stream = Stream::Tcp(stream);
                let link = match &tls {
                    Some(config) => Conn::tls(stream, config),
                    None => Ok(Conn::plain(stream)),
                };
                let peer = match peer {
                    SocketAddr::V4(a) => format!("tcp4:{a}"),
                    SocketAddr::V6(a) => format!("tcp6:{a}"),
                };
                monoio::spawn(conn::serve(
                    Rc::clone(&core),
                    Accepted { link, peer },
                    Rc::clone(&transport),
                ));
            }
            Err(e) => accept_failed(&e, &mut errors).await,
        }
    }
}

/// The shortest time between two accept-error log lines of one listener.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The rate limit of one listener's accept-error log: the first failure is logged, then at
/// most one line per [`ACCEPT_LOG_INTERVAL`], counting the failures not logged since.
#[derive(Default)]
struct AcceptLog {
    /// When the last line was logged.
    last: Option<Instant>,
    /// Failures since then that were not logged.
    suppressed: u64,
}

impl AcceptLog {
    /// A failure at `now`: `Some(failures not logged before it)` when it is to be logged.
    fn due(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(at) if now.saturating_duration_since(at) < ACCEPT_LOG_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Accepts connections on this core's duplicate of a shared Unix listener.
async fn accept_unix(core: Rc<RefCell<Core>>, listener: UnixListener, transport: Rc<Transport>) {
    let mut errors = AcceptLog::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) if core.borrow().stopping => drop(stream),
            Ok((stream, _)) => {
                let accepted = Accepted {
                    link: Ok(Conn::plain(Stream::Unix(stream))),
                    peer: "unix".to_owned(),
                };
                monoio::spawn(conn::serve(
                    Rc::clone(&core),
                    accepted,
                    Rc::clone(&transport),
                ));
            }
            Err(e) => accept_failed(&e, &mut errors).await,
        }
    }
}

/// Out of descriptors or a connection reset before accept: keep serving, a little later.
/// Out of descriptors, every retry fails alike, so the log is rate-limited.
async fn accept_failed(e: &io::Error, errors: &mut AcceptLog) {
    if let Some(suppressed) = errors.due(Instant::now()) {
        tracing::warn!(error = %e, suppressed, "accept failed");
    }
    monoio::time::sleep(Duration::from_millis(10)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Failures at these offsets (ms) are logged with the given suppressed counts: the
    /// first, then the first of each later second.
    #[test]
    fn accept_errors_are_logged_at_most_once_per_interval() {
        let check = |offsets: &[u64], expect: &[(u64, u64)]| {
            let start = Instant::now();
            let mut log = AcceptLog::default();
            let logged: Vec<(u64, u64)> = offsets
                .iter()
                .filter_map(|&ms| {
                    log.due(start + Duration::from_millis(ms))
                        .map(|suppressed| (ms, suppressed))
                })
                .collect();
            assert_eq!(logged, expect, "{offsets:?}");
        };
        check(&[0], &[(0, 0)]);
        check(&[0, 10, 20, 999, 1000], &[(0, 0), (1000, 3)]);
        check(
            &[0, 500, 1500, 1600, 2400, 2600],
            &[(0, 0), (1500, 1), (2600, 2)],
        );
        check(&[5000, 9000], &[(5000, 0), (9000, 0)]);
    }

    /// An epoch read from the monotonic clock maps to an `Instant` that far back: the two
    /// clocks are the same clock, so workers started later count from the same origin.
    #[test]
    fn an_epoch_on_the_monotonic_clock_is_the_same_instant() {
        let epoch = monotonic_us() - 2_000_000;
        let elapsed = epoch_instant(epoch).elapsed();
        assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
        // Only an upper bound so a broken conversion fails; no timing is asserted.
        assert!(elapsed < Duration::from_secs(3600), "{elapsed:?}");
        let future = epoch_instant(monotonic_us() + 10_000_000);
        assert!(future.elapsed() < Duration::from_secs(3600));
    }
}
