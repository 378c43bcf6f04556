//! `switchyard-tests`: black-box integration tests and repository-wide checks.
//!
//! The tests in `tests/` run the real binaries and real third-party clients, and check
//! repository rules (every Rust file opens with a `//!` doc). This library holds only
//! helpers for them: locating (or building) the `switchyard` binary, starting a node on
//! free ports with its log captured, and locating the client toolchains that
//! `scripts/test.sh` installs. It is never a dependency of the product, and it does not
//! install anything itself: a missing client toolchain is a clear failure naming the script.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `switchyard` binary: `$SWITCHYARD_BIN` if set, else the one in this test's own
/// target directory, built once per test process with `cargo build` so that it is never
/// stale.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SWITCHYARD_BIN") {
            return PathBuf::from(bin);
        }
        // The test executable lives in <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("the test executable's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from <target>/<profile>/deps");
        let target = profile_dir.parent().expect("a target directory");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "-p", "switchyard-io", "--bin", "switchyard"])
            .arg("--target-dir")
            .arg(target)
            .current_dir(workspace_root());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(
            status.success(),
            "cargo build of the switchyard binary failed"
        );
        profile_dir.join("switchyard")
    })
    .clone()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The two-realm Crossbar fixture (`io/tests/fixtures/crossbar-two-realms.json`), unchanged
/// but for its two ports: WebSocket first, RawSocket second.
pub fn two_realm_config(ws_port: u16, raw_port: u16) -> Value {
    let path = workspace_root().join("io/tests/fixtures/crossbar-two-realms.json");
    let text = std::fs::read_to_string(&path).expect("the two-realm fixture");
    let mut config: Value = serde_json::from_str(&text).expect("the fixture is JSON");
    let transports = &mut config["workers"][0]["transports"];
    transports[0]["endpoint"]["port"] = ws_port.into();
    transports[1]["endpoint"]["port"] = raw_port.into();
    config
}

/// A running node whose stderr (JSON log lines) is collected; killed when dropped.
pub struct Node {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// The node directory (config.json, node.pid).
    pub dir: PathBuf,
}

impl Node {
    /// Starts `switchyard start --cores <cores>` on `config` with JSON logs at info level,
    /// and waits until every port in `ports` accepts connections.
    pub fn start(config: &Value, cores: u16, ports: &[u16]) -> Self {
        Self::start_with(
            config,
            &["--cores".to_owned(), cores.to_string()],
            ports,
            &[],
        )
    }

    /// [`Node::start`], with `files` (name relative to the node directory, contents)
    /// written into the node directory first: TLS keys and certificates.
    pub fn start_with_files(
        config: &Value,
        cores: u16,
        ports: &[u16],
        files: &[(&str, String)],
    ) -> Self {
        Self::start_with(
            config,
            &["--cores".to_owned(), cores.to_string()],
            ports,
            files,
        )
    }

    /// Starts `switchyard start --workers <workers> --cores <cores>` (a controller and
    /// its worker processes, `cores` threads each) like [`Node::start`].
    pub fn start_workers(config: &Value, workers: u16, cores: u16, ports: &[u16]) -> Self {
        let args = [
            "--workers".to_owned(),
            workers.to_string(),
            "--cores".to_owned(),
            cores.to_string(),
        ];
        Self::start_with(config, &args, ports, &[])
    }

    /// Starts `switchyard start` with `args` after the log options, with `files` written
    /// into the node directory first.
    fn start_with(
        config: &Value,
        args: &[String],
        ports: &[u16],
        files: &[(&str, String)],
    ) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-tests-{}-{}",
            std::process::id(),
            ports.first().copied().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("a node directory");
        std::fs::write(dir.join("config.json"), config.to_string()).expect("config written");
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).expect("file written");
        }
        let mut cmd = Command::new(binary());
        cmd.args(["start", "--loglevel", "info", "--logformat", "json"])
            .args(args)
            .arg("--cbdir")
            .arg(&dir);
        Self::launch(cmd, dir, ports)
    }

    /// Starts `switchyard start` with no arguments in an empty directory, as a user's first
    /// command does (the embedded default configuration), and waits for `ports`.
    pub fn start_default(ports: &[u16]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("switchyard-tests-default-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a working directory");
        let mut cmd = Command::new(binary());
        cmd.args(["start", "--logformat", "json"])
            .current_dir(&dir)
            .env_remove("CROSSBAR_DIR");
        Self::launch(cmd, dir, ports)
    }

    fn launch(mut cmd: Command, dir: PathBuf, ports: &[u16]) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the switchyard binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        let mut node = Self {
            child,
            log,
            reader: Some(reader),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for &port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = node.child.try_wait() {
                    panic!("the node exited with {status}: {:#?}", node.log_lines());
                }
                assert!(
                    Instant::now() < deadline,
                    "the node did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        node
    }

    /// The log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// The core of every session that joined, from the node's `session joined` log lines.
    pub fn session_cores(&self) -> Vec<(u64, u64)> {
        self.log_lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|v| v["fields"]["message"] == "session joined")
            .filter_map(|v| {
                Some((
                    v["fields"]["session"].as_u64()?,
                    v["fields"]["core"].as_u64()?,
                ))
            })
            .collect()
    }

    /// Sends a signal to the node.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the node to exit, up to `limit` (a bound so that a hang fails the test;
    /// the time taken is never asserted otherwise).
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Python interpreter of the venv that `scripts/test.sh` makes
/// (`$HOME/.cache/switchyard-py`), or `$SWITCHYARD_PYTHON`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SWITCHYARD_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let p = PathBuf::from(home).join(".cache/switchyard-py/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh once (it installs Autobahn|Python)",
        p.display()
    );
    p
}

/// A `node` command for the Autobahn|JS programs in `tests/clients/js`: with
/// `--experimental-websocket` where Node has no global WebSocket by default (Node < 22).
pub fn node_js() -> Command {
    let modules = workspace_root().join("tests/clients/js/node_modules/autobahn");
    assert!(
        modules.exists(),
        "{} is missing: run scripts/test.sh once (it installs Autobahn|JS)",
        modules.display()
    );
    let native = Command::new("node")
        .args([
            "-e",
            "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
        ])
        .status()
        .expect("node runs");
    let mut cmd = Command::new("node");
    if !native.success() {
        cmd.arg("--experimental-websocket");
    }
    cmd.current_dir(workspace_root().join("tests/clients/js"));
    cmd
}

/// What one client program run printed: its JSON lines, and whether it succeeded.
#[derive(Debug)]
pub struct ClientRun {
    /// The JSON objects printed on stdout.
    pub lines: Vec<Value>,
    /// Stderr, for failure messages.
    pub stderr: String,
    /// The exit status.
    pub status: ExitStatus,
}

impl ClientRun {
    /// Runs `cmd` to its end, with stdout parsed as JSON lines.
    pub fn run(mut cmd: Command) -> Self {
        let out = cmd.output().expect("the client program runs");
        Self::from_output(out)
    }

    /// Parses the output of a finished client program.
    pub fn from_output(out: std::process::Output) -> Self {
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Self {
            lines,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            status: out.status,
        }
    }

    /// The session ids the program joined.
    pub fn sessions(&self) -> Vec<u64> {
        self.lines
            .iter()
            .filter_map(|v| v["session"].as_u64())
            .collect()
    }

    /// The names of the checks the program passed, in order.
    pub fn checks(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|v| v["check"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Node {
    /// Like [`Node::start`], with the node's open-file limit (soft and hard, so that the
    /// node's own raise to the hard limit stays at it) set to `nofile` by the shell that
    /// execs it: the node is the child process itself, and its pid is the one killed.
    pub fn start_with_nofile(config: &Value, cores: u16, ports: &[u16], nofile: u64) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-tests-{}-{}",
            std::process::id(),
            ports.first().copied().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("a node directory");
        std::fs::write(dir.join("config.json"), config.to_string()).expect("config written");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$@\""))
            .arg("sh")
            .arg(binary())
            .args(["start", "--loglevel", "info", "--logformat", "json"])
            .arg("--cores")
            .arg(cores.to_string())
            .arg("--cbdir")
            .arg(&dir);
        Self::launch(cmd, dir, ports)
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of the node's `/proc/<pid>/status` (e.g. `VmRSS`) as its first number (kB
    /// for the memory fields); `None` when the node is gone.
    pub fn proc_status(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The node's resident set size in KiB (0 when the node is gone).
    pub fn rss_kib(&self) -> u64 {
        self.proc_status("VmRSS").unwrap_or(0)
    }

    /// The log lines whose message contains `needle`.
    pub fn log_matching(&self, needle: &str) -> Vec<String> {
        self.log_lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }
}

/// Which third-party client runs a check program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// Autobahn|Python (asyncio) from the venv of [`python`].
    Python,
    /// Autobahn|JS on Node, through [`node_js`].
    Js,
}

/// The routing checks (`tests/clients/{py/wamp_checks.py,js/wamp_checks.js}`) as a command
/// for `client`; `shards` is the node's shard count (the checks expect their sessions spread
/// over that many shards).
#[allow(clippy::too_many_arguments)]
pub fn wamp_checks(
    client: Client,
    shards: u16,
    transport: &str,
    serializer: &str,
    ws: u16,
    raw: u16,
    scenario: &str,
) -> Command {
    let mut cmd = if client == Client::Python {
        let mut cmd = Command::new(python());
        cmd.arg(workspace_root().join("tests/clients/py/wamp_checks.py"));
        cmd
    } else {
        let mut cmd = node_js();
        cmd.arg("wamp_checks.js");
        cmd
    };
    cmd.args(["--transport", transport, "--serializer", serializer])
        .args(["--ws-port", &ws.to_string(), "--raw-port", &raw.to_string()])
        .args(["--cores", &shards.to_string(), "--scenario", scenario]);
    cmd
}
