//! Payloads the router itself writes: meta API results and meta events.
//!
//! Application payloads pass through the router as raw bytes; only the meta API makes the
//! router the author of a payload. This module encodes small [`Value`] lists and
//! dictionaries as `args`/`kwargs` in either serializer. It does not decode payloads (the
//! router reads meta API arguments through [`args_of`], which uses the codec's JSON view).

use base64::Engine as _;
use bytes::Bytes;

use crate::codec::Serializer;
use crate::message::{Dict, Payload, Value};

/// A payload holding `args` (and `kwargs`, if given), encoded in `serializer`.
pub(crate) fn payload(serializer: Serializer, args: &[Value], kwargs: Option<&Dict>) -> Payload {
    let mut a = Vec::with_capacity(32);
    write_list(serializer, args, &mut a);
    let k = kwargs.map(|d| {
        let mut k = Vec::with_capacity(32);
        write_dict(serializer, d, &mut k);
        Bytes::from(k)
    });
    Payload::new(serializer, Some(Bytes::from(a)), k)
}

/// The positional arguments of a payload, decoded into values (meta API calls only; they
/// are small and come from a size-limited frame).
pub(crate) fn args_of(p: &Payload) -> Vec<Value> {
    let Some(args) = p.args() else {
        return Vec::new();
    };
    let json = if p.serializer() == Serializer::Json {
        Some(args.clone())
    } else {
        // Go through the codec's transcoder so that only one payload reader exists.
        crate::codec::transcode(
            &Payload::new(p.serializer(), Some(args.clone()), None),
            Serializer::Json,
        )
        .ok()
        .and_then(|t| t.args().cloned())
    };
    let Some(json) = json else {
        return Vec::new();
    };
    match serde_json::from_slice::<serde_json::Value>(&json) {
        Ok(serde_json::Value::Array(items)) => items.into_iter().map(from_json).collect(),
        _ => Vec::new(),
    }
}

/// The keyword arguments of a payload as a dictionary (empty when absent or unreadable).
pub(crate) fn kwargs_of(p: &Payload) -> Dict {
    let Some(kw) = p.kwargs() else {
        return Dict::new();
    };
    let json = if p.serializer() == Serializer::Json {
        Some(kw.clone())
    } else {
        crate::codec::transcode(
            &Payload::new(p.serializer(), None, Some(kw.clone())),
            Serializer::Json,
        )
        .ok()
        .and_then(|t| t.kwargs().cloned())
    };
    match json.map(|j| serde_json::from_slice::<serde_json::Value>(&j)) {
        Some(Ok(v)) => match from_json(v) {
            Value::Dict(d) => d,
            _ => Dict::new(),
        },
        _ => Dict::new(),
    }
}

fn from_json(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::UInt(u),
            (None, Some(i), _) => Value::Int(i),
            (_, _, Some(f)) => Value::Float(f),
            _ => Value::Null,
        },
        serde_json::Value::String(s) => Value::Str(s),
        serde_json::Value::Array(a) => Value::List(a.into_iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            Value::Dict(o.into_iter().map(|(k, v)| (k, from_json(v))).collect())
        }
    }
}

fn write_list(s: Serializer, items: &[Value], out: &mut Vec<u8>) {
    match s {
        Serializer::Json => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(s, v, out);
            }
            out.push(b']');
        }
        Serializer::MsgPack => {
            // Writing into a Vec cannot fail.
            let _ =
                rmp::encode::write_array_len(out, u32::try_from(items.len()).unwrap_or(u32::MAX));
            for v in items {
                write_value(s, v, out);
            }
        }
    }
}

fn write_dict(s: Serializer, d: &Dict, out: &mut Vec<u8>) {
    match s {
        Serializer::Json => {
            out.push(b'{');
            for (i, (k, v)) in d.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(k, out);
                out.push(b':');
                write_value(s, v, out);
            }
            out.push(b'}');
        }
        Serializer::MsgPack => {
            let _ = rmp::encode::write_map_len(out, u32::try_from(d.len()).unwrap_or(u32::MAX));
            for (k, v) in d.iter() {
                let _ = rmp::encode::write_str(out, k);
                write_value(s, v, out);
            }
        }
    }
}

fn write_json_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_value(s: Serializer, v: &Value, out: &mut Vec<u8>) {
    match s {
        Serializer::Json => match v {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Value::UInt(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
            Value::Float(f) if f.is_finite() => {
                let _ = serde_json::to_writer(&mut *out, f);
            }
            Value::Float(_) => out.extend_from_slice(b"null"),
            Value::Str(st) => write_json_str(st, out),
            Value::Bin(b) => {
                let mut st = String::from("\0");
                base64::engine::general_purpose::STANDARD.encode_string(b, &mut st);
                write_json_str(&st, out);
            }
            Value::List(l) => write_list(s, l, out),
            Value::Dict(d) => write_dict(s, d, out),
        },
        Serializer::MsgPack => match v {
            Value::Null => {
                let _ = rmp::encode::write_nil(out);
            }
            Value::Bool(b) => {
                let _ = rmp::encode::write_bool(out, *b);
            }
            Value::Int(i) => {
                let _ = rmp::encode::write_sint(out, *i);
            }
            Value::UInt(u) => {
                let _ = rmp::encode::write_uint(out, *u);
            }
            Value::Float(f) => {
                let _ = rmp::encode::write_f64(out, *f);
            }
            Value::Str(st) => {
                let _ = rmp::encode::write_str(out, st);
            }
            Value::Bin(b) => {
                let _ = rmp::encode::write_bin(out, b);
            }
            Value::List(l) => write_list(s, l, out),
            Value::Dict(d) => write_dict(s, d, out),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_msgpack() {
        let args = [
            Value::UInt(3),
            Value::Str("a\"b".into()),
            Value::Null,
            Value::Int(-1),
        ];
        let kw = Dict::new().with("k", Value::List(vec![Value::Bool(true)]));
        let p = payload(Serializer::Json, &args, Some(&kw));
        assert_eq!(p.args().unwrap().as_ref(), b"[3,\"a\\\"b\",null,-1]");
        assert_eq!(p.kwargs().unwrap().as_ref(), b"{\"k\":[true]}");
        let m = payload(Serializer::MsgPack, &[Value::UInt(1)], None);
        assert_eq!(m.args().unwrap().as_ref(), &[0x91, 0x01]);
        assert_eq!(args_of(&p), args.to_vec());
        assert_eq!(kwargs_of(&p), kw);
    }
}
