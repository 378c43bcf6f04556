//! Criterion benchmarks of the WAMP codecs on the broker's hot path: PUBLISH in, EVENT out.
//!
//! For payloads of 64 B, 1 KiB and 64 KiB, in JSON and MessagePack, each group measures
//! side by side:
//!
//! - `switchyard`: `codec::decode` of the PUBLISH frame (envelope only, payload kept as
//!   slices of the frame), building the `Event` around the same payload, `codec::encode`
//!   into a reused buffer (the payload bytes copied once, into the output).
//! - `naive`: the whole PUBLISH parsed into a `serde_json::Value` / `rmpv::Value` tree, the
//!   EVENT built as a tree from its parts, and serialized.
//!
//! Both produce the same EVENT (checked before measuring). The payload is what
//! applications send: `args` is a list of small records (`{"id":7,"name":"sensor-7",
//! "v":7.5}`), `kwargs` a one-key dictionary, so that both sides pay per field rather than
//! per byte of one long string. The frames are 105 B / 78 B (JSON / MessagePack) for
//! `64B`, 1,066 B / 877 B for `1KiB` (25 records) and 65,594 B / 55,151 B for `64KiB`.
//!
//! It does not measure transcoding or framing, and asserts nothing about speed: figures go
//! to `BENCHMARKS.md` with the command that produced them.
//!
//! # Instruction counts
//!
//! Wall-clock medians swing on a loaded machine; instruction counts do not. With
//! `CODEC_ICOUNT=<json|msgpack>/<switchyard|naive>/<64B|1KiB|64KiB>/<iterations>` set, the
//! binary skips criterion and runs that one case `iterations` times (after one warm-up
//! iteration, so that the output buffer has its final capacity) inside `icount_loop`, for
//! callgrind to count:
//!
//! ```text
//! CODEC_ICOUNT=json/switchyard/1KiB/1000 valgrind --tool=callgrind \
//!     --toggle-collect='*icount_loop*' target/release/deps/codec-<hash>
//! ```
//!
//! and the per-iteration cost is the collected total divided by `iterations`.

// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use switchyard_core::codec::{self, Serializer};
use switchyard_core::id::Id;
use switchyard_core::message::{Event, EventDetails, Message};

const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

/// A PUBLISH whose args are a list of small records, about `size` bytes of JSON: the
/// shape of typical application data, which costs a tree parser one node per field.
fn publish_json(size: usize) -> Vec<u8> {
    let mut args = String::from("[");
    let mut i = 0;
    while args.len() + 48 < size || i == 0 {
        if i > 0 {
            args.push(',');
        }
        args.push_str(&format!(
            r#"{{"id":{i},"name":"sensor-{i}","v":{}.5}}"#,
            i % 100
        ));
        i += 1;
    }
    args.push(']');
    format!(r#"[16,239714735,{{"acknowledge":true}},"com.myapp.sensors",{args},{{"unit":"C"}}]"#)
        .into_bytes()
}

fn publish_msgpack(size: usize) -> Vec<u8> {
    let json: serde_json::Value = serde_json::from_slice(&publish_json(size)).expect("valid JSON");
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &json_to_rmpv(&json)).expect("write to Vec");
    out
}

fn json_to_rmpv(v: &serde_json::Value) -> rmpv::Value {
    use serde_json::Value as J;
    match v {
        J::Null => rmpv::Value::Nil,
        J::Bool(b) => rmpv::Value::from(*b),
        J::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => rmpv::Value::from(u),
            (_, Some(i)) => rmpv::Value::from(i),
            _ => rmpv::Value::from(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => rmpv::Value::from(s.as_str()),
        J::Array(a) => rmpv::Value::Array(a.iter().map(json_to_rmpv).collect()),
        J::Object(m) => rmpv::Value::Map(
            m.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), json_to_rmpv(v)))
                .collect(),
        ),
    }
}

const SUBSCRIPTION: u64 = 5_512_315_355;
const PUBLICATION: u64 = 4_429_313_566;

/// Switchyard: decode the envelope, re-wrap the payload slices, encode.
fn ours(ser: Serializer, frame: &Bytes, out: &mut Vec<u8>) {
    out.clear();
    let Ok(Message::Publish(p)) = codec::decode(ser, frame.clone()) else {
        panic!("bench frame is a valid PUBLISH");
    };
    let event = Message::Event(Event {
        subscription: Id::new(SUBSCRIPTION).expect("in range"),
        publication: Id::new(PUBLICATION).expect("in range"),
        details: EventDetails::default(),
        payload: p.payload,
    });
    codec::encode(ser, &event, out).expect("payload is in the frame's serializer");
}

/// The naive JSON round trip through a `serde_json::Value` tree.
fn naive_json(frame: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let v: serde_json::Value = serde_json::from_slice(frame).expect("valid JSON");
    let serde_json::Value::Array(mut items) = v else {
        panic!("a list");
    };
    let kwargs = items.pop().expect("kwargs");
    let args = items.pop().expect("args");
    let event = serde_json::Value::Array(vec![
        36.into(),
        SUBSCRIPTION.into(),
        PUBLICATION.into(),
        serde_json::Value::Object(serde_json::Map::new()),
        args,
        kwargs,
    ]);
    serde_json::to_writer(&mut *out, &event).expect("write to Vec");
}

/// The naive MessagePack round trip through an `rmpv::Value` tree.
fn naive_msgpack(frame: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let v = rmpv::decode::read_value(&mut &frame[..]).expect("valid msgpack");
    let rmpv::Value::Array(mut items) = v else {
        panic!("a list");
    };
    let kwargs = items.pop().expect("kwargs");
    let args = items.pop().expect("args");
    let event = rmpv::Value::Array(vec![
        36.into(),
        SUBSCRIPTION.into(),
        PUBLICATION.into(),
        rmpv::Value::Map(Vec::new()),
        args,
        kwargs,
    ]);
    rmpv::encode::write_value(out, &event).expect("write to Vec");
}

fn publish_to_event(c: &mut Criterion) {
    for (ser, name) in [(Serializer::Json, "json"), (Serializer::MsgPack, "msgpack")] {
        let mut group = c.benchmark_group(format!("publish_to_event/{name}"));
        for (size, label) in SIZES {
            let frame = Bytes::from(match ser {
                Serializer::Json => publish_json(size),
                Serializer::MsgPack => publish_msgpack(size),
            });
            group.throughput(Throughput::Bytes(frame.len() as u64));
            let mut out = Vec::with_capacity(frame.len() + 64);

            // Both paths must produce the same EVENT, or the comparison means nothing.
            ours(ser, &frame, &mut out);
            let mine = out.clone();
            match ser {
                Serializer::Json => naive_json(&frame, &mut out),
                Serializer::MsgPack => naive_msgpack(&frame, &mut out),
            }
            match ser {
                Serializer::Json => assert_eq!(
                    serde_json::from_slice::<serde_json::Value>(&mine).expect("ours is JSON"),
                    serde_json::from_slice::<serde_json::Value>(&out).expect("naive is JSON"),
                ),
                Serializer::MsgPack => assert_eq!(mine, out),
            }

            group.bench_with_input(BenchmarkId::new("switchyard", label), &frame, |b, f| {
                b.iter(|| ours(ser, black_box(f), &mut out));
            });
            group.bench_with_input(BenchmarkId::new("naive", label), &frame, |b, f| match ser {
                Serializer::Json => b.iter(|| naive_json(black_box(f), &mut out)),
                Serializer::MsgPack => b.iter(|| naive_msgpack(black_box(f), &mut out)),
            });
        }
        group.finish();
    }
}

/// Runs one case `CODEC_ICOUNT` names, for callgrind; `None` if the variable is unset.
fn icount() -> Option<()> {
    let spec = std::env::var("CODEC_ICOUNT").ok()?;
    let parts: Vec<&str> = spec.split('/').collect();
    let [ser, imp, size, iters] = parts[..] else {
        panic!("CODEC_ICOUNT is <json|msgpack>/<switchyard|naive>/<size>/<iterations>");
    };
    let ser = match ser {
        "json" => Serializer::Json,
        "msgpack" => Serializer::MsgPack,
        _ => panic!("serializer is json or msgpack"),
    };
    let naive = match imp {
        "switchyard" => false,
        "naive" => true,
        _ => panic!("implementation is switchyard or naive"),
    };
    let (size, _) = SIZES
        .into_iter()
        .find(|(_, l)| *l == size)
        .expect("size is 64B, 1KiB or 64KiB");
    let iters: u64 = iters.parse().expect("iterations is a number");
    let frame = Bytes::from(match ser {
        Serializer::Json => publish_json(size),
        Serializer::MsgPack => publish_msgpack(size),
    });
    let mut out = Vec::new();
    let run = |out: &mut Vec<u8>| match (ser, naive) {
        (_, false) => ours(ser, black_box(&frame), out),
        (Serializer::Json, true) => naive_json(black_box(&frame), out),
        (Serializer::MsgPack, true) => naive_msgpack(black_box(&frame), out),
    };
    run(&mut out);
    icount_loop(iters, &mut out, run);
    eprintln!("{spec}: frame {} B, output {} B", frame.len(), out.len());
    Some(())
}

/// The measured loop; never inlined, so that callgrind can collect just this function.
#[inline(never)]
fn icount_loop(iters: u64, out: &mut Vec<u8>, run: impl Fn(&mut Vec<u8>)) {
    for _ in 0..iters {
        run(out);
    }
}

criterion_group!(benches, publish_to_event);

fn main() {
    if icount().is_some() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
