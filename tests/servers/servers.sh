#!/usr/bin/env bash
# Real storage servers for the tests, on 127.0.0.1 only:
#   dynalite 4 (DynamoDB API on LevelDB; like Alternator it has no transactions)
#   s3s-fs 0.14.1 (S3 API on a directory; SigV4 enforced)
#
#   servers.sh install   install both into .cache/servers (cached: a second run is a no-op)
#   servers.sh start     start both on free ports; writes .cache/servers/env (KEY=VALUE lines)
#   servers.sh stop      stop what `start` started
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$REPO/.cache/servers"
RUN="$CACHE/run"
DYNALITE="$CACHE/dynalite/node_modules/.bin/dynalite"
S3S="$CACHE/s3s/bin/s3s-fs"
ACCESS_KEY="mr-test-access"
SECRET_KEY="mr-test-secret-key"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # host port seconds
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    if (( SECONDS > deadline )); then return 1; fi
    sleep 0.1
  done
}

install() {
  mkdir -p "$CACHE"
  if [[ ! -x "$DYNALITE" ]]; then
    echo "servers: installing dynalite 4 (npm)"
    mkdir -p "$CACHE/dynalite"
    (cd "$CACHE/dynalite" && npm install --silent --no-audit --no-fund dynalite@4 >/dev/null)
  fi
  if [[ ! -x "$S3S" ]]; then
    echo "servers: building s3s-fs 0.14.1 (cargo install, a few minutes once)"
    cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$CACHE/s3s" --quiet
  fi
}

start() {
  install
  stop >/dev/null 2>&1 || true
  mkdir -p "$RUN"
  local dport sport
  dport=$(free_port); sport=$(free_port)
  rm -rf "$RUN/dynalite-data" "$RUN/s3-data"; mkdir -p "$RUN/dynalite-data" "$RUN/s3-data"
  nohup "$DYNALITE" --host 127.0.0.1 --port "$dport" --path "$RUN/dynalite-data" --createTableMs 0 \
    >"$RUN/dynalite.log" 2>&1 &
  echo $! >"$RUN/dynalite.pid"
  nohup "$S3S" --host 127.0.0.1 --port "$sport" --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" \
    "$RUN/s3-data" >"$RUN/s3s.log" 2>&1 &
  echo $! >"$RUN/s3s.pid"
  wait_port 127.0.0.1 "$dport" 30 || { cat "$RUN/dynalite.log"; echo "dynalite did not start" >&2; exit 1; }
  wait_port 127.0.0.1 "$sport" 30 || { cat "$RUN/s3s.log"; echo "s3s-fs did not start" >&2; exit 1; }
  cat >"$CACHE/env" <<ENV
MR_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:$dport
MR_TEST_S3_ENDPOINT=http://127.0.0.1:$sport
MR_TEST_S3_ACCESS_KEY=$ACCESS_KEY
MR_TEST_S3_SECRET_KEY=$SECRET_KEY
MR_TEST_S3_DIR=$RUN/s3-data
MR_TEST_DYNALITE_BIN=$DYNALITE
ENV
  echo "servers: dynalite on 127.0.0.1:$dport, s3s-fs on 127.0.0.1:$sport"
}

stop() {
  for name in dynalite s3s; do
    if [[ -f "$RUN/$name.pid" ]]; then
      kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true
      rm -f "$RUN/$name.pid"
    fi
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
