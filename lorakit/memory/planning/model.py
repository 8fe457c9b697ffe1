"""What a model holds, from its config alone: built on the meta device, nothing allocated.

``resolve_config`` turns the planner's ``model`` argument into a transformers config; ``tally`` walks
the meta model once per (config, dtype) and keeps what the byte counts need; ``dims`` gives the
sizes the activation formulas use. ``Step`` is one training step's settings.
"""
from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from lorakit.common.errors import ConfigError
from lorakit.common.threads import warm
from lorakit.config.parts import PART_FIELDS, Adapter, Base, Shape


@dataclass(frozen=True)
class Step:
    """One training step, as the planner sees it: the run's parts (``lorakit.config.parts``; the base's dtype
    resolved for the device) and what only this step knows. The formulas read the parts' fields by
    name (``step.rank``, ``step.seq_len``): each name belongs to exactly one part."""
    base: Base
    adapter: Adapter
    shape: Shape
    targets: frozenset  # adapted layer names (empty for full fine-tuning)
    device: str  # 'cpu' or 'cuda'
    padded: bool  # the batch carries padding (an attention mask with zeros)
    first_step: bool = False  # the first optimizer step: no optimizer state yet during forward/backward
    # a causal LM's head and loss at the labelled positions only (lorakit.train's, ``labelled_loss``): how many
    # there are (labels set, after the shift); None: the model's own forward, head and loss at every position
    labelled: Optional[int] = None

    def __getattr__(self, name: str):
        part = _PART_OF.get(name)
        if part is None:
            raise AttributeError(f"Step has no {name!r}")
        return getattr(self.__dict__[part], name)

    def changed(self, **changes) -> "Step":
        """A copy with ``changes``: the step's own fields, or the shape's (batch_size, seq_len, ...)."""
        shape = {k: changes.pop(k) for k in list(changes) if k in PART_FIELDS["shape"]}
        return replace(self, shape=replace(self.shape, **shape), **changes) if shape else replace(self, **changes)

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def loss_rows(self) -> int:
        """Rows of the (N, V) logits the head and the cross-entropy compute."""
        return self.tokens if self.labelled is None else self.labelled

    @property
    def full(self) -> bool:
        return self.adapter.full

    @property
    def quantized(self) -> bool:
        return self.base.quantized


_PART_OF = {name: part for part, names in PART_FIELDS.items() for name in names}


def resolve_config(model):
    """A transformers PretrainedConfig from a built-in name, a config.json (or its directory) or a config."""
    warm("transformers", "accelerate")
    from transformers import AutoConfig, PretrainedConfig

    from lorakit.models.loading import REGISTRY, builtin_config

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
                if not isinstance(d, dict):
                    raise ValueError(f"it holds {type(d).__name__}, not a JSON object")
                d = {k: v for k, v in d.items() if k not in ("quantization_config",)}
                return AutoConfig.for_model(d.pop("model_type"), **d)
            except Exception as exc:  # noqa: BLE001 - a user's file: transformers' own validation errors too
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


@dataclass(frozen=True)
class Tally:
    """What the meta model holds, independent of method/rank/batch."""
    linears: tuple  # (short_name, d_in, d_out, is_head) for every nn.Linear and Conv1D; is_head: not quantized
    others: tuple  # (numel, dtype_bytes_as_built) of every other unique parameter
    buffers: int  # bytes of buffers
    head_tied: bool
    groups: tuple  # adapters.linear_modules(model): the LoRA-targetable layers (head excluded)
    head: tuple = ()  # numel of each parameter of a classifier head (trains in full under LoRA too)
    biases: tuple = ()  # numel of each bias of a quantizable linear layer (not in ``others``)
    task: str = "causal-lm"  # the head the model was built with (families.TASKS)

    @property
    def layer_names(self) -> list:
        return [g.name for g in self.groups]


def tally(cfg, dtype: str, task: str = "") -> Tally:
    """The meta model's tally, built with the head of ``task`` (default: the family's, ``families``); a
    config transformers cannot build so is a model problem."""
    from lorakit.config.families import default_task, family_of

    model_type = getattr(cfg, "model_type", "?")
    task = task or default_task(model_type)
    try:
        return _tally(cfg.to_json_string(use_diff=False), cfg.model_type, dtype, task)
    except Exception as exc:  # noqa: BLE001 - a user's config: any failure to build it (0 heads: ZeroDivisionError)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError({"model": (
            f"cannot build a {model_type} model ({family_of(model_type)}, task {task}) from this config on the "
            f"meta device ({type(exc).__name__}: {reason}); the planner covers LLaMA-family and GPT-2 decoders, "
            "BERT-family encoders and T5-family encoder-decoders")}) from exc


def _kept_unquantized(model, task: str) -> set:
    """Modules bitsandbytes leaves in full precision. A classifier: its head (``models.load_model`` skips
    it, which replaces transformers' defaults). Otherwise transformers' ``get_keys_to_not_convert``: the
    output embeddings, tied weights, the module of the model's last parameter. Both: the modules the model
    keeps in fp32 (``_keep_in_fp32_modules``: T5's ``wo``)."""
    from lorakit.config.families import CLASSIFIER_HEADS

    names = [name for name, _ in model.named_modules()]
    fp32 = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    kept = {n for n in names if any(n == k or n.endswith("." + k) for k in fp32)}
    if task == "classification":
        return kept | {n for n in names if any(h in n.split(".") for h in CLASSIFIER_HEADS)}
    head = model.get_output_embeddings()
    last = list(model.named_parameters())[-1][0].rsplit(".", 1)[0]
    tied = {k.removesuffix(".weight") for pair in getattr(model, "all_tied_weights_keys", {}).items() for k in pair}
    return kept | {name for name, m in model.named_modules() if m is head or name == last or name in tied}


@functools.lru_cache(maxsize=32)
def _tally(config_json: str, model_type: str, dtype: str, task: str) -> Tally:
    import torch
    import transformers
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    from lorakit.adapters.base_record import is_conv1d, layer_dims
    from lorakit.adapters.lora import linear_modules
    from lorakit.common.threads import building
    from lorakit.config.families import AUTO_CLASS, CLASSIFIER_HEADS
    from lorakit.models.quantization import DTYPE_MAP

    d = json.loads(config_json)
    d.pop("model_type", None)
    cfg = AutoConfig.for_model(model_type, **d)
    # parameters on the meta device: nothing is allocated. The patch is process-wide, so hold the
    # construction lock: no other thread may build modules meanwhile.
    with building(), init_empty_weights():
        model = getattr(transformers, AUTO_CLASS[task]).from_config(cfg, dtype=DTYPE_MAP[dtype])
    if getattr(cfg, "tie_word_embeddings", False):
        model.tie_weights()  # from_config on meta does not tie; real loading does
    head = model.get_output_embeddings()
    in_emb = model.get_input_embeddings()
    head_tied = head is not None and in_emb is not None and head.weight is in_emb.weight
    kept = _kept_unquantized(model, task)
    seen: set = set()
    linears, others, head_params, biases = [], [], [], []
    for name, module in model.named_modules():
        is_linear = isinstance(module, torch.nn.Linear) or is_conv1d(module)
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue  # tied: counted where first seen
            seen.add(id(p))
            if task == "classification" and any(h in name.split(".") for h in CLASSIFIER_HEADS):
                head_params.append(p.numel())
            if is_linear and pname == "weight":
                linears.append((name.rsplit(".", 1)[-1], *layer_dims(module), name in kept))
            elif is_linear and pname == "bias" and name not in kept:
                biases.append(p.numel())
            else:
                others.append((p.numel(), p.element_size()))
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return Tally(tuple(linears), tuple(others), buffers, head_tied, tuple(linear_modules(model)),
                 head=tuple(head_params), biases=tuple(biases), task=task)


_GPT2 = ("gpt2",)
_BERT = ("bert", "roberta", "xlm-roberta", "electra")
_T5 = ("t5", "mt5")


@dataclass(frozen=True)
class Dims:
    """The sizes the activation and peak formulas use."""
    hidden: int
    inter: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    kind: str = "llama"  # the layer layout the activation formula follows: llama, gpt2, bert or t5
    decoder_layers: int = 0  # T5: the decoder's layers (``layers`` is the encoder's)
    gated: bool = True  # the MLP multiplies two projections (LLaMA, T5 v1.1) rather than one activation
    labels: int = 0  # a classifier's outputs (0: a language-model head over ``vocab``)
    attn_dropout: float = 0.0  # on the attention probabilities (GPT-2, BERT: 0.1; LLaMA: 0)
    resid_dropout: float = 0.0  # on each sublayer's output and on the embeddings (GPT-2, BERT, T5)
    act: str = "silu"  # the MLP's activation (transformers' name): what it saves for backward
    pooler: bool = False  # an encoder classifier with BERT's pooler (RoBERTa's head has its own dense)


def dims(cfg, task: str = "") -> Dims:
    from lorakit.config.families import default_task

    kind = ("gpt2" if cfg.model_type in _GPT2 else "bert" if cfg.model_type in _BERT
            else "t5" if cfg.model_type in _T5 else "llama")
    task = task or default_task(cfg.model_type)
    labels = int(getattr(cfg, "num_labels", 2)) if task == "classification" else 0
    if kind == "gpt2":
        return Dims(cfg.n_embd, cfg.n_inner or 4 * cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_head,
                    cfg.n_embd // cfg.n_head, cfg.vocab_size, kind, gated=False, labels=labels,
                    attn_dropout=cfg.attn_pdrop, resid_dropout=cfg.resid_pdrop, act=cfg.activation_function)
    if kind == "t5":
        return Dims(cfg.d_model, cfg.d_ff, cfg.num_layers, cfg.num_heads, cfg.num_heads, cfg.d_kv, cfg.vocab_size,
                    kind, cfg.num_decoder_layers or cfg.num_layers, cfg.is_gated_act, labels,
                    cfg.dropout_rate, cfg.dropout_rate, cfg.dense_act_fn)
    need = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    missing = [k for k in need if getattr(cfg, k, None) is None]
    if missing:
        raise ConfigError({"model": (
            f"the activation formula covers LLaMA-family, GPT-2, BERT-family and T5 configs; this "
            f"{getattr(cfg, 'model_type', '?')} config lacks {', '.join(missing)}"
        )})
    heads = cfg.num_attention_heads
    return Dims(
        hidden=cfg.hidden_size, inter=cfg.intermediate_size, layers=cfg.num_hidden_layers, heads=heads,
        kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads, vocab=cfg.vocab_size,
        kind=kind, gated=kind == "llama", labels=labels, attn_dropout=getattr(cfg, "attention_probs_dropout_prob", 0.0),
        resid_dropout=getattr(cfg, "hidden_dropout_prob", 0.0), act=getattr(cfg, "hidden_act", "silu"),
        pooler=cfg.model_type == "bert",
    )
