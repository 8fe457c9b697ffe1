"""``lorakit store check`` / ``lorakit store repair [--drop]``: the damaged runs of a store, named and mended."""
from __future__ import annotations

import sys


def add_parser(sub) -> None:
    s = sub.add_parser("store", help="check the run store for runs that cannot be read, and repair or drop them")
    s.add_argument("action", choices=("check", "repair"),
                   help="check: list unreadable runs (exit 1 when there are some); repair: rebuild them from what "
                        "the store still knows")
    s.add_argument("--drop", action="store_true", help="with repair: remove the unreadable runs instead")


def cmd_store(ns) -> int:
    from .store import RunStore

    with RunStore(ns.store, read_only=ns.action == "check") as store:
        if ns.action == "check":
            damaged = store.check()
            for d in damaged:
                print(f"damaged: {d}")
            print(f"{store.path}: {len(store) - len(damaged)} readable run(s), {len(damaged)} damaged"
                  + (" (repair with `lorakit store repair`, or drop with `--drop`)" if damaged else ""))
            return 1 if damaged else 0
        notes = store.repair(drop=ns.drop)
        for line in notes:
            print(line)
        left = store.check()
        print(f"{store.path}: {len(notes) and len(notes) - len(left)} run(s) mended, {len(left)} still damaged")
        return 1 if left else 0


def print_damaged(store) -> None:
    """The runs a listing left out, on stderr, one line each."""
    for d in store.damaged:
        print(f"lorakit: warning: left out {d} (see `lorakit store check`)", file=sys.stderr)
