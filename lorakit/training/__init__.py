"""One run: train(), the Trainer bridge to events, the evaluation before and after, experiment trackers as sinks.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "train": "one_run",
    "TrainerEvents": "trainer_events",
    "ProbingTrainer": "probe",
    "resume": "resuming",
    "ResumeError": "resuming",
    "why_not": "resuming",
    "resume_point": "resuming",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
