//! The WebSocket echo endpoint (Crossbar's `websocket.testee`), driven by monoio on one core.
//!
//! It exists for conformance runs (Autobahn|Testsuite) and as the first real driver of the
//! sans-IO WebSocket modules: every connection goes through [`crate::ws::handshake`] and
//! [`crate::ws::conn::Connection`], exactly as the server will. The driver is a thin loop
//! (STYLE.md item 4): wait for readability → read into a per-core buffer →
//! `handle_read` → drain `poll_event` (echo each message) → drain `poll_transmit` → write →
//! re-arm the timer from `poll_timeout`. It makes no protocol decision of its own.
//!
//! Reads: a connection waits for readiness (`readable`) holding no buffer, then borrows a
//! 64 KiB buffer from a small per-core pool for the one read, and gives it back as soon as
//! `handle_read` returned. Writes use a per-connection buffer that is dropped after each
//! write, so an idle connection holds neither.
//!
//! What it does not do: WAMP, TLS, several cores, or graceful shutdown; it serves until the
//! process is killed.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

use crate::ws::conn::{Config, Connection, Event, Role};
use crate::ws::deflate::{DeflateConfig, PerMessageDeflate};
use crate::ws::handshake::{self, HandshakeConfig, DEFAULT_OPENING_TIMEOUT};

/// Size of each pooled read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// Buffers kept in the per-core pool; more are allocated (and freed) under a burst.
const POOL_LIMIT: usize = 64;
/// How long a closing connection drains the peer's last bytes before the socket is
/// dropped, so that our close frame is not lost to a reset.
const LINGER: Duration = Duration::from_secs(2);

/// The echo endpoint's settings.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// The upgrade handshake: any path and Host, no subprotocol required.
    pub handshake: HandshakeConfig,
    /// Per-connection limits and keep-alive.
    pub connection: Config,
    /// A client has this long from accept to a complete upgrade request.
    pub opening_timeout: Duration,
}

impl Default for EchoConfig {
    /// What Autobahn|Testsuite needs: no subprotocol, permessage-deflate offered (with a
    /// 15-bit server window and no compression threshold, so every case compresses),
    /// 16 MiB frames and messages.
    fn default() -> Self {
        Self {
            handshake: HandshakeConfig {
                subprotocols: Vec::new(),
                require_subprotocol: false,
                max_request_bytes: handshake::DEFAULT_MAX_REQUEST_BYTES,
                deflate: Some(DeflateConfig {
                    server_max_window_bits: 15,
                    compress_threshold: 0,
                    ..DeflateConfig::default()
                }),
            },
            connection: Config {
                max_frame_size: 16 << 20,
                max_message_size: 16 << 20,
                ..Config::default()
            },
            opening_timeout: DEFAULT_OPENING_TIMEOUT,
        }
    }
}

/// Which monoio driver serves the connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// io_uring (Linux 5.6+ with the operations monoio needs).
    IoUring,
    /// epoll, where io_uring is missing or refused (seccomp, containers, old kernels).
    Legacy,
}

/// The driver [`run`] will use on this machine; monoio probes io_uring once.
pub fn driver() -> Driver {
    if monoio::utils::detect_uring() {
        Driver::IoUring
    } else {
        Driver::Legacy
    }
}

/// Serves the echo endpoint on `listener` on the calling thread until the process ends
/// (or accepting fails for good). Builds a monoio runtime with io_uring, falling back to
/// the epoll driver where io_uring is refused, and logs which.
pub fn run(listener: std::net::TcpListener, config: EchoConfig) -> io::Result<()> {
    // The epoll driver needs a non-blocking socket; io_uring does not mind one.
    listener.set_nonblocking(true)?;
    let driver = driver();
    tracing::info!(?driver, addr = ?listener.local_addr()?, "ws echo endpoint serving");
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        serve(listener, Rc::new(config)).await
    })
}

/// Accepts connections and spawns one driver task each, on the current monoio runtime.
pub async fn serve(listener: TcpListener, config: Rc<EchoConfig>) -> io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: keep serving.
                tracing::warn!(error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let config = Rc::clone(&config);
        monoio::spawn(async move {
            if let Err(e) = serve_connection(stream, &config).await {
                tracing::debug!(%peer, error = %e, "connection ended with an I/O error");
            }
        });
    }
}

/// One connection: the opening handshake under its timeout, then the WebSocket loop.
async fn serve_connection(mut stream: TcpStream, config: &EchoConfig) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let opening = monoio::time::timeout(config.opening_timeout, open(&mut stream, config)).await;
    let Ok(opened) = opening else {
        tracing::debug!("opening handshake timed out");
        return Ok(());
    };
    let Some((mut conn, leftover)) = opened? else {
        return linger(stream).await;
    };
    let mut out = Vec::new();
    if !leftover.is_empty() {
        step(&mut conn, &leftover, &mut out);
    }
    conn.start_keepalive(Instant::now());
    loop {
        if !out.is_empty() {
            let (result, _) = stream.write_all(std::mem::take(&mut out)).await;
            result?;
        }
        if conn.is_closed() {
            return linger(stream).await;
        }
        let ready = match conn.poll_timeout() {
            Some(deadline) => {
                let deadline = monoio::time::Instant::from_std(deadline);
                monoio::time::timeout_at(deadline, stream.readable(false)).await
            }
            None => Ok(stream.readable(false).await),
        };
        match ready {
            Err(_elapsed) => {
                conn.handle_timeout(Instant::now());
                drain(&mut conn, &mut out);
            }
            Ok(ready) => {
                ready?;
                let eof =
                    read_pooled(&mut stream, |bytes| step(&mut conn, bytes, &mut out)).await?;
                if eof {
                    return Ok(());
                }
            }
        }
    }
}

/// Reads the upgrade request and answers it. `Ok(None)`: the request was refused (the
/// error response is written) or the peer left; otherwise the connection and the bytes
/// that followed the request head.
async fn open(
    stream: &mut TcpStream,
    config: &EchoConfig,
) -> io::Result<Option<(Connection, Vec<u8>)>> {
    let mut head = Vec::new();
    loop {
        stream.readable(false).await?;
        if read_pooled(stream, |bytes| head.extend_from_slice(bytes)).await? {
            return Ok(None);
        }
        match handshake::parse_request(&head, &config.handshake) {
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "handshake refused");
                let (result, _) = stream.write_all(e.response()).await;
                result?;
                return Ok(None);
            }
            Ok(Some(accepted)) => {
                let (result, _) = stream.write_all(accepted.response).await;
                result?;
                let deflate = match (&accepted.deflate, &config.handshake.deflate) {
                    (Some(params), Some(deflate_config)) => {
                        Some(PerMessageDeflate::new(params, deflate_config))
                    }
                    _ => None,
                };
                let conn = Connection::new(Role::Server, config.connection.clone(), deflate);
                // The bounded head was read in full; anything past the request belongs to
                // the WebSocket stream.
                let leftover = head.get(accepted.consumed..).unwrap_or_default().to_vec();
                return Ok(Some((conn, leftover)));
            }
        }
    }
}

/// Feeds bytes to the connection and collects everything it wants sent into `out`.
fn step(conn: &mut Connection, bytes: &[u8], out: &mut Vec<u8>) {
    conn.handle_read(bytes);
    drain(conn, out);
}

/// Echoes every message and appends the obliged replies, interleaved in input order (a
/// pong for a ping that arrived mid-message goes out before that message's echo).
fn drain(conn: &mut Connection, out: &mut Vec<u8>) {
    loop {
        conn.poll_transmit(out);
        let Some(event) = conn.poll_event() else {
            return;
        };
        match event {
            Event::Message { text, data } => conn.send_message(text, &data, out),
            Event::Closed { .. } => {}
            Event::Failed(e) => tracing::debug!(error = %e, "connection failed"),
        }
    }
}

/// After the last frame: half-close, read (and discard) until the peer closes or
/// [`LINGER`] passes, so the peer reads our final bytes before the socket goes.
async fn linger(mut stream: TcpStream) -> io::Result<()> {
    stream.shutdown().await?;
    let drained = monoio::time::timeout(LINGER, async {
        loop {
            stream.readable(false).await?;
            if read_pooled(&mut stream, |_| ()).await? {
                return io::Result::Ok(());
            }
        }
    })
    .await;
    match drained {
        Ok(result) => result,
        Err(_elapsed) => Ok(()),
    }
}

thread_local! {
    /// The per-core pool of read buffers: a connection holds one only during a read.
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Reads once into a pooled buffer (call after `readable`) and hands the bytes to `f`.
/// Returns `true` at end of stream.
async fn read_pooled(stream: &mut TcpStream, f: impl FnOnce(&[u8])) -> io::Result<bool> {
    let buf = POOL
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Vec::with_capacity(READ_BUFFER));
    let (result, mut buf) = stream.read(buf).await;
    let n = result;
    let eof = match &n {
        Ok(0) => true,
        Ok(_) => {
            f(&buf);
            false
        }
        Err(_) => false,
    };
    buf.clear();
    POOL.with_borrow_mut(|pool| {
        if pool.len() < POOL_LIMIT {
            pool.push(buf);
        }
    });
    n.map(|_| eof)
}
