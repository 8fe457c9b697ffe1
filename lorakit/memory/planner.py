"""The memory breakdown predicted from a model config alone: no weights are loaded.

``plan_memory`` builds the model on the meta device (accelerate's ``init_empty_weights``, see
``planning.model``), walks its modules, and counts what each one will hold, using the same rules
``memory.measure`` applies to real tensors: ``planning.states`` for base weights, adapters,
gradients and optimizer state, ``planning.activations`` for what autograd saves for backward, and
``planning.peak`` for the step's peak (those plus the largest transient) and, on CUDA, the device
overhead. Every plan says what it assumes (``MemoryBreakdown.assumes``).
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import replace
from typing import Optional

from lorakit.common.errors import ConfigError
from lorakit.config import parts, targets
from lorakit.config.parts import Settings
from lorakit.config.run_config import field_problems
from lorakit.config.targets import TargetModules
from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.memory.planning import model as pm
from lorakit.memory.planning.activations import activation_bytes
from lorakit.memory.planning.peak import plan_peak
from lorakit.memory.planning.states import (  # noqa: F401 - quantized_linear_bytes is public here
    base_weight_bytes,
    head_tensors,
    optimizer_bytes,
    quantized_linear_bytes,
    trainable_tensors,
)


def plan_memory(model="smollm2-135m", method: str = "lora", quant: str = "none", double_quant: bool = True,
                dtype: Optional[str] = None, rank: int = 8, target_modules: TargetModules = "qv",
                batch_size: int = 4, seq_len: int = 128, gradient_checkpointing: bool = False,
                optimizer: str = "adamw", *, dropout: float = 0.05, adapter_dtype: str = "float32",
                device: Optional[str] = None, padded: bool = False,
                device_overhead: Optional[int] = None, use_dora: bool = False, task: str = "",
                labelled_tokens: Optional[int] = None, num_labels: Optional[int] = None) -> MemoryBreakdown:
    """Predict the memory breakdown of a training run, and its step peak, without loading any weights.

    ``model``: a built-in name (``lorakit.list_models()``, including config-only sizes such as
    ``llama-65b``), a path to a config.json (or a directory holding one), or a transformers
    ``PretrainedConfig``. ``target_modules``: layer names or a preset ('qv', 'attention', 'mlp',
    'all-linear'). ``dropout``: the LoRA dropout (a dropout mask is saved per adapted layer).
    ``device``: 'cpu' or 'cuda' (default: cuda when available); it changes the dropout mask's size,
    the attention kernel's log-sum-exp padding, the optimizer's temporaries and adds a
    ``device_overhead`` on CUDA (``device_overhead`` overrides that estimate, in bytes).
    ``adapter_dtype``: of A and B (float32, or bfloat16 / float16 as in the QLoRA paper).
    ``use_dora``: DoRA adds a trained magnitude per output feature of each adapted layer.
    ``dtype``: of unquantized weights and 4-bit compute; default (None or 'auto') what a run with
    ``dtype="auto"`` on ``device`` uses (``compute_dtype.resolve``): bfloat16 on CUDA (as in the QLoRA paper) and
    on CPUs measured fast in bf16, else float32 (``plan.assumes`` says which).
    ``task``: 'causal-lm', 'classification' or 'seq2seq' (default: the model family's, ``families``): the
    head the model is built with; a classifier's head (2 labels unless the config says) trains in full
    beside LoRA, its share shown in ``plan.head``.
    ``padded``: the batch has padding (an attention mask with zeros), which makes attention save a
    mask and repeated k/v heads; the default plans full-length, unpadded batches of
    ``batch_size`` x ``seq_len`` tokens.
    ``labelled_tokens``: the positions the loss covers (labels set, after the shift), for ``lorakit.train``'s
    labelled-only head (``RunConfig.labelled_head``): the output head and cross-entropy then run at those rows
    only. None (default): the model's own forward, head and loss at every position, as any Trainer runs it.
    Ignored where ``lorakit.train`` takes the model's own loss (classifiers, seq2seq, families outside
    ``labelled_loss.PLAIN_HEAD_FAMILIES``). ``plan.assumes['loss_positions']`` says which.
    ``num_labels``: a classifier's outputs (None: the config's, 2 unless it says); ``lorakit.train`` plans
    with its data's labels (the built-in ``topic`` task: 4).
    Families: LLaMA-family and GPT-2 decoders, BERT / RoBERTa encoder classifiers and T5 encoder-decoders
    (targets assumed as long as the inputs); activations derived on fp32 CPU runs of each (GPT-2 also
    16-bit and quantized; BERT and T5 also quantized).
    Not modelled: bf16 autocast (``RunConfig.bf16_autocast``), other attention implementations.
    Raises ``ConfigError`` naming every invalid field at once (the model and target modules included).
    """
    keywords = dict(method=method, quant=quant, double_quant=double_quant, dtype=dtype, rank=rank,
                    target_modules=target_modules, batch_size=batch_size, seq_len=seq_len,
                    gradient_checkpointing=gradient_checkpointing, optimizer=optimizer, dropout=dropout,
                    adapter_dtype=adapter_dtype, use_dora=use_dora, task=task, num_labels=num_labels,
                    labelled_head=labelled_tokens is not None)
    settings, problems = _checked(model, keywords)
    return _planning(settings, problems, device=device, padded=padded, device_overhead=device_overhead,
                     labelled_tokens=labelled_tokens).plan()


def settings_of(model="smollm2-135m", **keywords) -> Settings:
    """``plan_memory``'s keywords (RunConfig's names, plus ``num_labels`` and ``labelled_head``) as the run's
    parts, validated once (``ConfigError`` naming every invalid field). Keywords left out take
    ``plan_memory``'s defaults."""
    settings, problems = _checked(model, keywords)
    if problems:
        raise ConfigError(problems)
    return settings


def _checked(model, keywords: dict) -> tuple:
    """(the parts, the problems of their values): the one conversion from keywords (``parts.split``)."""
    unknown = set(keywords) - _KEYWORDS
    if unknown:
        raise TypeError(f"unknown planner keyword(s): {', '.join(sorted(unknown))}")
    values = {**_DEFAULTS, **keywords, "model": model}
    problems = field_problems({k: v for k, v in values.items() if k in _FIELDS and not (k == "dtype" and v is None)})
    num_labels = values["num_labels"]
    if num_labels is not None and (not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 2):
        problems["num_labels"] = f"num_labels must be None or an integer >= 2, got {num_labels!r}"
    return parts.split(values), problems


def config_settings(cfg, num_labels: Optional[int] = None) -> Settings:
    """The parts the planner takes for a ``RunConfig`` (validated already: nothing is checked again), with a
    classifier's outputs: ``num_labels``, else a built-in classification task's labels."""
    settings = cfg.settings
    labels = num_labels or _task_labels(cfg)
    return replace(settings, base=replace(settings.base, num_labels=labels)) if labels else settings


def planning(settings: Settings, *, device: Optional[str] = None, padded: bool = False,
             device_overhead: Optional[int] = None, labelled_tokens: Optional[int] = None) -> "Planning":
    """The model resolved and the step validated for ``settings`` (``settings_of``, ``config_settings``),
    kept for re-planning (``Planning.plan``). ``device``, ``padded``, ``device_overhead``,
    ``labelled_tokens``: as for ``plan_memory``."""
    return _planning(settings, {}, device=device, padded=padded, device_overhead=device_overhead,
                     labelled_tokens=labelled_tokens)


def _planning(settings: Settings, problems: dict, *, device, padded, device_overhead, labelled_tokens) -> "Planning":
    """``planning`` adding its problems (the model, its targets, the step's) to ``problems``: all at once."""
    device = _device(device)
    from lorakit.models.compute_dtype import AUTO, resolve

    base, adapter = settings.base, settings.adapter
    dtype_given = base.dtype not in (None, AUTO)
    base = replace(base, dtype=base.dtype if dtype_given else resolve(AUTO, device))  # what dtype="auto" uses
    problems = dict(problems)
    if device_overhead is not None and (not isinstance(device_overhead, int) or isinstance(device_overhead, bool)
                                        or device_overhead < 0):
        problems["device_overhead"] = f"device_overhead must be a number of bytes >= 0, got {device_overhead!r}"
    if labelled_tokens is not None and (not isinstance(labelled_tokens, int) or isinstance(labelled_tokens, bool)
                                        or labelled_tokens < 0):
        problems["labelled_tokens"] = f"labelled_tokens must be None or an integer >= 0, got {labelled_tokens!r}"
    # the model and its target modules are checked too, so every problem is reported at once
    cfg = _collecting(problems, pm.resolve_config, base.model)
    if cfg is not None and "num_labels" not in problems and base.num_labels is not None:
        cfg = copy.deepcopy(cfg)  # a built-in's config may be shared
        cfg.num_labels = base.num_labels
    tally = dims = None
    if cfg is not None and "dtype" not in problems:
        tally = _collecting(problems, pm.tally, cfg, base.dtype, base.task)
    if tally is not None:
        dims = _collecting(problems, pm.dims, cfg, tally.task)
        if adapter.method == "lora":
            _collecting(problems, targets.resolve, adapter.target_modules, tally.layer_names)
    if problems:
        raise ConfigError(problems)
    chosen = targets.resolve(adapter.target_modules, tally.layer_names) if adapter.method == "lora" else ()
    step = pm.Step(base, adapter, settings.shape, targets=frozenset(chosen), device=device, padded=bool(padded),
                   labelled=labelled_tokens)
    return Planning(tally, dims, step, device_overhead, dtype_given, _labelled_head_applies(cfg, tally))


_FIELDS = frozenset(name for names in parts.PART_FIELDS.values() for name in names) - {"num_labels"}
_DEFAULTS = {name: p.default for name, p in inspect.signature(plan_memory).parameters.items()
             if name in _FIELDS | {"num_labels"}}
_KEYWORDS = frozenset(_DEFAULTS) | {"labelled_head"}


class Planning:
    """A validated plan's model tally and step settings: ``plan(**changes)`` re-plans with other step
    settings (e.g. batch_size, seq_len) without resolving or validating the model again."""

    def __init__(self, tally: pm.Tally, dims: pm.Dims, step: pm.Step, device_overhead: Optional[int],
                 dtype_given: bool, labelled_head: bool = False):
        self.tally, self.dims, self.step = tally, dims, step
        self.device_overhead, self.dtype_given = device_overhead, dtype_given
        self.labelled_head = labelled_head  # whether lorakit.train's labelled-only head applies to this model

    def plan(self, **changes) -> MemoryBreakdown:
        step = self.step.changed(**changes) if changes else self.step
        if not (self.labelled_head and step.shape.labelled_head):
            step = replace(step, labelled=None)  # the model's own loss (lorakit.train's here, or any Trainer's)
        elif step.labelled is None:  # no batch known: every position with a next token carries a label
            step = replace(step, labelled=step.shape.batch_size * (step.shape.seq_len - 1))
        tensors = trainable_tensors(self.tally, step)
        trainable = sum(n * s for n, s in tensors)
        head = head_tensors(self.tally, step)
        head_bytes = sum(n * s for n, s in head)
        plan = MemoryBreakdown(
            base_weights=base_weight_bytes(self.tally, step),
            adapters=0 if step.full else trainable - head_bytes,
            gradients=trainable,
            optimizer=optimizer_bytes(tensors, "adamw" if step.optimizer == "adamw" else "8bit"),
            activations=activation_bytes(self.dims, step),
        )
        if head:  # a classifier's head: its share of the categories it sits in (memory.measure's ``head``)
            plan.head = {"base_weights": head_bytes, "gradients": head_bytes,
                         "optimizer": optimizer_bytes(head, "adamw" if step.optimizer == "adamw" else "8bit")}
        plan = plan_peak(plan, self.dims, step, self.tally.head_tied, self.device_overhead)
        plan.assumes["dtype_given"] = self.dtype_given
        return plan


def _device(device: Optional[str]) -> str:
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith("cuda") else "cpu"


def _collecting(problems: dict, fn, *args):
    """fn(*args), or None with its ConfigError's problems added to ``problems``."""
    try:
        return fn(*args)
    except ConfigError as exc:
        problems.update(exc.problems)
        return None


def _labelled_head_applies(cfg, tally: pm.Tally) -> bool:
    """Whether ``lorakit.train`` runs this model's head at the labelled rows only (``labelled_loss.lm_parts``)."""
    from lorakit.models.labelled_loss import PLAIN_HEAD_FAMILIES

    return tally.task == "causal-lm" and getattr(cfg, "model_type", "") in PLAIN_HEAD_FAMILIES


def _batch_shape(batch: dict, labelled_head: bool = False) -> dict:
    """A trained batch's ``batch_size``, ``seq_len``, whether it is padded (an attention mask with zeros) and,
    for the labelled-only head, ``labelled``: its positions whose next token has a label (as the loss shifts)."""
    b, t = batch["input_ids"].shape
    mask, labels = batch.get("attention_mask"), batch.get("labels")
    if labels is not None and labels.dim() == 2 and labels.shape[1] != t:  # seq2seq targets: the T5 plan takes
        t = max(t, labels.shape[1])  # one length for encoder and decoder, the longer (an upper bound)
    shape = dict(batch_size=int(b), seq_len=int(t), padded=bool((mask == 0).any()) if mask is not None else False)
    if labelled_head and labels is not None and labels.dim() == 2:  # a classifier's labels: one per example
        from lorakit.models.labelled_loss import labelled_rows

        shape["labelled"] = int(labelled_rows(labels)[0].numel())  # the rows the loss takes, shifted as it shifts
    return shape


def plan_for_batch(cfg, batch: dict, device: Optional[str] = None, num_labels: Optional[int] = None) -> MemoryBreakdown:
    """``plan_memory`` for the batch a step actually trained on: its shape, whether it is padded and, with
    ``cfg.labelled_head``, how many positions carry a label (``batch``: ``input_ids`` of batch x seq,
    optionally ``attention_mask`` and ``labels``). ``num_labels``: the trained classifier's outputs."""
    shape = _batch_shape(batch, cfg.shape.labelled_head)
    return planning(config_settings(cfg, num_labels), device=device).plan(**shape)


def plan_for_steps(cfg, batches: list, device: Optional[str] = None, num_labels: Optional[int] = None
                   ) -> MemoryBreakdown:
    """The plan for the batches of a run's first steps (``batches[0]`` is step 1): the steady categories
    for the first, the peak the largest over all (step 1 without optimizer state before its update)."""
    p = planning(config_settings(cfg, num_labels), device=device)  # resolved and validated once
    labelled = cfg.shape.labelled_head
    plans = [p.plan(**_batch_shape(batch, labelled), first_step=i == 0) for i, batch in enumerate(batches)]
    top = max(plans, key=lambda p: p.peak)
    plan = plans[0]
    plan.peak, plan.peak_at, plan.transient, plan.assumes = top.peak, top.peak_at, top.transient, top.assumes
    plan.timeline = top.timeline  # the moments of the step that makes the peak
    plan.device_overhead = top.device_overhead  # on CUDA it grows with the peak (allocator slack)
    return plan


def _task_labels(cfg) -> Optional[int]:
    """A built-in classification task's label count (a user file's is known once read: the caller passes it)."""
    from lorakit.data import list_tasks

    task = next((t for t in list_tasks("classification") if t.name == getattr(cfg, "dataset", None)), None)
    return len(task.labels) if task is not None else None


def plan_for_config(cfg, seq_len: Optional[int] = None, device: Optional[str] = None, padded: bool = False,
                    labelled_tokens: Optional[int] = None, num_labels: Optional[int] = None) -> MemoryBreakdown:
    """``plan_memory`` for a ``RunConfig`` (``seq_len`` overrides the config's, e.g. the longest
    tokenized example when it is shorter; ``padded``: the batches carry padding). With ``cfg.labelled_head``
    the loss covers ``labelled_tokens`` positions, default every position with a next token (batch x (seq - 1):
    no batch is known). ``num_labels``: a classifier's outputs (default: a built-in task's labels, else the
    model config's)."""
    p = planning(config_settings(cfg, num_labels), device=device, padded=padded, labelled_tokens=labelled_tokens)
    return p.plan(seq_len=int(seq_len)) if seq_len else p.plan()
