"""The README.md model card written beside every export: base, data, settings, metrics, memory, how to load."""
from __future__ import annotations

from lorakit.common.display import fmt_bytes

_HOW = {
    "peft": """```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{base_path}")  # the base below, as transformers loads it
model = PeftModel.from_pretrained(base, "path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("{base_path}")
```
Or with lorakit: `lorakit.adapters.lora.load_adapter(lorakit.load_model("{base}").model, "path/to/this/folder")`.""",
    "merged": """```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
```
No lorakit or peft needed: the adapter is folded into the weights.""",
    "gguf": """```bash
ollama create my-model -f Modelfile && ollama run my-model   # Ollama
llama-cli -m {gguf_file} -cnv                                  # llama.cpp
```
```python
from transformers import AutoModelForCausalLM  # transformers reads it back too
model = AutoModelForCausalLM.from_pretrained("path/to/this/folder", gguf_file="{gguf_file}")
```""",
}


def _num(v, fmt="{:.4g}") -> str:
    return "-" if v is None else fmt.format(v)


def _settings(cfg) -> list[str]:
    targets = cfg.target_modules if isinstance(cfg.target_modules, str) else ", ".join(cfg.target_modules)
    rows = [("method", cfg.method), ("quantization", cfg.quant), ("compute dtype", cfg.dtype)]
    if cfg.method == "lora":
        rows += [("rank / alpha / dropout", f"{cfg.rank} / {cfg.alpha:g} / {cfg.dropout:g}"),
                 ("target modules", targets)]
    rows += [("steps x batch x seq_len", f"{cfg.max_steps} x {cfg.batch_size} x {cfg.seq_len}"),
             ("learning rate", f"{cfg.learning_rate:g}"), ("optimizer", cfg.optimizer), ("seed", str(cfg.seed))]
    return [f"| {k} | {v} |" for k, v in rows]


def _memory(record) -> list[str]:
    if record.memory is None:
        return ["Not measured."]
    d = record.memory.as_dict()
    return ["| category | bytes |", "|---|---|"] + [
        f"| {k.replace('_', ' ')} | {fmt_bytes(d[k])} |"
        for k in ("base_weights", "adapters", "gradients", "optimizer", "activations") if d.get(k) is not None
    ] + [f"| **total** | {fmt_bytes(record.memory.total)} |"]


def _how(cfg, fmt: str, base_path: str, gguf_file: str) -> str:
    how = _HOW[fmt].format(base=cfg.model, base_path=base_path or cfg.model, gguf_file=gguf_file)
    if cfg.method == "full":  # no adapter was folded in: every weight trained
        how = how.replace("the adapter is folded into the weights", "full fine-tuning trained every weight")
    return how


def model_card(record, fmt: str, *, base_path: str = "", gguf_file: str = "", gguf_type: str = "") -> str:
    """Markdown for an export of ``record`` in format ``fmt`` ('peft', 'merged' or 'gguf')."""
    cfg = record.config
    data = record.data_stats or {}
    dequantized = cfg.quant != "none" and fmt in ("merged", "gguf")
    lines = [f"# {cfg.name or record.run_id}: {cfg.model} fine-tuned with lorakit", "",
             f"Exported by lorakit as **{fmt}**" + (f" ({gguf_type.upper()})" if gguf_type else "")
             + f" from run `{record.run_id}` (status: {record.status}).", ""]
    if dequantized:
        lines += [f"The base was loaded in {cfg.quant}; it was **dequantized** to {cfg.dtype} and the adapter "
                  "folded in, so this model's weights are not quantized the way it was trained.", ""]
    lines += ["## Base", f"`{cfg.model}` ({record.total_params:,} parameters; task: {record.task or 'causal-lm'}).", "",
              "## Data", f"Dataset `{cfg.dataset}`: {data.get('n_train', '?')} training and "
              f"{data.get('n_eval', '?')} held-out examples.", "",
              "## Settings", "| setting | value |", "|---|---|", *_settings(cfg), "",
              "## Metrics", "| | before | after |", "|---|---|---|",
              f"| {record.metric or 'task metric'} | {_num(record.task_metric_before)} | {_num(record.task_metric)} |",
              f"| train loss (last 10 steps) | | {_num(record.train_loss)} |",
              f"| eval loss | | {_num(record.eval_loss)} |", "",
              f"Trainable parameters: {record.trainable_params:,} ({record.trainable_pct:.3g} %).", "",
              "## Memory (measured after the first optimizer step)", *_memory(record), "",
              "## How to load it", _how(cfg, fmt, base_path, gguf_file), ""]
    return "\n".join(lines)
