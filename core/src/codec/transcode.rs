//! Payload transcoding between JSON and MessagePack.
//!
//! The router forwards payloads untouched, except when a publication or call crosses
//! serializers (a JSON publisher, a MessagePack subscriber). Then the payload is converted
//! once per target serializer — never per recipient — by [`transcode`]. Conversion streams
//! from one encoding to the other without building a tree: JSON is read by `serde_json`
//! with a visitor that writes MessagePack as it goes (container headers are patched to
//! their smallest form when the container closes), and MessagePack is walked with the
//! codec's cursor while JSON is written.
//!
//! Binary data follows the spec's convention: a JSON string starting with `\u0000` and
//! followed by base64 is MessagePack bin, and back. A `\u0000` string whose rest is not
//! base64 stays a string. Nesting is limited by [`crate::codec::MAX_DEPTH`] exactly as in
//! decoding: the payload's own list or dictionary counts as level 2.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::codec::error::TranscodeError;
use crate::codec::msgpack::{self, head, Bad, Cursor, Head};
use crate::codec::{json, Serializer, MAX_DEPTH};
use crate::message::Payload;

/// Converts `payload` to serializer `to`.
///
/// A payload already in `to`, or empty, is returned as is (a reference-count increment).
/// Otherwise `args` and `kwargs` are converted into one new buffer, which the returned
/// payload's parts share.
pub fn transcode(payload: &Payload, to: Serializer) -> Result<Payload, TranscodeError> {
    if payload.is_empty() || payload.serializer() == to {
        return Ok(payload.clone());
    }
    let mut out = Vec::with_capacity(payload.len() + payload.len() / 4 + 8);
    let convert = |part: &[u8], out: &mut Vec<u8>| match to {
        Serializer::MsgPack => json_to_msgpack(part, out),
        Serializer::Json => msgpack_to_json(part, out),
    };
    let args_end = match payload.args() {
        Some(a) => {
            convert(a, &mut out)?;
            Some(out.len())
        }
        None => None,
    };
    if let Some(k) = payload.kwargs() {
        convert(k, &mut out)?;
    }
    let all = Bytes::from(out);
    let split = args_end.unwrap_or(0);
    let args = args_end.map(|_| all.slice(..split));
    let kwargs = payload.kwargs().map(|_| all.slice(split..));
    Ok(Payload::new(to, args, kwargs))
}

/// Converts one JSON value to MessagePack, appending to `out`.
fn json_to_msgpack(json: &[u8], out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    let mut slot = None;
    let mut de = serde_json::Deserializer::from_slice(json);
    let seed = ToMsgPack {
        out: &mut *out,
        depth: 2,
        slot: &mut slot,
    };
    if let Err(e) = seed.deserialize(&mut de) {
        return Err(slot.take().unwrap_or(match e.classify() {
            serde_json::error::Category::Eof => TranscodeError::Truncated,
            _ => TranscodeError::Syntax,
        }));
    }
    de.end().map_err(|_| TranscodeError::TrailingBytes)
}

/// A `serde` visitor that writes each JSON value as MessagePack the moment it is read.
struct ToMsgPack<'o, 's> {
    out: &'o mut Vec<u8>,
    /// The nesting level of the value this visitor reads.
    depth: usize,
    /// Typed errors, parked here because serde's error type only carries a message.
    slot: &'s mut Option<TranscodeError>,
}

impl<'de> DeserializeSeed<'de> for ToMsgPack<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl ToMsgPack<'_, '_> {
    fn child(&mut self) -> ToMsgPack<'_, '_> {
        ToMsgPack {
            out: &mut *self.out,
            depth: self.depth + 1,
            slot: &mut *self.slot,
        }
    }

    fn too_deep<E: de::Error>(&mut self) -> Result<(), E> {
        if self.depth > MAX_DEPTH {
            *self.slot = Some(TranscodeError::TooDeep);
            return Err(E::custom("too deep"));
        }
        Ok(())
    }
}

/// Where a container's header goes: its count is known only at its end, so five bytes
/// (the largest header) are reserved and the contents moved back once the real header is
/// known. Most containers are small, so this moves few bytes.
const HEADER_RESERVE: usize = 5;

fn patch_header(out: &mut Vec<u8>, start: usize, count: usize, map: bool) {
    let (fix, m16, m32) = if map {
        (0x80, 0xde, 0xdf)
    } else {
        (0x90, 0xdc, 0xdd)
    };
    let mut header = [0u8; HEADER_RESERVE];
    let len = if count <= 15 {
        // count <= 15 fits the marker's low bits.
        header[0] = fix | count as u8;
        1
    } else if let Ok(n) = u16::try_from(count) {
        header[0] = m16;
        header[1..3].copy_from_slice(&n.to_be_bytes());
        3
    } else {
        // A JSON payload with 2^32 elements would need gigabytes: the transport's
        // message limit keeps counts far below u32::MAX.
        header[0] = m32;
        header[1..5].copy_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_be_bytes());
        5
    };
    let body = start + HEADER_RESERVE;
    let new_body = start + len;
    if new_body != body {
        out.copy_within(body.., new_body);
        out.truncate(out.len() - (body - new_body));
    }
    out[start..new_body].copy_from_slice(&header[..len]);
}

impl<'de> Visitor<'de> for ToMsgPack<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.push(0xc0);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.out.push(if b { 0xc3 } else { 0xc2 });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        msgpack::write_int(self.out, n);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        msgpack::write_uint(self.out, n);
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<(), E> {
        msgpack::write_f64(self.out, f);
        Ok(())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        if let Some(b64) = s.strip_prefix('\0') {
            if let Ok(bin) = base64::engine::general_purpose::STANDARD.decode(b64) {
                msgpack::write_bin(self.out, &bin);
                return Ok(());
            }
        }
        msgpack::write_str(self.out, s);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.too_deep()?;
        let start = self.out.len();
        self.out.extend_from_slice(&[0; HEADER_RESERVE]);
        let mut count = 0;
        while seq.next_element_seed(self.child())?.is_some() {
            count += 1;
        }
        patch_header(self.out, start, count, false);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.too_deep()?;
        let start = self.out.len();
        self.out.extend_from_slice(&[0; HEADER_RESERVE]);
        let mut count = 0;
        while map.next_key_seed(KeyToMsgPack(&mut *self.out))?.is_some() {
            map.next_value_seed(self.child())?;
            count += 1;
        }
        patch_header(self.out, start, count, true);
        Ok(())
    }
}

/// Writes a JSON object key as a MessagePack string (keys never become bin).
struct KeyToMsgPack<'o>(&'o mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for KeyToMsgPack<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyToMsgPack<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        msgpack::write_str(self.0, s);
        Ok(())
    }
}

/// Converts one MessagePack value to JSON, appending to `out`.
fn msgpack_to_json(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), TranscodeError> {
    let mut c = Cursor::new(bytes);
    value_to_json(&mut c, out, 2)?;
    if c.remaining() != 0 {
        return Err(TranscodeError::TrailingBytes);
    }
    Ok(())
}

fn bad(e: Bad) -> TranscodeError {
    match e {
        Bad::Truncated => TranscodeError::Truncated,
        Bad::Syntax => TranscodeError::Syntax,
        Bad::TooDeep => TranscodeError::TooDeep,
    }
}

fn text<'a>(c: &mut Cursor<'a>, n: usize) -> Result<&'a str, TranscodeError> {
    let bytes = c.take(n).map_err(bad)?;
    simdutf8::basic::from_utf8(bytes).map_err(|_| TranscodeError::InvalidUtf8)
}

fn value_to_json(
    c: &mut Cursor<'_>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), TranscodeError> {
    match head(c).map_err(bad)? {
        Head::Nil => out.extend_from_slice(b"null"),
        Head::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Head::UInt(n) => json::write_uint(out, n),
        Head::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Head::F32(f) => {
            json::write_float(out, f64::from(f)).ok_or(TranscodeError::NonFiniteFloat)?
        }
        Head::F64(f) => json::write_float(out, f).ok_or(TranscodeError::NonFiniteFloat)?,
        Head::Str(n) => json::write_str(out, text(c, n)?),
        Head::Bin(n) => json::write_bin(out, c.take(n).map_err(bad)?),
        Head::Ext(_) => return Err(TranscodeError::Extension),
        Head::Array(n) => {
            if depth > MAX_DEPTH {
                return Err(TranscodeError::TooDeep);
            }
            if n > c.remaining() {
                return Err(TranscodeError::Truncated);
            }
            out.push(b'[');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                value_to_json(c, out, depth + 1)?;
            }
            out.push(b']');
        }
        Head::Map(n) => {
            if depth > MAX_DEPTH {
                return Err(TranscodeError::TooDeep);
            }
            if n > c.remaining() {
                return Err(TranscodeError::Truncated);
            }
            out.push(b'{');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                let Head::Str(k) = head(c).map_err(bad)? else {
                    return Err(TranscodeError::NonStringKey);
                };
                json::write_str(out, text(c, k)?);
                out.push(b':');
                value_to_json(c, out, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(args: &str) -> Payload {
        Payload::new(
            Serializer::Json,
            Some(Bytes::copy_from_slice(args.as_bytes())),
            None,
        )
    }

    fn check(args: &str, expect_msgpack: rmpv::Value) {
        let mp = transcode(&json(args), Serializer::MsgPack).unwrap();
        let bytes = mp.args().unwrap().clone();
        let got = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        assert_eq!(got, expect_msgpack, "{args}");
        let back = transcode(&mp, Serializer::Json).unwrap();
        let a: serde_json::Value = serde_json::from_slice(back.args().unwrap()).unwrap();
        let b: serde_json::Value = serde_json::from_str(args).unwrap();
        assert_eq!(a, b, "{args}");
    }

    #[test]
    fn values() {
        use rmpv::Value as V;
        check("[]", V::Array(vec![]));
        check(
            r#"[1, -2, 2.5, true, null, "x"]"#,
            V::Array(vec![
                V::from(1),
                V::from(-2),
                V::from(2.5),
                V::from(true),
                V::Nil,
                V::from("x"),
            ]),
        );
        check(
            r#"["\u0000AQID"]"#,
            V::Array(vec![V::Binary(vec![1, 2, 3])]),
        );
        check(
            r#"["\u0000not base64!"]"#,
            V::Array(vec![V::from("\0not base64!")]),
        );
        let long: Vec<u64> = (0..300).collect();
        let text = serde_json::to_string(&long).unwrap();
        check(&text, V::Array(long.iter().map(|&n| V::from(n)).collect()));
    }

    #[test]
    fn errors() {
        let check_err = |args: &str, to: Serializer, expect: TranscodeError| {
            assert_eq!(to, Serializer::MsgPack);
            let p = json(args);
            assert_eq!(transcode(&p, to), Err(expect), "{args:?}");
        };
        check_err("[1,", Serializer::MsgPack, TranscodeError::Truncated);
        check_err("[1]]", Serializer::MsgPack, TranscodeError::TrailingBytes);
        check_err("[x]", Serializer::MsgPack, TranscodeError::Syntax);
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        check_err(&deep, Serializer::MsgPack, TranscodeError::TooDeep);
        let ok = "[".repeat(MAX_DEPTH - 1) + &"]".repeat(MAX_DEPTH - 1);
        assert!(transcode(&json(&ok), Serializer::MsgPack).is_ok());
    }

    #[test]
    fn msgpack_errors() {
        let check_err = |bytes: &[u8], expect: TranscodeError| {
            let p = Payload::new(
                Serializer::MsgPack,
                Some(Bytes::copy_from_slice(bytes)),
                None,
            );
            assert_eq!(transcode(&p, Serializer::Json), Err(expect), "{bytes:x?}");
        };
        check_err(&[0x91, 0xc1], TranscodeError::Syntax);
        check_err(&[0x92, 0x01], TranscodeError::Truncated);
        check_err(&[0x91, 0x01, 0x01], TranscodeError::TrailingBytes);
        check_err(&[0x91, 0xd4, 0x01, 0x01], TranscodeError::Extension);
        check_err(&[0x91, 0x81, 0x01, 0x01], TranscodeError::NonStringKey);
        check_err(&[0x91, 0xa1, 0xff], TranscodeError::InvalidUtf8);
        check_err(
            &[0x91, 0xca, 0x7f, 0xc0, 0x00, 0x00],
            TranscodeError::NonFiniteFloat,
        );
    }
}
