"""RunConfig: everything one training run needs, validated on construction.

Validation collects every problem at once and names the field (like peft's
``LoraConfig.__post_init__``), so a user fixes a form in one pass instead of one error at a time.
Nothing is loaded before a config validates.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Optional, Union

from lorakit.common.errors import ConfigError
from lorakit.config import dataset_object, families, parts, recommend, targets
from lorakit.config.registry import REGISTRY

METHODS = ("lora", "full")
QUANTS = ("none", "int8", "nf4", "fp4")
DTYPES = ("float32", "bfloat16", "float16")
DTYPE_CHOICES = ("auto", *DTYPES)  # auto: resolved per machine when a run starts (lorakit.models.compute_dtype)
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")
ON_BAD_ROWS = ("error", "skip")
INITS = ("default", "gaussian", "pissa", "olora", "loftq")


@dataclass(frozen=True)
class RunConfig:
    """One fine-tuning run: model, method, quantization, LoRA shape, data and training loop."""

    model: str = "smollm2-135m"
    """Built-in model name (see ``lorakit.list_models()``), a hub id or a local directory."""
    task: str = ""
    """'causal-lm', 'classification' or 'seq2seq'; '' (default): the model's own (a BERT classifies)."""
    method: str = "lora"
    """'lora' (train adapters A, B; base frozen) or 'full' (train every weight; the baseline)."""
    quant: str = "none"
    """Base-weight storage: 'none' (dtype), 'int8' (LLM.int8), 'nf4' or 'fp4' (4-bit, QLoRA)."""
    double_quant: bool = True
    """4-bit only: also quantize the per-block absmax constants (QLoRA's double quantization)."""
    dtype: str = "float32"
    """Weights' and 4-bit compute dtype: float32, bfloat16, float16, or 'auto' (bf16 where measured fast)."""
    rank: int = 8
    """LoRA rank r: A is r x d_in, B is d_out x r."""
    adapter_dtype: str = "float32"
    """Dtype of the adapters A and B: float32 (peft's default) or bfloat16 / float16 (the QLoRA paper's 16-bit)."""
    alpha: float = 16
    """LoRA alpha; the update BA is scaled by alpha / rank."""
    dropout: float = 0.05
    """Dropout on the LoRA branch input, in [0, 1)."""
    target_modules: Union[tuple, str] = "qv"
    """Layer names to adapt, or a preset meaning each family's own names: 'qv', 'attention', 'mlp', 'all-linear'."""
    use_dora: bool = False
    """DoRA: split each adapted weight into a trained magnitude (one per output row) and a LoRA-updated direction."""
    use_rslora: bool = False
    """rsLoRA: scale the update BA by alpha / sqrt(rank) instead of alpha / rank."""
    init: str = "default"
    """Adapter init: 'default' (B=0), 'gaussian', 'pissa' / 'olora' (from W; change the base), 'loftq' (4-bit)."""
    loftq_iter: int = 1
    """LoftQ only: alternating quantize / SVD steps (1: the base stays quant(W); more requantize it)."""
    loraplus_lr_ratio: float = 0.0
    """LoRA+: B (and DoRA's magnitude) learns at learning_rate x this ratio; 0 turns LoRA+ off."""
    optimizer: str = "adamw"
    """'adamw' (torch's fused AdamW, state in the weights' dtype), 'adamw_8bit' or 'paged_adamw_8bit' (uint8 state)."""
    dataset: str = ""
    """Built-in task, a .jsonl/.json/.csv/.parquet file, a save_to_disk folder, a datasets.Dataset or a hub id;
    '' (default): the task recommended for the model."""
    data_encoding: str = "utf-8"
    """Text encoding of a .jsonl/.json/.csv dataset file, e.g. 'utf-8' (default), 'cp1252', 'latin-1'."""
    on_bad_rows: str = "error"
    """A dataset file's invalid rows: 'error' (stop, naming the first) or 'skip' (leave out, counted)."""
    train_examples: int = 512
    """Number of training examples (built-in tasks generate this many; files are capped at it)."""
    eval_examples: int = 16
    """Held-out examples for eval loss and the task metric (16 keeps evaluation under a fifth of training)."""
    max_steps: Optional[int] = None
    """Optimizer steps to train; None: recommended for the task (30; a classifier 40; sort-words, arithmetic 100)."""
    batch_size: Optional[int] = None
    """Examples per step; None: recommended for the model's task (4; a classifier 8)."""
    seq_len: int = 128
    """Maximum tokens per example; longer examples are truncated (and counted)."""
    learning_rate: Optional[float] = None
    """Peak learning rate (linear decay after warmup); None: recommended for the model, task and method."""
    warmup_steps: int = 0
    """Linear warmup steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward instead of storing them (less memory, more time)."""
    bf16_autocast: bool = False
    """Run forward/backward under bfloat16 autocast (transformers' bf16=True)."""
    labelled_head: bool = True
    """Causal LMs: apply the output head and cross-entropy only where labels are set (same loss, faster)."""
    measure_memory: bool = True
    """Measure memory at the first two steps and the plan's peak step (CPU: torch's profiler); False: the plan only."""
    eval_every: int = 0
    """Evaluate every N steps (0: only at the end)."""
    seed: int = 0
    """Seed for data generation, adapter init and data order: same seed, same loss curve."""
    checkpoint_every: int = 10
    """Save a resumable checkpoint every N steps, at the end and when stopped (0: none; needs a store)."""
    checkpoint_keep: int = 2
    """Checkpoints kept per run (the newest); older ones are deleted as new ones are saved."""
    keep_weights: bool = True
    """Full fine-tuning: keep the trained model in the run's folder (merged/GGUF export needs it; it is large)."""
    name: str = ""
    """Optional label shown in tables and charts."""
    report_to: tuple = ()
    """Experiment trackers that also receive the run: 'mlflow', 'tensorboard' (pip install 'lorakit[track]')."""
    mlflow_uri: str = ""
    """MLflow tracking URI for report_to='mlflow'; '': $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here."""
    tensorboard_dir: str = ""
    """Folder for report_to='tensorboard' event files, one subfolder per run; '': ./tensorboard."""

    def __post_init__(self) -> None:
        tm = self.target_modules
        if isinstance(tm, (list, tuple)):
            object.__setattr__(self, "target_modules", tuple(str(t) for t in tm))
        if isinstance(self.report_to, (list, tuple)):
            object.__setattr__(self, "report_to", tuple(self.report_to))
        elif isinstance(self.report_to, str):  # report_to="mlflow": one tracker; "": none
            object.__setattr__(self, "report_to", (self.report_to,) if self.report_to else ())
        if dataset_object.is_hf_dataset(self.dataset):  # a stored config holds a path: saved once, by fingerprint
            object.__setattr__(self, "dataset", dataset_object.persist(self.dataset))
        self._fill_recommended()
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def _fill_recommended(self) -> None:
        """Give each field left unset (None, or '' for the dataset) its recommended value for this model,
        task and method (``lorakit.config.recommend``), and remember which ones: ``replace(model=...)`` chooses them
        again for the new model, while values the user gave always win."""
        unset = [name for name in recommend.RECOMMENDED_FIELDS if getattr(self, name) in (None, "")]
        if unset:
            values = recommend.recommended(self.model, self.method, self.quant, self.task, self.dataset)
            for name in unset:
                object.__setattr__(self, name, values[name])
        object.__setattr__(self, "_recommended", frozenset(unset))

    @property
    def recommended_fields(self) -> frozenset:
        """The fields that took their recommended value because the user left them unset."""
        return self.__dict__.get("_recommended", frozenset())

    def problems(self) -> dict[str, str]:
        """Every invalid field with a message naming what is allowed (empty when valid)."""
        p = field_problems({f.name: getattr(self, f.name) for f in fields(self)})
        if not isinstance(self.model, str) or not self.model.strip():
            p["model"] = "model must be a built-in name, a hub id or a local directory"
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            p["dataset"] = ("dataset must be a built-in task name, a file path, a save_to_disk folder, a "
                            "datasets.Dataset or a hub dataset")
        if tm_problem := targets.problem(self.target_modules, self.model, self.method):
            p["target_modules"] = tm_problem
        if problem := task_problem(self.task, self.model):
            p["task"] = problem
        elif problem := recommend.data_kind_problem(self.dataset, self.model, self.task):
            p["dataset"] = problem
        if problem := not_one_of("on_bad_rows", self.on_bad_rows, ON_BAD_ROWS):
            p["on_bad_rows"] = problem
        for name, problem in variant_problems(self).items():
            p.setdefault(name, problem)
        p.update(report_problems(self.report_to, self.mlflow_uri, self.tensorboard_dir))
        if not _is_text_encoding(self.data_encoding):
            p["data_encoding"] = ("data_encoding must be a text encoding such as 'utf-8', 'cp1252' or "
                                  f"'latin-1'; got {self.data_encoding!r}")
        return p

    def resolved_targets(self) -> Union[tuple, str]:
        """Target modules with a preset expanded to the model's family's names ('all-linear' stays peft's
        shorthand; a model not built in is taken as LLaMA-named until it is loaded)."""
        tm = self.target_modules
        if not isinstance(tm, str):
            return tm
        if tm not in targets.PRESETS:
            return (tm,)
        return targets.preset_names(tm, targets.known_layers(self.model) or targets.LLAMA_LINEARS)

    def resolved_task(self, model_type: str = "") -> str:
        """The task this run trains for: ``task``, else the default of ``model_type`` (a loaded model's
        ``config.model_type``) or of the built-in model's architecture; '' when neither is known yet."""
        if self.task:
            return self.task
        model_type = model_type or builtin_model_type(self.model)
        return families.default_task(model_type) if model_type else ""

    @property
    def settings(self) -> parts.Settings:
        """This run's typed parts (``lorakit.config.parts``: base, adapter, step shape), built once (the config
        is validated and frozen)."""
        if "_settings" not in self.__dict__:
            object.__setattr__(self, "_settings", parts.split(self.__dict__))
        return self.__dict__["_settings"]

    @property
    def base(self) -> parts.Base:
        """The base part: model, task, quant, double_quant, dtype (``four_bit``)."""
        return self.settings.base

    @property
    def adapter(self) -> parts.Adapter:
        """The adapter part: method, rank, alpha, dropout, target_modules, the variant fields, adapter_dtype."""
        return self.settings.adapter

    @property
    def shape(self) -> parts.Shape:
        """The step-shape part: batch_size, seq_len, gradient_checkpointing, optimizer, labelled_head."""
        return self.settings.shape

    @property
    def label(self) -> str:
        """A short human label: the name, or method/quant/rank."""
        if self.name:
            return self.name
        if self.method == "full":
            return "full"
        kind = "qlora" if self.base.four_bit else "lora"
        q = "" if self.quant == "none" else f"-{self.quant}"
        v = variant_name(self)
        return f"{kind}{q}-r{self.rank}" + ("" if v == "lora" else f"-{v}")

    def to_dict(self) -> dict:
        d = asdict(self)
        if isinstance(d["target_modules"], tuple):
            d["target_modules"] = list(d["target_modules"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        if not hasattr(d, "items"):
            raise ConfigError({"config": f"from_dict needs a mapping of field names to values, got {d!r}"})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes``; the fields that were recommended are recommended again (for the new
        model or method), the others keep their values."""
        unset = {name: None for name in self.recommended_fields if name not in changes}
        return replace(self, **unset, **changes)


_BOOL_FIELDS = tuple(f.name for f in fields(RunConfig) if f.type in ("bool", bool))


def not_one_of(name: str, value, allowed) -> str:
    """The message for ``value`` outside ``allowed`` (naming the field and the choices), else ""."""
    return "" if value in allowed else f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}"


_CHOICES = {"init": INITS, "method": METHODS, "quant": QUANTS, "dtype": DTYPE_CHOICES, "adapter_dtype": DTYPES,
            "optimizer": OPTIMIZERS}
_AT_LEAST = {"rank": 1, "max_steps": 1, "batch_size": 1, "seq_len": 1, "train_examples": 1, "eval_examples": 1,
             "warmup_steps": 0, "eval_every": 0, "seed": 0, "checkpoint_every": 0, "checkpoint_keep": 1,
             "loftq_iter": 1}
# and at most: a C int, which the Trainer, numpy's seeding and the planner's step arithmetic all hold (numpy refuses
# a seed from 2**32 on; a max_steps of 10**40 would be planned and trained for ever)
AT_MOST = 2**31 - 1


def field_problems(values: dict) -> dict[str, str]:
    """The problems of those ``values`` (field name -> value) that are RunConfig fields, each naming
    its field; shared by ``RunConfig`` and ``plan_memory`` so both say the same thing."""
    p: dict[str, str] = {}
    for name, allowed in _CHOICES.items():
        if name in values and (problem := not_one_of(name, values[name], allowed)):
            p[name] = problem
    for name, lo in _AT_LEAST.items():
        value = values.get(name, lo)
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            p[name] = f"{name} must be an integer >= {lo}, got {value!r}"
        elif value > AT_MOST:
            p[name] = f"{name} must be an integer <= {AT_MOST:,}, got {value!r}"
    for name in _BOOL_FIELDS:  # 'no' or 0 would be truthy/falsy by accident further down
        if name in values and not isinstance(values[name], bool):
            p[name] = f"{name} must be True or False, got {values[name]!r}"
    for name, ok, rule in _NUMBERS:
        if name in values and not (_is_number(values[name]) and ok(values[name])):
            p[name] = f"{name} must be {rule}, got {values[name]!r}"
    quant = values.get("quant", "none")
    if values.get("method") == "full" and quant in QUANTS and quant != "none":
        p["method"] = (
            f"full fine-tuning needs an unquantized base (quant='none'); quant={quant!r} "
            "stores frozen weights that cannot be trained. Use method='lora' (QLoRA) instead"
        )
    return p


_NUMBERS = (
    ("alpha", lambda v: v > 0, "a number > 0"),
    ("dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("learning_rate", lambda v: v > 0, "a number > 0"),
    ("weight_decay", lambda v: v >= 0, "a number >= 0"),
    ("loraplus_lr_ratio", lambda v: v == 0 or v >= 1, "0 (off) or a number >= 1 (B's lr / A's lr)"),
)


# peft's olora_init factors the stored weight as if it were (d_out, d_in); GPT-2's Conv1D stores (d_in, d_out)
OLORA_CONV1D = ("init='olora' cannot adapt GPT-2's Conv1D layers (c_attn, c_proj, c_fc): peft's OLoRA ignores their "
                "transposed (d_in, d_out) layout; use init='pissa' or 'default' on this model")


def variant_problems(cfg: RunConfig) -> dict[str, str]:
    """Combinations of the adapter-variant fields peft cannot do or lorakit cannot measure, each
    message naming the fields involved."""
    p: dict[str, str] = {}
    variant = cfg.use_dora or cfg.use_rslora or cfg.init != "default" or cfg.loraplus_lr_ratio not in (0, 0.0)
    if cfg.method == "full" and variant:
        p["method"] = ("use_dora, use_rslora, init and loraplus_lr_ratio shape LoRA adapters; "
                       "method='full' has none (set method='lora' or leave them at their defaults)")
        return p
    if cfg.init == "loftq" and not parts.four_bit(cfg.quant):
        p["init"] = (f"init='loftq' fits the adapters to a 4-bit base's quantization error: it needs "
                     f"quant='nf4' or 'fp4', got quant={cfg.quant!r}")
    if cfg.init in ("pissa", "olora") and cfg.quant != "none":
        p["init"] = (f"init={cfg.init!r} rewrites the base weights (W - BA), which a quantized base "
                     f"(quant={cfg.quant!r}) cannot hold exactly; use quant='none' or init='loftq'")
    if cfg.init == "olora" and builtin_model_type(cfg.model) == "gpt2":
        p["init"] = OLORA_CONV1D
    if cfg.use_dora is True and cfg.quant == "int8":
        p["use_dora"] = ("use_dora=True with quant='int8' fails in bitsandbytes' 8-bit layer (its scales are gone "
                         "when DoRA dequantizes the weight); use quant='nf4' or 'fp4' (QDoRA) or 'none'")
    if cfg.loftq_iter != 1 and cfg.init != "loftq" and isinstance(cfg.loftq_iter, int):
        p["loftq_iter"] = f"loftq_iter applies only with init='loftq' (got init={cfg.init!r}); leave it at 1"
    return p


TRACKERS = ("mlflow", "tensorboard")


def report_problems(report_to, mlflow_uri, tensorboard_dir) -> dict[str, str]:
    """The tracker fields' problems, each naming its field; whether a tracker's library is installed is
    checked when a run starts (a stored run stays readable where it is not)."""
    p = {}
    unknown = [t for t in report_to if t not in TRACKERS] if isinstance(report_to, tuple) else [report_to]
    if unknown:
        p["report_to"] = (f"report_to must be a list of {', '.join(map(repr, TRACKERS))} (or empty); got "
                          f"{', '.join(map(repr, unknown))}")
    for name, value in (("mlflow_uri", mlflow_uri), ("tensorboard_dir", tensorboard_dir)):
        if not isinstance(value, str):
            p[name] = f"{name} must be text ('' for the default), got {value!r}"
    return p


def builtin_model_type(model) -> str:
    """The ``model_type`` of a built-in model's config ('' for a hub id or a local directory: known once loaded)."""
    info = REGISTRY.get(model) if isinstance(model, str) else None
    return info.config.get("model_type", "") if info is not None else ""


def task_problem(task, model) -> str:
    """Why ``task`` cannot train ``model`` ("" when it can). A hub or local model's type is known only
    once loaded (``models.load_model`` checks it then), so here the task name alone is checked."""
    if not isinstance(task, str):
        return f"task must be one of {', '.join(map(repr, families.TASKS))} or '' (from the model); got {task!r}"
    model_type = builtin_model_type(model)
    if not model_type and task not in ("", *families.TASKS):
        return families.task_problem(task, "")
    return families.task_problem(task, model_type)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def field_docs(cls=RunConfig) -> dict[str, str]:
    """Each field's one-line docstring (the string literal under it), for CLI help and widget tooltips."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def _is_text_encoding(name) -> bool:
    """Whether ``name`` decodes bytes to text ('rot13' and 'hex' are codecs too, but not text encodings)."""
    import codecs

    try:
        return bool(getattr(codecs.lookup(name), "_is_text_encoding", True))
    except (LookupError, TypeError, ValueError):
        return False


def variant_name(cfg) -> str:
    """The comparison table's short name: 'lora', 'dora', 'rslora', 'pissa', 'olora', 'loftq',
    'gaussian', 'lora+' or several joined by ',' (e.g. 'pissa,dora'); 'full' for full fine-tuning.
    ``cfg``: a RunConfig or its dict."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    if get("method", "lora") == "full":
        return "full"
    parts = []
    if get("init", "default") not in ("default", None):
        parts.append(str(get("init")))
    if get("use_dora", False):
        parts.append("dora")
    if get("use_rslora", False):
        parts.append("rslora")
    if get("loraplus_lr_ratio", 0):
        parts.append("lora+")
    return ",".join(parts) or "lora"
