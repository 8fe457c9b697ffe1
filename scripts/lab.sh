#!/usr/bin/env bash
# Set up, then open the Studio notebook in JupyterLab (from .venv, so its kernel is .venv's python).
# Extra arguments go to `jupyter lab`, e.g. scripts/lab.sh --no-browser --port 8890
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
# JupyterLab's defaults for this venv's lab (its app settings dir; a user's own settings still win): no
# "get notified about Jupyter news?" popup on first open, no update check
mkdir -p "$ROOT/.venv/share/jupyter/lab/settings"
cp "$ROOT/scripts/jupyterlab-overrides.json" "$ROOT/.venv/share/jupyter/lab/settings/overrides.json"
args=()
[ "$(id -u)" -ne 0 ] || args+=(--allow-root)
nb=notebooks/01_studio.ipynb
[ -f "$nb" ] || { echo "lab: $nb not found; opening the notebooks folder"; nb=notebooks; }
exec "$ROOT/.venv/bin/jupyter" lab "${args[@]}" "$@" "$nb"
