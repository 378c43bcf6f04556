//! Repository tidiness: every Rust source file opens with a `//!` doc comment.

use std::fs;
use std::path::Path;

fn visit(dir: &Path, bad: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name == "target" || name.starts_with('.') || name == "node_modules" {
                continue;
            }
            visit(&path, bad);
        } else if name.ends_with(".rs") {
            let text = fs::read_to_string(&path).unwrap_or_default();
            if !text.trim_start().starts_with("//!") {
                bad.push(path.display().to_string());
            }
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let root = switchyard_tests::workspace_root();
    let mut bad = Vec::new();
    for dir in ["core", "io", "loadgen", "bench", "tests", "fuzz"] {
        visit(&root.join(dir), &mut bad);
    }
    assert!(
        bad.is_empty(),
        "files without a leading `//!` doc: {bad:#?}"
    );
}
