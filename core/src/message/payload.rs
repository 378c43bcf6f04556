//! Raw application payloads: `args` and `kwargs` as bytes of the frame they arrived in.
//!
//! The router never looks inside a payload, so the codecs never parse one into a tree:
//! they record where `args` and `kwargs` lie in the input frame and keep those byte ranges
//! as [`Bytes`] slices of it (no copy). The serializer the bytes are written in travels
//! with them, so that an encoder can refuse to splice JSON into a MessagePack frame; use
//! [`crate::codec::transcode`] to move a payload to another serializer.

use bytes::Bytes;

use crate::codec::Serializer;

/// The `args` list and `kwargs` dictionary of a message, still encoded.
///
/// `args` and `kwargs` each hold exactly one encoded value (a list and a dictionary) in
/// [`Payload::serializer`]. In payload passthru mode `args` is the list holding the opaque
/// element, or, as some clients send it in place of the list, the opaque element itself
/// (a binary or string with no `kwargs` after it): the router forwards either as it is. A payload with `kwargs` always has `args` (the wire format needs the list
/// first), which [`Payload::new`] ensures.
#[derive(Clone, Debug)]
pub struct Payload {
    serializer: Serializer,
    args: Option<Bytes>,
    kwargs: Option<Bytes>,
}

impl Payload {
    /// A payload with no `args` and no `kwargs`.
    pub const fn empty() -> Self {
        Self {
            serializer: Serializer::Json,
            args: None,
            kwargs: None,
        }
    }

    /// A payload from already encoded parts.
    ///
    /// The caller vouches that `args` is one encoded list and `kwargs` one encoded
    /// dictionary in `serializer`: the encoders copy them into frames as they are. If
    /// `kwargs` is given without `args`, `args` becomes the empty list.
    pub fn new(serializer: Serializer, args: Option<Bytes>, kwargs: Option<Bytes>) -> Self {
        let args = match (args, &kwargs) {
            (None, Some(_)) => Some(Bytes::from_static(serializer.empty_list())),
            (args, _) => args,
        };
        Self {
            serializer,
            args,
            kwargs,
        }
    }

    /// The serializer `args` and `kwargs` are encoded in.
    pub fn serializer(&self) -> Serializer {
        self.serializer
    }

    /// The encoded `args` list, if present.
    pub fn args(&self) -> Option<&Bytes> {
        self.args.as_ref()
    }

    /// The encoded `kwargs` dictionary, if present.
    pub fn kwargs(&self) -> Option<&Bytes> {
        self.kwargs.as_ref()
    }

    /// Whether there is neither `args` nor `kwargs`.
    pub fn is_empty(&self) -> bool {
        self.args.is_none() && self.kwargs.is_none()
    }

    /// The number of encoded payload bytes.
    pub fn len(&self) -> usize {
        self.args.as_ref().map_or(0, Bytes::len) + self.kwargs.as_ref().map_or(0, Bytes::len)
    }
}

impl Default for Payload {
    fn default() -> Self {
        Self::empty()
    }
}

impl PartialEq for Payload {
    /// Byte equality of the parts; two empty payloads are equal whatever their serializer.
    fn eq(&self, other: &Self) -> bool {
        if self.is_empty() && other.is_empty() {
            return true;
        }
        self.serializer == other.serializer
            && self.args == other.args
            && self.kwargs == other.kwargs
    }
}
