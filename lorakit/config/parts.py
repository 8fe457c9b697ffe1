"""Settings as typed parts: the base, the adapter and the step shape of a run, each frozen.

``RunConfig`` stays one flat object for users, CLI flags and the store; the engine takes these parts
instead of loose keywords (``models.load_base(base)``, ``adapters.attach(model, adapter)``,
``planner.planning(settings)``, ``fit.fits(settings)``). Each part's fields are named as RunConfig's,
so ``split`` is the one conversion from RunConfig values (or ``plan_memory``'s keywords) to parts:
a field added to RunConfig and to a part reaches every engine function that takes the part.
Validation happens once, before the parts are built (``RunConfig`` on construction,
``planner.settings_of`` for keywords); the parts themselves only carry the values.

A leaf: imports nothing from lorakit (``config`` and ``recommend`` use ``four_bit`` from here).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, Union

FOUR_BIT = ("nf4", "fp4")


def four_bit(quant) -> bool:
    """Whether ``quant`` stores the base in 4 bits (QLoRA: 'nf4' or 'fp4')."""
    return quant in FOUR_BIT


def positive_int(value) -> bool:
    """An int > 0 (not a bool): a usable LoRA rank, batch size or length."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def quant_of(model) -> str:
    """The quantization a loaded model (a base or a PeftModel) was stored with: 'none', 'int8', 'nf4' or
    'fp4', read from its config's ``quantization_config`` (as transformers saves it)."""
    plain = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(plain, "config", None)
    qc = getattr(config, "quantization_config", None)
    qc = qc.to_dict() if hasattr(qc, "to_dict") else (qc or {})
    if qc.get("load_in_4bit") or getattr(plain, "is_loaded_in_4bit", False):
        return qc.get("bnb_4bit_quant_type", "nf4")
    return "int8" if qc.get("load_in_8bit") or getattr(plain, "is_loaded_in_8bit", False) else "none"


@dataclass(frozen=True)
class Base:
    """The base model as it loads: which one, with which head, stored how."""

    model: Any = "smollm2-135m"
    """Built-in name, hub id or local directory (the planner also takes a config.json path or a PretrainedConfig)."""
    task: str = ""
    """'causal-lm', 'classification' or 'seq2seq'; '': the model's own."""
    quant: str = "none"
    """Base-weight storage: 'none', 'int8', 'nf4' or 'fp4'."""
    double_quant: bool = True
    """4-bit only: also quantize the per-block absmax constants."""
    dtype: Optional[str] = "float32"
    """Weights' and 4-bit compute dtype; 'auto' (or None for the planner): chosen for the device."""
    num_labels: Optional[int] = None
    """A classifier's outputs; None: the model config's (the planner) or the data's labels (a run)."""

    @property
    def four_bit(self) -> bool:
        """Stored in 4 bits (QLoRA)."""
        return four_bit(self.quant)

    @property
    def quantized(self) -> bool:
        """Stored by bitsandbytes (8 or 4 bits)."""
        return self.quant != "none"


@dataclass(frozen=True)
class Adapter:
    """What trains on top of the base: LoRA's shape and variant, or every weight (method 'full')."""

    method: str = "lora"
    """'lora' or 'full'."""
    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16
    """LoRA alpha; the update is scaled by alpha / rank (rsLoRA: alpha / sqrt(rank))."""
    dropout: float = 0.05
    """Dropout on the LoRA branch input."""
    target_modules: Union[tuple, str] = "qv"
    """Layer names or a preset ('qv', 'attention', 'mlp', 'all-linear')."""
    use_dora: bool = False
    """DoRA: a trained magnitude per output row of each adapted layer."""
    use_rslora: bool = False
    """rsLoRA scaling."""
    init: str = "default"
    """'default', 'gaussian', 'pissa', 'olora' or 'loftq'."""
    loftq_iter: int = 1
    """LoftQ's alternating steps."""
    loraplus_lr_ratio: float = 0.0
    """LoRA+: B's learning rate over A's (0: off)."""
    adapter_dtype: str = "float32"
    """Dtype of A and B."""

    @property
    def full(self) -> bool:
        """Full fine-tuning: no adapters, every weight trains."""
        return self.method == "full"


@dataclass(frozen=True)
class Shape:
    """One training step's shape: how much goes through it and what it keeps for backward."""

    batch_size: int = 4
    """Examples per step."""
    seq_len: int = 128
    """Tokens per example."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward."""
    optimizer: str = "adamw"
    """'adamw', 'adamw_8bit' or 'paged_adamw_8bit'."""
    labelled_head: bool = False
    """A causal LM's head and loss at the labelled positions only (lorakit.train's); False: every position."""

    @property
    def tokens(self) -> int:
        """Tokens per step."""
        return self.batch_size * self.seq_len


@dataclass(frozen=True)
class Settings:
    """A run's parts, as the engine takes them."""

    base: Base
    """The base model."""
    adapter: Adapter
    """What trains."""
    shape: Shape
    """The step's shape."""


PARTS = {"base": Base, "adapter": Adapter, "shape": Shape}
PART_FIELDS = {name: tuple(f.name for f in fields(cls)) for name, cls in PARTS.items()}


def split(values: Mapping) -> Settings:
    """The one conversion: RunConfig-named ``values`` into the three parts (names a part lacks are left
    out; a part's field missing from ``values`` keeps the part's default). No validation: the caller's
    values are already validated (``RunConfig``, ``planner.settings_of``)."""
    return Settings(**{name: cls(**{k: values[k] for k in PART_FIELDS[name] if k in values})
                       for name, cls in PARTS.items()})
