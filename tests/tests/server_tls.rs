//! TLS, Unix-socket endpoints, RawSocket keep-alive and the shutdown of connections
//! without a session, against the real `switchyard` binary.
//!
//! The certificates are made at test time with `rcgen` (a test-only CA, a server
//! certificate for 127.0.0.1, client certificates from that CA and from another one) and
//! written into the node directory, which the configuration names them relative to.
//! Autobahn|Python runs over `wss://` and TLS RawSocket (JSON and MessagePack), over
//! RawSocket and WebSocket on Unix sockets, and against an endpoint that requires a client
//! certificate (with the right one, none, and one from another CA); Autobahn|JS runs over
//! `wss://` trusting the CA through `NODE_EXTRA_CA_CERTS`. A raw client checks WebSocket
//! over a Unix socket byte by byte, RawSocket keep-alive (a silent peer is dropped, an
//! answering one kept), and that SIGTERM closes connections that never joined.
//!
//! What it does not cover: TLS session resumption, certificate chains longer than one CA,
//! the `tls` authentication method (`server_tlsauth.rs` does). Nothing here asserts timing: read timeouts are upper
//! bounds so that a bug fails instead of hanging.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::{json, Value};
use switchyard_tests::{binary, free_port, node_js, python, workspace_root, ClientRun, Node};

/// Test-only PEM files: never used outside these tests.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    stranger_cert: String,
    stranger_key: String,
}

fn make_ca(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params.self_signed(&key).unwrap(), key)
}

fn leaf(
    names: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
    issuer: &(Certificate, KeyPair),
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &issuer.0, &issuer.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let ca = make_ca("Switchyard test CA (test only)");
    let stranger_ca = make_ca("Another test CA (test only)");
    let (server_cert, server_key) = leaf(
        &["127.0.0.1", "localhost"],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
    );
    let (client_cert, client_key) = leaf(&[], "alice", ExtendedKeyUsagePurpose::ClientAuth, &ca);
    let (stranger_cert, stranger_key) = leaf(
        &[],
        "mallory",
        ExtendedKeyUsagePurpose::ClientAuth,
        &stranger_ca,
    );
    Pki {
        ca: ca.0.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
        stranger_cert,
        stranger_key,
    }
}

/// The node's TLS files, which the configuration names by paths relative to the node directory.
fn files(pki: &Pki) -> Vec<(&'static str, String)> {
    vec![
        ("server.key", pki.server_key.clone()),
        ("server.crt", pki.server_cert.clone()),
        ("ca.crt", pki.ca.clone()),
    ]
}

const REALMS: &str = r#"[{"name": "realm1", "roles": [{"name": "anonymous",
    "permissions": [{"uri": "", "match": "prefix",
    "allow": {"call": true, "register": true, "publish": true, "subscribe": true}}]}]}]"#;

/// Ports: TLS universal (RawSocket + WebSocket `/ws`), TLS WebSocket requiring a client
/// certificate. Unix sockets `raw.sock` (RawSocket, keep-alive) and `web.sock` (web, `/ws`).
fn config(tls_port: u16, mtls_port: u16) -> Value {
    let tls = json!({"key": "server.key", "certificate": "server.crt"});
    json!({
        "version": 2,
        "workers": [{
            "type": "router",
            "realms": serde_json::from_str::<Value>(REALMS).unwrap(),
            "transports": [
                {
                    "type": "universal",
                    "endpoint": {"type": "tcp", "port": tls_port, "interface": "127.0.0.1", "tls": tls},
                    "rawsocket": {"serializers": ["json", "msgpack"]},
                    "websocket": {"ws": {"type": "websocket", "serializers": ["json", "msgpack"]}}
                },
                {
                    "type": "websocket",
                    "endpoint": {"type": "tcp", "port": mtls_port, "interface": "127.0.0.1", "tls": {
                        "key": "server.key", "certificate": "server.crt", "ca_certificates": ["ca.crt"]
                    }}
                },
                {
                    "type": "rawsocket",
                    "endpoint": {"type": "unix", "path": "raw.sock"},
                    "options": {"auto_ping_interval": 200, "auto_ping_timeout": 300}
                },
                {
                    "type": "web",
                    "endpoint": {"type": "unix", "path": "web.sock"},
                    "paths": {"ws": {"type": "websocket"}}
                }
            ]
        }]
    })
}

/// A node with [`config`]; waits for its Unix sockets too.
fn start(pki: &Pki) -> (Node, u16, u16) {
    let (tls_port, mtls_port) = (free_port(), free_port());
    let node = Node::start_with_files(
        &config(tls_port, mtls_port),
        2,
        &[tls_port, mtls_port],
        &files(pki),
    );
    for name in ["raw.sock", "web.sock"] {
        let path = node.dir.join(name);
        for _ in 0..500 {
            if UnixStream::connect(&path).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (node, tls_port, mtls_port)
}

fn python_tls(args: &[&str]) -> ClientRun {
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/clients/py/tls_checks.py"))
        .args(args);
    ClientRun::run(cmd)
}

fn write_pem(dir: &Path, name: &str, pem: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn autobahn_python_over_tls_unix_sockets_and_client_certificates() {
    let pki = pki();
    let (node, tls_port, mtls_port) = start(&pki);
    let dir = node.dir.clone();
    let ca = dir.join("ca.crt").to_str().unwrap().to_owned();
    let port = tls_port.to_string();
    let raw = dir.join("raw.sock").to_str().unwrap().to_owned();
    let web = dir.join("web.sock").to_str().unwrap().to_owned();
    let runs: Vec<Vec<&str>> = vec![
        vec![
            "--transport",
            "websocket",
            "--serializer",
            "json",
            "--port",
            &port,
            "--tls",
            "--ca",
            &ca,
        ],
        vec![
            "--transport",
            "websocket",
            "--serializer",
            "msgpack",
            "--port",
            &port,
            "--tls",
            "--ca",
            &ca,
        ],
        vec![
            "--transport",
            "rawsocket",
            "--serializer",
            "json",
            "--port",
            &port,
            "--tls",
            "--ca",
            &ca,
        ],
        vec![
            "--transport",
            "rawsocket",
            "--serializer",
            "msgpack",
            "--port",
            &port,
            "--tls",
            "--ca",
            &ca,
        ],
        vec![
            "--transport",
            "rawsocket",
            "--serializer",
            "json",
            "--unix",
            &raw,
        ],
        vec![
            "--transport",
            "rawsocket",
            "--serializer",
            "msgpack",
            "--unix",
            &raw,
        ],
        vec![
            "--transport",
            "websocket",
            "--serializer",
            "json",
            "--unix",
            &web,
        ],
        vec![
            "--transport",
            "websocket",
            "--serializer",
            "msgpack",
            "--unix",
            &web,
        ],
    ];
    for args in &runs {
        let run = python_tls(args);
        assert!(run.status.success(), "{args:?}: {}", run.stderr);
        assert_eq!(run.checks(), ["rpc", "pubsub"], "{args:?}");
        assert_eq!(run.sessions().len(), 2, "{args:?}");
    }

    // Client certificates: required on the second endpoint.
    let scratch =
        std::env::temp_dir().join(format!("switchyard-tls-clients-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let cert = write_pem(&scratch, "alice.crt", &pki.client_cert);
    let key = write_pem(&scratch, "alice.key", &pki.client_key);
    let other_cert = write_pem(&scratch, "mallory.crt", &pki.stranger_cert);
    let other_key = write_pem(&scratch, "mallory.key", &pki.stranger_key);
    let mport = mtls_port.to_string();
    let base = [
        "--transport",
        "websocket",
        "--serializer",
        "json",
        "--port",
        &mport,
        "--tls",
        "--ca",
        &ca,
    ];
    let check = |extra: &[&str], expect: &[&str]| {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let run = python_tls(&args);
        assert!(run.status.success(), "{args:?}: {}", run.stderr);
        assert_eq!(run.checks(), expect, "{args:?}: {}", run.stderr);
    };
    check(
        &["--cert", &cert, "--key", &key, "--cn", "alice"],
        &["rpc", "pubsub", "client-cn"],
    );
    check(&["--expect", "refused"], &["refused"]);
    check(
        &[
            "--cert",
            &other_cert,
            "--key",
            &other_key,
            "--expect",
            "refused",
        ],
        &["refused"],
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn autobahn_js_over_wss_with_json_and_msgpack() {
    let pki = pki();
    let (node, tls_port, _) = start(&pki);
    for serializer in ["json", "msgpack"] {
        let mut cmd = node_js();
        cmd.arg("tls_checks.js")
            .args(["--serializer", serializer, "--port", &tls_port.to_string()])
            .env("NODE_EXTRA_CA_CERTS", node.dir.join("ca.crt"));
        let run = ClientRun::run(cmd);
        assert!(run.status.success(), "{serializer}: {}", run.stderr);
        assert_eq!(run.checks(), ["rpc", "pubsub"], "{serializer}");
    }
}

/// Reads exactly `n` bytes, or `None` at the end of the stream.
fn read_exact(s: &mut UnixStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0; n];
    match s.read_exact(&mut buf) {
        Ok(()) => Some(buf),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("read failed (a bound ran out?): {e}"),
    }
}

/// One RawSocket frame: (type, payload), or `None` at the end of the stream.
fn raw_frame(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let head = read_exact(s, 4)?;
    let len = usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]);
    Some((head[0] & 0x07, read_exact(s, len)?))
}

fn raw_connect(path: &Path) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // JSON, the largest messages.
    s.write_all(&[0x7F, 0xF1, 0, 0]).unwrap();
    let reply = read_exact(&mut s, 4).unwrap();
    assert_eq!(reply, [0x7F, 0xF1, 0, 0]);
    s
}

#[test]
fn rawsocket_keepalive_drops_a_silent_peer_and_keeps_an_answering_one() {
    let pki = pki();
    let (node, _, _) = start(&pki);
    let path = node.dir.join("raw.sock");

    let mut silent = raw_connect(&path);
    let mut answering = raw_connect(&path);
    // The answering peer answers three PINGs (and, in the meantime, is not dropped).
    for _ in 0..3 {
        let (kind, payload) = raw_frame(&mut answering).expect("a PING, not the end");
        assert_eq!(kind, 1, "a PING");
        let mut pong = vec![2, 0, 0, payload.len() as u8];
        pong.extend_from_slice(&payload);
        answering.write_all(&pong).unwrap();
    }
    // The silent peer got its PING and, not answering, was dropped.
    let (kind, _) = raw_frame(&mut silent).expect("a PING");
    assert_eq!(kind, 1);
    assert_eq!(raw_frame(&mut silent), None, "the silent peer is dropped");
    // The answering peer still holds a working connection: HELLO gets WELCOME.
    let hello = br#"[1,"realm1",{"roles":{"caller":{}}}]"#;
    let mut frame = vec![0, 0, 0, hello.len() as u8];
    frame.extend_from_slice(hello);
    answering.write_all(&frame).unwrap();
    loop {
        let (kind, payload) = raw_frame(&mut answering).expect("WELCOME");
        if kind == 1 {
            let mut pong = vec![2, 0, 0, payload.len() as u8];
            pong.extend_from_slice(&payload);
            answering.write_all(&pong).unwrap();
            continue;
        }
        assert!(
            payload.starts_with(b"[2,"),
            "{}",
            String::from_utf8_lossy(&payload)
        );
        break;
    }
}

/// A WebSocket opening handshake over a Unix socket, then HELLO; returns the stream.
fn ws_over_unix(path: &Path, hello: bool) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_exact(&mut s, 1).expect("the handshake response"));
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    if hello {
        let payload = br#"[1,"realm1",{"roles":{"subscriber":{}}}]"#;
        let mut frame = vec![0x81, 0x80 | payload.len() as u8, 1, 2, 3, 4];
        frame.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        s.write_all(&frame).unwrap();
    }
    s
}

/// One unmasked server frame: (opcode, payload).
fn ws_frame(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let head = read_exact(s, 2)?;
    let len = match head[1] & 0x7F {
        126 => {
            let b = read_exact(s, 2)?;
            usize::from(u16::from_be_bytes([b[0], b[1]]))
        }
        127 => panic!("no test frame is that large"),
        n => usize::from(n),
    };
    Some((head[0] & 0x0F, read_exact(s, len)?))
}

#[test]
fn websocket_over_unix_and_sigterm_closes_connections_without_a_session() {
    let pki = pki();
    let (mut node, tls_port, _) = start(&pki);
    let web = node.dir.join("web.sock");
    // A session, raw: HELLO gets WELCOME over WebSocket on a Unix socket.
    let mut joined = ws_over_unix(&web, true);
    let (opcode, welcome) = ws_frame(&mut joined).expect("WELCOME");
    assert_eq!(opcode, 1);
    assert!(
        welcome.starts_with(b"[2,"),
        "{}",
        String::from_utf8_lossy(&welcome)
    );
    // A WebSocket that never joined, and connections still opening (TLS and Unix).
    let mut upgraded = ws_over_unix(&web, false);
    let mut opening = UnixStream::connect(node.dir.join("raw.sock")).unwrap();
    opening
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls_opening = std::net::TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    tls_opening
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    node.signal("TERM");
    // The session gets GOODBYE wamp.close.system_shutdown, then a close frame.
    let (_, goodbye) = ws_frame(&mut joined).expect("GOODBYE");
    assert!(
        String::from_utf8_lossy(&goodbye).contains("wamp.close.system_shutdown"),
        "{}",
        String::from_utf8_lossy(&goodbye)
    );
    assert_eq!(ws_frame(&mut joined).map(|f| f.0), Some(8));
    // The upgraded connection without a session gets no GOODBYE, only a close (1001).
    let (opcode, payload) = ws_frame(&mut upgraded).expect("a close frame");
    assert_eq!((opcode, &payload[..2]), (8, &1001u16.to_be_bytes()[..]));
    // The opening ones are closed.
    assert_eq!(read_exact(&mut opening, 1), None);
    let mut byte = [0u8; 1];
    assert!(matches!(tls_opening.read(&mut byte), Ok(0) | Err(_)));

    let status = node.wait(Duration::from_secs(30)).expect("the node exits");
    assert_eq!(status.code(), Some(0), "{:#?}", node.log_lines());
    assert!(!web.exists(), "the socket file is removed at shutdown");
}

/// Runs `switchyard start` on a configuration that must be refused; returns stderr.
fn refused(dir: &Path, config: &Value) -> String {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut child = Command::new(binary())
        .args(["start", "--cbdir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn bad_tls_files_and_unix_paths_are_clear_errors_and_stale_sockets_are_replaced() {
    let pki = pki();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("switchyard-tls-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("server.crt"), &pki.server_cert).unwrap();
    std::fs::write(dir.join("server.key"), &pki.server_key).unwrap();
    std::fs::write(dir.join("garbage.pem"), "no PEM here\n").unwrap();
    let port = free_port();
    let with_tls = |tls: Value| {
        let mut c = config(port, free_port());
        c["workers"][0]["transports"] = json!([{
            "type": "websocket",
            "endpoint": {"type": "tcp", "port": port, "interface": "127.0.0.1", "tls": tls}
        }]);
        c
    };
    let t = "workers[0].transports[0].endpoint.tls";
    let check = |config: Value, expect: &[&str]| {
        let stderr = refused(&dir, &config);
        for e in expect {
            assert!(stderr.contains(e), "{stderr:?} lacks {e:?}");
        }
    };
    check(
        with_tls(json!({"key": "missing.key", "certificate": "server.crt"})),
        &[&format!("{t}.key: "), "missing.key: cannot read"],
    );
    check(
        with_tls(json!({"key": "server.key", "certificate": "garbage.pem"})),
        &[&format!("{t}.certificate: "), "no PEM certificate"],
    );
    check(
        with_tls(json!({"key": "garbage.pem", "certificate": "server.crt"})),
        &[&format!("{t}.key: "), "no PEM private key"],
    );
    check(
        with_tls(json!({"key": "server.key", "certificate": "server.crt",
                        "ca_certificates": ["garbage.pem"]})),
        &[&format!("{t}.ca_certificates[0]: ")],
    );

    // A path that is a regular file is not removed: an error names it.
    let unix = |path: &str| {
        let mut c = config(port, free_port());
        c["workers"][0]["transports"] =
            json!([{"type": "rawsocket", "endpoint": {"type": "unix", "path": path}}]);
        c
    };
    std::fs::write(dir.join("file.sock"), "data").unwrap();
    check(unix("file.sock"), &["file.sock", "not a socket"]);
    assert!(dir.join("file.sock").exists());

    // A stale socket file (nobody listening) is replaced; at shutdown it is removed.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let mut node = Node::start(&unix(stale.to_str().unwrap()), 1, &[]);
    let mut s = None;
    for _ in 0..500 {
        if let Ok(c) = UnixStream::connect(&stale) {
            s = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(s.is_some(), "the node listens on the replaced socket");
    // A second node on the same live socket is refused, and leaves it in place.
    check(
        unix(stale.to_str().unwrap()),
        &["a running server answers on this socket"],
    );
    node.signal("TERM");
    let status = node.wait(Duration::from_secs(30)).expect("the node exits");
    assert_eq!(status.code(), Some(0));
    assert!(!stale.exists(), "the socket file is removed at shutdown");
    std::fs::remove_dir_all(&dir).unwrap();
}
