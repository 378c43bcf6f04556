//! The WebSocket connection state machine (RFC 6455 after the handshake), sans-IO.
//!
//! Bytes read from the socket go in through [`Connection::handle_read`]; complete messages
//! and the end of the connection come out of [`Connection::poll_event`]; the replies the
//! protocol obliges (pongs, the close echo, keep-alive pings) come out of
//! [`Connection::poll_transmit`] as bytes for the caller to write. It reassembles fragmented
//! messages, unmasks, validates UTF-8 (failing as soon as an invalid sequence arrives, also
//! across fragments), inflates permessage-deflate messages, runs the close handshake and the
//! keep-alive timer, and refuses oversized frames and messages before reserving memory.
//!
//! What it does not do: no socket, no clock (time comes in as `now`), no HTTP handshake
//! ([`crate::ws::handshake`]), and no outbound queue: sending appends to a caller's buffer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::ws::deflate::{DeflateError, PerMessageDeflate};
use crate::ws::frame::{
    self, FrameHeader, FrameLimits, OpCode, ProtocolError, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};
use crate::ws::mask::{apply_mask, unmask_into, unmask_into_bytes};
use crate::ws::utf8::{self, Utf8Validator};

/// Once a frame's payload starts to arrive, its buffer is reserved up to this much ahead of
/// the data, or [`RESERVE_FACTOR`] times the chunk that arrived if that is more, never past
/// the announced length (already checked against the limits). A header alone reserves
/// nothing, so a peer announcing a large (but allowed) payload and stalling costs little,
/// while a large frame arriving in 64 KiB reads is copied once, not regrown.
const RESERVE_AHEAD: usize = 64 * 1024;

/// See [`RESERVE_AHEAD`]: a peer makes us reserve at most this many times what it sent.
const RESERVE_FACTOR: usize = 32;

/// Whole messages up to this size found in one read are copied into a shared arena (one
/// allocation per read) instead of one allocation each.
const SMALL_MESSAGE: usize = 4 * 1024;

/// An arena holds at most this much (and never more than the rest of the read), so a small
/// message kept alive by its receiver pins at most this much memory.
const ARENA_SIZE: usize = 64 * 1024;

/// Unanswered pings beyond this many are coalesced: the newest replaces the last queued
/// pong, as RFC 6455 §5.5.3 allows, so a ping flood cannot grow the reply queue.
const MAX_PENDING_PONGS: usize = 16;

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts masked frames, sends unmasked ones.
    Server,
    /// Sends frames masked with keys from an xorshift PRNG seeded with `mask_seed`. The
    /// keys are predictable to whoever knows the seed: fine for a load generator talking to
    /// a router it trusts, not for a browser-grade client behind untrusted proxies.
    Client {
        /// Seed of the masking-key generator (0 is replaced by a fixed non-zero value).
        mask_seed: u64,
    },
}

/// Limits and timers of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The longest frame payload accepted; longer frames fail the connection with 1009
    /// before anything is reserved for them.
    pub max_frame_size: usize,
    /// The longest message accepted (after inflating, for a compressed one); longer ones
    /// fail the connection with 1009 as soon as that is known.
    pub max_message_size: usize,
    /// Send a ping after this long without one; `None` disables keep-alive.
    pub ping_interval: Option<Duration>,
    /// After a keep-alive ping, fail the connection if nothing at all arrives within this.
    pub ping_timeout: Duration,
}

impl Default for Config {
    /// 16 MiB frames and messages (what Autobahn's limits cases send, and Crossbar's
    /// order of magnitude), no keep-alive, a 10 s pong timeout once keep-alive is enabled.
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            ping_interval: None,
            ping_timeout: Duration::from_secs(10),
        }
    }
}

/// What a [`Connection`] reports to its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete message: reassembled, unmasked, inflated, and valid UTF-8 if `text`.
    Message {
        /// A text message (its bytes are valid UTF-8); otherwise binary.
        text: bool,
        /// The payload.
        data: Bytes,
    },
    /// The close handshake finished: the peer's close code (`None` if it sent none) and
    /// reason. Close the socket once the transmit buffer is written.
    Closed {
        /// The code the peer sent.
        code: Option<u16>,
        /// The reason the peer sent (valid UTF-8, at most 123 bytes).
        reason: String,
    },
    /// The connection failed; a close frame (if the protocol calls for one) is queued for
    /// [`Connection::poll_transmit`]. Write it and close the socket.
    Failed(Error),
}

/// Why a connection failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke a protocol rule; the queued close carries
    /// [`ProtocolError::close_code`].
    Protocol(ProtocolError),
    /// Nothing arrived within [`Config::ping_timeout`] of a keep-alive ping.
    PongTimeout,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::PongTimeout => f.write_str("no answer to a keep-alive ping"),
        }
    }
}

impl std::error::Error for Error {}

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Messages flow both ways.
    Open,
    /// We sent a close and wait for the peer's; incoming messages are still delivered.
    CloseSent,
    /// The close handshake is over.
    Closed,
    /// A protocol error or timeout ended the connection; input is ignored.
    Failed,
}

/// A frame the protocol obliges us to send.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reply {
    Pong(Vec<u8>),
    /// A keep-alive ping.
    Ping,
    Close(u16),
}

/// The fragmented (or not yet complete) data message being received.
struct Message {
    text: bool,
    compressed: bool,
    /// Unmasked (and, when compressed, inflated) payload so far.
    data: Vec<u8>,
    /// Streaming validation for text messages received in pieces.
    utf8: Utf8Validator,
}

impl Message {
    /// An empty message; its buffer is reserved as the payload arrives.
    fn new(text: bool, compressed: bool) -> Self {
        Self {
            text,
            compressed,
            data: Vec::new(),
            utf8: Utf8Validator::new(),
        }
    }
}

/// The frame whose payload is being received.
struct Frame {
    header: FrameHeader,
    received: u64,
}

/// One WebSocket connection after the handshake.
///
/// # Method categories
///
/// - Input: [`handle_read`](Self::handle_read) with every byte read from the socket, in
///   order; [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout)
///   has passed.
/// - Output: [`poll_event`](Self::poll_event) until `None`, then
///   [`poll_transmit`](Self::poll_transmit) into the write buffer, then re-arm the timer from
///   [`poll_timeout`](Self::poll_timeout). Once [`is_closed`](Self::is_closed) says so, write
///   what is pending and close the socket.
/// - Commands: [`send_message`](Self::send_message), [`send_ping`](Self::send_ping),
///   [`close`](Self::close) append frames to a caller's buffer directly.
///
/// # Time
///
/// The connection never reads a clock: `now` comes from the caller
/// ([`start_keepalive`](Self::start_keepalive), [`handle_timeout`](Self::handle_timeout)).
///
/// # Memory
///
/// Between messages it holds no payload buffer: a partial header lives in a 14-byte array,
/// and message, control and event buffers are released when they empty.
pub struct Connection {
    role: Role,
    rng: u64,
    config: Config,
    limits: FrameLimits,
    deflate: Option<PerMessageDeflate>,
    phase: Phase,
    /// Bytes of a header that arrived split across reads.
    header_buf: [u8; MAX_HEADER_LEN],
    header_len: usize,
    frame: Option<Frame>,
    /// Payload of the control frame being received (at most 125 bytes).
    control: Vec<u8>,
    message: Option<Message>,
    events: VecDeque<Event>,
    /// Replies to write, each tagged with the number of events queued before it, so that
    /// [`poll_transmit`](Self::poll_transmit) keeps them in order with the events (a pong
    /// goes out before the echo of a message that completed after the ping).
    replies: VecDeque<(u64, Reply)>,
    /// Events queued so far, and events handed out by `poll_event` so far.
    events_queued: u64,
    events_polled: u64,
    /// Our close frame has been written: nothing may follow it.
    close_sent: bool,
    keepalive_deadline: Option<Instant>,
    awaiting_pong: bool,
    /// Something arrived since the last keep-alive ping.
    activity: bool,
}

impl Connection {
    /// A connection whose handshake is done. `deflate` holds the permessage-deflate
    /// contexts if that extension was negotiated (it then allows RSV1).
    pub fn new(role: Role, config: Config, deflate: Option<PerMessageDeflate>) -> Self {
        let limits = FrameLimits {
            max_frame_size: config.max_frame_size as u64,
            rsv1_allowed: deflate.is_some(),
            expect_masked: role == Role::Server,
        };
        let rng = match role {
            Role::Client { mask_seed: 0 } => 0x9e37_79b9_7f4a_7c15,
            Role::Client { mask_seed } => mask_seed,
            Role::Server => 0,
        };
        Self {
            role,
            rng,
            config,
            limits,
            deflate,
            phase: Phase::Open,
            header_buf: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            control: Vec::new(),
            message: None,
            events: VecDeque::new(),
            replies: VecDeque::new(),
            events_queued: 0,
            events_polled: 0,
            close_sent: false,
            keepalive_deadline: None,
            awaiting_pong: false,
            activity: false,
        }
    }

    /// Consumes all of `data` (read from the socket, possibly into a shared per-core
    /// buffer); keeps only the bytes of an incomplete header and the payload of an
    /// incomplete message. Queues events and replies; after an error the connection is
    /// failed and further input is ignored.
    pub fn handle_read(&mut self, data: &[u8]) {
        if !matches!(self.phase, Phase::Open | Phase::CloseSent) {
            return;
        }
        if !data.is_empty() {
            self.activity = true;
        }
        if let Err(e) = self.read_frames(data) {
            self.fail(Error::Protocol(e));
        }
    }

    /// The next event, or `None` when there is none.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        match self.events.pop_front() {
            Some(event) => {
                self.events_polled += 1;
                Some(event)
            }
            None => {
                self.release_events();
                None
            }
        }
    }

    /// An idle connection keeps no buffer, not even the event queue's few slots.
    #[cold]
    fn release_events(&mut self) {
        if self.events.capacity() != 0 {
            self.events = VecDeque::new();
        }
    }

    /// Appends the frames the protocol obliges us to send (pongs, keep-alive pings, the
    /// close echo or failure close) to `out`. Returns whether it appended anything.
    ///
    /// Replies are ordered with the events: only those that arose before the next
    /// unpolled event are written. A driver that calls `poll_transmit` before each
    /// `poll_event` (and once after the last) sends replies and its own answers to events
    /// in the order the input called for them; calling it once after all events is also
    /// fine when that order does not matter.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        self.write_replies(out, self.events_polled)
    }

    /// Writes the replies that arose before event number `upto`.
    fn write_replies(&mut self, out: &mut Vec<u8>, upto: u64) -> bool {
        let before = out.len();
        while let Some((seq, _)) = self.replies.front() {
            if *seq > upto {
                break;
            }
            let Some((_, reply)) = self.replies.pop_front() else {
                break;
            };
            match reply {
                Reply::Pong(payload) => self.write_frame(out, false, OpCode::Pong, &payload),
                Reply::Ping => self.write_frame(out, false, OpCode::Ping, &[]),
                Reply::Close(code) => {
                    self.write_frame(out, false, OpCode::Close, &code.to_be_bytes());
                    self.close_sent = true;
                }
            }
        }
        if self.replies.is_empty() && self.replies.capacity() != 0 {
            self.replies = VecDeque::new();
        }
        out.len() > before
    }

    /// Appends one message as a single frame to `out`, compressed when permessage-deflate
    /// was negotiated and the message reaches its threshold. Ignored once our close frame
    /// has been written, as RFC 6455 §5.5.1 forbids data after it; until then (even after
    /// the peer's close or a failure was queued) the message still precedes our close on
    /// the wire, so an echo of a message received before a failure goes out.
    pub fn send_message(&mut self, text: bool, data: &[u8], out: &mut Vec<u8>) {
        if self.close_sent {
            return;
        }
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        if let Some(deflate) = self
            .deflate
            .as_mut()
            .filter(|d| d.should_compress(data.len()))
        {
            let mut compressed = Vec::new();
            // A compressor failure is local (allocation), never the peer's doing; the
            // message then goes out uncompressed, which is always allowed.
            if deflate.compress(data, &mut compressed).is_ok() {
                if compressed.is_empty() {
                    // A sync flush with nothing new to flush yields no bytes, but the peer
                    // appends 00 00 ff ff and needs the stored-block header before it:
                    // 0x00 is the empty message of RFC 7692 §7.2.3.6.
                    compressed.push(0x00);
                }
                self.write_frame(out, true, opcode, &compressed);
                return;
            }
        }
        self.write_frame(out, false, opcode, data);
    }

    /// Appends a ping to `out`; a payload over 125 bytes is cut to 125. Ignored once our
    /// close frame has been written.
    pub fn send_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if self.close_sent {
            return;
        }
        let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
        self.write_frame(out, false, OpCode::Ping, payload);
    }

    /// Starts the close handshake: appends any pending replies and then a close frame with
    /// `code` and `reason` (cut to 123 bytes at a character boundary) to `out`. The
    /// connection is closed when the peer's close arrives ([`Event::Closed`]). Ignored
    /// unless the connection is open.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut Vec<u8>) {
        if self.phase != Phase::Open {
            return;
        }
        // Everything still owed goes out before the close, whatever the event order.
        self.write_replies(out, u64::MAX);
        let payload = close_payload(code, reason);
        self.write_frame(out, false, OpCode::Close, &payload);
        self.close_sent = true;
        self.phase = Phase::CloseSent;
        self.keepalive_deadline = None;
    }

    /// The close handshake is over or the connection failed: once the transmit buffer is
    /// written, the driver closes the socket.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed | Phase::Failed)
    }

    /// Arms the keep-alive timer (if [`Config::ping_interval`] is set), counting from `now`.
    /// Call once after creating the connection.
    pub fn start_keepalive(&mut self, now: Instant) {
        if let (Some(interval), Phase::Open) = (self.config.ping_interval, self.phase) {
            self.keepalive_deadline = Some(now + interval);
            self.awaiting_pong = false;
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.keepalive_deadline
    }

    /// Runs the keep-alive timer: at the interval, queues a ping; if nothing arrived within
    /// the timeout after it, fails the connection with [`Error::PongTimeout`]. Calls before
    /// the deadline do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.keepalive_deadline else {
            return;
        };
        if now < deadline || self.phase != Phase::Open {
            return;
        }
        let Some(interval) = self.config.ping_interval else {
            self.keepalive_deadline = None;
            return;
        };
        if self.awaiting_pong && !self.activity {
            self.keepalive_deadline = None;
            self.fail(Error::PongTimeout);
            return;
        }
        if self.awaiting_pong {
            // Anything at all (not only the pong: a long message can delay it) proves the
            // peer alive; the next ping is due one interval from now.
            self.awaiting_pong = false;
            self.keepalive_deadline = Some(now + interval);
        } else {
            self.push_reply(Reply::Ping);
            self.awaiting_pong = true;
            self.activity = false;
            self.keepalive_deadline = Some(now + self.config.ping_timeout);
        }
    }

    /// The bytes this connection holds beyond its own struct (buffers and queue), for
    /// memory accounting and the idle-memory tests.
    pub fn buffered_bytes(&self) -> usize {
        self.control.capacity()
            + self.message.as_ref().map_or(0, |m| m.data.capacity())
            + self.events.capacity() * size_of::<Event>()
            + self.replies.capacity() * size_of::<(u64, Reply)>()
            + self
                .replies
                .iter()
                .map(|(_, r)| match r {
                    Reply::Pong(p) => p.capacity(),
                    _ => 0,
                })
                .sum::<usize>()
    }

    fn read_frames(&mut self, mut input: &[u8]) -> Result<(), ProtocolError> {
        // Small messages of this read share one allocation; what is left of it is freed
        // when the last of them is dropped.
        let mut arena = BytesMut::new();
        loop {
            if !matches!(self.phase, Phase::Open | Phase::CloseSent) {
                return Ok(());
            }
            if self.frame.is_none() {
                if input.is_empty() {
                    return Ok(());
                }
                if let Some(rest) = self.read_small_message(input, &mut arena)? {
                    input = rest;
                    continue;
                }
                let Some(header) = self.read_header(&mut input)? else {
                    return Ok(());
                };
                if self.whole_message_at_once(&header, input) {
                    // Fast path: a single-frame message entirely in this read.
                    let len = header.payload_len as usize;
                    self.read_whole_message(&header, input, &mut arena)?;
                    input = &input[len..];
                    continue;
                }
                self.begin_frame(header)?;
            }
            let Some(frame) = self.frame.as_ref() else {
                return Ok(());
            };
            let remaining = frame.header.payload_len - frame.received;
            // `n` is at most `input.len()`, so it fits in usize.
            let n = remaining.min(input.len() as u64) as usize;
            let (chunk, rest) = input.split_at(n);
            input = rest;
            if n > 0 {
                self.read_payload(chunk)?;
            }
            if n as u64 == remaining {
                self.end_frame()?;
            } else {
                return Ok(());
            }
        }
    }

    /// Parses the next header from the saved partial header and `input`, consuming its
    /// bytes from `input`. `Ok(None)`: all of `input` was saved, more is needed.
    fn read_header(&mut self, input: &mut &[u8]) -> Result<Option<FrameHeader>, ProtocolError> {
        if self.header_len == 0 {
            return match frame::parse_header(input, &self.limits)? {
                Some(header) => {
                    *input = &input[header.header_len..];
                    Ok(Some(header))
                }
                None => {
                    // A partial header is shorter than MAX_HEADER_LEN, or it would have
                    // parsed; it fits the array.
                    self.header_buf[..input.len()].copy_from_slice(input);
                    self.header_len = input.len();
                    *input = &[];
                    Ok(None)
                }
            };
        }
        let old = self.header_len;
        let take = (MAX_HEADER_LEN - old).min(input.len());
        self.header_buf[old..old + take].copy_from_slice(&input[..take]);
        match frame::parse_header(&self.header_buf[..old + take], &self.limits)? {
            Some(header) => {
                self.header_len = 0;
                *input = &input[header.header_len - old..];
                Ok(Some(header))
            }
            None => {
                self.header_len = old + take;
                *input = &input[take..];
                Ok(None)
            }
        }
    }

    /// The fast path for the commonest frame: a small whole message from a client (final,
    /// text or binary, no RSV bits, masked, a 7-bit length, within the limits), with its
    /// payload in `input`, no header saved from the previous read and no fragmented message
    /// open. Returns what follows it in `input`, or `None` when anything differs: the general
    /// path then makes every check in wire order and reports the first rule broken.
    #[inline]
    fn read_small_message<'a>(
        &mut self,
        input: &'a [u8],
        arena: &mut BytesMut,
    ) -> Result<Option<&'a [u8]>, ProtocolError> {
        let [b0, b1, k0, k1, k2, k3, rest @ ..] = input else {
            return Ok(None);
        };
        let len = usize::from(b1 & 0x7f);
        // 0x81 and 0x82: FIN, no RSV bit, text or binary. 0x80 in the second byte: masked.
        // A length byte under 126 is the whole length.
        if !(*b0 == 0x81 || *b0 == 0x82)
            || b1 & 0x80 == 0
            || len >= 126
            || len > rest.len()
            || self.header_len != 0
            || self.message.is_some()
            || !self.limits.expect_masked
            || len as u64 > self.limits.max_frame_size
            || len > self.config.max_message_size
        {
            return Ok(None);
        }
        let (payload, rest) = rest.split_at(len);
        let text = *b0 == 0x81;
        if arena.capacity() - arena.len() < len {
            // The rest of the read bounds what its small messages can need.
            *arena = BytesMut::with_capacity((len + rest.len()).min(ARENA_SIZE).max(len));
        }
        // Unmasking also tells whether the text is all ASCII, which settles its validation.
        let ascii = unmask_into_bytes(arena, payload, [*k0, *k1, *k2, *k3], 0);
        let data = arena.split().freeze();
        if text && !ascii && !utf8::is_valid(&data) {
            return Err(ProtocolError::TextNotUtf8);
        }
        self.push_event(Event::Message { text, data });
        Ok(Some(rest))
    }

    fn whole_message_at_once(&self, header: &FrameHeader, input: &[u8]) -> bool {
        header.fin
            && matches!(header.opcode, OpCode::Text | OpCode::Binary)
            && self.message.is_none()
            && header.payload_len <= input.len() as u64
    }

    /// Delivers a single-frame message whose payload is the start of `input` (which holds
    /// it whole): unmasked while copied, small ones into the read's shared `arena`.
    fn read_whole_message(
        &mut self,
        header: &FrameHeader,
        input: &[u8],
        arena: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        // The caller checked that the payload is in `input`, so it fits in usize.
        let len = header.payload_len as usize;
        let payload = &input[..len];
        let text = header.opcode == OpCode::Text;
        if header.rsv1 {
            // The same streaming path as a message arriving in pieces, so that which error
            // fails a bad compressed message does not depend on the read boundaries.
            let mut raw = Vec::with_capacity(len);
            unmask_payload(&mut raw, payload, header.mask, 0);
            let mut message = Message::new(text, true);
            self.inflate_into(&mut message, &raw, true)?;
            return self.deliver(message);
        }
        if len > self.config.max_message_size {
            return Err(ProtocolError::MessageTooLarge {
                limit: self.config.max_message_size as u64,
            });
        }
        // Unmasking also tells whether the text is all ASCII, which settles its validation.
        let (data, ascii) = if len <= SMALL_MESSAGE {
            if arena.capacity() < len {
                // The rest of the read bounds what its small messages can need.
                *arena = BytesMut::with_capacity(input.len().min(ARENA_SIZE).max(len));
            }
            let ascii = match header.mask {
                Some(key) => unmask_into_bytes(arena, payload, key, 0),
                None => {
                    arena.extend_from_slice(payload);
                    false
                }
            };
            (arena.split().freeze(), ascii)
        } else {
            let mut data = Vec::with_capacity(len);
            let ascii = unmask_payload(&mut data, payload, header.mask, 0);
            (Bytes::from(data), ascii)
        };
        if text && !ascii && !utf8::is_valid(&data) {
            return Err(ProtocolError::TextNotUtf8);
        }
        self.push_event(Event::Message { text, data });
        Ok(())
    }

    /// Checks a header against the fragmentation and size rules and prepares to receive
    /// its payload.
    fn begin_frame(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        let len = header.payload_len;
        match header.opcode {
            OpCode::Continuation => {
                let Some(message) = self.message.as_mut() else {
                    return Err(ProtocolError::ContinuationWithoutMessage);
                };
                if !message.compressed {
                    check_message_size(message.data.len() as u64 + len, &self.config)?;
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(ProtocolError::NewMessageDuringFragmented);
                }
                if !header.rsv1 {
                    check_message_size(len, &self.config)?;
                }
                self.message = Some(Message::new(header.opcode == OpCode::Text, header.rsv1));
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                // The parser bounded control payloads at 125 bytes.
                self.control = Vec::with_capacity(len as usize);
            }
        }
        self.frame = Some(Frame {
            header,
            received: 0,
        });
        Ok(())
    }

    fn read_payload(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let Some(frame) = self.frame.as_mut() else {
            return Ok(());
        };
        let header = frame.header;
        // The phase is the payload offset modulo 4, so the cast cannot truncate.
        let phase = (frame.received % 4) as usize;
        // What is left of the frame, this chunk included.
        let remaining = header.payload_len - frame.received;
        frame.received += chunk.len() as u64;
        if header.opcode.is_control() {
            let start = self.control.len();
            self.control.extend_from_slice(chunk);
            if let Some(key) = header.mask {
                apply_mask(&mut self.control[start..], key, phase);
            }
            return Ok(());
        }
        let compressed = self.message.as_ref().is_some_and(|m| m.compressed);
        if compressed {
            let mut scratch = Vec::with_capacity(chunk.len());
            unmask_payload(&mut scratch, chunk, header.mask, phase);
            let mut message = self.message.take();
            let result = match message.as_mut() {
                Some(m) => self.inflate_into(m, &scratch, false),
                None => Ok(()),
            };
            self.message = message;
            return result;
        }
        let Some(message) = self.message.as_mut() else {
            return Ok(());
        };
        let start = message.data.len();
        if message.data.capacity() - start < chunk.len() {
            // `remaining` is at least `chunk.len()`, and the announced length passed the
            // limits in `begin_frame`; the minimum fits in usize because `ahead` does.
            let ahead = RESERVE_AHEAD.max(chunk.len().saturating_mul(RESERVE_FACTOR));
            message.data.reserve(remaining.min(ahead as u64) as usize);
        }
        let ascii = unmask_payload(&mut message.data, chunk, header.mask, phase);
        if message.text {
            let new = &message.data[start..];
            let fed = if ascii {
                message.utf8.feed_ascii(new)
            } else {
                message.utf8.feed(new)
            };
            if fed.is_err() {
                return Err(ProtocolError::TextNotUtf8);
            }
        }
        Ok(())
    }

    fn end_frame(&mut self) -> Result<(), ProtocolError> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        let header = frame.header;
        if header.opcode.is_control() {
            let payload = std::mem::take(&mut self.control);
            return self.handle_control(header.opcode, payload);
        }
        if !header.fin {
            return Ok(());
        }
        let Some(mut message) = self.message.take() else {
            return Ok(());
        };
        if message.compressed {
            self.inflate_into(&mut message, &[], true)?;
        }
        self.deliver(message)
    }

    /// Queues a complete message once its text, if it is text, is known to be whole.
    fn deliver(&mut self, mut message: Message) -> Result<(), ProtocolError> {
        if message.text && message.utf8.finish().is_err() {
            return Err(ProtocolError::TextNotUtf8);
        }
        self.push_event(Event::Message {
            text: message.text,
            data: Bytes::from(message.data),
        });
        Ok(())
    }

    /// Inflates `input` into the message and validates the new text incrementally.
    ///
    /// The text inflated before a decompression error is validated before that error is
    /// reported: zlib emits everything it can decode as soon as it can, so the output before
    /// the first fault in the stream is the same however the input was cut, and checking it
    /// first makes the reported error (and close code) the first one in stream order —
    /// whether the message arrived in one read or byte by byte.
    fn inflate_into(
        &mut self,
        message: &mut Message,
        input: &[u8],
        fin: bool,
    ) -> Result<(), ProtocolError> {
        let start = message.data.len();
        let inflated = self.inflate(input, fin, &mut message.data);
        if message.text && message.utf8.feed(&message.data[start..]).is_err() {
            return Err(ProtocolError::TextNotUtf8);
        }
        inflated
    }

    fn inflate(&mut self, input: &[u8], fin: bool, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let limit = self.config.max_message_size;
        let Some(deflate) = self.deflate.as_mut() else {
            // RSV1 is refused by the parser unless deflate was negotiated.
            return Err(ProtocolError::Rsv1NotNegotiated);
        };
        deflate
            .decompress(input, fin, out, limit)
            .map_err(|e| match e {
                DeflateError::TooLarge { .. } => ProtocolError::MessageTooLarge {
                    limit: limit as u64,
                },
                _ => ProtocolError::DeflateCorrupt,
            })
    }

    fn handle_control(&mut self, opcode: OpCode, payload: Vec<u8>) -> Result<(), ProtocolError> {
        match opcode {
            // After a close is sent nothing more may go out, pongs included.
            OpCode::Ping if self.phase == Phase::Open => self.push_pong(payload),
            OpCode::Close => {
                let (code, reason) = parse_close(&payload)?;
                if self.phase == Phase::Open {
                    // Echo the peer's code (RFC 6455 §5.5.1); a close without one is
                    // answered with 1000, the normal closure.
                    self.push_reply(Reply::Close(code.unwrap_or(1000)));
                }
                self.phase = Phase::Closed;
                self.message = None;
                self.keepalive_deadline = None;
                self.push_event(Event::Closed { code, reason });
            }
            // Pongs only prove the peer alive, which any input already recorded;
            // unsolicited ones are ignored as §5.5.3 allows. Late pings go unanswered.
            _ => {}
        }
        Ok(())
    }

    fn push_event(&mut self, event: Event) {
        self.events.push_back(event);
        self.events_queued += 1;
    }

    fn push_reply(&mut self, reply: Reply) {
        self.replies.push_back((self.events_queued, reply));
    }

    fn push_pong(&mut self, payload: Vec<u8>) {
        let pending = self
            .replies
            .iter()
            .filter(|(_, r)| matches!(r, Reply::Pong(_)))
            .count();
        if pending >= MAX_PENDING_PONGS {
            if let Some((seq, reply @ Reply::Pong(_))) = self.replies.back_mut() {
                *seq = self.events_queued;
                *reply = Reply::Pong(payload);
                return;
            }
        }
        self.push_reply(Reply::Pong(payload));
    }

    fn fail(&mut self, error: Error) {
        if let (Error::Protocol(e), Phase::Open) = (&error, self.phase) {
            self.push_reply(Reply::Close(e.close_code()));
        }
        self.phase = Phase::Failed;
        self.frame = None;
        self.message = None;
        self.control = Vec::new();
        // Pongs and pings already owed still go out before the close; nothing new will.
        self.keepalive_deadline = None;
        self.push_event(Event::Failed(error));
    }

    /// Appends one final frame, masking it in the client role.
    fn write_frame(&mut self, out: &mut Vec<u8>, rsv1: bool, opcode: OpCode, payload: &[u8]) {
        let mask = match self.role {
            Role::Server => None,
            Role::Client { .. } => Some(self.next_mask()),
        };
        out.reserve(frame::header_len(payload.len(), mask.is_some()) + payload.len());
        frame::write_header(out, true, rsv1, opcode, mask, payload.len());
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut out[start..], key, 0);
        }
    }

    /// xorshift64: cheap, seeded, deterministic masking keys.
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        // The low 32 bits of the state are the key; truncation is the point.
        (x as u32).to_le_bytes()
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("phase", &self.phase)
            .field("deflate", &self.deflate.is_some())
            .finish_non_exhaustive()
    }
}

/// Whether a close code may appear on the wire (RFC 6455 §7.4): the defined codes that an
/// endpoint may send (1000-1003, 1007-1011, and 1012-1014 registered later with IANA) and
/// the ranges for libraries and applications (3000-4999).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Splits a close payload into its code and reason, checking both.
fn parse_close(payload: &[u8]) -> Result<(Option<u16>, String), ProtocolError> {
    match payload {
        [] => Ok((None, String::new())),
        [_] => Err(ProtocolError::CloseCodeTruncated),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::CloseReasonNotUtf8)?;
            Ok((Some(code), reason.to_owned()))
        }
    }
}

/// A close frame's payload: the code, then the reason cut to fit 125 bytes at a character
/// boundary.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

fn check_message_size(len: u64, config: &Config) -> Result<(), ProtocolError> {
    if len > config.max_message_size as u64 {
        return Err(ProtocolError::MessageTooLarge {
            limit: config.max_message_size as u64,
        });
    }
    Ok(())
}

/// Appends `payload` to `dst`, unmasking it with `mask` (if any) from key byte `phase`.
/// Returns whether the appended bytes are known to be ASCII: found while unmasking; an
/// unmasked payload is not looked at here (`false`), its validation does that.
fn unmask_payload(dst: &mut Vec<u8>, payload: &[u8], mask: Option<[u8; 4]>, phase: usize) -> bool {
    match mask {
        Some(key) => unmask_into(dst, payload, key, phase),
        None => {
            dst.extend_from_slice(payload);
            false
        }
    }
}
