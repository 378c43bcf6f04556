//! The client end of one WAMP transport, sans-IO: WebSocket (masked client frames) or
//! RawSocket, carrying JSON or MessagePack WAMP messages.
//!
//! [`Wire`] wires the io crate's client roles ([`ClientHandshake`], [`Connection`] with
//! [`Role::Client`], [`RawSocketConn`] with the client role) to the core codec: bytes read
//! from the socket go in through [`Wire::handle_read`], decoded [`Message`]s come out of
//! [`Wire::poll_message`], and [`Wire::send`] appends an encoded, framed message to the
//! caller's output buffer. What it does not do: no socket, no clock, no WAMP session logic
//! (that is [`crate::session`]), and no framing or codec of its own.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use switchyard_core::codec::{self, DecodeError, EncodeError, Serializer};
use switchyard_core::message::Message;
use switchyard_io::rawsocket::{self, RawSocketConn};
use switchyard_io::ws::conn::{self, Connection, Role};
use switchyard_io::ws::deflate::{DeflateConfig, PerMessageDeflate};
use switchyard_io::ws::handshake::{ClientHandshake, ClientHandshakeError};

/// The largest message a load session accepts: big enough for any payload the scenarios
/// send, small enough that a misbehaving router cannot make one session hoard memory.
pub const MAX_MESSAGE_SIZE: usize = 1 << 20;

/// Why a transport failed; one variant per rule broken.
#[derive(Debug)]
#[non_exhaustive]
pub enum WireError {
    /// The router closed the WebSocket (code and reason as sent).
    Closed {
        /// The close code the router sent.
        code: Option<u16>,
        /// The reason it sent.
        reason: String,
    },
    /// A message could not be decoded.
    Decode(DecodeError),
    /// A message could not be encoded.
    Encode(EncodeError),
    /// The WebSocket upgrade was refused or malformed.
    Handshake(ClientHandshakeError),
    /// The router chose no subprotocol although one was offered.
    NoSubprotocol,
    /// Sending before the transport handshake finished.
    NotOpen,
    /// The RawSocket transport failed.
    RawSocket(rawsocket::Error),
    /// A message was refused by the RawSocket sender (too large for the router).
    RawSocketSend(rawsocket::SendError),
    /// The WebSocket connection failed.
    WebSocket(conn::Error),
    /// The permessage-deflate parameters the router accepted cannot be used.
    Deflate(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed { code, reason } => write!(f, "router closed ({code:?}): {reason}"),
            Self::Decode(e) => write!(f, "decode: {e}"),
            Self::Encode(e) => write!(f, "encode: {e}"),
            Self::Handshake(e) => write!(f, "websocket handshake: {e}"),
            Self::NoSubprotocol => write!(f, "router chose no WAMP subprotocol"),
            Self::NotOpen => write!(f, "transport not open"),
            Self::RawSocket(e) => write!(f, "rawsocket: {e}"),
            Self::RawSocketSend(e) => write!(f, "rawsocket send: {e}"),
            Self::WebSocket(e) => write!(f, "websocket: {e}"),
            Self::Deflate(e) => write!(f, "permessage-deflate: {e}"),
        }
    }
}

impl std::error::Error for WireError {}

impl WireError {
    /// A short, stable name for failure tables ("failures by cause").
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Decode(_) => "decode",
            Self::Encode(_) => "encode",
            Self::Handshake(_) => "ws-handshake",
            Self::NoSubprotocol => "no-subprotocol",
            Self::NotOpen => "not-open",
            Self::RawSocket(_) => "rawsocket",
            Self::RawSocketSend(_) => "rawsocket-send",
            Self::WebSocket(_) => "websocket",
            Self::Deflate(_) => "deflate",
        }
    }
}

enum State {
    /// The upgrade request is sent; the response head is being read.
    Upgrading {
        handshake: ClientHandshake,
        head: Vec<u8>,
        mask_seed: u64,
    },
    WebSocket(Box<Connection>),
    RawSocket(Box<RawSocketConn>),
    /// The transport failed or closed; the error was reported once.
    Done,
}

/// One client transport: handshake, framing and codec.
pub struct Wire {
    serializer: Serializer,
    state: State,
    /// Whole frames received and not yet decoded; bounded by what one read delivers,
    /// because the owner drains it after every [`Wire::handle_read`].
    inbox: VecDeque<Bytes>,
    failure: Option<WireError>,
    scratch: Vec<u8>,
}

impl Wire {
    /// A WebSocket transport; appends the upgrade request to `out`. `key` and `mask_seed`
    /// come from the caller's seeded generator (nothing here is random).
    pub fn websocket(
        serializer: Serializer,
        host: &str,
        path: &str,
        key: [u8; 16],
        mask_seed: u64,
        out: &mut Vec<u8>,
    ) -> Self {
        let handshake = ClientHandshake::new(key, vec![serializer.subprotocol().to_owned()], false);
        handshake.write_request(host, path, out);
        Self::with_state(
            serializer,
            State::Upgrading {
                handshake,
                head: Vec::new(),
                mask_seed,
            },
        )
    }

    /// A RawSocket transport; appends the client handshake to `out`.
    pub fn rawsocket(serializer: Serializer, out: &mut Vec<u8>) -> Self {
        let raw_serializer = match serializer {
            Serializer::Json => rawsocket::Serializer::Json,
            Serializer::MsgPack => rawsocket::Serializer::MsgPack,
        };
        let config = rawsocket::Config {
            max_message_size: MAX_MESSAGE_SIZE,
            ..rawsocket::Config::default()
        };
        let mut conn = RawSocketConn::new(
            rawsocket::Role::Client {
                serializer: raw_serializer,
            },
            config,
        );
        conn.poll_transmit(out);
        Self::with_state(serializer, State::RawSocket(Box::new(conn)))
    }

    fn with_state(serializer: Serializer, state: State) -> Self {
        Self {
            serializer,
            state,
            inbox: VecDeque::new(),
            failure: None,
            scratch: Vec::new(),
        }
    }

    /// The serializer in use.
    pub fn serializer(&self) -> Serializer {
        self.serializer
    }

    /// Whether the transport handshake is done, so that [`Wire::send`] may be used.
    pub fn is_open(&self) -> bool {
        match &self.state {
            State::WebSocket(_) => true,
            State::RawSocket(c) => c.is_open(),
            State::Upgrading { .. } | State::Done => false,
        }
    }

    /// Whether the transport has failed or closed (any error is in [`Wire::poll_message`]).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Consumes `data` read from the socket; appends obliged replies (pongs, close echo) to
    /// `out`. Messages and a failure come out of [`Wire::poll_message`].
    pub fn handle_read(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if let State::Upgrading {
            handshake,
            head,
            mask_seed,
        } = &mut self.state
        {
            head.extend_from_slice(data);
            let accepted = match handshake.parse_response(head) {
                Ok(None) => return,
                Ok(Some(a)) => a,
                Err(e) => return self.fail(WireError::Handshake(e)),
            };
            if accepted.subprotocol.is_none() {
                return self.fail(WireError::NoSubprotocol);
            }
            let deflate = match accepted.deflate {
                None => None,
                Some(params) => {
                    match PerMessageDeflate::new_client(&params, &DeflateConfig::default()) {
                        Ok(d) => Some(d),
                        Err(e) => return self.fail(WireError::Deflate(e.to_string())),
                    }
                }
            };
            let config = conn::Config {
                max_frame_size: MAX_MESSAGE_SIZE,
                max_message_size: MAX_MESSAGE_SIZE,
                ..conn::Config::default()
            };
            let conn = Connection::new(
                Role::Client {
                    mask_seed: *mask_seed,
                },
                config,
                deflate,
            );
            // The bytes after the response head are already WebSocket frames.
            self.scratch = std::mem::take(head);
            self.scratch.drain(..accepted.consumed);
            self.state = State::WebSocket(Box::new(conn));
            let rest = std::mem::take(&mut self.scratch);
            self.feed(&rest, out);
            return;
        }
        self.feed(data, out);
    }

    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        match &mut self.state {
            State::WebSocket(c) => {
                c.handle_read(data);
                loop {
                    c.poll_transmit(out);
                    match c.poll_event() {
                        Some(conn::Event::Message { data, .. }) => self.inbox.push_back(data),
                        Some(conn::Event::Closed { code, reason }) => {
                            c.poll_transmit(out);
                            return self.fail(WireError::Closed { code, reason });
                        }
                        Some(conn::Event::Failed(e)) => {
                            c.poll_transmit(out);
                            return self.fail(WireError::WebSocket(e));
                        }
                        None => break,
                    }
                }
            }
            State::RawSocket(c) => {
                c.handle_read(data);
                while let Some(ev) = c.poll_event() {
                    match ev {
                        rawsocket::Event::Message(m) => self.inbox.push_back(m),
                        rawsocket::Event::Open { .. } | rawsocket::Event::Pong(_) => {}
                        rawsocket::Event::Failed(e) => {
                            c.poll_transmit(out);
                            return self.fail(WireError::RawSocket(e));
                        }
                    }
                }
                c.poll_transmit(out);
            }
            State::Upgrading { .. } | State::Done => {}
        }
    }

    fn fail(&mut self, e: WireError) {
        self.state = State::Done;
        if self.failure.is_none() {
            self.failure = Some(e);
        }
    }

    /// The next received message; after the last one, the failure (once), then `None`.
    pub fn poll_message(&mut self) -> Option<Result<Message, WireError>> {
        if let Some(frame) = self.inbox.pop_front() {
            if self.inbox.is_empty() && self.inbox.capacity() > 0 {
                // An idle session keeps no queue allocation.
                self.inbox = VecDeque::new();
            }
            return Some(codec::decode(self.serializer, frame).map_err(WireError::Decode));
        }
        self.failure.take().map(Err)
    }

    /// Appends `message`, encoded and framed, to `out`.
    pub fn send(&mut self, message: &Message, out: &mut Vec<u8>) -> Result<(), WireError> {
        self.scratch.clear();
        if let Err(e) = codec::encode(self.serializer, message, &mut self.scratch) {
            self.scratch.clear();
            return Err(WireError::Encode(e));
        }
        let text = self.serializer == Serializer::Json;
        match &mut self.state {
            State::WebSocket(c) => {
                c.send_message(text, &self.scratch, out);
                Ok(())
            }
            State::RawSocket(c) if c.is_open() => c
                .send_message(&self.scratch, out)
                .map_err(WireError::RawSocketSend),
            _ => Err(WireError::NotOpen),
        }
    }

    /// Appends a WebSocket close (1000) to `out`; RawSocket has no close frame.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        if let State::WebSocket(c) = &mut self.state {
            c.close(1000, "", out);
        }
    }
}
