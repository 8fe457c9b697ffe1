#!/usr/bin/env bash
# The CUDA checks in one bounded run, for a GPU machine lent for a few minutes:
#   bash benchmarks/cuda_suite.sh OUTDIR [SECONDS]
# writes OUTDIR/env.txt, tests.txt, run-plan.{txt,json}, timeline.txt, throughput-{lora,qlora,full}.txt and memory-N.{txt,json}.
# Every model is built from its config with random weights (no model package needed there: memory and
# speed do not depend on the values). Each stage gets what is left of SECONDS (default 540), so a slow
# stage cuts the later ones short instead of losing everything; memory-N.json is written row by row.
# QUICK=1 runs the same stages on tiny-llama at toy sizes (a dry run on a CPU machine).
set -u
out=${1:?usage: cuda_suite.sh OUTDIR [SECONDS]}
budget=${2:-540}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # lorakit from this checkout, installed or not
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
end=$((SECONDS + budget))
left() { echo $((end - SECONDS)); }
stage() {  # stage NAME CAP_SECONDS CMD... : run CMD with min(CAP, what is left), output to OUTDIR/NAME.txt
    local name=$1 cap=$2; shift 2
    local t=$(left); [ "$cap" -lt "$t" ] && t=$cap
    if [ "$t" -lt 20 ]; then echo "skipped: no time left" > "$out/$name.txt"; return; fi
    echo "== $name (up to ${t}s)"
    local t0=$SECONDS
    timeout --kill-after=10 "$t" "$@" > "$out/$name.txt" 2>&1
    echo "# exit $? after $((SECONDS - t0)) s" >> "$out/$name.txt"
    tail -n 3 "$out/$name.txt"
}

if [ "${QUICK:-0}" = 1 ]; then
    tp=(--model tiny-llama --steps 2 --repeats 1 --seq-len 128 --batch-size 2 --no-bf16)
    groups=("--quick --model tiny-llama" "--quick --model tiny-gpt2")
    tests=(tests/lorakit/test_training.py -k cuda)
else
    tp=(--steps 20 --repeats 2 --no-bf16)
    # three processes side by side, one family mix each, the default model first: the peak and the five
    # categories are each process's own allocator figures; the device-wide "reserved + context" is not
    groups=("--model smollm2-135m --model heldout-qwen2 --model heldout-mistral"
            "--model tiny-gpt2 --model minilm-l6 --model heldout-roberta"
            "--model tiny-t5 --model heldout-mt5 --model tiny-llama")
    # the default model needs its GGUF package, which is not carried: the tiny models' tests run on CUDA
    tests=(tests/lorakit/test_training.py tests/lorakit/test_variants.py -n 4 -rfE
           -k "not default_model and not smollm2")
fi

{ nvidia-smi 2>&1 | head -15; python3 -c "
import torch, transformers, peft, bitsandbytes, accelerate, platform
print('python', platform.python_version(), '| torch', torch.__version__, '| transformers', transformers.__version__,
      '| peft', peft.__version__, '| bitsandbytes', bitsandbytes.__version__, '| accelerate', accelerate.__version__)
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')
print('cpu cores', len(__import__('os').sched_getaffinity(0)))"; } > "$out/env.txt" 2>&1
cat "$out/env.txt"
stage tests 60 python3 -m pytest -q -p no:cacheprovider "${tests[@]}"
# the run plan (lorakit.plan) against the allocator's peak over loading and over steps 1, 2 and the plan's peak step
stage run-plan 90 python3 benchmarks/run_plan.py --quick --device cuda --json "$out/run-plan.json"
# a step's memory timeline from the allocator at the phase marks: its tallest moment must be the peak
stage timeline 60 python3 benchmarks/timeline_check.py --model tiny-llama
for config in lora qlora full; do
    stage "throughput-$config" 80 python3 benchmarks/throughput.py --random-weights --config "$config" "${tp[@]}"
done
t=$(left)
echo "== memory: ${#groups[@]} processes (up to ${t}s)"
for g in "${!groups[@]}"; do
    # shellcheck disable=SC2086  # each group is a list of flags
    timeout --kill-after=10 "$t" python3 benchmarks/memory_accuracy.py --random-weights ${groups[$g]} \
        --json "$out/memory-$g.json" > "$out/memory-$g.txt" 2>&1 &
done
wait
tail -n 2 "$out"/memory-*.txt
echo "== done, $((budget - $(left))) s of $budget"
