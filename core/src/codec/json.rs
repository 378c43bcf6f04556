//! The JSON codec (`wamp.2.json`).
//!
//! Decoding validates the frame's UTF-8 once (SIMD), then splits the top-level list into
//! borrowed element texts in one hand-written pass that checks the grammar and the
//! nesting depth and builds nothing. Each element is then read as its field: integers and
//! plain strings straight from the raw text, dictionaries through a small `serde` visitor
//! into typed Options/Details, and payloads only checked (first byte) and sliced out of
//! the input frame.
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

use crate::codec::error::{DecodeError, EncodeError, Field, FrameError, MessageError};
use crate::codec::fields::{DictModel, FieldRef};
use crate::codec::layout::{self, Element, Elements, PayloadKind, Structural, MAX_ELEMENTS};
use crate::codec::msgpack::Bad;
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
///
/// One pass over the frame checks the grammar and the nesting depth of every element and
/// records where each lies; nothing is built. `serde_json`'s own recursion limit cannot
/// do the depth check here: it skips a raw value with an explicit stack and no limit.
/// Errors are classified as `serde_json` classifies them (`Truncated` where it reports
/// an end of input, `Syntax` otherwise), which a differential test holds it to.
fn split<'a>(text: &'a str, els: &mut Elements<JsonElem<'a>>) -> Result<(), DecodeError> {
    let b = text.as_bytes();
    let pos = skip_ws(b, 0);
    match b.get(pos) {
        None => return Err(DecodeError::Frame(FrameError::Truncated)),
        Some(b'[') => {}
        Some(_) => return Err(DecodeError::Frame(FrameError::NotAList)),
    }
    match split_items(text, pos + 1, els) {
        Ok(Some(end)) => {
            if skip_ws(b, end) != b.len() {
                els.error = Some(Structural::TrailingBytes);
            }
        }
        // `split_items` stopped at the first element too many and set `overflow`.
        Ok(None) => {}
        Err(e) => {
            els.error = Some(match e {
                Bad::Truncated => Structural::Truncated,
                Bad::Syntax => Structural::Syntax,
                Bad::TooDeep => Structural::TooDeep(els.len),
            });
        }
    }
    Ok(())
}

/// Splits the elements of the top-level list, whose `[` ends before `pos`; the position
/// after its `]`, or `None` when an element too many was found.
fn split_items<'a>(
    text: &'a str,
    pos: usize,
    els: &mut Elements<JsonElem<'a>>,
) -> Result<Option<usize>, Bad> {
    let b = text.as_bytes();
    let mut pos = skip_ws(b, pos);
    if b.get(pos) == Some(&b']') {
        return Ok(Some(pos + 1));
    }
    loop {
        let start = pos;
        // Elements sit at level 2: the message's list is level 1.
        pos = skip_value(b, pos, 2)?;
        if els.len == MAX_ELEMENTS {
            els.overflow = true;
            return Ok(None);
        }
        // A value starts and ends at ASCII bytes, so both ends are character boundaries.
        els.push(JsonElem(text.get(start..pos).ok_or(Bad::Syntax)?));
        pos = skip_ws(b, pos);
        match b.get(pos) {
            Some(b',') => pos = skip_ws(b, pos + 1),
            Some(b']') => return Ok(Some(pos + 1)),
            Some(_) => return Err(Bad::Syntax),
            None => return Err(Bad::Truncated),
        }
    }
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The first position at or after `pos` that is not whitespace.
#[inline]
fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    // Compact JSON has no whitespace: one comparison settles the common case.
    while b.get(pos).is_some_and(|&c| c <= b' ' && is_whitespace(c)) {
        pos += 1;
    }
    pos
}

// One bit per open container in `skip_value`'s stack.
const _: () = assert!(
    MAX_DEPTH <= 128,
    "skip_value keeps open containers in a u128"
);

/// Skips the JSON value at `pos` (no whitespace before it), which sits at nesting level
/// `depth`, and returns the position after it.
///
/// Containers are tracked in a bit stack (set for an object) rather than by recursion,
/// and no container may open deeper than [`MAX_DEPTH`], so the walk needs neither
/// allocation nor call stack however the input nests.
pub(super) fn skip_value(b: &[u8], mut pos: usize, depth: usize) -> Result<usize, Bad> {
    let mut stack: u128 = 0;
    let mut open = 0usize;
    loop {
        // A value starts at `pos`.
        match b.get(pos) {
            None => return Err(Bad::Truncated),
            Some(&c @ (b'[' | b'{')) => {
                if depth + open > MAX_DEPTH {
                    return Err(Bad::TooDeep);
                }
                let object = c == b'{';
                stack = stack << 1 | u128::from(object);
                open += 1;
                pos = skip_ws(b, pos + 1);
                match (b.get(pos), object) {
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        // An empty container is a complete value: close it below.
                        stack >>= 1;
                        open -= 1;
                        pos += 1;
                    }
                    (_, true) => {
                        pos = skip_key(b, pos)?;
                        continue;
                    }
                    (_, false) => continue,
                }
            }
            Some(b'"') => pos = skip_str(b, pos + 1)?,
            Some(b't') => pos = skip_literal(b, pos, b"true")?,
            Some(b'f') => pos = skip_literal(b, pos, b"false")?,
            Some(b'n') => pos = skip_literal(b, pos, b"null")?,
            Some(b'-' | b'0'..=b'9') => pos = skip_number(b, pos)?,
            Some(_) => return Err(Bad::Syntax),
        }
        // A value ended before `pos`: close containers until one has a next value.
        loop {
            if open == 0 {
                return Ok(pos);
            }
            pos = skip_ws(b, pos);
            let object = stack & 1 == 1;
            match (b.get(pos), object) {
                (Some(b','), _) => {
                    pos = skip_ws(b, pos + 1);
                    if object {
                        pos = skip_key(b, pos)?;
                    }
                    break;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    stack >>= 1;
                    open -= 1;
                    pos += 1;
                }
                (Some(_), _) => return Err(Bad::Syntax),
                (None, _) => return Err(Bad::Truncated),
            }
        }
    }
}

/// Skips an object key and its colon at `pos`, returning where the value starts.
fn skip_key(b: &[u8], pos: usize) -> Result<usize, Bad> {
    match b.get(pos) {
        Some(b'"') => {}
        Some(_) => return Err(Bad::Syntax),
        None => return Err(Bad::Truncated),
    }
    let pos = skip_ws(b, skip_str(b, pos + 1)?);
    match b.get(pos) {
        Some(b':') => Ok(skip_ws(b, pos + 1)),
        Some(_) => Err(Bad::Syntax),
        None => Err(Bad::Truncated),
    }
}

/// Bytes that end the plain run of a string: the quote, the backslash and the control
/// characters JSON forbids unescaped.
const STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Skips the rest of a string whose opening quote ends before `pos`.
///
/// The frame is valid UTF-8 already, so only the escapes and the forbidden control
/// characters need a look; as in `serde_json`, a `\u` escape needs four hex digits but
/// may be a lone surrogate (the router forwards what it does not read).
#[inline(always)]
fn skip_str(b: &[u8], pos: usize) -> Result<usize, Bad> {
    // Most strings hold no escape: the first stop byte is the closing quote.
    let pos = string_run(b, pos);
    match b.get(pos) {
        Some(b'"') => Ok(pos + 1),
        _ => skip_str_rest(b, pos),
    }
}

/// Goes on with a string at `pos`, where a stop byte (or the end) was found that is not
/// known to be the closing quote.
#[cold]
#[inline(never)]
fn skip_str_rest(b: &[u8], mut pos: usize) -> Result<usize, Bad> {
    loop {
        let Some(&c) = b.get(pos) else {
            return Err(Bad::Truncated);
        };
        match c {
            b'"' => return Ok(pos + 1),
            b'\\' => match b.get(pos + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => pos += 2,
                Some(b'u') => {
                    let Some(hex) = b.get(pos + 2..pos + 6) else {
                        return Err(Bad::Truncated);
                    };
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(Bad::Syntax);
                    }
                    pos += 6;
                }
                Some(_) => return Err(Bad::Syntax),
                None => return Err(Bad::Truncated),
            },
            _ => return Err(Bad::Syntax),
        }
        pos = string_run(b, pos);
    }
}

/// The first position at or after `pos` holding a [`STRING_STOP`] byte, or `b.len()`.
///
/// Eight bytes at a time while eight remain (most strings end within the first word),
/// then byte by byte.
#[inline(always)]
fn string_run(b: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `x` below `n` (n <= 0x80). A borrow can only mark
    // bytes above a true hit, so the lowest marked byte is always exact.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    while let Some(word) = b.get(pos..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*word);
        let stops = below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1);
        if stops != 0 {
            // Little-endian: the lowest set bit is in the first stop byte; at most 8.
            return pos + (stops.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while b.get(pos).is_some_and(|&c| !STRING_STOP[usize::from(c)]) {
        pos += 1;
    }
    pos
}

/// Skips `true`, `false` or `null` at `pos`.
fn skip_literal(b: &[u8], pos: usize, word: &[u8]) -> Result<usize, Bad> {
    for (i, &w) in word.iter().enumerate() {
        match b.get(pos + i) {
            Some(&c) if c == w => {}
            Some(_) => return Err(Bad::Syntax),
            None => return Err(Bad::Truncated),
        }
    }
    Ok(pos + word.len())
}

/// Skips a number at `pos`: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
///
/// A number cut short by the end of the input is a syntax error, as `serde_json` has it:
/// only the byte after a complete number tells whether the frame was truncated.
fn skip_number(b: &[u8], mut pos: usize) -> Result<usize, Bad> {
    let digits = |pos: usize| {
        pos + b
            .get(pos..)
            .unwrap_or_default()
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    if b.get(pos) == Some(&b'-') {
        pos += 1;
    }
    match b.get(pos) {
        // A leading zero stands alone.
        Some(b'0') if b.get(pos + 1).is_some_and(u8::is_ascii_digit) => return Err(Bad::Syntax),
        Some(b'0') => pos += 1,
        Some(b'1'..=b'9') => pos = digits(pos + 1),
        _ => return Err(Bad::Syntax),
    }
    if b.get(pos) == Some(&b'.') {
        let end = digits(pos + 1);
        if end == pos + 1 {
            return Err(Bad::Syntax);
        }
        pos = end;
    }
    if matches!(b.get(pos), Some(b'e' | b'E')) {
        pos += 1;
        if matches!(b.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        let end = digits(pos);
        if end == pos {
            return Err(Bad::Syntax);
        }
        pos = end;
    }
    Ok(pos)
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
        // `split` already checked the element's syntax and depth, and borrowed it from
        // `frame` through `from_utf8`, so it lies inside `frame` as `slice_ref` requires.
        Ok(frame.slice_ref(self.0.as_bytes()))
    }
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
    use proptest::prelude::*;

    use super::*;

    /// What a split produced: the element texts, the overflow flag and the structural
    /// error, or the frame-level error.
    type Outcome<'a> = Result<(Vec<&'a str>, bool, Option<Structural>), DecodeError>;

    fn ours(text: &str) -> Outcome<'_> {
        let mut els = Elements::new();
        split(text, &mut els)?;
        Ok((
            els.items[..els.len].iter().map(|e| e.0).collect(),
            els.overflow,
            els.error,
        ))
    }

    /// The splitter this module had before the hand-written one: `serde_json` raw values.
    /// It checks no depth, so the differential test keeps its inputs shallow.
    fn reference(text: &str) -> Outcome<'_> {
        struct Splitter<'e, 'de> {
            items: &'e mut Vec<&'de str>,
            overflow: &'e mut bool,
        }
        impl<'de> Visitor<'de> for Splitter<'_, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while let Some(raw) = seq.next_element::<&'de serde_json::value::RawValue>()? {
                    if self.items.len() == MAX_ELEMENTS {
                        *self.overflow = true;
                        return Err(de::Error::custom("too many elements"));
                    }
                    self.items.push(raw.get());
                }
                Ok(())
            }
        }
        match text.bytes().find(|b| !is_whitespace(*b)) {
            None => return Err(DecodeError::Frame(FrameError::Truncated)),
            Some(b'[') => {}
            Some(_) => return Err(DecodeError::Frame(FrameError::NotAList)),
        }
        let (mut items, mut overflow) = (Vec::new(), false);
        let mut de = serde_json::Deserializer::from_str(text);
        let visitor = Splitter {
            items: &mut items,
            overflow: &mut overflow,
        };
        let error = match (&mut de).deserialize_seq(visitor) {
            Ok(()) => de.end().err().map(|_| Structural::TrailingBytes),
            Err(_) if overflow => None,
            Err(e) => Some(match e.classify() {
                serde_json::error::Category::Eof => Structural::Truncated,
                _ => Structural::Syntax,
            }),
        };
        Ok((items, overflow, error))
    }

    #[test]
    fn split_cases() {
        use Structural::{Syntax, Truncated};
        let check = |text: &str, expect: Option<Structural>| {
            assert_eq!(ours(text), reference(text), "{text:?}");
            assert_eq!(ours(text).map(|o| o.2), Ok(expect), "{text:?}");
        };
        check("[]", None);
        check(
            " [ 1 , -0.5e+3 , \"a\\u00e9\\n\" , {\"k\" : [true,false,null]} ] ",
            None,
        );
        check("[1.]", Some(Syntax));
        check("[1.", Some(Syntax));
        check("[-]", Some(Syntax));
        check("[-", Some(Syntax));
        check("[01]", Some(Syntax));
        check("[1e]", Some(Syntax));
        check("[1e+", Some(Syntax));
        check("[1", Some(Truncated));
        check("[1,", Some(Truncated));
        check("[1,]", Some(Syntax));
        check("[tru", Some(Truncated));
        check("[trux]", Some(Syntax));
        check("[\"a", Some(Truncated));
        check("[\"a\\", Some(Truncated));
        check("[\"\\u12", Some(Truncated));
        check("[\"\\u12\"]", Some(Syntax));
        check("[\"\\ud800\"]", None);
        check("[\"\\x\"]", Some(Syntax));
        check("[\"\u{1}\"]", Some(Syntax));
        check("[{1:2}]", Some(Syntax));
        check("[{\"a\" 2}]", Some(Syntax));
        check("[{\"a\":2,}]", Some(Syntax));
        check("[{\"a\":2]", Some(Syntax));
        check("[[1}]", Some(Syntax));
        check("[{", Some(Truncated));
        check("[1] x", Some(Structural::TrailingBytes));
        check("[1,2,3,4,5,6,7,8]", None);
        check("[1,2,3,4,5,6,7,8", None);
        check("[1,2,3,4,5,6,7,x]", Some(Syntax));
        assert_eq!(ours(" "), Err(DecodeError::Frame(FrameError::Truncated)));
        assert_eq!(ours(" {}"), Err(DecodeError::Frame(FrameError::NotAList)));
    }

    #[test]
    fn split_depth() {
        // The payload at index 4 is at level 2, so it may hold MAX_DEPTH - 1 levels.
        let frame = |levels: usize, tail: &str| {
            format!(
                "[16,1,{{}},\"t\",{}{}{}",
                "[".repeat(levels),
                "]".repeat(levels),
                tail
            )
        };
        let check = |text: String, expect: Option<Structural>| {
            assert_eq!(ours(&text).map(|o| o.2), Ok(expect), "{text}");
        };
        check(frame(MAX_DEPTH - 1, "]"), None);
        check(frame(MAX_DEPTH, "]"), Some(Structural::TooDeep(4)));
        check(frame(MAX_DEPTH, ""), Some(Structural::TooDeep(4)));
        let objects =
            |levels: usize| format!("[16,1,{}1{}]", "{\"a\":".repeat(levels), "}".repeat(levels));
        check(objects(MAX_DEPTH - 1), None);
        check(objects(MAX_DEPTH), Some(Structural::TooDeep(2)));
        // Deep nesting far beyond the limit is refused at the limit, without recursion.
        check(frame(100_000, "]"), Some(Structural::TooDeep(4)));
    }

    /// Shallow JSON values, as text.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as J;
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(J::from),
            any::<String>().prop_map(J::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
                proptest::collection::vec((any::<String>(), inner), 0..4)
                    .prop_map(|kv| J::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// One edit of a frame's text.
    #[derive(Clone, Debug)]
    enum Edit {
        Truncate(usize),
        Delete(usize),
        Insert(usize, char),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let c = prop::sample::select(
            "[]{}\",:0123456789-+.eEtrufalsn\\/u \t\n\u{1}xé"
                .chars()
                .collect::<Vec<_>>(),
        );
        prop_oneof![
            any::<usize>().prop_map(Edit::Truncate),
            any::<usize>().prop_map(Edit::Delete),
            (any::<usize>(), c).prop_map(|(i, c)| Edit::Insert(i, c)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The hand-written splitter agrees with `serde_json` on well-formed frames and
        /// on every edit of them: same elements, same error class.
        #[test]
        fn split_agrees_with_serde_json(
            items in proptest::collection::vec(json(), 0..9),
            pretty in any::<bool>(),
            edits in proptest::collection::vec(edit(), 0..3),
        ) {
            let list = serde_json::Value::Array(items);
            let text = if pretty {
                serde_json::to_string_pretty(&list)
            } else {
                serde_json::to_string(&list)
            }.unwrap();
            let mut chars: Vec<char> = text.chars().collect();
            for e in edits {
                let n = chars.len() + 1;
                match e {
                    Edit::Truncate(i) => chars.truncate(i % n),
                    Edit::Delete(i) if !chars.is_empty() => {
                        chars.remove(i % chars.len());
                    }
                    Edit::Delete(_) => {}
                    Edit::Insert(i, c) => chars.insert(i % n, c),
                }
            }
            let text: String = chars.into_iter().collect();
            prop_assert_eq!(ours(&text), reference(&text), "{:?}", text);
        }
    }

    /// The word-at-a-time scan finds the same stop as a byte-by-byte one, wherever the
    /// stop byte sits in a word.
    #[test]
    fn string_run_matches_bytewise() {
        let bytewise = |b: &[u8], pos: usize| {
            (pos..b.len())
                .find(|&i| STRING_STOP[usize::from(b[i])])
                .unwrap_or(b.len())
        };
        for stop in [b'"', b'\\', 0x00, 0x1f] {
            for len in 0..20 {
                for at in 0..=len {
                    let mut b = vec![b'a'; len];
                    b.extend_from_slice("é ~\x7f".as_bytes());
                    if at < len {
                        b[at] = stop;
                    }
                    for pos in 0..3.min(b.len()) {
                        assert_eq!(string_run(&b, pos), bytewise(&b, pos), "{b:?} from {pos}");
                    }
                }
            }
        }
    }

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
}
