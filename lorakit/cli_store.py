"""``lorakit store``: runs that move between machines (``merge`` another store or an exported
archive into this one; ``export`` chosen runs into one file). Kept apart from ``cli.py``'s training
commands; ``cli.build_parser`` adds it."""
from __future__ import annotations

import argparse

from .store.merge import ARCHIVE_SUFFIXES


def add_store_parser(sub) -> None:
    """The ``store`` subcommand and its own subcommands, on ``lorakit``'s subparsers ``sub``."""
    st = sub.add_parser("store", help="move runs between stores: merge another store, export runs to one file")
    ops = st.add_subparsers(dest="store_command", required=True)
    m = ops.add_parser("merge", help="bring another store's runs (and their run folders: the adapters) into "
                                     "this one; runs already here are left as they are")
    m.add_argument("other", help=f"a run store file (.db) or an archive lorakit store export wrote "
                                 f"({', '.join(ARCHIVE_SUFFIXES)})")
    m.add_argument("--run", nargs="+", metavar="RUN_ID", default=None, help="only these runs (default: all)")
    e = ops.add_parser("export", help="pack runs into one file to carry to another machine",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="FILE ending .tar.gz/.tgz/.tar: one archive with the runs and their folders; "
                                   "ending .db: a new store file (its run folders beside it, <stem>_adapters/).")
    e.add_argument("runs", nargs="+", metavar="RUN_ID", help="the runs to export (lorakit compare lists them)")
    e.add_argument("--to", required=True, metavar="FILE", help="the new file (refused if it exists)")


def cmd_store(ns) -> int:
    from .store.merge import export_runs, merge

    if ns.store_command == "merge":
        print(merge(ns.other, ns.store, ns.run))
        return 0
    path = export_runs(ns.runs, ns.to, ns.store)
    print(f"exported {len(ns.runs)} run(s) to {path}")
    return 0
