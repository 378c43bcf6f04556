//! JSON and MessagePack codecs for WAMP messages, and payload transcoding between them.
//!
//! # What it does
//!
//! - [`decode`] reads one frame (the bytes of one WebSocket message or RawSocket frame)
//!   into a [`Message`]. Only the envelope is decoded: type, ids, URIs and the small
//!   Options/Details dictionaries. `args` and `kwargs` are located, checked for
//!   well-formedness and depth, and kept as [`bytes::Bytes`] slices of the input frame (no
//!   copy, no tree) in a [`crate::message::Payload`] tagged with the serializer.
//! - [`encode`] appends one message to a caller-owned `Vec<u8>`, writing the envelope
//!   directly (no intermediate tree) and splicing payload bytes in with one copy. A payload
//!   in another serializer is an error: [`transcode`] it first, once per publication and
//!   target serializer, never per subscriber.
//! - [`transcode`] converts a payload JSON ⇄ MessagePack, mapping the spec's binary
//!   convention (a JSON string starting with `\u0000` followed by base64 ⇄ MessagePack bin).
//!
//! # What it does not do
//!
//! No framing (WebSocket, RawSocket), no URI validation (the router validates URIs and
//! answers `wamp.error.invalid_uri`), no session-state checks.
//!
//! # Layout
//!
//! [`layout`] knows the element order of every message once, for both codecs: decoding
//! goes through its `Element` trait (one encoded element of the top-level list), encoding
//! through its `Writer` trait. [`fields`] maps Options/Details keys to typed fields.
//! [`json`] and [`msgpack`] implement those traits; [`transcode`] lives in its own module.

mod error;
mod fields;
mod json;
mod layout;
mod msgpack;
mod transcode;

pub use error::{DecodeError, EncodeError, Field, FrameError, MessageError, TranscodeError};
pub use transcode::transcode;

use bytes::Bytes;

use crate::message::Message;

/// The deepest nesting accepted in a frame, counting the message's own list as level 1
/// (so `args` is at level 2). Both codecs enforce it on payloads as well as the envelope,
/// and [`transcode`] enforces it, so that no recursive consumer can be driven into a stack
/// overflow by a peer.
pub const MAX_DEPTH: usize = 64;

/// The most entries a list or dictionary inside the envelope (Options, Details, and the
/// values in them) may hold. Payloads are not counted: they are bounded by the frame size
/// the transport enforces.
pub const MAX_ENVELOPE_ITEMS: usize = 1024;

/// A WAMP serializer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Serializer {
    /// `wamp.2.json`.
    Json,
    /// `wamp.2.msgpack`.
    MsgPack,
}

impl Serializer {
    /// The WebSocket subprotocol name, e.g. `wamp.2.json`.
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Self::Json => "wamp.2.json",
            Self::MsgPack => "wamp.2.msgpack",
        }
    }

    /// The RawSocket serializer code of the spec's handshake (1 = JSON, 2 = MessagePack).
    pub const fn rawsocket_code(self) -> u8 {
        match self {
            Self::Json => 0x01,
            Self::MsgPack => 0x02,
        }
    }

    /// The encoded empty list, used where `kwargs` needs an `args` placeholder.
    pub(crate) const fn empty_list(self) -> &'static [u8] {
        match self {
            Self::Json => b"[]",
            Self::MsgPack => &[0x90],
        }
    }
}

/// Decodes one frame encoded with `serializer`.
///
/// Payloads in the result are slices of `frame`: they keep its allocation alive.
pub fn decode(serializer: Serializer, frame: Bytes) -> Result<Message, DecodeError> {
    match serializer {
        Serializer::Json => json::decode(&frame),
        Serializer::MsgPack => msgpack::decode(&frame),
    }
}

/// Appends `message` encoded with `serializer` to `out`.
///
/// On error `out` may hold a partial message after its original length: truncate it to
/// that length before reusing it.
pub fn encode(
    serializer: Serializer,
    message: &Message,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if let Some(p) = message.payload() {
        if !p.is_empty() && p.serializer() != serializer {
            return Err(EncodeError::SerializerMismatch {
                payload: p.serializer(),
                frame: serializer,
            });
        }
    }
    match serializer {
        Serializer::Json => layout::write_message(&mut json::Writer::new(out), message),
        Serializer::MsgPack => layout::write_message(&mut msgpack::Writer::new(out), message),
    }
}
