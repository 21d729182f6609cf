#!/usr/bin/env bash
# `make lambda-zip`: build the functions with the `deploy` profile and package
# each as target/lambda/<function>/bootstrap.zip (the executable named
# `bootstrap` at the root of the zip), for the provided.al2023 runtime on
# x86_64, as infra/lambda/template.yaml expects.
#
#   infra/lambda/build-zips.sh registered-models model-versions artifacts
#
# Each zip also carries the policy as `policy.yaml` beside `bootstrap`: Lambda
# unpacks the zip in /var/task, where MR_POLICY (template.yaml) finds it.
# The policy is infra/lambda/policy.yaml, or the file POLICY_FILE names:
#
#   make lambda-zip POLICY_FILE=/path/to/registry-policy.yaml
#
# A policy change is a new zip and a deploy: the functions read it at start-up.
#
# The binaries link glibc dynamically; Amazon Linux 2023 has glibc 2.34, so
# the script refuses a binary that needs a newer symbol version (build on an
# older distribution, or with cargo-lambda/zig, if that ever happens).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
POLICY_FILE="$(realpath -m -- "${POLICY_FILE:-$REPO/infra/lambda/policy.yaml}")"
cd "$REPO"
MAX_GLIBC="2.34"
(($# > 0)) || { echo "usage: [POLICY_FILE=policy.yaml] $0 FUNCTION..." >&2; exit 2; }
[[ -f "$POLICY_FILE" && -r "$POLICY_FILE" ]] || {
  echo "lambda-zip: no policy file $POLICY_FILE (POLICY_FILE)" >&2
  exit 1
}

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
  cp "$POLICY_FILE" "$out/policy.yaml"
  (cd "$out" && python3 -m zipfile -c bootstrap.zip bootstrap policy.yaml)
  printf 'lambda-zip: %-40s %6s KiB zipped (glibc >= %s)\n' \
    "${out#"$REPO/"}/bootstrap.zip" "$(( $(stat -c %s "$out/bootstrap.zip") / 1024 ))" "$need"
done
