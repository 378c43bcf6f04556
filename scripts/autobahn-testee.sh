#!/usr/bin/env bash
# Autobahn|Testsuite against the `switchyard` server's own `websocket.testee` transport
# (the echo endpoint served by the router binary, 2 cores), compared case by case with the
# same autobahn/expected-results.json as scripts/autobahn.sh (which starts the standalone
# ws_echo example and cannot take a URL, hence this wrapper around the shared harness).
#
#   scripts/autobahn-testee.sh                 all cases (release build; ~10 min of wstest)
#   scripts/autobahn-testee.sh '1.*' '5.*'     a subset, compared with the same subset
#
# Environment: SWITCHYARD_PROFILE=debug to use a debug build (quicker to build, slower to
# run); the wstest variables of ../shared/autobahn/run-fuzzingclient.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=("*")
profile="${SWITCHYARD_PROFILE:-release}"
harness="$root/../shared/autobahn/run-fuzzingclient.sh"
[ -x "$harness" ] || { echo "error: $harness not found" >&2; exit 2; }

if [ "$profile" = release ]; then
  cargo build --release --locked -p switchyard-io --bin switchyard
else
  cargo build --locked -p switchyard-io --bin switchyard
fi
target_dir="$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
dir_name="$profile"; [ "$profile" = release ] || dir_name=debug
bin="$target_dir/$dir_name/switchyard"
out="$target_dir/autobahn-testee"
node="$out/node"
mkdir -p "$node"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat > "$node/config.json" <<JSON
{"version": 2, "workers": [{"type": "router", "realms": [], "transports": [{
  "type": "websocket.testee",
  "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": $port},
  "options": {"max_message_size": 16777216, "max_frame_size": 16777216,
              "compression": {"deflate": {}}}}]}]}
JSON
"$bin" check --cbdir "$node"
"$bin" start --cbdir "$node" --cores 2 > "$out/server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
"$harness" --out "$out" --agent switchyard "ws://127.0.0.1:$port" "${cases[@]}" || true

python3 - "$out/servers/index.json" "$root/autobahn/expected-results.json" "${cases[@]}" <<'PY'
import fnmatch, json, sys
index, expected_path, patterns = sys.argv[1], sys.argv[2], sys.argv[3:]
PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}
key = lambda c: tuple(int(p) for p in c.split("."))
got = {c: {"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}
       for c, r in json.load(open(index)).get("switchyard", {}).items()}
try:
    recorded = json.load(open(expected_path))
except OSError:
    # No expectations recorded yet (scripts/autobahn.sh --update writes them): every case
    # must still pass.
    print("note: %s not found; checking that every case passes" % expected_path)
    recorded = {}
expected = {c: r for c, r in recorded.items()
            if any(fnmatch.fnmatchcase(c, p) for p in patterns)}
bad = []
for c in sorted(set(got) | set(expected), key=key):
    g, e = got.get(c), expected.get(c)
    if g is None:
        bad.append("%-9s missing from the report" % c)
    elif g["behavior"] not in PASS or g["behaviorClose"] not in PASS:
        bad.append("%-9s %s / %s (not passing)" % (c, g["behavior"], g["behaviorClose"]))
    elif e is not None and e != g:
        bad.append("%-9s %s / %s, expected %s / %s" % (c, g["behavior"], g["behaviorClose"],
                                                      e["behavior"], e["behaviorClose"]))
print("%d cases in the report, %d expected" % (len(got), len(expected)))
if bad or not got:
    print("DIFFERENCES (%d):" % len(bad))
    for b in bad:
        print("  " + b)
    sys.exit(1)
print("all %d cases pass and match the expectations" % len(got))
PY
