"""The Studio's form: the RunConfig values the panels edit, and what is wrong with them.

Pure state, no threads and no widgets: ``StudioController`` keeps one ``Form`` and adds what only
it knows (a model that failed to load, a dataset that does not fit) to ``Form.problems``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from lorakit.config import ConfigError, RunConfig, positive_int, recommend, targets

# The RunConfig fields the Studio's panels edit (everything else keeps RunConfig's default).
FORM_FIELDS = (
    "model", "method", "quant", "double_quant", "dtype", "optimizer", "rank", "alpha", "dropout",
    "use_dora", "use_rslora", "init", "loftq_iter", "loraplus_lr_ratio", "target_modules", "dataset",
    "train_examples", "eval_examples", "max_steps", "batch_size", "seq_len",
    "learning_rate",
)
# The values the data depends on: changing any of them makes a preview or a data check stale.
DATA_FIELDS = ("model", "dataset", "seq_len", "train_examples", "eval_examples")
# The ranks the Studio's rank slider offers; a rank set from code outside them (Studio(rank=12)) is
# valid LoRA and becomes one extra stop on the slider rather than a refusal.
RANKS = tuple(2 ** i for i in range(9))  # 1 … 256


@dataclass
class ModelSummary:
    """What the panels need from a loaded model (the weights themselves are not kept)."""
    name: str
    num_params: int
    num_layers: int
    architecture: str
    load_s: float
    groups: list  # [lorakit.adapters.lora.LinearGroup]
    tokenizer: Any = None
    task: str = "causal-lm"  # what it loaded for (lorakit.config.families.TASKS): the data it can train on

    @property
    def group_names(self) -> list:
        return [g.name for g in self.groups]


class Form:
    """The panels' values, plus RunConfig fields given from code (``extra``: kept, not shown)."""

    def __init__(self, **values):
        unknown = set(values) - {f.name for f in dataclasses.fields(RunConfig)}
        if unknown:
            raise TypeError(f"unknown RunConfig field(s): {', '.join(sorted(unknown))}")
        self.values: dict = {f: getattr(RunConfig(), f) for f in FORM_FIELDS}
        self.values.update({k: plain(v) for k, v in values.items() if k in FORM_FIELDS})
        self.extra: dict = {k: v for k, v in values.items() if k not in FORM_FIELDS}
        # the fields that follow the model's recommended values until the user sets them
        given = {k for k, v in values.items() if v not in (None, "")}
        self.recommended: set = set(recommend.RECOMMENDED_FIELDS) - given
        self.values.update(self.follow({}))
        self._built: tuple = (None, None)  # (the values' key, their RunConfig or the exception building it)

    def follow(self, changes: dict) -> dict:
        """The recommended values the form's fields take after ``changes`` (widget values): a field the
        user sets stops following; the others take the model's (method's, quant's) recommendation."""
        self.recommended -= set(changes)
        basis = {**self.kwargs(), **changes}
        if "model" in changes and "dataset" not in changes and recommend.data_kind_problem(
                basis.get("dataset"), basis.get("model"), basis.get("task", "")):
            self.recommended.add("dataset")  # a task the new model cannot train: it follows the model again
        # the steps follow the task: the one chosen, or (when the task follows the model too) the recommended one
        data = "" if "dataset" in self.recommended else basis.get("dataset", "")
        rec = recommend.recommended(basis.get("model"), basis.get("method"), basis.get("quant"),
                                    basis.get("task", ""), data)
        return {k: rec[k] for k in self.recommended if k in self.values and self.values[k] != rec[k]}

    def recommended_note(self) -> str:
        """'steps, batch size, learning rate: recommended for minilm-l6 (LoRA)' (', on sort-words' where the
        steps follow the task), or '' when none follow."""
        names = {"max_steps": "steps", "batch_size": "batch size", "learning_rate": "learning rate",
                 "dataset": "task"}
        shown = [label for k, label in names.items() if k in self.recommended and k in self.values]
        if not shown:
            return ""
        v = self.values
        kind = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tuning"}[recommend.method_kind(v["method"],
                                                                                                  v["quant"])]
        follows_task = self.recommended & {"max_steps", "learning_rate"} and v["dataset"] in recommend.TASK_STEPS
        on = f" on {v['dataset']}" if follows_task else ""
        return f"{', '.join(shown)}: recommended for {v['model']} ({kind}){on}"

    def changed(self, changes: dict) -> dict:
        """The ``changes`` (widget values) that differ from the form, as RunConfig values; not applied."""
        unknown = set(changes) - set(FORM_FIELDS)
        if unknown:
            raise TypeError(f"not a Studio field: {', '.join(sorted(unknown))}")
        changes = {k: plain(v) for k, v in changes.items()}
        return {k: v for k, v in changes.items() if self.values.get(k) != v}

    def kwargs(self) -> dict:
        """RunConfig keyword arguments: the extra fields overridden by the form's."""
        return {**self.extra, **self.values}

    def data_key(self) -> tuple:
        """The values a data preview or check describes; a different key means it is stale. The fields
        given from code count too (the seed picks the examples, ``data_encoding`` reads a file)."""
        return (*(self.values[k] for k in DATA_FIELDS), *sorted((k, repr(v)) for k, v in self.extra.items()))

    def config(self) -> RunConfig:
        """The RunConfig of the form's values, built (and validated) once per set of values: a slider move
        validates once, however many jobs (plan, fit verdict) ask. Raises what building it raised."""
        kwargs = self.kwargs()
        key = tuple(sorted((k, type(v).__name__, repr(v)) for k, v in kwargs.items()))
        built_key, built = self._built
        if built_key != key:
            try:
                built = RunConfig(**kwargs)
            except (ConfigError, TypeError, ValueError) as exc:
                built = exc
            self._built = (key, built)  # one assignment: a job on another thread sees the old pair or the new
        if isinstance(built, Exception):
            raise built
        return built

    def problems(self, model: Optional[ModelSummary] = None) -> dict:
        """Field -> message: RunConfig's validation, and the target modules against ``model``'s linear
        layers when it is the form's model (RunConfig alone knows only the built-in LLaMA names)."""
        problems: dict = {}
        try:
            self.config()
        except ConfigError as exc:
            problems.update(exc.problems)
        except (TypeError, ValueError) as exc:
            problems["form"] = str(exc)
        v = self.values
        if "dataset" in problems and (hint := form_hint(v["dataset"], v["model"], self.extra.get("task", ""))):
            problems["dataset"] = hint
        if (model is not None and model.name == v["model"] and v["method"] == "lora"
                and "target_modules" not in problems):
            try:
                targets.resolve(v["target_modules"], model.group_names)
            except ConfigError as exc:
                problems.update(exc.problems)
        return problems

    def data_config(self) -> Optional[RunConfig]:
        """A RunConfig of the form's data values and the fields given from code (``seed``,
        ``data_encoding``...), the rest default; None while one of them is invalid: the data can be
        checked while another field, say the rank, still needs fixing."""
        try:
            return RunConfig(**{**self.extra, **{k: self.values[k] for k in DATA_FIELDS}})
        except (ConfigError, TypeError, ValueError):
            return None

    def trainable(self, model: Optional[ModelSummary]) -> Optional[tuple]:
        """(trainable, total, percent) for the form's choices, or None until ``model`` is the form's."""
        v = self.values
        if model is None or model.name != v["model"]:
            return None
        if v["method"] == "full":
            return model.num_params, model.num_params, 100.0
        chosen = selected_targets(v["target_modules"], model.group_names)
        rank = v["rank"] if positive_int(v["rank"]) else 0
        dora = v["use_dora"] is True
        lora = sum(g.lora_params(rank, dora) for g in model.groups if g.name in chosen)
        total = model.num_params + lora
        return lora, total, (100.0 * lora / total if total else 0.0)


def form_hint(dataset, model, task="") -> str:
    """A built-in task of the wrong kind for ``model``, said as what to pick in the form ("" otherwise):
    RunConfig's message speaks to code ("leave dataset unset")."""
    if not recommend.data_kind_problem(dataset, model, task):
        return ""
    trains = recommend.run_task(model, task)
    fits = [n for n, k in recommend.TASK_KINDS.items() if (k == "classification") == (trains == "classification")]
    kind = "classification" if trains == "classification" else "prompt → answer"
    columns = "'text' and 'label'" if trains == "classification" else "'prompt' and 'completion'"
    return (f"{model} trains for {trains}, and {dataset!r} is a {recommend.TASK_KINDS[dataset]} task: pick a "
            f"{kind} task in the list above, e.g. {fits[0]} ({', '.join(fits)}), or a file with {columns} columns")


def selected_targets(value, names) -> list:
    """The layers ``value`` (a preset, a layer name or a sequence of names) selects among ``names``; none
    while it is something else (set from code: the target_modules message says what is wrong)."""
    if isinstance(value, str) or (isinstance(value, (tuple, list)) and all(isinstance(n, str) for n in value)):
        return targets.expand(value, names)
    return []


def plain(value):
    """Widget values to RunConfig values: lists become tuples, numpy scalars Python numbers."""
    if isinstance(value, list):
        return tuple(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value
