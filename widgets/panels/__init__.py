"""The Studio's panels; each works inside the Studio or alone (with a controller of its own)."""
from .adapter import AdapterPanel
from .compare import ComparePanel
from .data import DataPanel
from .memory import MemoryPanel
from .model import ModelPanel
from .playground import Playground, PlaygroundPanel
from .quant import QuantPanel
from .sweep import SweepPanel
from .train import TrainPanel

__all__ = ["ModelPanel", "AdapterPanel", "QuantPanel", "DataPanel", "TrainPanel", "MemoryPanel", "ComparePanel",
           "SweepPanel", "PlaygroundPanel", "Playground"]
