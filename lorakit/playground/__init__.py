"""Talking to a base and its adapters: one loaded base, adapters by name, streamed answers.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "Session": "session",
    "generate": "session",
    "stream": "session",
    "why_not": "session",
    "column_label": "session",
    "GenerationSettings": "streaming",
    "AnswerStats": "streaming",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
