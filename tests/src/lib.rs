//! `switchyard-tests`: black-box integration tests and repository-wide checks.
//!
//! The tests in `tests/` run the real binaries and real third-party clients, and check
//! repository rules (every Rust file opens with a `//!` doc). This library holds only
//! helpers for them; it is never a dependency of the product.

use std::path::PathBuf;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
