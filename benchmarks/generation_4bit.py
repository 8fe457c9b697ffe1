"""Generation on a 4-bit base on CPU: ``lorakit.models.dense_4bit`` (each weight dequantized once per generate call)
against bitsandbytes' own path (dequantized at every forward, i.e. every new token), alternating in one process.

    python benchmarks/generation_4bit.py [--quant nf4|fp4] [--examples 24] [--repeats 2]

One ``evaluate_task`` pass over the demo's held-out extract-json prompts on the untrained SmolLM2 base (it runs
to the answer budget, as a run's "before" pass does); prints each pass's seconds and whether the predictions
are identical.
"""
from __future__ import annotations

import argparse
import time

from lorakit.common.devices import matmul_gflops
from lorakit.common.quiet import quiet_libraries
from lorakit.config.run_config import RunConfig
from lorakit.data import build_data
from lorakit.models import dense_4bit
from lorakit.models.loading import load_model
from lorakit.training import evaluation


def one_pass(bundle, data, examples: int, dense: bool) -> tuple[float, list]:
    dense_4bit.RAM_SHARE = 0.25 if dense else 0.0  # 0: the copies never fit, bitsandbytes' path
    t0 = time.perf_counter()
    _, details = evaluation.evaluate_task(bundle.model, bundle.tokenizer, data, limit=examples)
    return time.perf_counter() - t0, [d["prediction"] for d in details]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quant", default="nf4", choices=("nf4", "fp4"))
    ap.add_argument("--examples", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2)
    ns = ap.parse_args()
    quiet_libraries()
    bundle = load_model("smollm2-135m", quant=ns.quant, device="cpu")
    data = build_data(RunConfig(eval_examples=ns.examples), bundle.tokenizer, bundle.task)
    print(f"# fp32 matmul {matmul_gflops('float32', 'cpu'):.0f} GFLOP/s; {ns.quant} base, {ns.examples} prompts")
    times, answers = {True: [], False: []}, {}
    for i in range(ns.repeats):
        for dense in ((True, False) if i % 2 == 0 else (False, True)):
            seconds, preds = one_pass(bundle, data, ns.examples, dense)
            times[dense].append(seconds)
            answers.setdefault(dense, preds)
            print(f"{'dense_4bit' if dense else 'bitsandbytes'}: {seconds:.1f} s", flush=True)
    print(f"| bitsandbytes per token | {', '.join(f'{t:.1f}' for t in times[False])} s |")
    print(f"| dense_4bit once per call | {', '.join(f'{t:.1f}' for t in times[True])} s |")
    print(f"identical predictions: {answers[True] == answers[False]}")


if __name__ == "__main__":
    main()
