#!/usr/bin/env bash
# Screenshots of the portal for docs/portal (light and dark of every main page), made by
# running tests/portal/flows.py against a fresh `rolegate serve --demo`; docs/portal keeps
# the ones docs/portal.md shows.
#
#   tests/portal/screenshots.sh [OUT_DIR]        (default docs/portal, relative to the repo)
#
# Uses the already-built binary $ROLEGATE_BIN (default /var/tmp/rolegate-target/debug/rolegate;
# nothing is compiled here), the Python of $ROLEGATE_PYTHON (default the venv of .ci/run,
# /var/tmp/rolegate-venv/bin/python, which has tests/portal/requirements.txt) and Debian's
# Chromium (tests/portal/browser.py). The server gets a random HS256 secret, a free port and
# a database in a temporary folder; both are gone when the script ends, pass or fail.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${ROLEGATE_BIN:-/var/tmp/rolegate-target/debug/rolegate}"
python="${ROLEGATE_PYTHON:-/var/tmp/rolegate-venv/bin/python}"
out="${1:-docs/portal}"
case "$out" in /*) ;; *) out="$repo/$out" ;; esac

[ -x "$bin" ] || { echo "no rolegate binary at $bin (set ROLEGATE_BIN)" >&2; exit 1; }
[ -x "$python" ] || { echo "no Python at $python (set ROLEGATE_PYTHON)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/rolegate-screenshots.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

"$bin" serve --demo --auth-hs256-secret "$secret" --listen 127.0.0.1:0 \
  --database "sqlite://$work/r.db" >"$work/stdout" 2>"$work/stderr" &
server_pid=$!

# The origin comes from the line `rolegate listening on http://127.0.0.1:PORT`.
origin=""
for _ in $(seq 1 300); do
  origin="$(sed -n 's/^rolegate listening on \(https\{0,1\}:\/\/[^ ]*\).*$/\1/p' "$work/stdout" | head -n 1)"
  [ -n "$origin" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "rolegate serve exited before listening:" >&2
    cat "$work/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
[ -n "$origin" ] || { echo "rolegate serve did not print its address within 30 s:" >&2; tail -n 20 "$work/stderr" >&2; exit 1; }
echo "server: $origin (pid $server_pid, log $work/stderr while it runs)"

# Bearer tokens for the API checks: the demo's people by external id, and its administrator.
token() {
  "$bin" token --secret "$secret" --subject "$1" --name "$2" --mfa --ttl 3600
}
"$python" - "$work/fixture.json" \
  "$(token alice 'Alice Engineer')" "$(token bob 'Bob Approver')" \
  "$(token dave 'Dave Oncall')" "$(token carol 'Carol Auditor')" \
  "$(token demo-admin 'Demo Administrator')" <<'EOF'
import json, sys
path, alice, bob, dave, carol, admin = sys.argv[1:]
with open(path, "w") as f:
    json.dump({"tokens": {"alice": alice, "bob": bob, "dave": dave, "carol": carol, "admin": admin}}, f)
EOF

mkdir -p "$out"
status=0
"$python" "$repo/tests/portal/flows.py" "$origin" "$work/fixture.json" --screenshots "$out" || status=$?
# docs/portal keeps the pictures docs/portal.md shows (the others stay out of the repository).
if [ "$status" -eq 0 ] && [ "$out" = "$repo/docs/portal" ]; then
  keep="$(grep -o 'portal/[a-z0-9-]*\.png' "$repo/docs/portal.md" | sed 's|portal/||' | sort -u)"
  for f in "$out"/*.png; do
    printf '%s\n' "$keep" | grep -qx "$(basename "$f")" || rm -f "$f"
  done
fi
if [ "$status" -ne 0 ]; then
  echo "flows.py failed (exit $status); the server's last log lines:" >&2
  tail -n 20 "$work/stderr" >&2
fi
exit "$status"
