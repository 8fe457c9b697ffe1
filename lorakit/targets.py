"""Target modules: which linear layers LoRA adapts, named one by one or by a preset.

A ``target_modules`` value (``RunConfig``, ``plan_memory``, ``attach_lora``, the CLI, the Studio) is
a preset name, one layer name, or a sequence of layer names. Names are the short names a model
gives every layer of a kind (``q_proj`` is every decoder layer's query projection), as
``adapters.linear_modules`` groups them. A value means nothing until it meets a model's names:
``resolve`` turns it into the names to adapt, or a ``ConfigError`` naming ``target_modules`` with
what the model has. ``problem`` is the check possible before anything is loaded (used by
``RunConfig``): the value's shape, and for a built-in LLaMA-family model the names themselves.

Imports only ``errors.ConfigError`` and the model registry (no heavy library).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from .errors import ConfigError
from .registry import REGISTRY

ALL_LINEAR = "all-linear"  # peft's own shorthand: every linear layer except the output head
PRESETS: dict[str, Union[tuple, str]] = {
    "qv": ("q_proj", "v_proj"),  # the LoRA paper's choice
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
    ALL_LINEAR: ALL_LINEAR,
}
# The linear layers of the LLaMA family (every built-in trainable model): known before loading.
LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

TargetModules = Union[str, Sequence[str]]


def describe(preset: str) -> str:
    """What a preset selects, in words (a button's tooltip)."""
    names = PRESETS[preset]
    return "every linear layer except the output head" if names == ALL_LINEAR else ", ".join(names)


def allowed_text(available: Sequence[str] = LLAMA_LINEARS) -> str:
    """The presets and layer names a value may use, for a message."""
    return f"presets {', '.join(map(repr, PRESETS))} or layer names {', '.join(available)}"


def expand(value: TargetModules, available: Sequence[str]) -> list[str]:
    """The layer names ``value`` selects among ``available`` (a preset expanded; names kept as given,
    unknown ones included: ``resolve`` is the checking version)."""
    if isinstance(value, str):
        names = PRESETS.get(value, (value,))
        return list(available) if names == ALL_LINEAR else list(names)
    return list(value or ())


def resolve(value: TargetModules, available: Sequence[str]) -> list[str]:
    """The layer names to adapt, given a model's linear-layer names (output head excluded).

    Raises ``ConfigError({"target_modules": ...})`` naming the model's layers and the presets when
    the model has no linear layer, the value selects nothing, or names a layer the model lacks.
    """
    available = list(available)
    if not available:
        raise ConfigError({"target_modules": (
            "this model has no nn.Linear layers for LoRA to target (GPT-2, for one, uses Conv1D)")})
    names = expand(value, available)
    unknown = [t for t in names if t not in available]
    if unknown or not names:
        raise ConfigError({"target_modules": (
            f"unknown module(s) {', '.join(map(repr, unknown)) or '(none given)'} for this model; "
            f"its linear layers are {', '.join(available)}; presets: {', '.join(PRESETS)}")})
    return names


def known_layers(model: str) -> Optional[tuple]:
    """The linear-layer names of a built-in LLaMA-family model (None: known only once loaded)."""
    info = REGISTRY.get(model) if isinstance(model, str) else None
    return LLAMA_LINEARS if info is not None and info.architecture == "llama" else None


def problem(value, model: str = "", method: str = "lora") -> str:
    """What is wrong with ``value`` before any model is loaded ("" when nothing is): it must select
    at least one layer; with LoRA on a built-in LLaMA-family model, only layers that model has."""
    if isinstance(value, str) and value in PRESETS:
        return ""
    names = (value,) if isinstance(value, str) else value
    if names is not None and not isinstance(names, (list, tuple)):
        return f"target_modules must be a preset or a list of layer names, got {value!r}"
    if not names:
        return "target_modules must name at least one linear layer or a preset " + allowed_text()
    known = known_layers(model) if method != "full" else None
    unknown = [t for t in names if known is not None and t not in known]
    if unknown:
        return f"unknown module(s) {', '.join(map(repr, unknown))}; allowed: {allowed_text()}"
    return ""


def from_cli(values: Sequence[str]) -> TargetModules:
    """Command-line words as a value: one preset name stays a preset, anything else is layer names."""
    values = list(values)
    return values[0] if len(values) == 1 and values[0] in PRESETS else tuple(values)
