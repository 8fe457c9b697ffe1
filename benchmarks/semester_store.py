"""A semester of runs: a store of 10,000 generated runs (histories of realistic length) and what a user
waits for with it: opening it, ``compare()``, a page of runs, ``lorakit compare``, the Studio's Compare
panel's first render and a selection change; and the store's size on disk.

    python benchmarks/semester_store.py [--runs 10000] [--store /tmp/semester.db] [--keep]

Runs are generated straight into one transaction with the store's own row codec (``store.rows``), as
thirty people's sweeps would have written them, one per ``save``: the same rows, minutes faster.
Times are one measurement each on whatever machine runs it; print the machine with them.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATUSES = ("finished",) * 8 + ("stopped", "failed")  # a tenth of runs stopped or failed


def generate(path: Path, n: int, seed: int = 0) -> None:
    from lorakit.config.run_config import RunConfig
    from lorakit.memory.breakdown import MemoryBreakdown
    from lorakit.run.record import RunRecord
    from lorakit.store import RunStore
    from lorakit.store import record_rows as rows

    rng = random.Random(seed)
    quants, ranks = ("none", "nf4", "int8", "fp4"), (4, 8, 16, 32)
    with RunStore(path) as store, store._writing("generating") as c:
        t0 = 1_750_000_000.0
        for i in range(n):
            steps = rng.choice((30, 60, 100, 200, 300))  # a workshop's short runs up to a long sweep trial
            quant, rank = rng.choice(quants), rng.choice(ranks)
            cfg = RunConfig(model="smollm2-135m", quant=quant, rank=rank, alpha=2 * rank, max_steps=steps,
                            name=f"student{i % 30:02d}-{quant}-r{rank}")
            loss0 = 2.5 + rng.random()
            history = [{"step": s, "loss": loss0 * 0.985 ** s + 0.05 * rng.random(), "learning_rate": 2e-4,
                        "tokens_per_s": 400 + 50 * rng.random(), "elapsed_s": 0.6 * s, "grad_norm": 2.0 / math.sqrt(s)}
                       for s in range(1, steps + 1)]
            evals = [{"step": s, "eval_loss": loss0 * 0.985 ** s + 0.1, "perplexity": None, "task_metric": None}
                     for s in (steps // 2, steps)]
            mem = MemoryBreakdown(538_060_032 // (4 if quant != "none" else 1), 1_843_200 * rank // 8,
                                  1_843_200 * rank // 8, 3_686_400 * rank // 8, 61_865_984, peak=700_000_000,
                                  peak_at="backward")
            rec = RunRecord(config=cfg, run_id=f"sem{i:05d}", status=rng.choice(STATUSES),
                            created_at=t0 + 600 * i, history=history, evals=evals, memory=mem, planned_memory=mem,
                            trainable_params=460_800 * rank // 8, total_params=134_975_808,
                            train_loss=history[-1]["loss"], eval_loss=evals[-1]["eval_loss"], tokens_per_s=420.0,
                            wall_s=0.6 * steps, task_metric=rng.random(), task_metric_before=0.1,
                            samples=[{"prompt": "Extract JSON: Ann, 31", "reference": '{"name": "Ann"}',
                                      "before": "Sure!", "after": '{"name": "Ann"}'}] * 3)
            rows.write_run(c, rec, time.time())
            rows.insert_steps(c, rec.run_id, rec.history)
            rows.insert_evals(c, rec.run_id, rec.evals, start=0)
            rows.write_memory(c, rec.run_id, "measured", mem)
            rows.write_memory(c, rec.run_id, "planned", mem)


def timed(fn):
    """(result, (wall seconds, CPU seconds of this process and its finished children)): on a shared machine
    the CPU time says what the work costs, the wall time what a user waited that day."""
    import resource

    def cpu():
        return sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime
                   for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

    t0, c0 = time.perf_counter(), cpu()
    out = fn()
    return out, (time.perf_counter() - t0, cpu() - c0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--store", default="/tmp/lorakit_semester.db")
    ap.add_argument("--keep", action="store_true", help="reuse the store at --store if it exists")
    ns = ap.parse_args(argv)
    path = Path(ns.store)
    if not (ns.keep and path.exists()):
        for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            f.unlink(missing_ok=True)
        _, (gen_s, _) = timed(lambda: generate(path, ns.runs))
        print(f"generated {ns.runs} runs in {gen_s:.1f} s")
    warnings.simplefilter("ignore")
    import pandas  # noqa: F401 - imports are a notebook's, already paid: warm them so the times are lorakit's

    import lorakit
    from lorakit.store import RunStore
    from lorakit.widgets import ComparePanel, StudioController

    ComparePanel(StudioController(store=False))  # plotly's FigureWidget imports nbformat, jsonschema, ...

    results = []
    load_before = os.getloadavg()[0]
    store, t = timed(lambda: RunStore(path))
    results.append(("open the store (RunStore(path))", t))
    n_steps = store._query("SELECT COUNT(*) FROM steps")[0][0]
    _, t = timed(store.summaries)
    results.append(("summaries() (every run, no history)", t))
    _, t = timed(lambda: store.page(0, 50))
    results.append(("page(0, 50) (50 runs with histories)", t))
    recs, t = timed(store.records)
    results.append(("records() (every run with its history)", t))
    df, t = timed(lambda: lorakit.compare(store=store))
    results.append((f"compare(store=...) ({len(df)} rows, every column)", t))
    df, t = timed(lambda: lorakit.compare(store=store, columns="short"))
    results.append((f"compare(store=..., columns='short') ({len(df)} rows)", t))
    for flags, what in (((), "the newest 20"), (("--all",), "--all: every row")):
        _, t = timed(lambda flags=flags: subprocess.run(
            [sys.executable, "-m", "lorakit.cli.commands", "--store", str(path), "compare", *flags],
            capture_output=True, check=True, cwd=REPO))
        results.append((f"lorakit compare {' '.join(flags)} (a new process; {what})", t))
    controller = StudioController(store=store)
    panel, t = timed(lambda: ComparePanel(controller))
    results.append(("Compare panel: first render (table page, options, charts)", t))
    ids = [v for _, v in panel.select.options[:3]]
    _, t = timed(lambda: setattr(panel.select, "value", tuple(ids)))
    results.append(("Compare panel: select 3 runs (charts redrawn)", t))
    _, t = timed(panel.next_page)
    results.append(("Compare panel: next page", t))
    size = sum(f.stat().st_size for f in (path, Path(f"{path}-wal")) if f.exists())
    print(f"\nstore: {len(store)} runs, {n_steps:,} logged steps, {size / 2**20:.1f} MiB on disk "
          f"({size / max(len(store), 1) / 1024:.1f} KiB a run); machine: {os.cpu_count()} CPUs, "
          f"{os.uname().machine}, shared: load average {load_before:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"{'what':62s} {'wall s':>8s} {'CPU s':>8s}")
    for what, (wall, cpu_s) in results:
        print(f"{what:62s} {wall:8.2f} {cpu_s:8.2f}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
