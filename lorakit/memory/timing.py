"""How long a run will take: its work counted from the model's dims, priced at this machine's measured speeds.

``step_work`` counts one training step's work for a batch: the matmul FLOPs of the forward and the backward
(a frozen base computes the activations' gradients but no weight gradients; LoRA's own small matmuls; full
fine-tuning's weight gradients; DoRA's B @ A per forward; gradient checkpointing's second forward of the layers;
the labelled-only head at the labelled rows alone), the dense bytes bitsandbytes dequantizes from a 4-bit base
(per forward, per backward, per recomputation), attention's FLOPs (priced at their own probe's rate: masked
attention runs far below the big matmuls' rate), the elements LoRA's dropout masks, the elementwise bytes of the
activations and the trained parameters the optimizer steps. ``plan_time`` prices that with
``calibration.calibrate`` (measured once per machine), adds loading and the evaluation before and after
training (greedy generation as ``training.evaluation.generate`` runs it: a prefill, then one decoding step per
new token), and returns a ``TimePlan``. On a GPU ``gpu_step_seconds`` prices the same work at a card's published
throughput.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Optional

from lorakit.common.errors import ConfigError
from lorakit.memory.calibration import DECODE_ROWS, Calibration, calibrate

ACT_BYTES_PER_ELEMENT = 3  # an elementwise op reads two operands or one and writes one: ~3 passes per element
GENERATION_BATCH = 32  # training.evaluation.GENERATION_BATCH (a room below cannot import training)


@dataclass
class StepWork:
    """One training step's work, by kind."""
    matmul_flops: float = 0.0
    """FLOPs of every matrix multiply: forward, backward and any recomputation."""
    attention_flops: float = 0.0
    """The part of ``matmul_flops`` that is attention's (q @ k^T, p @ v): priced at the attention probe's rate."""
    dropout_elements: float = 0.0
    """Elements LoRA's dropout masks (each forward and recomputation; its backward applies the same mask)."""
    probed_bytes: float = 0.0
    """Bytes attention's softmax and mask and the dropout read and write: on a CPU inside their own probes' rates,
    on a GPU moved at its bandwidth."""
    dequant_bytes: float = 0.0
    """Dense bytes bitsandbytes produces from 4-bit weights (each use: forward, backward, recomputation)."""
    elementwise_bytes: float = 0.0
    """Bytes the non-matmul ops (norms, activations, softmax, residuals, dropout) read and write."""
    trained_params: int = 0
    """Parameters the optimizer steps."""
    layer_passes: int = 0
    """Layers run forward or backward (each costs a fixed dispatch overhead)."""
    parts: dict = field(default_factory=dict)
    """GFLOPs by part: forward, backward, recompute, adapters, head (for reading, not pricing)."""

    def seconds(self, cal: Calibration) -> float:
        return ((self.matmul_flops - self.attention_flops) / (cal.train_gflops * 1e9)
                + self.attention_flops / (cal.attention_gflops * 1e9)
                + self.dropout_elements * cal.dropout_ns_per_element * 1e-9
                + self.dequant_bytes / (cal.dequant_gbs * 1e9)
                + self.elementwise_bytes / (cal.elementwise_gbs * 1e9)
                + self.trained_params * cal.adamw_ns_per_param * 1e-9 + self.layer_passes * cal.layer_overhead_s)


def _linears(planning) -> tuple:
    """(body linears (d_in, d_out, adapted), head (d_in, d_out) or None) of the planned model."""
    step, dims = planning.step, planning.dims
    body = [(d_in, d_out, name in step.targets) for name, d_in, d_out, is_head in planning.tally.linears
            if not is_head]
    out = dims.labels or dims.vocab
    return body, (dims.hidden, out)


def step_work(planning, batch: Optional[dict] = None) -> StepWork:
    """The work of one training step of ``planning`` (``memory.planning(settings)``) on ``batch`` (a dict with
    ``batch_size``, ``seq_len`` and, for the labelled-only head, ``labelled``; None: the planned step's)."""
    step = planning.step
    if batch:
        step = step.changed(**{k: v for k, v in batch.items() if k in ("batch_size", "seq_len", "labelled")})
    dims, tokens = planning.dims, step.batch_size * step.seq_len
    body, (h_in, h_out) = _linears(planning)
    labelled = planning.labelled_head and step.shape.labelled_head
    rows = (step.labelled if step.labelled is not None else step.batch_size * (step.seq_len - 1)) \
        if labelled else tokens
    if dims.labels:  # a classifier's head: one row per example
        rows = step.batch_size
    full, rank = step.full, step.adapter.rank
    layers = dims.layers + dims.decoder_layers
    lin = sum(2 * tokens * i * o for i, o, _ in body)
    attn = 4 * step.batch_size * step.seq_len ** 2 * dims.heads * dims.head_dim * layers
    head = 2 * rows * h_in * h_out
    adapted = [(i, o) for i, o, a in body if a and not full]
    lora = sum(2 * tokens * rank * (i + o) for i, o in adapted)
    dora = sum(2 * i * o * rank for i, o in adapted) if step.adapter.use_dora else 0
    forward = lin + attn + head + lora + dora
    # the base's weights: gradients of the activations only (LoRA) or of the weights too (full: twice)
    backward = (2 if full else 1) * (lin + head) + 2 * attn + 2 * lora - _no_input_grad(planning, step, tokens)
    recompute = lin + attn + lora + dora if step.gradient_checkpointing else 0
    weights = sum(i * o for i, o, _ in body)
    import torch

    width = getattr(torch, step.base.dtype).itemsize
    uses = 2 + (1 if step.gradient_checkpointing else 0) + (1 if step.adapter.use_dora else 0)
    dequant = weights * width * uses if step.base.quantized else 0
    # per token per layer: norms and residuals (~8 x hidden), the MLP's activation (3 x inter); backward ~2x
    # forward. The attention's softmax and mask are in its own probe's rate, dropout in its own.
    per_token = (8 * dims.hidden + 3 * dims.inter) * layers
    passes = 3 + (1 if step.gradient_checkpointing else 0)
    masked = sum(i for i, _ in adapted) if step.adapter.dropout > 0 else 0  # features dropout masks per token
    forwards = 1 + (1 if step.gradient_checkpointing else 0)  # a recomputed forward draws its masks again
    dropout = tokens * masked * forwards
    probed = (3 * dims.heads * step.seq_len * layers + masked) * tokens * width * ACT_BYTES_PER_ELEMENT * passes
    elementwise = per_token * tokens * width * ACT_BYTES_PER_ELEMENT * passes + rows * h_out * 4 * 3
    trained = sum(i * o for i, o, _ in body) + (0 if planning.tally.head_tied else h_in * h_out) \
        + sum(n for n, _ in planning.tally.others) if full else sum(rank * (i + o) for i, o in adapted) \
        + (sum(o for _, o in adapted) if step.adapter.use_dora else 0) + sum(planning.tally.head)
    g = 1e-9
    attention = attn * passes  # forward, backward (2x), recomputation
    return StepWork(matmul_flops=forward + backward + recompute, attention_flops=attention,
                    dropout_elements=dropout, probed_bytes=probed, dequant_bytes=dequant,
                    elementwise_bytes=elementwise, trained_params=trained,
                    layer_passes=layers * passes,
                    parts={"forward": forward * g, "backward": backward * g, "recompute": recompute * g,
                           "adapters": (lora + dora) * 3 * g, "head": head * (3 if full else 2) * g})


ATTENTION_INPUTS = frozenset({"q_proj", "k_proj", "v_proj", "c_attn", "query", "key", "value", "q", "k", "v"})


def _no_input_grad(planning, step, tokens: int) -> int:
    """FLOPs autograd skips under LoRA on a frozen fp base: the first layer's attention projections read the
    embeddings, which need no gradient, so neither they nor their adapters' A compute one (with checkpointing
    or a 4-bit base, peft turns the embeddings' gradient on and they do)."""
    if step.full or step.gradient_checkpointing or step.base.quantized:
        return 0
    linears = [(n, i, o) for n, i, o, is_head in planning.tally.linears if not is_head]
    layers = planning.dims.layers + planning.dims.decoder_layers
    first = linears[:len(linears) // layers] if layers else []
    return sum(2 * tokens * i * (o + (step.adapter.rank if n in step.targets else 0))
               for n, i, o in first if n in ATTENTION_INPUTS)


def generation_seconds(planning, cal: Calibration, examples: int, prompt_tokens: int, new_tokens: int) -> float:
    """Greedy generation of ``new_tokens`` answers for ``examples`` prompts of ``prompt_tokens`` each, in batches of
    32: a prefill of the prompts (the head at their last position), then one decoding step per new token, every
    step reading each weight once; a 4-bit base is dequantized once per call (``models.dense_4bit``)."""
    dims = planning.dims
    body, (h_in, h_out) = _linears(planning)
    weights = sum(i * o for i, o, _ in body)
    layers = dims.layers + dims.decoder_layers
    attn_width = dims.heads * dims.head_dim * layers
    total = 0.0
    for start in range(0, examples, GENERATION_BATCH):
        b = min(GENERATION_BATCH, examples - start)
        prefill = 2 * b * prompt_tokens * weights + 4 * b * prompt_tokens ** 2 * attn_width + 2 * b * h_in * h_out
        total += prefill / (cal.train_gflops * 1e9) + layers * cal.layer_overhead_s
        per_step = 2 * b * (weights + h_in * h_out)
        context = new_tokens * prompt_tokens + new_tokens * (new_tokens + 1) / 2  # keys read over the decode
        attn = 4 * b * context * attn_width
        # a decoding step reads every weight whatever its rows: below the probe's 32 rows it takes as long as
        # the probe's step, so its rate falls with the rows (b / 32 of the probe's)
        total += (new_tokens * per_step + attn) / (cal.decode_gflops * min(b, DECODE_ROWS) / DECODE_ROWS * 1e9)
        # a real layer's forward (norms, rotary, attention, 7 projections: ~25 ops) dispatches about as many ops
        # as the probe's small layer forward and backward
        total += new_tokens * layers * cal.layer_overhead_s
    import torch

    if planning.step.base.quantized:
        total += weights * getattr(torch, planning.step.base.dtype).itemsize / (cal.dequant_gbs * 1e9)
    return total


@dataclass
class TimePlan:
    """How long a run will take on this machine, predicted before it starts (seconds)."""
    load_s: float
    """Loading the base (reading its weights; quantizing a 4-bit one): a rough estimate."""
    step_s: float
    """Mean seconds per optimizer step."""
    steps: int
    """Optimizer steps planned."""
    train_s: float
    """Every step: what ``RunRecord.train_s`` measures."""
    eval_s: float
    """The evaluation: the eval-loss pass and generating the eval answers (before, unless kept, and after)."""
    total_s: float
    """Load, training and evaluation."""
    calibration: dict
    """The measured speeds priced with (``Calibration.as_dict``): GFLOP/s, dequantization GB/s, ..."""
    step_gflop: float
    """Matmul GFLOPs of the mean step."""
    assumes: dict = field(default_factory=dict)
    """What the prediction took for granted (batches, eval prompt and answer lengths, passes)."""

    @property
    def text(self) -> str:
        """'about 2 min' (the total)."""
        return about(self.total_s)

    def as_dict(self) -> dict:
        return {**asdict(self), "text": self.text}


def about(seconds: float) -> str:
    """A duration as a person says it before a run: 'about 40 s', 'about 2 min', 'about 1.5 h'."""
    if seconds < 60:
        return f"about {max(5, 5 * round(seconds / 5)):.0f} s"
    if seconds < 5400:
        return f"about {max(1, round(seconds / 60)):.0f} min"
    return f"about {seconds / 3600:.1f} h"


def plan_time(settings_or_cfg, batches: Optional[list] = None, *, steps: Optional[int] = None,
              eval_examples: Optional[int] = None, eval_prompt_tokens: Optional[int] = None,
              eval_new_tokens: int = 48, eval_passes: int = 2,
              calibration: Optional[Calibration] = None) -> TimePlan:
    """Predict a run's load, training and evaluation seconds on this machine (CPU).

    ``settings_or_cfg``: a ``RunConfig`` (its steps and eval examples are used) or its parts (``RunConfig.settings``,
    ``memory.settings_of(...)``). ``batches``: every step's batch as ``{"batch_size", "seq_len", "labelled"}``
    (``RunPlan.batches``); None: ``steps`` full-length batches (an upper bound where examples are shorter). With
    ``batches``, ``steps`` (``RunPlan.steps``) may be more than them: the later steps are priced at their mean.
    ``eval_examples``: prompts generated for per pass (default: the config's, else RunConfig's);
    ``eval_prompt_tokens``: their mean length (default half of ``seq_len``); ``eval_new_tokens``: the answer budget
    decoded (greedy stops at the end of the longest answer of a batch: an upper bound); ``eval_passes``: 2 (before
    and after training), 1 where the base's result is kept from an earlier run, 0 with no evaluation.
    ``calibration``: the speeds to price with (default: this machine's, measured once and kept).
    """
    from lorakit.config.parts import Settings
    from lorakit.config.run_config import RunConfig
    from lorakit.memory.planner import config_settings, planning

    if isinstance(settings_or_cfg, Settings):
        settings, cfg = settings_or_cfg, None
    elif hasattr(settings_or_cfg, "settings"):
        cfg = settings_or_cfg
        settings = config_settings(cfg)
    else:
        raise ConfigError({"settings": "plan_time takes a RunConfig or its parts (RunConfig.settings)"})
    if batches is not None and not batches:
        raise ConfigError({"batches": "batches must list at least one step's batch, or be None"})
    p = planning(settings, device="cpu")
    dims = p.dims
    cal = calibration or calibrate(p.step.base.dtype, dims.hidden, dims.inter)
    if batches is not None:  # ``steps`` past the batches listed (a run over ``EXACT_STEPS``) go on with their mix
        steps = max(len(batches), int(steps or 0))
    else:
        steps = int(steps or (cfg.max_steps if cfg else None) or 30)
    # each distinct shape priced once, weighted by its steps: ten thousand steps cost what their shapes cost
    shapes = Counter(tuple(sorted(b.items())) for b in batches) if batches is not None else Counter({None: 1})
    works = {k: step_work(p, None if k is None else dict(k)) for k in shapes}
    drawn = sum(shapes.values())
    step_s = sum(works[k].seconds(cal) * n for k, n in shapes.items()) / drawn
    train_s = step_s * steps
    examples = eval_examples if eval_examples is not None else (cfg or RunConfig).eval_examples
    prompt = eval_prompt_tokens or max(1, p.step.seq_len // 2)
    eval_s = eval_passes * generation_seconds(p, cal, examples, prompt, eval_new_tokens) if eval_passes else 0.0
    if eval_passes:  # the eval-loss pass after training: a forward of every eval example
        loss_work = step_work(p, {"batch_size": examples, "seq_len": p.step.seq_len})
        eval_s += loss_work.parts["forward"] * 1e9 / (cal.train_gflops * 1e9)
    load_s = _load_seconds(p, cal)
    return TimePlan(load_s=load_s, step_s=step_s, steps=steps, train_s=train_s, eval_s=eval_s,
                    total_s=load_s + train_s + eval_s, calibration=cal.as_dict(),
                    step_gflop=sum(works[k].matmul_flops * n for k, n in shapes.items()) / drawn * 1e-9,
                    assumes={"batches": "the run's own" if batches is not None else
                             f"{steps} full-length batches of {p.step.batch_size} x {p.step.seq_len}",
                             "eval_examples": examples, "eval_prompt_tokens": prompt,
                             "eval_new_tokens": eval_new_tokens, "eval_passes": eval_passes})


def _load_seconds(planning, cal: Calibration) -> float:
    """Reading the weights (copied about twice: file to tensors, tensors to the model) and quantizing a 4-bit
    base (about twice its dequantization), plus a second of Python and transformers' set-up: rough."""
    import torch

    body, (h_in, h_out) = _linears(planning)
    params = sum(i * o for i, o, _ in body) + sum(n for n, _ in planning.tally.others)
    width = getattr(torch, planning.step.base.dtype).itemsize
    seconds = 1.0 + 2 * params * 4 / (cal.elementwise_gbs * 1e9)
    if planning.step.base.quantized:
        seconds += 2 * sum(i * o for i, o, _ in body) * width / (cal.dequant_gbs * 1e9)
    return seconds


@dataclass(frozen=True)
class Card:
    """A GPU's published speeds (``accelerators.json``'s ``speeds``)."""
    bf16_tflops: float
    """Dense bf16 tensor-core TFLOP/s (without sparsity)."""
    bandwidth_gbs: float
    """Memory bandwidth, GB/s."""


GPU_EFFICIENCY = 0.4  # of the published peak a fine-tuning step reaches (small matmuls, launches, elementwise)
KERNEL_S = 6e-6  # a CUDA kernel launch; ~25 kernels per layer per pass


def gpu_step_seconds(planning, card: Card, batch: Optional[dict] = None, efficiency: float = GPU_EFFICIENCY) -> float:
    """An estimate of one step's seconds on ``card``: the matmuls at ``efficiency`` of its bf16 peak, every
    byte moved (dequantization, elementwise, the optimizer's 16 bytes per trained parameter) at its bandwidth,
    and the kernel launches."""
    if not 0 < efficiency <= 1:
        raise ConfigError({"efficiency": f"efficiency must be in (0, 1], got {efficiency!r}"})
    w = step_work(planning, batch)
    moved = w.dequant_bytes * 1.25 + w.elementwise_bytes + w.probed_bytes + 16 * w.trained_params
    return (w.matmul_flops / (card.bf16_tflops * 1e12 * efficiency) + moved / (card.bandwidth_gbs * 1e9 * efficiency)
            + w.layer_passes * 25 * KERNEL_S)



def remaining_seconds(steps_done: int, max_steps: int, elapsed_s: float, eval_s: float = 0.0) -> Optional[float]:
    """A live ETA: the steps left at this run's mean seconds per step so far, plus the evaluation still to come
    (``TimePlan.eval_s``); None before the first step."""
    if steps_done < 1 or elapsed_s <= 0:
        return None
    return max(0, max_steps - steps_done) * elapsed_s / steps_done + max(0.0, eval_s)
