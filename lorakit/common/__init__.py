"""Leaves every room may use: errors, number formats, devices, the cache home, lazy library names, quiet libraries.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "ConfigError": "errors",
    "MiB": "display",
    "GiB": "display",
    "fmt_bytes": "display",
    "finite": "display",
    "CATEGORY_NAMES": "display",
    "CATEGORY_COLORS": "display",
    "TIMELINE_NAMES": "display",
    "TIMELINE_COLORS": "display",
    "PEAK_COLORS": "display",
    "model_device": "devices",
    "matmul_gflops": "devices",
    "free_ram": "devices",
    "cache_home": "home",
    "warm": "threads",
    "quiet_libraries": "quiet",
    "quiet_bitsandbytes": "quiet",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
