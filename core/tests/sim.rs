//! Deterministic simulation of the sharded router: N ∈ {1, 2, 4} shards and many scripted
//! WAMP clients in one thread, with virtual time and a seeded scheduler that interleaves
//! cross-shard deliveries (FIFO per link) with client actions.
//!
//! Each scenario test sweeps a range of seeds and checks the router-wide invariants after
//! every run (`sim/check.rs`). A failure prints its scenario, its seed and the command that
//! replays it with a trace; `core/tests/SIM.md` explains how to run and replay. This file
//! does not test the router's unit behaviour (that is `src/router/tests.rs` and
//! `router_api.rs`) and asserts nothing about timings.

#[path = "sim/advanced.rs"]
mod advanced;
#[path = "sim/check.rs"]
mod check;
#[path = "sim/client.rs"]
mod client;
#[path = "sim/rng.rs"]
mod rng;
#[path = "sim/scenarios.rs"]
mod scenarios;
#[path = "sim/world.rs"]
mod world;

use std::panic::{catch_unwind, AssertUnwindSafe};

use scenarios::{run, ALL};

/// Runs `scenario` over `seeds` seeds (from `SIM_SEED_BASE`, default 0; `SIM_SEEDS`
/// overrides the count) and fails listing how many seeds failed, with the full report of
/// the first failing seed and one line for each of the next few.
fn sweep(scenario: &str, seeds: u64) {
    let base = env_u64("SIM_SEED_BASE").unwrap_or(0);
    let seeds = env_u64("SIM_SEEDS").unwrap_or(seeds);
    let build = ALL
        .iter()
        .find(|s| s.0 == scenario)
        .map(|s| s.1)
        .unwrap_or_else(|| panic!("no scenario {scenario}"));
    let mut failed = Vec::new();
    for seed in base..base + seeds {
        let problems = match catch_unwind(AssertUnwindSafe(|| run(build, seed, false))) {
            Ok(p) => p,
            Err(e) => vec![format!("panic: {}", panic_text(&e))],
        };
        if !problems.is_empty() {
            failed.push((seed, problems));
        }
    }
    if let Some((seed, problems)) = failed.first() {
        let others: Vec<String> = failed[1..]
            .iter()
            .take(32)
            .map(|(s, p)| format!("  seed {s}: {}", p[0]))
            .collect();
        panic!(
            "simulation failed: scenario {scenario}, {} of {seeds} seeds; first: seed {seed}\n  {}\nreplay: SIM_SEED={seed} SIM_SCENARIO={scenario} cargo test -p switchyard-core --test sim -- replay --nocapture\nother failing seeds:\n{}",
            failed.len(),
            problems.join("\n  "),
            others.join("\n")
        );
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

// Seeds per scenario: 10,300 in all, sized so that the debug run stays near a minute of
// CPU (the scenarios differ in size).

#[test]
fn pubsub() {
    sweep("pubsub", 2500);
}

#[test]
fn rpc() {
    sweep("rpc", 2000);
}

#[test]
fn cancel() {
    sweep("cancel", 2000);
}

#[test]
fn churn() {
    sweep("churn", 1500);
}

#[test]
fn shard_death() {
    sweep("shard_death", 1000);
}

/// Two shards dying and rejoining at once (sometimes one dies again while rejoining).
/// `SIM_REJOIN=<seeds>` sweeps more seeds than the ordinary run's 300.
#[test]
fn rejoin() {
    sweep("rejoin", env_u64("SIM_REJOIN").unwrap_or(300));
}

#[test]
fn meta() {
    sweep("meta", 1000);
}

// The advanced profile (`sim/advanced.rs`): 2,900 seeds more.

#[test]
fn progressive() {
    sweep("progressive", 800);
}

#[test]
fn meta_events() {
    sweep("meta_events", 800);
}

#[test]
fn testament() {
    sweep("testament", 400);
}

#[test]
fn retention() {
    sweep("retention", 500);
}

#[test]
fn realms() {
    sweep("realms", 400);
}

/// Replays one seed with a trace of every action: `SIM_SEED` and `SIM_SCENARIO` name it.
/// Without `SIM_SEED` it does nothing.
#[test]
fn replay() {
    let Some(seed) = env_u64("SIM_SEED") else {
        return;
    };
    let scenario = std::env::var("SIM_SCENARIO").unwrap_or_else(|_| "pubsub".to_owned());
    let build = ALL
        .iter()
        .find(|s| s.0 == scenario)
        .map(|s| s.1)
        .unwrap_or_else(|| panic!("no scenario {scenario}"));
    let problems = run(build, seed, true);
    assert!(
        problems.is_empty(),
        "scenario {scenario}, seed {seed}:\n  {}",
        problems.join("\n  ")
    );
}
