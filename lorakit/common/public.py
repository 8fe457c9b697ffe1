"""A room's public names, imported from the module that defines each when first used (PEP 562).

So ``import lorakit.memory`` costs nothing (a submodule read as an attribute is imported then), a room's
``__init__`` never imports another room (no circles through package initialisation), and ``dir(room)``
lists what the room offers, not its files.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys


def lazy_names(package: str, names: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package``, whose public ``names`` map to the submodule defining each."""

    def __getattr__(name: str):
        if name not in names:
            # a submodule read as an attribute (lorakit.memory.planner) before anything imported it
            if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        setattr(sys.modules[package], name, value)  # once: later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
