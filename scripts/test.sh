#!/usr/bin/env bash
# The whole test suite, with all the set-up it needs on a fresh machine.
# README.md names this script; .ci/run calls exactly it.
#
#   scripts/test.sh            everything (set-up, fmt, clippy, cargo test, Autobahn|Testsuite)
#   SKIP_AUTOBAHN=1 scripts/test.sh   everything but the conformance run (for quick local loops)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "set-up: Rust components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace"
cargo test --workspace --locked

if [ "${SKIP_AUTOBAHN:-0}" != 1 ] && [ -x scripts/autobahn.sh ]; then
  step "Autobahn|Testsuite against the WebSocket echo endpoint"
  scripts/autobahn.sh
fi
