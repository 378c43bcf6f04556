//! The real `switchyard` binary with a dynamic authenticator and a dynamic authorizer
//! registered by an Autobahn|Python component (`tests/clients/py/dynauth_checks.py`).
//!
//! The node runs on 2 cores with one WebSocket transport: `anonymous` joins as `backend`,
//! `ticket` is decided by `com.example.authenticate`; realm1's role `user` is decided by
//! `com.example.authorize`. The client program checks that the authenticator's answers
//! (a role, a principal, an application error, a Python exception, no answer, an unknown
//! role) give exactly the sessions and ABORT reasons Crossbar gives, and that the
//! authorizer's answers (allow, deny, raise, no answer, cache, disclose) decide actions.
//! The node's `dynamic_auth_timeout` is short so that "no answer" ends quickly; nothing
//! here asserts timing.
//!
//! Cookie authentication (`tests/clients/py/cookie_checks.py`): a node whose WebSocket
//! transport tracks cookies with a 2 s `max_age` sets one, binds it to the principal that
//! authenticated by ticket, lets a reconnect presenting it join as that principal offering
//! only `cookie`, ignores a forged one and refuses it once expired.
//!
//! Every dynamic method on WebSocket and RawSocket (`dynauth2_checks.py` with
//! Autobahn|Python, `dynauth_checks.js` with Autobahn|JS): `anonymous`, `ticket`, `wampcra`
//! (plain and salted: the authenticator returns the secret), `cryptosign` (it returns the
//! public key) and WAMP-SCRAM (Python only; it returns the credential) admit the right client and refuse a wrong secret, key or authid; a
//! cryptosign client asking for a channel binding is refused before the authenticator is
//! asked; a static principal whose role the realm lacks gets ABORT `no_such_role`.
//! Autobahn|JS has no WAMP-SCRAM.
//!
//! Cookies across worker processes (`--workers 2 --cores 1`): the ticket session's cookie,
//! presented on new connections, joins as the same principal on the other worker too
//! (which worker a connection reaches is the kernel's choice: enough reconnects are made
//! that both are reached, and the test checks that they were). Autobahn|JS
//! (`tests/clients/js/cookie_checks.js`) then binds a cookie by ticket and rejoins by it.
//!
//! What it does not cover: the failure throttle for dynamic failures end to end (the core
//! tests in `router/tests_dynamic.rs` do; here the throttle is set out of the way).

use std::process::Command;

use serde_json::{json, Value};
use switchyard_tests::{free_port, node_js, python, workspace_root, ClientRun, Node};

fn cookie_config(port: u16, max_age: u64) -> Value {
    let mut c = config(port);
    let ws = &mut c["workers"][0]["transports"][0]["paths"]["ws"];
    ws["cookie"] = json!({"name": "cbtid", "max_age": max_age});
    ws["auth"]["cookie"] = json!({});
    c
}

const COOKIE_MAX_AGE: u64 = 2;

fn config(port: u16) -> Value {
    let all = json!({"call": true, "register": true, "publish": true, "subscribe": true});
    json!({
        "version": 2,
        "workers": [{
            "type": "router",
            "options": {"dynamic_auth_timeout": 1500},
            "realms": [{
                "name": "realm1",
                "roles": [
                    {"name": "backend", "permissions": [
                        {"uri": "", "match": "prefix", "allow": all}
                    ]},
                    {"name": "user", "authorizer": "com.example.authorize"},
                    {"name": "guest", "permissions": [
                        {"uri": "com.example.", "match": "prefix", "allow": all}
                    ]}
                ]
            }],
            "transports": [{
                "type": "web",
                "endpoint": {"type": "tcp", "port": port, "interface": "127.0.0.1"},
                "paths": {"ws": {
                    "type": "websocket",
                    "serializers": ["json", "msgpack"],
                    "auth": {
                        "anonymous": {"type": "static", "role": "backend"},
                        "ticket": {
                            "type": "dynamic",
                            "authenticator": "com.example.authenticate"
                        }
                    }
                }}
            }]
        }]
    })
}

#[test]
fn dynamic_authenticator_and_authorizer_decide() {
    let port = free_port();
    let node = Node::start(&config(port), 2, &[port]);
    for serializer in ["json", "msgpack"] {
        let mut cmd = Command::new(python());
        cmd.arg(workspace_root().join("tests/clients/py/dynauth_checks.py"))
            .args(["--port", &port.to_string(), "--serializer", serializer]);
        let run = ClientRun::run(cmd);
        assert!(
            run.status.success(),
            "{serializer}: {}\n{:#?}",
            run.stderr,
            node.log_lines()
        );
        assert_eq!(
            run.checks(),
            [
                "accept-role",
                "accept-principal",
                "reject",
                "raise",
                "timeout",
                "no-such-role",
                "allow",
                "deny",
                "authorizer-raises",
                "authorizer-timeout",
                "cache",
                "disclose",
                "static-role-not-asked",
            ],
            "{serializer}"
        );
    }
}

#[test]
fn a_cookie_survives_a_reconnect_and_expires() {
    let port = free_port();
    let node = Node::start(&cookie_config(port, COOKIE_MAX_AGE), 2, &[port]);
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/clients/py/cookie_checks.py"))
        .args(["--port", &port.to_string()])
        .args(["--max-age", &COOKIE_MAX_AGE.to_string()]);
    let run = ClientRun::run(cmd);
    assert!(
        run.status.success(),
        "{}\n{:#?}",
        run.stderr,
        node.log_lines()
    );
    assert_eq!(
        run.checks(),
        [
            "cookie-set",
            "cookie-reconnect",
            "cookie-forged",
            "cookie-expired"
        ]
    );
}

/// Ports: component WebSocket, dynamic WebSocket, dynamic RawSocket.
fn every_method_config(ports: [u16; 3]) -> Value {
    let all = json!({"call": true, "register": true, "publish": true, "subscribe": true});
    let dynamic = json!({"type": "dynamic", "authenticator": "com.example.authenticate"});
    let auth = json!({
        "anonymous": dynamic, "ticket": dynamic, "wampcra": dynamic, "cryptosign": dynamic,
        "scram": dynamic
    });
    let endpoint = |port: u16| json!({"type": "tcp", "port": port, "interface": "127.0.0.1"});
    json!({
        "version": 2,
        "workers": [{
            "type": "router",
            // Many refusals from one address: the throttle is not what is tested here.
            "options": {"dynamic_auth_timeout": 3000, "auth": {"free_failures": 1000}},
            "realms": [{"name": "realm1", "roles": [
                {"name": "backend", "permissions": [{"uri": "", "match": "prefix", "allow": all}]},
                {"name": "user", "permissions": [{"uri": "com.example.", "match": "prefix", "allow": all}]},
                {"name": "guest", "permissions": [{"uri": "com.example.", "match": "prefix", "allow": all}]}
            ]}],
            "transports": [
                {"type": "web", "endpoint": endpoint(ports[0]), "paths": {"ws": {
                    "type": "websocket",
                    "serializers": ["json", "msgpack"],
                    "auth": {
                        "anonymous": {"type": "static", "role": "backend"},
                        "ticket": {"type": "static", "principals": {
                            "ghost": {"ticket": "boo", "role": "no-such-role"}
                        }}
                    }
                }}},
                {"type": "web", "endpoint": endpoint(ports[1]), "paths": {"ws": {
                    "type": "websocket", "serializers": ["json", "msgpack"], "auth": auth
                }}},
                {"type": "rawsocket", "endpoint": endpoint(ports[2]),
                 "serializers": ["json", "msgpack"], "auth": auth}
            ]
        }]
    })
}

#[test]
fn every_dynamic_method_on_websocket_and_rawsocket() {
    let ports = [free_port(), free_port(), free_port()];
    let node = Node::start(&every_method_config(ports), 2, &ports);
    let [component, ws, raw] = ports.map(|p| p.to_string());
    for (transport, serializer) in [
        ("websocket", "json"),
        ("websocket", "msgpack"),
        ("rawsocket", "json"),
        ("rawsocket", "msgpack"),
    ] {
        let mut cmd = Command::new(python());
        cmd.arg(workspace_root().join("tests/clients/py/dynauth2_checks.py"))
            .args(["--component-port", &component, "--ws-port", &ws])
            .args(["--raw-port", &raw, "--transport", transport])
            .args(["--serializer", serializer]);
        let run = ClientRun::run(cmd);
        assert!(
            run.status.success(),
            "{transport}/{serializer}: {}\n{:#?}",
            run.stderr,
            node.log_lines()
        );
        assert_eq!(
            run.checks(),
            [
                "anonymous",
                "ticket",
                "ticket-rejected",
                "wampcra",
                "wampcra-wrong-secret",
                "wampcra-salted",
                "wampcra-unknown",
                "cryptosign",
                "cryptosign-wrong-key",
                "scram",
                "scram-wrong-password",
                "channel-binding-refused",
                "no-such-role",
            ],
            "{transport}/{serializer}"
        );
    }
    for transport in ["websocket", "rawsocket"] {
        let mut cmd = node_js();
        cmd.arg("dynauth_checks.js")
            .args(["--component-port", &component, "--ws-port", &ws])
            .args(["--raw-port", &raw, "--transport", transport]);
        let run = ClientRun::run(cmd);
        assert!(
            run.status.success(),
            "Autobahn|JS {transport} failed after {:?}:\n{}",
            run.checks(),
            run.stderr
        );
        assert_eq!(
            run.checks(),
            ["anonymous", "ticket", "wampcra", "cryptosign"],
            "Autobahn|JS {transport}"
        );
    }
}

/// (session, worker) of every `session joined` log line.
fn session_workers(node: &Node) -> Vec<(u64, u64)> {
    node.log_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["fields"]["message"] == "session joined")
        .filter_map(|v| {
            let f = &v["fields"];
            Some((f["session"].as_u64()?, f["worker"].as_u64()?))
        })
        .collect()
}

#[test]
fn a_cookie_set_by_one_worker_is_accepted_by_the_other() {
    let port = free_port();
    let node = Node::start_workers(&cookie_config(port, 600), 2, 1, &[port]);
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/clients/py/cookie_checks.py"))
        .args(["--port", &port.to_string()])
        .args(["--max-age", "600", "--reconnects", "24"]);
    let run = ClientRun::run(cmd);
    assert!(
        run.status.success(),
        "{}\n{:#?}",
        run.stderr,
        node.log_lines()
    );
    assert_eq!(
        run.checks(),
        ["cookie-set", "cookie-reconnect", "cookie-reconnects"]
    );
    let ids =
        |key: &str| -> Vec<u64> { run.lines.iter().filter_map(|l| l[key].as_u64()).collect() };
    let ticket = ids("ticket_session");
    let cookie = ids("cookie_session");
    assert_eq!((ticket.len(), cookie.len()), (1, 25), "{:?}", run.lines);
    // The log lines may trail the client by a little: wait (bounded) until all are there.
    let mut places = session_workers(&node);
    for _ in 0..250 {
        if cookie
            .iter()
            .chain(&ticket)
            .all(|s| places.iter().any(|p| p.0 == *s))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        places = session_workers(&node);
    }
    let worker = |s: u64| {
        places
            .iter()
            .find(|p| p.0 == s)
            .map(|p| p.1)
            .unwrap_or_else(|| panic!("no `session joined` line for {s}: {places:?}"))
    };
    let bound_on = worker(ticket[0]);
    let elsewhere = cookie.iter().filter(|&&s| worker(s) != bound_on).count();
    assert!(
        elsewhere > 0,
        "every cookie session landed on worker {bound_on}: {places:?}"
    );
    // Autobahn|JS: a cookie bound by a ticket session lets a later connection in by cookie.
    let mut cmd = node_js();
    cmd.arg("cookie_checks.js")
        .args(["--port", &port.to_string()]);
    let run = ClientRun::run(cmd);
    assert!(
        run.status.success(),
        "Autobahn|JS failed after {:?}:\n{}",
        run.checks(),
        run.stderr
    );
    assert_eq!(
        run.checks(),
        ["js-cookie-bound", "js-cookie-reconnect", "js-no-cookie"]
    );
}
