"""Target modules: which linear layers LoRA adapts, named one by one or by a preset.

A ``target_modules`` value (``RunConfig``, ``plan_memory``, ``attach_lora``, the CLI, the Studio) is
a preset name, one layer name, or a sequence of layer names. Names are the names a model gives every
layer of a kind (``q_proj`` is every decoder layer's query projection), as ``adapters.linear_modules``
groups them: the last part of the module path, or a longer suffix where that part alone would mix
layers of different shapes (GPT-2's ``attn.c_proj`` and ``mlp.c_proj``; BERT's
``attention.output.dense`` and ``layer.output.dense``).

A preset means the same thing in every family, spelled in the model's names (``LAYOUTS``): ``qv`` is
LLaMA's q_proj, v_proj, GPT-2's fused c_attn, BERT's query, value and T5's q, v. The layout is
recognised from the model's layer names, so ``expand`` / ``resolve`` need nothing else.

A value means nothing until it meets a model's names: ``resolve`` turns it into the names to adapt,
or a ``ConfigError`` naming ``target_modules`` with what the model has. ``problem`` is the check
possible before anything is loaded (used by ``RunConfig``): the value's shape, and for a built-in
model the names themselves (``known_layers``).

Imports only ``errors.ConfigError`` and the model registry (no heavy library).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from lorakit.common.errors import ConfigError
from lorakit.config.registry import REGISTRY

ALL_LINEAR = "all-linear"  # peft's own shorthand: every linear layer except the output head

# The linear layers of each layout, known before loading (built-in models: ``known_layers``).
LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GPT2_LINEARS = ("c_attn", "attn.c_proj", "c_fc", "mlp.c_proj")  # Conv1D; q, k, v fused in c_attn
BERT_LINEARS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "layer.output.dense")
T5_LINEARS = ("q", "k", "v", "o", "wi", "wo")  # original T5: ReLU MLP
T5_GATED_LINEARS = ("q", "k", "v", "o", "wi_0", "wi_1", "wo")  # T5 v1.1, FLAN-T5: gated-GELU MLP

# preset -> layer names, per layout; the first layout is the default (LLaMA's, today's PRESETS)
LAYOUTS: dict[str, dict[str, tuple]] = {
    "llama": {"qv": ("q_proj", "v_proj"), "attention": LLAMA_LINEARS[:4], "mlp": LLAMA_LINEARS[4:]},
    "gpt2": {"qv": ("c_attn",), "attention": ("c_attn", "attn.c_proj"), "mlp": ("c_fc", "mlp.c_proj")},
    "bert": {"qv": ("query", "value"), "attention": BERT_LINEARS[:4], "mlp": BERT_LINEARS[4:]},
    "t5": {"qv": ("q", "v"), "attention": T5_LINEARS[:4], "mlp": T5_LINEARS[4:]},
    "t5-gated": {"qv": ("q", "v"), "attention": T5_GATED_LINEARS[:4], "mlp": T5_GATED_LINEARS[4:]},
}
PRESETS: dict[str, Union[tuple, str]] = {**LAYOUTS["llama"], ALL_LINEAR: ALL_LINEAR}  # the LoRA paper's qv first

TargetModules = Union[str, Sequence[str]]


def layout(available: Sequence[str]) -> str:
    """The layout whose preset names ``available`` has: all of them, else its qv pair; else 'llama'."""
    have = set(available)
    for need in (lambda p: [n for names in p.values() for n in names], lambda p: p["qv"]):
        for name, presets in LAYOUTS.items():
            if set(need(presets)) <= have:
                return name
    return "llama"


def preset_names(preset: str, available: Sequence[str] = LLAMA_LINEARS) -> Union[tuple, str]:
    """What ``preset`` selects in a model with layers ``available`` (``ALL_LINEAR`` stays itself)."""
    return ALL_LINEAR if preset == ALL_LINEAR else LAYOUTS[layout(available)][preset]


def describe(preset: str, available: Sequence[str] = LLAMA_LINEARS) -> str:
    """What a preset selects, in words (a button's tooltip), in the names of a model with ``available``."""
    names = preset_names(preset, available)
    return "every linear layer except the output head" if names == ALL_LINEAR else ", ".join(names)


def allowed_text(available: Sequence[str] = LLAMA_LINEARS) -> str:
    """The presets and layer names a value may use, for a message."""
    return f"presets {', '.join(map(repr, PRESETS))} or layer names {', '.join(available)}"


def expand(value: TargetModules, available: Sequence[str]) -> list[str]:
    """The layer names ``value`` selects among ``available`` (a preset expanded in the model's layout;
    names kept as given, unknown ones included: ``resolve`` is the checking version)."""
    if isinstance(value, str):
        names = preset_names(value, available) if value in PRESETS else (value,)
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
            "this model has no linear layers (nn.Linear or transformers' Conv1D) for LoRA to target")})
    names = expand(value, available)
    unknown = [t for t in names if t not in available]
    if unknown or not names:
        raise ConfigError({"target_modules": (
            f"unknown module(s) {', '.join(map(repr, unknown)) or '(none given)'} for this model; "
            f"its linear layers are {', '.join(available)}; presets: {', '.join(PRESETS)}")})
    return names


def known_layers(model: str) -> Optional[tuple]:
    """The linear-layer names of a built-in model, as ``adapters.linear_modules`` names them once it is
    loaded with its default head (None: a model not in the registry, known only once loaded)."""
    info = REGISTRY.get(model) if isinstance(model, str) else None
    if info is None:
        return None
    kind = info.architecture
    if kind in ("gpt2",):
        return GPT2_LINEARS
    if kind in ("bert", "roberta"):  # BertForSequenceClassification keeps BERT's pooler; RoBERTa's has none
        return BERT_LINEARS + (("pooler.dense",) if kind == "bert" else ())
    if kind in ("t5", "mt5"):
        return T5_GATED_LINEARS if str(info.config.get("feed_forward_proj", "")).startswith("gated") else T5_LINEARS
    return LLAMA_LINEARS if kind in ("llama", "mistral", "qwen2") else None


def problem(value, model: str = "", method: str = "lora") -> str:
    """What is wrong with ``value`` before any model is loaded ("" when nothing is): it must select
    at least one layer; with LoRA on a built-in model, only layers that model has."""
    if isinstance(value, str) and value in PRESETS:
        return ""
    names = (value,) if isinstance(value, str) else value
    if names is not None and not isinstance(names, (list, tuple)):
        return f"target_modules must be a preset or a list of layer names, got {value!r}"
    known = known_layers(model) if method != "full" else None
    if not names:
        return "target_modules must name at least one linear layer or a preset " + allowed_text(known or LLAMA_LINEARS)
    unknown = [t for t in names if known is not None and t not in known]
    if unknown:
        return f"unknown module(s) {', '.join(map(repr, unknown))}; allowed: {allowed_text(known)}"
    return ""


def from_cli(values: Sequence[str]) -> TargetModules:
    """Command-line words as a value: one preset name stays a preset, anything else is layer names."""
    values = list(values)
    return values[0] if len(values) == 1 and values[0] in PRESETS else tuple(values)
