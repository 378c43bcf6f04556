//! The `switchyard` binary's commands that need no running server: `version`, `check` on
//! good and bad configurations, `start` refusing what `check` rejects, `init`, `status`.
//! Serving is tested in `tests/tests/server_*.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/crossbar-two-realms.json"
);

/// Runs the binary with `args` in `cwd` and no `CROSSBAR_DIR`.
fn run(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("CROSSBAR_DIR")
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

/// A fresh, empty directory for one test.
fn scratch() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "switchyard-cli-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args`, then compares the exit code and stdout's lines.
#[track_caller]
fn check(cwd: &Path, args: &[&str], code: i32, stdout: &[&str]) -> Output {
    let out = run(cwd, args);
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(
        (out.status.code(), lines),
        (Some(code), stdout.iter().map(|s| s.to_string()).collect()),
        "stderr: {}",
        text(&out.stderr)
    );
    out
}

#[test]
fn version_names_the_crate_version() {
    let out = run(&scratch(), &["version"]);
    assert!(out.status.success());
    let first = text(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(first, format!("switchyard {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_accepts_the_two_realm_fixture() {
    let out = check(
        &scratch(),
        &["check", "--config", FIXTURE],
        0,
        &["$schema: ignored: a schema reference for editors"],
    );
    assert!(
        text(&out.stderr).ends_with(": ok\n"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_without_a_config_uses_the_embedded_default() {
    let dir = scratch();
    let out = check(&dir, &["check"], 0, &[]);
    assert!(text(&out.stderr).contains("embedded default"));
    check(&dir, &["check", "--cbdir", "nowhere"], 0, &[]);
}

#[test]
fn check_and_start_list_the_same_problems() {
    let dir = scratch();
    let bad = dir.join("bad.json");
    fs::write(
        &bad,
        r#"{"version": 2, "workers": [{"type": "router", "realms": [{"name": "realm1"}],
            "transports": [{"type": "rawsocket", "endpoint": {"type": "tcp", "port": 0,
            "tls": {"key": "k", "certificate": "c", "dhparam": "d"}}}]}]}"#,
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    let expect = [
        "workers[0].transports[0].endpoint.port: 0 is out of range (must be from 1 to 65535)",
        "workers[0].transports[0].endpoint.tls.dhparam: rustls offers no finite-field DHE cipher suites (only ECDHE), so DH parameters cannot be used; remove the key",
    ];
    check(&dir, &["check", "--config", bad], 1, &expect);

    let out = run(&dir, &["start", "--config", bad]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[..expect.len()], expect, "{stderr}");
    assert!(
        lines[expect.len()].contains("refused (2 problem(s))"),
        "{stderr}"
    );
    assert!(!dir.join(".crossbar/node.pid").exists());
}

#[test]
fn check_reports_unreadable_files_and_bad_json_in_one_line() {
    let dir = scratch();
    let out = check(&dir, &["check", "--config", "missing.json"], 1, &[]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("switchyard: cannot read missing.json: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);

    fs::write(dir.join("broken.json"), "{\"version\": 2,").unwrap();
    let out = run(&dir, &["check", "--config", "broken.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with("$: not valid JSON: "));
}

#[test]
fn unknown_flags_are_usage_errors() {
    // clap rejects unknown flags with its usage error (exit 2).
    let out = run(&scratch(), &["check", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn init_writes_a_node_that_checks_clean() {
    let dir = scratch();
    let app = dir.join("app");
    let out = run(&dir, &["init", "--appdir", app.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(app.join(".crossbar/config.json").is_file());
    let page = fs::read_to_string(app.join("web/index.html")).unwrap();
    assert!(page.contains("autobahn.min.js") && page.contains("ws://127.0.0.1:8080/ws"));

    check(&app, &["check"], 0, &[]);
    // A second init leaves the existing node alone.
    let again = run(&dir, &["init", "--appdir", app.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn status_and_stop_without_a_node() {
    let dir = scratch();
    let out = check(
        &dir,
        &["status", "--cbdir", "node"],
        2,
        &["stopped (no node runs from node)"],
    );
    assert!(out.stderr.is_empty());
    // A stale pid file (no such process) is reported as such.
    fs::create_dir_all(dir.join("node")).unwrap();
    fs::write(dir.join("node/node.pid"), "2147483646\n").unwrap();
    check(
        &dir,
        &["status", "--cbdir", "node"],
        2,
        &["stopped (stale pid file in node)"],
    );
    let out = run(&dir, &["stop", "--cbdir", "node"]);
    assert_eq!(out.status.code(), Some(2));
}
