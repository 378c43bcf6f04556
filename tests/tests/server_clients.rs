//! The real `switchyard` binary driven by real third-party clients: Autobahn|Python
//! (asyncio) and Autobahn|JS (Node), programs in `tests/clients/`.
//!
//! Each test starts the node with 2 cores on free ports, configured by the two-realm
//! Crossbar fixture unchanged but for its ports. The client programs run RPC and PubSub
//! with progressive results, pattern and shared registrations, caller and publisher
//! disclosure, the meta API, authorization denials and two realms, over WebSocket (JSON,
//! MessagePack) and RawSocket (JSON, MessagePack; Autobahn|JS's RawSocket speaks JSON only);
//! they pair sessions on different cores, and the tests check each session's core against
//! the node's `session joined` log line. Also: garbage and protocol violations on some
//! connections leave the others working; SIGTERM sends GOODBYE to every client and the
//! node exits 0. Nothing here asserts timing: waits are bounded only so a bug fails.
//!
//! What it does not cover: worker processes (`server_workers.rs` does), TLS and Unix
//! sockets (`server_tls.rs` does).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use switchyard_tests::{free_port, two_realm_config, wamp_checks, Client, ClientRun, Node};

const CORES: u16 = 2;

/// A node with the two-realm fixture; returns it with its WebSocket and RawSocket ports.
fn start() -> (Node, u16, u16) {
    let (ws, raw) = (free_port(), free_port());
    let node = Node::start(&two_realm_config(ws, raw), CORES, &[ws, raw]);
    (node, ws, raw)
}

fn python_cmd(transport: &str, serializer: &str, ws: u16, raw: u16, scenario: &str) -> Command {
    wamp_checks(
        Client::Python,
        CORES,
        transport,
        serializer,
        ws,
        raw,
        scenario,
    )
}

fn js_cmd(transport: &str, serializer: &str, ws: u16, raw: u16, scenario: &str) -> Command {
    wamp_checks(Client::Js, CORES, transport, serializer, ws, raw, scenario)
}

/// The checks a routing run passes: denials only where the fixture's role is `anonymous`
/// (its RawSocket transport authenticates as `backend`, which may do everything).
fn routing_checks(transport: &str) -> Vec<&'static str> {
    let mut checks = vec![
        "rpc",
        "pubsub",
        "progressive",
        "pattern-registrations",
        "pattern-subscriptions",
        "shared-registration",
        "meta",
    ];
    if transport == "websocket" {
        checks.push("denials");
    }
    checks.push("two-realms");
    checks
}

/// Every session the run joined sits on the core its log line names, and the run used
/// both cores (so its checks crossed them).
fn check_cores(node: &Node, run: &ClientRun) {
    let logged = node.session_cores();
    let mut used = Vec::new();
    for session in run.sessions() {
        let core = logged
            .iter()
            .find(|(s, _)| *s == session)
            .map(|&(_, c)| c)
            .unwrap_or_else(|| panic!("no `session joined` log line for {session}"));
        assert_eq!(core, session % u64::from(CORES), "session {session}");
        used.push(core);
    }
    used.sort_unstable();
    used.dedup();
    assert_eq!(used, [0, 1], "the run's sessions did not span both cores");
}

/// Runs every combination with one client library against one node.
fn routing(client: fn(&str, &str, u16, u16, &str) -> Command, combos: &[(&str, &str)]) {
    let (node, ws, raw) = start();
    for &(transport, serializer) in combos {
        let run = ClientRun::run(client(transport, serializer, ws, raw, "routing"));
        assert!(
            run.status.success(),
            "{transport}/{serializer} failed after {:?}:\n{}",
            run.checks(),
            run.stderr
        );
        assert_eq!(
            run.checks(),
            routing_checks(transport),
            "{transport}/{serializer}"
        );
        check_cores(&node, &run);
    }
}

#[test]
fn autobahn_python_over_websocket_and_rawsocket_with_json_and_msgpack() {
    routing(
        python_cmd,
        &[
            ("websocket", "json"),
            ("websocket", "msgpack"),
            ("rawsocket", "json"),
            ("rawsocket", "msgpack"),
        ],
    );
}

#[test]
fn autobahn_js_over_websocket_and_rawsocket() {
    routing(
        js_cmd,
        &[
            ("websocket", "json"),
            ("websocket", "msgpack"),
            ("rawsocket", "json"),
        ],
    );
}

#[test]
fn garbage_and_protocol_violations_leave_other_sessions_working() {
    let (node, ws, raw) = start();
    for (transport, serializer) in [("websocket", "msgpack"), ("rawsocket", "json")] {
        let run = ClientRun::run(python_cmd(transport, serializer, ws, raw, "garbage"));
        assert!(run.status.success(), "{transport}: {}", run.stderr);
        assert_eq!(run.checks(), ["garbage"]);
        check_cores(&node, &run);
    }
}

#[test]
fn sigterm_sends_goodbye_to_every_client_and_exits_zero() {
    let (mut node, ws, raw) = start();
    let clients = [
        python_cmd("websocket", "json", ws, raw, "hold"),
        python_cmd("rawsocket", "msgpack", ws, raw, "hold"),
        js_cmd("websocket", "msgpack", ws, raw, "hold"),
        js_cmd("rawsocket", "json", ws, raw, "hold"),
    ];
    let mut children = Vec::new();
    for mut cmd in clients {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client starts");
        // Wait for the client's `ready` line; keep what it printed before.
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut before = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("client stdout");
            let ready =
                serde_json::from_str::<Value>(&line).is_ok_and(|v| v["ready"] == Value::Bool(true));
            before.push(line);
            if ready {
                break;
            }
        }
        assert!(
            before.last().is_some_and(|l| l.contains("ready")),
            "client never got ready: {before:?}"
        );
        children.push((child, lines, before));
    }

    node.signal("TERM");
    let status = node
        .wait(Duration::from_secs(30))
        .expect("the node exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{:#?}", node.log_lines());

    for (mut child, lines, before) in children {
        let after: Vec<String> = lines.map_while(Result::ok).collect();
        let status = child.wait().expect("client exits");
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        assert!(status.success(), "client failed: {stderr}");
        let text = before
            .iter()
            .chain(&after)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        let run = ClientRun::from_output(std::process::Output {
            status,
            stdout: text.into_bytes(),
            stderr: Vec::new(),
        });
        check_cores(&node, &run);
        let reasons: Vec<&Value> = run.lines.iter().filter_map(|v| v.get("reason")).collect();
        assert_eq!(
            reasons,
            [
                &Value::from("wamp.close.system_shutdown"),
                &Value::from("wamp.close.system_shutdown")
            ],
            "{:?}",
            run.lines
        );
    }
}
