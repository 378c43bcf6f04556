//! The node configuration checker against whole documents: the embedded default, a
//! realistic Crossbar configuration that must run unchanged, and configurations whose
//! unsupported keys and invalid values must each be named by path. It does not start a
//! server; `cli_*.rs` runs the binary.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_core::codec::Serializer;
use switchyard_core::uri::MatchPolicy;
use switchyard_io::config::{
    check_str, check_value, default_config, Endpoint, TlsConfig, TransportKind, UnixEndpoint,
    WebSocketRoutes,
};

/// Checks `config` and compares every problem line (`path: reason`) with `expect`.
#[track_caller]
fn check(config: Value, expect: &[&str]) {
    let checked = check_value(&config);
    let lines: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
    assert_eq!(lines, expect, "config: {config:#}");
    let has_errors = checked.problems.iter().any(|p| p.is_error());
    assert_eq!(checked.config.is_some(), !has_errors);
}

/// A valid node with one router worker whose transport list is `transports`.
fn with_transports(transports: Value) -> Value {
    json!({
        "version": 2,
        "workers": [{
            "type": "router",
            "realms": [{"name": "realm1", "roles": []}],
            "transports": transports
        }]
    })
}

/// A valid node with one router worker whose realm list is `realms`.
fn with_realms(realms: Value) -> Value {
    json!({
        "version": 2,
        "workers": [{"type": "router", "realms": realms, "transports": []}]
    })
}

fn tcp(port: u16) -> Value {
    json!({"type": "tcp", "interface": "127.0.0.1", "port": port})
}

#[test]
fn the_default_serves_realm1_on_8080() {
    let config = default_config();
    assert_eq!(config.workers, 1);
    assert_eq!(config.cores, None);
    let [realm] = &config.router.realms[..] else {
        panic!("one realm expected: {:?}", config.router.realms)
    };
    assert_eq!(realm.name, "realm1");
    assert_eq!(realm.roles.len(), 1);
    assert_eq!(realm.roles[0].name, "anonymous");
    let p = &realm.roles[0].permissions[0];
    assert_eq!((p.uri.as_str(), p.policy), ("", MatchPolicy::Prefix));
    assert!(p.call && p.register && p.publish && p.subscribe);

    let [t] = &config.transports[..] else {
        panic!("one transport expected")
    };
    assert_eq!(t.kind, TransportKind::Universal);
    let Endpoint::Tcp(tcp) = &t.endpoint else {
        panic!("tcp expected")
    };
    assert_eq!(tcp.addr, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert!(t.rawsocket.is_some());
    let WebSocketRoutes::Paths(paths) = &t.websocket else {
        panic!("paths expected")
    };
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0].0, "/ws");
    assert_eq!(
        paths[0].1.auth.anonymous.as_ref().map(|a| a.role.as_str()),
        Some("anonymous")
    );
}

#[test]
fn a_two_realm_crossbar_config_runs_unchanged() {
    let text = include_str!("fixtures/crossbar-two-realms.json");
    let checked = check_str(text);
    let lines: Vec<String> = checked.problems.iter().map(ToString::to_string).collect();
    assert_eq!(lines, ["$schema: ignored: a schema reference for editors"]);
    let config = checked.config.expect("the fixture is accepted");

    let names: Vec<&str> = config
        .router
        .realms
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["realm1", "realm2"]);
    let realm1 = &config.router.realms[0];
    let roles: Vec<&str> = realm1.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(roles, ["anonymous", "backend"]);
    let perms: Vec<(&str, MatchPolicy, bool, bool, bool)> = realm1.roles[0]
        .permissions
        .iter()
        .map(|p| {
            (
                p.uri.as_str(),
                p.policy,
                p.call,
                p.subscribe,
                p.disclose_caller,
            )
        })
        .collect();
    assert_eq!(
        perms,
        [
            ("com.example.", MatchPolicy::Prefix, true, true, true),
            (
                "com.example..status",
                MatchPolicy::Wildcard,
                false,
                true,
                false
            ),
            ("wamp.", MatchPolicy::Prefix, true, true, false),
        ]
    );
    // Crossbar's shorthand: `org.sample.*` without `match` is a prefix permission.
    let shorthand = &config.router.realms[1].roles[0].permissions[1];
    assert_eq!(
        (
            shorthand.uri.as_str(),
            shorthand.policy,
            shorthand.publish,
            shorthand.call
        ),
        ("org.sample.", MatchPolicy::Prefix, true, false)
    );

    let [ws, raw] = &config.transports[..] else {
        panic!("two transports expected")
    };
    assert_eq!(ws.kind, TransportKind::WebSocket);
    let WebSocketRoutes::Any(service) = &ws.websocket else {
        panic!("a websocket service expected")
    };
    assert_eq!(service.conn.max_message_size, 1 << 20);
    assert_eq!(service.opening_timeout, Duration::from_millis(2500));
    assert_eq!(service.conn.ping_interval, Some(Duration::from_secs(10)));
    assert_eq!(service.conn.ping_timeout, Duration::from_secs(5));
    let deflate = service.deflate.as_ref().expect("compression configured");
    assert_eq!((deflate.server_max_window_bits, deflate.mem_level), (13, 5));
    assert_eq!(raw.kind, TransportKind::RawSocket);
    let rs = raw.rawsocket.as_ref().expect("rawsocket service");
    assert_eq!(rs.serializers, [Serializer::MsgPack, Serializer::Json]);
    assert_eq!(rs.max_message_size, 1 << 20);
    assert_eq!(
        rs.auth.anonymous.as_ref().map(|a| a.role.as_str()),
        Some("backend")
    );
}

#[test]
fn unsupported_keys_are_each_named_by_path() {
    let config = json!({
        "version": 2,
        "controller": {"id": "node1", "options": {"title": "x"}},
        "workers": [
            {
                "type": "router",
                "options": {"cpu_affinity": [0]},
                "realms": [{
                    "name": "realm1",
                    "roles": [{"name": "r", "authorizer": "com.example.authorize"}],
                    "store": {"type": "memory", "call-queue": []}
                }],
                "transports": [
                    {
                        "type": "websocket",
                        "endpoint": {
                            "type": "tcp", "port": 8080,
                            "tls": {"key": "k.pem", "certificate": "c.pem", "dhparam": "dh.pem"}
                        },
                        "auth": {"anonymous": {"role": "r"}, "cookie": {}},
                        "options": {"allowed_origins": ["https://example.com"], "auto_fragment_size": 65536}
                    },
                    {
                        "type": "web",
                        "endpoint": {"type": "tcp", "port": 8081},
                        "paths": {
                            "/": {"type": "static", "directory": "../web"},
                            "ws": {"type": "websocket"}
                        }
                    },
                    {"type": "mqtt", "endpoint": {"type": "tcp", "port": 1883}}
                ],
                "components": [{"type": "class", "classname": "x.Y"}]
            },
            {"type": "container"}
        ]
    });
    check(
        config,
        &[
            "controller.id: ignored: the node id names the node in Crossbar's management API",
            "controller.options: ignored: the controller section is not used by Switchyard",
            "workers[0].options.cpu_affinity: not supported by Switchyard",
            "workers[0].realms[0].store.call-queue: call queues are not supported",
            "workers[0].transports[0].endpoint.tls.dhparam: rustls offers no finite-field DHE cipher suites (only ECDHE), so DH parameters cannot be used; remove the key",
            "workers[0].transports[0].options.allowed_origins: origin checking is not yet supported (only [\"*\"])",
            "workers[0].transports[0].options.auto_fragment_size: ignored: outgoing messages are sent unfragmented (invisible to WAMP)",
            "workers[0].transports[1].paths[\"/\"].type: web service type `static` is not yet supported",
            "workers[0].transports[2].type: transport type `mqtt` is not supported",
            "workers[0].components: router components (application code run inside the router) are not supported",
            "workers[1].type: worker type `container` is not supported",
        ],
    );
}

#[test]
fn ignored_keys_alone_do_not_refuse() {
    let config = with_transports(json!([{
        "type": "websocket",
        "endpoint": tcp(8080),
        "debug": true,
        "serializers": ["cbor", "msgpack", "json"],
        "options": {"enable_webstatus": false, "tcp_nodelay": true}
    }]));
    check(
        config,
        &[
            "workers[0].transports[0].serializers[0]: ignored: serializer `cbor` is not supported and not offered",
            "workers[0].transports[0].options.tcp_nodelay: ignored: TCP_NODELAY is always set",
            "workers[0].transports[0].debug: ignored: per-transport debug logging; use --loglevel",
        ],
    );
}

#[test]
fn invalid_values_name_the_path_and_the_reason() {
    let t = "workers[0].transports[0]";
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({"type": "rawsocket", "endpoint": {"type": "tcp", "port": 70000}}),
            vec![format!("{t}.endpoint.port: 70000 is out of range (must be from 1 to 65535)")],
        ),
        (
            json!({"type": "rawsocket", "endpoint": {"type": "tcp", "port": "8080"}}),
            vec![format!("{t}.endpoint.port: must be an integer")],
        ),
        (
            json!({"type": "rawsocket", "endpoint": {"type": "tcp"}}),
            vec![format!("{t}.endpoint.port: missing mandatory key")],
        ),
        (
            json!({"type": "rawsocket", "endpoint": {"type": "tcp", "port": 1, "interface": "example.com"}}),
            vec![format!(
                "{t}.endpoint.interface: `example.com` is not an IP address (host names are not resolved)"
            )],
        ),
        (
            json!({"type": "rawsocket", "endpoint": {"type": "udp", "port": 1}}),
            vec![format!("{t}.endpoint.type: unknown endpoint type `udp` (tcp or unix)")],
        ),
        (
            json!({"type": "websocket", "endpoint": tcp(1), "serializers": ["xml"]}),
            vec![
                format!("{t}.serializers[0]: unknown serializer `xml`"),
                format!("{t}.serializers: no supported serializer listed (json, msgpack)"),
            ],
        ),
        (
            json!({"type": "websocket", "endpoint": tcp(1), "options": {"max_message_size": 0}}),
            vec![format!(
                "{t}.options.max_message_size: 0 is out of range (must be from 1 to 67108864)"
            )],
        ),
        (
            json!({"type": "websocket", "endpoint": tcp(1),
                   "options": {"compression": {"deflate": {"max_window_bits": 8}}}}),
            vec![format!(
                "{t}.options.compression.deflate.max_window_bits: 8 is out of range (must be from 9 to 15)"
            )],
        ),
        (
            json!({"type": "websocket", "endpoint": tcp(1), "auth": {"password": {}}}),
            vec![format!("{t}.auth.password: unknown authentication method `password`")],
        ),
        (
            json!({"type": "carrier-pigeon", "endpoint": tcp(1)}),
            vec![format!("{t}.type: unknown transport type `carrier-pigeon`")],
        ),
        (
            json!({"type": "universal", "endpoint": tcp(1)}),
            vec![format!("{t}: a universal transport needs `rawsocket`, `websocket` or `web`")],
        ),
    ];
    for (transport, expect) in cases {
        let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
        check(with_transports(json!([transport])), &expect);
    }
}

#[test]
fn invalid_realms_and_permissions() {
    let r = "workers[0].realms";
    check(
        with_realms(json!([{"name": "realm1"}, {"name": "realm1"}])),
        &[&format!("{r}[1]: duplicate realm `realm1`")],
    );
    check(
        with_realms(json!([{"name": "bad realm"}])),
        &[&format!(
            "{r}[0].name: invalid realm name: URI contains whitespace ' ' at byte 3"
        )],
    );
    check(
        with_realms(json!([{"name": "realm1", "roles": [
            {"name": "a", "permissions": [{"uri": "com..x", "match": "prefix"}]},
            {"name": "a"},
            {"name": "b", "permissions": [{"uri": "x", "match": "regex"}]},
            {"name": "c", "permissions": [{"uri": "x", "allow": {"call": "yes", "admin": true}}]}
        ]}])),
        &[
            &format!("{r}[0].roles[0].permissions[0].uri: invalid prefix pattern: URI component 1 is empty"),
            &format!("{r}[0].roles[1]: duplicate role `a`"),
            &format!("{r}[0].roles[2].permissions[0].match: unknown match policy (expected \"exact\", \"prefix\" or \"wildcard\")"),
            &format!("{r}[0].roles[3].permissions[0].allow.call: must be true or false"),
            &format!("{r}[0].roles[3].permissions[0].allow.admin: not supported by Switchyard"),
        ],
    );
}

#[test]
fn document_level_problems() {
    check(json!([]), &["$: must be an object"]);
    check(
        json!({"workers": []}),
        &[
            "version: missing: version 1 configurations are not supported (`crossbar upgrade` converts them)",
            "workers: no worker of type `router`: there is nothing to serve",
        ],
    );
    check(
        json!({"version": 1, "workers": [{"type": "router"}]}),
        &["version: only version 2 is supported (`crossbar upgrade` converts older files)"],
    );
    let checked = check_str("{\"version\": 2,");
    assert!(checked.config.is_none());
    assert!(checked.problems[0]
        .to_string()
        .starts_with("$: not valid JSON: "));
}

#[test]
fn duplicate_endpoints_and_node_options() {
    let config = json!({
        "version": 2,
        "workers": [{
            "type": "router",
            "options": {"cores": 2, "workers": 3},
            "realms": [],
            "transports": [
                {"type": "rawsocket", "endpoint": tcp(9000)},
                {"type": "websocket", "endpoint": tcp(9000)}
            ]
        }]
    });
    check(
        config.clone(),
        &[
            "workers[0].transports[1]: duplicate listening endpoint (also workers[0].transports[0])",
        ],
    );
    let mut ok = config;
    ok["workers"][0]["transports"][1]["endpoint"]["port"] = json!(9001);
    let checked = check_value(&ok);
    let node = checked.config.expect("accepted");
    assert_eq!((node.cores, node.workers), (Some(2), 3));
    // The supervision limits: defaults when absent, read when given, bounded.
    assert_eq!(
        (node.rejoin_timeout, node.link_backlog),
        (
            switchyard_io::config::DEFAULT_REJOIN_TIMEOUT,
            switchyard_io::config::DEFAULT_LINK_BACKLOG
        )
    );
    let mut limits = ok.clone();
    limits["workers"][0]["options"]["rejoin_timeout"] = json!(2500);
    limits["workers"][0]["options"]["link_backlog"] = json!(1_048_576);
    let node = check_value(&limits).config.expect("accepted");
    assert_eq!(
        (node.rejoin_timeout, node.link_backlog),
        (Duration::from_millis(2500), 1 << 20)
    );
    limits["workers"][0]["options"]["rejoin_timeout"] = json!(50);
    limits["workers"][0]["options"]["link_backlog"] = json!(1000);
    check(
        limits,
        &[
            "workers[0].options.rejoin_timeout: 50 is out of range (must be from 100 to 3600000)",
            "workers[0].options.link_backlog: 1000 is out of range (must be from 65536 to 1073741824)",
        ],
    );
    ok["workers"][0]["options"]["workers"] = json!(257);
    check(
        ok,
        &["workers[0].options.workers: 257 is out of range (must be from 1 to 256)"],
    );
}

#[test]
fn unix_endpoints_and_testee() {
    let config = with_transports(json!([
        {"type": "rawsocket", "endpoint": {"type": "unix", "path": "/tmp/sy.sock"}},
        {"type": "websocket.testee", "endpoint": tcp(9001), "options": {"max_message_size": 16777216}}
    ]));
    check(config.clone(), &[]);
    let node = check_value(&config).config.expect("accepted");
    assert_eq!(
        node.transports[0].endpoint,
        Endpoint::Unix(UnixEndpoint {
            path: "/tmp/sy.sock".into(),
            backlog: 1024
        })
    );
    // TLS does not go over Unix sockets (Crossbar has no such key either).
    let tls_unix = with_transports(json!([
        {"type": "rawsocket", "endpoint": {"type": "unix", "path": "s", "tls": {}}}
    ]));
    check(
        tls_unix,
        &["workers[0].transports[0].endpoint.tls: not supported by Switchyard"],
    );
    let testee_only = with_transports(json!([config["workers"][0]["transports"][1].clone()]));
    let checked = check_value(&testee_only);
    assert_eq!(checked.problems, []);
    let node = checked.config.expect("accepted");
    let WebSocketRoutes::Any(testee) = &node.transports[0].websocket else {
        panic!("testee service expected")
    };
    assert!(testee.testee);
    assert_eq!(testee.conn.max_message_size, 16 << 20);
}

/// Switchyard's own `max_outbound_bytes` (the slow-consumer bound per connection) in the
/// WebSocket and RawSocket options: 16 MiB when absent, read when given, and an
/// out-of-range value named by its path.
#[test]
fn max_outbound_bytes_is_read_and_bounded() {
    let t = "workers[0].transports[0]";
    let universal = |ws: Value, raw: Value| {
        with_transports(json!([{
            "type": "universal",
            "endpoint": tcp(1),
            "rawsocket": {"options": raw},
            "websocket": {"ws": {"type": "websocket", "options": ws}}
        }]))
    };
    let limits = |config: &Value| {
        let checked = check_value(config);
        let node = checked.config.expect("a valid configuration");
        let transport = &node.transports[0];
        let WebSocketRoutes::Paths(paths) = &transport.websocket else {
            panic!("websocket paths expected")
        };
        let raw = transport.rawsocket.as_ref().expect("rawsocket service");
        (paths[0].1.max_outbound_bytes, raw.max_outbound_bytes)
    };
    assert_eq!(
        limits(&universal(json!({}), json!({}))),
        (16 << 20, 16 << 20)
    );
    let set = universal(
        json!({"max_outbound_bytes": 1 << 20}),
        json!({"max_outbound_bytes": 65536}),
    );
    assert_eq!(limits(&set), (1 << 20, 65536));
    check(
        universal(
            json!({"max_outbound_bytes": 1000}),
            json!({"max_outbound_bytes": 2_000_000_000u64}),
        ),
        &[
            &format!("{t}.rawsocket.options.max_outbound_bytes: 2000000000 is out of range (must be from 65536 to 1073741824)"),
            &format!("{t}.websocket.ws.options.max_outbound_bytes: 1000 is out of range (must be from 65536 to 1073741824)"),
        ],
    );
}

#[test]
fn auth_sections_in_crossbars_shapes() {
    let t = "workers[0].transports[0].auth";
    let auth = |auth: Value| {
        with_transports(json!([{"type": "websocket", "endpoint": tcp(1), "auth": auth}]))
    };
    // Every static method, a secret from the environment ($HOME is always set), salted
    // WAMP-CRA defaults, and the services' `auth` numbered in the node's table.
    let good = auth(json!({
        "ticket": {"type": "static", "principals": {"joe": {"ticket": "${HOME}", "role": "r", "realm": "realm1"}}},
        "wampcra": {"type": "static", "users": {"p": {"secret": "s", "role": "r", "salt": "x"}}},
        "cryptosign": {"type": "static", "principals": {"a": {"role": "r", "authorized_keys": ["00".repeat(32)]}}},
        "scram": {"type": "static", "principals": {"c": {"role": "r", "kdf": "pbkdf2", "iterations": 10,
            "salt": "0011", "stored-key": "11".repeat(32), "server-key": "22".repeat(32)}}}
    }));
    check(good.clone(), &[]);
    let config = check_value(&good).config.unwrap();
    assert_eq!(config.auth.len(), 1);
    let a = &config.auth[0];
    let joe = &a.ticket.as_ref().unwrap()["joe"];
    assert_eq!(joe.secret.ticket, std::env::var("HOME").unwrap());
    assert_eq!(
        (joe.role.as_str(), joe.realm.as_deref()),
        ("r", Some("realm1"))
    );
    let salt = a.wampcra.as_ref().unwrap()["p"]
        .secret
        .salt
        .clone()
        .unwrap();
    assert_eq!((salt.iterations, salt.keylen), (1000, 32));
    assert!(a.anonymous.is_none());
    // Each broken rule is named by path; no value of a secret appears.
    check(
        auth(json!({
            "ticket": {"type": "static", "principals": {"joe": {"ticket": "${SWITCHYARD_SURELY_UNSET_VARIABLE}", "role": "r"}}},
            "cryptosign": {"type": "static", "principals": {"a": {"role": "r", "authorized_keys": ["abc"]}}},
            "scram": {"type": "static", "principals": {"c": {"role": "r", "kdf": "argon2id13", "iterations": 1,
                "salt": "00", "stored-key": "11", "server-key": "22".repeat(32)}}},
            "tls": {"type": "static", "principals": {"t": {"role": "r", "certificate-sha1": "AB:CD"}}}
        })),
        &[
            &format!("{t}.cryptosign.principals.a.authorized_keys[0]: expected 32 bytes as 64 hex digits"),
            &format!("{t}.scram.principals.c: kdf argon2id13 needs `memory` (KiB)"),
            &format!("{t}.scram.principals.c.stored-key: expected 32 bytes as 64 hex digits"),
            &format!("{t}.ticket.principals.joe.ticket: environment variable `SWITCHYARD_SURELY_UNSET_VARIABLE` is not set"),
            &format!("{t}.tls.principals.t.certificate-sha1: expected 20 bytes as 40 hex digits"),
        ],
    );
    // Dynamic SCRAM is read, under either of its names.
    for name in ["scram", "wamp-scram"] {
        let dynamic = auth(json!({name: {"type": "dynamic", "authenticator": "com.example.auth"}}));
        check(dynamic.clone(), &[]);
        let a = &check_value(&dynamic).config.unwrap().auth[0];
        assert_eq!(
            a.scram_dynamic.as_ref().unwrap().authenticator,
            "com.example.auth"
        );
    }
}

#[test]
fn tls_and_dynamic_wampcra_cryptosign_tls_are_read() {
    let t = "workers[0].transports[0].auth";
    let auth = |auth: Value| {
        with_transports(json!([{"type": "websocket", "endpoint": tcp(1), "auth": auth}]))
    };
    let fingerprint = ["0a"; 20].join(":");
    let good = auth(json!({
        "tls": {"type": "static", "principals": {"alice": {"role": "r", "certificate-sha1": fingerprint}}},
        "wampcra": {"type": "dynamic", "authenticator": "com.example.cra"},
        "cryptosign": {"type": "dynamic", "authenticator": "com.example.cs", "authenticator-realm": "realm1"}
    }));
    check(good.clone(), &[]);
    let a = &check_value(&good).config.unwrap().auth[0];
    assert_eq!(a.tls.as_ref().unwrap()["alice"].secret.sha1, [10; 20]);
    assert_eq!(
        a.wampcra_dynamic.as_ref().unwrap().authenticator,
        "com.example.cra"
    );
    let cs = a.cryptosign_dynamic.as_ref().unwrap();
    assert_eq!(cs.authenticator_realm.as_deref(), Some("realm1"));
    let dynamic = auth(json!({"tls": {"type": "dynamic", "authenticator": "com.example.tls"}}));
    check(dynamic.clone(), &[]);
    let a = &check_value(&dynamic).config.unwrap().auth[0];
    assert_eq!(
        a.tls_dynamic.as_ref().unwrap().authenticator,
        "com.example.tls"
    );
    // The fingerprint without colons works too; a principal needs one.
    check(
        auth(json!({"tls": {"type": "static", "principals": {
            "a": {"role": "r", "certificate-sha1": "0A".repeat(20)},
            "b": {"role": "r"}
        }}})),
        &[&format!(
            "{t}.tls.principals.b.certificate-sha1: missing mandatory key"
        )],
    );
}

#[test]
fn dynamic_authentication_and_authorization_are_read() {
    let config = json!({
        "version": 2,
        "workers": [{
            "type": "router",
            "options": {"dynamic_auth_timeout": 2500},
            "realms": [{"name": "realm1", "roles": [
                {"name": "user", "authorizer": "com.example.authorize"}
            ]}],
            "transports": [{
                "type": "websocket",
                "endpoint": tcp(8080),
                "auth": {
                    "anonymous": {"type": "dynamic", "authenticator": "com.example.anon"},
                    "ticket": {
                        "type": "dynamic",
                        "authenticator": "com.example.authenticate",
                        "authenticator-realm": "realm1",
                        "default-role": "user"
                    }
                }
            }]
        }]
    });
    check(config.clone(), &[]);
    let node = check_value(&config).config.expect("valid");
    assert_eq!(node.router.limits.router_call_timeout_ms, 2500);
    let role = &node.router.realms[0].roles[0];
    assert_eq!(role.authorizer.as_deref(), Some("com.example.authorize"));
    let WebSocketRoutes::Any(service) = &node.transports[0].websocket else {
        panic!("a websocket service");
    };
    let ticket = service
        .auth
        .ticket_dynamic
        .as_ref()
        .expect("dynamic ticket");
    assert_eq!(ticket.authenticator, "com.example.authenticate");
    assert_eq!(ticket.authenticator_realm.as_deref(), Some("realm1"));
    assert_eq!(ticket.default_role.as_deref(), Some("user"));
    let anon = service
        .auth
        .anonymous_dynamic
        .as_ref()
        .expect("dynamic anonymous");
    assert_eq!(anon.authenticator, "com.example.anon");
    assert_eq!(service.auth.anonymous, None);
}

#[test]
fn dynamic_configuration_errors_name_the_path() {
    let config = json!({
        "version": 2,
        "workers": [{
            "type": "router",
            "realms": [{"name": "realm1", "roles": [
                {"name": "user", "authorizer": "not a uri",
                 "permissions": [{"uri": "a", "allow": {"call": true}}]}
            ]}],
            "transports": [{
                "type": "websocket",
                "endpoint": tcp(8080),
                "auth": {"ticket": {"type": "dynamic"}}
            }]
        }]
    });
    check(
        config,
        &[
            "workers[0].realms[0].roles[0].authorizer: `not a uri` is not a valid procedure URI",
            "workers[0].realms[0].roles[0].authorizer: a role has either `permissions` or an `authorizer`, not both",
            "workers[0].transports[0].auth.ticket.authenticator: missing mandatory key",
        ],
    );
}

#[test]
fn cookie_tracking_and_cookie_authentication_are_read() {
    let config = with_transports(json!([{
        "type": "websocket",
        "endpoint": tcp(8080),
        "cookie": {"name": "mycookie", "length": 10, "max_age": 600, "store": {"type": "memory"}},
        "auth": {"cookie": {}, "anonymous": {"type": "static", "role": "r"}}
    }]));
    check(
        config.clone(),
        &["workers[0].transports[0].cookie.store: ignored: cookies are signed tokens bound by the router; no store is kept"],
    );
    let node = check_value(&config).config.expect("valid");
    let WebSocketRoutes::Any(service) = &node.transports[0].websocket else {
        panic!("a websocket service");
    };
    let cookie = service.cookie.as_ref().expect("cookie tracking");
    assert_eq!(
        (cookie.name.as_str(), cookie.length, cookie.max_age),
        ("mycookie", 10, 600)
    );
    assert!(service.auth.cookie);
    let bad = with_transports(json!([{
        "type": "websocket",
        "endpoint": tcp(8080),
        "cookie": {"name": "Bad-Name", "length": 3, "max_age": 0}
    }]));
    check(
        bad,
        &[
            "workers[0].transports[0].cookie.name: invalid cookie name `Bad-Name` (^[a-z][a-z0-9_]+$)",
            "workers[0].transports[0].cookie.length: 3 is out of range (must be from 6 to 64)",
            "workers[0].transports[0].cookie.max_age: 0 is out of range (must be from 1 to 311040000)",
        ],
    );
}

#[test]
fn tls_and_unix_endpoints_and_rawsocket_keepalive() {
    // The README's example.
    let config = with_transports(json!([
        {"type": "websocket",
         "endpoint": {"type": "tcp", "port": 8443,
                      "tls": {"key": "server.key", "certificate": "server.crt",
                              "chain_certificates": ["intermediate.crt"],
                              "ca_certificates": ["client-ca.crt"]}}},
        {"type": "rawsocket",
         "endpoint": {"type": "unix", "path": "router.sock"},
         "options": {"auto_ping_interval": 30000, "auto_ping_timeout": 10000}}
    ]));
    check(config.clone(), &[]);
    let mut node = check_value(&config).config.expect("accepted");
    node.resolve_paths(std::path::Path::new("/node"));
    let Endpoint::Tcp(tcp) = &node.transports[0].endpoint else {
        panic!("tcp expected")
    };
    assert_eq!(
        tcp.tls,
        Some(TlsConfig {
            key: "/node/server.key".into(),
            certificate: "/node/server.crt".into(),
            chain_certificates: vec!["/node/intermediate.crt".into()],
            ca_certificates: vec!["/node/client-ca.crt".into()],
        })
    );
    assert_eq!(
        node.transports[1].endpoint,
        Endpoint::Unix(UnixEndpoint {
            path: "/node/router.sock".into(),
            backlog: 1024
        })
    );
    let raw = node.transports[1].rawsocket.as_ref().expect("rawsocket");
    assert_eq!(raw.ping_interval, Some(Duration::from_secs(30)));
    assert_eq!(raw.ping_timeout, Duration::from_secs(10));

    // Keys rustls cannot honour are refused by path; absolute paths stay as they are.
    let refused = with_transports(json!([
        {"type": "rawsocket",
         "endpoint": {"type": "tcp", "port": 8443,
                      "tls": {"key": "/abs/k.pem", "certificate": "c.pem",
                              "ciphers": "ECDHE-RSA-AES128-GCM-SHA256", "dhparam": "dh.pem"}}}
    ]));
    check(
        refused,
        &[
            "workers[0].transports[0].endpoint.tls.ciphers: OpenSSL cipher lists are not supported (rustls offers its own safe suites); remove the key",
            "workers[0].transports[0].endpoint.tls.dhparam: rustls offers no finite-field DHE cipher suites (only ECDHE), so DH parameters cannot be used; remove the key",
        ],
    );
    let absolute = with_transports(json!([
        {"type": "rawsocket",
         "endpoint": {"type": "tcp", "port": 8443,
                      "tls": {"key": "/abs/k.pem", "certificate": "c.pem"}}}
    ]));
    let mut node = check_value(&absolute).config.expect("accepted");
    node.resolve_paths(std::path::Path::new("/node"));
    let Endpoint::Tcp(tcp) = &node.transports[0].endpoint else {
        panic!("tcp expected")
    };
    let tls = tcp.tls.as_ref().expect("tls");
    assert_eq!(
        (tls.key.to_str(), tls.certificate.to_str()),
        (Some("/abs/k.pem"), Some("/node/c.pem"))
    );
}
