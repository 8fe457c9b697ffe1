"""The whole run's peak planned before Train (``lorakit.plan``) against the measured one, and the load peak.

For each model, data and setting (LoRA, QLoRA nf4, full fine-tuning, DoRA; gradient checkpointing off and on) this
plans the run with ``lorakit.plan(cfg)`` (timed: building the data from the tokenizer and planning every step),
trains it with ``lorakit.train`` (the measured peak covers steps 1, 2 and the step the plan names as the run's
peak: ``record.memory.assumes['steps']``) and prints planned / measured (goal: within 3 % and never below).
The load peak is measured apart: the CPU allocator's trajectory over ``load_base`` (torch's profiler), or on
CUDA ``record.load_peak`` (``torch.cuda.max_memory_allocated`` over loading).

Data: the model's own built-in task (``extract-json`` for the decoders, ``topic`` for MiniLM, ``headline`` for the
T5) and a user JSONL file whose answers vary about 5x in length (written to a temporary folder here; prompt and
completion, so not for a classifier).

    python benchmarks/run_plan.py --quick                  # tiny-llama, LoRA and QLoRA, 4 steps
    python benchmarks/run_plan.py                          # tiny-llama and SmolLM2, every setting, 8 steps
    python benchmarks/run_plan.py --model smollm2-135m --setting lora --setting qlora-nf4 --data file --steps 6
    python benchmarks/run_plan.py --model minilm-l6 --model tiny-t5 --setting lora --data task   # BERT and T5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = {  # name -> RunConfig fields
    "lora": dict(method="lora"),
    "qlora-nf4": dict(method="lora", quant="nf4"),
    "full": dict(method="full"),
    "dora": dict(method="lora", use_dora=True),
}


def user_file(folder: str) -> str:
    """Prompt/completion rows whose answers run from 4 to about 20 words: 5x apart."""
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    rows = [{"prompt": f"List {2 + (i % 5) * 4} words starting at {words[i % 10]}.",
             "completion": " ".join(words[(i + k) % 10] for k in range(4 + (i % 5) * 4))} for i in range(200)]
    path = Path(folder) / "answers.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


def load_peak(cfg, device: str):
    """(measured bytes at loading's highest, seconds): the profiler's trajectory on CPU."""
    from lorakit.data import data_labels
    from lorakit.memory.step_peak import StepPeak
    from lorakit.models.loading import load_base

    labels = data_labels(cfg) if cfg.resolved_task() == "classification" else None  # as lorakit.train loads it
    peak = StepPeak(device)
    peak.start(0)
    t0 = time.perf_counter()
    load_base(cfg.base, device, labels)
    reading = peak.stop()
    return (reading.peak if reading is not None else None), time.perf_counter() - t0


def row(cfg, device: str, measure_load: bool) -> dict:
    import lorakit

    plan = lorakit.plan(cfg, device=device)
    rec = lorakit.train(cfg, store=False, device=device)
    mem = rec.memory
    out = dict(model=cfg.model, dataset=Path(str(cfg.dataset)).name, method=cfg.method, quant=cfg.quant,
               dora=cfg.use_dora, checkpointing=cfg.gradient_checkpointing, status=rec.status,
               plan_s=round(plan.seconds, 3), planned_step_peak=plan.step_peak, planned_step=plan.peak_step,
               planned_load_peak=plan.load_peak, planned_peak=plan.peak, where=plan.text)
    if mem is not None and mem.peak is not None:
        out.update(measured_step_peak=mem.peak, measured_step=(mem.assumes or {}).get("peak_step"),
                   steps_profiled=(mem.assumes or {}).get("steps"),
                   step_ratio=round(plan.step_peak / mem.peak, 4))
    load = rec.load_peak
    if load is None and measure_load:
        load, out["load_s"] = load_peak(cfg, device)
    if load:
        out.update(measured_load_peak=load, load_ratio=round(plan.load_peak / load, 4))
        if mem is not None and mem.peak is not None:
            whole = max(load, mem.peak)
            out.update(measured_peak=whole, ratio=round(plan.peak / whole, 4))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny-llama, LoRA and QLoRA, no checkpointing, 4 steps")
    ap.add_argument("--model", action="append", help="models (default: tiny-llama and smollm2-135m)")
    ap.add_argument("--setting", action="append", choices=list(SETTINGS), help="settings (default: all; --quick: 2)")
    ap.add_argument("--data", action="append", choices=["task", "file"], help="the built-in task, the user file")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--no-load", action="store_true", help="do not profile loading on CPU (slow under the profiler)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lorakit
    from lorakit.config.families import default_task
    from lorakit.models.loading import default_device

    device = args.device or default_device()
    models = args.model or (["tiny-llama"] if args.quick else ["tiny-llama", "smollm2-135m"])
    settings = args.setting or (["lora", "qlora-nf4"] if args.quick else list(SETTINGS))
    checkpointing = [False] if args.quick else [False, True]
    steps = args.steps or (4 if args.quick else 8)
    rows = []
    lorakit.plan(lorakit.RunConfig(model=models[0], max_steps=1), device=device)  # imports: not a plan's time
    with tempfile.TemporaryDirectory() as folder:
        kinds = args.data or ["task", "file"]
        datasets = [d for kind, d in (("task", ""), ("file", user_file(folder))) if kind in kinds]  # "": own task
        architecture = {m.name: m.architecture for m in lorakit.list_models()}
        for model in models:
            classifier = default_task(architecture.get(model, "")) == "classification"
            for data in [d for d in datasets if d == "" or not classifier]:
                for name in settings:
                    for ckpt in checkpointing:
                        cfg = lorakit.RunConfig(model=model, dataset=data, max_steps=steps, train_examples=64,
                                                eval_examples=2, gradient_checkpointing=ckpt, checkpoint_every=0,
                                                **SETTINGS[name])
                        r = row(cfg, device, measure_load=not args.no_load)
                        rows.append(r)
                        print(json.dumps(r), flush=True)
                        if args.json:
                            Path(args.json).write_text(json.dumps(rows, indent=1))
    ratios = [r["step_ratio"] for r in rows if "step_ratio" in r]
    if ratios:
        print(f"step peak planned / measured: min {min(ratios):.4f}, max {max(ratios):.4f} over {len(ratios)} runs; "
              f"below 1 (planned low): {sum(x < 1 for x in ratios)}")
    plan_s = [r["plan_s"] for r in rows]
    print(f"planning a run from its data: max {max(plan_s):.2f} s, mean {sum(plan_s) / len(plan_s):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
