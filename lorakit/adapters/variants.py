"""LoRA variants: DoRA, rsLoRA, PiSSA / OLoRA / Gaussian init, LoftQ and LoRA+ (peft implements them).

What each changes, for an adapted layer with frozen W (d_out x d_in), A (r x d_in), B (d_out x r):

- **DoRA**: W' = m * (W + s·BA) / ||W + s·BA||_row with a trained magnitude m (d_out): d_out more
  trainable parameters per layer, and a weight norm computed in every forward.
- **rsLoRA**: the scale s is alpha / sqrt(r) instead of alpha / r (the update keeps its size as r grows).
- **PiSSA / OLoRA**: A and B start from W's top singular vectors (PiSSA) or a QR of W (OLoRA); the
  base becomes W - s·B0A0, so a saved adapter is converted to a plain rank-2r LoRA of the original
  W (``adapters.save_adapter``).
- **LoftQ** (4-bit base): Q and BA are fitted together so that Q + s·BA is closer to W than Q alone
  (plain QLoRA starts with B = 0, error ||W - Q||). peft's own LoftQ runs on CUDA only, so lorakit
  does it here: each iteration quantizes W - s·BA, then takes the rank-r SVD of W - Q (randomized).
- **LoRA+**: the optimizer gives B (and DoRA's m) learning_rate x ratio (``loraplus_optimizer``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when first needed: ``import lorakit`` stays quick
    import torch

_PREFIX = "base_model.model."  # peft's module names over the transformers model's own


def init_lora_weights(init: str):
    """peft's ``init_lora_weights`` for lorakit's ``init`` (LoftQ starts from the default, then ``loftq_init``)."""
    return {"default": True, "loftq": True}.get(init, init)


def adapter_params(d_in: int, d_out: int, rank: int, use_dora: bool = False) -> int:
    """Trainable parameters of one adapted layer: r·(d_in + d_out), plus d_out magnitudes with DoRA."""
    return rank * (d_in + d_out) + (d_out if use_dora else 0)


# --- the effective weight of an adapted layer --------------------------------------------------

def lora_layers(peft_model, adapter: str = "default"):
    """(name without peft's prefix, layer) for every LoRA-adapted linear layer of ``peft_model``."""
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer") and adapter in module.lora_A:
            yield name[len(_PREFIX):] if name.startswith(_PREFIX) else name, module


def base_weight(layer) -> torch.Tensor:
    """The float32 weight the frozen base computes with (dequantized for bitsandbytes), (d_out, d_in)."""
    from lorakit.models.bnb_layout import dequantized

    return dequantized(layer.get_base_layer()).detach().float()


def _no_grad(fn):
    """torch.no_grad() around ``fn``, with torch imported at the call."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapper


def effective_weight(layer, adapter: str = "default", base: torch.Tensor | None = None) -> torch.Tensor:
    """W + s·BA (or DoRA's m·(W + s·BA)/||W + s·BA||_row): the weight the adapted layer computes with."""
    import torch

    w = base_weight(layer) if base is None else base
    a, b = layer.lora_A[adapter].weight.float(), layer.lora_B[adapter].weight.float()
    w = w + layer.scaling[adapter] * (b @ a)
    if layer.use_dora.get(adapter, False):
        m = layer.lora_magnitude_vector[adapter].weight.float()  # (d_out,)
        w = (m / torch.linalg.norm(w, dim=1)).unsqueeze(1) * w
    return w.detach()


# --- LoftQ --------------------------------------------------------------------------------------

def original_weights(peft_model, layers: dict) -> dict[str, torch.Tensor]:
    """The unquantized float32 weights (d_out, d_in) of ``layers`` ({name: adapted layer}) from the model
    directory's safetensors. A checkpoint may name them without the task model's prefix (a ``BertModel``
    checkpoint under ``BertForSequenceClassification``: ``encoder...`` for ``bert.encoder...``), and GPT-2
    stores its Conv1D weights as (d_in, d_out): transformers transposes those before quantizing them."""
    from safetensors import safe_open
    from transformers.pytorch_utils import Conv1D

    model = peft_model.get_base_model()
    source = Path(model.config._name_or_path)
    files = sorted(source.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"LoftQ needs the unquantized weights as safetensors in {str(source)!r}")
    prefix = f"{model.base_model_prefix}." if getattr(model, "base_model_prefix", "") else ""
    keys = {}  # checkpoint key -> layer name
    for name in layers:
        keys[f"{name}.weight"] = name
        if prefix and name.startswith(prefix):
            keys[f"{name[len(prefix):]}.weight"] = name
    out = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for key in keys.keys() & set(st.keys()):
                out[keys[key]] = st.get_tensor(key).float()
    missing = [n for n in layers if n not in out]
    if missing:
        raise KeyError(f"LoftQ: no unquantized weight for {missing[:3]} in {str(source)!r}")
    for name, layer in layers.items():
        if issubclass(getattr(layer.get_base_layer(), "source_cls", object), Conv1D):
            out[name] = out[name].T.contiguous()
    return out


@_no_grad
def loftq_init(peft_model, iters: int = 1, adapter: str = "default") -> None:
    """Fit each 4-bit layer's Q and A, B so that Q + s·BA approximates the original W (LoftQ, on any
    device). ``iters`` = 1 keeps Q = quant(W) (what loading the base gives); more iterations
    requantize the base to quant(W - s·BA). DoRA's magnitude is reset to ||Q + s·BA||_row, so
    the adapted layer starts at Q + s·BA."""
    import torch

    layers = dict(lora_layers(peft_model, adapter))
    originals = original_weights(peft_model, layers)
    for name, layer in layers.items():
        w, s, r = originals[name], layer.scaling[adapter], layer.r[adapter]
        lowrank = torch.zeros_like(w)
        for i in range(iters):
            if i > 0:
                _requantize(layer.get_base_layer(), w - lowrank)
            lb, la = _top_r(w - base_weight(layer), r)
            lowrank = lb @ la
        a_w, b_w = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
        a_w.copy_(la.to(a_w.dtype))
        b_w.copy_((lb / s).to(b_w.dtype))  # the layer applies s·BA
        if layer.use_dora.get(adapter, False):
            mag = layer.lora_magnitude_vector[adapter].weight
            mag.copy_(torch.linalg.norm(base_weight(layer) + lowrank, dim=1).to(mag.dtype))


def _top_r(residual: "torch.Tensor", r: int) -> tuple:
    """(L, R) with L R the best rank-r approximation of ``residual`` (d_out x d_in) that a randomized SVD
    finds: L = U sqrt(S) (d_out, r), R = sqrt(S) V^T (r, d_in). Randomized (torch.svd_lowrank, 8 power
    iterations) because a full SVD per layer takes minutes on a busy CPU; L R is an orthogonal
    projection of the residual, so the error it leaves is never above the residual's."""
    import torch

    q = min(r + 8, *residual.shape)
    u, sv, v = torch.svd_lowrank(residual, q=q, niter=8)
    root = sv[:r].sqrt()
    return u[:, :r] * root, root.unsqueeze(1) * v[:, :r].T


def _requantize(base_layer, w: torch.Tensor) -> None:
    """Store ``w`` in ``base_layer`` (a bitsandbytes Linear4bit) with its own quantization settings."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    from lorakit.models.bnb_layout import usual_dtype

    old = base_layer.weight  # a repacked layer's state says bf16; the usual one the weights' dtype
    q, state = F.quantize_4bit(w.to(old.device, usual_dtype(old)), blocksize=old.blocksize,
                               quant_type=old.quant_type, compress_statistics=old.compress_statistics,
                               quant_storage=old.quant_storage)
    base_layer.weight = bnb.nn.Params4bit(data=q, requires_grad=False, quant_state=state, blocksize=old.blocksize,
                                          compress_statistics=old.compress_statistics, quant_type=old.quant_type,
                                          quant_storage=old.quant_storage, bnb_quantized=True, module=base_layer)


@_no_grad
def init_errors(peft_model, adapter: str = "default") -> dict[str, float]:
    """||W - W_eff||_F per adapted layer at initialisation, W the unquantized original and W_eff what
    the layer computes with (Q + s·BA on a 4-bit base): plain QLoRA's is ||W - Q||, LoftQ's lower."""
    import torch

    layers = dict(lora_layers(peft_model, adapter))
    originals = original_weights(peft_model, layers)
    return {name: float(torch.linalg.norm(originals[name] - effective_weight(layer, adapter)))
            for name, layer in layers.items()}


# --- LoRA+ ----------------------------------------------------------------------------------------

def loraplus_optimizer(model, args, ratio: float):
    """The optimizer ``args`` (transformers' TrainingArguments) asks for, built by peft's
    ``create_loraplus_optimizer``: A at the learning rate, B and 1-d trainables (DoRA's m) at lr x ``ratio``."""
    from peft.optimizers import create_loraplus_optimizer
    from transformers import Trainer

    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return create_loraplus_optimizer(model, optimizer_cls, loraplus_lr_ratio=ratio,
                                     loraplus_weight_decay=args.weight_decay, **kwargs)
