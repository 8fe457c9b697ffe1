"""Stored runs for the Playground's tests: a LoRA adapter built directly (B drawn at random, so it changes
the answers) and saved into a store as a finished run, as ``lorakit.train`` leaves one; seconds, not minutes."""
from __future__ import annotations

import torch

import lorakit
from lorakit.adapters.lora import attach_lora, save_adapter
from lorakit.run.record import RunRecord


def stored_run(store, model="tiny-llama", seed=0, rank=4, quant="none", dataset="extract-json", task="",
               targets=("q_proj", "v_proj"), scale=0.5, method="lora") -> RunRecord:
    """A finished run of ``model`` in ``store`` whose adapter has random A and B (std ``scale``)."""
    cfg = lorakit.RunConfig(model=model, rank=rank, quant=quant, dataset=dataset, task=task, method=method,
                            target_modules=targets, seed=seed, max_steps=1)
    rec = RunRecord(cfg, status="finished", history=[dict(step=1, loss=1.0)])
    if method == "lora":
        labels = lorakit.list_tasks("classification")[0].labels if task == "classification" else None
        loaded = lorakit.load_model(model, quant=quant, device="cpu", task=task, labels=labels)
        torch.manual_seed(seed)
        peft = attach_lora(loaded.model, rank, 16, 0.0, list(targets),
                           task_type="SEQ_CLS" if loaded.task == "classification" else
                           ("SEQ_2_SEQ_LM" if loaded.family == "encoder-decoder" else "CAUSAL_LM"))
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_" in name or "modules_to_save" in name:
                    p.normal_(0, scale)
        rec.task, rec.family = loaded.task, loaded.family
        path = store.adapter_dir(rec.run_id)
        save_adapter(peft, path, run_id=rec.run_id, base=model)
        rec.adapter_path = str(path)
    store.save(rec)
    return rec
