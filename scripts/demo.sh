#!/usr/bin/env bash
# The main job: set up, then compare LoRA, QLoRA-NF4 and full fine-tuning on the built-in model.
# Prints the comparison table and writes an HTML report. Extra arguments go to `lorakit demo`
# (see `.venv/bin/lorakit demo --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
# No model hub at run time: the default model ships in a Python package.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
exec "$ROOT/.venv/bin/lorakit" demo "$@"
