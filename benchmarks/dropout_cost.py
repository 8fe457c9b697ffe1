"""What LoRA dropout costs a training step: q,v against all-linear, dropout 0.05 against none.

    python benchmarks/dropout_cost.py [--model smollm2-135m] [--repeats 2]

peft gives each adapted layer its own dropout: a fresh mask and a masked copy of the layer's input, seven per
block with all-linear. Builds the four models the way the peft docs do (``throughput.plain_model``), runs the
same 4 batches of the demo's task through forward and backward on each, alternating, and prints seconds per
step (lower is better). The demo turned dropout off on this measurement (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import time

from throughput import plain_model  # the sibling benchmark

import lorakit
from lorakit.common.quiet import quiet_libraries


def main() -> None:
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq

    from lorakit.data import build_data
    from lorakit.models.loading import model_dir

    quiet_libraries()
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--repeats", type=int, default=2)
    ns = p.parse_args()
    base = lorakit.RunConfig(model=ns.model, batch_size=4, seq_len=128)
    path = str(model_dir(base.model) or base.model)
    tok = AutoTokenizer.from_pretrained(path)
    collate = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    train = build_data(base, tok).train
    batches = [collate([train[i] for i in range(4 * j, 4 * j + 4)]) for j in range(5)]
    models = {(t, d): plain_model(base.replace(target_modules=t, dropout=d), path, "cpu")
              for t in ("qv", "all-linear") for d in (0.05, 0.0)}

    def steps(model, bs) -> float:
        model.train()
        t0 = time.perf_counter()
        for b in bs:
            model(**b).loss.backward()
            model.zero_grad()
        return (time.perf_counter() - t0) / len(bs)

    for m in models.values():
        steps(m, batches[:1])  # warm-up: first-call costs land on nobody's timing
    times: dict = {k: [] for k in models}
    for _ in range(ns.repeats):
        for k, m in models.items():
            times[k].append(steps(m, batches[1:]))
    for (targets, dropout), ts in times.items():
        print(f"{targets:<10} dropout {dropout:<4}  {' '.join(f'{t:.3f}' for t in ts)} s/step (forward + backward)")


if __name__ == "__main__":
    main()
