"""Time from a click to the Studio's response, kernel side: Train, a model switch, a quant switch, Run sweep, Export.

    python benchmarks/click_response.py [--repeats 3]
    python benchmarks/at_checkout.py /tmp/old benchmarks/click_response.py     # the same at another commit

A real ``Studio`` (controller, panels, FigureWidgets) on tiny-llama with a fresh store, driven in Python as the
buttons are: every trait change of every widget in the Studio is observed with its time, except the widget the
user touched. Two figures per action:

- **first**: the first change the browser is sent (a status line, a disabled button, a table): what a user sees
  first. This is the kernel's share; the browser's rendering adds the same for any version.
- **settled**: the last change before one second of quiet (the background plan and fit verdict of a model or
  quant switch arriving; for Train and Run sweep: not measured, they then train).

Each action is repeated ``--repeats`` times and the median is printed. Train and Run sweep are stopped after the
first response and waited for.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

QUIET_S = 1.0  # no change for this long: settled
LONGEST_S = 120.0


def _widgets_module():
    """lorakit.widgets from the same checkout as the lorakit imported (at_checkout.py puts an old one first)."""
    import lorakit

    folder = Path(lorakit.__file__).resolve().parents[1] / "widgets"
    if "lorakit.widgets" not in sys.modules:
        spec = importlib.util.spec_from_file_location("lorakit.widgets", folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["lorakit.widgets"] = module
        spec.loader.exec_module(module)
    return sys.modules["lorakit.widgets"]


def _tree(widget) -> list:
    """Every widget under ``widget`` (Box children, recursively)."""
    out, todo = [], [widget]
    while todo:
        w = todo.pop()
        out.append(w)
        todo.extend(getattr(w, "children", ()) or ())
    return out


class Changes:
    """The times of trait changes of the Studio's widgets (all but the one touched)."""

    def __init__(self, studio):
        self.times: list[float] = []
        self.lock = threading.Lock()
        self.skip = None
        for w in _tree(studio):
            w.observe(self._seen)

    def _seen(self, change) -> None:
        if change["owner"] is self.skip or change["name"].startswith("_") or change["name"] == "comm":
            return
        with self.lock:
            self.times.append(time.perf_counter())

    def measure(self, action, touched=None, settle: bool = True) -> tuple[float, float]:
        """(first, settled) seconds after ``action()`` starts; settled is nan when not waited for."""
        with self.lock:
            self.times.clear()
        self.skip = touched
        t0 = time.perf_counter()
        action()
        deadline = t0 + LONGEST_S
        while True:
            time.sleep(0.05)
            with self.lock:
                times = list(self.times)
            now = time.perf_counter()
            if times and (not settle or now - times[-1] >= QUIET_S) or now > deadline:
                break
        first = times[0] - t0 if times else float("nan")
        return first, (times[-1] - t0 if settle and times else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lorakit

    W = _widgets_module()
    tmp = Path(tempfile.mkdtemp(prefix="lorakit-clicks-"))
    studio = W.Studio(store=tmp / "runs.db", model="tiny-llama", max_steps=3, batch_size=2, seq_len=128,
                      eval_examples=2)
    c = studio.controller
    c.wait(LONGEST_S)
    changes = Changes(studio)
    registry, quant = studio.model_panel.registry, studio.quant_panel.quant
    results: dict[str, list] = {}

    def record(name, pair):
        results.setdefault(name, []).append(pair)

    def train_and_stop():
        first = changes.measure(studio.train_panel.train_button.click, studio.train_panel.train_button, settle=False)
        c.stop()
        c.wait(LONGEST_S)
        return first

    record("Train (tiny-llama)", train_and_stop())  # warm-up: the first run pays imports once
    results.clear()
    other = "tiny-gpt2" if "tiny-gpt2" in [v for _, v in registry.options] else "smollm2-135m"
    for _ in range(args.repeats):
        record("Train (tiny-llama)", train_and_stop())
        record(f"model switch (tiny-llama -> {other})", changes.measure(lambda: setattr(registry, "value", other),
                                                                       registry))
        record("model switch (back to tiny-llama)", changes.measure(lambda: setattr(registry, "value", "tiny-llama"),
                                                                    registry))
        c.wait(LONGEST_S)
        record("quant switch (none -> nf4)", changes.measure(lambda: setattr(quant, "value", "nf4"), quant))
        record("quant switch (nf4 -> none)", changes.measure(lambda: setattr(quant, "value", "none"), quant))
        c.wait(LONGEST_S)
        c.sweep.set_axes(rank=[2, 4])
        time.sleep(QUIET_S)
        run = studio.sweep_panel.run_button
        record("Run sweep (2 trials)", changes.measure(run.click, run, settle=False))
        studio.sweep_panel.stop_button.click()
        c.wait(LONGEST_S)
        c.sweep.set_axes(rank=[])
        export = next(w for w in _tree(studio.compare_panel) if getattr(w, "description", "") == "Export HTML report")
        os.chdir(tmp)
        record("Export HTML report", changes.measure(export.click, export))

    print(f"# click to response, kernel side; {platform.machine()}, {os.cpu_count()} cores, "
          f"lorakit at {Path(lorakit.__file__).resolve().parents[1]}; load {os.getloadavg()[0]:.1f}; "
          f"median of {args.repeats}")
    print("| action | first change s | settled s |")
    print("|---|---:|---:|")
    for name, pairs in results.items():
        first = statistics.median(p[0] for p in pairs)
        settled = [p[1] for p in pairs if p[1] == p[1]]
        print(f"| {name} | {first:.3f} | {statistics.median(settled):.3f} |" if settled else
              f"| {name} | {first:.3f} | (trains) |")


if __name__ == "__main__":
    main()
