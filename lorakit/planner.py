"""The memory breakdown predicted from a model config alone: no weights are loaded.

``plan_memory`` builds the model on the meta device (accelerate's ``init_empty_weights``), walks
its modules, and counts what each one will hold, using the same rules ``memory.measure`` applies
to real tensors:

- **base weights** per module: a bitsandbytes-quantized linear layer (every ``nn.Linear`` except
  the output head, which transformers leaves unquantized) stores
  int8: ``d_in*d_out`` int8 + one fp32 scale (SCB) per output row;
  nf4/fp4: ``ceil(numel/2)`` packed bytes + a 16-entry fp32 code book + per 64-block absmax: fp32,
  or with double quantization uint8 + (per 256 absmax blocks one fp32) + an fp32 offset + a
  256-entry fp32 code (bitsandbytes keeps one such nested state *per layer*, so double
  quantization only pays off for layers above ~22k weights).
  Everything else (embeddings, norms, an untied head) in ``dtype``, or fp32 when the base is
  quantized (peft's ``prepare_model_for_kbit_training``, called by ``adapters.attach_lora``, casts
  fp16/bf16 parameters to fp32); buffers (rotary inverse frequencies) as built.
- **adapters**: ``r*(d_in+d_out)`` fp32 per adapted layer (peft upcasts adapter weights to fp32).
- **gradients**: one gradient per trainable parameter, in its dtype.
- **optimizer**: torch AdamW: exp_avg + exp_avg_sq in the parameter's dtype + a 4-byte step per
  tensor; bitsandbytes 8-bit AdamW: two uint8 states + two fp32 absmax per 256-block, except
  tensors under 4096 elements (``min_8bit_size``), which keep two fp32 states; plus the two
  256-entry fp32 quantization maps shared by all tensors.
- **activations**: an analytic per-layer formula for the LLaMA family (see ``_activation_bytes``),
  derived from what ``memory.saved_activation_tensors`` records on tiny-llama and SmolLM2.
"""
from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .config import DTYPES, METHODS, OPTIMIZERS, QUANTS, TARGET_PRESETS, ConfigError, not_one_of
from .memory import MemoryBreakdown

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_FP32 = 4
_BNB_4BIT_BLOCK = 64  # weights per absmax (bitsandbytes 4-bit)
_BNB_NESTED_BLOCK = 256  # absmax values per fp32 scale under double quantization
_BNB_NESTED_CODE = 256  # fp32 entries of the nested (dynamic 8-bit) code
_BNB_4BIT_CODE = 16  # fp32 entries of the nf4/fp4 code book
_OPT8_BLOCK = 256  # bitsandbytes 8-bit optimizer block size
_OPT8_MIN_SIZE = 4096  # bitsandbytes min_8bit_size: smaller tensors keep fp32 state
_OPT8_QMAP = 256  # fp32 entries of each of the two quantization maps
_CPU_RNG_STATE = 5056  # bytes of torch.get_rng_state() (mt19937)
_CUDA_RNG_STATE = 16  # bytes of torch.cuda.get_rng_state() (philox seed + offset)


# --- resolving the model argument ---------------------------------------------------------------

def _resolve_config(model):
    """A transformers PretrainedConfig from a built-in name, a config.json (or its directory) or a config."""
    from transformers import AutoConfig, PretrainedConfig

    from .models import REGISTRY, builtin_config

    if isinstance(model, PretrainedConfig):
        return copy.deepcopy(model)
    if isinstance(model, (str, Path)):
        name = str(model)
        if name in REGISTRY:
            return builtin_config(name)
        path = Path(name).expanduser()
        if path.is_dir() and (path / "config.json").is_file():
            path = path / "config.json"
        if path.is_file():
            try:
                d = json.loads(path.read_text())
                d = {k: v for k, v in d.items() if k not in ("quantization_config",)}
                return AutoConfig.for_model(d.pop("model_type"), **d)
            except (ValueError, KeyError) as exc:
                raise ConfigError({"model": f"{path} is not a usable transformers config.json ({exc})"}) from exc
        if "/" in name and not path.exists():  # a hub id already in the local Hugging Face cache
            try:
                return AutoConfig.from_pretrained(name, local_files_only=True)
            except Exception:  # noqa: BLE001 - not cached: fall through to the plain message
                pass
    raise ConfigError({"model": (
        f"unknown model {model!r}: plan_memory needs a built-in name "
        f"({', '.join(REGISTRY)}), a path to a config.json (or a directory holding one), "
        "or a transformers PretrainedConfig"
    )})


def _config_key(cfg) -> str:
    return cfg.to_json_string(use_diff=False)


@dataclass(frozen=True)
class _Tally:
    """What the meta model holds, independent of method/rank/batch."""
    linears: tuple  # (short_name, d_in, d_out, is_head) for every nn.Linear
    others: tuple  # (numel, dtype_bytes_as_built) of every other unique parameter
    buffers: int  # bytes of buffers
    head_tied: bool
    groups: tuple  # adapters.linear_modules(model): the LoRA-targetable layers (head excluded)


@functools.lru_cache(maxsize=32)
def _tally(config_json: str, model_type: str, dtype: str) -> _Tally:
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from .adapters import linear_modules
    from .models import building
    from .quantization import DTYPE_MAP

    d = json.loads(config_json)
    d.pop("model_type", None)
    cfg = AutoConfig.for_model(model_type, **d)
    # parameters on the meta device: nothing is allocated. The patch is process-wide, so hold the
    # construction lock: no other thread may build modules meanwhile.
    with building(), init_empty_weights():
        model = AutoModelForCausalLM.from_config(cfg, dtype=DTYPE_MAP[dtype])
    if getattr(cfg, "tie_word_embeddings", False):
        model.tie_weights()  # from_config on meta does not tie; real loading does
    head = model.get_output_embeddings()
    in_emb = model.get_input_embeddings()
    head_tied = head is not None and in_emb is not None and head.weight is in_emb.weight
    seen: set = set()
    linears, others = [], []
    for name, module in model.named_modules():
        is_linear = isinstance(module, torch.nn.Linear)
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue  # tied: counted where first seen
            seen.add(id(p))
            if is_linear and pname == "weight":
                linears.append((name.rsplit(".", 1)[-1], module.in_features, module.out_features,
                                module is head))
            else:
                others.append((p.numel(), p.element_size()))
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return _Tally(tuple(linears), tuple(others), buffers, head_tied, tuple(linear_modules(model)))


# --- per-category byte counts ---------------------------------------------------------------------

def quantized_linear_bytes(d_in: int, d_out: int, quant: str, double_quant: bool = True) -> int:
    """Bytes bitsandbytes stores for one (d_out x d_in) linear weight under ``quant``."""
    n = d_in * d_out
    if quant == "int8":
        return n + _FP32 * d_out  # int8 rows + fp32 SCB scale per row
    if quant in ("nf4", "fp4"):
        blocks = math.ceil(n / _BNB_4BIT_BLOCK)
        total = math.ceil(n / 2) + _FP32 * _BNB_4BIT_CODE
        if double_quant:
            total += blocks  # uint8 absmax
            total += _FP32 * math.ceil(blocks / _BNB_NESTED_BLOCK)  # nested absmax
            total += _FP32 + _FP32 * _BNB_NESTED_CODE  # offset + nested code
        else:
            total += _FP32 * blocks
        return total
    raise ValueError(f"quant must be 'int8', 'nf4' or 'fp4', got {quant!r}")


def _base_weight_bytes(tally: _Tally, quant: str, double_quant: bool, dtype: str) -> int:
    # Unquantized parameters: dtype, or fp32 after prepare_model_for_kbit_training (quantized base).
    plain = _FP32 if quant != "none" else _DTYPE_BYTES[dtype]
    total = tally.buffers
    for _, d_in, d_out, is_head in tally.linears:
        if quant != "none" and not is_head:
            total += quantized_linear_bytes(d_in, d_out, quant, double_quant)
        else:
            total += d_in * d_out * plain
    for numel, _ in tally.others:
        total += numel * plain
    return total


def _opt_bytes(shapes_bytes: list, optimizer: str) -> int:
    """Optimizer state for trainable tensors given as (numel, element_size)."""
    total = 0
    if optimizer == "adamw":
        for numel, es in shapes_bytes:
            total += 2 * numel * es + _FP32  # exp_avg, exp_avg_sq (param dtype) + step (fp32 scalar)
        return total
    any8 = False
    for numel, _ in shapes_bytes:
        if numel < _OPT8_MIN_SIZE:
            total += 2 * numel * _FP32  # small tensors: 32-bit state1/state2
        else:
            any8 = True
            total += 2 * numel + 2 * _FP32 * math.ceil(numel / _OPT8_BLOCK)
    if any8:
        total += 2 * _FP32 * _OPT8_QMAP  # shared signed/unsigned dynamic maps
    return total


# --- activations ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Dims:
    hidden: int
    inter: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int


def _dims(cfg) -> _Dims:
    need = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    missing = [k for k in need if getattr(cfg, k, None) is None]
    if missing:
        raise ConfigError({"model": (
            f"the activation formula covers LLaMA-family configs (llama, mistral, qwen2...); this "
            f"{getattr(cfg, 'model_type', '?')} config lacks {', '.join(missing)}"
        )})
    heads = cfg.num_attention_heads
    return _Dims(
        hidden=cfg.hidden_size, inter=cfg.intermediate_size, layers=cfg.num_hidden_layers, heads=heads,
        kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads, vocab=cfg.vocab_size,
    )


def _activation_bytes(dims: _Dims, *, method: str, quant: str, dtype: str, rank: int, targets: set,
                      dropout: float, batch_size: int, seq_len: int, gradient_checkpointing: bool,
                      device: str, padded: bool = False) -> int:
    """Bytes autograd saves for backward in one training forward of a LLaMA-family model.

    Derived from ``memory.saved_activation_tensors`` on tiny-llama and SmolLM2 (fp32, CPU), where it
    matches to the byte. Per token (N = batch*seq tokens), H hidden, I intermediate, nh/nkv heads of
    hd dims, r rank, e the activation element size; "req" = requires grad. A tensor is saved only
    when some input of the op that needs it requires grad, so a frozen nn.Linear saves nothing (its
    input is needed only for the weight gradient) while the first layer of a LoRA model (whose
    embedding output does not require grad) saves less than the others.
    """
    H, I, L = dims.hidden, dims.inter, dims.layers
    nh, nkv, hd, V = dims.heads, dims.kv_heads, dims.head_dim, dims.vocab
    N = batch_size * seq_len
    full = method == "full"
    # The residual stream's element size: the dtype, except on a quantized base, where
    # prepare_model_for_kbit_training made embeddings/norms fp32 and bitsandbytes layers return
    # their input's dtype, so activations stay fp32 whatever the compute dtype.
    e = _FP32 if quant != "none" else _DTYPE_BYTES[dtype]
    e_lora = _FP32  # peft casts the LoRA branch input to the adapter dtype (fp32)
    mask_bytes = 1 if device == "cuda" else e_lora  # dropout mask: bool on CUDA, input dtype on CPU
    int8_keeps_input = quant == "int8"  # bnb's int8 matmul keeps its input as ctx.A when it requires grad
    quantized = quant != "none"

    def trainable(name: str) -> bool:
        return full or name in targets

    def proj_inputs(input_req: bool, names: tuple, d_in: int, input_saved: bool = False) -> int:
        """Per-token bytes saved for the input of projections ``names`` sharing one input tensor."""
        b = 0
        shared = False  # the input tensor itself kept (counted once for all of them)
        for name in names:
            if full:
                shared = True  # weight gradient needs the input
            elif quantized and int8_keeps_input and input_req:
                shared = True
            if name in targets:
                if dropout > 0:
                    b += d_in * e_lora  # dropout output, input of lora_A (its weight gradient needs it)
                    if input_req:
                        b += d_in * mask_bytes  # dropout mask (saved only when the input requires grad)
                elif e != e_lora:
                    b += d_in * e_lora  # the fp32 cast of the input
                else:
                    shared = True  # lora_A keeps the very input tensor
                b += rank * e_lora  # A x: input of lora_B
        if shared and not input_saved:
            b += d_in * e
        return b

    def norm(input_req: bool) -> int:
        b = 0
        if input_req:
            b += H * _FP32 + _FP32  # input as fp32 (pow/mul) + rsqrt of the variance (one per token)
        if full:
            b += H * e  # normalised input, for the norm weight's gradient
        return b

    def layer(gin: bool) -> tuple[int, bool, bool]:
        """(per-token bytes, output requires grad, rotary cos/sin saved) for one decoder layer."""
        b = norm(gin)  # input_layernorm
        h_req = gin or full
        b += proj_inputs(h_req, ("q_proj", "k_proj", "v_proj"), H)
        q_req, k_req, v_req = (h_req or trainable(n) for n in ("q_proj", "k_proj", "v_proj"))
        attn_req = q_req or k_req or v_req
        if attn_req:
            # sdpa (flash on CPU, GQA without repeat_kv): rotated q (nh*hd), rotated k (nkv*hd),
            # v (nkv*hd, the v_proj output), output (nh*hd) and the fp32 log-sum-exp (nh).
            # With padding transformers passes a mask, so k and v are first repeated to nh heads,
            # and the kernel saves the mask converted to the query dtype (batch x seq x seq, per layer).
            kv = nh if padded else nkv
            b += (2 * nh * hd + 2 * kv * hd) * e
            if padded:
                b += seq_len * e
            lse_rows = seq_len if device != "cuda" else 32 * math.ceil(seq_len / 32)
            b += nh * _FP32 * lse_rows // seq_len
        # o_proj's input is the sdpa output, already saved when attention is.
        b += proj_inputs(attn_req, ("o_proj",), nh * hd, input_saved=attn_req)
        o_req = attn_req or trainable("o_proj")
        r_req = gin or o_req  # residual stream after attention
        b += norm(r_req)  # post_attention_layernorm
        h2_req = r_req or full
        b += proj_inputs(h2_req, ("gate_proj", "up_proj"), H)
        g_req, u_req = h2_req or trainable("gate_proj"), h2_req or trainable("up_proj")
        # act = silu(gate) (saves gate, I); act * up saves act if up requires grad and up if act does
        if g_req:
            b += I * e  # gate, for silu's backward
            b += I * e  # up, for the product's backward w.r.t. act
        if u_req:
            b += I * e  # act, for the product's backward w.r.t. up
        p_req = g_req or u_req
        b += proj_inputs(p_req, ("down_proj",), I)  # the product act*up (not otherwise saved)
        d_req = p_req or trainable("down_proj")
        return b, r_req or d_req, q_req or k_req

    per_token = 0
    fixed = 0
    if gradient_checkpointing:
        # Checkpointed layers keep only their input (the hidden state entering the layer); the
        # rest is recomputed during backward. Layer 0's input requires grad here (peft/transformers
        # enable input grads with checkpointing).
        per_token += L * H * e
        final_req = True
        if quantized:
            # peft's prepare_model_for_kbit_training turns on transformers' default (reentrant)
            # checkpointing, whose autograd node also keeps the RNG state of each layer's forward.
            fixed += L * (_CPU_RNG_STATE + (_CUDA_RNG_STATE if device == "cuda" else 0))
    else:
        gin = full  # a LoRA model's embedding output does not require grad; full fine-tuning's does
        rope_saved = False
        for _ in range(L):
            b, gin, rope = layer(gin)
            per_token += b
            rope_saved |= rope
        final_req = gin
        if rope_saved:
            fixed += 2 * seq_len * hd * e  # rotary cos and sin (batch dim 1), shared by all layers
    per_token += norm(final_req)  # final norm
    if full:
        per_token += H * e  # lm_head input, for the (tied) head weight's gradient
    # Loss: transformers upcasts logits to fp32; log_softmax saves its fp32 (N, V) result, nll_loss
    # its int64 shifted targets (N) and a 4-byte total weight. The logits themselves are not saved.
    per_token += V * _FP32 + 8
    fixed += _FP32
    return N * per_token + fixed


# --- public API ---------------------------------------------------------------------------------------

def _resolve_target_names(groups, target_modules) -> set:
    available = [g.name for g in groups]
    if not available:
        raise ConfigError({"target_modules": (
            "this model has no nn.Linear layers for LoRA to target (GPT-2, for one, uses Conv1D); "
            "the planner covers LLaMA-family models (llama, mistral, qwen2...)")})
    if isinstance(target_modules, str):
        preset = TARGET_PRESETS.get(target_modules, (target_modules,))
        if preset == "all-linear":
            return set(available)
        target_modules = preset
    target_modules = tuple(target_modules or ())
    unknown = [t for t in target_modules if t not in available]
    if unknown or not target_modules:
        raise ConfigError({"target_modules": (
            f"unknown module(s) {', '.join(map(repr, unknown)) or '(none given)'} for this model; "
            f"its linear layers are {', '.join(available)}; presets: {', '.join(TARGET_PRESETS)}"
        )})
    return set(target_modules)


def plan_memory(model="smollm2-135m", method: str = "lora", quant: str = "none", double_quant: bool = True,
                dtype: str = "float32", rank: int = 8, target_modules: Union[tuple, list, str] = ("q_proj", "v_proj"),
                batch_size: int = 4, seq_len: int = 128, gradient_checkpointing: bool = False,
                optimizer: str = "adamw", *, dropout: float = 0.05,
                device: Optional[str] = None, padded: bool = False) -> MemoryBreakdown:
    """Predict the memory breakdown of a training run without loading any weights.

    ``model``: a built-in name (``lorakit.list_models()``, including config-only sizes such as
    ``llama-65b``), a path to a config.json (or a directory holding one), or a transformers
    ``PretrainedConfig``. ``target_modules``: layer names or a preset ('qv', 'attention', 'mlp',
    'all-linear'). ``dropout``: the LoRA dropout (a dropout mask is saved per adapted layer).
    ``device``: 'cpu' or 'cuda' (default: cuda when available), which changes only the dropout
    mask's size and the attention kernel's log-sum-exp padding. ``padded``: the batch has padding
    (an attention mask with zeros), which makes attention save a mask and repeated k/v heads;
    the default plans full-length, unpadded batches of ``batch_size`` x ``seq_len`` tokens.
    Not modelled: bf16 autocast (``RunConfig.bf16_autocast``), other attention implementations.
    Raises ``ConfigError`` (naming the field) for invalid settings or an unknown model.
    """
    problems = {}
    for name, value, allowed in (("method", method, METHODS), ("quant", quant, QUANTS),
                                 ("dtype", dtype, DTYPES), ("optimizer", optimizer, OPTIMIZERS)):
        if problem := not_one_of(name, value, allowed):
            problems[name] = problem
    for name, value in (("rank", rank), ("batch_size", batch_size), ("seq_len", seq_len)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems[name] = f"{name} must be an integer >= 1, got {value!r}"
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        problems["dropout"] = f"dropout must be in [0, 1), got {dropout!r}"
    if method == "full" and quant in QUANTS and quant != "none":
        problems["method"] = (f"full fine-tuning needs an unquantized base (quant='none'); got quant={quant!r}")
    # the model and its target modules are checked too, so every problem is reported at once
    cfg = _collecting(problems, _resolve_config, model)
    tally = dims = None
    if cfg is not None and "dtype" not in problems:
        tally = _collecting(problems, _tally_or_problem, cfg, dtype)
    if tally is not None:
        dims = _collecting(problems, _dims, cfg)
        if method == "lora":
            _collecting(problems, _resolve_target_names, tally.groups, target_modules)
    if problems:
        raise ConfigError(problems)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = "cuda" if str(device).startswith("cuda") else "cpu"

    base = _base_weight_bytes(tally, quant, double_quant, dtype)

    if method == "full":
        es = _DTYPE_BYTES[dtype]
        tensors = [(d_in * d_out, es) for _, d_in, d_out, _ in tally.linears]
        tensors += [(numel, es) for numel, _ in tally.others]
        adapters = 0
        gradients = sum(n * s for n, s in tensors)
        targets: set = set()
    else:
        groups = tally.groups
        targets = _resolve_target_names(groups, target_modules)
        tensors = []
        for g in groups:
            if g.name in targets:
                # lora_A: r x d_in and lora_B: d_out x r per layer, fp32
                tensors += [(rank * g.d_in, _FP32), (g.d_out * rank, _FP32)] * g.count
        adapters = sum(n * s for n, s in tensors)
        gradients = adapters
    opt = _opt_bytes(tensors, "adamw" if optimizer == "adamw" else "8bit")
    acts = _activation_bytes(
        dims, method=method, quant=quant, dtype=dtype, rank=rank, targets=targets,
        dropout=float(dropout), batch_size=batch_size, seq_len=seq_len,
        gradient_checkpointing=bool(gradient_checkpointing), device=device, padded=bool(padded),
    )
    return MemoryBreakdown(base_weights=int(base), adapters=int(adapters), gradients=int(gradients),
                           optimizer=int(opt), activations=int(acts))


def _tally_or_problem(cfg, dtype: str) -> _Tally:
    """``_tally``, with a config transformers cannot build as a causal LM turned into a model problem."""
    try:
        return _tally(_config_key(cfg), cfg.model_type, dtype)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError({"model": (
            f"cannot build a {getattr(cfg, 'model_type', '?')} causal LM from this config on the meta "
            f"device ({type(exc).__name__}: {reason}); the planner covers LLaMA-family models")}) from exc


def _collecting(problems: dict, fn, *args):
    """fn(*args), or None with its ConfigError's problems added to ``problems``."""
    try:
        return fn(*args)
    except ConfigError as exc:
        problems.update(exc.problems)
        return None


def plan_for_batch(cfg, batch: dict, device: Optional[str] = None) -> MemoryBreakdown:
    """``plan_memory`` for the batch a step actually trained on: its shape, and whether it is padded
    (``batch``: ``input_ids`` of batch x seq, optionally ``attention_mask``)."""
    b, t = batch["input_ids"].shape
    mask = batch.get("attention_mask")
    padded = bool((mask == 0).any()) if mask is not None else False
    return plan_for_config(cfg.replace(batch_size=int(b), seq_len=int(t)), device=device, padded=padded)


def plan_for_config(cfg, seq_len: Optional[int] = None, device: Optional[str] = None,
                    padded: bool = False) -> MemoryBreakdown:
    """``plan_memory`` for a ``RunConfig`` (``seq_len`` overrides the config's, e.g. the longest
    tokenized example when it is shorter; ``padded``: the batches carry padding)."""
    return plan_memory(
        cfg.model, method=cfg.method, quant=cfg.quant, double_quant=cfg.double_quant, dtype=cfg.dtype,
        rank=cfg.rank, target_modules=cfg.target_modules, batch_size=cfg.batch_size,
        seq_len=int(seq_len or cfg.seq_len), gradient_checkpointing=cfg.gradient_checkpointing,
        optimizer=cfg.optimizer, dropout=cfg.dropout, device=device, padded=padded,
    )
