"""Run a benchmark script against another lorakit checkout (e.g. an old commit), not the editable install.

The editable install's import finder sits ahead of PYTHONPATH, so ``PYTHONPATH=/tmp/old`` alone still
imports this checkout. This drops that finder and puts the other checkout first:

    git worktree add /tmp/old f3dbf22
    .venv/bin/python benchmarks/at_checkout.py /tmp/old benchmarks/eval_share.py --store /tmp/old.db
"""
import runpy
import sys

if __name__ == "__main__":
    root, script, *rest = sys.argv[1:]
    sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, root)
    sys.argv = [script, *rest]
    runpy.run_path(script, run_name="__main__")
