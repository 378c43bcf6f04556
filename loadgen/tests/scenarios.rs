//! The scenarios end to end against the fake router over loopback, on pinned glommio
//! executors: `pubsub` delivers everything and detects an injected loss (by the router or
//! by a subscriber), `rpc` answers every call in open and closed loop, `connect` verifies
//! every session with a broadcast. Counts are asserted, never timings.

mod common;

use common::{FakeRouter, Options};
use switchyard_loadgen::scenario::{self, connect, pubsub, rpc, Common, Plan, Scenario};
use switchyard_loadgen::sys::now_ns;

fn plan(router: &FakeRouter, ws: bool, serializer: &str, scenario: Scenario, cores: usize) -> Plan {
    Plan {
        common: Common {
            url: router.url(ws),
            realm: "realm1".into(),
            serializer: serializer.into(),
            cores,
            cpus: vec![],
            setup_secs: 1.0,
            warmup_secs: 0.2,
            duration_secs: 0.5,
            drain_secs: 0.7,
            sources: 3,
            seed: 7,
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
        subscribers: 4,
        topics: 2,
        payload: 100,
        rate: 400.0,
        batch: 1,
        drop_every,
    }
}

#[test]
fn pubsub_delivers_everything() {
    let router = FakeRouter::start(Options::default());
    let c = pubsub_cfg(0);
    let p = plan(&router, true, "json", Scenario::PubSub(c.clone()), 2);
    let s = scenario::run(p, 1).unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    let published = s.counter("published");
    assert!(published > 0);
    // Each of the 2 topics has 2 subscribers.
    assert_eq!(s.counter("events_received"), published * 2);
    assert_eq!(s.lost(|p| pubsub::fanout(&c, p)), 0);
    assert_eq!((s.gaps, s.late, s.duplicates), (0, 0, 0));
    assert!(s.latency.count() > 0);
}

#[test]
fn pubsub_detects_a_loss_in_the_router() {
    let router = FakeRouter::start(Options {
        drop_event: Some(5),
    });
    let c = pubsub_cfg(0);
    let p = plan(&router, false, "msgpack", Scenario::PubSub(c.clone()), 1);
    let s = scenario::run(p, 1).unwrap();
    assert_eq!(s.lost(|p| pubsub::fanout(&c, p)), 1);
    assert_eq!(s.gaps, 1);
}

#[test]
fn pubsub_detects_a_subscriber_dropping_events() {
    let router = FakeRouter::start(Options::default());
    let c = pubsub_cfg(10);
    let p = plan(&router, true, "msgpack", Scenario::PubSub(c.clone()), 1);
    let s = scenario::run(p, 1).unwrap();
    let lost = s.lost(|p| pubsub::fanout(&c, p));
    assert!(lost > 0);
    assert!(s.gaps > 0);
}

#[test]
fn rpc_open_and_closed_loop() {
    let router = FakeRouter::start(Options::default());
    for (rate, in_flight) in [(300.0, 1), (0.0, 4)] {
        let c = rpc::Config {
            callers: 3,
            callees: 2,
            payload: 50,
            rate,
            in_flight,
        };
        let p = plan(&router, true, "json", Scenario::Rpc(c), 2);
        let s = scenario::run(p, 1).unwrap();
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        assert!(s.counter("calls_sent") > 0);
        assert_eq!(s.counter("calls_ok"), s.counter("calls_sent"));
        assert_eq!(s.counter("invocations"), s.counter("calls_sent"));
    }
}

#[test]
fn rpc_errors_are_counted_by_uri() {
    let router = FakeRouter::start(Options::default());
    // Callers 0..2 call callees 0..2, but only callee 0 exists under that name... so make
    // the callee count 0: every call goes to a procedure nobody registered.
    let c = rpc::Config {
        callers: 1,
        callees: 0,
        payload: 10,
        rate: 100.0,
        in_flight: 1,
    };
    let p = plan(&router, false, "json", Scenario::Rpc(c), 1);
    let s = scenario::run(p, 1).unwrap();
    assert!(
        s.failures
            .get("error:wamp.error.no_such_procedure")
            .copied()
            .unwrap_or(0)
            > 0
    );
    assert_eq!(s.counter("calls_ok"), 0);
}

#[test]
fn connect_verifies_every_session() {
    let router = FakeRouter::start(Options::default());
    let c = connect::Config {
        sessions: 40,
        rate: 400.0,
        subscribe: true,
        connect_timeout_secs: 5.0,
        call_every: 10,
    };
    let p = plan(&router, true, "json", Scenario::Connect(c), 2);
    let s = scenario::run(p, 1).unwrap();
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert_eq!(s.counter("sessions_open"), 40);
    assert_eq!(s.counter("broadcast_received"), 40);
    // Sessions 0, 10, 20 and 30 called the sample procedure once each.
    assert_eq!(s.counter("sample_calls_ok"), 4);
    assert_eq!(s.counter("sample_invocations"), 4);
    // 40 sessions plus the broadcaster and the sample callee.
    assert_eq!(s.counter("router_session_count"), 42);
    assert!(s.counter("loadgen_rss_kib") > 0);
}
