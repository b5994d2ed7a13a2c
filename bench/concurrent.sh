#!/usr/bin/env bash
# Issue 14's load (docs/benchmarks.md "Under concurrent load"): 32 keep-alive connections
# on the same two cores as the server, the scenarios a busy tenant's portal, CLI and
# automation produce together, each beside `GET /healthz` (the ceiling of the HTTP path).
# Usage: cargo build --release -p rolegate -p rolegate-bench
#        rolegate seed --database sqlite://$DB --manifest manifest.json [sizes]  (once)
#        DB=... bench/concurrent.sh       (run from the directory holding manifest.json)
#        DATABASE=postgres://…?schema=… bench/concurrent.sh
#        RATE=2000 bench/concurrent.sh    (open loop at 2,000 requests/s, latency from
#                                          when each was due; default: closed loop)
set -euo pipefail
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
DB=${DB:-bench.db}
DATABASE=${DATABASE:-sqlite://$DB}
SECRET=benchsecret0123456789
CONNECTIONS=${CONNECTIONS:-32}
SECONDS_PER=${SECONDS_PER:-20}
"$BIN/rolegate" serve --database "$DATABASE" --auth-hs256-secret $SECRET --admin bench-admin --listen 127.0.0.1:18090 --rate-limit-per-ip 0 --rate-limit-per-subject 0 > server.out 2> server.log &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
until grep -q listening server.out 2>/dev/null; do kill -0 $PID 2>/dev/null || { cat server.log >&2; exit 1; }; sleep 0.1; done
echo "## $CONNECTIONS connections, ${RATE:-closed loop}${RATE:+ requests/s open loop}, $SECONDS_PER s per scenario"
"$BIN/rolegate-load" --origin http://127.0.0.1:18090 --secret $SECRET --manifest manifest.json \
  --seconds "$SECONDS_PER" --connections "$CONNECTIONS" --rate "${RATE:-0}" --server-pid $PID \
  --scenario healthz --scenario my-assignments --scenario resource-assignments --scenario read-resource --scenario activate
