"""A run as data: the events training emits and the RunRecord that sums them up.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "RunStarted": "events",
    "StepLogged": "events",
    "EvalDone": "events",
    "MemoryMeasured": "events",
    "RunFinished": "events",
    "PhaseStarted": "events",
    "emit": "events",
    "error_line": "events",
    "RunRecord": "record",
    "STATUSES": "record",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
