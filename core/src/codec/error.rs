//! The codec's errors: one variant per rule a peer (or a caller) can break.
//!
//! [`DecodeError`] is layered the way the router answers: a frame whose message type could
//! not be read is a [`DecodeError::Frame`] (the session is aborted), a frame whose type was
//! read but a later field is bad is a [`DecodeError::Message`], carrying the type and, when
//! it could be read, the request id (so the router can answer with an ERROR where the spec
//! asks for one). Field names are the spec's names: positional elements (`request`,
//! `topic`, `args`, ...) or dictionary keys (`acknowledge`, `match`, ...).

use std::fmt;

use crate::id::Id;
use crate::message::MessageType;

/// The name of the field an error is about: an element of the message (`request`,
/// `options`, `topic`, `args`, ...) or a known dictionary key (`acknowledge`, `match`, ...).
pub type Field = &'static str;

/// A frame could not be decoded into a [`crate::message::Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The message type could not be read: nothing can be answered but an ABORT.
    Frame(FrameError),
    /// The message type was read but a later part of the frame is bad.
    Message {
        /// The message's type.
        message_type: MessageType,
        /// The request id, if the message has one and it could be read.
        request: Option<Id>,
        /// What is wrong.
        error: MessageError,
    },
}

/// Why the message type of a frame could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame ends before its first element does (an empty frame included).
    Truncated,
    /// The frame is not valid UTF-8 (JSON only).
    InvalidUtf8,
    /// The frame is not well-formed JSON or MessagePack.
    Syntax,
    /// The frame's top-level value is not a list.
    NotAList,
    /// The top-level list is empty.
    EmptyList,
    /// The first element is not a non-negative integer.
    TypeNotAnInteger,
    /// The first element is not a message type this router knows.
    UnknownType(u64),
}

/// What is wrong with a message whose type could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// The frame ends in the middle of the message.
    Truncated,
    /// Bytes follow the message's closing element.
    TrailingBytes,
    /// The frame is not well-formed JSON or MessagePack after the message type.
    Syntax,
    /// A string (or the frame, after the type) is not valid UTF-8.
    InvalidUtf8 {
        /// The field holding it.
        field: Field,
    },
    /// A required element is missing (the list is too short).
    MissingField {
        /// The missing element.
        field: Field,
    },
    /// The list has more elements than the message type allows.
    TooManyElements,
    /// A field has the wrong type (e.g. a string where an id belongs).
    WrongType {
        /// The field.
        field: Field,
    },
    /// An id is outside `[1, 2^53]`.
    IdOutOfRange {
        /// The field.
        field: Field,
        /// The value as sent, or `u64::MAX` for a value no `u64` holds (too wide, or
        /// negative).
        value: u64,
    },
    /// An integer does not fit the range of its field.
    IntegerOutOfRange {
        /// The field.
        field: Field,
    },
    /// A string field holds a value outside its enumeration (e.g. `match: "regex"`).
    UnknownValue {
        /// The field.
        field: Field,
    },
    /// ERROR names a request type that has no ERROR answer.
    UnknownRequestType(u64),
    /// A dictionary has the same key twice.
    DuplicateKey {
        /// The dictionary.
        field: Field,
    },
    /// A value nests deeper than [`crate::codec::MAX_DEPTH`].
    TooDeep {
        /// The field holding it.
        field: Field,
    },
    /// A list or dictionary in the envelope holds more than
    /// [`crate::codec::MAX_ENVELOPE_ITEMS`] entries.
    TooLong {
        /// The field holding it.
        field: Field,
    },
    /// A MessagePack extension type appears in the envelope, where WAMP has none.
    Extension {
        /// The field holding it.
        field: Field,
    },
}

/// A message could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload is encoded in another serializer: transcode it first.
    SerializerMismatch {
        /// The payload's serializer.
        payload: super::Serializer,
        /// The frame's serializer.
        frame: super::Serializer,
    },
    /// A float in a dictionary is NaN or infinite, which JSON cannot represent.
    NonFiniteFloat,
    /// A dictionary value nests deeper than [`crate::codec::MAX_DEPTH`].
    TooDeep,
}

/// A payload could not be transcoded to another serializer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TranscodeError {
    /// The payload bytes end in the middle of a value.
    Truncated,
    /// The payload bytes are not well-formed in their serializer.
    Syntax,
    /// Bytes follow the value.
    TrailingBytes,
    /// A string is not valid UTF-8.
    InvalidUtf8,
    /// A value nests deeper than [`crate::codec::MAX_DEPTH`].
    TooDeep,
    /// A MessagePack extension type has no JSON form.
    Extension,
    /// A MessagePack map key is not a string, which JSON cannot represent.
    NonStringKey,
    /// A float is NaN or infinite, which JSON cannot represent.
    NonFiniteFloat,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => write!(f, "cannot read the message type: {e:?}"),
            Self::Message {
                message_type,
                request,
                error,
            } => {
                write!(f, "bad {message_type:?} message")?;
                if let Some(r) = request {
                    write!(f, " (request {r})")?;
                }
                write!(f, ": {error:?}")
            }
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SerializerMismatch { payload, frame } => write!(
                f,
                "payload is {payload:?} but the frame is {frame:?}: transcode it first"
            ),
            Self::NonFiniteFloat => f.write_str("JSON cannot encode NaN or infinity"),
            Self::TooDeep => f.write_str("a dictionary value nests too deep"),
        }
    }
}

impl fmt::Display for TranscodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for DecodeError {}
impl std::error::Error for EncodeError {}
impl std::error::Error for TranscodeError {}
