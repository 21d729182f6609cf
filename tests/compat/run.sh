#!/usr/bin/env bash
# Compatibility suite: runs the real upstream Kubeflow Model Registry Python
# client (PyPI `model-registry`) against our registry-local server.
#
#   tests/compat/run.sh [extra pytest args, e.g. -k pager -x]
#
# Environment:
#   MR_BIN               server binary (default: registry-local in $CARGO_TARGET_DIR
#                        or $REPO/target, debug profile,
#                        built with `cargo build` when MR_BIN is not given)
#   MR_COMPAT_VERSIONS   client versions to test (default: "0.3.18 0.3.9")
#   PYTHON               interpreter used to create the venvs (default: python3)
#   MR_COMPAT_AUTH       "jwt": the server runs with MR_AUTH=jwt, trusting a test issuer
#                        (keys made by target/debug/test-issuer), and the clients pass
#                        its token as user_token (default: no authentication)
#   anything else (MR_STORE, AWS_*, RUST_LOG, ...) is passed to the server as is.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
VERSIONS="${MR_COMPAT_VERSIONS:-0.3.18 0.3.9}"
# Both client versions accept the same pydantic/aiohttp ranges; they need separate
# venvs only because two versions of one package cannot share a venv.
# boto3: the client's upload_artifact_and_register_model (test_storage_events.py).
TEST_DEPS=(pytest==8.4.2 pytest-timeout==2.4.0 boto3==1.44.5)
HEALTH_TIMEOUT_S="${MR_COMPAT_HEALTH_TIMEOUT:-30}"

log() { printf '[compat] %s\n' "$*" >&2; }

# Requests go to 127.0.0.1 only; the client's aiohttp session honours *_PROXY.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"
export PYTHONDONTWRITEBYTECODE=1

# ---------------------------------------------------------------- venvs
setup_venv() {
    local version="$1"
    local venv="$REPO/.cache/venv-mr-$version"
    local marker="$venv/.compat-complete"
    local want="model-registry==$version ${TEST_DEPS[*]}"
    if [[ -f "$marker" && -x "$venv/bin/python" && "$(cat "$marker")" == "$want" ]]; then
        log "venv $venv is ready (cached)"
        return 0
    fi
    log "creating $venv ($want)"
    rm -rf "$venv"
    mkdir -p "$REPO/.cache"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "model-registry==$version" "${TEST_DEPS[@]}"
    "$venv/bin/python" -c "import model_registry, sys; assert model_registry.__version__ == sys.argv[1], model_registry.__version__" "$version"
    printf '%s' "$want" >"$marker"
}

for v in $VERSIONS; do setup_venv "$v"; done

# ---------------------------------------------------------------- server binary
if [[ -z "${MR_BIN:-}" ]]; then
    MR_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/registry-local"
    log "building registry-local"
    (cd "$REPO" && cargo build --quiet --bin registry-local)
fi
if [[ ! -x "$MR_BIN" ]]; then
    log "server binary $MR_BIN not found or not executable"
    exit 1
fi

# ---------------------------------------------------------------- lifecycle
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mr-compat.XXXXXX")"
SERVER_PID=""

# ---------------------------------------------------------------- authentication
if [[ "${MR_COMPAT_AUTH:-}" == "jwt" ]]; then
    ISSUER_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/test-issuer"
    if [[ ! -x "$ISSUER_BIN" ]]; then
        (cd "$REPO" && cargo build --quiet -p registry-tests --bin test-issuer)
    fi
    ISS="https://issuer.compat.test"
    AUD="model-registry"
    "$ISSUER_BIN" jwks "$WORK/issuer" "$ISS" "$AUD" >"$WORK/jwks.json"
    export MR_AUTH=jwt MR_JWT_ISSUER="$ISS" MR_JWT_AUDIENCE="$AUD" MR_JWT_JWKS="$WORK/jwks.json"
    # The client's user (also the author it registers as) may write everything.
    MR_USER_TOKEN="$("$ISSUER_BIN" token "$WORK/issuer" "$ISS" "$AUD" compat-tester ml-team)"
    export MR_USER_TOKEN
    log "MR_AUTH=jwt: clients pass a token of $ISS as user_token"
fi

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            kill -TERM "$SERVER_PID" 2>/dev/null || true
            for _ in $(seq 1 50); do
                kill -0 "$SERVER_PID" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_server NAME -> sets SERVER_PID, SERVER_PORT, SERVER_LOG
start_server() {
    local name="$1"
    SERVER_PORT="$(free_port)"
    SERVER_LOG="$WORK/server-$name.log"
    local data="$WORK/data-$name"
    mkdir -p "$data"
    PORT="$SERVER_PORT" MR_DATA_DIR="$data" "$MR_BIN" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    log "started $MR_BIN (pid $SERVER_PID) on port $SERVER_PORT, data $data"
    if ! "$PYTHON" - "$SERVER_PORT" "$SERVER_PID" "$HEALTH_TIMEOUT_S" <<'EOF'; then
import os, sys, time, urllib.request
port, pid, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
url = f"http://127.0.0.1:{port}/readyz/health"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        print(f"server process {pid} exited before becoming healthy", file=sys.stderr)
        sys.exit(1)
    try:
        with opener.open(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
print(f"{url} did not answer 200 within {limit:.0f}s", file=sys.stderr)
sys.exit(1)
EOF
        log "server did not become ready; its log follows"
        cat "$SERVER_LOG" >&2 || true
        exit 1
    fi
    log "server ready"
}

# ---------------------------------------------------------------- run
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
OVERALL_RC=0
RUN_ID="$("$PYTHON" -c 'import uuid; print(uuid.uuid4().hex[:8])')"

for v in $VERSIONS; do
    venv="$REPO/.cache/venv-mr-$v"
    start_server "$v"
    junit="$WORK/junit-$v.xml"
    log "running pytest with model-registry==$v against http://127.0.0.1:$SERVER_PORT"
    rc=0
    MR_URL="http://127.0.0.1:$SERVER_PORT" \
    MR_COMPAT_PREFIX="compat-${RUN_ID}-${v//./-}" \
        "$venv/bin/python" -m pytest "$SCRIPT_DIR" \
        --rootdir "$SCRIPT_DIR" -p no:cacheprovider \
        --timeout 120 -rfE --junitxml "$junit" "$@" || rc=$?
    if [[ $rc -ne 0 ]]; then
        OVERALL_RC=1
        if grep -q 'panicked at' "$SERVER_LOG" 2>/dev/null; then
            log "the server panicked; panic messages from its log:"
            grep -A1 'panicked at' "$SERVER_LOG" | grep -v '^--$' | sed -E 's/ \([0-9]+\) panicked/ panicked/' | sort | uniq -c | head -n 40 >&2 || true
        fi
        log "pytest for model-registry==$v exited with $rc; last 30 lines of the server log:"
        tail -n 30 "$SERVER_LOG" >&2 || true
    fi
    stop_server
    counts="0 1 0"
    if [[ -f "$junit" ]]; then
        counts="$("$PYTHON" - "$junit" <<'EOF' || echo "0 1 0"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
k = sum(int(s.get("skipped", 0)) for s in suites)
print(max(t - f - k, 0), f, k)
EOF
        )"
    fi
    read -r p f s <<<"$counts"
    if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi  # e.g. pytest found no test (exit 5)
    log "model-registry==$v: $p passed, $f failed, $s skipped"
    TOTAL_PASSED=$((TOTAL_PASSED + p))
    TOTAL_FAILED=$((TOTAL_FAILED + f))
    TOTAL_SKIPPED=$((TOTAL_SKIPPED + s))
done

if [[ $TOTAL_SKIPPED -gt 0 ]]; then
    echo "compat: $TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
else
    echo "compat: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
fi
exit "$OVERALL_RC"
