"""lorakit.widgets: the notebook panels (ipywidgets + plotly), built on lorakit's public API.

    from lorakit.widgets import Studio
    Studio()

Each panel also works alone (``AdapterPanel()``); ``LiveCallback`` brings the live loss and memory
panels to a plain ``transformers.Trainer``.
"""
from .controller import StudioController
from .panels import AdapterPanel, ComparePanel, DataPanel, MemoryPanel, ModelPanel, QuantPanel, SweepPanel, TrainPanel
from .panels.playground import Playground, PlaygroundPanel
from .studio import Studio
from .throttle import Throttle

__all__ = [
    "Studio", "StudioController", "ModelPanel", "AdapterPanel", "QuantPanel", "DataPanel", "TrainPanel",
    "MemoryPanel", "ComparePanel", "SweepPanel", "LiveCallback", "LiveDashboard", "Throttle",
    "Playground", "PlaygroundPanel",
]


def __getattr__(name):
    # LiveCallback subclasses transformers' TrainerCallback: import transformers only when asked
    if name in ("LiveCallback", "LiveDashboard"):
        from . import live

        return getattr(live, name)
    raise AttributeError(f"module 'lorakit.widgets' has no attribute {name!r}")
