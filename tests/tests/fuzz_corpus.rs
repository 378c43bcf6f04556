//! Replays every committed fuzz corpus and regression input on stable Rust.
//!
//! Each directory under `fuzz/corpus/` and `fuzz/regressions/` is named after a fuzz target;
//! every file in it goes through the same function the cargo-fuzz binary calls
//! (`switchyard_fuzz::TARGETS`), so a crash the fuzzer once found stays a test. It does not
//! fuzz: it runs only the inputs that are committed.

use std::fs;
use std::panic;
use std::path::PathBuf;

/// The files of every target directory under `fuzz/<kind>/`, as (target, file) pairs.
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let dir = switchyard_tests::workspace_root().join("fuzz").join(kind);
    let Ok(targets) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for target in targets.flatten() {
        let name = target.file_name().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = fs::read_dir(target.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        out.extend(files.into_iter().map(|f| (name.clone(), f)));
    }
    out.sort();
    out
}

/// Runs every input of `kind` and returns the failures as sentences.
fn replay(kind: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, path) in inputs(kind) {
        let Some(body) = switchyard_fuzz::target(&name) else {
            failures.push(format!("{}: no fuzz target named {name}", path.display()));
            continue;
        };
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if panic::catch_unwind(|| body(&data)).is_err() {
            failures.push(format!("{}: target {name} panicked", path.display()));
        }
    }
    failures
}

#[test]
fn every_target_has_a_committed_seed_corpus() {
    let root = switchyard_tests::workspace_root()
        .join("fuzz")
        .join("corpus");
    let empty: Vec<&str> = switchyard_fuzz::TARGETS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| fs::read_dir(root.join(name)).map_or(true, |mut d| d.next().is_none()))
        .collect();
    assert!(empty.is_empty(), "targets without seeds: {empty:?}");
}

#[test]
fn seed_corpora_replay_without_a_failure() {
    let failures = replay("corpus");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn fuzz_regressions_replay_without_a_failure() {
    let failures = replay("regressions");
    assert!(failures.is_empty(), "{failures:#?}");
}
