"""LoRA adapters with peft: discover linear layers, attach, count, save / load / swap / merge.

LoRA keeps a frozen weight W (d_out x d_in) and learns ΔW = B A with A: r x d_in and
B: d_out x r, scaled by alpha / r. B starts at zero, so a fresh adapter changes nothing.
Trainable parameters per adapted layer: r * (d_in + d_out).
"""
from __future__ import annotations

import os
import shutil
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch

from lorakit.adapters import base_record as adapter_base
from lorakit.adapters.variants import adapter_params, effective_weight, init_lora_weights, loftq_init
from lorakit.common.errors import ConfigError
from lorakit.common.threads import building, warm
from lorakit.config import targets
from lorakit.config.parts import Adapter, four_bit, quant_of
from lorakit.config.run_config import OLORA_CONV1D

# Output heads LoRA leaves alone (peft's 'all-linear' does too): the LM head, and the classifier heads
# of *ForSequenceClassification models, which train whole (peft's modules_to_save) instead
_HEADS = ("lm_head", "classifier", "score")


@dataclass(frozen=True)
class LinearGroup:
    """All linear layers sharing one name (e.g. every layer's q_proj): the shortest suffix of their module
    path (layer indices left out) that sets them apart from the model's other linear layers of another
    shape, e.g. GPT-2's ``attn.c_proj`` and ``mlp.c_proj``, BERT's ``attention.output.dense`` and
    ``layer.output.dense``."""
    name: str
    count: int
    d_in: int
    d_out: int
    params: int  # weight parameters over all `count` layers
    modules: tuple = field(default=(), compare=False, repr=False)  # full module names
    conv1d: bool = field(default=False, compare=False, repr=False)  # transformers' Conv1D (GPT-2)

    def lora_params(self, rank: int, use_dora: bool = False) -> int:
        return self.count * adapter_params(self.d_in, self.d_out, rank, use_dora)


def _is_linear(module) -> bool:
    if isinstance(module, torch.nn.Linear) or adapter_base.is_conv1d(module):
        return True
    try:  # bitsandbytes layers subclass nn.Linear, but be explicit for older versions
        import bitsandbytes as bnb

        return isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))
    except Exception:
        return False


def linear_modules(model) -> list[LinearGroup]:
    """Every linear layer (nn.Linear, bitsandbytes', Conv1D) of a (possibly quantized) model, grouped by
    name (``LinearGroup``), output and classifier heads excluded; in the model's module order."""
    found = []  # (path without layer indices, full name, (d_in, d_out), is Conv1D)
    for full_name, module in model.named_modules():
        if "lora_" in full_name or not _is_linear(module):
            continue
        path = tuple(p for p in full_name.split(".") if not p.isdigit())
        if any(p in _HEADS for p in path):
            continue
        found.append((path, full_name, adapter_base.layer_dims(module), adapter_base.is_conv1d(module)))
    out = []
    for key, members in _split_by_shape(found):
        shapes = [m[2] for m in members]
        out.append(LinearGroup(".".join(key), len(members), *shapes[0], sum(i * o for i, o in shapes),
                               tuple(m[1] for m in members), any(m[3] for m in members)))
    order = {m[1]: i for i, m in enumerate(found)}
    return sorted(out, key=lambda g: order[g.modules[0]])


def _split_by_shape(found: list) -> list:
    """[(name suffix, members)]: layers grouped by their last path component; a group whose layers differ
    in shape is split by one more component (attn.c_proj vs mlp.c_proj), until each has one shape or its
    paths are exhausted."""
    first: "OrderedDict[tuple, list]" = OrderedDict()
    for m in found:
        first.setdefault(m[0][-1:], []).append(m)
    pending, done = list(first.items()), []
    while pending:
        key, members = pending.pop(0)
        if len({m[2] for m in members}) == 1 or all(len(m[0]) <= len(key) for m in members):
            done.append((key, members))
            continue
        sub: "OrderedDict[tuple, list]" = OrderedDict()
        for m in members:
            sub.setdefault(m[0][-len(key) - 1:], []).append(m)
        pending.extend(sub.items())
    return done


def peft_targets(model, names: list[str]) -> list[str]:
    """peft's ``target_modules`` for the groups ``names`` of ``model``. peft selects every module whose
    name ends with a target, so a group name stands for itself where it selects exactly that group
    (q_proj, attn.c_proj); otherwise (BERT's layer.output.dense: ``output.dense`` would also select
    attention.output.dense, and the layer index sits in between) the group's full module names do."""
    groups = {g.name: g for g in linear_modules(model)}
    all_names = [n for n, _ in model.named_modules()]
    out = []
    for name in names:
        members = set(groups[name].modules)
        if {n for n in all_names if n == name or n.endswith("." + name)} == members:
            out.append(name)
        else:
            out.extend(groups[name].modules)
    return out


def resolve_targets(model, target_modules: Union[tuple, list, str]) -> list[str]:
    """The layer names ``target_modules`` selects in ``model`` (``targets.resolve``: ConfigError if unknown)."""
    return targets.resolve(target_modules, [g.name for g in linear_modules(model)])


def expected_lora_params(model, targets: list[str], rank: int, use_dora: bool = False) -> int:
    """Σ r·(d_in + d_out) (+ d_out with DoRA) over the targeted layers: what peft must report as trainable."""
    return sum(g.lora_params(rank, use_dora) for g in linear_modules(model) if g.name in targets)


def attach_lora(model, rank: int = 8, alpha: float = 16, dropout: float = 0.05,
                target_modules="qv", gradient_checkpointing: bool = False, adapter_name: str = "default",
                adapter_dtype: str = "float32", *, use_dora: bool = False, use_rslora: bool = False,
                init: str = "default", loftq_iter: int = 1, task_type: str = "CAUSAL_LM"):
    """Wrap ``model`` in a peft LoRA model; the base is frozen, only A and B (and DoRA's m) train.

    A quantized base goes through peft's ``prepare_model_for_kbit_training`` first (norms to fp32,
    input grads on), as the QLoRA recipe does. ``adapter_dtype``: A and B are kept in float32 (peft's
    default) or, as the QLoRA paper describes, in bfloat16 / float16; peft casts each adapted layer's
    input to the adapter's dtype and the result back. ``use_dora``, ``use_rslora``, ``init`` and
    ``loftq_iter``: the variants of ``lorakit.adapters.variants`` (RunConfig's fields of the same names).
    ``task_type``: peft's, e.g. 'SEQ_CLS' for a classifier, whose new head then trains in full
    (peft's ``modules_to_save``: a trained copy beside the original, saved with the adapter).
    The keyword form of ``attach`` (the engine passes a ``RunConfig``'s ``adapter`` part).
    """
    adapter = Adapter(rank=rank, alpha=alpha, dropout=dropout, target_modules=target_modules, use_dora=use_dora,
                      use_rslora=use_rslora, init=init, loftq_iter=loftq_iter, adapter_dtype=adapter_dtype)
    return attach(model, adapter, gradient_checkpointing, adapter_name=adapter_name, task_type=task_type)


def attach(model, adapter: Adapter, gradient_checkpointing: bool = False, *, adapter_name: str = "default",
           task_type: str = "CAUSAL_LM"):
    """``attach_lora`` for an adapter part (``RunConfig.adapter``): LoRA of that shape and variant on
    ``model``, the base frozen; ``gradient_checkpointing`` from the step shape (``RunConfig.shape``)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    names = resolve_targets(model, adapter.target_modules)
    quant = quant_of(model)
    if four_bit(quant):
        from lorakit.models.bnb_layout import install

        install(model)  # a model not loaded by load_model too: training never on repacked 4-bit weights
    if quant != "none":
        # peft's recipe checkpoints reentrantly (torch's old default, which the planner models); saying
        # so explicitly spares torch's "pass use_reentrant" warning, and peft still calls transformers'
        # deprecated gradient_checkpointing_enable alias (a FutureWarning per call).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*gradient_checkpointing_enable.*", category=FutureWarning)
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                    **{_checkpointing_kwargs(): {"use_reentrant": True}})
    elif gradient_checkpointing:
        _checkpointing_on(model)
        model.enable_input_require_grads()
    # GPT-2's Conv1D stores W as (d_in, d_out): peft's fan_in_fan_out transposes it (bitsandbytes'
    # quantization already turned a quantized model's Conv1D into Linear layers)
    conv1d = any(g.conv1d for g in linear_modules(model) if g.name in names)
    init = adapter.init
    if conv1d and init == "olora":  # a local GPT-2 directory: RunConfig knows built-in models only
        raise ConfigError({"init": OLORA_CONV1D})
    cfg = LoraConfig(r=adapter.rank, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                     target_modules=peft_targets(model, names), fan_in_fan_out=conv1d, bias="none",
                     task_type=task_type, use_dora=adapter.use_dora, use_rslora=adapter.use_rslora,
                     init_lora_weights=init_lora_weights(init))
    with building(), warnings.catch_warnings():  # transformers 5 renamed is_gradient_checkpointing
        warnings.filterwarnings("ignore", category=FutureWarning)
        peft_model = get_peft_model(model, cfg, adapter_name=adapter_name)
    if init == "loftq":
        loftq_init(peft_model, adapter.loftq_iter, adapter_name)
    if init in ("pissa", "olora"):
        _keep_initial_adapter(peft_model)
    if adapter.adapter_dtype != "float32":
        from lorakit.models.quantization import DTYPE_MAP

        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.data = p.data.to(DTYPE_MAP[adapter.adapter_dtype])
    return peft_model


def _keep_initial_adapter(peft_model) -> None:
    """PiSSA / OLoRA moved s·B0A0 out of the base weights: keep A0, B0, so ``save_adapter`` can write
    an adapter for the original base (peft's ``path_initial_model_for_weight_conversion``)."""
    import tempfile
    import weakref

    initial = tempfile.mkdtemp(prefix="lorakit-initial-adapter-")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        peft_model.save_pretrained(initial, safe_serialization=True)
    peft_model.lorakit_initial_adapter = initial
    weakref.finalize(peft_model, shutil.rmtree, initial, True)


def prepare_full(model, gradient_checkpointing: bool = False):
    """Full fine-tuning: every parameter trains (the baseline LoRA is measured against)."""
    for p in model.parameters():
        p.requires_grad_(True)
    if gradient_checkpointing:
        _checkpointing_on(model)
    return model


def _checkpointing_on(model) -> None:
    """Non-reentrant activation checkpointing, through transformers 5's name where it exists."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers < 5.24
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _checkpointing_kwargs() -> str:
    """The name ``prepare_model_for_kbit_training`` takes the checkpointing options by: peft 0.22 renamed
    ``gradient_checkpointing_kwargs`` to ``activation_checkpointing_kwargs`` (the old name warns that it goes)."""
    import inspect

    from peft import prepare_model_for_kbit_training

    new = "activation_checkpointing_kwargs"
    known = inspect.signature(prepare_model_for_kbit_training).parameters
    return new if new in known else "gradient_checkpointing_kwargs"


def count_params(model) -> tuple[int, int]:
    """(trainable, total) parameters; quantized 4-bit weights count as their logical size."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n = int(getattr(p, "quant_state", None).shape.numel()) if getattr(p, "quant_state", None) else n * 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


# --- save / load / swap / merge ---------------------------------------------------------------

def save_adapter(peft_model, path: Union[str, Path], run_id: Optional[str] = None, base: Optional[str] = None) -> int:
    """Save the adapter weights (safetensors), peft's config and lorakit's record of the base
    (``adapter_base``; ``base``: the base's name, ``run_id``: the run that trained it); returns bytes
    on disk. Written to a sibling folder first, so a full disk leaves no half-written adapter."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # PiSSA / OLoRA: written as a rank-2r LoRA of the original (unchanged) base, which load_adapter gets
    kwargs = {}
    if getattr(peft_model, "lorakit_initial_adapter", None):
        kwargs["path_initial_model_for_weight_conversion"] = peft_model.lorakit_initial_adapter
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            peft_model.save_pretrained(partial, safe_serialization=True, **kwargs)
        adapter_base.write_record(peft_model, partial, run_id=run_id, base=base)
        written = sorted(p for p in partial.rglob("*") if p.is_file())
        nbytes = sum(f.stat().st_size for f in written)  # the adapter's own: a run's checkpoints are beside it
        for f in written:  # file by file: other files in path stay
            (path / f.relative_to(partial)).parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, path / f.relative_to(partial))
    except OSError as exc:
        raise adapter_base.AdapterError(f"adapter: not saved to {str(path)!r}: {exc.strerror or exc} "
                                        "(nothing was left half-written)") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return nbytes


def load_adapter(base_model, path: Union[str, Path], adapter_name: str = "default", is_trainable=False):
    """Attach a saved adapter to a base model (or add it as another named adapter to a PeftModel).
    An adapter trained on another base is refused first (``adapter_base.AdapterMismatch``)."""
    warm("transformers", "peft")
    from peft import PeftModel

    adapter_base.check_load(path, base_model, adapter_name, is_trainable)
    undo = _undo_on_refusal(base_model, adapter_name)
    try:
        with building(), warnings.catch_warnings(), adapter_base.peft_errors(path):  # see attach_lora
            warnings.filterwarnings("ignore", category=FutureWarning)
            if isinstance(base_model, PeftModel):
                base_model.load_adapter(str(path), adapter_name=adapter_name, is_trainable=is_trainable)
                return base_model
            return PeftModel.from_pretrained(base_model, str(path), adapter_name=adapter_name,
                                             is_trainable=is_trainable)
    except BaseException:
        undo()
        raise


def _undo_on_refusal(model, adapter_name: str):
    """A function that puts ``model`` back as it is now, for a load that fails half-way: peft injects the
    LoRA layers into the model object before it reads the weights, so a refused weights file (a pickle, a
    damaged tensor) would otherwise leave them in the caller's model."""
    from peft import PeftModel

    if isinstance(model, PeftModel):  # adding a named adapter: drop that name again
        had = set(model.peft_config)
        return lambda: (adapter_name in model.peft_config and adapter_name not in had
                        and model.delete_adapter(adapter_name))
    known = {id(m) for m in model.modules()}
    had_config = hasattr(model, "peft_config")

    def undo() -> None:
        with building():
            for name, module in list(model.named_modules()):
                if id(module) in known or not hasattr(module, "base_layer"):
                    continue
                base = module.base_layer
                while id(base) not in known and hasattr(base, "base_layer"):
                    base = base.base_layer
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child, base)
        if not had_config and hasattr(model, "peft_config"):
            del model.peft_config
    return undo


def merge_adapter(peft_model, out_dir: Union[str, Path, None] = None, tokenizer=None):
    """Fold BA into W and return a plain transformers model; optionally save it.

    A quantized (QLoRA) base is dequantized first: W + BA cannot be stored in 4 bits without
    losing the update, so the merged model is written in the compute dtype.
    """
    if not hasattr(peft_model, "get_base_model"):
        raise adapter_base.AdapterError("adapter: merge_adapter needs a PeftModel (attach_lora or load_adapter "
                                        f"gives one), got peft_model={type(peft_model).__name__}")
    base = peft_model.get_base_model()
    if quant_of(base) != "none":
        merged = _merge_dequantized(peft_model)
    else:
        merged = peft_model.merge_and_unload()
    if out_dir is not None:
        merged.save_pretrained(out_dir, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)
    return merged


def _merge_dequantized(peft_model):
    """Replace every bitsandbytes layer (with or without LoRA) by an nn.Linear holding W (+ BA)."""
    with building():
        return _replace_quantized_layers(peft_model)


def _replace_quantized_layers(peft_model):
    import bitsandbytes as bnb

    model = peft_model.get_base_model()
    adapter = peft_model.active_adapter
    dtypes = set()
    for name, module in list(model.named_modules()):
        has_lora = hasattr(module, "lora_A") and hasattr(module, "base_layer")
        base = module.base_layer if has_lora else module
        if not isinstance(base, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)):
            continue
        w = dequantize_weight(base)  # (d_out, d_in), float32
        if has_lora and adapter in module.lora_A:
            w = effective_weight(module, adapter, base=w)  # W + s·BA (DoRA: rescaled per output row)
        dtype = getattr(base, "compute_dtype", None) or torch.float32
        dtypes.add(dtype)
        lin = _plain_layer(base, w.device, dtype)
        with torch.no_grad():
            lin.weight.copy_(w.to(dtype).T if adapter_base.is_conv1d(lin) else w.to(dtype))
            if base.bias is not None:
                lin.bias.copy_(base.bias.to(dtype))
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, lin)
    if len(dtypes) == 1:
        _one_dtype(model, dtypes.pop())
    for attr in ("is_loaded_in_4bit", "is_loaded_in_8bit", "is_quantized"):
        if hasattr(model, attr):
            setattr(model, attr, False)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def _one_dtype(model, dtype) -> None:
    """Every parameter in ``dtype`` but those of the modules the model keeps in fp32 (``_keep_in_fp32_modules``:
    T5's ``wo``), as a model of that dtype loads. peft's ``prepare_model_for_kbit_training`` put the embeddings,
    norms and head of a 4-bit base in fp32 for training; next to merged layers in a bf16 compute dtype, the model
    would feed fp32 activations to bf16 layers and fail ("expected m1 and m2 to have the same dtype")."""
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, module in model.named_modules():
        if any(f".{k}." in f".{name}." for k in keep):  # the kept module itself, by its last name, or inside it
            continue
        for p in module.parameters(recurse=False):
            if p.is_floating_point() and p.dtype != dtype:
                p.data = p.data.to(dtype)


def _plain_layer(base, device, dtype):
    """The unquantized layer a bitsandbytes layer replaced: nn.Linear, or transformers' Conv1D (weight
    d_in x d_out) where quantization had turned one into a Linear (its ``source_cls``), so the merged
    model saves and reloads as its own architecture (GPT-2)."""
    source = getattr(base, "source_cls", None)
    if source is not None and source.__name__ == "Conv1D":
        layer = source(base.out_features, base.in_features)  # Conv1D(nf=d_out, nx=d_in)
        return layer.to(device=device, dtype=dtype)
    return torch.nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, device=device, dtype=dtype)


def dequantize_weight(layer) -> torch.Tensor:
    """The float32 weight a bitsandbytes (or plain) linear layer computes with, (d_out, d_in)."""
    from lorakit.models.bnb_layout import dequantized

    return dequantized(layer).float()
