"""Changing the Playground's columns: an adapter attached to / detached from the loaded base
(``Session.set_runs``) against loading a new session (base + adapters) for the same columns, with the memory
each way.

    python benchmarks/playground_switch.py [--model smollm2-135m] [--repeats 3]

Three random LoRA adapters (r8 on q,v) are saved as stored runs in a temporary store (``playground.stored_runs``),
so nothing is trained. Medians of ``--repeats``; the switch alternates between two and three adapter columns.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from playground import stored_runs  # benchmarks/playground.py

from lorakit.common.quiet import quiet_libraries
from lorakit.playground.session import Session
from lorakit.store import RunStore


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs.db")
        a, b, c = stored_runs(store, args.model, 3)
        session = Session([a, b], store=store)
        mib = {2: session.memory().total / 2**20}
        attach, detach, reload = [], [], []
        for _ in range(args.repeats):
            attach.append(_timed(lambda: session.set_runs([a, b, c], store=store)))
            mib[3] = session.memory().total / 2**20
            detach.append(_timed(lambda: session.set_runs([a, b], store=store)))
            assert session.memory().total / 2**20 == mib[2]
            reload.append(_timed(lambda: Session([a, b, c], store=store)))
        print(f"{args.model}: memory with 2 adapter columns {mib[2]:.2f} MiB, with 3 {mib[3]:.2f} MiB "
              f"(the third adapter {mib[3] - mib[2]:.2f} MiB; back to {mib[2]:.2f} after detaching)")
        print("| change | median s | runs |\n|---|---|---|")
        for name, xs in (("attach a third adapter (set_runs)", attach), ("detach it (set_runs)", detach),
                         ("a new session for the 3 columns (base + 3 adapters)", reload)):
            print(f"| {name} | {statistics.median(xs):.3f} | {', '.join(f'{x:.3f}' for x in xs)} |")
        store.close()


if __name__ == "__main__":
    main()
