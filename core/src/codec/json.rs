//! The JSON codec (`wamp.2.json`).
//!
//! Decoding validates the frame's UTF-8 once (SIMD), then lets `serde_json` split the
//! top-level list into borrowed [`RawValue`]s without building anything. Each element is
//! then read as its field: integers and plain strings straight from the raw text,
//! dictionaries through a small `serde` visitor into typed Options/Details, and payloads
//! only checked (first byte and nesting depth) and sliced out of the input frame.
//!
//! Encoding writes straight into the caller's buffer: integers with `itoa`, strings with a
//! hand-written escaper, floats with `serde_json` (shortest round-trip form).
//!
//! This module does not transcode payloads (see `transcode`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::codec::error::{DecodeError, EncodeError, Field, FrameError, MessageError};
use crate::codec::fields::{DictModel, FieldRef};
use crate::codec::layout::{self, Element, Elements, PayloadKind, Structural, MAX_ELEMENTS};
use crate::codec::{Serializer, MAX_DEPTH, MAX_ENVELOPE_ITEMS};
use crate::message::{Dict, Message, Value};

/// Decodes one JSON frame.
pub(super) fn decode(frame: &Bytes) -> Result<Message, DecodeError> {
    let text = simdutf8::basic::from_utf8(frame)
        .map_err(|_| DecodeError::Frame(FrameError::InvalidUtf8))?;
    let mut els = Elements::new();
    split(text, &mut els)?;
    layout::build(&els, frame)
}

/// Splits the top-level list into raw elements, recording where splitting stopped.
fn split<'a>(text: &'a str, els: &mut Elements<JsonElem<'a>>) -> Result<(), DecodeError> {
    match text.bytes().find(|b| !is_whitespace(*b)) {
        None => return Err(DecodeError::Frame(FrameError::Truncated)),
        Some(b'[') => {}
        Some(_) => return Err(DecodeError::Frame(FrameError::NotAList)),
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match (&mut de).deserialize_seq(Splitter { els: &mut *els }) {
        Ok(()) => {
            if de.end().is_err() {
                els.error = Some(Structural::TrailingBytes);
            }
        }
        // Splitter stops reading at the first element too many; the error serde_json then
        // reports is a consequence, not a finding.
        Err(_) if els.overflow => {}
        Err(e) => {
            els.error = Some(match e.classify() {
                serde_json::error::Category::Eof => Structural::Truncated,
                _ => Structural::Syntax,
            });
        }
    }
    Ok(())
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

struct Splitter<'e, 'de> {
    els: &'e mut Elements<JsonElem<'de>>,
}

impl<'de> Visitor<'de> for Splitter<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a WAMP message list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if self.els.len == MAX_ELEMENTS {
                self.els.overflow = true;
                return Err(de::Error::custom("too many elements"));
            }
            self.els.push(JsonElem(raw.get()));
        }
        Ok(())
    }
}

/// One element of the top-level list: its JSON text, borrowed from the frame.
#[derive(Clone, Copy, Default)]
struct JsonElem<'a>(&'a str);

impl Element for JsonElem<'_> {
    const SERIALIZER: Serializer = Serializer::Json;

    fn uint(self, field: Field) -> Result<u64, MessageError> {
        let (negative, digits) = match self.0.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, self.0),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MessageError::WrongType { field });
        }
        if negative {
            return Err(MessageError::IntegerOutOfRange { field });
        }
        digits
            .parse::<u64>()
            .map_err(|_| MessageError::IntegerOutOfRange { field })
    }

    fn string(self, field: Field) -> Result<String, MessageError> {
        if !self.0.starts_with('"') {
            return Err(MessageError::WrongType { field });
        }
        // Most URIs carry no escape: take the text between the quotes as it is.
        if !self.0.contains('\\') {
            let inner = self.0.get(1..self.0.len() - 1).unwrap_or_default();
            return Ok(inner.to_owned());
        }
        // serde_json only refuses a string it split before if an escape is a lone
        // surrogate, which is not a Unicode scalar value.
        serde_json::from_str::<String>(self.0).map_err(|_| MessageError::InvalidUtf8 { field })
    }

    fn dict<M: DictModel>(self, field: Field) -> Result<M, MessageError> {
        if !self.0.starts_with('{') {
            return Err(MessageError::WrongType { field });
        }
        let mut slot = None;
        let mut de = serde_json::Deserializer::from_str(self.0);
        let visitor = DictVisitor::<M> {
            field,
            slot: &mut slot,
            model: PhantomData,
        };
        match (&mut de).deserialize_map(visitor) {
            Ok(m) => Ok(m),
            Err(e) => Err(slot.take().unwrap_or_else(|| serde_error(&e, field))),
        }
    }

    fn payload(
        self,
        frame: &Bytes,
        field: Field,
        kind: PayloadKind,
    ) -> Result<Bytes, MessageError> {
        let ok = matches!(
            (self.0.as_bytes().first(), kind),
            (Some(b'['), PayloadKind::Args | PayloadKind::ArgsOrOpaque)
                | (Some(b'"'), PayloadKind::ArgsOrOpaque)
                | (Some(b'{'), PayloadKind::Kwargs)
        );
        if !ok {
            return Err(MessageError::WrongType { field });
        }
        // The payload sits at level 2 (the message list is level 1).
        if nesting_exceeds(self.0.as_bytes(), MAX_DEPTH - 1) {
            return Err(MessageError::TooDeep { field });
        }
        // `self.0` was borrowed from `frame` through `from_utf8` and `serde_json`'s
        // borrowed RawValue, so it lies inside `frame` as `slice_ref` requires.
        Ok(frame.slice_ref(self.0.as_bytes()))
    }
}

/// Whether well-formed JSON `raw` nests deeper than `limit` (a bare scalar is depth 0).
pub(super) fn nesting_exceeds(raw: &[u8], limit: usize) -> bool {
    // Each level needs an opening and a closing byte: short values cannot exceed it.
    if raw.len() <= 2 * limit {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn serde_error(e: &serde_json::Error, field: Field) -> MessageError {
    match e.classify() {
        serde_json::error::Category::Eof => MessageError::Truncated,
        serde_json::error::Category::Data => MessageError::WrongType { field },
        _ => MessageError::Syntax,
    }
}

/// Reads an Options/Details dictionary into `M`, parking typed errors in `slot` because
/// serde's error type can only carry a message.
struct DictVisitor<'s, M> {
    field: Field,
    slot: &'s mut Option<MessageError>,
    model: PhantomData<M>,
}

impl<'de, M: DictModel> Visitor<'de> for DictVisitor<'_, M> {
    type Value = M;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a dictionary")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<M, A::Error> {
        let mut m = M::default();
        let mut n = 0;
        while let Some(Key(key)) = map.next_key()? {
            n += 1;
            if n > MAX_ENVELOPE_ITEMS {
                return Err(park(self.slot, MessageError::TooLong { field: self.field }));
            }
            // The dictionary is at level 2, so its values start at level 3.
            let value = map.next_value_seed(ValueSeed {
                depth: 3,
                field: self.field,
                slot: &mut *self.slot,
            })?;
            if let Err(e) = m.set(self.field, &key, value) {
                return Err(park(self.slot, e));
            }
        }
        Ok(m)
    }
}

fn park<E: de::Error>(slot: &mut Option<MessageError>, e: MessageError) -> E {
    *slot = Some(e);
    E::custom("see slot")
}

/// A dictionary key, borrowed from the input unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Reads a [`Value`] at nesting level `depth`, enforcing the depth and size limits.
struct ValueSeed<'s> {
    depth: usize,
    field: Field,
    slot: &'s mut Option<MessageError>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::UInt(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Ok(Value::Float(n))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(string_value(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(park(self.slot, MessageError::TooDeep { field: self.field }));
        }
        let mut items = Vec::new();
        loop {
            let seed = ValueSeed {
                depth: self.depth + 1,
                field: self.field,
                slot: &mut *self.slot,
            };
            let Some(v) = seq.next_element_seed(seed)? else {
                break;
            };
            if items.len() == MAX_ENVELOPE_ITEMS {
                return Err(park(self.slot, MessageError::TooLong { field: self.field }));
            }
            items.push(v);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.depth > MAX_DEPTH {
            return Err(park(self.slot, MessageError::TooDeep { field: self.field }));
        }
        let mut dict = Dict::new();
        while let Some(Key(key)) = map.next_key()? {
            if dict.len() == MAX_ENVELOPE_ITEMS {
                return Err(park(self.slot, MessageError::TooLong { field: self.field }));
            }
            let v = map.next_value_seed(ValueSeed {
                depth: self.depth + 1,
                field: self.field,
                slot: &mut *self.slot,
            })?;
            if dict.contains_key(&key) {
                return Err(park(
                    self.slot,
                    MessageError::DuplicateKey { field: self.field },
                ));
            }
            dict.push_unchecked(key.into_owned(), v);
        }
        Ok(Value::Dict(dict))
    }
}

/// A JSON string as a value: the spec's binary convention (`\u0000` then base64) becomes
/// [`Value::Bin`]; anything else, including a `\u0000` string that is not base64, stays text.
fn string_value(s: &str) -> Value {
    if let Some(b64) = s.strip_prefix('\0') {
        if let Ok(bin) = base64::engine::general_purpose::STANDARD.decode(b64) {
            return Value::Bin(bin);
        }
    }
    Value::Str(s.to_owned())
}

/// Writes JSON into a caller-owned buffer.
pub(super) struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }
}

impl layout::Writer for Writer<'_> {
    fn begin_list(&mut self, _len: usize) {
        self.out.push(b'[');
    }

    fn end_list(&mut self) {
        self.out.push(b']');
    }

    fn separator(&mut self) {
        self.out.push(b',');
    }

    fn uint(&mut self, v: u64) {
        write_uint(self.out, v);
    }

    fn string(&mut self, s: &str) {
        write_str(self.out, s);
    }

    fn dict<M: DictModel>(&mut self, m: &M) -> Result<(), EncodeError> {
        let out = &mut *self.out;
        out.push(b'{');
        let mut first = true;
        let mut result = Ok(());
        m.visit(&mut |key, field| {
            if result.is_err() {
                return;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(out, key);
            out.push(b':');
            result = write_field(out, field);
        });
        out.push(b'}');
        result
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
}

fn write_field(out: &mut Vec<u8>, field: FieldRef<'_>) -> Result<(), EncodeError> {
    match field {
        FieldRef::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        FieldRef::UInt(n) => write_uint(out, n),
        FieldRef::Str(s) => write_str(out, s),
        FieldRef::Ids(ids) => {
            out.push(b'[');
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_uint(out, id.get());
            }
            out.push(b']');
        }
        FieldRef::Strs(strs) => {
            out.push(b'[');
            for (i, s) in strs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, s);
            }
            out.push(b']');
        }
        FieldRef::Dict(d) => write_dict(out, d, 3)?,
        FieldRef::Value(v) => write_value(out, v, 3)?,
    }
    Ok(())
}

fn write_dict(out: &mut Vec<u8>, d: &Dict, depth: usize) -> Result<(), EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError::TooDeep);
    }
    out.push(b'{');
    for (i, (k, v)) in d.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v, depth + 1)?;
    }
    out.push(b'}');
    Ok(())
}

/// Writes `v`, which sits at nesting level `depth`.
pub(super) fn write_value(out: &mut Vec<u8>, v: &Value, depth: usize) -> Result<(), EncodeError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        Value::UInt(n) => write_uint(out, *n),
        Value::Float(f) => write_float(out, *f).ok_or(EncodeError::NonFiniteFloat)?,
        Value::Str(s) => write_str(out, s),
        Value::Bin(b) => write_bin(out, b),
        Value::List(items) => {
            if depth > MAX_DEPTH {
                return Err(EncodeError::TooDeep);
            }
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Dict(d) => write_dict(out, d, depth)?,
    }
    Ok(())
}

pub(super) fn write_uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Writes a finite float in its shortest round-trip form; `None` for NaN and infinities.
pub(super) fn write_float(out: &mut Vec<u8>, f: f64) -> Option<()> {
    if !f.is_finite() {
        return None;
    }
    // serde_json writes floats with ryu and keeps a `.0` on integral values, so the
    // number reads back as a float; writing into a Vec cannot fail.
    serde_json::to_writer(&mut *out, &f).ok()
}

/// Writes binary data with the spec's JSON convention: `"\u0000"` then base64.
pub(super) fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b"\"\\u0000");
    let mut s = String::new();
    base64::engine::general_purpose::STANDARD.encode_string(b, &mut s);
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Writes `s` as a JSON string, escaping only what JSON requires.
pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            let hex = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ];
            out.extend_from_slice(&hex);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_str(s: &str) {
        let mut out = Vec::new();
        write_str(&mut out, s);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn string_escapes_round_trip() {
        for s in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\n\r\t",
            "\u{0}\u{1f}",
            "é☃",
        ] {
            check_str(s);
        }
    }

    #[test]
    fn nesting() {
        let check = |raw: &str, limit, expect| {
            assert_eq!(
                nesting_exceeds(raw.as_bytes(), limit),
                expect,
                "{raw} limit {limit}"
            );
        };
        check("[[[]]]", 3, false);
        check("[[[]]]", 2, true);
        check(r#"["[[[[", {"a": "]]]"}]"#, 2, false);
        check(r#"["\"[[[["]"#, 1, false);
        check("[[],[],[]]", 1, true);
    }
}
