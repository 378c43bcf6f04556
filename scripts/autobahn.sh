#!/usr/bin/env bash
# Autobahn|Testsuite (wstest fuzzingclient, RFC 6455 + RFC 7692 conformance) against Switchyard's
# WebSocket endpoints, compared case by case with the committed autobahn/expected-results.json.
#
#   scripts/autobahn.sh                  all cases 1.* to 13.* against the echo example
#   scripts/autobahn.sh --server testee  the same against the `switchyard` server's own
#                                        `websocket.testee` transport (2 cores)
#   scripts/autobahn.sh --server echo --server testee   both, side by side (one wstest each)
#   scripts/autobahn.sh '5.*' '6.4.*'    a subset, compared with the same subset of expectations
#   scripts/autobahn.sh --update [CASE...]  record this run's results as the expectations
#                                        (all must pass; with patterns, only those cases change)
#
# Exit 0 only if, for every server, every case is OK, NON-STRICT or INFORMATIONAL and every
# case's behavior/behaviorClose equals the expected one. Environment: AUTOBAHN_TIMEOUT (seconds
# for each wstest run, default 1800), AUTOBAHN_VENV, AUTOBAHN_PYTHON2 (see autobahn/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

update=0
cases=()
servers=()
while [ $# -gt 0 ]; do
  case "$1" in
    --update) update=1 ;;
    --server)
      case "${2:-}" in
        echo|testee) servers+=("$2") ;;
        *) echo "error: --server takes echo or testee, not '${2:-}'" >&2; exit 2 ;;
      esac
      shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; exit 2 ;;
    *) cases+=("$1") ;;
  esac
  shift
done
[ ${#cases[@]} -gt 0 ] || cases=("*")
[ ${#servers[@]} -gt 0 ] || servers=(echo)
if [ "$update" = 1 ] && [ ${#servers[@]} -gt 1 ]; then
  echo "error: --update records one server's run; name one --server" >&2; exit 2
fi

expected="$root/autobahn/expected-results.json"
agent="switchyard"
export AUTOBAHN_TIMEOUT="${AUTOBAHN_TIMEOUT:-1800}"

echo "==> building the endpoints (release)"
cargo build --release --locked -p switchyard-io --example ws_echo --bin switchyard
target_dir="$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

# wstest is Python 2.7 code: installed once into a venv (the same install as
# ../shared/autobahn/run-fuzzingclient.sh), before any run starts, so parallel runs share it.
venv="${AUTOBAHN_VENV:-$HOME/.cache/autobahn-venv}"
version="25.10.1"
if ! "$venv/bin/wstest" -a 2>/dev/null | grep -q "AutobahnTestSuite $version"; then
  py2=""
  for c in "${AUTOBAHN_PYTHON2:-}" python2.7 python2 \
           "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' >/dev/null 2>&1; then
      py2="$c"; break
    fi
  done
  [ -n "$py2" ] || { echo "error: wstest needs Python 2.7; none found (set AUTOBAHN_PYTHON2)" >&2; exit 2; }
  echo "==> installing autobahntestsuite $version into $venv (with $py2)"
  tool="$(mktemp -d)"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check \
    --target "$tool" 'virtualenv<20.22'
  PYTHONPATH="$tool" python3 -m virtualenv -q -p "$py2" "$venv"
  rm -rf "$tool"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-python-version-warning \
    -r "$root/autobahn/requirements-py27.txt"
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pids=()
stop_servers() {
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}
trap stop_servers EXIT

# Starts one server, runs wstest against it, compares. Prints into $out/run.log.
run_one() {
  local name="$1" out="$target_dir/autobahn/$1" port rc=0
  pid=""
  trap '[ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; true' EXIT
  rm -rf "$out"; mkdir -p "$out"
  port="$(free_port)"
  if [ "$name" = echo ]; then
    "$target_dir/release/examples/ws_echo" "127.0.0.1:$port" > "$out/server.log" 2>&1 &
    pid=$!
  else
    mkdir -p "$out/node"
    cat > "$out/node/config.json" <<JSON
{"version": 2, "workers": [{"type": "router", "realms": [], "transports": [{
  "type": "websocket.testee",
  "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": $port},
  "options": {"max_message_size": 16777216, "max_frame_size": 16777216,
              "compression": {"deflate": {}}}}]}]}
JSON
    "$target_dir/release/switchyard" check --cbdir "$out/node"
    "$target_dir/release/switchyard" start --cbdir "$out/node" --cores 2 > "$out/server.log" 2>&1 &
    pid=$!
  fi
  echo "==> [$name] endpoint on 127.0.0.1:$port (pid $pid)"
  python3 - "ws://127.0.0.1:$port" "$agent" "${cases[@]}" > "$out/fuzzingclient.json" <<'PY'
import json, sys
print(json.dumps({"outdir": "./servers", "servers": [{"agent": sys.argv[2], "url": sys.argv[1]}],
                  "cases": sys.argv[3:], "exclude-cases": [], "exclude-agent-cases": {}}, indent=2))
PY
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
  echo "==> [$name] wstest fuzzingclient (cases: ${cases[*]})"
  (cd "$out" && timeout "$AUTOBAHN_TIMEOUT" "$venv/bin/wstest" -m fuzzingclient \
    -s fuzzingclient.json) > "$out/wstest.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { echo "[$name] wstest exited with $rc (log: $out/wstest.log)"; tail -n 20 "$out/wstest.log"; }
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
  echo "==> [$name] comparing with autobahn/expected-results.json (reports: $out/servers/)"
  compare "$out/servers/index.json"
}

compare() {
python3 - "$1" "$agent" "$expected" "$update" "${cases[@]}" <<'PY'
import fnmatch, json, sys

index, agent, expected_path, update = sys.argv[1:5]
patterns = sys.argv[5:]
PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}

def key(cid):
    return tuple(int(p) for p in cid.split("."))

def wanted(cid):
    return any(fnmatch.fnmatchcase(cid, p) for p in patterns)

try:
    with open(index) as f:
        got = {c: {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}
               for c, r in json.load(f).get(agent, {}).items()}
except (OSError, ValueError) as e:
    print("error: no usable report at %s (%s)" % (index, e))
    got = {}
try:
    with open(expected_path) as f:
        recorded = json.load(f)
except OSError:
    recorded = {}
expected = {c: r for c, r in recorded.items() if wanted(c)}

bad = []
for cid in sorted(set(got) | set(expected), key=key):
    g, e = got.get(cid), expected.get(cid)
    if g is None:
        bad.append("%-9s missing from the report (expected %s / %s)" % (cid, e["behavior"], e["behaviorClose"]))
        continue
    passing = g["behavior"] in PASS and g["behaviorClose"] in PASS
    if not passing:
        bad.append("%-9s %s / %s (not passing)" % (cid, g["behavior"], g["behaviorClose"]))
    elif e is None and update != "1":
        bad.append("%-9s %s / %s (no expectation recorded)" % (cid, g["behavior"], g["behaviorClose"]))
    elif e is not None and e != g:
        bad.append("%-9s %s / %s, expected %s / %s" % (cid, g["behavior"], g["behaviorClose"],
                                                      e["behavior"], e["behaviorClose"]))

print("%d cases in the report, %d expected" % (len(got), len(expected)))
if update == "1":
    if any("not passing" in b or "missing" in b for b in bad) or not got:
        print("refusing to update: not every case passes")
        for b in bad:
            print("  " + b)
        sys.exit(1)
    merged = {c: r for c, r in recorded.items() if not wanted(c)}
    merged.update(got)
    with open(expected_path, "w") as f:
        json.dump({c: merged[c] for c in sorted(merged, key=key)}, f, indent=1)
        f.write("\n")
    print("wrote %s (%d cases from this run, %d in all)" % (expected_path, len(got), len(merged)))
    sys.exit(0)
if not got:
    bad.append("no case results at all (server down or wstest timed out?)")
if bad:
    print("DIFFERENCES (%d):" % len(bad))
    for b in bad:
        print("  " + b)
    sys.exit(1)
print("all %d cases pass and match the expectations" % len(got))
PY
}

# Each run's output goes to its own log; the runs go in parallel (wstest is single-threaded).
run_pids=()
for name in "${servers[@]}"; do
  mkdir -p "$target_dir/autobahn"
  run_one "$name" > "$target_dir/autobahn/$name.log" 2>&1 &
  run_pids+=($!)
  pids+=($!)
done
status=0
for i in "${!servers[@]}"; do
  rc=0
  wait "${run_pids[$i]}" || rc=$?
  echo
  echo "==================== Autobahn|Testsuite against: ${servers[$i]} (exit $rc)"
  cat "$target_dir/autobahn/${servers[$i]}.log"
  [ "$rc" = 0 ] || status=1
done
trap - EXIT
exit "$status"
