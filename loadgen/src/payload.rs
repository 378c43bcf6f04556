//! The application payload the scenarios send: `[origin, seq, sent_ns, padding]`.
//!
//! `origin` is the global index of the publisher or caller, `seq` its per-origin sequence
//! number (from 0, for loss and reordering detection), `sent_ns` the intended send time on
//! the system-wide monotonic clock (so latency measured from it is corrected for
//! coordinated omission in open-loop runs, and comparable across worker processes), and
//! `padding` a string that brings the payload to the requested size. Routers may re-encode
//! payloads (Crossbar does), so decoding accepts any integer width. What it does not do: no
//! other payload shapes; a foreign payload is a typed error.

use std::fmt;

use bytes::Bytes;
use switchyard_core::codec::Serializer;
use switchyard_core::message::Payload;

/// The fields of one load payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The global index of the session that sent it.
    pub origin: u64,
    /// The sender's sequence number.
    pub seq: u64,
    /// Intended send time, nanoseconds of `CLOCK_MONOTONIC`.
    pub sent_ns: u64,
}

/// Why a payload is not a load payload; one variant per rule broken.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// There is no `args` list.
    MissingArgs,
    /// `args` is not a list starting with three unsigned integers.
    BadShape,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingArgs => f.write_str("payload has no args"),
            Self::BadShape => f.write_str("args are not [origin, seq, sent_ns, padding]"),
        }
    }
}

impl std::error::Error for PayloadError {}

/// Encodes `stamp` with padding so that the `args` list is about `size` bytes long.
pub fn encode(serializer: Serializer, stamp: Stamp, size: usize) -> Payload {
    let mut out = Vec::with_capacity(size + 32);
    match serializer {
        Serializer::Json => {
            out.extend_from_slice(
                format!("[{},{},{},\"", stamp.origin, stamp.seq, stamp.sent_ns).as_bytes(),
            );
            let pad = size.saturating_sub(out.len() + 2);
            out.resize(out.len() + pad, b'x');
            out.extend_from_slice(b"\"]");
        }
        Serializer::MsgPack => {
            out.push(0x94);
            for v in [stamp.origin, stamp.seq, stamp.sent_ns] {
                // Writing into a Vec cannot fail.
                let _ = rmp::encode::write_uint(&mut out, v);
            }
            let pad = msgpack_pad(size.saturating_sub(out.len()));
            let _ = rmp::encode::write_str_len(&mut out, pad as u32);
            out.resize(out.len() + pad, b'x');
        }
    }
    Payload::new(serializer, Some(Bytes::from(out)), None)
}

/// The string length that, with its MessagePack header, fills `room` bytes as closely as
/// possible (the header is 1, 2, 3 or 5 bytes depending on the length).
fn msgpack_pad(room: usize) -> usize {
    [(1, 31), (2, 0xff), (3, 0xffff), (5, u32::MAX as usize)]
        .into_iter()
        .map(|(header, max)| room.saturating_sub(header).min(max))
        .find(|&pad| {
            let header = match pad {
                0..=31 => 1,
                32..=0xff => 2,
                0x100..=0xffff => 3,
                _ => 5,
            };
            pad + header == room
        })
        .unwrap_or_else(|| room.saturating_sub(5))
}

/// Reads the stamp from a payload written by [`encode`] (possibly re-encoded by a router).
pub fn decode(payload: &Payload) -> Result<Stamp, PayloadError> {
    let args = payload.args().ok_or(PayloadError::MissingArgs)?;
    match payload.serializer() {
        Serializer::Json => {
            let (origin, seq, sent_ns, _): (u64, u64, u64, serde::de::IgnoredAny) =
                serde_json::from_slice(args).map_err(|_| PayloadError::BadShape)?;
            Ok(Stamp {
                origin,
                seq,
                sent_ns,
            })
        }
        Serializer::MsgPack => {
            let mut rd: &[u8] = args;
            let len = rmp::decode::read_array_len(&mut rd).map_err(|_| PayloadError::BadShape)?;
            if len < 3 {
                return Err(PayloadError::BadShape);
            }
            let mut int =
                || rmp::decode::read_int::<u64, _>(&mut rd).map_err(|_| PayloadError::BadShape);
            Ok(Stamp {
                origin: int()?,
                seq: int()?,
                sent_ns: int()?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(serializer: Serializer, size: usize) {
        let stamp = Stamp {
            origin: 7,
            seq: u64::from(u32::MAX) + 3,
            sent_ns: 123_456_789_012,
        };
        let p = encode(serializer, stamp, size);
        assert_eq!(decode(&p), Ok(stamp));
        if size > 64 {
            assert_eq!(p.len(), size, "{serializer:?}");
        }
    }

    #[test]
    fn round_trips() {
        for s in [Serializer::Json, Serializer::MsgPack] {
            for size in [0, 10, 100, 1000, 70_000] {
                check(s, size);
            }
        }
    }

    #[test]
    fn foreign_payloads_are_errors() {
        let p = Payload::new(Serializer::Json, Some(Bytes::from_static(b"[\"a\"]")), None);
        assert_eq!(decode(&p), Err(PayloadError::BadShape));
        assert_eq!(decode(&Payload::empty()), Err(PayloadError::MissingArgs));
        // Small integers as a router re-encoding msgpack would write them.
        let p = Payload::new(
            Serializer::MsgPack,
            Some(Bytes::from_static(&[0x94, 0x01, 0x02, 0x03, 0xa0])),
            None,
        );
        assert_eq!(
            decode(&p),
            Ok(Stamp {
                origin: 1,
                seq: 2,
                sent_ns: 3
            })
        );
    }
}
