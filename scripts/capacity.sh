#!/usr/bin/env bash
# The capacity proof (issue 6): Switchyard on its embedded default, confined to 2 CPUs and
# one 4 GiB memory cgroup with as many worker processes as the per-process file limit
# requires, holds SESSIONS WebSocket WAMP sessions each subscribed to a topic; a broadcast
# must reach every one, a sample of them (one in 1,000) calls an RPC, and the run passes only
# if every session is alive at the end and the cgroup never hit its limit. It prints the
# cgroup's peak memory.max_usage_in_bytes and the memory per idle session.
#
# What it does: builds the two release binaries (--locked), runs `switchyard-load capacity`
# under a time limit (the run is bounded by its own timeline; the limit is a backstop, and
# the load generator's children die with it). Loopback only. It needs the kernel limits
# scripts/test.sh's set-up raises; the load generator names the one that stops it.
# What it does not do: tune anything on the machine, or retry.
#
# Usage: scripts/capacity.sh
# Environment: SESSIONS (default 180000), RATE (new sessions/s, default 1000), MEMORY
#   (default 4GiB), CORES (default 2), CAPACITY_TIMEOUT (s, default 900), OUT (JSON report
#   path, default /tmp/capacity-<pid>.json; the verdict goes to OUT.verdict.json).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SESSIONS="${SESSIONS:-180000}"
RATE="${RATE:-1000}"
MEMORY="${MEMORY:-4GiB}"
CORES="${CORES:-2}"
OUT="${OUT:-/tmp/capacity-$$.json}"

cargo build --release --locked -p switchyard-io --bin switchyard -p switchyard-loadgen --bin switchyard-load
# An absolute path: the load generator starts the router in a directory of its own.
target="$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
echo "capacity: $SESSIONS sessions at $RATE/s, $CORES CPUs, $MEMORY (load average $(cut -d' ' -f1-3 /proc/loadavg))"
timeout --kill-after=30 "${CAPACITY_TIMEOUT:-900}" \
  "$target/release/switchyard-load" capacity --router-bin "$target/release/switchyard" \
  --cores "$CORES" --memory "$MEMORY" --sessions "$SESSIONS" --rate "$RATE" --json "$OUT"
