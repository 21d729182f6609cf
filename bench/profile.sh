#!/usr/bin/env bash
# Where registry-local (embedded store) spends its time, as a Markdown
# section for the bench report (bench/run.sh calls it with BENCH_PROFILE=1):
#   - callgrind: instructions per request and the most expensive functions
#     (inclusive) of each workload operation, at concurrency 1;
#   - strace -c -w: wall time inside system calls during creates (callgrind
#     counts instructions only, so it cannot see a wait in fsync).
# `perf stat` has no hardware counters on these VMs, hence callgrind.
#
#   bash bench/profile.sh OUT.md
#
# Needs symbols, so it builds an unstripped copy of the release profile into
# target/bench-profile (a separate target dir: `make run`'s build is untouched).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
MD="${1:?usage: profile.sh OUT.md}"
WORK="$REPO/bench/out/profile"
RB="$REPO/target/release/registry-bench"
READS="${BENCH_PROFILE_READS:-300}"
CREATES="${BENCH_PROFILE_CREATES:-100}"
rm -rf "$WORK"; mkdir -p "$WORK"

# BENCH_PROFILE_SERVER=PATH: profile that (unstripped) binary instead of building one.
SERVER="${BENCH_PROFILE_SERVER:-$REPO/target/bench-profile/release/registry-local}"
if [[ -z "${BENCH_PROFILE_SERVER:-}" ]]; then
  CARGO_TARGET_DIR="$REPO/target/bench-profile" CARGO_PROFILE_RELEASE_STRIP=false \
    ${CARGO:-cargo} build --release -p registry-local
fi
[[ -x "$RB" ]] || ${CARGO:-cargo} build --release -p registry-bench

source "$REPO/bench/lib.sh"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# 1. callgrind: instrumentation off during set-up and warm-up, zeroed before
# each operation's measured requests and dumped (named after it) right after.
port=$(free_port)
PORT=$port MR_DATA_DIR="$WORK/data-callgrind" MR_LOG=warn \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" \
  "$SERVER" >"$WORK/callgrind.log" 2>&1 &
CG=$!
PIDS+=("$CG")
wait_http "http://127.0.0.1:$port/readyz/health" 60
"$RB" workload --api ours --url "http://127.0.0.1:$port" --system profile --concurrency 1 \
  --reads "$READS" --creates "$CREATES" --warmup 20 --out "$WORK/results.jsonl" \
  --before-measure "callgrind_control -i on $CG >/dev/null && callgrind_control -z $CG >/dev/null" \
  --after-measure "callgrind_control -d \$BENCH_OP $CG >/dev/null && callgrind_control -i off $CG >/dev/null"
kill -TERM "$CG"; wait "$CG" 2>/dev/null || true

# 2. strace: syscall wall time of creates on the benchmarked (stripped,
# uninstrumented) release binary: strace needs no symbols.
port=$(free_port)
STRACED="$REPO/target/release/registry-local"
[[ -x "$STRACED" ]] || STRACED="$SERVER"
PORT=$port MR_DATA_DIR="$WORK/data-strace" MR_LOG=warn "$STRACED" >"$WORK/strace-server.log" 2>&1 &
SV=$!
PIDS+=("$SV")
wait_http "http://127.0.0.1:$port/readyz/health" 30
"$RB" workload --api ours --url "http://127.0.0.1:$port" --system strace --concurrency 1 \
  --ops "create model,create version" --reads 1 --creates "$CREATES" --warmup 20 \
  --out "$WORK/results-strace.jsonl" \
  --before-measure "strace -f -c -w -o $WORK/strace-\$BENCH_OP.txt -p $SV 2>/dev/null & echo \$! > $WORK/strace.pid; sleep 1" \
  --after-measure "kill -INT \$(cat $WORK/strace.pid); sleep 1"
kill -TERM "$SV"; wait "$SV" 2>/dev/null || true

# 3. The Markdown section.
{
  echo "## Profile (ours, embedded store, concurrency 1)"
  echo
  echo "From \`BENCH_PROFILE=1\` (bench/profile.sh): the same binary unstripped, under"
  echo "\`valgrind --tool=callgrind\` ($READS requests per read, $CREATES per create; set-up and"
  echo "warm-up not collected), and \`strace -f -c -w\` on an uninstrumented server during"
  echo "$CREATES creates. Callgrind counts instructions, not waiting: the strace table shows the waits."
  echo
  echo "Callgrind ran \`$SERVER\`${BENCH_PROFILE_NOTE:+ ($BENCH_PROFILE_NOTE)}; strace ran \`$STRACED\`."
  echo
  for dump in "$WORK"/callgrind.out.*; do
    [[ -s "$dump" ]] || continue
    # "desc: Trigger: dump <op>" names the operation (callgrind_control -d <op>).
    op=$(sed -n 's/^desc: Trigger: .* \([a-z-]*\)$/\1/p' "$dump" | head -1)
    [[ -n "$op" ]] || continue
    n=$READS
    [[ "$op" == create-* ]] && n=$CREATES
    total=$(sed -n 's/^summary: //p' "$dump" | awk '{print $1}')
    echo "### ${op//-/ }: $((total / n)) instructions per request"
    echo
    echo "Most expensive functions, inclusive, as a share of the operation's instructions"
    echo "(the runtime's plumbing — tokio, hyper, tower, axum routing — left out):"
    echo
    echo '```'
    callgrind_annotate --inclusive=yes --threshold=99 "$dump" 2>/dev/null |
      awk -v total="$total" '
        /PROGRAM TOTALS/ { next }
        /^ *[0-9][0-9,]* \(/ {
          ir = $1; gsub(",", "", ir)
          line = $0
          sub(/^ *[0-9][0-9,]* +\([ 0-9.%]+\) +/, "", line)
          sub(/ \[[^]]*\]$/, "", line)
          sub(/^[^ ]*\/malloc\.c:/, "libc ", line)
          sub(/^\?\?\?:/, "", line)
          if (line ~ /^0x/ || line ~ /tokio::runtime::(task|scheduler|context|park|driver|io)|hyper|tower::|futures_util|core::future|axum::(serve|util|routing|handler)|poll_fn|start_thread|clone3|std::sys|std::thread|core::ops::function|__libc_start|_start$|lang_start/) next
          if (length(line) > 110) line = substr(line, 1, 107) "..."
          printf "%5.1f%%  %s\n", 100 * ir / total, line
          if (++shown == 16) exit
        }' || true
    echo '```'
    echo
  done
  for f in "$WORK"/strace-*.txt; do
    [[ -s "$f" ]] || continue
    op=$(basename "$f" .txt); op=${op#strace-}
    echo "### ${op//-/ }: time inside system calls, per request"
    echo
    echo "(idle waits — futex, epoll_wait, restart_syscall — left out)"
    echo
    echo "| system call | calls per request | µs per call | ms per request |"
    echo "|---|---:|---:|---:|"
    awk -v n="$CREATES" '
      $1 ~ /^[0-9.]+$/ && NF >= 5 {
        name = $NF; calls = (NF == 6) ? $4 : $4
        if (name ~ /^(futex|epoll_wait|restart_syscall|total)$/) next
        secs = $2
        printf "| %s | %.1f | %.0f | %.3f |\n", name, calls / n, 1e6 * secs / calls, 1000 * secs / n
      }' "$f" | head -8 || true
    echo
  done
} >"$MD"
echo "profile: $MD"
