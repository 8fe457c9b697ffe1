"""Cost of the live UI: the same run headless and with the Studio's live sinks attached, one process.

    python benchmarks/ui_overhead.py [--model smollm2-135m] [--steps 20] [--pairs 3]

"Headless" is ``lorakit.train(cfg, store=False)`` on a background thread (as the Studio runs it).
"Studio" is the real thing without a browser: a ``Studio`` (controller, panels, plotly
FigureWidgets, the throttle) whose Train button is clicked in Python, so every event goes
through the controller's sink, the LiveRun state, the throttled chart redraws and the memory
panel; only the browser end of the widget messages is missing. No run store on either side, so
only the UI differs. Runs alternate (H U, U H, H U, …) after one warm-up run.

Two figures:
- end to end: the median over pairs of 1 - studio/headless real-token throughput. On a shared
  machine this swings by tens of percent from run to run whatever the UI does (other jobs);
- measured directly: the time the UI itself spends while the loop runs (the controller's sink on
  the training thread for step, eval and memory events, including the inline chart redraws, plus
  the throttle's redraws on its timer thread) as a share of the loop's time. This one does not
  depend on what else the machine is doing. RunStarted / RunFinished work (before and after the
  loop: the run table refresh) is listed separately.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time


def run_headless(cfg) -> float:
    import lorakit

    out = {}
    t = threading.Thread(target=lambda: out.setdefault("rec", lorakit.train(cfg, store=False)))
    t.start()
    t.join()
    rec = out["rec"]
    assert rec.status == "finished", rec.reason
    return rec.tokens_per_s


def run_studio(cfg) -> dict:
    """One Studio run; also times the UI's own work: the sink on the training thread (with the
    redraws it does inline) and the throttle's redraws on its timer thread."""
    from lorakit.widgets import Studio

    s = Studio(store=False, autoload=False, **{k: v for k, v in cfg.to_dict().items() if k != "name"})
    c, th = s.controller, s.train_panel.throttle
    from lorakit.run.events import RunFinished, RunStarted

    spent = {"sink": 0.0, "timer_redraw": 0.0, "outside_loop": 0.0}
    sink, redraw = c._sink, th.redraw

    def timed_sink(event, live):
        t0 = time.perf_counter()
        try:
            sink(event, live)
        finally:
            # RunStarted comes before the loop, RunFinished after it (it refreshes the run table)
            key = "outside_loop" if isinstance(event, (RunStarted, RunFinished)) else "sink"
            spent[key] += time.perf_counter() - t0

    def timed_redraw(items):
        t0 = time.perf_counter()
        try:
            redraw(items)
        finally:
            if threading.current_thread().name != "lorakit-studio-run":  # else inside the sink's time
                spent["timer_redraw"] += time.perf_counter() - t0

    c._sink, th.redraw = timed_sink, timed_redraw
    s.train_panel.train_button.click()
    s.wait()
    live = c.live
    assert live.status == "finished", live.reason
    assert len(s.train_panel.chart.train_points) == cfg.max_steps  # the chart really was fed
    rec = live.record
    h = rec.history  # the training loop's length, from the steps' timestamps
    loop_s = (h[-1]["elapsed_s"] - h[0]["elapsed_s"]) * len(h) / max(1, len(h) - 1)
    return dict(tokens_per_s=rec.tokens_per_s, pushed=th.pushed, redraws=th.redraws,
                ui_s=spent["sink"] + spent["timer_redraw"], loop_s=loop_s, outside_s=spent["outside_loop"])


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core {cpu}, {platform.system()}, {gpu}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads (0: torch's default). On a shared 2-core machine, 1 keeps "
                         "OpenMP from collapsing when another job takes a core, which swings throughput 10x")
    args = ap.parse_args(argv)

    import plotly
    import torch
    import transformers

    import lorakit

    if args.threads:
        torch.set_num_threads(args.threads)

    # eval_examples small: the after-training evaluation and samples are not what is measured
    cfg = lorakit.RunConfig(model=args.model, method="lora", max_steps=args.steps, eval_examples=1,
                            train_examples=max(64, args.steps * 4))
    print(f"ui_overhead: {args.model}, LoRA r={cfg.rank} on {','.join(cfg.resolved_targets())}, "
          f"{args.steps} steps of batch {cfg.batch_size} x {cfg.seq_len}; {args.pairs} pairs after a warm-up; "
          f"{torch.get_num_threads()} torch thread(s)",
          flush=True)
    run_headless(cfg.replace(max_steps=3))  # warm-up: imports, caches, the first model load
    rows = []
    for i in range(args.pairs):
        order = ("headless", "studio") if i % 2 == 0 else ("studio", "headless")
        got = {}
        for kind in order:
            got[kind] = run_headless(cfg) if kind == "headless" else run_studio(cfg)
            tps = got[kind] if kind == "headless" else got[kind]["tokens_per_s"]
            print(f"  pair {i + 1} {kind:8s} {tps:8.1f} tokens/s", flush=True)
        rows.append((got["headless"], got["studio"]))

    overheads = [100.0 * (1 - st["tokens_per_s"] / h) for h, st in rows]
    # the UI's own work during the loop (step, eval and memory events, timer redraws) against the loop's time
    ui_share = [100.0 * st["ui_s"] / st["loop_s"] for _, st in rows]
    print()
    print("| pair | headless tokens/s | studio tokens/s | end-to-end overhead | UI time in the loop | "
          "UI time before/after the loop | events | chart redraws |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, ((h, st), o, u) in enumerate(zip(rows, overheads, ui_share, strict=False), 1):
        print(f"| {i} | {h:.1f} | {st['tokens_per_s']:.1f} | {o:+.1f} % | {st['ui_s'] * 1000:.0f} ms = {u:.2f} % "
              f"| {st['outside_s'] * 1000:.0f} ms | {st['pushed']} | {st['redraws']} |")
    med_h = statistics.median(h for h, _ in rows)
    med_s = statistics.median(st["tokens_per_s"] for _, st in rows)
    print(f"| median | {med_h:.1f} | {med_s:.1f} | {statistics.median(overheads):+.1f} % | "
          f"{statistics.median(ui_share):.2f} % | | | |")
    print()
    print(f"UI overhead, end to end (median of pairs): {statistics.median(overheads):+.1f} % (goal: < 5 %)")
    print(f"UI overhead, measured directly (sink + redraw time / training-loop time, median): "
          f"{statistics.median(ui_share):.2f} %")
    print(f"date {time.strftime('%Y-%m-%d')}; machine: {machine()}; python {sys.version.split()[0]}, "
          f"torch {torch.__version__}, transformers {transformers.__version__}, plotly {plotly.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
