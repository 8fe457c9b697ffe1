"""Which family's layer model accounts for a model (``Dims.kind``), and the bytes it saves in one forward.

The accounting itself is in ``layer`` (LLaMA) and its subclasses ``gpt2``, ``encoder`` (BERT) and ``t5``;
this is the one place that maps a family to its class.
"""
from __future__ import annotations

from lorakit.memory.planning.encoder import EncoderLayer
from lorakit.memory.planning.gpt2 import GPT2Layer
from lorakit.memory.planning.layer import LayerModel
from lorakit.memory.planning.model import Dims, Step
from lorakit.memory.planning.t5 import T5Layer

LAYERS = {"gpt2": GPT2Layer, "bert": EncoderLayer, "t5": T5Layer}  # Dims.kind -> its class; LLaMA otherwise


def layer_model(dims: Dims, step: Step) -> LayerModel:
    """The per-layer accounting of the model's layout (``Dims.kind``)."""
    return LAYERS.get(dims.kind, LayerModel)(dims, step)


def activation_bytes(dims: Dims, step: Step) -> int:
    """Bytes autograd saves for backward in one training forward."""
    return layer_model(dims, step).activation_bytes()
