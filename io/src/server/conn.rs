//! The connection driver: one task per accepted connection, a thin loop around the
//! sans-IO transports and the core's shard.
//!
//! Opening: under the transport's opening timeout, the first bytes decide the transport
//! (0x7F is RawSocket, anything else an HTTP upgrade for WebSocket, on transports that
//! serve both); the WebSocket route is chosen by the request path. Then the loop: wait for
//! readability, queued output or a keep-alive timer → read into a per-core buffer →
//! transport codec → WAMP codec (`switchyard_core::codec::decode`) → shard → dispatch →
//! frame the connection's queued messages → write. An idle connection holds no read buffer
//! and no write buffer. It makes no routing decision.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use switchyard_core::codec::{self, Serializer};
use switchyard_core::message::Message;
use switchyard_core::router::{ConnId, TransportInfo};

use super::core::{ConnShared, Core, Framing, Out};
use super::writev;
use crate::config::{RawSocketService, Transport, WebSocketRoutes, WebSocketService};
use crate::rawsocket::{self, RawSocketConn};
use crate::ws::conn::{self as wsconn, Connection};
use crate::ws::cookie;
use crate::ws::deflate::PerMessageDeflate;
use crate::ws::handshake::{self, HandshakeConfig};

/// Size of each pooled read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// Buffers kept in the per-core pool.
const POOL_LIMIT: usize = 64;
/// How long a closing connection drains the peer's last bytes before the socket goes.
const LINGER: Duration = Duration::from_secs(2);
/// The opening deadline of a RawSocket-only transport (WebSocket services carry their own).
const RAWSOCKET_OPENING_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport state of an open connection.
enum Wire {
    Ws(Box<Connection>),
    Raw(Box<RawSocketConn>),
}

/// A connection whose opening handshake completed.
struct Opened {
    wire: Wire,
    serializer: Serializer,
    /// Whether permessage-deflate was negotiated (its context is per connection).
    deflate: bool,
    /// RawSocket: the largest message the peer receives.
    peer_max: usize,
    /// The service's slow-consumer bound on queued outbound bytes.
    max_outbound: usize,
    /// The service's `auth` section, by its index in the configuration.
    auth: usize,
    /// WebSocket with cookie tracking: the connection's cookie id and its time left (ms).
    cookie: Option<(String, u64)>,
    /// Whether the service accepts the `cookie` authentication method.
    cookie_auth: bool,
}

/// Serves one accepted connection to its end.
pub(super) async fn serve(
    core: Rc<RefCell<Core>>,
    stream: TcpStream,
    peer: SocketAddr,
    transport: Rc<Transport>,
) {
    if let Err(e) = serve_inner(&core, stream, peer, &transport).await {
        tracing::debug!(%peer, error = %e, "connection ended with an I/O error");
    }
}

async fn serve_inner(
    core: &Rc<RefCell<Core>>,
    mut stream: TcpStream,
    peer: SocketAddr,
    transport: &Transport,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let deadline = opening_timeout(transport);
    let opened = monoio::time::timeout(deadline, open(&mut stream, transport)).await;
    let Ok(opened) = opened else {
        tracing::debug!(%peer, "opening handshake timed out");
        return Ok(());
    };
    let Some(Opened {
        mut wire,
        serializer,
        deflate,
        peer_max,
        max_outbound,
        auth,
        cookie,
        cookie_auth,
    }) = opened?
    else {
        return linger(stream).await;
    };
    let (kind, framing) = match &wire {
        Wire::Ws(_) if deflate => ("websocket", Framing::PerConnection),
        Wire::Ws(_) => ("websocket", Framing::WebSocket),
        Wire::Raw(_) => ("rawsocket", Framing::RawSocket { peer_max }),
    };
    let (id, shared) = {
        let mut c = core.borrow_mut();
        let (id, shared) = c.open(serializer, framing, max_outbound);
        let now = c.now();
        let info = TransportInfo {
            kind: kind.to_owned(),
            peer: match peer {
                SocketAddr::V4(a) => format!("tcp4:{a}"),
                SocketAddr::V6(a) => format!("tcp6:{a}"),
            },
            auth,
            channel_binding: None,
            cookie_ttl_ms: cookie.as_ref().map_or(0, |c| c.1),
            cbtid: cookie.map(|c| c.0),
            cookie_auth,
        };
        c.shard.handle_open(now, id, serializer, info);
        c.dispatch();
        (id, shared)
    };
    tracing::debug!(%peer, conn = id.0, kind, ?serializer, "connection open");
    let result = run(core, &mut stream, &mut wire, serializer, id, &shared).await;
    {
        let mut c = core.borrow_mut();
        c.remove(id);
        let now = c.now();
        c.shard.handle_close(now, id);
        c.dispatch();
    }
    tracing::debug!(%peer, conn = id.0, "connection closed");
    result?;
    linger(stream).await
}

fn opening_timeout(transport: &Transport) -> Duration {
    match &transport.websocket {
        WebSocketRoutes::Any(s) => s.opening_timeout,
        WebSocketRoutes::Paths(paths) => paths
            .iter()
            .map(|(_, s)| s.opening_timeout)
            .max()
            .unwrap_or(RAWSOCKET_OPENING_TIMEOUT),
        WebSocketRoutes::None => RAWSOCKET_OPENING_TIMEOUT,
    }
}

/// The open connection's loop; returns when the connection is done.
async fn run(
    core: &Rc<RefCell<Core>>,
    stream: &mut TcpStream,
    wire: &mut Wire,
    serializer: Serializer,
    id: ConnId,
    shared: &ConnShared,
) -> io::Result<()> {
    let text = serializer == Serializer::Json;
    let mut out = Vec::new();
    if let Wire::Ws(ws) = wire {
        ws.start_keepalive(Instant::now());
    }
    loop {
        let done = events(core, wire, serializer, id, &mut out);
        let (queue, close) = shared.take();
        // The batch for one vectored write: the transport's own bytes gathered in `out`,
        // cut wherever a shared fan-out frame goes between them.
        let mut batch: Vec<Bytes> = Vec::new();
        for item in queue {
            match item {
                // After the transport finished (its close frame written), nothing more.
                Out::Frame(_) if done => {}
                Out::Frame(frame) => {
                    if !out.is_empty() {
                        batch.push(Bytes::from(std::mem::take(&mut out)));
                    }
                    batch.push(frame);
                }
                Out::Message(bytes) => match wire {
                    Wire::Ws(ws) => ws.send_message(text, &bytes, &mut out),
                    Wire::Raw(raw) => {
                        if let Err(e) = raw.send_message(&bytes, &mut out) {
                            tracing::debug!(conn = id.0, error = ?e, "message not sent");
                        }
                    }
                },
            }
        }
        if let Some(code) = close {
            if let Wire::Ws(ws) = wire {
                ws.close(code, "", &mut out);
            }
        }
        if !out.is_empty() {
            batch.push(Bytes::from(std::mem::take(&mut out)));
        }
        if shared.is_dropped() {
            return Err(slow_consumer());
        }
        let write = async {
            match batch.len() {
                0 => Ok(()),
                1 => stream.write_all(batch.swap_remove(0)).await.0.map(drop),
                _ => writev::write_all(stream, batch).await,
            }
        };
        unless_dropped(shared, write).await?;
        shared.written();
        if done || close.is_some() {
            return Ok(());
        }
        let timer = match wire {
            Wire::Ws(ws) => ws.poll_timeout(),
            Wire::Raw(_) => None,
        };
        match wait(stream, shared, timer).await {
            Wake::Output => {}
            Wake::Timer => {
                if let Wire::Ws(ws) = wire {
                    ws.handle_timeout(Instant::now());
                }
            }
            Wake::Readable(ready) => {
                ready?;
                let eof = read_pooled(stream, |bytes| match wire {
                    Wire::Ws(ws) => ws.handle_read(bytes),
                    Wire::Raw(raw) => raw.handle_read(bytes),
                })
                .await?;
                if eof {
                    events(core, wire, serializer, id, &mut out);
                    return Ok(());
                }
            }
        }
    }
}

/// The error that ends a connection the slow-consumer policy dropped.
fn slow_consumer() -> io::Error {
    io::Error::other("dropped as a slow consumer")
}

/// Runs `write` unless the slow-consumer policy drops the connection first: a peer that
/// stopped reading would otherwise hold the driver in the write (and the socket open)
/// forever. Abandoning the write cancels it; the caller then closes the socket.
async fn unless_dropped(
    shared: &ConnShared,
    write: impl Future<Output = io::Result<()>>,
) -> io::Result<()> {
    let mut write = pin!(write);
    poll_fn(|cx| {
        if shared.is_dropped() {
            return Poll::Ready(Err(slow_consumer()));
        }
        if let Poll::Ready(result) = write.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        shared.register(cx.waker());
        Poll::Pending
    })
    .await
}

/// Hands every complete message to the shard and collects the transport's own replies
/// (pongs, close frames) into `out`. Returns `true` when the transport is finished.
fn events(
    core: &Rc<RefCell<Core>>,
    wire: &mut Wire,
    serializer: Serializer,
    id: ConnId,
    out: &mut Vec<u8>,
) -> bool {
    let mut done = false;
    loop {
        let message = match wire {
            Wire::Ws(ws) => {
                ws.poll_transmit(out);
                match ws.poll_event() {
                    None => break,
                    Some(wsconn::Event::Message { data, text }) => {
                        // The WAMP WebSocket binding: `wamp.2.json` travels only in text
                        // messages, `wamp.2.msgpack` only in binary ones. Crossbar fails
                        // the connection with 1002 otherwise, and so do we.
                        if text != (serializer == Serializer::Json) {
                            tracing::debug!(
                                conn = id.0,
                                text,
                                "message type breaks the subprotocol"
                            );
                            ws.close(1002, "message type does not match the subprotocol", out);
                            done = true;
                            break;
                        }
                        data
                    }
                    Some(wsconn::Event::Closed { .. }) => {
                        done = true;
                        continue;
                    }
                    Some(wsconn::Event::Failed(e)) => {
                        tracing::debug!(conn = id.0, error = %e, "websocket failed");
                        done = true;
                        continue;
                    }
                }
            }
            Wire::Raw(raw) => {
                raw.poll_transmit(out);
                match raw.poll_event() {
                    None => break,
                    Some(rawsocket::Event::Message(data)) => data,
                    Some(rawsocket::Event::Failed(e)) => {
                        tracing::debug!(conn = id.0, error = %e, "rawsocket failed");
                        raw.poll_transmit(out);
                        done = true;
                        continue;
                    }
                    Some(_) => continue,
                }
            }
        };
        deliver(core, id, serializer, message);
    }
    done
}

/// Decodes one WAMP message and feeds it to the shard.
fn deliver(core: &Rc<RefCell<Core>>, id: ConnId, serializer: Serializer, frame: Bytes) {
    let mut c = core.borrow_mut();
    let now = c.now();
    match codec::decode(serializer, frame) {
        Ok(msg) => {
            if matches!(msg, Message::Hello(_)) {
                c.note_hello(id);
            }
            c.shard.handle_message(now, id, msg);
        }
        Err(e) => c.shard.handle_decode_error(now, id, &e),
    }
    c.dispatch();
}

/// What woke a waiting connection.
enum Wake {
    Readable(io::Result<()>),
    Output,
    Timer,
}

/// Waits for readability, queued output, or the transport's timer.
async fn wait(stream: &TcpStream, shared: &ConnShared, timer: Option<Instant>) -> Wake {
    let mut readable = pin!(stream.readable(false));
    let either = poll_fn(|cx| {
        if shared.has_work() {
            return Poll::Ready(Wake::Output);
        }
        shared.register(cx.waker());
        readable.as_mut().poll(cx).map(Wake::Readable)
    });
    match timer {
        Some(at) => monoio::time::timeout_at(monoio::time::Instant::from_std(at), either)
            .await
            .unwrap_or(Wake::Timer),
        None => either.await,
    }
}

/// Reads the opening bytes and completes the transport's handshake. `Ok(None)`: refused
/// (the refusal is written) or the peer left.
async fn open(stream: &mut TcpStream, transport: &Transport) -> io::Result<Option<Opened>> {
    let mut head = Vec::new();
    loop {
        stream.readable(false).await?;
        if read_pooled(stream, |bytes| head.extend_from_slice(bytes)).await? {
            return Ok(None);
        }
        let Some(&first) = head.first() else {
            continue;
        };
        if rawsocket::is_rawsocket(first) {
            let Some(service) = &transport.rawsocket else {
                return Ok(None);
            };
            return open_raw(stream, service, head).await;
        }
        let Some(service) = route(&transport.websocket, &head) else {
            if head.len() > handshake::DEFAULT_MAX_REQUEST_BYTES || head_complete(&head) {
                let (result, _) = stream.write_all(NOT_FOUND).await;
                result?;
                return Ok(None);
            }
            continue;
        };
        let config = HandshakeConfig {
            subprotocols: service
                .serializers
                .iter()
                .map(|s| s.subprotocol().to_owned())
                .collect(),
            require_subprotocol: true,
            max_request_bytes: handshake::DEFAULT_MAX_REQUEST_BYTES,
            deflate: service.deflate.clone(),
        };
        match handshake::parse_request(&head, &config) {
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "websocket handshake refused");
                let (result, _) = stream.write_all(e.response()).await;
                result?;
                return Ok(None);
            }
            Ok(Some(accepted)) => {
                let serializer = match accepted.subprotocol.as_deref() {
                    Some("wamp.2.msgpack") => Serializer::MsgPack,
                    _ => Serializer::Json,
                };
                let mut response = accepted.response;
                let cookie = service.cookie.as_ref().map(|config| {
                    let t = super::track_cookie(config, accepted.cookie.as_deref());
                    if let Some(line) = &t.set_cookie {
                        cookie::add_header(&mut response, line);
                    }
                    let now = super::unix_now();
                    (t.id, t.expires.saturating_sub(now).saturating_mul(1000))
                });
                let (result, _) = stream.write_all(response).await;
                result?;
                let deflate = match (&accepted.deflate, &service.deflate) {
                    (Some(params), Some(c)) => Some(PerMessageDeflate::new(params, c)),
                    _ => None,
                };
                let compresses = deflate.is_some();
                let mut conn = Connection::new(wsconn::Role::Server, service.conn.clone(), deflate);
                if let Some(rest) = head.get(accepted.consumed..) {
                    if !rest.is_empty() {
                        conn.handle_read(rest);
                    }
                }
                return Ok(Some(Opened {
                    wire: Wire::Ws(Box::new(conn)),
                    serializer,
                    deflate: compresses,
                    peer_max: 0,
                    max_outbound: service.max_outbound_bytes,
                    auth: service.auth_index,
                    cookie,
                    cookie_auth: service.auth.cookie,
                }));
            }
        }
    }
}

const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Whether the bytes hold a complete HTTP request head.
fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n")
}

/// The WebSocket service for a request head, once its request line is complete: `None`
/// while incomplete, or when no route serves the path.
fn route<'a>(routes: &'a WebSocketRoutes, head: &[u8]) -> Option<&'a WebSocketService> {
    match routes {
        WebSocketRoutes::None => None,
        WebSocketRoutes::Any(s) => Some(s),
        WebSocketRoutes::Paths(paths) => {
            let line_end = head.windows(2).position(|w| w == b"\r\n")?;
            let line = std::str::from_utf8(&head[..line_end]).ok()?;
            let target = line.split(' ').nth(1)?;
            let path = target.split('?').next().unwrap_or(target);
            paths.iter().find(|(p, _)| p == path).map(|(_, s)| s)
        }
    }
}

async fn open_raw(
    stream: &mut TcpStream,
    service: &RawSocketService,
    head: Vec<u8>,
) -> io::Result<Option<Opened>> {
    let config = rawsocket::Config {
        max_message_size: service.max_message_size,
        serializers: service
            .serializers
            .iter()
            .map(|s| match s {
                Serializer::Json => rawsocket::Serializer::Json,
                Serializer::MsgPack => rawsocket::Serializer::MsgPack,
            })
            .collect(),
        min_peer_message_size: 0,
    };
    let mut conn = RawSocketConn::new(rawsocket::Role::Server, config);
    conn.handle_read(&head);
    loop {
        let mut out = Vec::new();
        conn.poll_transmit(&mut out);
        if !out.is_empty() {
            let (result, _) = stream.write_all(out).await;
            result?;
        }
        match conn.poll_event() {
            Some(rawsocket::Event::Open {
                serializer,
                peer_max_message_size,
            }) => {
                let serializer = match serializer {
                    rawsocket::Serializer::MsgPack => Serializer::MsgPack,
                    _ => Serializer::Json,
                };
                return Ok(Some(Opened {
                    wire: Wire::Raw(Box::new(conn)),
                    serializer,
                    deflate: false,
                    peer_max: peer_max_message_size,
                    max_outbound: service.max_outbound_bytes,
                    auth: service.auth_index,
                    cookie: None,
                    cookie_auth: false,
                }));
            }
            Some(rawsocket::Event::Failed(e)) => {
                tracing::debug!(error = %e, "rawsocket handshake refused");
                let mut out = Vec::new();
                conn.poll_transmit(&mut out);
                if !out.is_empty() {
                    let (result, _) = stream.write_all(out).await;
                    result?;
                }
                return Ok(None);
            }
            Some(_) => {}
            None => {
                stream.readable(false).await?;
                if read_pooled(stream, |bytes| conn.handle_read(bytes)).await? {
                    return Ok(None);
                }
            }
        }
    }
}

/// After the last frame: half-close, then drain the peer's bytes until it closes or
/// [`LINGER`] passes, so it reads our final bytes instead of a reset.
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
    drained.unwrap_or(Ok(()))
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
    let eof = match &result {
        Ok(0) => true,
        Ok(_) => {
            f(&buf);
            false
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(_) => false,
    };
    buf.clear();
    POOL.with_borrow_mut(|pool| {
        if pool.len() < POOL_LIMIT {
            pool.push(buf);
        }
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        other => other.map(|_| eof),
    }
}
