//! `switchyard-fuzz`: the body of every fuzz target, in one place.
//!
//! Each function here takes one fuzz input, drives one parsing surface of Switchyard with
//! it and checks what comes out. The thin binaries in `fuzz_targets/` hand libFuzzer's
//! input to these functions; the corpus replay test (`tests/tests/fuzz_corpus.rs`) hands
//! them every committed corpus and regression file on stable Rust. So a crash found by the
//! fuzzer becomes a permanent regression test by saving its input under
//! `fuzz/regressions/<target>/`.
//!
//! A broken invariant is reported by panicking (`assert!`): that is how libFuzzer and the
//! test harness notice it. Peer input is never trusted to be well formed; these functions
//! check the code under test, not the input.
//!
//! What it does not do: it fixes nothing and adds no hooks to `core` or `io`; every check
//! uses their public API. Inputs are the byte layouts documented on each function, chosen
//! so that a seed corpus can be written by hand.

mod router;
mod transport;
mod wamp;

pub use router::router_session;
pub use transport::{http_upgrade, rawsocket, ws_deflate, ws_frame_header, ws_message};
pub use wamp::{transcode, wamp_json, wamp_msgpack};

/// The body of one target: takes one input, panics if an invariant breaks.
pub type Body = fn(&[u8]);

/// Every target by name (the name of its binary and of its corpus directory).
pub const TARGETS: &[(&str, Body)] = &[
    ("http_upgrade", http_upgrade),
    ("rawsocket", rawsocket),
    ("router_session", router_session),
    ("transcode", transcode),
    ("wamp_json", wamp_json),
    ("wamp_msgpack", wamp_msgpack),
    ("ws_deflate", ws_deflate),
    ("ws_frame_header", ws_frame_header),
    ("ws_message", ws_message),
];

/// The body of the target named `name`, if there is one.
pub fn target(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Splits `data` into read-sized pieces whose lengths cycle through a pattern picked by
/// `seed`, so that incremental parsers see headers and characters cut at every place.
fn chunks(data: &[u8], seed: u8) -> Vec<&[u8]> {
    const PATTERNS: [&[usize]; 4] = [&[1], &[1, 2, 3, 5, 7], &[13, 1, 64], &[3, 17, 2, 255]];
    let pattern = PATTERNS[usize::from(seed) % PATTERNS.len()];
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = pattern[i % pattern.len()].min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
        i += 1;
    }
    out
}
