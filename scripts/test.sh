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

# --- set-up for client tests (owned by the server tests; tests/tests/server_clients.rs) ---
# Autobahn|Python in a venv under $HOME/.cache/switchyard-py, Autobahn|JS (with msgpack5 and
# its other dependencies, pinned by package-lock.json) in tests/clients/js/node_modules.
# Each is reinstalled only when its pins change, so a second run costs a few milliseconds.
step "set-up: Autobahn|Python and Autobahn|JS for the client tests"
client_setup() {
  local venv="$HOME/.cache/switchyard-py" req=tests/clients/py/requirements.txt
  if ! command -v python3 >/dev/null || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv nodejs npm >/dev/null
  fi
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
  fi
  if ! cmp -s "$req" "$venv/.switchyard-requirements"; then
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.switchyard-requirements"
  fi
  local js=tests/clients/js
  if ! cmp -s "$js/package-lock.json" "$js/node_modules/.switchyard-lock"; then
    (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$js/package-lock.json" "$js/node_modules/.switchyard-lock"
  fi
}
client_setup
# --- end of set-up for client tests ---

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace"
cargo test --workspace --locked

if [ "${SKIP_AUTOBAHN:-0}" != 1 ] && [ -x scripts/autobahn.sh ]; then
  step "Autobahn|Testsuite against the echo example and the server's websocket.testee, in parallel"
  scripts/autobahn.sh --server echo --server testee
fi
