"""Take a run home: ``export(run, path, format=...)`` as a peft adapter, a merged transformers model, or a GGUF
file with an Ollama Modelfile, each with a README.md model card.

Everything is written into a hidden staging folder beside the destination and renamed into place at the
end, so an interrupted or failed export leaves nothing half-written (and an overwritten export is replaced
only once the new one is complete).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Optional, Union

from lorakit.exports.gguf import GGUF_FAMILIES, GGUF_TYPES, GGUFUnsupported

FORMATS = ("peft", "merged", "gguf")


class ExportError(ValueError):
    """An export refused before anything was written. ``problems`` maps argument name -> message."""

    def __init__(self, problems: dict):
        self.problems = dict(problems)
        lines = "\n".join(f"  - {k}: {v}" for k, v in self.problems.items())
        super().__init__(f"export refused ({len(self.problems)} problem(s)); nothing was written:\n{lines}")


# --- arguments ------------------------------------------------------------------------------------

def _argument_problems(path, fmt, gguf_type, overwrite) -> dict:
    p = {}
    if fmt not in FORMATS:
        p["format"] = f"format must be one of {', '.join(map(repr, FORMATS))}; got {fmt!r}"
    if gguf_type not in GGUF_TYPES:
        p["gguf_type"] = f"gguf_type must be one of {', '.join(map(repr, GGUF_TYPES))}; got {gguf_type!r}"
    if not isinstance(overwrite, bool):
        p["overwrite"] = f"overwrite must be True or False; got {overwrite!r}"
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        p["path"] = f"path must be a folder path (str or PathLike); got {path!r}"
        return p
    dest = Path(path).expanduser()
    if dest.exists() and overwrite is not True:
        p["path"] = f"{str(dest)!r} already exists; pass overwrite=True (CLI: --overwrite) to replace it"
    elif dest.exists() and not dest.is_dir():
        p["path"] = f"{str(dest)!r} is a file; an export is a folder"
    elif not dest.parent.is_dir():
        p["path"] = f"the parent folder {str(dest.parent)!r} does not exist"
    elif not os.access(dest.parent, os.W_OK):
        p["path"] = f"the folder {str(dest.parent)!r} is not writable"
    return p


def _resolve_run(run, store):
    """The RunRecord for ``run`` (a RunRecord, or a run id looked up in ``store``)."""
    from lorakit.run.record import RunRecord
    from lorakit.store import open_store
    from lorakit.store.errors import StoreError

    if isinstance(run, RunRecord):
        return run
    if not isinstance(run, str) or not run.strip():
        raise ExportError({"run": f"run must be a RunRecord or a run id (str); got {type(run).__name__}: {run!r}"})
    st, opened = open_store(store, required=True)
    try:
        return st.load(run.strip())
    except StoreError as exc:
        raise ExportError({"run": f"unknown run {run!r}: {exc}"}) from None
    finally:
        if opened:
            st.close()


def _run_problems(record, fmt: str) -> dict:
    """Why this run cannot be exported in ``fmt`` (empty: it can)."""
    cfg, rid = record.config, record.run_id
    if fmt == "gguf":  # the base decides first: no adapter makes a GPT-2 writable as GGUF
        why = _gguf_base_problem(record)
        if why:
            return {"format": why}
    if cfg.method == "full":
        if fmt == "peft":
            return {"format": f"run {rid} is full fine-tuning: it has no adapter, so format='peft' does not "
                              "apply; export format='merged' or 'gguf'"}
        if not _full_weights(record):
            why = ("it was trained with keep_weights=False" if not cfg.keep_weights
                   else f"its run folder holds no model ({record.adapter_path or 'none recorded'}; "
                        f"{record.status} run)")
            return {"run": f"run {rid} is full fine-tuning and its trained weights were not kept: {why}. "
                           "Train it again with keep_weights=True to export it"}
    elif not record.adapter_path or not (Path(record.adapter_path) / "adapter_config.json").is_file():
        where = f" (looked in {record.adapter_path})" if record.adapter_path else ""
        return {"run": f"run {rid} ({record.status}) has no saved adapter{where}: nothing to export"}
    return {}


def _full_weights(record) -> Optional[Path]:
    """A full fine-tuning run's kept model folder (its run folder, ``adapter_path``), where one was kept."""
    from lorakit.adapters.full_weights import kept

    return Path(record.adapter_path) if kept(record.adapter_path) else None


def _gguf_base_problem(record) -> str:
    """Refuse a GGUF of anything but a LLaMA-family causal LM before loading any weights."""
    from lorakit.config.families import family_of
    from lorakit.models.loading import model_dir

    task = record.task or record.config.resolved_task()
    try:
        config = _base_config(record.config.model, model_dir)
    except Exception as exc:  # noqa: BLE001 - the loader below says it in full
        return f"format='gguf': the base {record.config.model!r} could not be read ({exc})"
    arch = (getattr(config, "architectures", None) or [""])[0]
    if config.model_type != "llama" or task not in ("", "causal-lm") or family_of(config.model_type) != "decoder":
        return (f"format='gguf' cannot write run {record.run_id}'s base {record.config.model!r} "
                f"({config.model_type} {arch or ''}, task {task or '?'}); it writes {GGUF_FAMILIES}. "
                "Export format='merged' or 'peft' instead")
    return ""


def _base_config(name: str, model_dir):
    from transformers import AutoConfig

    from lorakit.config.registry import REGISTRY
    from lorakit.models.loading import builtin_config

    if name in REGISTRY:
        return builtin_config(name)
    local = model_dir(name)
    return AutoConfig.from_pretrained(str(local) if local is not None else name)


# --- staging ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def staged(dest: Path, overwrite: bool) -> Iterator[Path]:
    """A fresh hidden folder beside ``dest``; renamed to ``dest`` when the block succeeds, removed otherwise.
    An existing ``dest`` (overwrite=True) is moved aside first and removed only after the rename."""
    tag = uuid.uuid4().hex[:8]
    tmp = dest.parent / f".{dest.name}.exporting-{tag}"
    tmp.mkdir()
    old = None
    try:
        yield tmp
        if dest.exists():
            if not overwrite:  # someone wrote it meanwhile
                raise ExportError({"path": f"{str(dest)!r} appeared while exporting; pass overwrite=True"})
            old = dest.parent / f".{dest.name}.replaced-{tag}"
            os.replace(dest, old)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not dest.exists():
            os.replace(old, dest)  # put the previous export back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- the model ---------------------------------------------------------------------------------------

def _base(record):
    """(model, tokenizer) of the run's base as it trained (quantized if it was), on CPU."""
    from lorakit.data import data_labels
    from lorakit.models.loading import load_base

    cfg = record.config
    task = record.task or cfg.resolved_task()
    labels = data_labels(cfg) if task in ("", "classification") else None
    loaded = load_base(cfg.base, "cpu", labels)
    return loaded.model, loaded.tokenizer


def merged_model(record):
    """(plain transformers model with the run's adapter folded in, tokenizer); a 4-/8-bit base is dequantized."""
    from lorakit.adapters.lora import load_adapter, merge_adapter

    if record.config.method == "full":
        return _full_model(record)
    model, tok = _base(record)
    merged = merge_adapter(load_adapter(model, record.adapter_path))
    merged.config.use_cache = True  # load_model switched it off for training
    return merged, tok


def _full_model(record):
    from lorakit.adapters.full_weights import load_full

    return load_full(_full_weights(record), record.task or record.config.resolved_task())


def _generation_config(model, tokenizer):
    """Greedy decoding that stops at EOS and the end of a turn, as lorakit evaluated the run."""
    from lorakit.training.evaluation import generation_config

    gen = generation_config(tokenizer)
    gen.max_new_tokens = None  # the user's call decides; transformers' default applies otherwise
    gen.bos_token_id = tokenizer.bos_token_id
    return gen


# --- the formats -------------------------------------------------------------------------------------

def _write_peft(record, out: Path, gguf_type: str) -> Path:
    from lorakit.models.loading import model_dir
    from lorakit.store.checkpoints import FOLDER

    src = Path(record.adapter_path)
    # the adapter's own files: the run's checkpoints beside them are for resuming, not for taking home
    for f in sorted(p for p in src.rglob("*") if p.is_file() and p.relative_to(src).parts[0] != FOLDER):
        (out / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, out / f.relative_to(src))
    local = model_dir(record.config.model)
    _card(out, record, "peft", base_path=str(local) if local is not None else record.config.model)
    return out


def _write_merged(record, out: Path, gguf_type: str, model=None) -> Path:
    model, tok = model or merged_model(record)
    model.generation_config = _generation_config(model, tok)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    _card(out, record, "merged")
    return out


def _write_gguf(record, out: Path, gguf_type: str, model=None) -> Path:
    from lorakit.exports.gguf import write_gguf
    from lorakit.exports.modelfile import modelfile_text
    from lorakit.training.evaluation import stop_ids

    model, tok = model or merged_model(record)
    name = f"{_safe(record.config.name or record.run_id)}.{gguf_type}.gguf"
    write_gguf(model, tok, out / name, gguf_type, name=record.config.name or f"lorakit {record.run_id}")
    stops = [tok.convert_ids_to_tokens(i) for i in stop_ids(tok)]
    (out / "Modelfile").write_text(modelfile_text(name, tok, stops, model.config.max_position_embeddings))
    _card(out, record, "gguf", gguf_file=name, gguf_type=gguf_type)
    return out / name


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip(".-") or "model"


def _card(out: Path, record, fmt: str, **kw) -> None:
    from lorakit.exports.model_card import model_card

    (out / "README.md").write_text(model_card(record, fmt, **kw), encoding="utf-8")


_WRITERS = {"peft": _write_peft, "merged": _write_merged, "gguf": _write_gguf}


def export(run, path: Union[str, os.PathLike], format: str = "peft", *, store=None, overwrite: bool = False,
           gguf_type: str = "f16", model=None) -> Path:
    """Write run ``run`` (a RunRecord, or a run id in ``store``) to the folder ``path`` as ``format``:

    - ``"peft"``: the adapter (safetensors, peft's config, lorakit's base record) and a README.md model card;
    - ``"merged"``: a transformers model folder (safetensors, config, tokenizer with its chat template,
      generation config) with the adapter folded in; a 4-/8-bit base is dequantized first;
    - ``"gguf"``: one ``.gguf`` file (``gguf_type`` 'f16', 'bf16' or 'q8_0'), an Ollama ``Modelfile`` and
      the card; LLaMA-family decoders only.

    Returns the folder (the ``.gguf`` file for format='gguf'). ``model``: an already merged
    ``(model, tokenizer)`` to write instead of rebuilding it from the run (merged and gguf only).
    Bad arguments raise :class:`ExportError` naming each, before anything is written; a failure while
    writing leaves nothing behind (and an overwritten export untouched).
    """
    problems = _argument_problems(path, format, gguf_type, overwrite)
    if problems:
        raise ExportError(problems)
    record = _resolve_run(run, store)
    problems = _run_problems(record, format)
    if problems:
        raise ExportError(problems)
    dest = Path(path).expanduser().absolute()
    extra = {"model": model} if model is not None and format != "peft" else {}
    try:
        with staged(dest, overwrite) as tmp:
            written = _WRITERS[format](record, tmp, gguf_type, **extra)
    except GGUFUnsupported as exc:
        raise ExportError({"format": str(exc)}) from None
    return dest / written.relative_to(tmp)
