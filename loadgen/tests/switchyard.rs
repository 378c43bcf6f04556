//! The scenarios end to end against the REAL router: the `switchyard` binary (built by
//! `switchyard-tests`' helper when missing) started with `--cores 2` on the embedded default
//! configuration moved to a free port (one universal transport: WebSocket at `/ws` and
//! RawSocket on the same port). `connect` verifies every session with a broadcast, the
//! router's own `wamp.session.count` and a sample of calls; `pubsub` delivers everything with no gap, and a
//! subscriber told to drop every 10th event (the test-only `drop_every`) is caught as loss;
//! `rpc` answers every call. Counts are asserted, never timings; every run is a few seconds
//! and stops by itself.
//!
//! What it does not cover: worker processes of the router or of the load generator (the
//! `capacity` subcommand does), and routers other than Switchyard.

use serde_json::Value;
use switchyard_loadgen::scenario::{self, connect, pubsub, rpc, Common, Plan, Scenario};
use switchyard_loadgen::sys::now_ns;
use switchyard_tests::{free_port, workspace_root, Node};

/// The embedded default configuration (`io/src/config/default.json`) on `port`.
fn default_config(port: u16) -> Value {
    let path = workspace_root().join("io/src/config/default.json");
    let text = std::fs::read_to_string(path).expect("the embedded default configuration");
    let mut config: Value = serde_json::from_str(&text).expect("it is JSON");
    config["workers"][0]["transports"][0]["endpoint"]["port"] = port.into();
    config
}

/// A plan whose setup phase is generous: the machine running CI may be busy compiling, and a
/// session joining after setup counts as a failure (`setup-late`).
fn plan(url: String, serializer: &str, scenario: Scenario) -> Plan {
    let setup_secs = if matches!(scenario, Scenario::Connect(_)) {
        6.0
    } else {
        4.0
    };
    Plan {
        common: Common {
            url,
            realm: "realm1".into(),
            serializer: serializer.into(),
            cores: 2,
            cpus: vec![],
            setup_secs,
            warmup_secs: 0.2,
            duration_secs: 0.8,
            drain_secs: 1.0,
            sources: 3,
            seed: 11,
            spin_us: 0,
        },
        scenario,
        worker: 0,
        workers: 1,
        t_start_ns: now_ns(),
    }
}

fn pubsub_cfg(drop_every: u64) -> pubsub::Config {
    pubsub::Config {
        publishers: 2,
        subscribers: 6,
        topics: 2,
        payload: 100,
        rate: 500.0,
        batch: 1,
        drop_every,
    }
}

#[test]
fn scenarios_against_the_real_router() {
    let port = free_port();
    let node = Node::start(&default_config(port), 2, &[port]);
    let ws = format!("ws://127.0.0.1:{port}/ws");
    let rs = format!("rs://127.0.0.1:{port}");

    // connect: every session joins, subscribes, stays alive and gets the broadcast; the
    // router counts them all plus the broadcaster.
    for (url, ser) in [(&ws, "json"), (&rs, "msgpack")] {
        let c = connect::Config {
            sessions: 150,
            rate: 500.0,
            subscribe: true,
            connect_timeout_secs: 10.0,
            call_every: 10,
        };
        let s = scenario::run(plan(url.clone(), ser, Scenario::Connect(c)), 1).unwrap();
        assert!(s.failures.is_empty(), "{url} {ser}: {:?}", s.failures);
        assert_eq!(s.counter("sessions_open"), 150, "{url} {ser}");
        assert_eq!(s.counter("sessions_alive_at_end"), 150, "{url} {ser}");
        assert_eq!(s.counter("broadcast_received"), 150, "{url} {ser}");
        // Sessions 0, 10, …, 140 called the sample procedure once each.
        assert_eq!(s.counter("sample_calls_ok"), 15, "{url} {ser}");
        assert_eq!(s.counter("sample_invocations"), 15, "{url} {ser}");
        // The sessions, the broadcaster and the sample callee.
        assert_eq!(s.counter("router_session_count"), 152, "{url} {ser}");
    }

    // pubsub: everything published reaches every subscriber of its topic, in order.
    for (url, ser) in [(&ws, "msgpack"), (&rs, "json")] {
        let c = pubsub_cfg(0);
        let s = scenario::run(plan(url.clone(), ser, Scenario::PubSub(c.clone())), 1).unwrap();
        assert!(s.failures.is_empty(), "{url} {ser}: {:?}", s.failures);
        let published = s.counter("published");
        assert!(published > 0, "{url} {ser}");
        // 6 subscribers over 2 topics: 3 per topic.
        assert_eq!(s.counter("events_received"), published * 3, "{url} {ser}");
        assert_eq!(s.lost(|p| pubsub::fanout(&c, p)), 0, "{url} {ser}");
        assert_eq!((s.gaps, s.late, s.duplicates), (0, 0, 0), "{url} {ser}");
    }

    // The injected loss: subscribers drop every 10th event they receive; the router
    // delivered everything, and the load generator must still report the loss.
    let c = pubsub_cfg(10);
    let s = scenario::run(plan(ws.clone(), "json", Scenario::PubSub(c.clone())), 1).unwrap();
    let lost = s.lost(|p| pubsub::fanout(&c, p));
    assert!(lost > 0, "an injected loss went unnoticed");
    assert!(s.gaps > 0);

    // rpc, open and closed loop: every call answered, every invocation seen once.
    for (url, ser, rate, in_flight) in [(&ws, "json", 400.0, 1), (&rs, "msgpack", 0.0, 8)] {
        let c = rpc::Config {
            callers: 3,
            callees: 2,
            payload: 64,
            rate,
            in_flight,
        };
        let s = scenario::run(plan(url.clone(), ser, Scenario::Rpc(c)), 1).unwrap();
        assert!(s.failures.is_empty(), "{url} {ser}: {:?}", s.failures);
        assert!(s.counter("calls_sent") > 0, "{url} {ser}");
        assert_eq!(
            s.counter("calls_ok"),
            s.counter("calls_sent"),
            "{url} {ser}"
        );
        assert_eq!(
            s.counter("invocations"),
            s.counter("calls_sent"),
            "{url} {ser}"
        );
    }
    drop(node);
}
