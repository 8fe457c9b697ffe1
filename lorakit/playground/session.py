"""Talk to a base and its adapters side by side: one base loaded once, each stored run's adapter attached
by name.

A ``Session`` loads the base of its runs once (``models.load_model``) and adds each run's LoRA adapter
to it as a named peft adapter (``adapters.load_adapter``, which refuses an adapter trained on another
base before peft touches a tensor). A column answers with ``set_adapter(run_id)``; the base column
answers inside ``disable_adapter()``. So N columns cost the base once plus N adapters
(``Session.memory``, measured from the tensors). Columns answer one after another: switching an
adapter is a change to the one shared model.

What a run needs to be a column: a finished or stopped LoRA run with its adapter folder, on the same
base model (its ``config.model``) and for the same task. A full fine-tuning run is refused with the
reason: it is a whole second model, not an adapter (columns share one base); its kept weights export as
``merged``.
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from lorakit.common.errors import ConfigError
from lorakit.playground.streaming import AnswerStats, GenerationSettings, stream_tokens

BASE = "base"  # the base column's name


@dataclass
class Column:
    """One model that answers: the base, or a run's adapter on it."""
    name: str  # 'base' or the run id (also the peft adapter name)
    label: str  # what a person reads: 'base (smollm2-135m)' or 'run 3f2a… (LoRA r8, extract-json)'
    record: object = None  # the RunRecord (None for the base)


@dataclass
class PlaygroundMemory:
    """Bytes the loaded session holds: the base once, and each adapter (by column name)."""
    base: int
    adapters: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.base + sum(self.adapters.values())

    def text(self) -> str:
        parts = [f"base {self.base / 2**20:.1f} MiB (once)"]
        parts += [f"{name} {n / 2**20:.2f} MiB" for name, n in self.adapters.items()]
        return f"memory: {' + '.join(parts)} = {self.total / 2**20:.1f} MiB"


def resolve_runs(runs, store) -> list:
    """The RunRecords named by ``runs`` (run ids or RunRecords); an unknown id is a ConfigError naming ``runs``."""
    from lorakit.run.record import RunRecord

    if isinstance(runs, (str, RunRecord)):
        runs = [runs]
    out, unknown = [], []
    for r in list(runs or ()):
        if isinstance(r, RunRecord):
            out.append(r)
        elif isinstance(r, str) and store is not None and r in store:
            out.append(store.load(r))
        else:
            unknown.append(repr(r))
    if unknown:
        known = ", ".join(store.run_ids()[:12]) if store is not None else ""
        raise ConfigError({"runs": f"unknown run(s) {', '.join(unknown)} in the store "
                                   f"{getattr(store, 'path', '')}; stored runs: {known or '(none)'}"})
    return out


def why_not(record, model: str, task: str = "") -> str:
    """'' when ``record``'s adapter can be a column on base ``model`` (and ``task``); else the reason, in words."""
    cfg = record.config
    if cfg.method != "lora":
        size = f", {record.weights_bytes / 2**20:.0f} MiB kept" if record.weights_bytes else ""
        return (f"run {record.run_id} is a full fine-tuning run: it has no adapter to switch on this base (it is a "
                f"whole second model{size}), so it cannot be a column; export it with format='merged' and load "
                "it on its own")
    if cfg.model != model:
        return f"run {record.run_id} was trained on {cfg.model!r}, not on the base {model!r} of these columns"
    if task and record.task and record.task != task:
        return f"run {record.run_id} is a {record.task} run; these columns are {task}"
    if not record.adapter_path or not Path(record.adapter_path).is_dir():
        return f"run {record.run_id} has no saved adapter ({record.status}; adapter_path {record.adapter_path!r})"
    return ""


def _records(runs, store) -> list:
    from lorakit.store.runs import open_store

    st, opened = open_store(store, required=True) if runs else (None, False)
    try:
        return resolve_runs(runs, st)
    finally:
        if opened:
            st.close()


def column_label(record) -> str:
    cfg = record.config
    what = "QLoRA" if cfg.base.four_bit else "LoRA"
    return f"{record.run_id} ({cfg.name + ', ' if cfg.name else ''}{what} r{cfg.rank}, {cfg.dataset})"


class Session:
    """A base loaded once with the adapters of ``runs`` attached by name; columns answer in turn.

    ``model``: the base (a built-in name or a directory); default: the runs' base. ``quant``: load the base
    quantized ('none', 'nf4', ...); default: the first run's (a QLoRA run's adapter is then used on the 4-bit
    base it was trained on). A run on another base, of another task or without an adapter is a ConfigError
    naming ``runs`` with the reason.
    """

    def __init__(self, runs: Sequence = (), store=None, model: Optional[str] = None, quant: Optional[str] = None,
                 device: Optional[str] = None, base: bool = True):
        records = _records(runs, store)
        if not records and not model:
            raise ConfigError({"runs": "give at least one run, or model= for the base alone"})
        first = records[0].config if records else None
        self.model_name = model or first.model
        self.task = records[0].task if records else ""
        self._check(records)
        self._load(records, first, quant, device)
        self.columns = ([Column(BASE, f"base ({self.model_name})")] if base else []) + [
            Column(r.run_id, column_label(r), r) for r in records]
        self._lock = threading.Lock()  # one answer at a time: the active adapter is the shared model's

    def _load(self, records, first, quant, device) -> None:
        from lorakit.adapters.lora import load_adapter
        from lorakit.config.parts import Base
        from lorakit.models.loading import load_base

        labels = None
        if self.task == "classification" and first is not None:
            from lorakit.data import data_labels

            labels = data_labels(first)
        base = first.base if first is not None else Base()
        self.loaded = load_base(replace(base, model=self.model_name, quant=quant or base.quant), device, labels)
        self.task = self.loaded.task
        self.tokenizer = self.loaded.tokenizer
        model = self.loaded.model
        for rec in records:
            model = load_adapter(model, rec.adapter_path, adapter_name=rec.run_id)
        model.eval()
        model.config.use_cache = True
        self.model = model

    def _check(self, records) -> None:
        problems = [r for r in (why_not(rec, self.model_name, self.task) for rec in records) if r]
        if problems:
            raise ConfigError({"runs": "; ".join(problems)})

    def set_runs(self, runs: Sequence = (), store=None) -> None:
        """Make the columns the base plus ``runs`` on the base already loaded (it is never reloaded): the
        adapters of runs no longer named are deleted (peft's ``delete_adapter``; the last one unloads the
        LoRA layers), new ones attached by name (``load_adapter``). A run that cannot be a column is a
        ConfigError naming ``runs``, and nothing changes."""
        from lorakit.adapters.lora import load_adapter

        records = _records(runs, store)
        self._check(records)
        have = [c.name for c in self.columns if c.name != BASE]
        wanted = {r.run_id for r in records}
        with self._lock:
            for name in have:
                if name not in wanted:
                    with warnings.catch_warnings():  # 'active adapter deleted': each column sets its own
                        warnings.simplefilter("ignore", UserWarning)
                        self.model.delete_adapter(name)
            if have and not set(have) & wanted and hasattr(self.model, "unload"):
                self.model = self.model.unload()  # no adapter left: the plain base, without LoRA layers
            for rec in records:
                if rec.run_id not in have:
                    self.model = load_adapter(self.model, rec.adapter_path, adapter_name=rec.run_id)
            self.model.eval()
            self.columns = [c for c in self.columns if c.name == BASE] + [
                Column(r.run_id, column_label(r), r) for r in records]

    # --- what it holds -----------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise ConfigError({"column": f"no column {name!r}; columns: {', '.join(self.names)}"})

    def memory(self) -> PlaygroundMemory:
        """The base's bytes once and each adapter's, measured from the model's tensors (each storage once)."""
        from lorakit.memory.tensor_bytes import Ledger, module_extra_tensors, stored_tensors

        adapters = [c.name for c in self.columns if c.name != BASE]
        base, per = Ledger(), {a: Ledger() for a in adapters}
        for mod_name, module in self.model.named_modules():
            for pname, p in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
                owner = _adapter_of(f"{mod_name}.{pname}", adapters)
                (per[owner] if owner else base).add_all(stored_tensors(p))
            base.add_all(module_extra_tensors(module))
        return PlaygroundMemory(base.nbytes, {a: per[a].nbytes for a in adapters})

    def context_length(self) -> Optional[int]:
        """The most tokens the model attends to (its config's position limit), None when it has none."""
        cfg = self.loaded.model.config
        for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
            v = getattr(cfg, attr, None)
            if isinstance(v, int) and v > 0:
                return v
        return None  # T5: relative positions, no fixed limit

    # --- answering ----------------------------------------------------------------------------------

    def encode(self, prompt, max_new_tokens: int = 0) -> dict:
        """The chat-templated ``prompt`` (a user message, or a conversation: [{role, content}]) as model
        inputs; longer than the model's context (with the new tokens) is a ConfigError naming ``prompt``."""
        from lorakit.data import prompt_text

        messages = _messages(prompt)
        if self.task == "classification":
            text = messages[-1]["content"]
        elif self.loaded.family == "encoder-decoder":
            text = "\n\n".join(m["content"] for m in messages)  # T5 has no chat template: the text itself
        else:
            text = prompt_text(self.tokenizer, messages)
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=self.task == "classification"
                             or self.loaded.family == "encoder-decoder")
        n, limit = enc["input_ids"].shape[1], self.context_length()
        if limit is not None and n + max_new_tokens > limit:
            raise ConfigError({"prompt": f"the prompt is {n} tokens (chat template included) and max_new_tokens "
                                         f"{max_new_tokens} more would make {n + max_new_tokens}, over the model's "
                                         f"context of {limit} tokens; shorten the prompt or the answer"})
        from lorakit.common.devices import model_device

        return {k: v.to(model_device(self.model)) for k, v in enc.items()}

    @contextlib.contextmanager
    def _as(self, name: str):
        """The shared model answering as column ``name`` (on the generating thread)."""
        from lorakit.models.dense_4bit import dense_4bit

        self.column(name)
        with self._lock:
            if not hasattr(self.model, "disable_adapter"):  # no adapters at all: the base itself
                with dense_4bit(self.model):
                    yield
            elif name == BASE:
                with self.model.disable_adapter(), dense_4bit(self.model):
                    yield
            else:
                self.model.set_adapter(name)
                with dense_4bit(self.model):
                    yield

    def stream(self, prompt, column: str = BASE, settings: Optional[GenerationSettings] = None,
               stop: Optional[threading.Event] = None, stats: Optional[AnswerStats] = None) -> Iterator[str]:
        """Column ``column``'s answer to ``prompt``, piece by piece; ``stop.set()`` ends it within a token.
        A classifier's column yields one piece, its label probabilities as text."""
        settings = (settings or GenerationSettings()).validate()
        stats = stats if stats is not None else AnswerStats()
        self.column(column)
        if self.task == "classification":
            probs = self.classify(prompt, column)
            yield ", ".join(f"{k} {v:.3f}" for k, v in probs.items())
            return
        inputs = self.encode(prompt, settings.max_new_tokens)
        from lorakit.training.evaluation import quiet_generation

        with quiet_generation():
            yield from stream_tokens(self.model, self.tokenizer, inputs, settings, stop or threading.Event(), stats,
                                     prepare=lambda: self._as(column))

    def answer(self, prompt, column: str = BASE, settings: Optional[GenerationSettings] = None):
        """The whole answer: text for a generating model, {label: probability} for a classifier."""
        if self.task == "classification":
            return self.classify(prompt, column)
        return "".join(self.stream(prompt, column, settings)).strip()

    def classify(self, prompt, column: str = BASE) -> dict:
        """{label: probability} of column ``column``'s classifier for the text (softmax of its logits)."""
        import torch

        inputs = self.encode(prompt)
        with torch.no_grad(), self._as(column):  # no_grad first: dense_4bit works without gradients only
            logits = self.model(**inputs).logits[0]  # (num_labels,)
        probs = torch.softmax(logits.float(), -1).tolist()
        id2label = self.loaded.model.config.id2label
        return {str(id2label[i]): p for i, p in enumerate(probs)}


def _adapter_of(name: str, adapters: list) -> Optional[str]:
    """The adapter a parameter belongs to: peft names them ``…lora_A.<adapter>.weight`` and
    ``…modules_to_save.<adapter>.weight``; None for the base's own."""
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if (p.startswith("lora_") or p == "modules_to_save") and parts[i + 1] in adapters:
            return parts[i + 1]
    return None


def _messages(prompt) -> list:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ConfigError({"prompt": "the prompt is empty; type a message"})
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, (list, tuple)) and prompt and all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in prompt):
        return list(prompt)
    raise ConfigError({"prompt": "a prompt is a string or a conversation [{'role': ..., 'content': ...}, ...], "
                                 f"got {type(prompt).__name__}"})


# --- the public functions ------------------------------------------------------------------------------

def generate(prompts: Union[str, Sequence], runs: Sequence = (), base: bool = True, store=None,
             model: Optional[str] = None, quant: Optional[str] = None, device: Optional[str] = None, **settings):
    """A DataFrame of answers: a row per prompt, a column per model ('base' first, then each run id)."""
    import pandas as pd

    gen = GenerationSettings.from_kwargs(**settings)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ConfigError({"prompts": "give at least one prompt"})
    session = Session(runs, store=store, model=model, quant=quant, device=device, base=base)
    rows = [{c.name: session.answer(p, c.name, gen) for c in session.columns} for p in prompts]
    return pd.DataFrame(rows, index=pd.Index([p if isinstance(p, str) else p[-1]["content"] for p in prompts],
                                             name="prompt"), columns=session.names)


def stream(prompt, run=None, store=None, model: Optional[str] = None, quant: Optional[str] = None,
           device: Optional[str] = None, stop: Optional[threading.Event] = None, **settings) -> Iterator[str]:
    """One model's answer as text pieces while it is generated: the run's adapter, or the base when
    ``run`` is None (then ``model`` names it)."""
    gen = GenerationSettings.from_kwargs(**settings)
    session = Session([run] if run is not None else [], store=store, model=model, quant=quant, device=device,
                      base=run is None)
    if session.task != "classification":
        session.encode(prompt, gen.max_new_tokens)  # a bad prompt is refused here, not at the first piece
    return session.stream(prompt, session.columns[0].name, gen, stop)
