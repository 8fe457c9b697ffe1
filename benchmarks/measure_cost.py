"""What measuring costs: a default run's training seconds with lorakit's memory measurement on and off, paired.

Measurement (``RunConfig.measure_memory``, on by default) is the activation count of the first forward, the resident
bytes after the first optimizer step, and torch's profiler over steps 1 and 2 and the step the run's plan names as
its peak (on CPU). The same run with ``measure_memory=False`` trains the same batches in the same order without any
of it. Runs alternate on, off, off, on, ... so a machine drifting slower or faster weighs on both arms alike.

Per run it reports the training seconds (``RunRecord.train_s``: the steps, no loading, no evaluation), the measured
steps' seconds, and the median seconds of a step that records nothing; per method the cost:
``sum(on) / sum(off) - 1`` (goal: under 3 %). A shared 2-core machine drifts 10-25 % in speed between runs a
minute apart, more than the cost sought, so the cost is also given with each run's training counted in its own
median step (``train_s / median_step_s``): what the run spent beyond its typical step, drift taken out (a cost that
slowed every step alike would hide there: the medians of the two arms are printed to compare).

The runs are the default ones (SmolLM2, the default task, 4 x 128, 30 steps) with two eval examples (evaluation is
not timed here) and no store (so no checkpoints in either arm).

    python benchmarks/measure_cost.py                        # lora and qlora-nf4, 2 pairs each (~15 min)
    python benchmarks/measure_cost.py --method lora --pairs 1 --steps 10 --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_plan import METHODS, load  # noqa: E402 - the sibling benchmark's default runs and load reading


def one(name: str, measure: bool, steps) -> dict:
    """One run; its training seconds and each step's seconds (from the StepLogged events' elapsed clock)."""
    import lorakit

    cfg = lorakit.RunConfig(model="smollm2-135m", max_steps=steps, eval_examples=2, checkpoint_every=0,
                            measure_memory=measure, **METHODS[name])
    elapsed = {}

    def sink(event):
        if isinstance(event, lorakit.StepLogged):
            elapsed[event.step] = event.elapsed_s

    rec = lorakit.train(cfg, sinks=[sink], store=False)
    if rec.status != "finished":
        raise SystemExit(f"{name}: the run ended {rec.status}: {rec.reason}")
    ordered = sorted(elapsed)
    step_s = {s: elapsed[s] - elapsed[p] for p, s in zip(ordered[:-1], ordered[1:], strict=True)}  # step 1: no start
    recorded = list((rec.memory.assumes or {}).get("steps", [])) if measure and rec.memory is not None else []
    plain = [v for s, v in step_s.items() if s not in recorded]
    median = statistics.median(plain)
    return {"method": name, "measure": measure, "steps": cfg.max_steps, "train_s": round(rec.train_s, 2),
            "recorded_steps": recorded, "recorded_step_s": {s: round(step_s[s], 3) for s in recorded if s in step_s},
            "median_step_s": round(median, 3), "in_median_steps": round(rec.train_s / median, 3), "load_avg": load()}


def cost(runs: list, key: str) -> float:
    """sum(key) of the measured runs over sum(key) of the others, less 1."""
    on = sum(r[key] for r in runs if r["measure"])
    return on / sum(r[key] for r in runs if not r["measure"]) - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", action="append", choices=list(METHODS))
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="default: the run's recommended steps (30)")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows, summary = [], []
    for name in args.method or ["lora", "qlora-nf4"]:
        order = [flag for i in range(args.pairs) for flag in ((True, False) if i % 2 == 0 else (False, True))]
        mine = []
        for measure in order:
            row = one(name, measure, args.steps)
            mine.append(row)
            print(f"{name:10s} measure={str(measure):5s} train {row['train_s']:7.2f} s   median step "
                  f"{row['median_step_s']:.3f} s   recorded {row['recorded_step_s']}   load avg {row['load_avg']}",
                  flush=True)
        on = sum(r["train_s"] for r in mine if r["measure"])
        off = sum(r["train_s"] for r in mine if not r["measure"])
        seconds, steady = on / off - 1, cost(mine, "in_median_steps")
        summary.append({"method": name, "on_s": round(on, 2), "off_s": round(off, 2), "cost": round(seconds, 4),
                        "cost_in_median_steps": round(steady, 4)})
        print(f"{name:10s} measurement costs {100 * seconds:+.1f} % of the training seconds ({on:.1f} s on, "
              f"{off:.1f} s off, {args.pairs} pair(s)); {100 * steady:+.1f} % counted in each run's own median "
              "step (the machine's drift between runs taken out)", flush=True)
        rows += mine
        if args.json:
            Path(args.json).write_text(json.dumps({"runs": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
