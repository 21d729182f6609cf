#!/usr/bin/env bash
# `make bench`: this registry (embedded store; dynalite + s3s-fs) and MLflow's
# model registry side by side on this machine, everything on 127.0.0.1, then
# bench/report.md. Bounded: fixed request counts, every wait has a deadline,
# and every server it starts is stopped on exit (trap).
#
#   BENCH_QUICK=1        small counts (and the capacity model at its small
#                        size), for iterating on the bench itself
#   BENCH_PROFILE=1      also profile ours (callgrind + strace; one extra
#                        unstripped release build, see bench/profile.sh)
#   BENCH_REPORT=PATH    where the report goes (default bench/report.md)
#   BENCH_<COUNT>=N      any count below (BENCH_EMBEDDED_READS=...)
#
# Work files (results.jsonl, server logs, data) go to bench/out/ (ignored by git).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="$REPO/bench/out"
REPORT="${BENCH_REPORT:-$REPO/bench/report.md}"
RESULTS="$OUT/results.jsonl"
META="$OUT/meta.env"
CARGO="${CARGO:-cargo}"
BIN="$REPO/target/release"
VENV="$REPO/.cache/venv-mlflow"
DYNALITE="$REPO/.cache/servers/dynalite/node_modules/.bin/dynalite"
S3S="$REPO/.cache/servers/s3s/bin/s3s-fs"
S3_KEY=bench-access
S3_SECRET=bench-secret-key
START=$SECONDS

quick="${BENCH_QUICK:-0}"
# count NAME FULL QUICK: BENCH_NAME if set, else the full or quick value.
count() {
  local var="BENCH_$1"
  if [[ -n "${!var:-}" ]]; then echo "${!var}"
  elif [[ "$quick" == 1 ]]; then echo "$3"
  else echo "$2"; fi
}
CONCURRENCY=$(count CONCURRENCY 1,8,32 1,8,32)
EMB_READS=$(count EMBEDDED_READS 20000 1000)
EMB_CREATES=$(count EMBEDDED_CREATES 2000 200)
EMB_WARMUP=$(count EMBEDDED_WARMUP 500 50)
DYN_READS=$(count DYNALITE_READS 3000 200)
DYN_CREATES=$(count DYNALITE_CREATES 600 100)
DYN_WARMUP=$(count DYNALITE_WARMUP 100 20)
MLF_READS=$(count MLFLOW_READS 400 30)
MLF_CREATES=$(count MLFLOW_CREATES 200 20)
MLF_WARMUP=$(count MLFLOW_WARMUP 40 5)
MLF_WORKERS=$(count MLFLOW_WORKERS 2 2)
SCALE_VERSIONS=$(count SCALE_VERSIONS 10000 1000)
SCALE_DEEP=$(count SCALE_DEEP_OFFSET 9000 900)
# 100,000 versions: off by default; seeding them through the API takes ~50 s
# here, which would bring a cold-cache run (builds + venv) within a minute of 15.
SCALE_BIG=$(count SCALE_BIG_VERSIONS 0 0)
SCALE_BIG_DEEP=$(count SCALE_BIG_DEEP_OFFSET 90000 0)
SCALE_REQUESTS=$(count SCALE_REQUESTS 200 20)
MLF_SCALE_REQUESTS=$(count MLFLOW_SCALE_REQUESTS 50 10)
COLD_STARTS=$(count COLDSTART_STARTS 20 5)
COLD_LOAD=$(count COLDSTART_LOAD_REQUESTS 500 100)
UPLOADS=$(count UPLOADS 30 5)
AUTH_READS=$(count AUTH_READS 20000 1000)
AUTH_CREATES=$(count AUTH_CREATES 2000 200)
AUTH_WARMUP=$(count AUTH_WARMUP 500 50)
ATTACK_SECONDS=$(count ATTACK_SECONDS 20 5)
# 1: the capacity model at 100,000 models / 1,000,000 versions (~5 min here,
# mostly seeding 1.1 million entities); 0: at 1,000 / 10,000 (~5 s).
CAPACITY_FULL=$(count CAPACITY_FULL 1 0)

log() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - START)); }
source "$REPO/bench/lib.sh"

# Every server runs in its own process group (setsid), so stopping the group
# also stops its children (MLflow's uvicorn workers).
GROUPS_STARTED=()
start_group() { # LOG CMD...: start CMD in a new process group; its pid in $STARTED
  local log="$1"; shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  STARTED=$!
  GROUPS_STARTED+=("$STARTED")
}
stop_group() { # PID
  kill -TERM -- "-$1" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while kill -0 -- "-$1" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL -- "-$1" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${GROUPS_STARTED[@]}"; do stop_group "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$OUT"
mkdir -p "$OUT"
: >"$RESULTS"

log "build (release) and MLflow venv"
# The venv installs (network) while cargo builds (CPU).
venv_status=0
if [[ ! -x "$VENV/bin/mlflow" ]]; then
  ( python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --upgrade pip &&
    "$VENV/bin/pip" install -q mlflow ) >"$OUT/venv.log" 2>&1 &
  venv_pid=$!
fi
bash tests/servers/servers.sh install
# Every function binary (functions/*/Cargo.toml, one package each; one of
# them is registry-local), in one cargo call so that a second run finds them
# all built (cargo unifies their dependencies' features, so a lone
# `cargo build -p registry-local` would relink it). BENCH_COLDSTART_PROFILE=deploy
# measures table 3 on the deploy profile instead. A function that does not
# build is left out of table 3 and named in the report.
COLD_PROFILE="${BENCH_COLDSTART_PROFILE:-release}"
COLD_BIN="$REPO/target/$COLD_PROFILE"
FUNCTIONS=()
UNBUILT=()
all=()
for manifest in functions/*/Cargo.toml; do
  all+=("$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -1)")
done
pkgs=()
for f in "${all[@]}"; do pkgs+=(-p "$f"); done
if $CARGO build --release "${pkgs[@]}"; then
  FUNCTIONS=("${all[@]}")
else
  $CARGO build --release -p registry-local
  for f in "${all[@]}"; do
    if $CARGO build --release -p "$f"; then FUNCTIONS+=("$f"); else UNBUILT+=("$f"); fi
  done
fi
if [[ "$COLD_PROFILE" != release ]]; then
  pkgs=()
  for f in "${FUNCTIONS[@]}"; do pkgs+=(-p "$f"); done
  $CARGO build --profile "$COLD_PROFILE" "${pkgs[@]}"
fi
# Separately, so their dependencies' features never change the functions' build:
# the load client, and test-issuer (keys and a token for table 5).
$CARGO build --release -p registry-bench
$CARGO build --release -p registry-tests --bin test-issuer
# The capacity model (step 7) is a test of the registry crate; optimised, as
# its full size seeds 1.1 million entities.
$CARGO test --release -p registry --test capacity --no-run
if [[ -n "${venv_pid:-}" ]]; then
  wait "$venv_pid" || venv_status=$?
  if ((venv_status != 0)); then cat "$OUT/venv.log"; echo "bench: MLflow venv install failed" >&2; exit 1; fi
fi
RB="$BIN/registry-bench"
build_time=$((SECONDS - START))

# Facts about the machine and the run, for the report.
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- shared functions 2>/dev/null || echo ' + uncommitted changes')"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "cores=$(nproc)"
  echo "ram=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -sr)"
  echo "rustc=$(rustc --version)"
  echo "mlflow=$("$VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)')"
  echo "python=$("$VENV/bin/python" --version 2>&1)"
  echo "node=$(node --version)"
  echo "dynalite=$(sed -n 's/.*"version": *"\(.*\)".*/\1/p' "$REPO/.cache/servers/dynalite/node_modules/dynalite/package.json" | head -1)"
  echo "profile=release (no LTO, strip; as make run)"
  echo "coldstart_profile=$COLD_PROFILE"
  echo "unbuilt=${UNBUILT[*]:-}"
  echo "quick=$quick"
  echo "load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "counts_embedded=$EMB_READS / $EMB_CREATES / $EMB_WARMUP"
  echo "counts_dynalite=$DYN_READS / $DYN_CREATES / $DYN_WARMUP"
  echo "counts_mlflow=$MLF_READS / $MLF_CREATES / $MLF_WARMUP"
  echo "counts_auth=$AUTH_READS / $AUTH_CREATES / $AUTH_WARMUP"
  echo "attack_seconds=$ATTACK_SECONDS"
  echo "capacity_full=$CAPACITY_FULL"
  echo "mlflow_config=uvicorn with $MLF_WORKERS workers (one per core)"
  echo "scale_requests=$SCALE_REQUESTS (ours) / $MLF_SCALE_REQUESTS (MLflow)"
  echo "coldstart_starts=$COLD_STARTS"
  echo "coldstart_load_requests=$COLD_LOAD"
  echo "build_time=${build_time} s"
} >"$META"

# start_ours NAME [ENV=VALUE...]: registry-local on a free port; sets URL, PID.
start_ours() {
  local name="$1"; shift
  local port; port=$(free_port)
  start_group "$OUT/$name.log" env PORT="$port" MR_LOG=warn "$@" "$BIN/registry-local"
  PID=$STARTED
  URL="http://127.0.0.1:$port"
  wait_http "$URL/readyz/health" 30
}

log "1+2+6. ours, embedded store"
start_ours embedded MR_DATA_DIR="$OUT/data-embedded"
"$RB" workload --api ours --url "$URL" --system embedded --pid "$PID" --out "$RESULTS" \
  --concurrency "$CONCURRENCY" --reads "$EMB_READS" --creates "$EMB_CREATES" --warmup "$EMB_WARMUP"
"$RB" scale --api ours --url "$URL" --system embedded --out "$RESULTS" \
  --versions "$SCALE_VERSIONS" --deep-offset "$SCALE_DEEP" --requests "$SCALE_REQUESTS"
if ((SCALE_BIG > 0)); then
  "$RB" scale --api ours --url "$URL" --system embedded --out "$RESULTS" \
    --versions "$SCALE_BIG" --deep-offset "$SCALE_BIG_DEEP" --requests "$SCALE_REQUESTS"
fi
# Table 6: /readyz/health probed while 6 clients send the worst LIKE filter.
"$RB" health-under-attack --url "$URL" --system embedded --out "$RESULTS" --seconds "$ATTACK_SECONDS"
stop_group "$PID"

log "5. authentication overhead: MR_AUTH=jwt vs none, embedded store"
# The same binary twice, side by side on fresh stores, one with MR_AUTH=jwt
# trusting test-issuer's keys (a JWKS file, read at start-up: cached JWKS, as
# a deployment has) and one token for the whole run. Each cell is measured on
# both, back to back with the same counts, the order alternating from cell to
# cell, so that the machine's drift falls on both alike.
ISSUER=https://issuer.bench.invalid
AUDIENCE=model-registry
"$BIN/test-issuer" jwks "$OUT/issuer" "$ISSUER" "$AUDIENCE" >"$OUT/jwks.json"
TOKEN=$("$BIN/test-issuer" token "$OUT/issuer" "$ISSUER" "$AUDIENCE" bench-user)
start_ours auth-none MR_DATA_DIR="$OUT/data-auth-none"
NONE_URL=$URL; NONE_PID=$PID
start_ours auth-jwt MR_DATA_DIR="$OUT/data-auth-jwt" MR_BIND=127.0.0.1 MR_AUTH=jwt \
  MR_JWT_ISSUER="$ISSUER" MR_JWT_JWKS="$OUT/jwks.json" MR_JWT_AUDIENCE="$AUDIENCE"
JWT_URL=$URL; JWT_PID=$PID
auth_cell() { # SYSTEM C OP: one measurement of table 5 on auth-none or auth-jwt
  local url=$NONE_URL auth=()
  if [[ "$1" == auth-jwt ]]; then url=$JWT_URL; auth=(--bearer "$TOKEN"); fi
  "$RB" workload --api ours --url "$url" --system "$1" "${auth[@]}" --out "$RESULTS" \
    --prefix "c$2-${3// /-}" --ops "$3" --concurrency "$2" \
    --reads "$AUTH_READS" --creates "$AUTH_CREATES" --warmup "$AUTH_WARMUP"
}
cell=0
for c in ${CONCURRENCY//,/ }; do
  for op in "get by id" "create version"; do
    if ((cell % 2 == 0)); then
      auth_cell auth-none "$c" "$op"; auth_cell auth-jwt "$c" "$op"
    else
      auth_cell auth-jwt "$c" "$op"; auth_cell auth-none "$c" "$op"
    fi
    cell=$((cell + 1))
  done
done
stop_group "$NONE_PID"; stop_group "$JWT_PID"

log "1+2+4. ours, dynalite + s3s-fs"
dport=$(free_port); sport=$(free_port)
mkdir -p "$OUT/dynalite-data" "$OUT/s3-data/bench-artifacts"
start_group "$OUT/dynalite.log" "$DYNALITE" --host 127.0.0.1 --port "$dport" \
  --path "$OUT/dynalite-data" --createTableMs 0
DYNALITE_PID=$STARTED
start_group "$OUT/s3s.log" "$S3S" --host 127.0.0.1 --port "$sport" \
  --access-key "$S3_KEY" --secret-key "$S3_SECRET" "$OUT/s3-data"
S3S_PID=$STARTED
start_ours dynalite MR_STORE=dynamodb MR_CREATE_TABLE=true MR_ARTIFACT_BUCKET=bench-artifacts \
  AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$dport" AWS_ENDPOINT_URL_S3="http://127.0.0.1:$sport" \
  AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET" AWS_REGION=us-east-1
"$RB" workload --api ours --url "$URL" --system dynalite --pid "$PID" --out "$RESULTS" \
  --concurrency "$CONCURRENCY" --reads "$DYN_READS" --creates "$DYN_CREATES" --warmup "$DYN_WARMUP"
"$RB" scale --api ours --url "$URL" --system dynalite --out "$RESULTS" \
  --versions "$SCALE_VERSIONS" --deep-offset "$SCALE_DEEP" --requests "$SCALE_REQUESTS"
# Table 4: upload to visible, through a storage event and through the upload
# extension, on this registry's bucket (s3s-fs).
"$RB" upload-latency --url "$URL" --system dynalite --out "$RESULTS" --uploads "$UPLOADS"
stop_group "$PID"; stop_group "$DYNALITE_PID"; stop_group "$S3S_PID"

log "1+2. MLflow $(grep '^mlflow=' "$META" | cut -d= -f2), SQLite, $MLF_WORKERS workers"
mport=$(free_port)
mkdir -p "$OUT/mlflow"
start_group "$OUT/mlflow.log" env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
  "$VENV/bin/mlflow" server --backend-store-uri "sqlite:///$OUT/mlflow/mlflow.db" \
  --default-artifact-root "$OUT/mlflow/artifacts" --host 127.0.0.1 --port "$mport" \
  --workers "$MLF_WORKERS" --uvicorn-opts "--no-access-log"
MLFLOW_PID=$STARTED
wait_http "http://127.0.0.1:$mport/health" 120
# A new connection per request: on a kept-alive connection MLflow's
# multi-worker uvicorn answers ~40 ms late (its worker sockets lack
# TCP_NODELAY, so the response waits for a delayed ACK). Fresh connections
# are MLflow's fast case; the keep-alive run below shows the difference.
"$RB" workload --api mlflow --url "http://127.0.0.1:$mport" --system mlflow --pid "$MLFLOW_PID" \
  --connections fresh --out "$RESULTS" --concurrency "$CONCURRENCY" --reads "$MLF_READS" \
  --creates "$MLF_CREATES" --warmup "$MLF_WARMUP"
"$RB" workload --api mlflow --url "http://127.0.0.1:$mport" --system mlflow-keepalive \
  --prefix ka --ops "get by id" --concurrency 1 --reads "$MLF_READS" --warmup "$MLF_WARMUP" \
  --out "$RESULTS"
"$RB" scale --api mlflow --url "http://127.0.0.1:$mport" --system mlflow --out "$RESULTS" \
  --connections fresh --versions "$SCALE_VERSIONS" --deep-offset "$SCALE_DEEP" \
  --requests "$MLF_SCALE_REQUESTS" --warmup 5
stop_group "$MLFLOW_PID"

log "3. cold start: ${FUNCTIONS[*]}"
bins=()
for f in "${FUNCTIONS[@]}"; do bins+=(--bin "$COLD_BIN/$f"); done
"$RB" coldstart --fixture-bin "$BIN/registry-local" "${bins[@]}" --data-dir "$OUT/data-coldstart" \
  --starts "$COLD_STARTS" --load-requests "$COLD_LOAD" --out "$RESULTS"

# 7. The capacity model (shared/tests/capacity): the registry's own code on
# the embedded store, every table call billed as DynamoDB on-demand bills it
# to its partition key and simulated second, under the benchmark's mix at
# 20,000 reads/s and 2,000 writes/s, at the full size (100,000 models,
# 1,000,000 versions; `make test` runs it at 1/100). It fails when a key
# exceeds a partition's limits: that is reported (its section lists the hot
# keys), not fatal to the bench.
# It writes $OUT/capacity.md, which the report includes.
log "7. capacity model (DynamoDB partitions, CAPACITY_FULL=$CAPACITY_FULL)"
if ! CAPACITY_FULL="$CAPACITY_FULL" CAPACITY_REPORT="$OUT/capacity.md" \
  $CARGO test --release -p registry --test capacity -- \
  no_key_exceeds_a_partition_under_the_benchmark_mix --nocapture \
  >"$OUT/capacity.log" 2>&1; then
  echo "capacity: limits exceeded, or the simulation failed (bench/out/capacity.log)"
fi
if [[ ! -s "$OUT/capacity.md" ]]; then
  printf '## Capacity (DynamoDB partition model)\n\nThe simulation did not finish: see bench/out/capacity.log.\n' \
    >"$OUT/capacity.md"
fi

profile_args=()
if [[ "${BENCH_PROFILE:-0}" == 1 ]]; then
  log "profile (callgrind, strace)"
  bash bench/profile.sh "$OUT/profile.md"
  profile_args=(--profile "$OUT/profile.md")
fi

total=$((SECONDS - START))
echo "total_time=$((total / 60)) min $((total % 60)) s (builds and installs: $build_time s)" >>"$META"
"$RB" report --results "$RESULTS" --meta "$META" --out "$REPORT" --notes bench/analysis.md \
  "${profile_args[@]}"
log "done: $REPORT"
