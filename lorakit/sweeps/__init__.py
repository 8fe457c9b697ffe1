"""Grids of runs, here or as Ray tasks.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "sweep": "grids",
    "grid": "grids",
    "EXECUTORS": "grids",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
