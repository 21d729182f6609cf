#!/usr/bin/env bash
# Everything `make test` runs, in order, with the real servers it needs:
#  1. start dynalite + s3s-fs (installed and cached by tests/servers/servers.sh)
#  2. Rust tests (unit, storage contract on both backends, artifact stores,
#     HTTP API on the embedded store, the web pages in headless Chromium:
#     tests/browser/setup.sh installs it), then the HTTP API tests again with
#     the registry on DynamoDB (dynalite)
#  3. the Lambda template through cfn-lint (the Knative manifests are checked
#     by the Rust tests in tests/functions/)
#  4. the upstream Python client on the embedded store, again with MR_AUTH=jwt
#     (the clients' user_token), then on DynamoDB, then through the Knative
#     routing to the function binaries (functions-gateway)
# Servers are stopped on exit, whatever happened.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SERVERS="$REPO/tests/servers/servers.sh"

bash "$SERVERS" start
trap 'bash "$SERVERS" stop' EXIT
set -a; . "$REPO/.cache/servers/env"; set +a

nextest() {
  if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@"
  else
    cargo test --no-fail-fast "$@"
  fi
}

# Environment of a registry on DynamoDB (each server gets its own table).
DYNAMO_ENV="MR_STORE=dynamodb,MR_CREATE_TABLE=true,AWS_ENDPOINT_URL_DYNAMODB=$MR_TEST_DYNAMODB_ENDPOINT,AWS_ACCESS_KEY_ID=test,AWS_SECRET_ACCESS_KEY=test,AWS_REGION=us-east-1"

failed=()
# Chromium, chromedriver and axe-core for the real-browser test
# (tests/it/browser.rs), installed once; it fails under CI without them.
bash "$REPO/tests/browser/setup.sh" || failed+=("browser-setup")
set -a; . "$REPO/.cache/browser/env"; set +a
echo "== Rust tests (embedded store; contract suite on both backends)"
nextest --workspace || failed+=("rust")
echo "== HTTP API tests with the registry on DynamoDB (dynalite)"
# --workspace keeps cargo's feature unification (and so the build) identical
# to the first run; -p alone would rebuild shared dependencies.
if command -v cargo-nextest >/dev/null 2>&1; then
  MR_TEST_ENV="$DYNAMO_ENV,MR_TABLE=it-{unique}" cargo nextest run --no-fail-fast --workspace \
    -E 'package(registry-tests) and binary(it)' || failed+=("rust-api-dynamodb")
else
  MR_TEST_ENV="$DYNAMO_ENV,MR_TABLE=it-{unique}" cargo test --no-fail-fast --workspace --test it \
    || failed+=("rust-api-dynamodb")
fi
echo "== Lambda template (cfn-lint, offline)"
bash tests/functions/cfn-lint.sh || failed+=("cfn-lint")

# Binaries where cargo puts them (CARGO_TARGET_DIR honoured).
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
export MR_BIN="$TARGET/debug/registry-local"
echo "== OpenAPI document: schemas vs upstream, schemathesis fuzzing on both prefixes"
bash tests/openapi/run.sh || failed+=("openapi")
# The compat servers' artifact bucket on s3s-fs, for the client's
# upload_artifact_and_register_model and our storage events
# (tests/compat/test_storage_events.py; skipped without it). Its keys also
# satisfy dynalite, which takes any.
S3_ENV="MR_ARTIFACT_BUCKET=compat-$$,AWS_ENDPOINT_URL_S3=$MR_TEST_S3_ENDPOINT,AWS_ACCESS_KEY_ID=$MR_TEST_S3_ACCESS_KEY,AWS_SECRET_ACCESS_KEY=$MR_TEST_S3_SECRET_KEY"
echo "== Upstream Python client, embedded store (artifacts on s3s-fs)"
(
  IFS=',' read -ra kv <<<"$S3_ENV"
  for pair in "${kv[@]}"; do export "${pair?}"; done
  bash tests/compat/run.sh
) || failed+=("compat-embedded")
echo "== Upstream Python client with MR_AUTH=jwt (user_token), embedded store (artifacts on s3s-fs)"
(
  IFS=',' read -ra kv <<<"$S3_ENV"
  for pair in "${kv[@]}"; do export "${pair?}"; done
  export MR_ARTIFACT_BUCKET="compat-jwt-$$"
  MR_COMPAT_AUTH=jwt bash tests/compat/run.sh
) || failed+=("compat-jwt")
echo "== Upstream Python client, DynamoDB (dynalite, artifacts on s3s-fs)"
(
  IFS=',' read -ra kv <<<"$DYNAMO_ENV,$S3_ENV"
  for pair in "${kv[@]}"; do export "${pair?}"; done
  export MR_TABLE="compat-$RANDOM-$$"
  bash tests/compat/run.sh
) || failed+=("compat-dynamodb")
echo "== Upstream Python client through the Knative routing: the functions behind functions-gateway, DynamoDB (dynalite)"
(
  IFS=',' read -ra kv <<<"$DYNAMO_ENV"
  for pair in "${kv[@]}"; do export "${pair?}"; done
  export MR_TABLE="compat-functions-$RANDOM-$$"
  MR_BIN="$TARGET/debug/functions-gateway" bash tests/compat/run.sh
) || failed+=("compat-functions")

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all test suites passed"
