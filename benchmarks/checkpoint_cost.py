"""What checkpoints cost: seconds per checkpoint and their share of a default LoRA run, and the disk one takes
for LoRA (the adapter, optimizer, scheduler, RNG) and for full fine-tuning (every weight and AdamW's two moments).

    python benchmarks/checkpoint_cost.py [--model smollm2-135m] [--repeats 2] [--full-steps 2] [--eval-examples 2]

Each checkpoint is timed around the Trainer's own ``_save_checkpoint``, so its share is measured inside the same
run (side by side with that run's steps, whatever the machine's load). The same LoRA run without checkpoints
(``checkpoint_every=0``) alternates with it for the end-to-end ratio of train_s, which a loaded machine blurs.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lorakit
from lorakit.common.display import MiB
from lorakit.store import checkpoints


def timed_saves() -> list:
    """Time every checkpoint the Trainer writes from now on; returns the list the seconds go into."""
    from transformers import Trainer

    seconds: list = []
    original = Trainer._save_checkpoint

    def save(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - t0)

    Trainer._save_checkpoint = save
    return seconds


def one_run(cfg, root: Path, saves: list) -> dict:
    saves.clear()
    rec = lorakit.train(cfg, store=root / f"{time.monotonic_ns()}.db")
    assert rec.status == "finished", rec.reason
    folder = root / "x"
    for db in root.glob("*_adapters"):
        if (db / rec.run_id).is_dir():
            folder = checkpoints.folder_of(db / rec.run_id)
    newest = checkpoints.latest(folder)
    return dict(train_s=rec.train_s, wall_s=rec.wall_s, steps=rec.steps_done, saves=list(saves),
                one=checkpoints.disk_bytes(newest) if newest else 0, adapter=rec.adapter_bytes or 0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--full-steps", type=int, default=2)
    p.add_argument("--direct", action="store_true", help="only a step and a checkpoint's save, side by side "
                                                         "(no whole run; see direct())")
    p.add_argument("--eval-examples", type=int, default=2, help="the task metric's generations are not what is "
                                                                "measured; few keep a loaded machine's run short")
    ns = p.parse_args()
    if ns.direct:
        return direct(ns.model)
    saves = timed_saves()
    # the default run: its steps, batch and checkpoint_every (fewer held-out examples: not what is measured)
    lora = lorakit.RunConfig(model=ns.model, eval_examples=ns.eval_examples)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        on, off = [], []
        for _ in range(ns.repeats):  # alternating, so both see the same load
            on.append(one_run(lora, root, saves))
            off.append(one_run(lora.replace(checkpoint_every=0), root, saves))
        full = one_run(lorakit.RunConfig(model=ns.model, method="full", max_steps=ns.full_steps,
                                         checkpoint_every=1, eval_examples=ns.eval_examples), root, saves)
    print(f"{ns.model}: LoRA default run ({lora.max_steps} steps, checkpoint_every={lora.checkpoint_every}, "
          f"keep {lora.checkpoint_keep}); full fine-tuning {ns.full_steps} steps")
    print(f"{'run':<28} {'s/checkpoint':>12} {'ckpts':>5} {'share of train_s':>16} {'share of wall_s':>15} "
          f"{'MiB/checkpoint':>14} {'s/step':>7}")
    for name, r in [*((f"LoRA #{i + 1}", r) for i, r in enumerate(on)), ("full fine-tuning", full)]:
        n, s = len(r["saves"]), sum(r["saves"])
        print(f"{name:<28} {s / n if n else 0:>12.3f} {n:>5} {s / r['train_s']:>16.1%} {s / r['wall_s']:>15.1%} "
              f"{r['one'] / MiB:>14.2f} {r['train_s'] / r['steps']:>7.3f}")
    ratio = [a["train_s"] / b["train_s"] for a, b in zip(on, off, strict=True)]
    print(f"LoRA train_s with / without checkpoints, side by side: {', '.join(f'{x:.3f}' for x in ratio)}")
    print(f"LoRA adapter alone: {on[0]['adapter'] / MiB:.2f} MiB; a LoRA checkpoint {on[0]['one'] / MiB:.2f} MiB; "
          f"a full fine-tuning checkpoint {full['one'] / MiB:.1f} MiB")




def direct(model: str = "smollm2-135m", steps: int = 2) -> None:
    """Without a whole run (a loaded machine makes a default smollm2 run take an hour): one LoRA (r8 q,v) and one
    full fine-tuning step timed beside a save of what the Trainer's checkpoint holds (the adapter or the model by
    save_pretrained, the AdamW state, the RNG state), on the default batch (4 x 128 tokens)."""
    import torch

    from lorakit.adapters import lora as adapters
    from lorakit.models.loading import load_model

    for method in ("lora", "full"):
        loaded = load_model(model, device="cpu")
        net = adapters.attach_lora(loaded.model, 8, 16, 0.05, "qv") if method == "lora" else loaded.model
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
        ids = torch.randint(0, 1000, (4, 128))
        step_s, save_s, size = [], [], 0
        for _ in range(steps):  # a step, then a save: side by side under the same load
            t0 = time.perf_counter()
            net(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
            step_s.append(time.perf_counter() - t0)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                net.save_pretrained(tmp, safe_serialization=True)
                torch.save(opt.state_dict(), Path(tmp) / "optimizer.pt")
                torch.save({"cpu": torch.get_rng_state()}, Path(tmp) / "rng_state.pth")
                save_s.append(time.perf_counter() - t0)
                size = checkpoints.disk_bytes(Path(tmp))
        print(f"{model} {method:<4}: step {' '.join(f'{s:.2f}' for s in step_s)} s; checkpoint "
              f"{' '.join(f'{s:.3f}' for s in save_s)} s ({size / MiB:.1f} MiB); checkpoint / step "
              f"{' '.join(f'{a / b:.3f}' for a, b in zip(save_s, step_s, strict=True))}")
        del net, opt, loaded


if __name__ == "__main__":
    main()
