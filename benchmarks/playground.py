"""The Playground's generation: time to first token and tokens/s per column; the streamed answer against plain
``model.generate`` on the same model and prompt (paired, alternating, one process); and the memory of three
adapter columns on SmolLM2 against the base alone plus the three adapters.

    python benchmarks/playground.py [--tokens 48] [--repeats 3] [--model smollm2-135m]

Three LoRA adapters (r8 on q,v; random weights: this measures cost, not quality) are saved as stored runs in a
temporary store, so nothing is trained. The plain reference is ``model.generate`` with the same greedy
generation config on the session's own model object (the base inside peft's ``disable_adapter()``, an adapter
made active with ``set_adapter``), so both read the same weights in memory. Speed is end to end (new tokens
over the call's wall time, prefill included) for both, so the ratio is the Playground's whole overhead: the
streamer, its thread, the stop check, the adapter switch.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

import lorakit
from lorakit.adapters.lora import attach_lora, save_adapter
from lorakit.common.devices import matmul_gflops
from lorakit.common.quiet import quiet_libraries
from lorakit.memory.breakdown import measure_weights
from lorakit.playground.session import BASE, Session
from lorakit.playground.streaming import AnswerStats, GenerationSettings
from lorakit.run.record import RunRecord
from lorakit.store import RunStore
from lorakit.training.evaluation import generation_config

PROMPT = "Write two sentences about the sea."


def stored_runs(store: RunStore, model: str, n: int) -> list:
    """``n`` finished LoRA runs of ``model`` with random adapters (r8, q and v), as training leaves them."""
    ids = []
    for seed in range(n):
        loaded = lorakit.load_model(model, device="cpu")
        torch.manual_seed(seed)
        peft = attach_lora(loaded.model, 8, 16, 0.0, ["q_proj", "v_proj"])
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.002)
        rec = RunRecord(lorakit.RunConfig(model=model, seed=seed), status="finished", task=loaded.task,
                        family=loaded.family, history=[dict(step=1, loss=1.0)])
        rec.adapter_path = str(store.adapter_dir(rec.run_id))
        save_adapter(peft, rec.adapter_path, run_id=rec.run_id, base=model)
        store.save(rec)
        ids.append(rec.run_id)
    return ids


def plain_generate(model, tok, n: int) -> tuple[float, int]:
    """(seconds, new tokens) of plain ``model.generate`` on the chat-templated prompt."""
    text = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**enc, generation_config=generation_config(tok, n))
    return time.perf_counter() - t0, out.shape[1] - enc["input_ids"].shape[1]


def streamed(session: Session, column: str, n: int) -> AnswerStats:
    stats = AnswerStats()
    for _ in session.stream(PROMPT, column, GenerationSettings(max_new_tokens=n), stats=stats):
        pass
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paired-only", action="store_true", help="only the Playground against plain generate")
    ns = ap.parse_args()
    quiet_libraries()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} · fp32 matmul {matmul_gflops('float32', 'cpu'):.0f} GFLOP/s · "
          f"{ns.model}, {ns.tokens} new tokens, greedy, {ns.repeats} repeats (median)")
    with tempfile.TemporaryDirectory() as tmp, RunStore(Path(tmp) / "runs.db") as store:
        ids = stored_runs(store, ns.model, 3)
        session = Session(ids, store=store)
        if not ns.paired_only:
            memory(session, store, ids, ns.model)
            columns(session, ns.tokens, ns.repeats)
        paired(session, store, ids[0], ns.model, ns.tokens, ns.repeats)


def memory(session: Session, store: RunStore, ids: list, model: str) -> None:
    mem = session.memory()
    base_alone = measure_weights(lorakit.load_model(model, device="cpu").model)[0]
    adapters = {i: _numel_bytes(store.load(i).adapter_path) for i in ids}
    want = base_alone + sum(adapters.values())
    print("\n| memory | MiB |\n|---|---|")
    print(f"| session: base once + 3 adapters (measured from its tensors) | {mem.total / 2**20:.2f} |")
    print(f"| base alone (its own load) + the 3 adapters' tensors on disk | {want / 2**20:.2f} |")
    print(f"| ratio | {mem.total / want:.4f} (goal: within 5 %) |")
    print(f"| of which base {mem.base / 2**20:.2f}, adapters "
          f"{', '.join(f'{v / 2**20:.2f}' for v in mem.adapters.values())} | |")


def _numel_bytes(path: str) -> int:
    from safetensors import safe_open

    with safe_open(str(Path(path) / "adapter_model.safetensors"), "pt") as f:
        return sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())


def columns(session: Session, n: int, repeats: int) -> None:
    print("\n| column | TTFT s | decode tok/s | tokens |\n|---|---|---|---|")
    for col in session.names:
        runs = [streamed(session, col, n) for _ in range(repeats)]
        ttft = statistics.median(s.ttft_s for s in runs)
        rate = statistics.median(s.tokens_per_s or 0 for s in runs)
        print(f"| {col} | {ttft:.3f} | {rate:.1f} | {runs[0].tokens} |")


def paired(session: Session, store: RunStore, run_id: str, model: str, n: int, repeats: int) -> None:
    """The Playground's streamed column against plain ``model.generate`` on the same model object (the session's
    PeftModel: the base inside ``disable_adapter()``, the run with ``set_adapter``) and prompt, alternating."""
    import contextlib

    peft = session.model
    print("\n| model | Playground tok/s (end to end) | plain generate tok/s (main thread) | ratio | plain generate "
          "tok/s (on a thread) | ratio |\n|---|---|---|---|---|---|")
    for col in (BASE, run_id):
        ours, theirs, threaded = [], [], []
        for i in range(repeats):
            for mine in ((True, False) if i % 2 == 0 else (False, True)):
                if mine:
                    s = streamed(session, col, n)
                    ours.append(s.tokens / s.wall_s)
                    continue
                if col != BASE:
                    peft.set_adapter(col)
                for where, rates in (("main", theirs), ("thread", threaded)):
                    with peft.disable_adapter() if col == BASE else contextlib.nullcontext():
                        seconds, tokens = on_thread(plain_generate, peft, session.tokenizer, n) if where == "thread" \
                            else plain_generate(peft, session.tokenizer, n)
                    rates.append(tokens / seconds)
        a, b, c = statistics.median(ours), statistics.median(theirs), statistics.median(threaded)
        print(f"| {col} | {a:.1f} | {b:.1f} | {a / b:.3f}x | {c:.1f} | {a / c:.3f}x |", flush=True)


def on_thread(fn, *args):
    """``fn(*args)`` on a new thread, as the Playground generates: on a loaded machine torch's main thread and
    a worker thread ran the same matmuls at different speeds (measured 3x apart here), so the Playground's own
    overhead is its ratio to plain generate on a thread."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    t.join()
    return out[0]


if __name__ == "__main__":
    main()
