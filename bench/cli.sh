#!/usr/bin/env bash
# The command line's answer times (docs/benchmarks.md "The command line"): starts the release
# server on a database seeded by `rolegate seed`, signs the seeded `portal-requester` in
# (50 eligible, 10 active assignments among 1,000,000) and times whole `rolegate` processes
# with hyperfine: `roles`, `roles --scope`, and `activate` (each run a new request: the
# one before is cancelled or ended first, untimed).
# Usage: cargo build --release -p rolegate
#        rolegate seed --database sqlite://$DB --manifest manifest.json   (once; ~1 min)
#        DB=... bench/cli.sh
set -euo pipefail
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
DB=${DB:-bench.db}
SECRET=benchsecret0123456789
ORIGIN=http://127.0.0.1:18091
export XDG_CONFIG_HOME=$(mktemp -d)
trap 'kill $PID 2>/dev/null; rm -rf "$XDG_CONFIG_HOME"' EXIT
"$BIN/rolegate" serve --database "sqlite://$DB" --auth-hs256-secret $SECRET --admin bench-admin \
  --listen 127.0.0.1:18091 --rate-limit-per-ip 0 --rate-limit-per-subject 0 > cli-server.out 2> cli-server.log &
PID=$!
until grep -q listening cli-server.out 2>/dev/null; do kill -0 $PID 2>/dev/null || { cat cli-server.log >&2; exit 1; }; sleep 0.1; done
echo $SECRET > "$XDG_CONFIG_HOME/secret"
ADMIN=$("$BIN/rolegate" token --secret $SECRET --subject bench-admin)
ME=$(curl -s -H "Authorization: Bearer $ADMIN" \
  "$ORIGIN/scim/v2/Users?filter=userName%20eq%20%22portal-requester@bench.example%22" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Resources"][0]["id"])')
"$BIN/rolegate" login --server $ORIGIN --dev-user "$ME" --mfa --secret-file "$XDG_CONFIG_HOME/secret"
# An eligibility of the requester's that is not active: the one `activate` uses.
SCOPE=$("$BIN/rolegate" roles -o json | python3 -c '
import json, sys
a = json.load(sys.stdin)
active = {(x["roleDefinitionId"], x["resourceId"]) for x in a if x["assignmentState"] == "Active"}
print(next(x["resource"]["externalId"] for x in a
           if x["assignmentState"] == "Eligible" and (x["roleDefinitionId"], x["resourceId"]) not in active))')
cat > "$XDG_CONFIG_HOME/reset.sh" <<RESET
#!/bin/sh
for id in \$("$BIN/rolegate" requests --pending -o json | python3 -c 'import json,sys; print(" ".join(r["id"] for r in json.load(sys.stdin)))'); do
  "$BIN/rolegate" request cancel \$id > /dev/null
done
"$BIN/rolegate" deactivate contributor --scope "$SCOPE" > /dev/null 2>&1 || true
RESET
chmod +x "$XDG_CONFIG_HOME/reset.sh"
hyperfine -N --warmup 5 --runs 100 "$BIN/rolegate roles" "$BIN/rolegate roles --scope $SCOPE"
hyperfine --warmup 2 --runs 50 --prepare "$XDG_CONFIG_HOME/reset.sh" \
  "$BIN/rolegate activate contributor --scope $SCOPE --for 1h --reason bench"
"$XDG_CONFIG_HOME/reset.sh"
