"""``plan(cfg)``: the plan of the run ``lorakit.train(cfg)`` will train, from its own data.

The run's training set is built as ``train`` builds it (the model's tokenizer, ``build_data`` with the same
seed), no weights loaded; its steps' batches are the ones the Trainer will draw: accelerate's seedable random
sampler seeded with ``cfg.seed`` (the Trainer's ``data_seed``), one permutation per epoch (seed + epoch), the last
batch of an epoch short, each batch padded to its longest example by the run's collator. Every step's batch
is planned (``planner.Planning``, once per distinct shape); the run's step peak is the largest, beside the peak
of loading the base. Where the data cannot be known the plan is of full-length batches and says it is an
upper bound. A run longer than ``EXACT_STEPS`` has its first ``EXACT_STEPS`` batches drawn exactly; each later
step is bounded by the largest batch its examples can make (``RunData.later``), so planning costs the same for
ten thousand steps and for a billion.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Optional

from lorakit.memory.breakdown import MemoryBreakdown
from lorakit.memory.planning.states import DTYPE_BYTES, FP32, quantized_linear_bytes

EXACT_STEPS = 10_000  # steps whose batches are drawn as the Trainer draws them (about 0.1 s of sampling)


@dataclass
class RunPlan:
    """The plan of one run (bytes): its steady categories, its step peak and the step, batch and phase that make
    it, the peak of loading its base, and the larger of the two."""
    breakdown: MemoryBreakdown
    """Step 1's categories; ``peak``, ``peak_at``, ``transient`` and ``assumes`` those of the run's peak step."""
    step_peak: int
    """The largest planned step peak over every step of the run."""
    peak_step: Optional[int]
    """The step (1-based) whose batch makes ``step_peak``; None: a step after the first ``EXACT_STEPS`` (``later``)."""
    load_peak: int
    """What loading (and quantizing) the base holds at its highest."""
    batches: list = field(default_factory=list)
    """Every step's batch shape (``batch_size``, ``seq_len``, ``padded``, ``labelled`` where the head uses it), for
    the first ``EXACT_STEPS`` steps."""
    upper_bound: bool = False
    """The data could not be known: full-length batches were planned, so the peak is an upper bound."""
    why: str = ""
    """Why the data could not be known (with ``upper_bound``)."""
    device: str = "cpu"
    """'cpu' or 'cuda': the device planned for."""
    seconds: float = 0.0
    """How long building the data and planning took."""
    steps: int = 0
    """Steps the run trains (``len(batches)`` unless the run is longer than ``EXACT_STEPS``)."""
    later: Optional[dict] = None
    """With a run longer than ``EXACT_STEPS``: the largest batch a later step can draw (its longest examples
    together), planned as those steps' bound."""

    @property
    def peak(self) -> int:
        """The run's planned peak: the larger of the step peak and the load peak."""
        return max(self.step_peak, self.load_peak)

    @property
    def peak_phase(self) -> str:
        """'loading' where loading the base holds the most, else the step's phase (logits-loss, backward, ...)."""
        return "loading" if self.load_peak > self.step_peak else self.breakdown.peak_at

    @property
    def device_total(self) -> int:
        """``peak`` plus the device overhead (CUDA): what a device must offer."""
        return self.peak + (self.breakdown.device_overhead or 0)

    @property
    def peak_batch(self) -> dict:
        if self.peak_step is None:
            return self.later or {}
        return self.batches[self.peak_step - 1] if self.batches else {}

    @property
    def text(self) -> str:
        """Where the peak is, e.g. "step 17's batch, 4 x 93 tokens, logits-loss"."""
        said = self.where if self.peak_phase == "loading" else f"{self.where}, {self.breakdown.peak_at}"
        return said + self._bound

    @property
    def _bound(self) -> str:
        return f" (an upper bound: {self.why})" if self.upper_bound else ""

    @property
    def assumes(self) -> dict:
        steps = self.steps or len(self.batches)
        return {**(self.breakdown.assumes or {}), "steps": steps, "upper_bound": self.upper_bound}

    def as_planned(self) -> MemoryBreakdown:
        """The breakdown every place shows as this run's plan (the Studio, ``fits``, the record's
        ``planned_memory``): step 1's categories, the run's ``peak`` and its phase; where it is in
        ``assumes['peak_of']``, the step peak and the load peak beside it."""
        planned = replace(self.breakdown, transient=dict(self.breakdown.transient or {}))
        planned.peak, planned.peak_at = self.peak, self.peak_phase
        if self.peak_phase == "loading":
            planned.transient = {}
        planned.assumes = {**self.assumes, "peak_of": self.where + self._bound, "step_peak": self.step_peak,
                           "peak_step": self.peak_step, "load_peak": self.load_peak}
        return planned

    @property
    def where(self) -> str:
        """The peak's batch in words: "step 17's batch, 4 x 93 tokens", "a batch after step 10,000 (its longest
        examples together), 4 x 128 tokens", or "loading the base"."""
        if self.peak_phase == "loading":
            return "loading the base"
        b = self.peak_batch
        where = ("full-length batches" if self.upper_bound else f"step {self.peak_step}'s batch" if self.peak_step
                 else f"a batch after step {len(self.batches):,} (its longest examples together)")
        return f"{where}, {b.get('batch_size')} x {b.get('seq_len')} tokens"


def plan(cfg, device: Optional[str] = None, data: bool = True) -> RunPlan:
    """The plan of the run ``lorakit.train(cfg)`` trains (``cfg``: a ``RunConfig``) on ``device`` ('cpu' or
    'cuda'; default: cuda when available). ``data=False``: plan full-length batches without reading the data
    (an upper bound). Raises ``ConfigError`` for settings the planner refuses."""
    t0 = time.perf_counter()
    result = plan_known(cfg, run_data(cfg, data), _device(device))
    result.seconds = time.perf_counter() - t0
    return result


@dataclass
class RunData:
    """What planning a run knows of its data: every training example's length and labelled positions."""
    lengths: Optional[list]
    """Tokens of each training example (None: the data is unknown, batches are planned full-length)."""
    labelled: Optional[list] = None
    """Positions of each example whose next token carries a label (the labelled-only head; else None)."""
    num_labels: Optional[int] = None
    """A classifier's outputs (its data's labels)."""
    why: str = ""
    """Why the data is unknown."""
    targets: Optional[list] = None
    """A seq2seq run's target (decoder) tokens per example; None for the other tasks."""

    def batches(self, cfg, batch_size: Optional[int] = None) -> list:
        """Every step's batch shape for ``cfg`` (``batch_size``: another batch size, same order of examples), for the
        first ``EXACT_STEPS`` steps."""
        size = batch_size or cfg.batch_size
        steps = min(cfg.max_steps, EXACT_STEPS)
        if self.lengths is None:
            return [dict(batch_size=size, seq_len=cfg.seq_len, padded=False) for _ in range(steps)]
        return batch_shapes(self, step_indices(len(self.lengths), size, steps, cfg.seed))

    def later(self, cfg, batch_size: Optional[int] = None) -> Optional[dict]:
        """The largest batch a step after the first ``EXACT_STEPS`` can draw: its longest examples together (padded
        where they differ), the most labelled positions; None for a run no longer than that, or unknown data
        (every batch full-length already)."""
        if cfg.max_steps <= EXACT_STEPS or self.lengths is None:
            return None
        rows = min(batch_size or cfg.batch_size, len(self.lengths))
        shape = dict(batch_size=rows, seq_len=max(self.lengths + (self.targets or [])),
                     padded=rows > 1 and len(set(self.lengths)) > 1)
        if self.labelled is not None:
            shape["labelled"] = sum(sorted(self.labelled, reverse=True)[:rows])
        return shape


def run_data(cfg, data: bool = True) -> RunData:
    """The run's data as ``train`` builds it, reduced to what planning needs; unknown (with why) where it
    cannot be built here or ``data`` is False."""
    bundle, why = _bundle(cfg) if data else (None, "the data was not read (data=False)")
    return RunData(None, why=why) if bundle is None else data_of(bundle, cfg)


def data_of(bundle, cfg) -> RunData:
    """A built ``DataBundle``'s training examples as ``RunData``."""
    columns = bundle.train[:]  # every row's lists at once, not row by row
    labels = columns["labels"]
    labelled = None
    if cfg.shape.labelled_head and labels and isinstance(labels[0], list):  # a classifier's labels: one int each
        from lorakit.data import IGNORE_INDEX

        labelled = [sum(t != IGNORE_INDEX for t in lab[1:]) for lab in labels]  # shifted as the loss shifts
    num_labels = len(bundle.labels) if bundle.kind == "classification" else None
    targets = [len(target) for target in labels] if bundle.kind == "seq2seq" else None
    return RunData([len(ids) for ids in columns["input_ids"]], labelled, num_labels, targets=targets)


def plan_known(cfg, data: RunData, device: str, batch_size: Optional[int] = None) -> RunPlan:
    """The run plan of ``data`` on ``device`` (``batch_size``: the same run with another batch size)."""
    result = plan_batches(cfg, data.batches(cfg, batch_size), device, data.num_labels,
                          steps=cfg.max_steps, later=data.later(cfg, batch_size))
    result.upper_bound, result.why = data.lengths is None, data.why
    return result


def plan_batches(cfg, batches: list, device: str, num_labels: Optional[int] = None, *, steps: Optional[int] = None,
                 later: Optional[dict] = None) -> RunPlan:
    """The run plan of ``batches`` (one shape dict per step, ``run_batches``): step 1 and the shapes that can make
    the peak, each planned once. ``steps``: the run's steps where more than ``len(batches)``, each later one bounded
    by the shape ``later``."""
    from lorakit.memory.planner import config_settings, planning

    p = planning(config_settings(cfg, num_labels), device=device)
    # step 1 (no optimizer state yet), then each distinct shape no other batch outgrows, at its first step
    candidates = [0] + _undominated(batches[1:], offset=1)
    plans = {i: p.plan(**batches[i], first_step=i == 0) for i in candidates}
    if later is not None and not any(_outgrows(_size(batches[i]), _size(later)) for i in candidates):
        plans[len(batches)] = p.plan(**later, first_step=False)  # index len(batches): "a later step"
    top = max(sorted(plans), key=lambda i: plans[i].peak)  # the first of equals
    first, best = plans[0], plans[top]
    breakdown = MemoryBreakdown(first.base_weights, first.adapters, first.gradients, first.optimizer,
                                first.activations, peak=best.peak, peak_at=best.peak_at,
                                transient=dict(best.transient or {}), device_overhead=best.device_overhead,
                                assumes=dict(best.assumes or {}), head=first.head,
                                timeline=best.timeline)  # the peak step's moments: its tallest is the step peak
    return RunPlan(breakdown, best.peak, top + 1 if top < len(batches) else None, load_bytes(p.tally, p.step),
                   list(batches), device=device, steps=steps or len(batches), later=later)


def _undominated(batches: list, offset: int = 0) -> list:
    """Indices (+ ``offset``) of the first batch of each distinct shape that no other batch outgrows: a step's
    planned peak grows with its rows, tokens, labelled positions and padding, so only these can make the run's."""
    first: dict = {}
    for i, shape in enumerate(batches):
        first.setdefault(_size(shape), i)
    sizes = list(first)
    return sorted(first[a] + offset for a in sizes if not any(b != a and _outgrows(b, a) for b in sizes))


def _outgrows(b: tuple, a: tuple) -> bool:
    """Whether a batch of size ``b`` is at least ``a`` in every dimension (``_size``)."""
    return all(x >= y for x, y in zip(b, a, strict=True))


def _size(shape: dict) -> tuple:
    return (shape["batch_size"], shape["seq_len"], shape.get("labelled") or 0, int(shape.get("padded", False)))


def run_batches(bundle, cfg) -> list:
    """Every step's batch shape, in the order the Trainer draws them (``max_steps`` steps)."""
    return data_of(bundle, cfg).batches(cfg)


def batch_shapes(data: RunData, steps: list) -> list:
    """The shape of each step's batch (``steps``: its examples), as the collator pads it: to its longest."""
    shapes = []
    for rows in steps:
        seen = [data.lengths[i] for i in rows]
        # the T5 plan takes one length for its encoder and decoder: the longer of the inputs and targets (a bound);
        # padding is the inputs' (the attention mask's)
        longest = max(max(seen), max(data.targets[i] for i in rows) if data.targets else 0)
        shape = dict(batch_size=len(rows), seq_len=longest, padded=min(seen) != max(seen))
        if data.labelled is not None:
            shape["labelled"] = sum(data.labelled[i] for i in rows)
        shapes.append(shape)
    return shapes


def step_indices(n: int, batch_size: int, steps: int, seed: int) -> list:
    """The training examples of each step: the sampler accelerate gives the Trainer (seeded by ``data_seed``,
    reseeded with seed + epoch each epoch), batches of ``batch_size`` with the epoch's last one short."""
    from accelerate.data_loader import SeedableRandomSampler

    sampler = SeedableRandomSampler(data_source=range(n), data_seed=seed)
    out: list = []
    epoch = 0
    while len(out) < steps:
        sampler.set_epoch(epoch)
        order = list(sampler)
        out += [order[i:i + batch_size] for i in range(0, n, batch_size)]
        epoch += 1
    return out[:steps]


# transformers reads a checkpoint shard by shard: the Hub's large models come in shards of about this size
SHARD_BYTES = 5 * 2**30


def load_bytes(tally, step, file_bytes: int = FP32) -> int:
    """Loading the base at its highest: every weight as loaded (quantized layers packed, the rest in the dtype);
    a quantized load also holds the checkpoint's weights as read (``file_bytes`` each: fp32 assumed) while it
    quantizes them, one shard at most (``SHARD_BYTES``); an unquantized one the largest tensor being converted to
    another dtype.
    Measured on CPU (torch's allocator, SmolLM2 and tiny-llama stored in fp32): nf4 and int8 16-40 % below this,
    no quantization within 0.01 % (the rotary buffers the model computes)."""
    es = DTYPE_BYTES[step.dtype]
    loaded, params, largest = tally.buffers, 0, 0
    for _, d_in, d_out, is_head in tally.linears:
        quantized = step.quantized and not is_head
        loaded += quantized_linear_bytes(d_in, d_out, step.quant, step.double_quant) if quantized else d_in * d_out * es
        params += d_in * d_out
        largest = max(largest, d_in * d_out)
    for numel, _ in tally.others:
        loaded += numel * es
        params += numel
        largest = max(largest, numel)
    loaded += sum(tally.biases) * es
    params += sum(tally.biases)
    if step.quantized:
        return loaded + min(params * file_bytes, SHARD_BYTES)
    return loaded + (largest * file_bytes if file_bytes != es else 0)


def _bundle(cfg) -> tuple:
    """(the run's data as ``train`` builds it, ''), or (None, why it cannot be known here)."""
    from lorakit.data import build_data
    from lorakit.models.loading import load_tokenizer

    try:
        tokenizer, task = load_tokenizer(cfg.base)
    except Exception as exc:  # noqa: BLE001 - a config-only size, a hub id not here: plan without the data
        return None, f"no tokenizer for {cfg.model!r} ({_first_line(exc)})"
    try:
        return build_data(cfg, tokenizer, task), ""
    except Exception as exc:  # noqa: BLE001 - a file that does not read: the plan still stands, as a bound
        return None, f"the data could not be read ({_first_line(exc)})"


def _device(device: Optional[str]) -> str:
    from lorakit.memory.planner import _device as resolved

    return resolved(device)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
