//! The real `switchyard` binary as a controller of 2 router worker processes with 1 thread
//! each (`start --workers 2 --cores 1`), driven by real third-party clients
//! (Autobahn|Python and Autobahn|JS, programs in `tests/clients/`).
//!
//! The router has 2 shards, shard = worker, and session ids are allocated with
//! `id % shards == shard`, so the clients' `--cores 2` pairing puts the sessions of each
//! check on different worker processes; the tests check each session's worker and core
//! against the node's `session joined` log line. Also: SIGKILL of one worker leaves the
//! sessions on the other working (a call and a publication between them), the controller
//! restarts the worker, and a new session on it reaches the old sessions (call and event);
//! SIGTERM to the controller delivers GOODBYE to every client and every process exits 0.
//! Supervision: a Unix-socket endpoint served by every worker (and a restarted one); a
//! stopped worker that overflows its link is restarted and the router converges; a
//! survivor that does not answer a rejoin within the rejoin timeout is restarted; `status`
//! lists every worker's pid and state; 2 workers × 2 threads, one SIGKILLed (its two
//! shards rejoin at once), then sessions on all four shards call each other. Those checks
//! use a minimal RawSocket/JSON client written here ([`Raw`]). Nothing here asserts
//! timing: waits are bounded only so that a bug fails (the rejoin timeout is an input,
//! 3 s, not a measurement).
//!
//! What it does not cover: TLS with worker processes, a stall between two threads of one
//! worker (the same report path, not driven here).

use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_tests::{
    free_port, python, two_realm_config, wamp_checks, workspace_root, Client, ClientRun, Node,
};

const WORKERS: u16 = 2;
const THREADS: u16 = 1;
const SHARDS: u16 = WORKERS * THREADS;

/// A node of worker processes with the two-realm fixture; returns it with its WebSocket
/// and RawSocket ports.
fn start() -> (Node, u16, u16) {
    let (ws, raw) = (free_port(), free_port());
    let node = Node::start_workers(&two_realm_config(ws, raw), WORKERS, THREADS, &[ws, raw]);
    (node, ws, raw)
}

fn python_cmd(transport: &str, serializer: &str, ws: u16, raw: u16, scenario: &str) -> Command {
    wamp_checks(
        Client::Python,
        SHARDS,
        transport,
        serializer,
        ws,
        raw,
        scenario,
    )
}

fn js_cmd(transport: &str, serializer: &str, ws: u16, raw: u16, scenario: &str) -> Command {
    wamp_checks(Client::Js, SHARDS, transport, serializer, ws, raw, scenario)
}

/// The node's JSON log lines whose message is `message`.
fn logged(node: &Node, message: &str) -> Vec<Value> {
    node.log_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// (session, worker, core) of every `session joined` line.
fn session_places(node: &Node) -> Vec<(u64, u64, u64)> {
    logged(node, "session joined")
        .iter()
        .filter_map(|v| {
            let f = &v["fields"];
            Some((
                f["session"].as_u64()?,
                f["worker"].as_u64()?,
                f["core"].as_u64()?,
            ))
        })
        .collect()
}

/// Every session of the run sits on the worker and core its log line names, and the run
/// used both workers (so its checks crossed processes).
fn check_workers(node: &Node, run: &ClientRun) {
    let places = session_places(node);
    let mut used = Vec::new();
    for session in run.sessions() {
        let &(_, worker, core) = places
            .iter()
            .find(|(s, _, _)| *s == session)
            .unwrap_or_else(|| panic!("no `session joined` log line for {session}"));
        assert_eq!(core, session % u64::from(SHARDS), "session {session}");
        assert_eq!(worker, core / u64::from(THREADS), "session {session}");
        used.push(worker);
    }
    used.sort_unstable();
    used.dedup();
    assert_eq!(used, [0, 1], "the run's sessions did not span both workers");
}

/// The checks a routing run passes (as in `server_clients.rs`): denials only where the
/// fixture's role is `anonymous` (its RawSocket transport authenticates as `backend`).
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
        check_workers(&node, &run);
    }
}

#[test]
fn autobahn_python_across_two_worker_processes() {
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
fn autobahn_js_across_two_worker_processes() {
    routing(
        js_cmd,
        &[
            ("websocket", "json"),
            ("websocket", "msgpack"),
            ("rawsocket", "json"),
        ],
    );
}

/// Reads JSON lines from a client until one has `key`; returns them all.
fn read_until(lines: &mut Lines<BufReader<ChildStdout>>, key: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let Ok(v) = serde_json::from_str::<Value>(&line.expect("client stdout")) else {
            continue;
        };
        let done = v.get(key).is_some();
        seen.push(v);
        if done {
            return seen;
        }
    }
    panic!("the client ended before printing `{key}`: {seen:?}");
}

/// Waits (bounded) until `f` holds for the node's log.
fn wait_for_log(node: &Node, what: &str, f: impl Fn(&Node) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f(node) {
        assert!(
            Instant::now() < deadline,
            "no log line for {what}: {:#?}",
            node.log_lines()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids the controller logged for worker `index` (`worker started`), in order.
fn worker_pids(node: &Node, index: u64) -> Vec<u64> {
    logged(node, "worker started")
        .iter()
        .filter(|v| v["fields"]["worker"].as_u64() == Some(index))
        .filter_map(|v| v["fields"]["pid"].as_u64())
        .collect()
}

#[test]
fn a_killed_worker_is_restarted_and_the_rest_keeps_serving() {
    let (node, ws, raw) = start();
    let mut child = python_cmd("websocket", "msgpack", ws, raw, "failover")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client starts");
    let mut stdin = child.stdin.take().expect("piped");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut seen = read_until(&mut lines, "ready");

    let victim = *worker_pids(&node, 1).first().expect("worker 1 started");
    let status = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -KILL {victim} failed");
    writeln!(stdin, "killed").expect("client stdin");
    seen.extend(read_until(&mut lines, "check"));
    seen.extend(read_until(&mut lines, "check"));

    wait_for_log(&node, "worker 1 restarted", |n| {
        worker_pids(n, 1).len() == 2
    });
    wait_for_log(&node, "the restarted worker listening", |n| {
        logged(n, "worker starting")
            .iter()
            .any(|v| v["fields"]["worker"] == 1 && v["fields"]["rejoin"] == true)
    });
    writeln!(stdin, "restarted").expect("client stdin");
    seen.extend(read_until(&mut lines, "done"));
    let status = child.wait().expect("client exits");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(status.success(), "client failed after {seen:?}: {stderr}");
    let checks: Vec<&str> = seen.iter().filter_map(|v| v["check"].as_str()).collect();
    assert_eq!(
        checks,
        ["before", "victim-gone", "survivors", "rejoined"],
        "{stderr}"
    );

    // The controller saw the death; the survivor dropped the dead shard; the last
    // session sits on the restarted worker (a new pid), and the callee on the old one.
    let died = logged(&node, "worker died");
    assert_eq!(died.len(), 1, "{died:?}");
    assert_eq!(died[0]["fields"]["pid"].as_u64(), Some(victim));
    let pids = worker_pids(&node, 1);
    assert_ne!(pids[0], pids[1]);
    let sessions: Vec<u64> = seen.iter().filter_map(|v| v["session"].as_u64()).collect();
    let places = session_places(&node);
    let place = |s: u64| {
        places
            .iter()
            .find(|p| p.0 == s)
            .map(|p| p.1)
            .unwrap_or_else(|| panic!("no `session joined` line for {session}", session = s))
    };
    let last = *sessions.last().expect("sessions");
    assert_eq!(place(last), 1, "the new session is on the restarted worker");
    let before_kill = logged(&node, "session joined")
        .iter()
        .filter(|v| v["fields"]["worker"] == 1)
        .count();
    assert!(before_kill >= 2, "sessions on worker 1 before and after");
}

#[test]
fn sigterm_to_the_controller_sends_goodbye_from_every_worker_and_exits_zero() {
    let (mut node, ws, raw) = start();
    let clients = [
        python_cmd("websocket", "json", ws, raw, "hold"),
        js_cmd("rawsocket", "json", ws, raw, "hold"),
    ];
    let mut children = Vec::new();
    for mut cmd in clients {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let before = read_until(&mut lines, "ready");
        children.push((child, lines, before));
    }

    node.signal("TERM");
    let status = node
        .wait(Duration::from_secs(30))
        .expect("the controller exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{:#?}", node.log_lines());
    let stopped: Vec<String> = logged(&node, "worker stopped")
        .iter()
        .filter_map(|v| v["fields"]["status"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(stopped, ["exit status: 0", "exit status: 0"]);

    for (mut child, lines, before) in children {
        let after: Vec<Value> = lines
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect();
        let status = child.wait().expect("client exits");
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        assert!(status.success(), "client failed: {stderr}");
        let all: Vec<Value> = before.into_iter().chain(after).collect();
        let reasons: Vec<&Value> = all.iter().filter_map(|v| v.get("reason")).collect();
        assert_eq!(
            reasons,
            [
                &Value::from("wamp.close.system_shutdown"),
                &Value::from("wamp.close.system_shutdown")
            ],
            "{all:?}"
        );
        // The client's two sessions were on the two workers.
        let places = session_places(&node);
        let mut workers: Vec<u64> = all
            .iter()
            .filter_map(|v| v["session"].as_u64())
            .filter_map(|s| places.iter().find(|p| p.0 == s).map(|p| p.1))
            .collect();
        workers.sort_unstable();
        workers.dedup();
        assert_eq!(workers, [0, 1]);
    }
}

/// Joins `realm1` over RawSocket with JSON (a minimal client: handshake, HELLO) and returns
/// the WELCOME's session id.
fn rawsocket_join(port: u16) -> u64 {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // 0x7F, max length 2^(9+15) and JSON (serializer 1), two reserved bytes.
    s.write_all(&[0x7F, 0xF1, 0, 0]).expect("handshake");
    let mut reply = [0; 4];
    s.read_exact(&mut reply).expect("handshake reply");
    // The router answers with its own length limit and the same serializer.
    assert_eq!((reply[0], reply[1] & 0x0F), (0x7F, 1), "{reply:?}");
    let hello = br#"[1,"realm1",{"roles":{"caller":{}}}]"#;
    let len = u32::try_from(hello.len()).expect("short");
    s.write_all(&len.to_be_bytes()).expect("frame header");
    s.write_all(hello).expect("hello");
    let mut header = [0; 4];
    s.read_exact(&mut header).expect("frame header");
    let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
    let mut body = vec![0; len];
    s.read_exact(&mut body).expect("frame body");
    let welcome: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(welcome[0], 2, "not a WELCOME: {welcome}");
    welcome[1].as_u64().expect("a session id")
}

#[test]
fn a_worker_that_keeps_dying_is_given_up_and_the_others_keep_serving() {
    let (mut node, _ws, raw) = start();
    // The controller restarts a worker 4 times within the window; the 5th death is final.
    for deaths in 1..=5 {
        let pid = *worker_pids(&node, 1).last().expect("worker 1 started");
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        wait_for_log(&node, "the death", |n| {
            logged(n, "worker died").len() == deaths
        });
        if deaths < 5 {
            wait_for_log(&node, "the restart", |n| {
                worker_pids(n, 1).len() == deaths + 1
            });
        }
    }
    wait_for_log(&node, "giving up", |n| {
        n.log_lines()
            .iter()
            .any(|l| l.contains("worker died 5 times within 60 s: not restarting it"))
    });
    assert_eq!(worker_pids(&node, 1).len(), 5, "no restart after giving up");
    assert!(
        node.wait(Duration::from_millis(300)).is_none(),
        "the controller keeps running"
    );
    // Worker 0 serves alone: sessions still join.
    for _ in 0..3 {
        let session = rawsocket_join(raw);
        assert_eq!(session % u64::from(SHARDS), 0);
    }
}

/// The capacity layout (issue 6): 10 workers of 1 thread on this machine's cores (threads
/// of different workers share a core). Autobahn|Python's routing checks pass with sessions
/// paired across shards, and each session sits on the worker its id names.
#[test]
fn ten_workers_of_one_thread_serve_one_router() {
    const TEN: u16 = 10;
    let (ws, raw) = (free_port(), free_port());
    let node = Node::start_workers(&two_realm_config(ws, raw), TEN, 1, &[ws, raw]);
    wait_for_log(&node, "10 workers starting", |n| {
        logged(n, "worker starting").len() == usize::from(TEN)
    });
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("tests/clients/py/wamp_checks.py"))
        .args(["--transport", "rawsocket", "--serializer", "msgpack"])
        .args(["--ws-port", &ws.to_string(), "--raw-port", &raw.to_string()])
        .args(["--cores", &TEN.to_string(), "--scenario", "routing"]);
    let run = ClientRun::run(cmd);
    assert!(
        run.status.success(),
        "failed after {:?}:\n{}",
        run.checks(),
        run.stderr
    );
    assert_eq!(run.checks(), routing_checks("rawsocket"));
    let places = session_places(&node);
    let mut workers = Vec::new();
    for session in run.sessions() {
        let &(_, worker, core) = places
            .iter()
            .find(|p| p.0 == session)
            .unwrap_or_else(|| panic!("no `session joined` line for {session}"));
        assert_eq!((worker, core), (session % 10, session % 10));
        workers.push(worker);
    }
    workers.sort_unstable();
    workers.dedup();
    assert!(
        workers.len() >= 2,
        "sessions on one worker only: {workers:?}"
    );
    assert!(
        logged(&node, "cannot pin the thread to a CPU").is_empty(),
        "pinning failed"
    );

    // `status` and `stop` work with the controller's pid file; every worker stops.
    let mut node = node;
    let cli = |verb: &str| {
        let mut cmd = Command::new(switchyard_tests::binary());
        cmd.arg(verb).arg("--cbdir").arg(&node.dir);
        cmd
    };
    let status = cli("status").output().expect("the cli runs");
    assert!(status.status.success(), "{status:?}");
    let lines: Vec<String> = String::from_utf8_lossy(&status.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(lines[0].starts_with("running (pid "), "{lines:?}");
    // Each worker's pid and state, as the controller keeps them.
    let expect: Vec<String> = (0..u64::from(TEN))
        .map(|w| {
            let pid = worker_pids(&node, w)[0];
            format!("worker {w}: running (pid {pid})")
        })
        .collect();
    assert_eq!(lines[1..], expect, "{lines:?}");
    // `stop` waits for the pid to go away, so the controller (this test's child) must be
    // reaped meanwhile: a zombie still counts as running.
    let stop = cli("stop")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the cli runs");
    let exit = node
        .wait(Duration::from_secs(30))
        .expect("the controller exits");
    assert_eq!(exit.code(), Some(0));
    let stop = stop.wait_with_output().expect("stop ends");
    assert!(stop.status.success(), "{stop:?}");
    assert_eq!(logged(&node, "worker stopped").len(), usize::from(TEN));
}

/// Whether a process runs (a zombie, dead but not yet reaped, does not).
fn running(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesized command name.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

#[test]
fn workers_stop_when_the_controller_is_killed() {
    let (node, _ws, _raw) = start();
    wait_for_log(&node, "both workers starting", |n| {
        logged(n, "worker starting").len() == usize::from(WORKERS)
    });
    let pids: Vec<u64> = (0..u64::from(WORKERS))
        .map(|w| *worker_pids(&node, w).first().expect("worker started"))
        .collect();
    node.signal("KILL");
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids.iter().any(|&pid| running(pid)) {
        assert!(
            Instant::now() < deadline,
            "orphaned workers still run: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal WAMP client over RawSocket with JSON (handshake, then one JSON message per
/// frame), for the checks the script clients cannot make: Unix sockets, and sessions kept
/// open across a stalled or restarted worker.
struct Raw<S: std::io::Read + Write> {
    s: S,
    /// The session id from WELCOME.
    session: u64,
    /// The next request id.
    next: u64,
}

impl<S: std::io::Read + Write> Raw<S> {
    /// Joins `realm1` with every client role on `s` (read timeout already set).
    fn join(mut s: S) -> Self {
        s.write_all(&[0x7F, 0xF1, 0, 0]).expect("handshake");
        let mut reply = [0; 4];
        s.read_exact(&mut reply).expect("handshake reply");
        assert_eq!((reply[0], reply[1] & 0x0F), (0x7F, 1), "{reply:?}");
        let mut raw = Self {
            s,
            session: 0,
            next: 1,
        };
        let roles = serde_json::json!({
            "caller": {}, "callee": {}, "publisher": {}, "subscriber": {}
        });
        raw.send(&serde_json::json!([1, "realm1", {"roles": roles}]));
        let welcome = raw.recv();
        assert_eq!(welcome[0], 2, "not a WELCOME: {welcome}");
        raw.session = welcome[1].as_u64().expect("a session id");
        raw
    }

    fn send(&mut self, msg: &Value) {
        let body = msg.to_string();
        let len = u32::try_from(body.len()).expect("short");
        self.s.write_all(&len.to_be_bytes()).expect("frame header");
        self.s.write_all(body.as_bytes()).expect("frame body");
    }

    /// The next message (pings are answered and skipped).
    fn recv(&mut self) -> Value {
        loop {
            let mut header = [0; 4];
            self.s.read_exact(&mut header).expect("frame header");
            let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
            let mut body = vec![0; len];
            self.s.read_exact(&mut body).expect("frame body");
            match header[0] & 0x07 {
                0 => return serde_json::from_slice(&body).expect("JSON"),
                1 => {
                    // A ping: the same payload back as a pong.
                    self.s
                        .write_all(&[2, header[1], header[2], header[3]])
                        .expect("pong");
                    self.s.write_all(&body).expect("pong body");
                }
                _ => {}
            }
        }
    }

    /// Reads until a message of type `code` arrives; returns it.
    fn expect(&mut self, code: u64) -> Value {
        loop {
            let msg = self.recv();
            if msg[0] == code {
                return msg;
            }
            assert_ne!(msg[0], 8, "an ERROR while waiting for {code}: {msg}");
        }
    }

    fn request(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Registers `uri` and waits for REGISTERED.
    fn register(&mut self, uri: &str) {
        let id = self.request();
        self.send(&serde_json::json!([64, id, {}, uri]));
        self.expect(65);
    }

    /// Subscribes to `uri` and waits for SUBSCRIBED.
    fn subscribe(&mut self, uri: &str) {
        let id = self.request();
        self.send(&serde_json::json!([32, id, {}, uri]));
        self.expect(33);
    }

    /// Calls `uri` with `args` and returns the RESULT or ERROR (a procedure registered a
    /// moment ago on another shard may not be known here yet: the caller retries).
    fn call(&mut self, uri: &str, args: &Value) -> Value {
        let id = self.request();
        self.send(&serde_json::json!([48, id, {}, uri, args]));
        loop {
            let msg = self.recv();
            if (msg[0] == 50 || msg[0] == 8) && msg[if msg[0] == 8 { 2 } else { 1 }] == id {
                return msg;
            }
        }
    }
}

fn tcp(port: u16) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

/// A RawSocket session on worker `worker` (sessions ids name their shard, and TCP
/// connections spread over the workers by their source port): connects until one lands
/// there, within a bound.
fn raw_on(port: u16, worker: u64) -> Raw<std::net::TcpStream> {
    raw_on_shard(port, worker, u64::from(SHARDS))
}

/// A RawSocket session on shard `shard` of a router of `shards` shards, like [`raw_on`].
fn raw_on_shard(port: u16, shard: u64, shards: u64) -> Raw<std::net::TcpStream> {
    for _ in 0..200 {
        let raw = Raw::join(tcp(port));
        if raw.session % shards == shard {
            return raw;
        }
    }
    panic!("no session landed on shard {shard} in 200 connections");
}

/// Calls `uri` on `caller` until its callee (served by [`serve_calls`]) answers, within a
/// bound: a registration made a moment ago on another shard reaches this shard shortly.
fn call_through<S: std::io::Read + Write>(caller: &mut Raw<S>, uri: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = caller.call(uri, &serde_json::json!([7]));
        if answer[0] == 50 {
            assert_eq!(answer[3], serde_json::json!([7]), "{answer}");
            return;
        }
        assert_eq!(answer[4], "wamp.error.no_such_procedure", "{answer}");
        assert!(Instant::now() < deadline, "{uri} never reached: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Answers `raw`'s INVOCATIONs with their own arguments on a thread of its own, until
/// the connection ends or stays silent for its read timeout.
fn serve_calls<S: std::io::Read + Write + Send + 'static>(mut raw: Raw<S>) {
    std::thread::spawn(move || {
        while let Some(msg) = raw.try_recv() {
            if msg[0] == 68 {
                let args = msg.get(4).cloned().unwrap_or_else(|| serde_json::json!([]));
                raw.send(&serde_json::json!([70, msg[1], {}, args]));
            }
        }
    });
}

impl<S: std::io::Read + Write> Raw<S> {
    /// The next message, or `None` when the connection ends or times out.
    fn try_recv(&mut self) -> Option<Value> {
        let mut header = [0; 4];
        self.s.read_exact(&mut header).ok()?;
        let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        let mut body = vec![0; len];
        self.s.read_exact(&mut body).ok()?;
        match header[0] & 0x07 {
            0 => serde_json::from_slice(&body).ok(),
            _ => Some(Value::Null),
        }
    }
}

/// Sends `signal` to `pid` with `kill`; whether it worked.
fn kill(signal: &str, pid: u64) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .expect("kill runs")
        .success()
}

/// The two-realm fixture with `options` merged into the router worker's options.
fn config_with(ws: u16, raw: u16, options: &Value) -> Value {
    let mut config = two_realm_config(ws, raw);
    let mine = &mut config["workers"][0]["options"];
    for (key, value) in options.as_object().expect("an object") {
        mine[key] = value.clone();
    }
    config
}

/// `switchyard status` on the node's directory: its output lines.
fn status_lines(node: &Node) -> Vec<String> {
    let out = Command::new(switchyard_tests::binary())
        .arg("status")
        .arg("--cbdir")
        .arg(&node.dir)
        .output()
        .expect("the cli runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until both workers log `worker starting` `count` times in all.
fn wait_started(node: &Node, count: usize) {
    wait_for_log(node, "the workers serving", |n| {
        logged(n, "worker starting").len() == count
    });
}

/// Unix-socket endpoints with worker processes: the controller binds the socket and every
/// worker accepts on it (sessions over it land on both workers and reach the other
/// worker's sessions), a restarted worker accepts on it again, and the socket file is
/// removed when the node stops.
#[test]
fn a_unix_socket_endpoint_is_served_by_every_worker() {
    let (ws, raw) = (free_port(), free_port());
    let path =
        std::env::temp_dir().join(format!("switchyard-w2-{}-{raw}.sock", std::process::id()));
    let mut config = two_realm_config(ws, raw);
    let mut unix = config["workers"][0]["transports"][1].clone();
    unix["endpoint"] = serde_json::json!({"type": "unix", "path": path});
    config["workers"][0]["transports"]
        .as_array_mut()
        .expect("transports")
        .push(unix);
    let mut node = Node::start_workers(&config, WORKERS, THREADS, &[ws, raw]);
    wait_started(&node, 2);
    let connect = || {
        let s = std::os::unix::net::UnixStream::connect(&path).expect("connect to the socket");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Raw::join(s)
    };
    // Sessions over the socket until each worker holds one (bounded).
    let mut held: Vec<Option<Raw<std::os::unix::net::UnixStream>>> = vec![None, None];
    for _ in 0..200 {
        let session = connect();
        let worker = usize::try_from(session.session % u64::from(SHARDS)).expect("small");
        held[worker].get_or_insert(session);
        if held.iter().all(Option::is_some) {
            break;
        }
    }
    let (Some(on0), Some(mut on1)) = (held[0].take(), held[1].take()) else {
        panic!("the Unix socket's sessions did not land on both workers");
    };
    // Across workers both ways: a Unix-socket callee on worker 0 and a TCP caller on
    // worker 1; a TCP callee on worker 0 and the Unix-socket caller on worker 1.
    let mut callee = on0;
    callee.register("com.example.unix0");
    serve_calls(callee);
    call_through(&mut raw_on(raw, 1), "com.example.unix0");
    let mut tcp_callee = raw_on(raw, 0);
    tcp_callee.register("com.example.tcp0");
    serve_calls(tcp_callee);
    call_through(&mut on1, "com.example.tcp0");

    // A restarted worker accepts on the socket again: a new session on it reaches the
    // old Unix-socket callee on worker 0.
    let victim = *worker_pids(&node, 1).first().expect("worker 1 started");
    assert!(kill("KILL", victim));
    wait_for_log(&node, "worker 1 restarted", |n| {
        worker_pids(n, 1).len() == 2
    });
    wait_started(&node, 3);
    let mut rejoined = None;
    for _ in 0..200 {
        let session = connect();
        if session.session % u64::from(SHARDS) == 1 {
            rejoined = Some(session);
            break;
        }
    }
    let mut rejoined = rejoined.expect("a Unix-socket session on the restarted worker");
    call_through(&mut rejoined, "com.example.unix0");

    node.signal("TERM");
    let status = node
        .wait(Duration::from_secs(30))
        .expect("the controller exits");
    assert_eq!(status.code(), Some(0), "{:#?}", node.log_lines());
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

/// A live worker that stops reading (SIGSTOP) overflows the link of the worker that sends
/// it events (`options.link_backlog`); that worker reports it, the controller restarts the
/// stalled worker, and the router converges again: a new session on the restarted worker
/// reaches the old sessions. `status` shows both workers and the restart.
#[test]
fn a_stalled_worker_is_restarted_and_the_router_converges() {
    let (ws, raw) = (free_port(), free_port());
    let config = config_with(ws, raw, &serde_json::json!({"link_backlog": 65536}));
    let node = Node::start_workers(&config, WORKERS, THREADS, &[ws, raw]);
    wait_started(&node, 2);
    let mut subscriber = raw_on(raw, 1);
    subscriber.subscribe("com.example.flood");
    let mut publisher = raw_on(raw, 0);
    let mut caller = raw_on(raw, 0);
    let stalled = *worker_pids(&node, 1).first().expect("worker 1 started");
    assert!(kill("STOP", stalled));
    // Events for the stopped worker's subscriber fill the socket, then the link's queue.
    let payload = "x".repeat(8192);
    let restarting = |n: &Node| {
        n.log_lines()
            .iter()
            .any(|l| l.contains("stopped reading its link") && l.contains("restarting worker 1"))
    };
    let mut sent = 0;
    while !restarting(&node) {
        assert!(
            sent < 20_000,
            "no restart after {sent} events: {:#?}",
            node.log_lines()
        );
        for _ in 0..20 {
            let id = publisher.request();
            publisher.send(&serde_json::json!([
                16,
                id,
                {},
                "com.example.flood",
                [payload]
            ]));
        }
        sent += 20;
        std::thread::sleep(Duration::from_millis(10));
    }
    // Harmless if the controller's SIGKILL came first (the pid is its zombie or gone).
    let _ = kill("CONT", stalled);
    let restarts: Vec<Value> = node
        .log_lines()
        .iter()
        .filter(|l| l.contains("stopped reading its link"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let fields = &restarts.first().expect("the controller's line")["fields"];
    assert_eq!(
        [&fields["worker"], &fields["shard"], &fields["reporter"]],
        [&Value::from(1), &Value::from(1), &Value::from(0)],
        "{restarts:?}"
    );
    wait_for_log(&node, "worker 1 restarted", |n| {
        worker_pids(n, 1).len() == 2
    });
    wait_started(&node, 3);
    let died = logged(&node, "worker died");
    assert_eq!(died.len(), 1, "{died:?}");
    assert_eq!(died[0]["fields"]["pid"].as_u64(), Some(stalled));

    // Converged: a callee on the restarted worker is reached from an old session on
    // worker 0, and a new caller on it reaches a callee on worker 0.
    let mut callee = raw_on(raw, 1);
    callee.register("com.example.after");
    serve_calls(callee);
    call_through(&mut caller, "com.example.after");
    publisher.register("com.example.before");
    serve_calls(publisher);
    call_through(&mut raw_on(raw, 1), "com.example.before");

    let pids: Vec<u64> = (0..2)
        .map(|w| *worker_pids(&node, w).last().expect("pid"))
        .collect();
    let lines = status_lines(&node);
    assert_eq!(
        lines[1..],
        [
            format!("worker 0: running (pid {})", pids[0]),
            format!("worker 1: running (pid {}), restarted once", pids[1]),
        ],
        "{lines:?}"
    );
}

/// A survivor that cannot answer a restarted worker's rejoin (here: stopped) is restarted
/// by the controller once the rejoin timeout (`options.rejoin_timeout`) expires; its death
/// ends the wait, it rejoins in turn, and sessions on both workers reach each other.
#[test]
fn a_survivor_that_does_not_answer_a_rejoin_is_restarted() {
    let (ws, raw) = (free_port(), free_port());
    let config = config_with(ws, raw, &serde_json::json!({"rejoin_timeout": 3000}));
    let node = Node::start_workers(&config, WORKERS, THREADS, &[ws, raw]);
    wait_started(&node, 2);
    let silent = *worker_pids(&node, 0).first().expect("worker 0 started");
    let victim = *worker_pids(&node, 1).first().expect("worker 1 started");
    assert!(kill("STOP", silent));
    assert!(kill("KILL", victim));
    wait_for_log(&node, "the rejoin timing out", |n| {
        !logged(n, "rejoin timed out: shard 1 still waits for shard 0").is_empty()
    });
    wait_for_log(&node, "the silent survivor's restart", |n| {
        n.log_lines().iter().any(|l| {
            l.contains("did not answer a restarted shard") && l.contains("restarting worker 0")
        })
    });
    let _ = kill("CONT", silent);
    wait_for_log(&node, "both workers restarted", |n| {
        worker_pids(n, 0).len() == 2 && worker_pids(n, 1).len() == 2
    });
    wait_started(&node, 4);
    let died: Vec<Option<u64>> = logged(&node, "worker died")
        .iter()
        .map(|v| v["fields"]["pid"].as_u64())
        .collect();
    assert_eq!(died, [Some(victim), Some(silent)]);

    for (callee_on, caller_on, uri) in [(0, 1, "com.example.w0"), (1, 0, "com.example.w1")] {
        let mut callee = raw_on(raw, callee_on);
        callee.register(uri);
        serve_calls(callee);
        call_through(&mut raw_on(raw, caller_on), uri);
    }
}

/// 2 workers × 2 threads: worker 1 is SIGKILLed, so its two shards rejoin at once when
/// the controller restarts it; afterwards a session on each of the four shards calls a
/// callee on each of the four shards (the callees on worker 0 from before the kill, new
/// ones on the restarted worker).
#[test]
fn two_workers_of_two_threads_rejoin_after_a_kill() {
    const FOUR: u64 = 4;
    let (ws, raw) = (free_port(), free_port());
    let node = Node::start_workers(&two_realm_config(ws, raw), WORKERS, 2, &[ws, raw]);
    wait_started(&node, 2);
    for shard in 0..2 {
        let mut callee = raw_on_shard(raw, shard, FOUR);
        callee.register(&format!("com.example.shard{shard}"));
        serve_calls(callee);
    }
    let victim = *worker_pids(&node, 1).first().expect("worker 1 started");
    assert!(kill("KILL", victim));
    wait_for_log(&node, "worker 1 restarted", |n| {
        worker_pids(n, 1).len() == 2
    });
    wait_started(&node, 3);
    for shard in 2..FOUR {
        let mut callee = raw_on_shard(raw, shard, FOUR);
        callee.register(&format!("com.example.shard{shard}"));
        serve_calls(callee);
    }
    for shard in 0..FOUR {
        let mut caller = raw_on_shard(raw, shard, FOUR);
        for target in 0..FOUR {
            call_through(&mut caller, &format!("com.example.shard{target}"));
        }
    }
    let places = session_places(&node);
    let mut shards: Vec<u64> = places.iter().map(|p| p.2).collect();
    shards.sort_unstable();
    shards.dedup();
    assert_eq!(shards, [0, 1, 2, 3], "sessions on every shard");
}
