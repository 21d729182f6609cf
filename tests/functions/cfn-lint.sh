#!/usr/bin/env bash
# Offline check of the Lambda template: cfn-lint (PyPI) with the SAM transform,
# installed once into .cache/venv-cfn-lint (a second run reuses it).
#
#   tests/functions/cfn-lint.sh [template ...]   (default: infra/lambda/template.yaml)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO/.cache/venv-cfn-lint"
WANT="cfn-lint==1.58.0"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/cfn-lint" || "$(cat "$VENV/.installed" 2>/dev/null)" != "$WANT" ]]; then
  echo "cfn-lint: installing $WANT into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$WANT"
  printf '%s' "$WANT" >"$VENV/.installed"
fi

templates=("$@")
if ((${#templates[@]} == 0)); then templates=("$REPO/infra/lambda/template.yaml"); fi
"$VENV/bin/cfn-lint" --version
# The template is for any region; lint against a few with different service sets.
"$VENV/bin/cfn-lint" --regions us-east-1 eu-west-1 ap-southeast-2 -- "${templates[@]}"
echo "cfn-lint: ${templates[*]#"$REPO/"} passed"
