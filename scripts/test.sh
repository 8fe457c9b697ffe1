#!/usr/bin/env bash
# The whole test suite: the linter, then unit, e2e (the real default model), notebooks and the browser test.
# Sets up first, including the system packages of the browser test (Debian chromium).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not browser" -x
#
#   LORAKIT_HOME   model cache; default .cache/lorakit in the repo, so the converted model is reused
#   LORAKIT_FAST   1 (default here) runs the notebooks with shortened step counts; 0 for full length
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh --system

if [ -z "${LORAKIT_HOME:-}" ]; then
    export LORAKIT_HOME="$ROOT/.cache/lorakit"
    mkdir -p "$LORAKIT_HOME"
    # keep the cache out of git without touching the project's .gitignore
    [ -f "$ROOT/.cache/.gitignore" ] || echo '*' >"$ROOT/.cache/.gitignore"
fi
export LORAKIT_FAST="${LORAKIT_FAST:-1}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
export PYTHONUNBUFFERED=1
export PATH="$ROOT/.venv/bin:$PATH"  # the console script and jupyter of the venv, as after activating it

echo "test: ruff check (pyflakes, pycodestyle, isort, bugbear; config in pyproject.toml)"
"$ROOT/.venv/bin/ruff" check "$ROOT"
echo "test: lint-imports (the rooms' layers of docs/ENGINEERING.md; contracts in pyproject.toml)"
(cd "$ROOT" && "$ROOT/.venv/bin/lint-imports" --no-cache)
echo "test: LORAKIT_HOME=$LORAKIT_HOME LORAKIT_FAST=$LORAKIT_FAST"
exec "$ROOT/.venv/bin/python" -m pytest -q --durations=30 "$@"  # the 30 slowest: where CI time goes
