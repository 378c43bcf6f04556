//! Authentication against the real `switchyard` binary with Autobahn|Python clients.
//!
//! The node serves one WebSocket and one RawSocket transport whose `auth` sections hold
//! static principals of every method (ticket — one read from an environment variable —,
//! WAMP-CRA plain and salted, cryptosign, WAMP-SCRAM with Argon2id). The client program
//! (`tests/clients/py/auth_checks.py`) joins with the right secrets (checking authid, role,
//! method and provider in WELCOME, and SCRAM's server signature), is refused with a wrong
//! secret, an unknown authid and a malformed AUTHENTICATE, and checks that the restricted
//! role is denied exactly what its permissions deny (exact, prefix and wildcard URIs) and
//! that `wamp.session.get` carries the authentication facts.
//!
//! Autobahn|JS (`tests/clients/js/auth_checks.js`, WebSocket/JSON) joins with ticket, WAMP-CRA
//! (plain and salted) and cryptosign and is refused with wrong secrets and unknown authids.
//!
//! What it does not cover: SCRAM from Autobahn|JS (it has none), the failure throttle and the
//! challenge deadline end to end (unit tests in `core/src/router/auth/tests.rs` do), TLS
//! channel binding (no transport offers one; the refusal is in `server_dynauth.rs`).

use std::process::Command;

use serde_json::{json, Value};
use switchyard_tests::{free_port, node_js, python, workspace_root, ClientRun, Node};

fn config(ws: u16, raw: u16) -> Value {
    let deny = json!({"call": false, "register": false, "publish": false, "subscribe": false});
    let auth = json!({
        "ticket": {"type": "static", "principals": {
            "joe": {"ticket": "joe-ticket", "role": "frontend"},
            "envjoe": {"ticket": "${HOME}", "role": "frontend"}
        }},
        "wampcra": {"type": "static", "users": {
            "peter": {"secret": "peter-secret", "role": "backend"},
            "salty": {"secret": "ll/SEBU0Ll+qbz4NzApX3P+POQFw7OePRRnW+n0AswE=", "role": "backend",
                      "salt": "pepper", "iterations": 100, "keylen": 32}
        }},
        "cryptosign": {"type": "static", "principals": {
            "alice": {"role": "backend", "authorized_keys": [
                "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
            ]}
        }},
        "scram": {"type": "static", "principals": {
            "carol": {"role": "backend", "kdf": "argon2id-13", "iterations": 2, "memory": 64,
                      "salt": "00112233445566778899aabbccddeeff",
                      "stored-key": "ef61f454692336046048ca8d3655d387e40f55beee6e989f294ab73a1fbc375e",
                      "server-key": "980758008f9698c2785ea424161d4b235e5ecb6b0e294379f9c5d4e90a76f613"}
        }}
    });
    json!({
        "version": 2,
        "workers": [{
            "type": "router",
            // Many refusals come from one address here: the throttle is tested in core.
            "options": {"auth": {"free_failures": 1000}},
            "realms": [{"name": "realm1", "roles": [
                {"name": "frontend", "permissions": [
                    {"uri": "com.example.", "match": "prefix",
                     "allow": {"call": true, "register": false, "publish": false, "subscribe": true},
                     "disclose": {"caller": true, "publisher": true}},
                    {"uri": "com.example.admin", "match": "exact", "allow": deny},
                    {"uri": "com.example.chat", "match": "exact",
                     "allow": {"call": false, "register": false, "publish": true, "subscribe": true}},
                    {"uri": "app..status", "match": "wildcard",
                     "allow": {"call": false, "register": false, "publish": false, "subscribe": true}}
                ]},
                {"name": "backend", "permissions": [
                    {"uri": "", "match": "prefix",
                     "allow": {"call": true, "register": true, "publish": true, "subscribe": true}}
                ]}
            ]}],
            "transports": [
                {"type": "websocket", "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": ws},
                 "auth": auth.clone()},
                {"type": "rawsocket", "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": raw},
                 "auth": auth}
            ]
        }]
    })
}

#[test]
fn autobahn_python_authenticates_with_every_method() {
    let (ws, raw) = (free_port(), free_port());
    let _node = Node::start(&config(ws, raw), 2, &[ws, raw]);
    for (transport, serializer) in [("websocket", "json"), ("rawsocket", "msgpack")] {
        let mut cmd = Command::new(python());
        cmd.arg(workspace_root().join("tests/clients/py/auth_checks.py"))
            .args(["--transport", transport, "--serializer", serializer])
            .args(["--ws-port", &ws.to_string(), "--raw-port", &raw.to_string()]);
        let run = ClientRun::run(cmd);
        assert!(
            run.status.success(),
            "{transport}/{serializer} failed after {:?}:\n{}",
            run.checks(),
            run.stderr
        );
        assert_eq!(
            run.checks(),
            [
                "ticket",
                "wampcra",
                "cryptosign",
                "scram",
                "permissions",
                "meta"
            ],
            "{transport}/{serializer}"
        );
    }
    let mut cmd = node_js();
    cmd.arg("auth_checks.js")
        .args(["--ws-port", &ws.to_string()]);
    let run = ClientRun::run(cmd);
    assert!(
        run.status.success(),
        "Autobahn|JS failed after {:?}:\n{}",
        run.checks(),
        run.stderr
    );
    assert_eq!(run.checks(), ["ticket", "wampcra", "cryptosign"]);
}
