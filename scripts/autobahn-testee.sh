#!/usr/bin/env bash
# Autobahn|Testsuite against the `switchyard` server's own `websocket.testee` transport (the
# echo endpoint served by the router binary on 2 cores), compared case by case with the same
# autobahn/expected-results.json as the echo example. Kept as a short name for
# `scripts/autobahn.sh --server testee`; all arguments (case patterns) pass through.
exec "$(dirname "${BASH_SOURCE[0]}")/autobahn.sh" --server testee "$@"
