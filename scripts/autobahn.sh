#!/usr/bin/env bash
# Autobahn|Testsuite (wstest fuzzingclient, RFC 6455 + RFC 7692 conformance) against the
# WebSocket echo endpoint (`io/examples/ws_echo.rs`), compared case by case with the
# committed autobahn/expected-results.json.
#
#   scripts/autobahn.sh                  all cases 1.* to 13.* (~10 min, most of it 12.*/13.*)
#   scripts/autobahn.sh '5.*' '6.4.*'    a subset, compared with the same subset of expectations
#   scripts/autobahn.sh --update [CASE...]  record this run's results as the expectations
#                                        (all must pass; with patterns, only those cases change)
#
# Exit 0 only if every case is OK, NON-STRICT or INFORMATIONAL and every case's
# behavior/behaviorClose equals the expected one. Environment: AUTOBAHN_TIMEOUT (seconds for
# the wstest run, default 1800), AUTOBAHN_VENV, AUTOBAHN_PYTHON2 (see autobahn/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

update=0
cases=()
for arg in "$@"; do
  case "$arg" in
    --update) update=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) cases+=("$arg") ;;
  esac
done
[ ${#cases[@]} -gt 0 ] || cases=("*")

expected="$root/autobahn/expected-results.json"
agent="switchyard"
export AUTOBAHN_TIMEOUT="${AUTOBAHN_TIMEOUT:-1800}"

echo "==> building the echo endpoint (release)"
cargo build --release --locked -p switchyard-io --example ws_echo
target_dir="$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
server="$target_dir/release/examples/ws_echo"
out="$target_dir/autobahn"
mkdir -p "$out"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$server" "127.0.0.1:$port" > "$out/server.log" 2>&1 &
server_pid=$!
stop_server() {
  if kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap stop_server EXIT
echo "==> echo endpoint on 127.0.0.1:$port (pid $server_pid)"

shared="$root/../shared/autobahn/run-fuzzingclient.sh"
if [ -x "$shared" ]; then
  # The harness prints its own summary; its exit status is superseded by the comparison.
  "$shared" --out "$out" --agent "$agent" "ws://127.0.0.1:$port" "${cases[@]}" || true
else
  # The same install and run as the shared harness, for a clone without it beside it.
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
  rm -rf "$out/servers"
  python3 - "ws://127.0.0.1:$port" "$agent" "${cases[@]}" > "$out/fuzzingclient.json" <<'PY'
import json, sys
print(json.dumps({"outdir": "./servers", "servers": [{"agent": sys.argv[2], "url": sys.argv[1]}],
                  "cases": sys.argv[3:], "exclude-cases": [], "exclude-agent-cases": {}}, indent=2))
PY
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
  echo "==> wstest fuzzingclient (cases: ${cases[*]})"
  rc=0
  (cd "$out" && timeout "$AUTOBAHN_TIMEOUT" "$venv/bin/wstest" -m fuzzingclient \
    -s fuzzingclient.json) > "$out/wstest.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { echo "wstest exited with $rc (log: $out/wstest.log)"; tail -n 20 "$out/wstest.log"; }
fi
stop_server
trap - EXIT

echo
echo "==> comparing with autobahn/expected-results.json"
python3 - "$out/servers/index.json" "$agent" "$expected" "$update" "${cases[@]}" <<'PY'
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
