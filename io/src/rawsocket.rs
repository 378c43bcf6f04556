//! WAMP-over-RawSocket (WAMP spec, "RawSocket Transport") as a sans-IO codec.
//!
//! [`RawSocketConn`] takes the bytes read from a stream ([`RawSocketConn::handle_read`]) and
//! hands back events ([`RawSocketConn::poll_event`]: the handshake's outcome, WAMP messages,
//! PONGs, failure) and the bytes the protocol obliges us to send
//! ([`RawSocketConn::poll_transmit`]: the handshake reply, PONGs echoing PINGs, error
//! replies). It plays either role: the router (server) or a client (the load generator).
//!
//! The wire format: a 4-octet handshake `0x7F, LLLL SSSS, 0, 0` each way (`SSSS` the
//! serializer, `LLLL` the exponent of the largest message the sender will receive,
//! `2^(9+L)` octets), an error reply `0x7F, EEEE 0000, 0, 0`, then frames with a 4-octet
//! prefix `RRRR XTTT` + 24-bit length (`X` set only for a length of exactly 16 MiB, `TTT` 0
//! message, 1 PING, 2 PONG).
//!
//! What it does not do: no socket, no clock (PING scheduling and the handshake timeout
//! belong to the driver), no WAMP parsing (messages are opaque bytes for `core`).
//!
//! Limits: a frame longer than the receive limit announced in our handshake fails the
//! connection as soon as its prefix is read, before any payload is buffered; the read buffer
//! holds at most one incomplete frame and is released when empty; queued replies are bounded
//! ([`Error::TransmitBacklog`]). The caller drains `poll_event` and `poll_transmit` after each
//! `handle_read`, which bounds the event queue by the bytes of one read.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

/// The first octet of every RawSocket handshake; no HTTP request starts with it.
pub const MAGIC: u8 = 0x7f;

/// The largest payload a frame can carry: 16 MiB (the 24 length bits plus the `X` bit).
pub const MAX_FRAME_LEN: usize = 1 << 24;

/// Bytes of replies (PONGs) that may wait in the transmit queue beyond one maximal frame.
const MAX_PENDING_CONTROL: usize = 64 * 1024;

/// Whether a connection whose first octet is `first_byte` speaks RawSocket (else HTTP, when
/// both share a port).
pub fn is_rawsocket(first_byte: u8) -> bool {
    first_byte == MAGIC
}

/// The error reply for a router at its connection limit (error 4); the driver sends it and
/// closes instead of creating a [`RawSocketConn`].
pub fn max_connections_reply() -> [u8; 4] {
    HandshakeErrorCode::MaxConnectionCountReached.reply()
}

/// The largest message size `2^(9+exponent)` for a handshake length exponent (0..=15).
pub fn max_length(exponent: u8) -> usize {
    1 << (9 + usize::from(exponent.min(15)))
}

/// The handshake exponent announcing `max` octets: the largest `L` with `2^(9+L) <= max`,
/// at least 0 (512 octets) and at most 15 (16 MiB).
pub fn length_exponent(max: usize) -> u8 {
    let mut exp = 0;
    while exp < 15 && max_length(exp + 1) <= max {
        exp += 1;
    }
    exp
}

/// The serializers RawSocket can announce that Switchyard speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Serializer {
    /// `wamp.2.json`, id 1.
    Json,
    /// `wamp.2.msgpack`, id 2.
    MsgPack,
}

impl Serializer {
    /// The id in the handshake's `SSSS` field.
    pub fn id(self) -> u8 {
        match self {
            Self::Json => 0x1,
            Self::MsgPack => 0x2,
        }
    }

    /// The serializer with handshake id `id`, if we speak it.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0x1 => Some(Self::Json),
            0x2 => Some(Self::MsgPack),
            _ => None,
        }
    }
}

/// The spec's handshake error codes (the `EEEE` field of an error reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeErrorCode {
    /// 1: the serializer is not supported.
    SerializerUnsupported,
    /// 2: the maximum message length is unacceptable.
    MaxLengthUnacceptable,
    /// 3: reserved bits were used.
    ReservedBitsUsed,
    /// 4: the router has reached its maximum connection count.
    MaxConnectionCountReached,
    /// 5..=15: reserved for future errors (as received by a client).
    Other(u8),
}

impl HandshakeErrorCode {
    /// The code's value (1..=15).
    pub fn code(self) -> u8 {
        match self {
            Self::SerializerUnsupported => 1,
            Self::MaxLengthUnacceptable => 2,
            Self::ReservedBitsUsed => 3,
            Self::MaxConnectionCountReached => 4,
            Self::Other(c) => c & 0x0f,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::SerializerUnsupported,
            2 => Self::MaxLengthUnacceptable,
            3 => Self::ReservedBitsUsed,
            4 => Self::MaxConnectionCountReached,
            c => Self::Other(c),
        }
    }

    /// The 4-octet error reply `0x7F, EEEE 0000, 0, 0`.
    pub fn reply(self) -> [u8; 4] {
        [MAGIC, self.code() << 4, 0x00, 0x00]
    }
}

/// The transport message types of the frame prefix's `TTT` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    /// 0: a WAMP message.
    Message,
    /// 1: a PING; the peer must answer with a PONG echoing the payload.
    Ping,
    /// 2: a PONG.
    Pong,
}

impl FrameType {
    fn bits(self) -> u8 {
        match self {
            Self::Message => 0,
            Self::Ping => 1,
            Self::Pong => 2,
        }
    }
}

/// The 4-octet prefix of a frame of `len` payload octets (at most [`MAX_FRAME_LEN`]; the
/// caller checks the peer's limit, which is never larger).
pub fn frame_prefix(kind: FrameType, len: usize) -> [u8; 4] {
    debug_assert!(len <= MAX_FRAME_LEN);
    let x = if len == MAX_FRAME_LEN { 0x08 } else { 0x00 };
    // Only the low 24 bits go into the length field; 16 MiB is carried by X.
    let len = len as u32 & 0x00ff_ffff;
    [
        x | kind.bits(),
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
    ]
}

/// One complete frame (prefix and payload), for fan-out: encoded once, the same `Bytes`
/// shared by every connection. The caller checks each peer's limit.
pub fn frame(kind: FrameType, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&frame_prefix(kind, payload.len()));
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Which side of the connection we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The router: waits for the client's handshake and answers it.
    Server,
    /// A client asking for `serializer`: sends its handshake first.
    Client {
        /// The serializer requested.
        serializer: Serializer,
    },
}

/// Per-connection options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The largest message we receive. It is announced as the exponent
    /// [`length_exponent`]`(max_message_size)`, and what is enforced is exactly the announced
    /// size (so at least 512 octets, at most 16 MiB).
    pub max_message_size: usize,
    /// Serializers a server accepts (a client's request for another gets error 1).
    pub serializers: Vec<Serializer>,
    /// A server refuses (error 2) a client that cannot receive messages this large.
    pub min_peer_message_size: usize,
}

impl Default for Config {
    /// 16 MiB messages (Crossbar's `max_message_size` default), JSON and MessagePack, any
    /// peer limit accepted.
    fn default() -> Self {
        Self {
            max_message_size: MAX_FRAME_LEN,
            serializers: vec![Serializer::Json, Serializer::MsgPack],
            min_peer_message_size: 0,
        }
    }
}

/// What the connection reports to its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake succeeded.
    Open {
        /// The serializer agreed.
        serializer: Serializer,
        /// The largest message the peer receives; [`RawSocketConn::send_message`] enforces it.
        peer_max_message_size: usize,
    },
    /// A WAMP message (serialized, opaque here).
    Message(Bytes),
    /// A PONG arrived (the answer to one of our PINGs).
    Pong(Bytes),
    /// The connection failed; send what `poll_transmit` still gives, then close.
    Failed(Error),
}

/// Why a connection failed; one variant per rule broken.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The first octet is not 0x7F: not a RawSocket peer.
    NotRawSocket(u8),
    /// The handshake's reserved octets are not zero (error reply 3).
    HandshakeReservedBits,
    /// The client asked for serializer 0, which the spec declares illegal (error reply 1).
    IllegalSerializer,
    /// The client asked for a serializer we do not speak (error reply 1).
    UnsupportedSerializer(u8),
    /// The client's receive limit is below `min_peer_message_size` (error reply 2).
    PeerMaxLengthUnacceptable(usize),
    /// The router refused our handshake with this error code.
    Refused(HandshakeErrorCode),
    /// The router answered with a serializer other than the one requested.
    SerializerMismatch(u8),
    /// A frame prefix has reserved bits set.
    FrameReservedBits(u8),
    /// A frame prefix has a reserved message type (3..=7).
    ReservedFrameType(u8),
    /// A frame prefix has the `X` bit set with a non-zero 24-bit length (over 16 MiB).
    LengthOverflow,
    /// A frame is longer than the limit we announced.
    TooLarge {
        /// The frame's payload length.
        len: usize,
        /// Our announced limit.
        max: usize,
    },
    /// A PING's payload is too long to echo within the peer's own limit.
    PingTooLargeToEcho(usize),
    /// The peer sends PINGs faster than their PONGs are collected.
    TransmitBacklog,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRawSocket(b) => write!(f, "first octet {b:#04x} is not the RawSocket magic"),
            Self::HandshakeReservedBits => write!(f, "reserved handshake octets are not zero"),
            Self::IllegalSerializer => write!(f, "serializer 0 is illegal"),
            Self::UnsupportedSerializer(s) => write!(f, "serializer {s} is not supported"),
            Self::PeerMaxLengthUnacceptable(n) => write!(f, "peer receive limit {n} too small"),
            Self::Refused(code) => write!(f, "router refused the handshake: error {}", code.code()),
            Self::SerializerMismatch(s) => write!(f, "router answered with serializer {s}"),
            Self::FrameReservedBits(b) => write!(f, "reserved bits set in frame prefix {b:#04x}"),
            Self::ReservedFrameType(t) => write!(f, "reserved frame type {t}"),
            Self::LengthOverflow => write!(f, "frame length over 16 MiB"),
            Self::TooLarge { len, max } => write!(f, "frame of {len} octets over the limit {max}"),
            Self::PingTooLargeToEcho(n) => write!(f, "PING of {n} octets cannot be echoed"),
            Self::TransmitBacklog => write!(f, "too many unsent PONGs"),
        }
    }
}

impl std::error::Error for Error {}

/// Why a message cannot be sent; the connection stays usable.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The handshake is not complete, or the connection failed.
    NotOpen,
    /// The message is longer than the peer's announced limit (the spec leaves the policy,
    /// e.g. dropping an EVENT, to the caller).
    TooLarge {
        /// The message's length.
        len: usize,
        /// The peer's limit.
        max: usize,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOpen => write!(f, "the RawSocket connection is not open"),
            Self::TooLarge { len, max } => {
                write!(f, "message of {len} octets over the peer's limit {max}")
            }
        }
    }
}

impl std::error::Error for SendError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the peer's 4 handshake octets.
    Handshake,
    Open {
        peer_max: usize,
    },
    Failed,
}

/// One RawSocket connection's protocol state: bytes in, events and replies out.
///
/// Call protocol: feed every read to [`handle_read`](Self::handle_read), then drain
/// [`poll_event`](Self::poll_event) and [`poll_transmit`](Self::poll_transmit); send with
/// [`send_message`](Self::send_message) / [`send_ping`](Self::send_ping). After
/// [`Event::Failed`] the connection ignores input; send the remaining transmit bytes (an
/// error reply, if any) and close.
#[derive(Debug)]
pub struct RawSocketConn {
    role: Role,
    config: Config,
    /// The limit we announce and enforce.
    recv_max: usize,
    state: State,
    /// Unconsumed input: at most one incomplete handshake or frame.
    buf: Vec<u8>,
    events: VecDeque<Event>,
    transmit: Vec<u8>,
}

impl RawSocketConn {
    /// A new connection. A client queues its handshake request at once (see
    /// [`poll_transmit`](Self::poll_transmit)).
    pub fn new(role: Role, config: Config) -> Self {
        let exp = length_exponent(config.max_message_size);
        let mut conn = Self {
            role,
            config,
            recv_max: max_length(exp),
            state: State::Handshake,
            buf: Vec::new(),
            events: VecDeque::new(),
            transmit: Vec::new(),
        };
        if let Role::Client { serializer } = role {
            conn.transmit
                .extend_from_slice(&[MAGIC, (exp << 4) | serializer.id(), 0x00, 0x00]);
        }
        conn
    }

    /// The largest message we receive (the size announced in our handshake).
    pub fn max_message_size(&self) -> usize {
        self.recv_max
    }

    /// Whether the handshake completed and the connection has not failed.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// Whether the connection failed (the driver closes it once the transmit bytes are out).
    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// Bytes held for an incomplete frame (0 when idle: no read buffer is kept).
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Consumes all of `data`; keeps only the bytes of an incomplete handshake or frame.
    pub fn handle_read(&mut self, data: &[u8]) {
        if self.state == State::Failed {
            return;
        }
        if self.buf.is_empty() {
            let used = self.process(data);
            if self.state != State::Failed {
                self.buf.extend_from_slice(&data[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(data);
            let used = self.process(&buf);
            buf.drain(..used);
            self.buf = buf;
        }
        if self.buf.is_empty() || self.state == State::Failed {
            // Idle connections hold no read buffer.
            self.buf = Vec::new();
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends the bytes the protocol obliges us to send (handshake, PONGs, error reply) to
    /// `out`; `false` if there were none.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        if self.transmit.is_empty() {
            return false;
        }
        out.extend_from_slice(&self.transmit);
        self.transmit = Vec::new();
        true
    }

    /// Appends a WAMP message frame to `out`, checking the peer's limit.
    pub fn send_message(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send(FrameType::Message, data, out)
    }

    /// Appends a PING frame to `out` (keep-alive; the driver schedules it).
    pub fn send_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send(FrameType::Ping, payload, out)
    }

    fn send(&mut self, kind: FrameType, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        let State::Open { peer_max } = self.state else {
            return Err(SendError::NotOpen);
        };
        if data.len() > peer_max {
            return Err(SendError::TooLarge {
                len: data.len(),
                max: peer_max,
            });
        }
        out.extend_from_slice(&frame_prefix(kind, data.len()));
        out.extend_from_slice(data);
        Ok(())
    }

    /// Handles as much of `data` as forms complete units; returns the bytes used.
    fn process(&mut self, data: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let rest = &data[pos..];
            let used = match self.state {
                State::Failed => return pos,
                State::Handshake => {
                    let Some(hs) = rest.first_chunk::<4>() else {
                        return pos;
                    };
                    self.handle_handshake(*hs);
                    4
                }
                State::Open { peer_max } => match self.frame(rest, peer_max) {
                    Some(n) => n,
                    None => return pos,
                },
            };
            pos += used;
        }
    }

    fn handle_handshake(&mut self, hs: [u8; 4]) {
        match self.role {
            Role::Server => self.server_handshake(hs),
            Role::Client { serializer } => self.client_handshake(hs, serializer),
        }
    }

    fn server_handshake(&mut self, [magic, second, r1, r2]: [u8; 4]) {
        if magic != MAGIC {
            // The spec defines no reply for a peer that is not RawSocket: just fail.
            return self.fail(Error::NotRawSocket(magic), None);
        }
        if r1 != 0 || r2 != 0 {
            return self.fail(
                Error::HandshakeReservedBits,
                Some(HandshakeErrorCode::ReservedBitsUsed),
            );
        }
        let peer_max = max_length(second >> 4);
        let id = second & 0x0f;
        let serializer = match Serializer::from_id(id) {
            _ if id == 0 => {
                return self.fail(
                    Error::IllegalSerializer,
                    Some(HandshakeErrorCode::SerializerUnsupported),
                );
            }
            Some(s) if self.config.serializers.contains(&s) => s,
            _ => {
                return self.fail(
                    Error::UnsupportedSerializer(id),
                    Some(HandshakeErrorCode::SerializerUnsupported),
                );
            }
        };
        if peer_max < self.config.min_peer_message_size {
            return self.fail(
                Error::PeerMaxLengthUnacceptable(peer_max),
                Some(HandshakeErrorCode::MaxLengthUnacceptable),
            );
        }
        let exp = length_exponent(self.recv_max);
        self.transmit
            .extend_from_slice(&[MAGIC, (exp << 4) | serializer.id(), 0x00, 0x00]);
        self.open(serializer, peer_max);
    }

    fn client_handshake(&mut self, [magic, second, r1, r2]: [u8; 4], requested: Serializer) {
        if magic != MAGIC {
            return self.fail(Error::NotRawSocket(magic), None);
        }
        if r1 != 0 || r2 != 0 {
            return self.fail(Error::HandshakeReservedBits, None);
        }
        let id = second & 0x0f;
        if id == 0 {
            return self.fail(
                Error::Refused(HandshakeErrorCode::from_code(second >> 4)),
                None,
            );
        }
        if id != requested.id() {
            return self.fail(Error::SerializerMismatch(id), None);
        }
        self.open(requested, max_length(second >> 4));
    }

    fn open(&mut self, serializer: Serializer, peer_max: usize) {
        self.state = State::Open { peer_max };
        self.events.push_back(Event::Open {
            serializer,
            peer_max_message_size: peer_max,
        });
    }

    /// Handles one frame at the start of `rest`; `None` if it is not complete yet (or the
    /// connection failed on its prefix).
    fn frame(&mut self, rest: &[u8], peer_max: usize) -> Option<usize> {
        let [head, l0, l1, l2] = *rest.first_chunk::<4>()?;
        let low = (usize::from(l0) << 16) | (usize::from(l1) << 8) | usize::from(l2);
        if head & 0xf0 != 0 {
            self.fail(Error::FrameReservedBits(head), None);
            return None;
        }
        let len = if head & 0x08 != 0 {
            if low != 0 {
                self.fail(Error::LengthOverflow, None);
                return None;
            }
            MAX_FRAME_LEN
        } else {
            low
        };
        // Checked on the prefix alone, before a single payload byte is buffered.
        if len > self.recv_max {
            self.fail(
                Error::TooLarge {
                    len,
                    max: self.recv_max,
                },
                None,
            );
            return None;
        }
        let kind = head & 0x07;
        if kind > 2 {
            self.fail(Error::ReservedFrameType(kind), None);
            return None;
        }
        let payload = rest.get(4..4 + len)?;
        match kind {
            0 => self
                .events
                .push_back(Event::Message(Bytes::copy_from_slice(payload))),
            1 => {
                if len > peer_max {
                    self.fail(Error::PingTooLargeToEcho(len), None);
                    return None;
                }
                if self.transmit.len() + 4 + len > self.recv_max + 4 + MAX_PENDING_CONTROL {
                    self.fail(Error::TransmitBacklog, None);
                    return None;
                }
                self.transmit
                    .extend_from_slice(&frame_prefix(FrameType::Pong, len));
                self.transmit.extend_from_slice(payload);
            }
            _ => self
                .events
                .push_back(Event::Pong(Bytes::copy_from_slice(payload))),
        }
        Some(4 + len)
    }

    fn fail(&mut self, error: Error, reply: Option<HandshakeErrorCode>) {
        if let Some(code) = reply {
            self.transmit.extend_from_slice(&code.reply());
        }
        self.state = State::Failed;
        self.buf = Vec::new();
        self.events.push_back(Event::Failed(error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> RawSocketConn {
        RawSocketConn::new(Role::Server, Config::default())
    }

    /// Feeds `input` to `conn` and returns (events, transmitted bytes).
    fn run(conn: &mut RawSocketConn, input: &[u8]) -> (Vec<Event>, Vec<u8>) {
        conn.handle_read(input);
        let mut events = Vec::new();
        while let Some(e) = conn.poll_event() {
            events.push(e);
        }
        let mut out = Vec::new();
        conn.poll_transmit(&mut out);
        (events, out)
    }

    fn check_handshake(config: Config, input: [u8; 4], events: &[Event], reply: &[u8]) {
        let mut conn = RawSocketConn::new(Role::Server, config);
        let (got_events, got_reply) = run(&mut conn, &input);
        assert_eq!(got_events, events, "{input:02x?}");
        assert_eq!(got_reply, reply, "{input:02x?}");
    }

    fn open(serializer: Serializer, peer: usize) -> Event {
        Event::Open {
            serializer,
            peer_max_message_size: peer,
        }
    }

    #[test]
    fn detects_rawsocket() {
        assert!(is_rawsocket(0x7f));
        assert!(!is_rawsocket(b'G'));
    }

    #[test]
    fn length_exponents() {
        let check = |max: usize, exp: u8| assert_eq!(length_exponent(max), exp, "{max}");
        check(0, 0);
        check(511, 0);
        check(512, 0);
        check(1023, 0);
        check(1024, 1);
        check(65_536, 7);
        check(MAX_FRAME_LEN - 1, 14);
        check(MAX_FRAME_LEN, 15);
        check(usize::MAX, 15);
        assert_eq!(max_length(0), 512);
        assert_eq!(max_length(15), MAX_FRAME_LEN);
    }

    #[test]
    fn server_handshakes() {
        let d = Config::default;
        // Accepted: the serializer echoed with our own exponent (16 MiB: 15).
        check_handshake(
            d(),
            [0x7f, 0x01, 0, 0],
            &[open(Serializer::Json, 512)],
            &[0x7f, 0xf1, 0, 0],
        );
        check_handshake(
            d(),
            [0x7f, 0xf2, 0, 0],
            &[open(Serializer::MsgPack, MAX_FRAME_LEN)],
            &[0x7f, 0xf2, 0, 0],
        );
        let small = Config {
            max_message_size: 70_000,
            ..d()
        };
        check_handshake(
            small,
            [0x7f, 0x31, 0, 0],
            &[open(Serializer::Json, 4096)],
            &[0x7f, 0x71, 0, 0],
        );
        // Every error reply.
        check_handshake(
            d(),
            [0x7f, 0x10, 0, 0],
            &[Event::Failed(Error::IllegalSerializer)],
            &[0x7f, 0x10, 0, 0],
        );
        check_handshake(
            d(),
            [0x7f, 0x13, 0, 0],
            &[Event::Failed(Error::UnsupportedSerializer(3))],
            &[0x7f, 0x10, 0, 0],
        );
        let json_only = Config {
            serializers: vec![Serializer::Json],
            ..d()
        };
        check_handshake(
            json_only,
            [0x7f, 0x12, 0, 0],
            &[Event::Failed(Error::UnsupportedSerializer(2))],
            &[0x7f, 0x10, 0, 0],
        );
        let picky = Config {
            min_peer_message_size: 4096,
            ..d()
        };
        check_handshake(
            picky.clone(),
            [0x7f, 0x21, 0, 0],
            &[Event::Failed(Error::PeerMaxLengthUnacceptable(2048))],
            &[0x7f, 0x20, 0, 0],
        );
        check_handshake(
            picky,
            [0x7f, 0x31, 0, 0],
            &[open(Serializer::Json, 4096)],
            &[0x7f, 0xf1, 0, 0],
        );
        check_handshake(
            d(),
            [0x7f, 0x11, 0, 1],
            &[Event::Failed(Error::HandshakeReservedBits)],
            &[0x7f, 0x30, 0, 0],
        );
        check_handshake(
            d(),
            [0x7f, 0x11, 0x80, 0],
            &[Event::Failed(Error::HandshakeReservedBits)],
            &[0x7f, 0x30, 0, 0],
        );
        check_handshake(
            d(),
            [b'G', b'E', b'T', b' '],
            &[Event::Failed(Error::NotRawSocket(b'G'))],
            &[],
        );
        assert_eq!(max_connections_reply(), [0x7f, 0x40, 0, 0]);
    }

    #[test]
    fn client_handshakes() {
        let check = |reply: [u8; 4], events: &[Event]| {
            let mut c = RawSocketConn::new(
                Role::Client {
                    serializer: Serializer::MsgPack,
                },
                Config {
                    max_message_size: 1 << 16,
                    ..Config::default()
                },
            );
            let mut hello = Vec::new();
            assert!(c.poll_transmit(&mut hello));
            assert_eq!(hello, [0x7f, 0x72, 0, 0]);
            let (got, out) = run(&mut c, &reply);
            assert_eq!(got, events, "{reply:02x?}");
            assert!(out.is_empty());
        };
        check([0x7f, 0x52, 0, 0], &[open(Serializer::MsgPack, 16_384)]);
        check(
            [0x7f, 0x51, 0, 0],
            &[Event::Failed(Error::SerializerMismatch(1))],
        );
        for code in 1..=4u8 {
            check(
                [0x7f, code << 4, 0, 0],
                &[Event::Failed(Error::Refused(
                    HandshakeErrorCode::from_code(code),
                ))],
            );
        }
        check(
            [0x7f, 0x90, 0, 0],
            &[Event::Failed(Error::Refused(HandshakeErrorCode::Other(9)))],
        );
        check(
            [0x7f, 0x52, 1, 0],
            &[Event::Failed(Error::HandshakeReservedBits)],
        );
        check(
            [0x48, 0x54, 0x54, 0x50],
            &[Event::Failed(Error::NotRawSocket(0x48))],
        );
    }

    #[test]
    fn frame_prefixes() {
        let check =
            |kind, len, expect: [u8; 4]| assert_eq!(frame_prefix(kind, len), expect, "{len}");
        check(FrameType::Message, 0, [0, 0, 0, 0]);
        check(FrameType::Ping, 5, [1, 0, 0, 5]);
        check(FrameType::Pong, 0x01_0203, [2, 1, 2, 3]);
        check(
            FrameType::Message,
            MAX_FRAME_LEN - 1,
            [0x00, 0xff, 0xff, 0xff],
        );
        check(FrameType::Message, MAX_FRAME_LEN, [0x08, 0, 0, 0]);
        check(FrameType::Pong, MAX_FRAME_LEN, [0x0a, 0, 0, 0]);
        assert_eq!(
            &frame(FrameType::Message, b"[1]")[..],
            b"\x00\x00\x00\x03[1]"
        );
    }

    /// An open server connection with the given receive limit (peer limit 16 MiB).
    fn open_server(max: usize) -> RawSocketConn {
        let mut s = RawSocketConn::new(
            Role::Server,
            Config {
                max_message_size: max,
                ..Config::default()
            },
        );
        let (events, _) = run(&mut s, &[0x7f, 0xf1, 0, 0]);
        assert_eq!(events.len(), 1);
        s
    }

    #[test]
    fn frames() {
        let check = |input: &[u8], events: &[Event], out: &[u8]| {
            let mut s = open_server(1024);
            let (got, got_out) = run(&mut s, input);
            assert_eq!(got, events, "{input:02x?}");
            assert_eq!(got_out, out, "{input:02x?}");
        };
        let msg = |s: &'static [u8]| Event::Message(Bytes::from_static(s));
        check(b"\x00\x00\x00\x02[]", &[msg(b"[]")], b"");
        check(b"\x00\x00\x00\x00", &[msg(b"")], b"");
        check(
            b"\x00\x00\x00\x02[]\x00\x00\x00\x01x",
            &[msg(b"[]"), msg(b"x")],
            b"",
        );
        // A PING is answered with a PONG echoing its payload.
        check(b"\x01\x00\x00\x03abc", &[], b"\x02\x00\x00\x03abc");
        check(b"\x01\x00\x00\x00", &[], b"\x02\x00\x00\x00");
        check(
            b"\x02\x00\x00\x02hi",
            &[Event::Pong(Bytes::from_static(b"hi"))],
            b"",
        );
        // Incomplete: nothing yet.
        check(b"\x00\x00\x00\x05abc", &[], b"");
        check(b"\x00\x00", &[], b"");
        // Violations.
        check(
            b"\x10\x00\x00\x00",
            &[Event::Failed(Error::FrameReservedBits(0x10))],
            b"",
        );
        check(
            b"\x80\x00\x00\x00",
            &[Event::Failed(Error::FrameReservedBits(0x80))],
            b"",
        );
        check(
            b"\x03\x00\x00\x00",
            &[Event::Failed(Error::ReservedFrameType(3))],
            b"",
        );
        check(
            b"\x07\x00\x00\x00",
            &[Event::Failed(Error::ReservedFrameType(7))],
            b"",
        );
        check(
            b"\x08\x00\x00\x01",
            &[Event::Failed(Error::LengthOverflow)],
            b"",
        );
        check(
            b"\x00\x00\x04\x01",
            &[Event::Failed(Error::TooLarge {
                len: 1025,
                max: 1024,
            })],
            b"",
        );
        check(
            b"\x08\x00\x00\x00",
            &[Event::Failed(Error::TooLarge {
                len: MAX_FRAME_LEN,
                max: 1024,
            })],
            b"",
        );
        // Frames before a violation are delivered; nothing after it.
        check(
            b"\x00\x00\x00\x01a\x03\x00\x00\x00\x00\x00\x00\x01b",
            &[msg(b"a"), Event::Failed(Error::ReservedFrameType(3))],
            b"",
        );
    }

    #[test]
    fn oversized_frame_fails_before_buffering() {
        let mut s = open_server(1024);
        // A 16 MiB frame announced: refused on its prefix, the few payload bytes not kept.
        let (events, _) = run(&mut s, b"\x00\xff\xff\xffpayload");
        assert_eq!(
            events,
            [Event::Failed(Error::TooLarge {
                len: MAX_FRAME_LEN - 1,
                max: 1024
            })]
        );
        assert_eq!(s.buffered_bytes(), 0);
        assert!(s.is_failed());
        // Input after failure is ignored.
        let (events, out) = run(&mut s, b"\x00\x00\x00\x00");
        assert!(events.is_empty() && out.is_empty());
    }

    #[test]
    fn exactly_16_mib_frame() {
        let mut s = open_server(MAX_FRAME_LEN);
        let payload = vec![0x5a; MAX_FRAME_LEN];
        let (events, _) = run(&mut s, &frame(FrameType::Message, &payload));
        assert_eq!(events, [Event::Message(Bytes::from(payload))]);
    }

    #[test]
    fn read_buffer_is_released_when_idle() {
        let mut s = open_server(1024);
        run(&mut s, b"\x00\x00\x00\x05ab");
        assert_eq!(s.buffered_bytes(), 6);
        let (events, _) = run(&mut s, b"cde");
        assert_eq!(events, [Event::Message(Bytes::from_static(b"abcde"))]);
        assert_eq!(s.buffered_bytes(), 0);
        assert_eq!(s.buf.capacity(), 0);
    }

    #[test]
    fn sending_respects_the_peer_limit() {
        let mut c = RawSocketConn::new(
            Role::Client {
                serializer: Serializer::Json,
            },
            Config::default(),
        );
        let mut out = Vec::new();
        assert_eq!(c.send_message(b"x", &mut out), Err(SendError::NotOpen));
        run(&mut c, &[0x7f, 0x01, 0, 0]);
        assert!(c.is_open());
        out.clear();
        c.send_message(&[1; 512], &mut out).unwrap();
        assert_eq!(out.len(), 516);
        assert_eq!(&out[..4], &[0, 0, 2, 0]);
        assert_eq!(
            c.send_message(&[1; 513], &mut out),
            Err(SendError::TooLarge { len: 513, max: 512 })
        );
        out.clear();
        c.send_ping(b"p", &mut out).unwrap();
        assert_eq!(out, b"\x01\x00\x00\x01p");
    }

    #[test]
    fn ping_larger_than_peer_limit_cannot_be_echoed() {
        let mut s = RawSocketConn::new(Role::Server, Config::default());
        run(&mut s, &[0x7f, 0x01, 0, 0]); // The peer receives at most 512 octets.
        let mut ping = frame_prefix(FrameType::Ping, 600).to_vec();
        ping.extend_from_slice(&[0; 600]);
        let (events, out) = run(&mut s, &ping);
        assert_eq!(events, [Event::Failed(Error::PingTooLargeToEcho(600))]);
        assert!(out.is_empty());
    }

    #[test]
    fn pong_backlog_is_bounded() {
        let mut s = open_server(512);
        let mut ping = frame_prefix(FrameType::Ping, 500).to_vec();
        ping.extend_from_slice(&[0; 500]);
        let mut failed = false;
        for _ in 0..200 {
            s.handle_read(&ping);
            if s.is_failed() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        assert!(s.transmit.len() <= 512 + 4 + MAX_PENDING_CONTROL);
        let mut last = None;
        while let Some(e) = s.poll_event() {
            last = Some(e);
        }
        assert_eq!(last, Some(Event::Failed(Error::TransmitBacklog)));
    }

    #[test]
    fn client_and_server_talk() {
        let mut c = RawSocketConn::new(
            Role::Client {
                serializer: Serializer::MsgPack,
            },
            Config::default(),
        );
        let mut s = server();
        let mut wire = Vec::new();
        c.poll_transmit(&mut wire);
        let (events, reply) = run(&mut s, &wire);
        assert_eq!(events, [open(Serializer::MsgPack, MAX_FRAME_LEN)]);
        let (events, _) = run(&mut c, &reply);
        assert_eq!(events, [open(Serializer::MsgPack, MAX_FRAME_LEN)]);
        let mut wire = Vec::new();
        c.send_message(b"\x93\x01\x02\x03", &mut wire).unwrap();
        c.send_ping(b"t1", &mut wire).unwrap();
        let (events, back) = run(&mut s, &wire);
        assert_eq!(
            events,
            [Event::Message(Bytes::from_static(b"\x93\x01\x02\x03"))]
        );
        let (events, _) = run(&mut c, &back);
        assert_eq!(events, [Event::Pong(Bytes::from_static(b"t1"))]);
    }
}
