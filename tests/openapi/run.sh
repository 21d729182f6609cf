#!/usr/bin/env bash
# Our served OpenAPI document, checked two ways against a running registry:
#  1. openapi.yaml is YAML of the same document as openapi.json, and the
#     entity schemas match the upstream contract in ../shared/reference
#     (that comparison is skipped when the folder is absent);
#  2. property-based fuzzing with schemathesis on both prefixes, bounded in
#     examples and time: no 5xx, every response conforms to the document.
# Env: MR_BIN (server binary), OPENAPI_FUZZ_SECONDS (per prefix, default 40),
# OPENAPI_FUZZ_EXAMPLES (per operation and phase, default 10), OPENAPI_SEED.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO/.cache/venv-schemathesis"
WANT="schemathesis==4.32.5"
MR_BIN="${MR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/registry-local}"
SECONDS_PER_PREFIX="${OPENAPI_FUZZ_SECONDS:-40}"
EXAMPLES="${OPENAPI_FUZZ_EXAMPLES:-10}"
SEED="${OPENAPI_SEED:-20261127}"

if [[ ! -f "$VENV/.complete" || "$(cat "$VENV/.complete")" != "$WANT" ]]; then
  echo "[openapi] creating $VENV ($WANT)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$WANT"
  echo -n "$WANT" >"$VENV/.complete"
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d)
PORT=$PORT MR_DATA_DIR="$DATA" "$MR_BIN" >"$DATA/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$PORT/readyz/health" >/dev/null 2>&1 && break
  sleep 0.1
done

status=0
"$VENV/bin/python" "$REPO/tests/openapi/check_schemas.py" \
  "http://127.0.0.1:$PORT/api/model_registry/v1/openapi.json" \
  "$REPO/../shared/reference/kubeflow-model-registry.openapi.yaml" || status=1

cd "$DATA"
for prefix in /api/model_registry/v1alpha3 /api/model_registry/v1; do
  echo "[openapi] schemathesis on $prefix (${SECONDS_PER_PREFIX}s, $EXAMPLES examples)"
  "$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT$prefix/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    -n "$EXAMPLES" --max-time "$SECONDS_PER_PREFIX" --seed "$SEED" --no-shrink \
    --warnings off >"$DATA/st.log" 2>&1 || true
  # A "Schema Error" is schemathesis failing to generate a case (a limitation
  # of its negative-data generator), not a finding: only failures count.
  if grep -q "=== FAILURES ===" "$DATA/st.log"; then
    status=1
  fi
  grep -A1 "Test cases:" "$DATA/st.log" | tail -1 | sed "s|^ *|[openapi] $prefix: |"
  sed -n '/SUMMARY/,$p' "$DATA/st.log"
  if grep -q "FAILURES\|ERRORS" "$DATA/st.log"; then sed -n '/\(FAILURES\|ERRORS\)/,/SUMMARY/p' "$DATA/st.log" | head -80; fi
done
if grep -q "panicked" "$DATA/server.log"; then
  echo "[openapi] the server panicked:"; grep -A5 panicked "$DATA/server.log" | head -40; status=1
fi
exit $status
