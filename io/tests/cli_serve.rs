//! `switchyard start` end to end: the real binary on a free port with 2 cores, driven by a
//! minimal RawSocket/JSON WAMP client written here (the third-party client tests live in
//! `tests/`). Covers PubSub and RPC between sessions, a meta API answer that spans the
//! cores, garbage on one connection leaving the others working, and graceful shutdown
//! (GOODBYE `wamp.close.system_shutdown`, exit 0). Timing is never asserted; reads have a
//! generous timeout only so that a bug fails the test instead of hanging it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A node started on a free port; killed if the test fails before stopping it.
struct Node {
    child: Child,
    port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node() -> Node {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("switchyard-serve-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = json!({
        "version": 2,
        "workers": [{
            "type": "router",
            "realms": [{"name": "realm1", "roles": [{"name": "anonymous", "permissions": [
                {"uri": "", "match": "prefix",
                 "allow": {"call": true, "register": true, "publish": true, "subscribe": true}}
            ]}]}],
            "transports": [{
                "type": "universal",
                "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": port},
                "rawsocket": {"serializers": ["json"]},
                "websocket": {"ws": {"type": "websocket"}}
            }]
        }]
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let child = Command::new(BIN)
        .args(["start", "--cores", "2", "--loglevel", "warn", "--cbdir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the node did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Node { child, port }
}

/// A RawSocket/JSON WAMP client.
struct Client(TcpStream);

impl Client {
    fn connect(port: u16) -> Self {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&[0x7F, 0xF1, 0, 0]).unwrap();
        let mut reply = [0; 4];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(
            (reply[0], reply[1] & 0x0F),
            (0x7F, 1),
            "handshake reply {reply:x?}"
        );
        Self(s)
    }

    fn join(port: u16) -> (Self, u64) {
        let mut c = Self::connect(port);
        c.send(json!([1, "realm1", {"roles": {"publisher": {}, "subscriber": {}, "caller": {}, "callee": {}}}]));
        let welcome = c.recv();
        assert_eq!(welcome[0], 2, "{welcome}");
        let id = welcome[1].as_u64().unwrap();
        (c, id)
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string().into_bytes();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.0.write_all(&frame).unwrap();
    }

    /// The next WAMP message (PINGs are not sent by this server unprompted).
    fn recv(&mut self) -> Value {
        let mut prefix = [0; 4];
        self.0.read_exact(&mut prefix).unwrap();
        let len = u32::from_be_bytes([0, prefix[1], prefix[2], prefix[3]]) as usize;
        let mut body = vec![0; len];
        self.0.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body).unwrap()
    }
}

#[test]
fn sessions_on_two_cores_route_and_shut_down_gracefully() {
    let mut node = start_node();
    // Enough sessions that the kernel's SO_REUSEPORT hashing puts some on each core.
    let mut clients: Vec<(Client, u64)> = (0..6).map(|_| Client::join(node.port)).collect();

    let (sub, _) = &mut clients[0];
    sub.send(json!([32, 1, {}, "com.example.topic"]));
    let subscribed = sub.recv();
    assert_eq!(subscribed[0], 33, "{subscribed}");
    sub.send(json!([64, 2, {}, "com.example.add"]));
    let registered = sub.recv();
    assert_eq!(registered[0], 65, "{registered}");

    // Garbage on its own connection: that session ends, the others keep working.
    let mut garbage = Client::connect(node.port);
    garbage
        .0
        .write_all(&[0, 0, 0, 3, b'x', b'y', b'z'])
        .unwrap();

    for i in 1..6 {
        let (publisher, _) = &mut clients[i];
        publisher.send(json!([16, 10, {"acknowledge": true}, "com.example.topic", [i]]));
        assert_eq!(publisher.recv()[0], 17);
        let event = clients[0].0.recv();
        assert_eq!(
            (event[0].clone(), event[4].clone()),
            (json!(36), json!([i]))
        );

        let (caller, _) = &mut clients[i];
        caller.send(json!([48, 20, {}, "com.example.add", [i, 1]]));
        let invocation = clients[0].0.recv();
        assert_eq!(invocation[0], 68, "{invocation}");
        clients[0].0.send(json!([70, invocation[1], {}, [i + 1]]));
        let result = clients[i].0.recv();
        assert_eq!(result, json!([50, 20, {}, [i + 1]]));
    }

    // The meta API counts every session, whichever core holds it.
    let (meta, _) = &mut clients[5];
    meta.send(json!([48, 30, {}, "wamp.session.count", []]));
    assert_eq!(meta.recv(), json!([50, 30, {}, [6]]));

    // Graceful shutdown: everyone gets GOODBYE, the process exits 0.
    let pid = node.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    for (client, _) in &mut clients {
        let goodbye = client.recv();
        assert_eq!(goodbye, json!([6, {}, "wamp.close.system_shutdown"]));
    }
    let status = node.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_port_in_use_is_a_one_line_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("switchyard-busy-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = json!({"version": 2, "workers": [{"type": "router", "realms": [],
        "transports": [{"type": "rawsocket",
            "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": port}}]}]});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let out = Command::new(BIN)
        .args(["start", "--cores", "1", "--loglevel", "none", "--cbdir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "switchyard: cannot listen on 127.0.0.1:{port} (workers[0].transports[0]): \
             Address already in use (os error 98)"
        )
    );
}
