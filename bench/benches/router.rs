//! Criterion benchmarks of the router shard's data path (wall-clock throughput).
//!
//! - `fanout/{1,100,10000}x{1,2}shard`: one PUBLISH (decoded from its JSON frame) fanned
//!   out to that many subscribers of one topic, spread evenly over one or two shards, with
//!   the cross-shard publication encoded, carried and decoded in memory. Throughput is
//!   counted in delivered events.
//! - `call_round_trip/{1,2}shard`: CALL → INVOCATION → YIELD → RESULT with the caller on
//!   shard 0 and the callee on the last shard.
//!
//! The scenes come from `switchyard_bench` and are built outside the measurement. It does
//! not measure sockets or WebSocket framing (the io crate's job) and asserts nothing about
//! speed: figures go to `BENCHMARKS.md` with the command that produced them. The matching
//! instruction counts are in the `router_instructions` (gungraun) benchmark.

// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard_bench::{Fanout, RoundTrip};

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for shards in [1u16, 2] {
        for subscribers in [1usize, 100, 10_000] {
            let mut scene = Fanout::new(subscribers, shards);
            g.throughput(Throughput::Elements(subscribers as u64));
            g.bench_function(format!("{subscribers}x{shards}shard"), |b| {
                b.iter(|| black_box(scene.publish()))
            });
        }
    }
    g.finish();
}

fn call_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("call_round_trip");
    for shards in [1u16, 2] {
        let mut scene = RoundTrip::new(shards);
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{shards}shard"), |b| {
            b.iter(|| black_box(scene.call()))
        });
    }
    g.finish();
}

criterion_group!(benches, fanout, call_round_trip);
criterion_main!(benches);
