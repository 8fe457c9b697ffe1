"""Where a model lives: the device of its first real (non-meta) parameter."""
from __future__ import annotations


def model_device(model):
    """The ``torch.device`` of the model's first parameter that is not on the meta device (CPU if none)."""
    import torch

    for p in model.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")
