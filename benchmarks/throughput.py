"""Training throughput: lorakit.train against plain transformers Trainer + peft, same process, same data.

    python benchmarks/throughput.py [--model smollm2-135m] [--steps 20] [--repeats 2]
    python benchmarks/throughput.py --random-weights      # a GPU machine without the model's package

Prints one table: real (non-padding) tokens/s of each, their ratio, lorakit's model FLOP/s as a
fraction of this machine's measured matmul ceiling (fp32 and bf16), the time from calling
train() to the first logged loss (model cached), and the same run under bf16 autocast.
The plain baseline is written the way the peft docs show: get_peft_model + Trainer with a
dynamic-padding collator; it gets the very same tokenized examples lorakit builds.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch


def matmul_ceiling(dtype: torch.dtype, n: int = 2048, reps: int = 10, device: str = "cpu") -> float:
    """Measured GFLOP/s of an n x n matmul: the ceiling a training step is measured against."""
    if device == "cuda":
        n, reps = 8192, 20
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def flops_per_token(model_name: str, method: str, seq_len: int) -> float:
    """~(2 forward + 2 input-grad [+ 2 weight-grad for full]) x matmul params, plus attention scores."""
    from lorakit.models import builtin_config

    c = builtin_config(model_name)
    head_dim = c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads * head_dim
    per_layer = c.hidden_size * (2 * c.hidden_size + 2 * kv) + 3 * c.hidden_size * c.intermediate_size
    matmul_params = c.num_hidden_layers * per_layer + c.hidden_size * c.vocab_size  # + lm_head
    mult = 6 if method == "full" else 4  # LoRA: frozen weights need no weight gradient
    attn = c.num_hidden_layers * 2 * 2 * seq_len * c.hidden_size * (mult / 2)  # QK^T and AV
    return mult * matmul_params + attn


def plain_trainer(cfg, bundle_cache: dict, device: str = "cpu") -> dict:
    """The baseline: peft + Trainer as in the peft docs, dynamic padding, no lorakit in the loop."""
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from lorakit.data import build_data
    from lorakit.models import model_dir

    path = str(model_dir(cfg.model) or cfg.model)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config.use_cache = False
    set_seed(cfg.seed)
    model = get_peft_model(model, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                             target_modules=list(cfg.target_modules), task_type="CAUSAL_LM"))
    if "bundle" not in bundle_cache:
        bundle_cache["bundle"] = build_data(cfg, tok)
    data = bundle_cache["bundle"]

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.t1 = time.perf_counter()

    clock = Clock()
    args = TrainingArguments(output_dir="/tmp/lorakit-bench-plain", max_steps=cfg.max_steps,
                             per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                             logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                             seed=cfg.seed, use_cpu=device == "cpu", include_num_input_tokens_seen="non_padding",
                             remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=data.train,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
                      callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # same as lorakit: no per-step printing
    trainer.train()
    tokens = trainer.state.num_input_tokens_seen
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return dict(tokens_per_s=tokens / (clock.t1 - clock.t0), final_loss=losses[-1])


def lorakit_run(cfg) -> dict:
    import lorakit

    rec = lorakit.train(cfg, store=False)
    assert rec.status == "finished", rec.reason
    return dict(tokens_per_s=rec.tokens_per_s, final_loss=rec.history[-1]["loss"],
                first_loss_s=rec.time_to_first_loss_s, train_loss=rec.train_loss)


def main() -> None:
    import lorakit
    from lorakit.logging_setup import quiet_libraries

    quiet_libraries()
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--random-weights", action="store_true",
                   help="the model's config with random weights and tiny-llama's tokenizer (no model package)")
    ns = p.parse_args()
    from lorakit.models import default_device

    device = default_device()
    source = ns.model
    if ns.random_weights:
        import tempfile
        from pathlib import Path

        from memory_accuracy import random_weights_dir  # the sibling benchmark

        source = random_weights_dir(ns.model, Path(tempfile.mkdtemp(prefix="lorakit-tp-")), device)

    # eval_examples=1: the benchmark is about the training loop, not generation
    cfg = lorakit.RunConfig(model=source, max_steps=ns.steps, batch_size=ns.batch_size, seq_len=ns.seq_len,
                            eval_examples=1, train_examples=max(64, ns.steps * ns.batch_size), dropout=0.05)
    lorakit.load_model(source)  # make sure the cache exists: time-to-first-loss is for a cached model
    gf32, gbf16 = matmul_ceiling(torch.float32, device=device), matmul_ceiling(torch.bfloat16, device=device)

    cache: dict = {}
    ours, plain = [], []
    for i in range(ns.repeats):  # alternate so drift (thermal, other load) hits both alike
        order = (lorakit_run, plain_trainer) if i % 2 == 0 else (plain_trainer, lorakit_run)
        for fn in order:
            (ours if fn is lorakit_run else plain).append(fn(cfg) if fn is lorakit_run else fn(cfg, cache, device))
    bf16 = lorakit_run(cfg.replace(bf16_autocast=True))

    fpt = flops_per_token(ns.model, cfg.method, ns.seq_len)
    tps = statistics.median(r["tokens_per_s"] for r in ours)
    tps_plain = statistics.median(r["tokens_per_s"] for r in plain)
    rows = [
        ("lorakit.train tokens/s", f"{tps:,.0f}"),
        ("plain Trainer + peft tokens/s", f"{tps_plain:,.0f}"),
        ("ratio lorakit / plain", f"{tps / tps_plain:.3f}"),
        ("final loss lorakit / plain", f"{ours[0]['final_loss']:.4f} / {plain[0]['final_loss']:.4f}"),
        ("matmul ceiling fp32 / bf16 GFLOP/s", f"{gf32:,.0f} / {gbf16:,.0f}"),
        ("model GFLOP/s (lorakit)", f"{fpt * tps / 1e9:,.1f}"),
        ("fraction of fp32 / bf16 ceiling", f"{fpt * tps / 1e9 / gf32:.1%} / {fpt * tps / 1e9 / gbf16:.1%}"),
        ("time to first loss (s, cached model)", f"{statistics.median(r['first_loss_s'] for r in ours):.2f}"),
        ("bf16 autocast tokens/s", f"{bf16['tokens_per_s']:,.0f} ({bf16['tokens_per_s'] / tps:.2f}x fp32)"),
        ("bf16 autocast train loss (fp32)", f"{bf16['train_loss']:.4f} ({ours[0]['train_loss']:.4f})"),
    ]
    print(f"# throughput: {ns.model}, LoRA r={cfg.rank} on {','.join(cfg.target_modules)}, batch "
          f"{ns.batch_size} x <= {ns.seq_len} tokens, {ns.steps} steps, median of {ns.repeats}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
          + (f", {torch.cuda.get_device_name()}" if device == "cuda" else "")
          + (" (random weights)" if ns.random_weights else ""))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"| {k:<{width}} | {v:>24} |")


if __name__ == "__main__":
    main()
