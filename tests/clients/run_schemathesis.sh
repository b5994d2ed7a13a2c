#!/usr/bin/env bash
# Runs schemathesis (tests/clients/requirements.txt) against a running Rolegate over its own
# GET /openapi.json, as a tenant administrator.
#
#   tests/clients/run_schemathesis.sh http://127.0.0.1:8080 <admin bearer token> [extra schemathesis args]
#
# PYTHON selects the interpreter that has schemathesis (default: python3). Bounded so that
# it finishes within about two minutes on two cores. Exits non-zero on any failed check.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 SERVER_URL ADMIN_TOKEN [schemathesis args...]" >&2
    exit 2
fi
url="${1%/}"
token="$2"
shift 2
python="${PYTHON:-python3}"

# Unset proxies: the server is local.
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy

exec "$python" -m schemathesis.cli run "$url/openapi.json" \
    --url "$url" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-8}" \
    --max-time "${SCHEMATHESIS_MAX_TIME:-75}" \
    --workers 2 \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --request-timeout 10 \
    --no-color \
    --suppress-health-check all \
    --warnings off \
    --generation-database none \
    "$@"
