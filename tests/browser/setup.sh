#!/usr/bin/env bash
# What the real-browser test (tests/it/browser.rs) needs, installed once:
#   - Debian's chromium and chromium-driver (apt-get, as root; skipped when
#     `chromedriver` is already on PATH)
#   - axe-core 4 from npm into .cache/npm (skipped when axe.min.js is there)
# Writes .cache/browser/env (KEY=VALUE lines: MR_TEST_CHROMEDRIVER,
# MR_TEST_AXE_JS) for tests/run.sh to source. A second run is a no-op.
# Exits non-zero when something could not be installed (the test then fails
# under CI=true, and says it SKIPPED otherwise).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NPM_CACHE="$REPO/.cache/npm"
AXE_JS="$NPM_CACHE/node_modules/axe-core/axe.min.js"
ENV_FILE="$REPO/.cache/browser/env"
status=0

if ! command -v chromedriver >/dev/null 2>&1; then
  if [[ $EUID -eq 0 ]]; then
    echo "browser: installing chromium and chromium-driver (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "browser: chromedriver is not on PATH and this is not root:" \
      "apt-get install chromium chromium-driver" >&2
    status=1
  fi
fi

if [[ ! -f "$AXE_JS" ]]; then
  echo "browser: installing axe-core 4 (npm) into .cache/npm"
  mkdir -p "$NPM_CACHE"
  (cd "$NPM_CACHE" && npm install --silent --no-audit --no-fund --prefix "$NPM_CACHE" axe-core@4 >/dev/null) \
    || { echo "browser: npm install axe-core@4 failed" >&2; status=1; }
fi

mkdir -p "$(dirname "$ENV_FILE")"
{
  if command -v chromedriver >/dev/null 2>&1; then
    echo "MR_TEST_CHROMEDRIVER=$(command -v chromedriver)"
  fi
  if [[ -f "$AXE_JS" ]]; then
    echo "MR_TEST_AXE_JS=$AXE_JS"
  fi
} >"$ENV_FILE"
exit "$status"
