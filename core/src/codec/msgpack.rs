//! The MessagePack codec (`wamp.2.msgpack`).
//!
//! Decoding hand-walks the frame with [`rmp::Marker`]: the top-level array is split into
//! elements by a depth-limited skipper that records each element's byte range without
//! building anything, then each element is read as its field. Payloads are the skipped
//! byte ranges, sliced out of the input frame. Strings inside payloads are not checked
//! for UTF-8 here (the router never reads them); [`crate::codec::transcode`] checks them
//! when a payload goes to JSON.
//!
//! Encoding writes the smallest MessagePack form of each value straight into the
//! caller's buffer; it is a few lines per type, which avoids routing `Vec` writes through
//! `rmp`'s fallible writer trait.

use bytes::Bytes;
use rmp::Marker;

use crate::codec::error::{DecodeError, EncodeError, Field, FrameError, MessageError};
use crate::codec::fields::{self, DictModel, FieldRef};
use crate::codec::layout::{self, Element, Elements, PayloadKind, Structural, MAX_ELEMENTS};
use crate::codec::{Serializer, MAX_DEPTH, MAX_ENVELOPE_ITEMS};
use crate::message::{Dict, Message, Value};

/// Decodes one MessagePack frame.
pub(super) fn decode(frame: &Bytes) -> Result<Message, DecodeError> {
    let mut els = Elements::new();
    split(frame, &mut els)?;
    layout::build(&els, frame)
}

fn split<'a>(frame: &'a [u8], els: &mut Elements<MsgElem<'a>>) -> Result<(), DecodeError> {
    let mut c = Cursor::new(frame);
    let n = match head(&mut c) {
        Err(Bad::Truncated) => return Err(DecodeError::Frame(FrameError::Truncated)),
        Ok(Head::Array(n)) => n,
        _ => return Err(DecodeError::Frame(FrameError::NotAList)),
    };
    for i in 0..n {
        if i == MAX_ELEMENTS {
            els.overflow = true;
            return Ok(());
        }
        let start = c.pos;
        // Elements sit at level 2: the message's array is level 1.
        if let Err(e) = skip(&mut c, 2) {
            els.error = Some(match e {
                Bad::Truncated => Structural::Truncated,
                Bad::Syntax => Structural::Syntax,
                Bad::TooDeep => Structural::TooDeep(i),
            });
            return Ok(());
        }
        els.push(MsgElem(&frame[start..c.pos]));
    }
    if c.pos != frame.len() {
        els.error = Some(Structural::TrailingBytes);
    }
    Ok(())
}

/// Why a value could not be skipped or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bad {
    Truncated,
    Syntax,
    TooDeep,
}

/// A read position in a byte slice.
pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if n > self.remaining() {
            return Err(Bad::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Bad> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Bad> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Bad> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// A MessagePack value's head: its marker with the length or number that follows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Head {
    Nil,
    Bool(bool),
    /// An unsigned-integer marker.
    UInt(u64),
    /// A signed-integer marker (the value may still be non-negative).
    Int(i64),
    F32(f32),
    F64(f64),
    /// A string of this many bytes follows.
    Str(usize),
    /// Binary data of this many bytes follows.
    Bin(usize),
    /// An extension: a type byte and this many data bytes follow.
    Ext(usize),
    /// This many elements follow.
    Array(usize),
    /// This many key-value pairs follow.
    Map(usize),
}

fn len(n: u32) -> usize {
    // u32 fits usize on every target this crate builds for (32 and 64 bit).
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Reads a value's marker and the length or number after it.
pub(super) fn head(c: &mut Cursor<'_>) -> Result<Head, Bad> {
    Ok(match Marker::from_u8(c.u8()?) {
        Marker::FixPos(n) => Head::UInt(u64::from(n)),
        Marker::FixNeg(n) => Head::Int(i64::from(n)),
        Marker::Null => Head::Nil,
        Marker::True => Head::Bool(true),
        Marker::False => Head::Bool(false),
        Marker::U8 => Head::UInt(u64::from(c.u8()?)),
        Marker::U16 => Head::UInt(u64::from(c.u16()?)),
        Marker::U32 => Head::UInt(u64::from(c.u32()?)),
        Marker::U64 => Head::UInt(c.u64()?),
        Marker::I8 => Head::Int(i64::from(c.u8()? as i8)),
        Marker::I16 => Head::Int(i64::from(c.u16()? as i16)),
        Marker::I32 => Head::Int(i64::from(c.u32()? as i32)),
        Marker::I64 => Head::Int(c.u64()? as i64),
        Marker::F32 => Head::F32(f32::from_bits(c.u32()?)),
        Marker::F64 => Head::F64(f64::from_bits(c.u64()?)),
        Marker::FixStr(n) => Head::Str(usize::from(n)),
        Marker::Str8 => Head::Str(usize::from(c.u8()?)),
        Marker::Str16 => Head::Str(usize::from(c.u16()?)),
        Marker::Str32 => Head::Str(len(c.u32()?)),
        Marker::Bin8 => Head::Bin(usize::from(c.u8()?)),
        Marker::Bin16 => Head::Bin(usize::from(c.u16()?)),
        Marker::Bin32 => Head::Bin(len(c.u32()?)),
        Marker::FixExt1 => Head::Ext(1),
        Marker::FixExt2 => Head::Ext(2),
        Marker::FixExt4 => Head::Ext(4),
        Marker::FixExt8 => Head::Ext(8),
        Marker::FixExt16 => Head::Ext(16),
        Marker::Ext8 => Head::Ext(usize::from(c.u8()?)),
        Marker::Ext16 => Head::Ext(usize::from(c.u16()?)),
        Marker::Ext32 => Head::Ext(len(c.u32()?)),
        Marker::FixArray(n) => Head::Array(usize::from(n)),
        Marker::Array16 => Head::Array(usize::from(c.u16()?)),
        Marker::Array32 => Head::Array(len(c.u32()?)),
        Marker::FixMap(n) => Head::Map(usize::from(n)),
        Marker::Map16 => Head::Map(usize::from(c.u16()?)),
        Marker::Map32 => Head::Map(len(c.u32()?)),
        Marker::Reserved => return Err(Bad::Syntax),
    })
}

/// Skips one value at nesting level `depth`, checking it is complete and not too deep.
///
/// This walks every byte of every payload, so it is written for speed: one byte match per
/// value (no [`Head`] built), and a loop over a fixed stack of item counts instead of
/// recursion. No container may open deeper than [`MAX_DEPTH`], so the stack never
/// overflows whatever the input.
pub(super) fn skip(c: &mut Cursor<'_>, depth: usize) -> Result<(), Bad> {
    // Scalars and strings (most envelope elements) need no stack of counts.
    if c.buf
        .get(c.pos)
        .is_some_and(|m| !matches!(m, 0x80..=0x9f | 0xdc..=0xdf))
    {
        match head(c)? {
            Head::Str(n) | Head::Bin(n) => {
                c.take(n)?;
            }
            Head::Ext(n) => {
                c.take(n.saturating_add(1))?;
            }
            _ => {}
        }
        return Ok(());
    }
    let buf = c.buf;
    let mut pos = c.pos;
    // Items still to skip in each enclosing container, innermost last, and in the
    // innermost one.
    let mut outer = [0usize; MAX_DEPTH];
    let mut open = 0usize;
    let mut todo = 1usize;
    loop {
        while todo == 0 {
            if open == 0 {
                c.pos = pos;
                return Ok(());
            }
            open -= 1;
            todo = outer[open];
        }
        todo -= 1;
        let Some(&m) = buf.get(pos) else {
            return Err(Bad::Truncated);
        };
        pos += 1;
        // Either the bytes after the marker, or the items of a container.
        let (bytes, items) = match m {
            // fixint, nil, false, true.
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => continue,
            0x80..=0x8f => (0, Some(2 * usize::from(m & 0x0f))),
            0x90..=0x9f => (0, Some(usize::from(m & 0x0f))),
            0xa0..=0xbf => (usize::from(m & 0x1f), None),
            0xc1 => return Err(Bad::Syntax),
            // bin, str: a length then the data.
            0xc4 | 0xd9 => (be_len(buf, &mut pos, 1)?, None),
            0xc5 | 0xda => (be_len(buf, &mut pos, 2)?, None),
            0xc6 | 0xdb => (be_len(buf, &mut pos, 4)?, None),
            // ext: a length, a type byte, the data.
            0xc7 => (be_len(buf, &mut pos, 1)?.saturating_add(1), None),
            0xc8 => (be_len(buf, &mut pos, 2)?.saturating_add(1), None),
            0xc9 => (be_len(buf, &mut pos, 4)?.saturating_add(1), None),
            // Fixed-width numbers.
            0xcc | 0xd0 => (1, None),
            0xcd | 0xd1 => (2, None),
            0xca | 0xce | 0xd2 => (4, None),
            0xcb | 0xcf | 0xd3 => (8, None),
            // fixext 1, 2, 4, 8, 16: a type byte and the data.
            0xd4 => (2, None),
            0xd5 => (3, None),
            0xd6 => (5, None),
            0xd7 => (9, None),
            0xd8 => (17, None),
            0xdc => (0, Some(be_len(buf, &mut pos, 2)?)),
            0xdd => (0, Some(be_len(buf, &mut pos, 4)?)),
            0xde => (0, Some(be_len(buf, &mut pos, 2)?.saturating_mul(2))),
            0xdf => (0, Some(be_len(buf, &mut pos, 4)?.saturating_mul(2))),
        };
        let Some(n) = items else {
            if bytes > buf.len() - pos {
                return Err(Bad::Truncated);
            }
            pos += bytes;
            continue;
        };
        if depth + open > MAX_DEPTH {
            return Err(Bad::TooDeep);
        }
        // Every item takes at least one byte: a count beyond what is left is a lie we can
        // reject before looping over it.
        if n > buf.len() - pos {
            return Err(Bad::Truncated);
        }
        if n > 0 {
            // `depth + open <= MAX_DEPTH` and `depth >= 1` keep `open` below the length.
            *outer.get_mut(open).ok_or(Bad::TooDeep)? = todo;
            open += 1;
            todo = n;
        }
    }
}

/// Reads a `width`-byte big-endian length at `pos`, advancing past it.
fn be_len(buf: &[u8], pos: &mut usize, width: usize) -> Result<usize, Bad> {
    let bytes = buf.get(*pos..*pos + width).ok_or(Bad::Truncated)?;
    *pos += width;
    let n = bytes.iter().fold(0u64, |n, &b| n << 8 | u64::from(b));
    // At most 32 bits, which fit usize on every target this crate builds for.
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// One element of the top-level array, borrowed from the frame.
#[derive(Clone, Copy, Default)]
struct MsgElem<'a>(&'a [u8]);

impl Element for MsgElem<'_> {
    const SERIALIZER: Serializer = Serializer::MsgPack;

    fn uint(self, field: Field) -> Result<u64, MessageError> {
        match head(&mut Cursor::new(self.0)) {
            Ok(Head::UInt(n)) => Ok(n),
            Ok(Head::Int(n)) => {
                u64::try_from(n).map_err(|_| MessageError::IntegerOutOfRange { field })
            }
            _ => Err(MessageError::WrongType { field }),
        }
    }

    fn string(self, field: Field) -> Result<String, MessageError> {
        let mut c = Cursor::new(self.0);
        match head(&mut c) {
            Ok(Head::Str(n)) => Ok(text(&mut c, n, field)?.to_owned()),
            _ => Err(MessageError::WrongType { field }),
        }
    }

    fn dict<M: DictModel>(self, field: Field) -> Result<M, MessageError> {
        let mut c = Cursor::new(self.0);
        let Ok(Head::Map(n)) = head(&mut c) else {
            return Err(MessageError::WrongType { field });
        };
        if n > MAX_ENVELOPE_ITEMS {
            return Err(MessageError::TooLong { field });
        }
        let mut m = M::default();
        for _ in 0..n {
            let key = match head(&mut c) {
                Ok(Head::Str(k)) => text(&mut c, k, field)?,
                _ => return Err(MessageError::WrongType { field }),
            };
            // The dictionary is at level 2, so its values start at level 3.
            let value = read_value(&mut c, 3, field)?;
            m.set(field, key, value)?;
        }
        Ok(m)
    }

    fn payload(
        self,
        frame: &Bytes,
        field: Field,
        kind: PayloadKind,
    ) -> Result<Bytes, MessageError> {
        match (head(&mut Cursor::new(self.0)), kind) {
            (Ok(Head::Array(_)), PayloadKind::Args | PayloadKind::ArgsOrOpaque)
            | (Ok(Head::Bin(_) | Head::Str(_)), PayloadKind::ArgsOrOpaque)
            | (Ok(Head::Map(_)), PayloadKind::Kwargs) => {}
            _ => return Err(MessageError::WrongType { field }),
        }
        // The skipper already checked the element is complete and within MAX_DEPTH; it
        // is a sub-slice of `frame`, as `slice_ref` requires.
        Ok(frame.slice_ref(self.0))
    }
}

/// Reads `n` bytes of UTF-8 text.
fn text<'a>(c: &mut Cursor<'a>, n: usize, field: Field) -> Result<&'a str, MessageError> {
    let bytes = c.take(n).map_err(|_| MessageError::Truncated)?;
    simdutf8::basic::from_utf8(bytes).map_err(|_| MessageError::InvalidUtf8 { field })
}

/// Reads an envelope value at nesting level `depth` into a [`Value`].
fn read_value(c: &mut Cursor<'_>, depth: usize, field: Field) -> Result<Value, MessageError> {
    let h = head(c).map_err(|e| match e {
        Bad::Truncated => MessageError::Truncated,
        _ => MessageError::Syntax,
    })?;
    Ok(match h {
        Head::Nil => Value::Null,
        Head::Bool(b) => Value::Bool(b),
        Head::UInt(n) => Value::UInt(n),
        Head::Int(n) => Value::from(n),
        Head::F32(f) => Value::Float(f64::from(f)),
        Head::F64(f) => Value::Float(f),
        Head::Str(n) => Value::Str(text(c, n, field)?.to_owned()),
        Head::Bin(n) => Value::Bin(c.take(n).map_err(|_| MessageError::Truncated)?.to_vec()),
        Head::Ext(_) => return Err(MessageError::Extension { field }),
        Head::Array(n) => {
            if depth > MAX_DEPTH {
                return Err(MessageError::TooDeep { field });
            }
            if n > MAX_ENVELOPE_ITEMS {
                return Err(MessageError::TooLong { field });
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_value(c, depth + 1, field)?);
            }
            Value::List(items)
        }
        Head::Map(n) => {
            if depth > MAX_DEPTH {
                return Err(MessageError::TooDeep { field });
            }
            if n > MAX_ENVELOPE_ITEMS {
                return Err(MessageError::TooLong { field });
            }
            let mut d = Dict::new();
            for _ in 0..n {
                let key = match head(c) {
                    Ok(Head::Str(k)) => text(c, k, field)?,
                    _ => return Err(MessageError::WrongType { field }),
                };
                let v = read_value(c, depth + 1, field)?;
                if d.contains_key(key) {
                    return Err(MessageError::DuplicateKey { field });
                }
                d.push_unchecked(key.to_owned(), v);
            }
            Value::Dict(d)
        }
    })
}

/// Writes MessagePack into a caller-owned buffer.
pub(super) struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }
}

impl layout::Writer for Writer<'_> {
    fn begin_list(&mut self, len: usize) {
        write_array_len(self.out, len);
    }

    fn end_list(&mut self) {}

    fn separator(&mut self) {}

    fn uint(&mut self, v: u64) {
        write_uint(self.out, v);
    }

    fn string(&mut self, s: &str) {
        write_str(self.out, s);
    }

    fn dict<M: DictModel>(&mut self, m: &M) -> Result<(), EncodeError> {
        let out = &mut *self.out;
        write_map_len(out, fields::count(m));
        let mut result = Ok(());
        m.visit(&mut |key, field| {
            if result.is_ok() {
                write_str(out, key);
                result = write_field(out, field);
            }
        });
        result
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
}

fn write_field(out: &mut Vec<u8>, field: FieldRef<'_>) -> Result<(), EncodeError> {
    match field {
        FieldRef::Bool(b) => out.push(if b { 0xc3 } else { 0xc2 }),
        FieldRef::UInt(n) => write_uint(out, n),
        FieldRef::Str(s) => write_str(out, s),
        FieldRef::Ids(ids) => {
            write_array_len(out, ids.len());
            for id in ids {
                write_uint(out, id.get());
            }
        }
        FieldRef::Strs(strs) => {
            write_array_len(out, strs.len());
            for s in strs {
                write_str(out, s);
            }
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
    write_map_len(out, d.len());
    for (k, v) in d.iter() {
        write_str(out, k);
        write_value(out, v, depth + 1)?;
    }
    Ok(())
}

fn write_value(out: &mut Vec<u8>, v: &Value, depth: usize) -> Result<(), EncodeError> {
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(n) => write_int(out, *n),
        Value::UInt(n) => write_uint(out, *n),
        Value::Float(f) => write_f64(out, *f),
        Value::Str(s) => write_str(out, s),
        Value::Bin(b) => write_bin(out, b),
        Value::List(items) => {
            if depth > MAX_DEPTH {
                return Err(EncodeError::TooDeep);
            }
            write_array_len(out, items.len());
            for item in items {
                write_value(out, item, depth + 1)?;
            }
        }
        Value::Dict(d) => write_dict(out, d, depth)?,
    }
    Ok(())
}

/// Writes a length header: the fix form if `n` fits under `fix_max`, else 16 or 32 bit.
fn write_len(out: &mut Vec<u8>, n: usize, fix: u8, fix_max: usize, m16: u8, m32: u8) {
    if n <= fix_max {
        // n <= fix_max <= 31, so it fits the low bits of the marker.
        out.push(fix | n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(m16);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        // Lengths beyond u32 cannot be expressed in MessagePack; the frame limits of the
        // transports keep every real length far below.
        out.push(m32);
        out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
    }
}

pub(super) fn write_array_len(out: &mut Vec<u8>, n: usize) {
    write_len(out, n, 0x90, 15, 0xdc, 0xdd);
}

pub(super) fn write_map_len(out: &mut Vec<u8>, n: usize) {
    write_len(out, n, 0x80, 15, 0xde, 0xdf);
}

pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n <= 31 {
        out.push(0xa0 | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[0xd9, n]);
    } else {
        write_len(out, n, 0, 0, 0xda, 0xdb);
    }
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    if let Ok(n) = u8::try_from(b.len()) {
        out.extend_from_slice(&[0xc4, n]);
    } else {
        write_len(out, b.len(), 0, 0, 0xc5, 0xc6);
    }
    out.extend_from_slice(b);
}

pub(super) fn write_uint(out: &mut Vec<u8>, n: u64) {
    if n < 0x80 {
        out.push(n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[0xcc, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xcd);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0xce);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

pub(super) fn write_int(out: &mut Vec<u8>, n: i64) {
    if let Ok(u) = u64::try_from(n) {
        write_uint(out, u);
    } else if n >= -32 {
        out.push(n as u8);
    } else if let Ok(n) = i8::try_from(n) {
        out.extend_from_slice(&[0xd0, n as u8]);
    } else if let Ok(n) = i16::try_from(n) {
        out.push(0xd1);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = i32::try_from(n) {
        out.push(0xd2);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

pub(super) fn write_f64(out: &mut Vec<u8>, f: f64) {
    out.push(0xcb);
    out.extend_from_slice(&f.to_bits().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The recursive skipper this module had before the fast one, as its reference.
    fn reference_skip(c: &mut Cursor<'_>, depth: usize) -> Result<(), Bad> {
        match head(c)? {
            Head::Str(n) | Head::Bin(n) => {
                c.take(n)?;
            }
            Head::Ext(n) => {
                c.take(n.saturating_add(1))?;
            }
            Head::Array(n) => reference_skip_items(c, depth, n)?,
            Head::Map(n) => reference_skip_items(c, depth, n.saturating_mul(2))?,
            _ => {}
        }
        Ok(())
    }

    fn reference_skip_items(c: &mut Cursor<'_>, depth: usize, n: usize) -> Result<(), Bad> {
        if depth > MAX_DEPTH {
            return Err(Bad::TooDeep);
        }
        // Every item takes at least one byte: a count beyond what is left is a lie we can
        // reject before looping over it.
        if n > c.remaining() {
            return Err(Bad::Truncated);
        }
        for _ in 0..n {
            reference_skip(c, depth + 1)?;
        }
        Ok(())
    }

    /// MessagePack values, encoded, nesting up to `levels` deep.
    fn encoded(levels: u32) -> impl Strategy<Value = Vec<u8>> {
        use rmpv::Value as V;
        let leaf = prop_oneof![
            Just(V::Nil),
            any::<bool>().prop_map(V::from),
            any::<i64>().prop_map(V::from),
            any::<u64>().prop_map(V::from),
            any::<f32>().prop_map(V::from),
            any::<f64>().prop_map(V::from),
            ".{0,40}".prop_map(V::from),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(V::from),
            (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(t, d)| V::Ext(t, d)),
        ];
        leaf.prop_recursive(levels, 64, 20, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(V::Array),
                proptest::collection::vec((inner.clone(), inner), 0..20).prop_map(V::Map),
            ]
        })
        .prop_map(|v| {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &v).unwrap();
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The fast skipper agrees with the recursive one on values and on every edit
        /// of them (truncation, a changed byte), at every starting depth.
        #[test]
        fn skip_agrees_with_reference(
            mut bytes in encoded(4),
            cut in any::<usize>(),
            flip in any::<(usize, u8)>(),
            depth in 1..=MAX_DEPTH + 1,
        ) {
            let run = |bytes: &[u8], f: fn(&mut Cursor<'_>, usize) -> Result<(), Bad>| {
                let mut c = Cursor::new(bytes);
                f(&mut c, depth).map(|()| c.pos)
            };
            prop_assert_eq!(run(&bytes, skip), run(&bytes, reference_skip));
            let i = flip.0 % bytes.len();
            bytes[i] = flip.1;
            prop_assert_eq!(run(&bytes, skip), run(&bytes, reference_skip));
            bytes.truncate(cut % (bytes.len() + 1));
            prop_assert_eq!(run(&bytes, skip), run(&bytes, reference_skip));
        }
    }

    /// Our writers against rmpv's, value by value.
    #[test]
    fn writers_match_rmp() {
        for n in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            write_uint(&mut ours, n);
            let mut theirs = Vec::new();
            rmp::encode::write_uint(&mut theirs, n).unwrap();
            assert_eq!(ours, theirs, "uint {n}");
        }
        for n in [
            -1i64,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            i32::MIN as i64,
            i64::MIN,
        ] {
            let mut ours = Vec::new();
            write_int(&mut ours, n);
            let mut theirs = Vec::new();
            rmp::encode::write_sint(&mut theirs, n).unwrap();
            assert_eq!(ours, theirs, "int {n}");
        }
        for n in [0usize, 31, 32, 255, 256, 70000] {
            let s = "x".repeat(n);
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            let mut theirs = Vec::new();
            rmp::encode::write_str(&mut theirs, &s).unwrap();
            assert_eq!(ours, theirs, "str {n}");
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            write_bin(&mut ours, s.as_bytes());
            rmp::encode::write_bin(&mut theirs, s.as_bytes()).unwrap();
            assert_eq!(ours, theirs, "bin {n}");
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            write_array_len(&mut ours, n);
            rmp::encode::write_array_len(&mut theirs, n as u32).unwrap();
            assert_eq!(ours, theirs, "array {n}");
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            write_map_len(&mut ours, n);
            rmp::encode::write_map_len(&mut theirs, n as u32).unwrap();
            assert_eq!(ours, theirs, "map {n}");
        }
    }

    #[test]
    fn skip_limits() {
        let check = |bytes: &[u8], expect: Result<usize, Bad>| {
            let mut c = Cursor::new(bytes);
            assert_eq!(skip(&mut c, 1).map(|()| c.pos), expect, "{bytes:x?}");
        };
        check(&[0x91, 0x01], Ok(2));
        check(&[0x92, 0x01], Err(Bad::Truncated));
        check(&[0xdd, 0xff, 0xff, 0xff, 0xff], Err(Bad::Truncated));
        check(&[0xc1], Err(Bad::Syntax));
        check(&[0xd4, 0x01, 0x02], Ok(3));
        let deep: Vec<u8> = std::iter::repeat_n(0x91, MAX_DEPTH + 1)
            .chain([0xc0])
            .collect();
        check(&deep, Err(Bad::TooDeep));
        let ok: Vec<u8> = std::iter::repeat_n(0x91, MAX_DEPTH).chain([0xc0]).collect();
        check(&ok, Ok(ok.len()));
    }
}
