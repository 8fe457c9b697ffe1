"""A full fine-tuning run taken home: its trained model kept in the run's store folder (keep_weights), exported
as merged (plain transformers loads it with the trained model's logits) and GGUF (transformers' GGUF loader
reads it back), peft refused; the store's delete, merge and cleanup know the folder."""
import os
import shutil
from pathlib import Path

import pytest
import torch
from export_support import chat_batch as _batch  # tests/support
from export_support import logits as _logits

import lorakit
from lorakit.adapters import full_weights
from lorakit.exports.writer import ExportError, export
from lorakit.store import RunStore

FULL = dict(model="tiny-llama", method="full", max_steps=4, batch_size=2, train_examples=24, eval_examples=2,
            learning_rate=1e-2, checkpoint_every=0)  # a high rate: the weights move far from the base's




@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """(store, run, logits of the trained model in memory on _batch, taken as train() kept it)."""
    root = tmp_path_factory.mktemp("full")
    store = RunStore(root / "runs.db")
    seen = {}
    save = full_weights.save_full

    def spying(model, tokenizer, path):
        was = model.training
        model.eval()
        seen["logits"] = _logits(model, {k: v.to(model.device) for k, v in _batch(tokenizer).items()}).cpu()
        model.train(was)
        return save(model, tokenizer, path)

    mp = pytest.MonkeyPatch()
    mp.setattr(full_weights, "save_full", spying)
    try:
        run = lorakit.train(lorakit.RunConfig(**FULL), store=store)
    finally:
        mp.undo()
    assert run.status == "finished" and "logits" in seen
    return store, run, seen["logits"]


def test_a_full_run_keeps_its_model_in_its_store_folder_and_compare_shows_its_size(full):
    store, run, _ = full
    folder = Path(run.adapter_path)
    assert folder == store.adapter_dir(run.run_id)
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= set(os.listdir(folder))
    on_disk = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert run.weights_bytes == on_disk > 500_000  # tiny-llama's ~0.2 M fp32 parameters at least
    assert run.adapter_bytes is None
    row = lorakit.compare(store=store).set_index("run_id").loc[run.run_id]
    assert row["weights_bytes"] == run.weights_bytes
    assert store.load(run.run_id).weights_bytes == run.weights_bytes  # it survives the store


def test_merged_export_of_a_full_run_has_the_trained_models_logits_in_plain_transformers(full, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    store, run, trained = full
    out = export(run.run_id, tmp_path / "merged", format="merged", store=store)
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "README.md"} <= set(
        os.listdir(out))
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template and GenerationConfig.from_pretrained(str(out)).do_sample is False
    assert "full fine-tuning trained every weight" in (out / "README.md").read_text()
    enc = _batch(tok)
    assert (_logits(model, enc) - trained).abs().max() < 1e-4
    base = lorakit.load_model("tiny-llama", device="cpu").model.eval()
    assert (_logits(base, enc) - trained).abs().max() > 1e-2  # training moved it: the base would fail above


def test_gguf_export_of_a_full_run_reads_back_in_transformers_gguf_loader(full, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    store, run, trained = full
    path = export(run.run_id, tmp_path / "gguf", format="gguf", store=store, gguf_type="f16")
    assert set(os.listdir(path.parent)) == {path.name, "Modelfile", "README.md"}
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    enc = _batch(AutoTokenizer.from_pretrained(run.adapter_path))
    diff = (_logits(model, enc) - trained).abs().max()
    assert diff < 1e-2, diff  # the F16 bound of the LoRA GGUF test


def test_peft_of_a_full_run_is_refused_naming_format_and_the_formats_that_apply(full, tmp_path):
    store, run, _ = full
    with pytest.raises(ExportError) as e:
        export(run.run_id, tmp_path / "p", format="peft", store=store)
    assert set(e.value.problems) == {"format"}
    assert "full fine-tuning" in str(e.value) and "'merged'" in str(e.value) and "'gguf'" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_keep_weights_false_keeps_nothing_and_merged_is_refused_with_the_reason(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run = lorakit.train(lorakit.RunConfig(**dict(FULL, max_steps=1, keep_weights=False)), store=store)
    assert run.status == "finished" and run.adapter_path is None and run.weights_bytes is None
    assert not full_weights.kept(store.adapter_dir(run.run_id))
    with pytest.raises(ExportError) as e:
        export(run.run_id, tmp_path / "m", format="merged", store=store)
    assert set(e.value.problems) == {"run"} and "keep_weights=False" in str(e.value)
    assert not (tmp_path / "m").exists()


def test_merge_carries_the_weights_and_delete_and_cleanup_remove_them(full, tmp_path):
    store, run, _ = full
    other = RunStore(tmp_path / "other.db")
    lorakit.store.merge(store.path, other, [run.run_id])
    moved = other.load(run.run_id)
    assert Path(moved.adapter_path) == other.adapter_dir(run.run_id) and full_weights.kept(moved.adapter_path)
    other.delete(run.run_id)
    assert not other.adapter_dir(run.run_id).exists()
    # a run folder whose record is gone (a store file replaced): cleanup names it and removes it
    folder = other.adapter_dir("0123456789ab")
    shutil.copytree(run.adapter_path, folder)
    assert [(p, "kept weights" in why) for p, why in other.leftover_checkpoints()] == [(folder, True)]
    other.repair()
    assert not folder.exists()
