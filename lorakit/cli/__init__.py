"""The command line: lorakit train / plan / compare / sweep / export / generate / chat / store.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "main": "commands",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
