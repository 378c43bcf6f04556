//! Targets for the WAMP codecs of `switchyard-core`: JSON and MessagePack decoding, and
//! payload transcoding between them.
//!
//! Besides "no panic, no stack overflow", a decoded message must re-encode, the re-encoded
//! bytes must decode to the same message and re-encode to the same bytes, and a transcoded
//! payload must be spliceable into a frame of its new serializer and stable under a round
//! trip.
//!
//! What it does not do: it does not judge whether a frame *should* decode (no reference
//! decoder), only that what decodes is consistent.

use bytes::Bytes;
use switchyard_core::codec::{self, EncodeError, Serializer};
use switchyard_core::message::{Message, Payload};

/// The JSON decoder ([`codec::decode`] with [`Serializer::Json`]); input: one frame.
pub fn wamp_json(data: &[u8]) {
    round_trip(Serializer::Json, data);
}

/// The MessagePack decoder ([`codec::decode`] with [`Serializer::MsgPack`]); input: one
/// frame.
pub fn wamp_msgpack(data: &[u8]) {
    round_trip(Serializer::MsgPack, data);
}

/// Decodes, re-encodes and decodes again; checks the two decodings agree and the encoding
/// is stable.
fn round_trip(serializer: Serializer, data: &[u8]) {
    let Ok(message) = codec::decode(serializer, Bytes::copy_from_slice(data)) else {
        return;
    };
    let first = encode(serializer, &message);
    let again = codec::decode(serializer, Bytes::from(first.clone()))
        .unwrap_or_else(|e| panic!("re-encoded {message:?} does not decode: {e:?}"));
    // Debug text, not `==`: a MessagePack NaN in Options is not equal to itself.
    assert_eq!(
        format!("{again:?}"),
        format!("{message:?}"),
        "decode(encode(m)) != m"
    );
    assert_eq!(encode(serializer, &again), first, "encoding is not stable");
}

fn encode(serializer: Serializer, message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(serializer, message, &mut out)
        .unwrap_or_else(|e| panic!("decoded {message:?} does not re-encode: {e:?}"));
    out
}

/// Payload transcoding ([`codec::transcode`]).
///
/// Input: selector (bit 0: the frame is MessagePack, else JSON; bit 1: raw mode), then the
/// body. Normal mode decodes the body as a frame and transcodes its payload to the other
/// serializer; if that succeeds, the message with the new payload must encode and decode in
/// the new serializer, and transcoding back and forth again must give the same bytes. Raw
/// mode hands the body to `transcode` as `args` without decoding it first (outside the
/// function's contract, which expects decoder-checked payloads): it must merely not panic.
pub fn transcode(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let (from, to) = if sel & 0x01 != 0 {
        (Serializer::MsgPack, Serializer::Json)
    } else {
        (Serializer::Json, Serializer::MsgPack)
    };
    if sel & 0x02 != 0 {
        let payload = Payload::new(from, Some(Bytes::copy_from_slice(body)), None);
        let _ = codec::transcode(&payload, to);
        return;
    }
    let Ok(mut message) = codec::decode(from, Bytes::copy_from_slice(body)) else {
        return;
    };
    let Some(payload) = message.payload().cloned() else {
        return;
    };
    let Ok(there) = codec::transcode(&payload, to) else {
        return;
    };
    assert!(there.is_empty() || there.serializer() == to);
    let back = codec::transcode(&there, from)
        .unwrap_or_else(|e| panic!("{there:?} does not transcode back: {e:?}"));
    let there_again = codec::transcode(&back, to)
        .unwrap_or_else(|e| panic!("{back:?} does not transcode again: {e:?}"));
    assert_eq!(
        parts(&there_again),
        parts(&there),
        "round trip is not stable"
    );
    set_payload(&mut message, there.clone());
    let mut frame = Vec::new();
    match codec::encode(to, &message, &mut frame) {
        Ok(()) => {}
        // A MessagePack envelope may hold a NaN or an infinity, which JSON cannot carry:
        // the codec refuses it with this documented error (see fuzz/README.md, note 3).
        Err(EncodeError::NonFiniteFloat) if to == Serializer::Json => return,
        Err(e) => panic!("{message:?} with a transcoded payload does not encode: {e:?}"),
    }
    let decoded = codec::decode(to, Bytes::from(frame))
        .unwrap_or_else(|e| panic!("frame with transcoded payload does not decode: {e:?}"));
    let got = decoded.payload().map(parts);
    assert_eq!(got, Some(parts(&there)), "payload changed in the frame");
}

/// A payload's parts as plain bytes, for comparison.
fn parts(p: &Payload) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (p.args().map(|b| b.to_vec()), p.kwargs().map(|b| b.to_vec()))
}

/// Replaces the payload of a message that has one.
fn set_payload(message: &mut Message, payload: Payload) {
    match message {
        Message::Error(m) => m.payload = payload,
        Message::Publish(m) => m.payload = payload,
        Message::Event(m) => m.payload = payload,
        Message::Call(m) => m.payload = payload,
        Message::Result(m) => m.payload = payload,
        Message::Invocation(m) => m.payload = payload,
        Message::Yield(m) => m.payload = payload,
        _ => {}
    }
}
