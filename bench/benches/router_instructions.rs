//! Gungraun (callgrind) benchmarks of the router shard's data path: instruction counts,
//! stable on a noisy machine.
//!
//! - `fanout::publish`: one PUBLISH (decoded from its JSON frame) fanned out to 1, 100 and
//!   10,000 subscribers of one topic on one shard (`one_*`) and spread evenly over two
//!   shards (`two_*`, publisher on shard 0, the publication encoded, carried and decoded
//!   once for shard 1). Divide the instruction count by the subscriber count for
//!   instructions per delivered event.
//! - `call::round_trip`: CALL → INVOCATION → YIELD → RESULT, caller on shard 0 and callee
//!   on shard 1 (`two_shards`) or both on one shard (`one_shard`), frames decoded from JSON.
//!
//! The scenes are built by the `setup` functions, which callgrind does not count. This
//! file measures no sockets or WebSocket framing and asserts nothing: figures go to
//! `BENCHMARKS.md` with the command that produced them. Running it needs valgrind and
//! `gungraun-runner` of the same version as the `gungraun` library.

// The benchmark macros generate public items that cannot carry doc comments, and paths
// that the `unused_qualifications` lint flags in code we do not write.
#![allow(missing_docs, unused_qualifications)]

use std::hint::black_box;

use gungraun::{library_benchmark, library_benchmark_group, main};
use switchyard_bench::{Fanout, RoundTrip};

fn fanout_scene(subscribers: usize, shards: u16) -> Fanout {
    Fanout::new(subscribers, shards)
}

#[library_benchmark]
#[bench::one_1(args = (1, 1), setup = fanout_scene)]
#[bench::one_100(args = (100, 1), setup = fanout_scene)]
#[bench::one_10000(args = (10_000, 1), setup = fanout_scene)]
#[bench::two_1(args = (1, 2), setup = fanout_scene)]
#[bench::two_100(args = (100, 2), setup = fanout_scene)]
#[bench::two_10000(args = (10_000, 2), setup = fanout_scene)]
fn publish(mut scene: Fanout) -> usize {
    let delivered = black_box(scene.publish());
    // Tearing down thousands of sessions is not part of a publication: leave it to exit.
    std::mem::forget(scene);
    delivered
}

library_benchmark_group!(name = fanout; benchmarks = publish);

fn call_scene(shards: u16) -> RoundTrip {
    RoundTrip::new(shards)
}

#[library_benchmark]
#[bench::one_shard(args = (1,), setup = call_scene)]
#[bench::two_shards(args = (2,), setup = call_scene)]
fn round_trip(mut scene: RoundTrip) -> usize {
    let frames = black_box(scene.call());
    // Tearing the scene down is not part of a call: leave it to exit.
    std::mem::forget(scene);
    frames
}

library_benchmark_group!(name = call; benchmarks = round_trip);

main!(library_benchmark_groups = fanout, call);
