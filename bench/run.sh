#!/usr/bin/env bash
# Rolegate's HTTP benchmark (docs/benchmarks.md): starts the release server on a database
# seeded by `rolegate seed`, then runs the load generator at 1 and 4 client threads.
# Usage: cargo build --release -p rolegate -p rolegate-bench
#        rolegate seed --database sqlite://$DB --manifest manifest.json   (once; ~1 min)
#        DB=... bench/run.sh        (run from the directory holding manifest.json)
#        DATABASE=postgres://…?schema=… bench/run.sh   (PostgreSQL instead of the SQLite $DB)
set -euo pipefail
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
DB=${DB:-bench.db}
DATABASE=${DATABASE:-sqlite://$DB}
SECRET=benchsecret0123456789
"$BIN/rolegate" serve --database "$DATABASE" --auth-hs256-secret $SECRET --admin bench-admin --listen 127.0.0.1:18090 --authzen-client bench-pep --rate-limit-per-ip 0 --rate-limit-per-subject 0 > server.out 2> server.log &
PID=$!
start=$(date +%s.%N)
until grep -q listening server.out 2>/dev/null; do kill -0 $PID 2>/dev/null || { cat server.log >&2; exit 1; }; sleep 0.1; done
echo "startup (migrate + index build): $(echo "$(date +%s.%N) - $start" | bc) s; RSS $(grep VmRSS /proc/$PID/status)"
for threads in 1 4; do
  echo "## $threads client thread(s)"
  "$BIN/rolegate-load" --origin http://127.0.0.1:18090 --secret $SECRET --manifest manifest.json --seconds ${SECONDS_PER:-20} --threads $threads --server-pid $PID --scenario my-assignments --scenario resource-assignments --scenario portal-my-roles --scenario portal-approvals
done
# Each activation uses a seeded eligible assignment once: the 4-thread run starts after the
# ones the 1-thread run used.
"$BIN/rolegate-load" --origin http://127.0.0.1:18090 --secret $SECRET --manifest manifest.json --seconds 10 --threads 1 --server-pid $PID --scenario activate
"$BIN/rolegate-load" --origin http://127.0.0.1:18090 --secret $SECRET --manifest manifest.json --seconds 10 --threads 4 --server-pid $PID --scenario activate --skip 10000
# AuthZEN decisions about the subjects and resources just activated (about half permitted),
# at one connection and at 32.
for threads in 1 32; do
  "$BIN/rolegate-load" --origin http://127.0.0.1:18090 --secret $SECRET --manifest manifest.json --seconds 10 --threads $threads --server-pid $PID --scenario authzen-evaluation --scenario authzen-batch
done
kill -TERM $PID; wait $PID || true
