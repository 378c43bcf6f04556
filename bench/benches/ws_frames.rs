//! Reading masked WebSocket text frames: Switchyard's server `Connection` against
//! tungstenite and fastwebsockets on the same bytes, at 16 B, 1 KiB, 64 KiB and 1 MiB
//! payloads.
//!
//! Every contender parses, unmasks and validates UTF-8 and hands out an owned message, and
//! every one reads from memory in the same 64 KiB pieces a socket read would give, so the
//! comparison is of protocol work, not of I/O. Small payloads come many to a buffer (about
//! 1 MiB of payload per iteration). Two texts: `json`, ASCII like most WAMP traffic, and
//! `mixed`, with a multi-byte character every few bytes, the validators' worst case. It
//! measures; it asserts nothing about speed (figures go to `BENCHMARKS.md`), only that each
//! contender decoded every message.
//!
//! Like with like: Switchyard hands out `Bytes` (small messages slice a per-read arena),
//! tungstenite a `Utf8Bytes` (a `Bytes` slice of its read buffer), fastwebsockets a
//! `BytesMut` split off its read buffer; all three own their message and have validated it
//! as UTF-8 (simdutf8 in Switchyard and fastwebsockets, std's validator in tungstenite).
//!
//! `WS_FRAMES_ONLY=<contender>/<text>/<size>/<iterations>` (for example
//! `switchyard/json/16B/200`) skips Criterion and runs that one read the given number of
//! times, so `perf stat` can count CPU time and instructions of one contender alone on a
//! machine too busy for wall-clock figures.

// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use switchyard_io::ws::conn::{Config, Connection, Event, Role};
use switchyard_io::ws::mask::apply_mask;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Payload sizes, with how many frames one benchmark iteration reads.
const CASES: [(usize, usize, &str); 4] = [
    (16, 65_536, "16B"),
    (1024, 1024, "1KiB"),
    (64 * 1024, 16, "64KiB"),
    (1024 * 1024, 2, "1MiB"),
];

/// The payload texts: a name and the pattern repeated to fill a payload.
const TEXTS: [(&str, &str); 2] = [
    (
        "json",
        r#"[16,7170,{},"com.example.topic",[1,2,3],{"k":"value"}] "#,
    ),
    ("mixed", "Switchyard routes κόσμε — ✓ 🚀 wamp.2.json "),
];

/// The most one read hands out, for every contender alike.
const READ_CHUNK: usize = 64 * 1024;

fn ws_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_frames");
    for ((size, count, size_label), (text_label, pattern)) in CASES
        .into_iter()
        .flat_map(|case| TEXTS.into_iter().map(move |text| (case, text)))
    {
        let label = format!("{text_label}/{size_label}");
        let payload = text_payload(pattern, size);
        let input = masked_frames(&payload, count);
        for (name, read) in CONTENDERS {
            // Each contender must decode every message to the original text before its
            // figure means anything.
            let (decoded, first) = read(&input, count, true);
            assert_eq!(
                decoded, count,
                "{name} decoded {decoded} of {count} messages"
            );
            assert_eq!(first.as_deref(), Some(payload.as_slice()), "{name} payload");
        }
        group.throughput(Throughput::Bytes((size * count) as u64));
        for (name, read) in CONTENDERS {
            group.bench_function(BenchmarkId::new(name, &label), |b| {
                b.iter(|| read(black_box(&input), count, false))
            });
        }
    }
    group.finish();
}

/// A contender: reads the `count` frames in `input` and returns how many text messages it
/// got and, if `keep_first`, the first one's bytes.
type Reader = fn(&[u8], usize, bool) -> (usize, Option<Vec<u8>>);

const CONTENDERS: [(&str, Reader); 3] = [
    ("switchyard", switchyard),
    ("tungstenite", tungstenite),
    ("fastwebsockets", fastwebsockets),
];

fn switchyard(input: &[u8], _count: usize, keep_first: bool) -> (usize, Option<Vec<u8>>) {
    let mut conn = Connection::new(Role::Server, Config::default(), None);
    let mut count = 0;
    let mut first = None;
    for chunk in input.chunks(READ_CHUNK) {
        conn.handle_read(chunk);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message { text: true, data } => {
                    if keep_first && first.is_none() {
                        first = Some(data.to_vec());
                    }
                    count += 1;
                    black_box(data);
                }
                other => panic!("switchyard: unexpected {other:?}"),
            }
        }
    }
    (count, first)
}

fn tungstenite(input: &[u8], count: usize, keep_first: bool) -> (usize, Option<Vec<u8>>) {
    use tungstenite::protocol::{Role, WebSocket};
    use tungstenite::Message;

    let mut ws = WebSocket::from_raw_socket(MemStream::new(input), Role::Server, None);
    let mut decoded = 0;
    let mut first = None;
    while decoded < count {
        // `read` unmasks and validates a text message's UTF-8 before returning it.
        match ws.read() {
            Ok(Message::Text(text)) => {
                if keep_first && first.is_none() {
                    first = Some(text.as_bytes().to_vec());
                }
                decoded += 1;
                black_box(text);
            }
            Ok(other) => panic!("tungstenite: unexpected {other:?}"),
            Err(e) => panic!("tungstenite: {e}"),
        }
    }
    (decoded, first)
}

fn fastwebsockets(input: &[u8], count: usize, keep_first: bool) -> (usize, Option<Vec<u8>>) {
    use fastwebsockets::{OpCode, Role, WebSocket};

    let mut ws = WebSocket::after_handshake(MemStream::new(input), Role::Server);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_auto_apply_mask(true);
    let mut decoded = 0;
    let mut first = None;
    while decoded < count {
        // `read_frame` unmasks and, for a final text frame, validates UTF-8 (simdutf8).
        let frame = ready(ws.read_frame()).unwrap_or_else(|e| panic!("fastwebsockets: {e}"));
        assert_eq!(frame.opcode, OpCode::Text, "fastwebsockets: opcode");
        if keep_first && first.is_none() {
            first = Some(frame.payload.to_vec());
        }
        decoded += 1;
        black_box(frame.payload);
    }
    (decoded, first)
}

/// Polls a future that never waits (the in-memory stream is always ready) to completion.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory read never waits"),
    }
}

/// An in-memory socket: reads hand out at most `READ_CHUNK` bytes of the input, writes
/// (pongs, close echoes; none expected) are dropped.
struct MemStream<'a> {
    input: &'a [u8],
}

impl<'a> MemStream<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    fn take(&mut self, room: usize) -> &'a [u8] {
        let n = room.min(READ_CHUNK).min(self.input.len());
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        head
    }
}

impl Read for MemStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let head = self.take(buf.len());
        buf[..head.len()].copy_from_slice(head);
        Ok(head.len())
    }
}

impl Write for MemStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for MemStream<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let head = this.take(buf.remaining());
        buf.put_slice(head);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemStream<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// `size` bytes of `pattern` repeated (valid UTF-8, cut at a character boundary).
fn text_payload(pattern: &str, size: usize) -> Vec<u8> {
    let mut text = String::with_capacity(size);
    for ch in pattern.chars().cycle() {
        if text.len() + ch.len_utf8() > size {
            break;
        }
        text.push(ch);
    }
    // Pad with ASCII where the next character would not fit.
    while text.len() < size {
        text.push('a');
    }
    text.into_bytes()
}

/// `count` client text frames (FIN, masked) carrying `payload`, each with its own key.
fn masked_frames(payload: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (payload.len() + 14));
    for i in 0..count {
        let key = (i as u32)
            .wrapping_mul(0x9e37_79b9)
            .wrapping_add(1)
            .to_be_bytes();
        out.push(0x81);
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | len as u8),
            len @ 126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], key, 0);
    }
    out
}

/// Runs one contender on one case `iterations` times (the `WS_FRAMES_ONLY` mode).
fn run_only(spec: &str) {
    let parts: Vec<&str> = spec.split('/').collect();
    let [name, text, size, iterations] = parts[..] else {
        panic!("WS_FRAMES_ONLY={spec}: expected contender/text/size/iterations");
    };
    let iterations: usize = iterations.parse().expect("WS_FRAMES_ONLY: iteration count");
    let (_, read) = CONTENDERS
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("WS_FRAMES_ONLY: no contender {name}"));
    let (_, pattern) = TEXTS
        .into_iter()
        .find(|(t, _)| *t == text)
        .unwrap_or_else(|| panic!("WS_FRAMES_ONLY: no text {text}"));
    let (size, count, _) = CASES
        .into_iter()
        .find(|(_, _, s)| *s == size)
        .unwrap_or_else(|| panic!("WS_FRAMES_ONLY: no size {size}"));
    let input = masked_frames(&text_payload(pattern, size), count);
    for _ in 0..iterations {
        let (decoded, _) = read(black_box(&input), count, false);
        assert_eq!(decoded, count);
    }
}

criterion_group!(benches, ws_frames);

fn main() {
    if let Ok(spec) = std::env::var("WS_FRAMES_ONLY") {
        run_only(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
