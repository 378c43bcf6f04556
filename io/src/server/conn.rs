//! The connection driver: one task per accepted connection, a thin loop around the
//! sans-IO transports and the core's shard.
//!
//! Opening: under the transport's opening timeout, the TLS handshake (on TLS endpoints),
//! then the first bytes decide the transport
//! (0x7F is RawSocket, anything else an HTTP upgrade for WebSocket, on transports that
//! serve both); the WebSocket route is chosen by the request path. Then the loop: wait for
//! readability, queued output or a keep-alive timer → read into a per-core buffer →
//! transport codec → WAMP codec (`switchyard_core::codec::decode`) → shard → dispatch →
//! frame the connection's queued messages → write. An idle connection holds no read buffer
//! and no write buffer (TLS: see `tls.rs` for what rustls keeps). RawSocket keep-alive: a
//! connection silent for `auto_ping_interval` gets a PING, and is dropped if its PONG does
//! not come within `auto_ping_timeout`. It makes no routing decision.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchyard_core::codec::{self, Serializer};
use switchyard_core::message::Message;
use switchyard_core::router::{ConnId, TransportInfo};

use super::core::{ConnShared, Core, Framing, Out};
use super::stream::Link;
use super::Accepted;
use crate::config::{RawSocketService, Transport, WebSocketRoutes, WebSocketService};
use crate::rawsocket::{self, RawSocketConn};
use crate::ws::conn::{self as wsconn, Connection};
use crate::ws::cookie;
use crate::ws::deflate::PerMessageDeflate;
use crate::ws::handshake::{self, HandshakeConfig};

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
pub(super) async fn serve(core: Rc<RefCell<Core>>, accepted: Accepted, transport: Rc<Transport>) {
    let peer = accepted.peer.clone();
    if let Err(e) = serve_inner(&core, accepted, &transport).await {
        tracing::debug!(%peer, error = %e, "connection ended with an I/O error");
    }
}

async fn serve_inner(
    core: &Rc<RefCell<Core>>,
    accepted: Accepted,
    transport: &Transport,
) -> io::Result<()> {
    let Accepted { link, peer } = accepted;
    let mut link = link?;
    let deadline = opening_timeout(transport);
    // The opening is bounded by the opening timeout and cut short by a shutdown.
    let opening = core.borrow_mut().opening_started();
    let opened = {
        let open = monoio::time::timeout(deadline, async {
            let early = link.handshake().await?;
            open(&mut link, transport, early).await
        });
        // Boxed: the opening's state (the request head, the handshake futures) is needed only
        // until the connection opens; inline it would size every idle connection's task.
        let mut open = Box::pin(open);
        let core = Rc::clone(core);
        poll_fn(move |cx| {
            if core.borrow_mut().opening_poll(opening, cx.waker()) {
                return Poll::Ready(None);
            }
            open.as_mut().poll(cx).map(Some)
        })
        .await
    };
    core.borrow_mut().opening_finished(opening);
    let Some(opened) = opened else {
        tracing::debug!(%peer, "opening cut short by shutdown");
        return Box::pin(linger(link)).await;
    };
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
        return Box::pin(linger(link)).await;
    };
    let (kind, framing) = match &wire {
        Wire::Ws(_) if deflate => ("websocket", Framing::PerConnection),
        Wire::Ws(_) => ("websocket", Framing::WebSocket),
        Wire::Raw(_) => ("rawsocket", Framing::RawSocket { peer_max }),
    };
    let mut keepalive = match (&wire, &transport.rawsocket) {
        (Wire::Raw(_), Some(service)) => service
            .ping_interval
            .map(|interval| KeepAlive::new(interval, service.ping_timeout, Instant::now())),
        _ => None,
    };
    let (id, shared) = {
        let mut c = core.borrow_mut();
        let (id, shared) = c.open(serializer, framing, max_outbound);
        let now = c.now();
        let info = TransportInfo {
            kind: kind.to_owned(),
            peer: peer.clone(),
            auth,
            channel_binding: None,
            cookie_ttl_ms: cookie.as_ref().map_or(0, |c| c.1),
            cbtid: cookie.map(|c| c.0),
            cookie_auth,
            client_cert_cn: link.client_cert_cn(),
            client_cert_sha1: link.client_cert_sha1(),
        };
        c.shard.handle_open(now, id, serializer, info);
        c.dispatch();
        (id, shared)
    };
    tracing::debug!(%peer, conn = id.0, kind, ?serializer, tls = link.is_tls(), "connection open");
    let result = run(
        core,
        &mut link,
        &mut wire,
        &mut keepalive,
        serializer,
        id,
        &shared,
    )
    .await;
    {
        let mut c = core.borrow_mut();
        c.remove(id);
        let now = c.now();
        c.shard.handle_close(now, id);
        c.dispatch();
    }
    tracing::debug!(%peer, conn = id.0, "connection closed");
    result?;
    Box::pin(linger(link)).await
}

/// RawSocket keep-alive: when the next PING is due, or the PONG awaited and its deadline.
struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    next_ping: Instant,
    awaiting: Option<(Instant, [u8; 8])>,
    sent: u64,
}

impl KeepAlive {
    fn new(interval: Duration, timeout: Duration, now: Instant) -> Self {
        Self {
            interval,
            timeout,
            next_ping: now + interval,
            awaiting: None,
            sent: 0,
        }
    }

    /// The next instant something must happen.
    fn deadline(&self) -> Instant {
        self.awaiting.map_or(self.next_ping, |(at, _)| at)
    }

    /// Traffic from the peer: it is alive, so the next PING can wait.
    fn heard(&mut self, now: Instant) {
        if self.awaiting.is_none() {
            self.next_ping = now + self.interval;
        }
    }

    fn pong(&mut self, payload: &[u8], now: Instant) {
        if self.awaiting.is_some_and(|(_, p)| p == payload) {
            self.awaiting = None;
            self.next_ping = now + self.interval;
        }
    }

    /// At the deadline: `Some(payload)` to PING with, or `None` when the PONG is overdue.
    fn fire(&mut self, now: Instant) -> Option<[u8; 8]> {
        if self.awaiting.is_some() {
            return None;
        }
        self.sent += 1;
        let payload = self.sent.to_be_bytes();
        self.awaiting = Some((now + self.timeout, payload));
        Some(payload)
    }
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
    link: &mut Link,
    wire: &mut Wire,
    keepalive: &mut Option<KeepAlive>,
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
        let done = events(core, wire, keepalive, serializer, id, &mut out);
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
        // Boxed: a write is transient, and inline its future (the vectored write's state)
        // would be part of the task every idle connection keeps.
        Box::pin(unless_dropped(shared, link.write_batch(batch))).await?;
        shared.written();
        if done || close.is_some() {
            return Ok(());
        }
        let timer = match wire {
            Wire::Ws(ws) => ws.poll_timeout(),
            Wire::Raw(_) => keepalive.as_ref().map(KeepAlive::deadline),
        };
        let wake = wait(link, shared, timer).await;
        super::spin::activity();
        match wake {
            Wake::Output => {}
            Wake::Timer => match wire {
                Wire::Ws(ws) => ws.handle_timeout(Instant::now()),
                Wire::Raw(raw) => {
                    if let Some(ka) = keepalive {
                        let now = Instant::now();
                        if now >= ka.deadline() {
                            let Some(payload) = ka.fire(now) else {
                                tracing::debug!(
                                    conn = id.0,
                                    timeout = ?ka.timeout,
                                    "rawsocket peer did not answer PING: dropped"
                                );
                                return Ok(());
                            };
                            if let Err(e) = raw.send_ping(&payload, &mut out) {
                                tracing::debug!(conn = id.0, error = ?e, "PING not sent");
                            }
                        }
                    }
                }
            },
            Wake::Readable(ready) => {
                ready?;
                let outcome = link.read_now(|bytes| match wire {
                    Wire::Ws(ws) => ws.handle_read(bytes),
                    Wire::Raw(raw) => raw.handle_read(bytes),
                });
                // rustls's answer to what it read (TLS only). Boxed, as the write above:
                // only the wait is held while a connection idles.
                let flushed = if link.wants_flush() {
                    Box::pin(link.flush_tls()).await
                } else {
                    Ok(())
                };
                let eof = outcome?;
                flushed?;
                if let Some(ka) = keepalive {
                    ka.heard(Instant::now());
                }
                if eof {
                    events(core, wire, keepalive, serializer, id, &mut out);
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
    keepalive: &mut Option<KeepAlive>,
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
                    Some(rawsocket::Event::Pong(payload)) => {
                        if let Some(ka) = keepalive {
                            ka.pong(&payload, Instant::now());
                        }
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
async fn wait(link: &Link, shared: &ConnShared, timer: Option<Instant>) -> Wake {
    let mut readable = pin!(link.readable());
    let either = poll_fn(|cx| {
        if shared.has_work() {
            return Poll::Ready(Wake::Output);
        }
        shared.register(cx.waker());
        readable.as_mut().poll(cx).map(Wake::Readable)
    });
    match timer {
        // Boxed: the timer's entry is large and cache-line aligned; inline it would size
        // the task of every idle connection, also those without a timer.
        Some(at) => Box::pin(monoio::time::timeout_at(
            monoio::time::Instant::from_std(at),
            either,
        ))
        .await
        .unwrap_or(Wake::Timer),
        None => either.await,
    }
}

/// Reads the opening bytes (after `head`, which arrived with the TLS handshake) and
/// completes the transport's handshake. `Ok(None)`: refused (the refusal is written) or the
/// peer left.
async fn open(
    link: &mut Link,
    transport: &Transport,
    mut head: Vec<u8>,
) -> io::Result<Option<Opened>> {
    loop {
        if head.is_empty() {
            link.readable().await?;
            if link.read(|bytes| head.extend_from_slice(bytes)).await? {
                return Ok(None);
            }
        }
        let Some(&first) = head.first() else {
            continue;
        };
        if rawsocket::is_rawsocket(first) {
            let Some(service) = &transport.rawsocket else {
                return Ok(None);
            };
            return open_raw(link, service, head).await;
        }
        let Some(service) = route(&transport.websocket, &head) else {
            if head.len() > handshake::DEFAULT_MAX_REQUEST_BYTES || head_complete(&head) {
                link.write(Bytes::from_static(NOT_FOUND)).await?;
                return Ok(None);
            }
            read_more(link, &mut head).await?;
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
            Ok(None) => {
                read_more(link, &mut head).await?;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "websocket handshake refused");
                link.write(Bytes::from(e.response())).await?;
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
                link.write(Bytes::from(response)).await?;
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

/// Reads more of an opening request; the peer leaving is an end of stream error.
async fn read_more(link: &mut Link, head: &mut Vec<u8>) -> io::Result<()> {
    link.readable().await?;
    if link.read(|bytes| head.extend_from_slice(bytes)).await? {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
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
    link: &mut Link,
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
            link.write(Bytes::from(out)).await?;
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
                    link.write(Bytes::from(out)).await?;
                }
                return Ok(None);
            }
            Some(_) => {}
            None => {
                link.readable().await?;
                if link.read(|bytes| conn.handle_read(bytes)).await? {
                    return Ok(None);
                }
            }
        }
    }
}

/// After the last frame: half-close (TLS: close_notify first), then drain the peer's bytes
/// until it closes or [`LINGER`] passes, so it reads our final bytes instead of a reset.
async fn linger(mut link: Link) -> io::Result<()> {
    link.shutdown().await?;
    let drained = monoio::time::timeout(LINGER, async {
        loop {
            link.readable().await?;
            if link.read(|_| ()).await? {
                return io::Result::Ok(());
            }
        }
    })
    .await;
    drained.unwrap_or(Ok(()))
}
