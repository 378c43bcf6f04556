//! Criterion benchmarks of `switchyard_core::matcher::Matcher` lookups at router scale.
//!
//! One matcher holds 100,000 exact patterns, 5,000 prefix patterns and 5,000 wildcard
//! patterns (shaped like the URIs of many applications sharing a realm). The benchmarks
//! measure one lookup each, cycling through 4,096 precomputed URIs so that no single key
//! stays hot in cache:
//!
//! - `best_match/exact`, `/prefix`, `/wildcard`, `/miss`: the dealer's question, for URIs
//!   that resolve at each step of the spec's precedence, and for URIs nothing matches.
//! - `all_matches/exact_only`, `/mixed`: the broker's question, for URIs that only an
//!   exact pattern matches and for URIs that an exact, a prefix and a wildcard pattern match.
//!
//! It measures lookups only, not insertion or removal, and asserts nothing about speed:
//! figures go to `BENCHMARKS.md` with the command that produced them.

// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchyard_core::matcher::Matcher;
use switchyard_core::uri::MatchPolicy;

const EXACT: usize = 100_000;
const PREFIX: usize = 5_000;
const WILDCARD: usize = 5_000;
const URIS: usize = 4_096;

fn build() -> Matcher<u64> {
    let mut m = Matcher::new();
    let mut id = 0;
    let mut add = |pattern: &str, policy| {
        id += 1;
        m.insert(pattern, policy, id)
            .expect("bench patterns are shallow");
    };
    for i in 0..EXACT {
        add(&exact_uri(i), MatchPolicy::Exact);
    }
    for i in 0..PREFIX {
        // Half end with a dot, half end inside a component, as Crossbar users write both.
        let p = if i % 2 == 0 {
            format!("org.app{}.svc{i}.", i % 50)
        } else {
            format!("org.app{}.svc{i}", i % 50)
        };
        add(&p, MatchPolicy::Prefix);
    }
    for i in 0..WILDCARD {
        add(
            &format!("net.app{}..dev{i}.state", i % 50),
            MatchPolicy::Wildcard,
        );
        // The same URIs' exact and prefix twins for the `mixed` case live in other trees.
    }
    // Patterns that make `mixed` URIs match all three policies at once.
    for i in 0..URIS {
        add(
            &format!("net.app{}.room{i}.dev{i}.state", i % 50),
            MatchPolicy::Exact,
        );
    }
    for i in 0..50 {
        add(&format!("net.app{i}.room"), MatchPolicy::Prefix);
    }
    m
}

fn exact_uri(i: usize) -> String {
    format!("com.example.app{}.topic{i}", i % 100)
}

/// Spreads `URIS` lookups over the whole key space with a fixed stride.
fn uris(f: impl Fn(usize) -> String) -> Vec<String> {
    (0..URIS).map(|k| f(k * 7919)).collect()
}

fn bench(c: &mut Criterion) {
    let m = build();
    let cases: [(&str, Vec<String>); 4] = [
        ("exact", uris(|i| exact_uri(i % EXACT))),
        (
            "prefix",
            uris(|i| {
                let i = i % PREFIX;
                format!("org.app{}.svc{i}.method.call", i % 50)
            }),
        ),
        (
            "wildcard",
            uris(|i| {
                let i = i % WILDCARD;
                format!("net.app{}.unit{i}.dev{i}.state", i % 50)
            }),
        ),
        ("miss", uris(|i| format!("io.nowhere{}.x{i}", i % 100))),
    ];
    let mut group = c.benchmark_group("best_match");
    group.throughput(Throughput::Elements(1));
    for (name, uris) in &cases {
        assert!(uris
            .iter()
            .all(|u| m.best_match(u).is_some() == (*name != "miss")));
        let mut k = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                k = (k + 1) % URIS;
                black_box(m.best_match(black_box(&uris[k])).map(|hit| *hit.value))
            })
        });
    }
    group.finish();

    let all_cases: [(&str, Vec<String>, usize); 2] = [
        ("exact_only", uris(|i| exact_uri(i % EXACT)), 1),
        (
            "mixed",
            (0..URIS)
                .map(|i| format!("net.app{}.room{i}.dev{i}.state", i % 50))
                .collect(),
            3,
        ),
    ];
    let mut group = c.benchmark_group("all_matches");
    group.throughput(Throughput::Elements(1));
    for (name, uris, expect) in &all_cases {
        let count = |uri: &str| {
            let mut n = 0;
            m.for_each_match(uri, |hit| {
                black_box(hit.value);
                n += 1;
            });
            n
        };
        assert!(uris.iter().all(|u| count(u) == *expect), "{name}");
        let mut k = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                k = (k + 1) % URIS;
                black_box(count(black_box(&uris[k])))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
