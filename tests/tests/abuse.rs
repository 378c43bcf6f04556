//! Hostile peers against the real `switchyard` binary: slowloris, oversized and lying
//! lengths, a deflate bomb, a slow consumer, per-session limits, a file-descriptor flood and
//! malformed handshakes. Each test starts its own node (2 cores, loopback, small limits set
//! in the test configuration), abuses it, checks the documented answer (HTTP status,
//! RawSocket error reply, WebSocket close code, WAMP ERROR), and then checks that sessions
//! joined before the abuse still do an RPC round trip and that a fresh session can still join
//! and do one.
//!
//! The client here is a deliberately small blocking WebSocket/RawSocket + WAMP-JSON client
//! written against the RFCs, so that it can send what no well-behaved library would. Memory
//! is checked as the node's resident set size (`/proc/<pid>/status`); waits are bounded only
//! so that a bug fails instead of hanging, and no duration is asserted.
//!
//! What it does not cover: TLS, Unix sockets, MessagePack payloads (the limits are the same
//! for both serializers), and floods beyond what fits a 2-core CI machine.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, FlushCompress};
use serde_json::{json, Value};
use socket2::{Domain, Socket, Type};
use switchyard_tests::{free_port, Node};

const CORES: u16 = 2;
/// The upper bound of every wait: a bug fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(30);
/// The opening timeout of the test configuration.
const OPENING_TIMEOUT_MS: u64 = 1000;
/// `max_frame_size` of the test configuration.
const MAX_FRAME: usize = 16 * 1024;
/// `max_message_size` of the test configuration (also the inflated size).
const MAX_MESSAGE: usize = 1 << 20;
/// The RawSocket receive limit of the test configuration (announced as exponent 7).
const RAW_MAX: usize = 64 * 1024;
/// The defaults of `router::Limits` that the per-session test runs into.
const SESSION_LIMIT: usize = 1024;
/// The default `pending_invocations_per_session` of `router::Limits`.
const INVOCATION_LIMIT: usize = 4096;
/// `max_outbound_bytes` of the test configuration: the slow-consumer bound per connection.
const MAX_OUTBOUND: usize = 1 << 20;
/// How much the node's resident set may grow during one abuse: well below what the abuse
/// would cost if the node reserved or inflated what the peer announced.
const RSS_GROWTH_KIB: u64 = 48 * 1024;

/// Asserts that the node's resident set grew by less than [`RSS_GROWTH_KIB`] since
/// `before` (and prints both, as the figure for the record).
fn rss_bounded(node: &Node, before: u64, what: &str) {
    let after = node.rss_kib();
    eprintln!("{what}: node RSS {before} KiB before, {after} KiB after");
    assert!(
        after < before + RSS_GROWTH_KIB,
        "{what}: RSS grew from {before} KiB to {after} KiB"
    );
}

/// A universal transport (WebSocket on `/ws` and RawSocket on one port) with small limits.
fn config(port: u16) -> Value {
    json!({
        "version": 2,
        "controller": {},
        "workers": [{
            "type": "router",
            "realms": [{
                "name": "realm1",
                "roles": [{
                    "name": "anonymous",
                    "permissions": [{
                        "uri": "",
                        "match": "prefix",
                        "allow": {"call": true, "register": true, "publish": true, "subscribe": true},
                        "disclose": {"caller": false, "publisher": false}
                    }]
                }]
            }],
            "transports": [{
                "type": "universal",
                "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": port},
                "rawsocket": {
                    "serializers": ["json", "msgpack"],
                    "max_message_size": RAW_MAX,
                    "options": {"max_outbound_bytes": MAX_OUTBOUND}
                },
                "websocket": {
                    "ws": {
                        "type": "websocket",
                        "serializers": ["json", "msgpack"],
                        "options": {
                            "max_frame_size": MAX_FRAME,
                            "max_message_size": MAX_MESSAGE,
                            "opening_timeout": OPENING_TIMEOUT_MS,
                            "max_outbound_bytes": MAX_OUTBOUND,
                            "compression": {"deflate": {}}
                        }
                    }
                }
            }]
        }]
    })
}

fn start() -> (Node, u16) {
    let port = free_port();
    (Node::start(&config(port), CORES, &[port]), port)
}

// ---------------------------------------------------------------------------------------
// A minimal client.

fn connect(port: u16) -> TcpStream {
    configure(TcpStream::connect(("127.0.0.1", port)).expect("connect to the node"))
}

fn configure(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(BOUND)).expect("read timeout");
    s.set_write_timeout(Some(BOUND)).expect("write timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade(protocol: &str, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {protocol}\r\n{extra}\r\n"
    )
}

/// Reads until the end of an HTTP response head; returns the head and what followed it.
fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
        match s.read(&mut chunk) {
            Ok(0) => return (String::from_utf8_lossy(&buf).into_owned(), Vec::new()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading the response head: {e}"),
        }
    }
}

fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head:?}"))
}

/// Reads to the end of the stream, up to [`BOUND`]; returns the bytes and whether the node
/// closed the connection (end of stream or reset) rather than the wait running out.
fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return (all, true),
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (all, false)
            }
            Err(_) => return (all, true),
        }
    }
}

/// A client WebSocket: masked frames out, frames in.
struct Ws {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Ws {
    /// Upgrades with `protocol` (and `extra` header lines); panics unless the answer is 101.
    fn open(port: u16, protocol: &str, extra: &str) -> (Self, String) {
        Self::open_on(connect(port), protocol, extra)
    }

    fn open_on(mut s: TcpStream, protocol: &str, extra: &str) -> (Self, String) {
        s.write_all(upgrade(protocol, extra).as_bytes())
            .expect("request sent");
        let (head, buf) = read_head(&mut s);
        assert_eq!(status_of(&head), 101, "{head}");
        (Self { s, buf }, head)
    }

    /// One masked frame: `first` is FIN/RSV/opcode.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    fn send(&mut self, first: u8, payload: &[u8]) {
        self.s
            .write_all(&Self::frame(first, payload))
            .expect("frame sent");
    }

    /// The next frame (opcode, payload); `None` at the end of the stream.
    fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        match self.next() {
            Next::Frame(opcode, payload) => Some((opcode, payload)),
            Next::End => None,
            Next::Silent => panic!("no frame from the node within {BOUND:?}"),
        }
    }

    fn next(&mut self) -> Next {
        loop {
            if let Some((consumed, opcode, payload)) = parse_server_frame(&self.buf) {
                self.buf.drain(..consumed);
                return Next::Frame(opcode, payload);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.s.read(&mut chunk) {
                Ok(0) => return Next::End,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Next::Silent
                }
                Err(_) => return Next::End,
            }
        }
    }

    /// Reads until the node's close frame and returns how the connection ended: the close
    /// code, or what came instead.
    fn close_code(&mut self) -> Result<u16, String> {
        let mut before = Vec::new();
        loop {
            match self.next() {
                Next::Frame(0x8, payload) => {
                    return Ok(payload
                        .get(..2)
                        .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]])))
                }
                Next::Frame(opcode, payload) => before.push(format!(
                    "{opcode:#x}: {}",
                    String::from_utf8_lossy(&payload)
                )),
                Next::End => {
                    return Err(format!(
                        "end of stream without a close frame after {before:?}"
                    ))
                }
                Next::Silent => return Err(format!("still open after {before:?}")),
            }
        }
    }
}

/// What a read brought.
enum Next {
    Frame(u8, Vec<u8>),
    End,
    Silent,
}

/// Parses one unmasked server frame at the start of `buf`: (bytes used, opcode, payload).
fn parse_server_frame(buf: &[u8]) -> Option<(usize, u8, Vec<u8>)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "the node masked a frame");
    let (len, at) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((at + len, b0 & 0x0f, payload))
}

/// A joined WAMP session over WebSocket with JSON.
struct Session {
    ws: Ws,
    next: u64,
}

impl Session {
    fn join(port: u16) -> Self {
        Self::join_on(connect(port))
    }

    fn join_on(stream: TcpStream) -> Self {
        let (ws, _) = Ws::open_on(stream, "wamp.2.json", "");
        let mut s = Self { ws, next: 1 };
        s.send(&json!([1, "realm1", {"roles": {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}}]));
        let welcome = s.recv();
        assert_eq!(welcome[0], 2, "expected WELCOME, got {welcome}");
        s
    }

    fn request_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Sends one message, in fragments of at most [`MAX_FRAME`] bytes.
    fn send(&mut self, msg: &Value) {
        let text = msg.to_string();
        let pieces: Vec<&[u8]> = text.as_bytes().chunks(MAX_FRAME).collect();
        let mut out = Vec::with_capacity(text.len() + 16 * pieces.len());
        for (i, piece) in pieces.iter().enumerate() {
            let opcode = if i == 0 { 0x1 } else { 0x0 };
            let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
            out.extend(Ws::frame(fin | opcode, piece));
        }
        self.ws.s.write_all(&out).expect("message sent");
    }

    /// The next WAMP message (answering pings on the way).
    fn recv(&mut self) -> Value {
        loop {
            let (opcode, payload) = self.ws.recv().expect("the session's connection is open");
            match opcode {
                0x1 => return serde_json::from_slice(&payload).expect("WAMP JSON"),
                0x9 => self.ws.send(0x8a, &payload),
                0x8 => panic!("the node closed a live session: {payload:?}"),
                _ => {}
            }
        }
    }

    fn register(&mut self, procedure: &str) -> u64 {
        let id = self.request_id();
        self.send(&json!([64, id, {}, procedure]));
        let reply = self.recv();
        assert_eq!(reply[0], 65, "REGISTER {procedure}: {reply}");
        reply[2].as_u64().expect("registration id")
    }

    fn subscribe(&mut self, topic: &str) -> u64 {
        let id = self.request_id();
        self.send(&json!([32, id, {}, topic]));
        let reply = self.recv();
        assert_eq!(reply[0], 33, "SUBSCRIBE {topic}: {reply}");
        reply[2].as_u64().expect("subscription id")
    }

    /// Calls a procedure that needs no callee (the meta API) and returns RESULT's args.
    fn call_meta(&mut self, procedure: &str) -> Value {
        let id = self.request_id();
        self.send(&json!([48, id, {}, procedure, []]));
        loop {
            let reply = self.recv();
            if reply[0] == 50 && reply[1] == id {
                return reply[3].clone();
            }
            assert_ne!(reply[0], 8, "{procedure}: {reply}");
        }
    }
}

/// Two sessions joined before an abuse: a callee of a `com.abuse.echo.*` procedure and its
/// caller. Their round trip after the abuse is the proof that other sessions kept working.
struct Bystanders {
    callee: Session,
    caller: Session,
    procedure: String,
    rounds: u64,
}

impl Bystanders {
    fn join(port: u16) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let mut callee = Session::join(port);
        let procedure = format!("com.abuse.echo.{}", NEXT.fetch_add(1, Ordering::Relaxed));
        callee.register(&procedure);
        let caller = Session::join(port);
        let mut b = Self {
            callee,
            caller,
            procedure,
            rounds: 0,
        };
        b.round_trip();
        b
    }

    /// CALL → INVOCATION → YIELD → RESULT, through the node.
    fn round_trip(&mut self) {
        self.rounds += 1;
        let n = self.rounds;
        let id = self.caller.request_id();
        self.caller.send(&json!([48, id, {}, self.procedure, [n]]));
        let invocation = self.callee.recv();
        assert_eq!(invocation[0], 68, "expected INVOCATION, got {invocation}");
        assert_eq!(invocation[4], json!([n]));
        self.callee
            .send(&json!([70, invocation[1].clone(), {}, [n]]));
        let result = self.caller.recv();
        assert_eq!(result, json!([50, id, {}, [n]]), "RESULT of round trip {n}");
    }
}

/// The proof after an abuse: the sessions joined before it still work, and the node still
/// accepts a new pair that works.
fn others_still_work(port: u16, live: &mut Bystanders) {
    live.round_trip();
    Bystanders::join(port).round_trip();
}

// ---------------------------------------------------------------------------------------
// Slowloris.

/// Whether the node closed `s` (end of stream or reset), polling for up to `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).expect("read timeout");
    read_to_close(s).1
}

#[test]
fn slowloris_openings_are_closed_at_the_opening_timeout() {
    let (node, port) = start();
    let mut live = Bystanders::join(port);

    // Requests that stop half way, and RawSocket openings of one byte.
    let mut stalled: Vec<TcpStream> = (0..40)
        .map(|i| {
            let mut s = connect(port);
            let bytes: &[u8] = if i % 2 == 0 {
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr"
            } else {
                &[0x7f]
            };
            s.write_all(bytes).expect("partial opening sent");
            s
        })
        .collect();
    // And one that dribbles an endless request head, one byte at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let dribbler = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut s = connect(port);
            s.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("read timeout");
            let head = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
            let started = Instant::now();
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < BOUND {
                let byte = head.get(sent).copied().unwrap_or(b'a');
                if s.write_all(&[byte]).is_err() {
                    return (sent, true);
                }
                sent += 1;
                let mut b = [0u8; 64];
                match s.read(&mut b) {
                    Ok(0) => return (sent, true),
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return (sent, true),
                }
                thread::sleep(Duration::from_millis(30));
            }
            (sent, false)
        })
    };

    // While they hang, the node serves the others and accepts new sessions.
    others_still_work(port, &mut live);

    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(closed_within(s, BOUND), "stalled opening {i} still open");
    }
    let (sent, closed) = dribbler.join().expect("dribbler");
    stop.store(true, Ordering::Relaxed);
    assert!(
        closed,
        "the dribbled opening was not closed ({sent} bytes sent)"
    );
    others_still_work(port, &mut live);
    drop(node);
}

// ---------------------------------------------------------------------------------------
// Oversized and lying lengths.

/// A frame header announcing `len` (with the given length encoding), masked, with only
/// `body` after it: the length lies.
fn lying_header(first: u8, len: u64, encoding: u8) -> Vec<u8> {
    let mut out = vec![first, 0x80 | encoding];
    match encoding {
        126 => out.extend_from_slice(&(len as u16).to_be_bytes()),
        127 => out.extend_from_slice(&len.to_be_bytes()),
        _ => unreachable!("only the extended encodings lie"),
    }
    out.extend_from_slice(&[1, 2, 3, 4]);
    out.extend_from_slice(&[0u8; 16]);
    out
}

#[test]
fn oversized_frames_and_messages_are_refused_before_memory_is_reserved() {
    let (node, port) = start();
    let mut live = Bystanders::join(port);
    let before = node.rss_kib();

    // (what, bytes after the upgrade, close code)
    let mut fragmented = Ws::frame(0x01, &vec![b'a'; MAX_FRAME]);
    for _ in 0..MAX_MESSAGE / MAX_FRAME {
        fragmented.extend(Ws::frame(0x00, &vec![b'a'; MAX_FRAME]));
    }
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "16-bit length over max_frame_size, payload never sent",
            lying_header(0x81, 0xffff, 126),
            1009,
        ),
        (
            "64-bit length of 1 TiB",
            lying_header(0x82, 1 << 40, 127),
            1009,
        ),
        (
            "64-bit length of 2^62",
            lying_header(0x82, 1 << 62, 127),
            1009,
        ),
        (
            "64-bit length with the top bit set",
            lying_header(0x82, 1 << 63, 127),
            1002,
        ),
        (
            "one frame over max_frame_size, sent whole",
            Ws::frame(0x81, &vec![b'a'; MAX_FRAME + 1]),
            1009,
        ),
        (
            "fragments adding up past max_message_size",
            fragmented,
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        let (mut ws, _) = Ws::open(port, "wamp.2.json", "");
        // A write error is fine: the node may close before it has read everything.
        let _ = ws.s.write_all(&bytes);
        assert_eq!(ws.close_code(), Ok(code), "{what}");
    }

    // RawSocket: a frame longer than the announced limit fails the connection at its prefix.
    let mut raw = connect(port);
    raw.write_all(&[0x7f, 0xf1, 0, 0]).expect("handshake sent");
    let mut reply = [0u8; 4];
    raw.read_exact(&mut reply).expect("handshake reply");
    assert_eq!(reply, [0x7f, 0x71, 0, 0], "JSON, limit 2^(9+7) = {RAW_MAX}");
    raw.write_all(&[0x00, 0x10, 0x00, 0x00])
        .expect("prefix sent");
    let (rest, closed) = read_to_close(&mut raw);
    assert!(
        closed && rest.is_empty(),
        "RawSocket frame of 1 MiB: {rest:?}"
    );

    rss_bounded(&node, before, "oversized");
    others_still_work(port, &mut live);
}

// ---------------------------------------------------------------------------------------
// Deflate bomb.

/// Raw deflate (RFC 7692) of `total` zero bytes, built from one compressed MiB repeated:
/// each repetition ends on a sync flush, so the concatenation is one valid stream.
fn zero_bomb(total: usize) -> Vec<u8> {
    let chunk = 1 << 20;
    let mut c = Compress::new(Compression::best(), false);
    let mut one = Vec::with_capacity(chunk / 512);
    c.compress_vec(&vec![0u8; chunk], &mut one, FlushCompress::Sync)
        .expect("deflate");
    assert!(one.ends_with(&[0, 0, 0xff, 0xff]));
    let mut out = Vec::new();
    for _ in 0..total / chunk {
        out.extend_from_slice(&one);
    }
    // The message's trailing 0x00 0x00 0xff 0xff is implied (RFC 7692 §7.2.1).
    out.truncate(out.len() - 4);
    out
}

#[test]
fn a_deflate_bomb_is_refused_without_inflating_it() {
    let (node, port) = start();
    let mut live = Bystanders::join(port);
    let before = node.rss_kib();

    // 256 MiB of zeros in about 256 KiB, sent as compressed fragments within max_frame_size.
    let bomb = zero_bomb(256 << 20);
    assert!(bomb.len() < 2 * MAX_MESSAGE);
    let (mut ws, head) = Ws::open(
        port,
        "wamp.2.json",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    );
    assert!(
        head.to_ascii_lowercase().contains("permessage-deflate"),
        "{head}"
    );
    let mut frames = Vec::new();
    let pieces: Vec<&[u8]> = bomb.chunks(MAX_FRAME).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
        let first = if i == 0 { 0x40 | 0x02 } else { 0x00 };
        frames.extend(Ws::frame(fin | first, piece));
    }
    let _ = ws.s.write_all(&frames);
    assert_eq!(ws.close_code(), Ok(1009), "deflate bomb");

    rss_bounded(&node, before, "deflate bomb");
    others_still_work(port, &mut live);
}

// ---------------------------------------------------------------------------------------
// Slow consumer.

/// Events of this many payload bytes; the flood is [`FLOOD_EVENTS`] of them.
const EVENT_BYTES: usize = 60 * 1024;
const FLOOD_EVENTS: usize = 120;

/// A subscriber that reads every event on its own thread and counts them in order.
fn reader(mut s: Session, topic: &str, seen: Arc<AtomicUsize>) -> thread::JoinHandle<Session> {
    s.subscribe(topic);
    thread::spawn(move || {
        while seen.load(Ordering::Relaxed) < FLOOD_EVENTS {
            let event = s.recv();
            assert_eq!(event[0], 36, "expected EVENT, got {}", event[0]);
            let n = event[4][0].as_u64().expect("sequence number") as usize;
            assert_eq!(
                n,
                seen.load(Ordering::Relaxed),
                "events out of order or lost"
            );
            seen.fetch_add(1, Ordering::Relaxed);
        }
        s
    })
}

#[test]
fn a_slow_consumer_is_disconnected_and_the_others_get_every_event() {
    let (node, port) = start();
    let mut live = Bystanders::join(port);
    let topic = "com.abuse.flood";

    // The slow subscriber's receive buffer is kept small (set before connecting, as the
    // window scale is fixed then), so that what the kernel holds for it is small next to
    // the flood and the node's queue must absorb the rest.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    socket.connect(&addr.into()).expect("connect to the node");
    let mut slow = Session::join_on(configure(socket.into()));
    slow.subscribe(topic);
    let counts: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let readers: Vec<_> = counts
        .iter()
        .map(|c| reader(Session::join(port), topic, Arc::clone(c)))
        .collect();
    let mut publisher = Session::join(port);
    let sessions_before = publisher.call_meta("wamp.session.count")[0]
        .as_u64()
        .expect("session count");
    let before = node.rss_kib();

    // The slow subscriber reads nothing from here on. The publisher keeps the two readers
    // within 8 events of it (480 KiB, under the bound), so only the slow one falls behind.
    let payload = "x".repeat(EVENT_BYTES);
    let started = Instant::now();
    for n in 0..FLOOD_EVENTS {
        while counts.iter().any(|c| c.load(Ordering::Relaxed) + 8 < n) {
            assert!(
                started.elapsed() < BOUND,
                "the readers stalled at event {n}"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let id = publisher.request_id();
        publisher.send(&json!([16, id, {}, topic, [n, payload]]));
    }
    let readers: Vec<Session> = readers
        .into_iter()
        .map(|r| r.join().expect("a reader got every event in order"))
        .collect();
    for c in &counts {
        assert_eq!(c.load(Ordering::Relaxed), FLOOD_EVENTS);
    }

    // The node dropped the slow session by itself, without it reading anything.
    let deadline = Instant::now() + BOUND;
    loop {
        let count = publisher.call_meta("wamp.session.count")[0]
            .as_u64()
            .expect("session count");
        if count == sessions_before - 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow consumer is still a session ({count} sessions)"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let warnings = node.log_matching("slow consumer");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains(&format!("\"limit\":{MAX_OUTBOUND}")),
        "the configured bound applies: {}",
        warnings[0]
    );
    rss_bounded(&node, before, "slow consumer");

    // What reaches the slow subscriber now is what the kernel buffered, not the flood.
    let (got, closed) = read_to_close(&mut slow.ws.s);
    assert!(closed, "the slow consumer's connection is still open");
    // At most: the kernel's largest send buffer, the small receive buffer, and the one
    // batch the node was writing when it gave up; the rest of the flood was dropped.
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20);
    let bound = wmem_max + 64 * 1024 + MAX_OUTBOUND + EVENT_BYTES;
    let flood = FLOOD_EVENTS * EVENT_BYTES;
    assert!(
        flood > bound,
        "the flood ({flood} bytes) must exceed {bound}"
    );
    eprintln!(
        "slow consumer: received {} of {flood} flooded bytes (bound {bound})",
        got.len()
    );
    assert!(
        got.len() <= bound,
        "the slow consumer received {} of {flood} bytes (bound {bound})",
        got.len()
    );
    drop(readers);
    others_still_work(port, &mut live);
}

// ---------------------------------------------------------------------------------------
// Per-session limits.

/// Sends `count` requests made by `make(request id, i)` in one pipelined batch, then reads
/// the `count` replies and returns how many were of type `ok` and how many ERROR
/// `wamp.error.limit_exceeded`.
fn pipelined(
    s: &mut Session,
    count: usize,
    ok: u64,
    make: impl Fn(u64, usize) -> Value,
) -> (usize, usize) {
    let mut batch = Vec::new();
    for i in 0..count {
        let id = s.request_id();
        batch.extend(Ws::frame(0x81, make(id, i).to_string().as_bytes()));
    }
    s.ws.s.write_all(&batch).expect("requests sent");
    let (mut oks, mut limited) = (0, 0);
    for _ in 0..count {
        let reply = s.recv();
        if reply[0] == ok {
            oks += 1;
        } else if reply[0] == 8 && reply[4] == "wamp.error.limit_exceeded" {
            limited += 1;
        } else {
            panic!("unexpected reply {reply}");
        }
    }
    (oks, limited)
}

#[test]
fn endless_subscriptions_registrations_and_calls_hit_the_session_limits() {
    let (node, port) = start();
    let mut live = Bystanders::join(port);
    let before = node.rss_kib();
    let over = SESSION_LIMIT + 200;

    let mut subscriber = Session::join(port);
    // Pipelined: requests still waiting for other shards count against the limit too.
    let got = pipelined(&mut subscriber, over, 33, |id, i| {
        json!([32, id, {}, format!("com.abuse.topic.{i}")])
    });
    assert_eq!(got, (SESSION_LIMIT, over - SESSION_LIMIT), "subscriptions");

    let mut callee = Session::join(port);
    let got = pipelined(&mut callee, over, 65, |id, i| {
        json!([64, id, {}, format!("com.abuse.proc.{i}")])
    });
    assert_eq!(got, (SESSION_LIMIT, over - SESSION_LIMIT), "registrations");

    // The callee never answers: every call stays pending until the caller's limit.
    let mut caller = Session::join(port);
    let mut batch = Vec::new();
    for _ in 0..over {
        let id = caller.request_id();
        batch.extend(Ws::frame(
            0x81,
            json!([48, id, {}, "com.abuse.proc.0", []])
                .to_string()
                .as_bytes(),
        ));
    }
    caller.ws.s.write_all(&batch).expect("calls sent");
    for _ in 0..over - SESSION_LIMIT {
        let reply = caller.recv();
        assert_eq!(reply[0], 8, "{reply}");
        assert_eq!(reply[1], 48, "{reply}");
        assert_eq!(reply[4], "wamp.error.limit_exceeded", "{reply}");
    }
    let mut invocations = 0;
    while invocations < SESSION_LIMIT {
        let msg = callee.recv();
        assert_eq!(msg[0], 68, "{msg}");
        invocations += 1;
    }

    // More callers, one after the other (each batch seen at the callee before the next,
    // so the order is known), fill the callee's pending invocations: past
    // `pending_invocations_per_session` the calls get ERROR instead of an INVOCATION.
    let mut callers: Vec<Session> = (0..4).map(|_| Session::join(port)).collect();
    let batches = [1000, 1000, 1000, 100];
    let mut limited = 0;
    for (caller, count) in callers.iter_mut().zip(batches) {
        let room = INVOCATION_LIMIT - invocations;
        let mut batch = Vec::new();
        for _ in 0..count {
            let id = caller.request_id();
            batch.extend(Ws::frame(
                0x81,
                json!([48, id, {}, "com.abuse.proc.0", []])
                    .to_string()
                    .as_bytes(),
            ));
        }
        caller.ws.s.write_all(&batch).expect("calls sent");
        for _ in 0..count.min(room) {
            let msg = callee.recv();
            assert_eq!(msg[0], 68, "{msg}");
            invocations += 1;
        }
        for _ in room.min(count)..count {
            let reply = caller.recv();
            assert_eq!(
                (reply[0].as_u64(), reply[4].as_str()),
                (Some(8), Some("wamp.error.limit_exceeded")),
                "{reply}"
            );
            limited += 1;
        }
    }
    // 1024 + 3100 calls offered, 4096 pending: 28 refused.
    assert_eq!(
        (invocations, limited),
        (INVOCATION_LIMIT, SESSION_LIMIT + 3100 - INVOCATION_LIMIT)
    );

    rss_bounded(&node, before, "session limits");
    others_still_work(port, &mut live);
    // The abusers themselves still work within their limits.
    assert_eq!(
        subscriber.call_meta("wamp.session.count")[0]
            .as_u64()
            .map(|n| n >= 5),
        Some(true)
    );
}

// ---------------------------------------------------------------------------------------
// File-descriptor flood.

/// The node's open-file limit in the flood test: a few dozen for its own use (rings,
/// listeners, logs), the rest for connections.
const NOFILE: u64 = 256;
const FLOOD_CONNECTIONS: usize = 600;

#[test]
fn a_connection_flood_past_the_fd_limit_is_logged_at_a_bounded_rate_and_recovers() {
    let port = free_port();
    let node = Node::start_with_nofile(&config(port), CORES, &[port], NOFILE);
    assert_eq!(node.proc_status("Pid"), Some(u64::from(node.pid())));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", node.pid())).expect("limits");
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(&format!(" {NOFILE} "))),
        "{limits}"
    );
    let mut live = Bystanders::join(port);

    // Connections that send nothing: the node accepts what its descriptors allow, the rest
    // wait in the listen backlog, and each accepted one is closed at the opening timeout.
    let started = Instant::now();
    let mut flood: Vec<TcpStream> = (0..FLOOD_CONNECTIONS).map(|_| connect(port)).collect();
    // Hold them until the node has run out of descriptors for a while.
    let deadline = Instant::now() + BOUND;
    while node.log_matching("accept failed").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the flood never exhausted the node's descriptors"
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(2 * OPENING_TIMEOUT_MS));
    // Sessions joined before the flood need no new descriptor.
    live.round_trip();
    flood.clear();
    let flood_secs = started.elapsed().as_secs() + 1;

    // Recovery: once the flood is gone, a new session joins (retrying while the node still
    // closes the flood's connections) and works.
    let deadline = Instant::now() + BOUND;
    let mut fresh = loop {
        let attempt = std::panic::catch_unwind(|| Bystanders::join(port));
        match attempt {
            Ok(b) => break b,
            Err(_) => assert!(Instant::now() < deadline, "the node did not recover"),
        }
        thread::sleep(Duration::from_millis(100));
    };
    fresh.round_trip();
    live.round_trip();

    // Accept errors: logged, but at most a couple of lines per second per core.
    let lines = node.log_matching("accept failed");
    eprintln!(
        "fd flood: {} accept-error lines over about {flood_secs} s",
        lines.len()
    );
    let bound = (flood_secs + BOUND.as_secs() / 10) * 2 * u64::from(CORES);
    assert!(
        !lines.is_empty() && lines.len() as u64 <= bound,
        "{} accept-error lines in {flood_secs} s (bound {bound}): {:#?}",
        lines.len(),
        lines.iter().take(5).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------
// Malformed handshakes and transport violations.

/// Sends `request` on a fresh connection; returns the response's status, and checks that
/// the node then closes the connection.
fn http_status(port: u16, request: &[u8]) -> u16 {
    let mut s = connect(port);
    let _ = s.write_all(request);
    let (head, _) = read_head(&mut s);
    let (_, closed) = read_to_close(&mut s);
    assert!(closed, "the connection stayed open after {head:?}");
    status_of(&head)
}

#[test]
fn malformed_handshakes_get_the_documented_answers() {
    let (_node, port) = start();
    let mut live = Bystanders::join(port);
    let good = upgrade("wamp.2.json", "");
    let without = |header: &str| {
        good.lines()
            .filter(|l| !l.starts_with(header))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
    };
    let replace = |from: &str, to: &str| good.replacen(from, to, 1);
    let big = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    // (what, request, HTTP status)
    let http: Vec<(&str, String, u16)> = vec![
        (
            "a header line without a colon",
            replace("Host: 127.0.0.1", "Host 127.0.0.1"),
            400,
        ),
        ("no Sec-WebSocket-Key", without("Sec-WebSocket-Key"), 400),
        ("a key that is not 16 bytes", replace(KEY, "c2hvcnQ="), 400),
        (
            "Sec-WebSocket-Version 8",
            replace("Version: 13", "Version: 8"),
            426,
        ),
        (
            "no Sec-WebSocket-Version",
            without("Sec-WebSocket-Version"),
            426,
        ),
        (
            "an unknown subprotocol",
            replace("wamp.2.json", "wamp.2.cbor"),
            400,
        ),
        ("no subprotocol", without("Sec-WebSocket-Protocol"), 400),
        ("no Upgrade header", without("Upgrade:"), 400),
        ("POST", replace("GET", "POST"), 405),
        ("HTTP/1.0", replace("HTTP/1.1", "HTTP/1.0"), 400),
        ("a path no service serves", replace("/ws", "/nope"), 404),
        ("a head over 8 KiB", big, 431),
    ];
    let mut failures = Vec::new();
    for (what, request, status) in &http {
        let got = http_status(port, request.as_bytes());
        if got != *status {
            failures.push(format!("{what}: {got}, expected {status}"));
        }
    }

    // RawSocket handshakes: (what, 4 octets, the error reply).
    let raw: [(&str, [u8; 4], [u8; 4]); 4] = [
        (
            "reserved octets",
            [0x7f, 0xf1, 0x00, 0x01],
            [0x7f, 0x30, 0, 0],
        ),
        (
            "unknown serializer 5",
            [0x7f, 0xf5, 0, 0],
            [0x7f, 0x10, 0, 0],
        ),
        (
            "illegal serializer 0",
            [0x7f, 0xf0, 0, 0],
            [0x7f, 0x10, 0, 0],
        ),
        (
            "unknown serializer 15",
            [0x7f, 0xff, 0, 0],
            [0x7f, 0x10, 0, 0],
        ),
    ];
    for (what, hello, expect) in raw {
        let mut s = connect(port);
        s.write_all(&hello).expect("handshake sent");
        let (reply, closed) = read_to_close(&mut s);
        if reply != expect || !closed {
            failures.push(format!("RawSocket {what}: {reply:02x?} (closed: {closed})"));
        }
    }
    // RawSocket frames after a good handshake: (what, prefix); the connection is closed.
    for (what, prefix) in [
        ("reserved bits in a frame prefix", [0xf0, 0, 0, 2]),
        ("reserved frame type 3", [0x03, 0, 0, 2]),
        ("X bit with a non-zero length", [0x08, 0, 0, 1]),
        ("a length over the announced 2^16", [0x00, 0x01, 0x00, 0x01]),
    ] {
        let mut s = connect(port);
        s.write_all(&[0x7f, 0xf1, 0, 0]).expect("handshake sent");
        let mut reply = [0u8; 4];
        s.read_exact(&mut reply).expect("handshake reply");
        let _ = s.write_all(&prefix);
        let _ = s.write_all(b"[]");
        let (rest, closed) = read_to_close(&mut s);
        if !closed || !rest.is_empty() {
            failures.push(format!("RawSocket {what}: {rest:02x?} (closed: {closed})"));
        }
    }

    // WebSocket violations after the upgrade: (what, subprotocol, frame, close code).
    let hello = json!([1, "realm1", {"roles": {"caller": {}}}]).to_string();
    let ws: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "a binary frame on a JSON session",
            "wamp.2.json",
            Ws::frame(0x82, hello.as_bytes()),
            1002,
        ),
        (
            "text that is not JSON",
            "wamp.2.json",
            Ws::frame(0x81, b"{not json"),
            1002,
        ),
        (
            "text that is not UTF-8",
            "wamp.2.json",
            Ws::frame(0x81, &[0xff, 0xfe]),
            1007,
        ),
        (
            "an unmasked frame",
            "wamp.2.json",
            vec![0x81, 0x02, b'[', b']'],
            1002,
        ),
        (
            "reserved opcode 3",
            "wamp.2.json",
            Ws::frame(0x83, b"[]"),
            1002,
        ),
        ("RSV2 set", "wamp.2.json", Ws::frame(0xa1, b"[]"), 1002),
        (
            "a continuation with no message",
            "wamp.2.json",
            Ws::frame(0x80, b"[]"),
            1002,
        ),
        (
            "a fragmented ping",
            "wamp.2.json",
            Ws::frame(0x09, b"x"),
            1002,
        ),
    ];
    for (what, protocol, frame, code) in ws {
        let (mut conn, _) = Ws::open(port, protocol, "");
        conn.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let _ = conn.s.write_all(&frame);
        let got = conn.close_code();
        if got != Ok(code) {
            failures.push(format!("WebSocket {what}: close {got:?}, expected {code}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    others_still_work(port, &mut live);
}
