"""Adapters that know their base: what a saved adapter was trained on, and the check that refuses
another base before any tensor is touched.

An adapter's A (r x d_in) and B (d_out x r) fit only layers of the same (d_in, d_out). peft finds
out when it copies the tensors (``size mismatch for ...lora_A.weight``, a wall of shapes) or not
at all when the shapes happen to agree. So next to peft's ``adapter_config.json`` every adapter
lorakit saves gets ``lorakit_adapter.json``: the base (name, architecture, quantization, dtype), the
(d_in, d_out) of every layer the adapter adapts, the lorakit version and the run id. Loading checks
the base it is given against that record: the same architecture and the same shapes load, whatever
the base is called (the same model converted again, a local copy); anything else is an
``AdapterMismatch`` naming both bases and the first layer that differs. An adapter without the
record (saved by plain peft or an older lorakit) is checked against the shapes in its safetensors
header, which is read without loading a tensor.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from lorakit.config.parts import quant_of

META_FILE = "lorakit_adapter.json"
FORMAT = 1  # of META_FILE; a newer one is refused with a word rather than misread
_PEFT_PREFIX = "base_model.model."  # peft's prefix of the base model's module names in adapter weights


class AdapterError(ValueError):
    """An adapter directory that cannot be used; the message starts with ``adapter:``."""


class AdapterMismatch(AdapterError):
    """The adapter was trained on another base (a different architecture or layer shapes)."""


# --- what a base is ------------------------------------------------------------------------------

def plain_model(model):
    """The transformers model under a PeftModel (itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def base_name(model) -> str:
    """A base's name: a built-in model's registry name, else the path or hub id it came from."""
    config = getattr(plain_model(model), "config", None)
    where = str(getattr(config, "name_or_path", "") or "")
    try:
        from lorakit.common.home import cache_home

        if where and Path(where).parent == cache_home() / "models":
            return Path(where).name
    except Exception:  # noqa: BLE001 - a name is only for messages
        pass
    return where or type(plain_model(model)).__name__


def describe_base(model, name: Optional[str] = None) -> dict:
    """Name, architecture, model type, quantization and dtype of ``model`` (a base or a PeftModel)."""
    plain = plain_model(model)
    config = getattr(plain, "config", None)
    archs = getattr(config, "architectures", None) or [type(plain).__name__]
    quant = quant_of(plain)
    return {"name": name or base_name(model), "name_or_path": str(getattr(config, "name_or_path", "") or ""),
            "architecture": archs[0], "model_type": getattr(config, "model_type", None), "quant": quant,
            "dtype": str(getattr(plain, "dtype", "")).replace("torch.", "")}


def _label(base: dict) -> str:
    return f"{base.get('name') or '(unnamed)'} ({base.get('architecture') or 'architecture unknown'}, " \
           f"quant {base.get('quant') or '?'})"


def layer_shape(model, name: str) -> Optional[tuple]:
    """(d_in, d_out) of the linear layer ``name`` in ``model``'s base (under LoRA: its base layer);
    None when there is no such layer or it is not linear."""
    try:
        module = plain_model(model).get_submodule(name)
    except AttributeError:
        return None
    return layer_dims(getattr(module, "base_layer", module))


def is_conv1d(module) -> bool:
    """transformers' ``Conv1D`` (GPT-2's projections): a linear layer whose weight is stored (d_in, d_out),
    transposed against nn.Linear's, which LoRA adapts with peft's ``fan_in_fan_out``."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None


def layer_dims(module) -> Optional[tuple]:
    """(d_in, d_out) of a linear layer: nn.Linear and bitsandbytes' (``in_features``, ``out_features``)
    or Conv1D (its weight's shape); None for any other module."""
    if is_conv1d(module):
        d_in, d_out = module.weight.shape
        return int(d_in), int(d_out)
    d_in, d_out = getattr(module, "in_features", None), getattr(module, "out_features", None)
    return (int(d_in), int(d_out)) if isinstance(d_in, int) and isinstance(d_out, int) else None


def adapted_layers(peft_model, adapter_name: str) -> dict:
    """{base module name: (d_in, d_out)} of every layer adapter ``adapter_name`` adapts."""
    out = {}
    for name, module in plain_model(peft_model).named_modules():
        lora_a = getattr(module, "lora_A", None)
        if lora_a is not None and adapter_name in lora_a:
            out[name] = layer_shape(peft_model, name)
    return out


# --- the record -------------------------------------------------------------------------------------

def write_record(peft_model, path: Path, run_id: Optional[str] = None, base: Optional[str] = None) -> None:
    """``META_FILE`` for every adapter peft saved under ``path`` ('default' in ``path`` itself, any other
    name in ``path/<name>``, as peft lays them out)."""
    from importlib.metadata import version

    __version__ = version("lorakit")

    described = describe_base(peft_model, base)
    for adapter_name, config in peft_model.peft_config.items():
        folder = path if adapter_name == "default" else path / adapter_name
        record = {
            "format": FORMAT, "base": described,
            "layers": {k: list(v) if v else None for k, v in adapted_layers(peft_model, adapter_name).items()},
            "rank": getattr(config, "r", None), "alpha": getattr(config, "lora_alpha", None),
            "lorakit_version": __version__, "run_id": run_id,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (folder / META_FILE).write_text(json.dumps(record, indent=1))


def read_record(path) -> dict:
    """The saved record of the adapter at ``path``; for an adapter without one, what its
    ``adapter_config.json`` and its weights' header say (the base's name and the layer shapes)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise AdapterError(f"adapter: path must be the folder an adapter was saved to, got {path!r}")
    path = Path(path).expanduser()
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise AdapterError(f"adapter: {str(path)!r} {what}; give the folder an adapter was saved to "
                           f"(it holds adapter_config.json)")
    config = _json(path / "adapter_config.json", path)
    weights = _header_shapes(path)  # what peft will copy; read now, so a damaged file is named before it
    if (path / META_FILE).exists():
        record = dict(_json(path / META_FILE, path), weights=weights)
        if not isinstance(record.get("format"), int) or record["format"] > FORMAT:
            raise AdapterError(f"adapter: {str(path)!r} was saved by a newer lorakit (record format "
                               f"{record.get('format')!r}, this lorakit reads {FORMAT}); upgrade lorakit")
        layers = record.get("layers")
        if not isinstance(record.get("base"), dict) or not isinstance(layers, dict) or not all(
                v is None or (isinstance(v, list) and len(v) == 2) for v in layers.values()):
            raise AdapterError(f"adapter: {str(path)!r}: {META_FILE} lacks its 'base' or its 'layers' "
                               "({module: [d_in, d_out]})")
        return record
    base = {"name": config.get("base_model_name_or_path") or "", "architecture": None, "quant": None}
    return {"format": 0, "base": base, "layers": weights, "weights": weights}


def _json(file: Path, path: Path) -> dict:
    if not file.exists():
        raise AdapterError(f"adapter: {str(path)!r} has no {file.name}; is it an adapter folder?")
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"adapter: {str(file)!r} cannot be read ({exc})") from None
    if not isinstance(value, dict):
        raise AdapterError(f"adapter: {str(file)!r} is not a JSON object")
    return value


def _header_shapes(path: Path) -> dict:
    """{module: (d_in, d_out)} from the safetensors header: A is (r, d_in), B is (d_out, r)."""
    weights = path / "adapter_model.safetensors"
    if not weights.exists():
        if (path / "adapter_model.bin").exists():
            return {}  # a pickled adapter: only peft can read it
        raise AdapterError(f"adapter: {str(path)!r} has no adapter_model.safetensors (the adapter's weights)")
    from safetensors import safe_open

    shapes: dict = {}
    try:
        with safe_open(str(weights), framework="pt") as f:
            for key in f.keys():
                for part, axis in ((".lora_A.weight", 1), (".lora_B.weight", 0)):
                    if key.endswith(part):
                        module = key[: -len(part)].removeprefix(_PEFT_PREFIX)
                        d = shapes.setdefault(module, [None, None])
                        d[1 - axis] = f.get_slice(key).get_shape()[axis]
    except Exception as exc:  # noqa: BLE001 - safetensors' own errors: a damaged file
        raise AdapterError(f"adapter: {str(weights)!r} is not a readable safetensors file ({exc})") from None
    return shapes


# --- the check ----------------------------------------------------------------------------------------

def check_load(path, model, adapter_name: str, is_trainable) -> dict:
    """``load_adapter``'s arguments checked, then ``check_base``: a lorakit error before peft runs."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise AdapterError(f"adapter: base_model must be a transformers model (or a PeftModel), got "
                           f"{type(model).__name__}")
    if not isinstance(adapter_name, str) or not adapter_name.strip() or "." in adapter_name:
        raise AdapterError(f"adapter: adapter_name must be a non-empty name without dots, got {adapter_name!r}")
    if not isinstance(is_trainable, bool):
        raise AdapterError(f"adapter: is_trainable must be True or False, got {is_trainable!r}")
    return check_base(path, model)


@contextmanager
def peft_errors(path):
    """peft's own errors while it reads a folder that passed the checks (a config field of the wrong
    kind, a damaged tensor) as an AdapterError naming the folder."""
    try:
        yield
    except AdapterError:
        raise
    except Exception as exc:  # noqa: BLE001 - ValueError, TypeError, KeyError, SafetensorError, ...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise AdapterError(f"adapter: {str(path)!r} could not be loaded by peft ({type(exc).__name__}: "
                           f"{first})") from exc


def check_base(path, model) -> dict:
    """Refuse ``model`` as the base of the adapter at ``path`` unless its architecture and the shapes of
    every adapted layer are the adapter's base's: an ``AdapterMismatch`` naming both bases and the first
    layer that differs. Returns the adapter's record."""
    record = read_record(path)
    theirs, ours = record["base"], describe_base(model)
    problems = [_first_difference(record["layers"], model) or _first_difference(record["weights"], model)]
    if theirs.get("architecture") and theirs["architecture"] != ours["architecture"]:
        problems.insert(0, f"the architectures differ ({theirs['architecture']} vs {ours['architecture']})")
    problem = " and ".join(p for p in problems if p)
    if problem:
        raise AdapterMismatch(
            f"adapter: {str(path)!r} was trained on {_label(theirs)}; the base given is {_label(ours)}: "
            f"{problem}. Load it onto {theirs.get('name') or 'its base'} (or a copy with the same architecture "
            "and shapes)")
    return record


def _first_difference(layers: dict, model) -> str:
    """The first adapted layer whose (d_in, d_out) differs in ``model`` (or that it lacks), as words."""
    for layer, shape in layers.items():
        here = layer_shape(model, layer)
        if here is None:
            return f"layer {layer}, which the adapter adapts, is not a linear layer of this base"
        if shape and None not in shape and tuple(shape) != here:
            return f"layer {layer} is {shape[0]} -> {shape[1]} in the adapter's base but {here[0]} -> {here[1]} here"
    return ""
