"""Time: the predicted training and evaluation seconds against a real run's, for the default runs of each method.

For LoRA, QLoRA (nf4) and full fine-tuning on SmolLM2 (the default task, 4 x 128, ``--steps`` steps, the
before-training evaluation not kept: both passes generated), this measures the machine's calibration afresh right
before the run (``lorakit.memory.calibration.calibrate(fresh=True)``: kept with the machine's last ones, the plan
priced with each figure's median, as every plan is), trains the run with ``lorakit.train``
while recording each step's batch shape (its size, padded length and labelled rows, as the Trainer hands it
over), and prices those batches with ``plan_time``. The evaluation is predicted before training from the data:
the eval prompts' mean token count and the answer budget ``lorakit.train`` decodes with. It prints, per method,
predicted/measured training seconds (goal: within 20 %) and evaluation seconds (goal: within 25 %), the
calibration figures and the load (``uptime``) before and after.

    python benchmarks/time_plan.py                 # lora, nf4, full; 8 steps each
    python benchmarks/time_plan.py --method lora --steps 4 --eval-examples 8 --json out.json   # shorter
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

METHODS = {"lora": dict(method="lora", quant="none"), "qlora-nf4": dict(method="lora", quant="nf4"),
           "full": dict(method="full", quant="none")}


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def eval_shape(cfg) -> tuple:
    """(mean prompt tokens, answer budget) of the run's eval examples, as ``lorakit.train`` will generate them."""
    from lorakit.data import build_data, prompt_text
    from lorakit.models import load_model
    from lorakit.training.evaluation import answer_budget

    tok = load_model(cfg.model, device="cpu").tokenizer
    bundle = build_data(cfg, tok)
    lengths = [len(tok(prompt_text(tok, r["messages"]), add_special_tokens=False)["input_ids"])
               for r in bundle.eval_raw]
    return sum(lengths) / len(lengths), answer_budget(tok, bundle.eval_raw)


def one(name: str, steps: int, eval_examples: int) -> dict:
    import lorakit
    from lorakit.memory.calibration import calibrate
    from lorakit.memory.planner import _batch_shape
    from lorakit.memory.timing import plan_time
    from lorakit.models.compute_dtype import resolve
    from lorakit.training import probe

    cfg = lorakit.RunConfig(model="smollm2-135m", max_steps=steps, checkpoint_every=0, eval_examples=eval_examples,
                            **METHODS[name])
    prompt, budget = eval_shape(cfg)
    before = load()
    cal = calibrate(resolve(cfg.dtype, "cpu"), 576, 1536, fresh=True)
    shapes = []
    original = probe.ProbingTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        if model.training:
            shapes.append(_batch_shape(inputs, cfg.labelled_head))
        return original(self, model, inputs, *args, **kwargs)

    def trained(event):  # the training half at once: a run under heavy load may not reach its evaluation in time
        if isinstance(event, lorakit.StepLogged) and event.step == steps:
            t = plan_time(cfg, shapes[:steps], eval_passes=0, calibration=cal)
            print(f"{name:10s} trained: predicted {t.train_s:.1f} s, steps' elapsed {event.elapsed_s:.1f} s "
                  f"({t.train_s / event.elapsed_s:.3f}); load avg {load()}", flush=True)

    probe.ProbingTrainer.compute_loss = recording
    try:
        rec = lorakit.train(cfg, sinks=[trained], store=False)
    finally:
        probe.ProbingTrainer.compute_loss = original
    if rec.status != "finished":
        raise SystemExit(f"{name}: the run ended {rec.status}: {rec.reason}")
    passes = 1 if rec.before_cached else 2
    plan = plan_time(cfg, shapes[:steps], eval_examples=cfg.eval_examples, eval_prompt_tokens=round(prompt),
                     eval_new_tokens=budget, eval_passes=passes, calibration=cal)
    eval_measured = (rec.task_eval_s or 0) + (rec.eval_s or 0)
    return {"method": name, "steps": steps, "load_before": before, "load_after": load(),
            "train_pred_s": round(plan.train_s, 1), "train_meas_s": round(rec.train_s, 1),
            "train_ratio": round(plan.train_s / rec.train_s, 3),
            "eval_pred_s": round(plan.eval_s, 1), "eval_meas_s": round(eval_measured, 1),
            "eval_ratio": round(plan.eval_s / eval_measured, 3) if eval_measured else None,
            "load_pred_s": round(plan.load_s, 1), "load_meas_s": round(rec.load_s or 0, 1),
            "eval_prompt_tokens": round(prompt), "eval_new_tokens": budget, "eval_passes": passes,
            "calibration": cal.as_dict()}


def main() -> None:
    from lorakit import RunConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", action="append", choices=list(METHODS))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--eval-examples", type=int, default=None, help="default: RunConfig's")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ.setdefault("LORAKIT_STORE", os.path.join(tempfile.mkdtemp(), "runs.db"))
    rows = []
    for name in args.method or list(METHODS):
        row = one(name, args.steps, args.eval_examples or RunConfig.eval_examples)
        rows.append(row)
        c = row["calibration"]
        if args.json:  # after each method: a run cut short keeps its rows
            Path(args.json).write_text(json.dumps(rows, indent=1))
        print(f"{name:10s} train {row['train_pred_s']:7.1f} / {row['train_meas_s']:7.1f} s = {row['train_ratio']:.3f}"
              f"   eval {row['eval_pred_s']:7.1f} / {row['eval_meas_s']:7.1f} s = {row['eval_ratio']}"
              f"   load {row['load_pred_s']:.1f} / {row['load_meas_s']:.1f} s   load avg {row['load_before']}->"
              f"{row['load_after']}   cal {c['train_gflops']} GFLOP/s (decode {c['decode_gflops']}), "
              f"ew {c['elementwise_gbs']} GB/s, dequant {c['dequant_gbs']} GB/s, adamw {c['adamw_ns_per_param']} "
              f"ns/param, layer {c['layer_overhead_s'] * 1e3:.2f} ms, attention {c['attention_gflops']} GFLOP/s, "
              f"dropout {c['dropout_ns_per_element']} ns/element", flush=True)


if __name__ == "__main__":
    main()
