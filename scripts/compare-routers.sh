#!/usr/bin/env bash
# Side-by-side runs of the same `pubsub` and `rpc` scenarios against Crossbar.io and any
# other WAMP router, printing each figure and its ratio to Crossbar's.
#
# What it does: installs Crossbar.io 26.10.1 from PyPI into a venv under $HOME/.cache (once),
# fixing the bjdata build (see shared/design/crossbar-reference.md), starts it on
# 127.0.0.1:8090 with scripts/crossbar-config.json (realm1, anonymous with every permission,
# WebSocket /ws and RawSocket on one port: Switchyard's embedded default) pinned to one CPU,
# runs the load generator pinned to another, then the same against every NAME=URL given.
# Every run is bounded in time, loopback only; Crossbar is stopped by its pid (and started
# with --shutdownafter as a backstop).
#
# What it does not do: start the other routers (start them yourself, pinned with
# `taskset -c 0`), or compare anything but JSON over the given URL's transport.
#
# Usage: scripts/compare-routers.sh [NAME=URL ...]
#   e.g. scripts/compare-routers.sh switchyard=ws://127.0.0.1:8080/ws
# Environment: DURATION (s, default 5), SUBSCRIBERS (default 1000), PUB_RATE (events/s
#   published, default 100), ROUTER_CPU (0), LOAD_CPU (1), LOADGEN_BIN (default: build it),
#   SKIP_CROSSBAR=1 to compare only the given URLs, OUT (results folder),
#   OTHER_ROUTER_PID (pid of the other router, for its CPU and memory figures),
#   LOAD_SPIN_US (the load generator's --spin-us: busy polling before it sleeps, default 0),
#   IN_FLIGHT (calls in flight per caller in the second rpc run, default 16).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
DURATION="${DURATION:-5}"
SUBSCRIBERS="${SUBSCRIBERS:-1000}"
PUB_RATE="${PUB_RATE:-100}"
ROUTER_CPU="${ROUTER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
OUT="${OUT:-$(mktemp -d /tmp/compare-routers.XXXXXX)}"
VENV="${CROSSBAR_VENV:-$HOME/.cache/crossbar-venv}"
mkdir -p "$OUT"

if [[ -z "${LOADGEN_BIN:-}" ]]; then
    (cd "$root" && cargo build --release -p switchyard-loadgen >&2)
    LOADGEN_BIN="${CARGO_TARGET_DIR:-$root/target}/release/switchyard-load"
fi

install_crossbar() {
    if [[ -x "$VENV/bin/crossbar" ]] && "$VENV/bin/crossbar" version >/dev/null 2>&1; then
        return
    fi
    echo "installing crossbar==26.10.1 into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q crossbar==26.10.1
    # bjdata 0.6.6 has no cp311 wheel and its isolated sdist build targets NumPy 1.x:
    # rebuild it against the NumPy 2 that is installed.
    "$VENV/bin/pip" install -q --no-build-isolation --no-binary bjdata --force-reinstall --no-deps bjdata==0.6.6
}

wait_port() {
    local port="$1"
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

crossbar_pid=""
cleanup() {
    if [[ -n "$crossbar_pid" ]] && kill -0 "$crossbar_pid" 2>/dev/null; then
        kill -TERM "$crossbar_pid" 2>/dev/null || true
        for _ in $(seq 1 20); do kill -0 "$crossbar_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$crossbar_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# One router: sequential RPC round trips, RPC with 16 calls in flight, pubsub fan-out.
run_router() {
    local name="$1" url="$2"
    local common=(--url "$url" --serializer json --cpus "$LOAD_CPU" --duration "$DURATION" --warmup 1 --drain 2
        --spin-us "${LOAD_SPIN_US:-0}")
    if [[ -n "${ROUTER_PID:-}" ]]; then
        common+=(--router-pid "$ROUTER_PID")
    fi
    echo "== $name ($url)" >&2
    "$LOADGEN_BIN" rpc "${common[@]}" --callers 1 --callees 1 --in-flight 1 --json "$OUT/$name-rpc-seq.json" >&2 || true
    "$LOADGEN_BIN" rpc "${common[@]}" --callers 4 --callees 4 --in-flight "${IN_FLIGHT:-16}" --json "$OUT/$name-rpc.json" >&2 || true
    "$LOADGEN_BIN" pubsub "${common[@]}" --publishers 1 --subscribers "$SUBSCRIBERS" --rate "$PUB_RATE" --json "$OUT/$name-pubsub.json" >&2 || true
}

names=()
if [[ "${SKIP_CROSSBAR:-0}" != 1 ]]; then
    install_crossbar
    cbdir="$OUT/crossbar"
    mkdir -p "$cbdir"
    cp "$here/crossbar-config.json" "$cbdir/config.json"
    shutdown_after=$(( (DURATION + 20) * 6 + 120 ))
    taskset -c "$ROUTER_CPU" "$VENV/bin/crossbar" start --cbdir "$cbdir" --loglevel warn \
        --shutdownafter "$shutdown_after" >"$OUT/crossbar.log" 2>&1 &
    crossbar_pid=$!
    ROUTER_PID=$crossbar_pid
    if ! wait_port 8090; then
        echo "crossbar did not start; see $OUT/crossbar.log" >&2
        exit 1
    fi
    run_router crossbar ws://127.0.0.1:8090/ws
    names+=(crossbar)
    cleanup
    crossbar_pid=""
    ROUTER_PID=""
fi
for arg in "$@"; do
    name="${arg%%=*}"
    url="${arg#*=}"
    ROUTER_PID="${OTHER_ROUTER_PID:-}"
    run_router "$name" "$url"
    names+=("$name")
done

python3 - "$OUT" "${names[@]}" <<'PY'
import json, os, sys
out, names = sys.argv[1], sys.argv[2:]
rows = [("rpc-seq", "per_sec", "sequential calls/s"), ("rpc-seq", "p50_us", "sequential p50 µs"),
        ("rpc-seq", "p99_us", "sequential p99 µs"),
        ("rpc", "per_sec", f"calls/s (4x{os.environ.get('IN_FLIGHT', '16')} in flight)"),
        ("rpc", "failures", "rpc failures"), ("pubsub", "per_sec", "events/s delivered"),
        ("pubsub", "p99_us", "event p99 µs"), ("pubsub", "lost", "events lost or late"),
        ("rpc", "router_cpu_ms", "router CPU ms (rpc run)"), ("rpc", "loadgen_cpu_ms", "load generator CPU ms (rpc run)"),
        ("pubsub", "router_cpu_ms", "router CPU ms (pubsub run)"), ("pubsub", "loadgen_cpu_ms", "load generator CPU ms (pubsub run)"),
        # The measured window alone: which side saturated (1,000 ms per second of window is a full core).
        ("rpc-seq", "router_cpu_window_ms", "router CPU ms in the window (sequential)"),
        ("rpc-seq", "loadgen_cpu_window_ms", "load generator CPU ms in the window (sequential)"),
        ("rpc", "router_cpu_window_ms", "router CPU ms in the window (rpc)"),
        ("rpc", "loadgen_cpu_window_ms", "load generator CPU ms in the window (rpc)"),
        ("pubsub", "router_cpu_window_ms", "router CPU ms in the window (pubsub)"),
        ("pubsub", "loadgen_cpu_window_ms", "load generator CPU ms in the window (pubsub)")]
def fig(name, kind, key):
    try:
        with open(os.path.join(out, f"{name}-{kind}.json")) as f:
            return json.load(f)["figures"].get(key)
    except (OSError, ValueError, KeyError):
        return None
base = names[0] if names else None
print("| figure | " + " | ".join(names) + (" | ratio to " + base if len(names) > 1 else "") + " |")
print("|---" * (len(names) + (2 if len(names) > 1 else 1)) + "|")
for kind, key, label in rows:
    vals = [fig(n, kind, key) for n in names]
    cells = ["-" if v is None else f"{v:,.1f}" for v in vals]
    ratios = []
    if len(names) > 1:
        b = vals[0]
        for v in vals[1:]:
            ratios.append("-" if not b or v is None else f"{v / b:.2f}x")
    print(f"| {label} | " + " | ".join(cells) + (" | " + ", ".join(ratios) if ratios else "") + " |")
print(f"\nraw results: {out}")
PY
