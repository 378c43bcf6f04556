//! The README's first command and its Autobahn|JS snippet, as a user on a fresh machine
//! runs them: `switchyard start` with no arguments in an empty directory serves the
//! embedded default (WebSocket on 127.0.0.1:8080, path `/ws`), and the five-line snippet,
//! taken verbatim from README.md, registers a procedure and calls it through the node.
//!
//! It runs the debug binary rather than `cargo run --release` (the release profile's fat
//! LTO build takes minutes); the command line after `--` is the same. It needs port 8080,
//! which the embedded default fixes; it does not test the RawSocket side of the default.

use std::process::Stdio;
use std::time::Duration;

use switchyard_tests::{node_js, workspace_root, Node};

const START: &str = "cargo run --release -p switchyard-io --bin switchyard -- start";
const MARKER: &str = "<!-- readme-snippet:";

/// The ```js block that follows the snippet marker in README.md.
fn snippet(readme: &str) -> String {
    let after = &readme[readme.find(MARKER).expect("the README marks its snippet")..];
    let body = &after[after.find("```js\n").expect("a js block after the marker") + 6..];
    body[..body.find("```").expect("the js block ends")].to_owned()
}

#[test]
fn the_readme_start_command_and_js_snippet_work_against_the_embedded_default() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    assert!(readme.contains(START), "README's start command changed");
    let code = snippet(&readme);
    assert_eq!(code.lines().count(), 5, "{code}");

    let mut node = Node::start_default(&[8080]);
    let log = node.log_lines().join("\n");
    assert!(
        log.contains("embedded default configuration") && log.contains("127.0.0.1:8080"),
        "{log}"
    );
    let mut cmd = node_js();
    let out = cmd
        .arg("-e")
        .arg(&code)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("2 + 3 = 5"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.signal("TERM");
    let status = node.wait(Duration::from_secs(30)).expect("the node exits");
    assert_eq!(status.code(), Some(0));
}
