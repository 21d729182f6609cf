#!/usr/bin/env bash
# `make lambda-zip`: build the functions with the `deploy` profile and package
# each as target/lambda/<function>/bootstrap.zip (the executable named
# `bootstrap` at the root of the zip), for the provided.al2023 runtime on
# x86_64, as infra/lambda/template.yaml expects.
#
#   infra/lambda/build-zips.sh registered-models model-versions artifacts
#
# The binaries link glibc dynamically; Amazon Linux 2023 has glibc 2.34, so
# the script refuses a binary that needs a newer symbol version (build on an
# older distribution, or with cargo-lambda/zig, if that ever happens).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
MAX_GLIBC="2.34"
(($# > 0)) || { echo "usage: $0 FUNCTION..." >&2; exit 2; }

packages=()
for f in "$@"; do packages+=(-p "$f"); done
cargo build --profile deploy --locked "${packages[@]}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"

for f in "$@"; do
  bin="$TARGET_DIR/deploy/$f"
  need="$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)"
  if [[ "$(printf '%s\n%s\n' "$need" "$MAX_GLIBC" | sort -V | tail -n1)" != "$MAX_GLIBC" ]]; then
    echo "lambda-zip: $f needs glibc $need, the Lambda runtime has $MAX_GLIBC" >&2
    exit 1
  fi
  out="$TARGET_DIR/lambda/$f"
  rm -rf "$out" && mkdir -p "$out"
  cp "$bin" "$out/bootstrap"
  (cd "$out" && python3 -m zipfile -c bootstrap.zip bootstrap)
  printf 'lambda-zip: %-40s %6s KiB zipped (glibc >= %s)\n' \
    "${out#"$REPO/"}/bootstrap.zip" "$(( $(stat -c %s "$out/bootstrap.zip") / 1024 ))" "$need"
done
