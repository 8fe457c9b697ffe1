"""``lorakit store``: the run store itself, apart from ``cli.py``'s training commands.

- ``check`` / ``repair [--drop]``: the runs a store cannot read, named, and mended or dropped;
- ``merge OTHER``: another store's (or an exported archive's) runs and run folders into this one;
- ``export RUN... --to FILE``: chosen runs packed into one file to carry to another machine.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    """The ``store`` subcommand and its own subcommands, on ``lorakit``'s subparsers ``sub``."""
    from lorakit.store.merge import ARCHIVE_SUFFIXES

    st = sub.add_parser("store", help="check and repair the run store; merge another store; export runs to one file")
    ops = st.add_subparsers(dest="store_command", required=True)
    ops.add_parser("check", help="list the runs that cannot be read (exit 1 when there are some)")
    r = ops.add_parser("repair", help="rebuild unreadable runs from what the store still knows")
    r.add_argument("--drop", action="store_true", help="remove the unreadable runs instead")
    m = ops.add_parser("merge", help="bring another store's runs (and their run folders: the adapters) into "
                                     "this one; runs already here are left as they are")
    m.add_argument("other", help=f"a run store file (.db) or an archive lorakit store export wrote "
                                 f"({', '.join(ARCHIVE_SUFFIXES)})")
    m.add_argument("--run", nargs="+", metavar="RUN_ID", default=None, help="only these runs (default: all)")
    m.add_argument("--no-checkpoints", action="store_true",
                   help="leave the runs' checkpoints behind (they can then not be resumed here)")
    e = ops.add_parser("export", help="pack runs into one file to carry to another machine",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="FILE ending .tar.gz/.tgz/.tar: one archive with the runs and their folders; "
                                   "ending .db: a new store file (its run folders beside it, <stem>_adapters/).")
    e.add_argument("runs", nargs="+", metavar="RUN_ID", help="the runs to export (lorakit compare lists them)")
    e.add_argument("--to", required=True, metavar="FILE", help="the new file (refused if it exists)")
    e.add_argument("--no-checkpoints", action="store_true",
                   help="leave the runs' checkpoints out (smaller; the runs cannot be resumed there)")


add_store_parser = add_parser


def cmd_store(ns) -> int:
    if ns.store_command in ("check", "repair"):
        return _check_or_repair(ns)
    from lorakit.store.merge import export_runs, merge

    if ns.store_command == "merge":
        print(merge(ns.other, ns.store, ns.run, checkpoints=not ns.no_checkpoints))
        return 0
    path = export_runs(ns.runs, ns.to, ns.store, checkpoints=not ns.no_checkpoints)
    print(f"exported {len(ns.runs)} run(s) to {path}")
    return 0


def _check_or_repair(ns) -> int:
    from lorakit.store import RunStore

    with RunStore(ns.store, read_only=ns.store_command == "check") as store:
        if ns.store_command == "check":
            damaged = store.check()
            for d in damaged:
                print(f"damaged: {d}")
            for path, why in store.leftover_checkpoints():
                print(f"leftover checkpoint: {path} ({why}; `lorakit store repair` removes it)")
            print(f"{store.path}: {len(store) - len(damaged)} readable run(s), {len(damaged)} damaged"
                  + (" (repair with `lorakit store repair`, or drop with `--drop`)" if damaged else ""))
            return 1 if damaged else 0
        notes = store.repair(drop=ns.drop)
        for line in notes:
            print(line)
        left = store.check()
        mended = sum(n.startswith("run ") for n in notes) - len(left)  # the others: leftover checkpoints removed
        print(f"{store.path}: {mended} run(s) mended, {len(left)} still damaged")
        return 1 if left else 0


def print_damaged(store) -> None:
    """The runs a listing left out, on stderr, one line each."""
    for d in store.damaged:
        print(f"lorakit: warning: left out {d} (see `lorakit store check`)", file=sys.stderr)
