"""lorakit.export on tiny-llama: peft, merged and GGUF folders read back by readers lorakit did not write
(peft, transformers, transformers' GGUF loader, gguf.GGUFReader); bad input; nothing half-written."""
import os
from pathlib import Path

import pytest
import torch
from export_support import chat_batch as _batch  # tests/support
from export_support import logits as _logits

import lorakit
from lorakit.exports.writer import ExportError, export
from lorakit.run.record import RunRecord
from lorakit.store import RunStore

TINY = dict(model="tiny-llama", max_steps=4, batch_size=2, train_examples=24, eval_examples=4,
            learning_rate=2e-2, target_modules="all-linear")  # a high rate: B far from zero


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    store = RunStore(root / "runs.db")
    lora = lorakit.train(lorakit.RunConfig(**TINY), store=store)
    assert lora.status == "finished"
    # what the refusals read: a full fine-tuning run (no adapter, no weights in its folder) and a GPT-2 LoRA run, as
    # train() records them (their fields are all the checks look at; training them would only cost time)
    full = RunRecord(lorakit.RunConfig(**dict(TINY, method="full")), status="finished", task="causal-lm")
    gpt2 = RunRecord(lorakit.RunConfig(**dict(TINY, model="tiny-gpt2")), status="finished", task="causal-lm",
                     adapter_path=lora.adapter_path)
    return store, lora, full, gpt2


@pytest.fixture(scope="module")
def adapted(trained):
    """The run's adapter on its base, in memory, as lorakit trained it (the reference)."""
    from lorakit.adapters.lora import load_adapter

    _, lora, _, _ = trained
    loaded = lorakit.load_model("tiny-llama", device="cpu")
    model = load_adapter(loaded.model, lora.adapter_path).eval()
    return model, loaded.tokenizer




def _entries(folder):
    return sorted(os.listdir(folder))


def test_peft_export_is_the_adapter_with_its_base_record_and_a_card_and_peft_loads_it(trained, adapted, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    store, lora, _, _ = trained
    out = export(lora.run_id, tmp_path / "peft", format="peft", store=store)
    assert {"adapter_config.json", "adapter_model.safetensors", "lorakit_adapter.json", "README.md"} <= set(
        _entries(out))
    assert "checkpoints" not in _entries(out)  # the run's checkpoints (for resuming) stay in the store
    assert (Path(lora.adapter_path) / "checkpoints").is_dir()
    card = (out / "README.md").read_text()
    for words in ("tiny-llama", "extract-json", "PeftModel.from_pretrained", "rank / alpha", "before", "after",
                  "base weights"):
        assert words in card, words
    base = AutoModelForCausalLM.from_pretrained(str(lorakit.models.loading.model_dir("tiny-llama")))
    model = PeftModel.from_pretrained(base, str(out)).eval()
    enc = _batch(adapted[1])
    torch.testing.assert_close(_logits(model, enc), _logits(adapted[0], enc), atol=1e-5, rtol=0)


def test_merged_export_loads_in_plain_transformers_with_the_adapters_logits(trained, adapted, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    store, lora, _, _ = trained
    out = export(lora, tmp_path / "merged", format="merged")
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "README.md"} <= set(
        _entries(out))
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template == adapted[1].chat_template
    assert GenerationConfig.from_pretrained(str(out)).do_sample is False
    enc = _batch(tok)
    a, b = _logits(model, enc), _logits(adapted[0], enc)
    assert (a - b).abs().max() < 1e-4
    # the adapter moved the model: a merge that dropped it would fail here
    base = lorakit.load_model("tiny-llama", device="cpu").model.eval()
    assert (_logits(base, enc) - b).abs().max() > 1e-2


def _read_gguf(path):
    import gguf

    r = gguf.GGUFReader(path)
    return r, {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0", "bf16"])
def test_gguf_export_reads_back_in_transformers_with_the_metadata_of_the_tokenizer(trained, adapted, tmp_path,
                                                                                  gguf_type):
    from transformers import AutoModelForCausalLM

    store, lora, _, _ = trained
    path = export(lora.run_id, tmp_path / "gguf", format="gguf", store=store, gguf_type=gguf_type)
    assert path.suffix == ".gguf" and set(_entries(path.parent)) == {path.name, "Modelfile", "README.md"}
    reader, meta = _read_gguf(path)
    tok = adapted[1]
    assert meta["general.architecture"] == "llama"
    assert meta["llama.vocab_size"] == len(meta["tokenizer.ggml.tokens"]) == len(tok) == 1536
    assert meta["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert meta["tokenizer.ggml.bos_token_id"] == tok.bos_token_id
    assert meta["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert meta["tokenizer.ggml.padding_token_id"] == tok.pad_token_id
    assert meta["tokenizer.chat_template"] == tok.chat_template
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_q.weight"] == gguf_type.upper() and kinds["blk.0.attn_norm.weight"] == "F32"
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    enc = _batch(tok)
    diff = (_logits(model, enc) - _logits(adapted[0], enc)).abs().max()
    assert diff < {"f16": 1e-2, "bf16": 5e-2, "q8_0": 5e-2}[gguf_type], diff


def test_the_modelfile_template_renders_the_chat_template_of_the_tokenizer(trained, adapted, tmp_path):
    from lorakit.exports.modelfile import chat_parts

    store, lora, _, _ = trained
    path = export(lora.run_id, tmp_path / "g", format="gguf", store=store)
    text = (path.parent / "Modelfile").read_text()
    assert f"FROM ./{path.name}" in text and 'PARAMETER stop "<|im_end|>"' in text
    tok = adapted[1]
    parts = chat_parts(tok)
    assert parts is not None and f'TEMPLATE """{parts.go_template()}"""' in text
    assert parts.default_system and f'SYSTEM """{parts.default_system}"""' in text
    for conv in ([{"role": "user", "content": "hi"}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
                  {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]):
        assert parts.render(conv) == tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)


def test_overwrite_replaces_and_a_failed_export_leaves_nothing_and_keeps_the_old_one(trained, tmp_path, monkeypatch):
    import lorakit.exports.gguf as ge

    store, lora, _, _ = trained
    dest = tmp_path / "out"
    first = export(lora.run_id, dest, format="gguf", store=store)
    before = {f: (dest / f).stat().st_size for f in _entries(dest)}

    def fail_midway(model, tok, path, gguf_type="f16", name=""):
        path.write_bytes(b"GGUF half")  # a first part written, then the step fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ge, "write_gguf", fail_midway)
    with pytest.raises(OSError):
        export(lora.run_id, dest, format="gguf", store=store, overwrite=True, gguf_type="q8_0")
    assert _entries(tmp_path) == ["out"]  # no staging folder left
    assert {f: (dest / f).stat().st_size for f in _entries(dest)} == before and first.exists()
    with pytest.raises(OSError):
        export(lora.run_id, tmp_path / "fresh", format="gguf", store=store)
    assert _entries(tmp_path) == ["out"]
    monkeypatch.undo()
    again = export(lora.run_id, dest, format="merged", store=store, overwrite=True)
    assert "model.safetensors" in _entries(again) and not first.exists()


def _refused(tmp_path, **kw):
    before = _entries(tmp_path)
    with pytest.raises(ExportError) as err:
        export(**kw)
    assert _entries(tmp_path) == before  # nothing left behind
    return err.value


def test_bad_input_is_refused_naming_the_argument_and_nothing_is_written(trained, tmp_path):
    store, lora, full, gpt2 = trained
    e = _refused(tmp_path, run="no-such-run", path=tmp_path / "x", store=store)
    assert set(e.problems) == {"run"} and "no-such-run" in str(e)
    e = _refused(tmp_path, run=full, path=tmp_path / "x", format="peft")
    assert set(e.problems) == {"format"} and "full fine-tuning" in str(e) and "'merged'" in str(e)
    e = _refused(tmp_path, run=gpt2, path=tmp_path / "x", format="gguf")
    assert "gpt2" in str(e) and "LLaMA-family" in str(e) and "format='gguf'" in str(e)
    e = _refused(tmp_path, run=lora, path=tmp_path / "x", format="onnx", gguf_type="q4")
    assert set(e.problems) == {"format", "gguf_type"} and "'peft', 'merged', 'gguf'" in str(e)
    assert "'f16', 'bf16', 'q8_0'" in str(e)
    (tmp_path / "taken").mkdir()
    e = _refused(tmp_path, run=lora, path=tmp_path / "taken", format="peft")
    assert set(e.problems) == {"path"} and "overwrite=True" in str(e)
    assert _entries(tmp_path / "taken") == []


def test_a_full_fine_tuning_run_without_kept_weights_is_refused_for_merged_with_the_reason(trained, tmp_path):
    _, _, full, _ = trained
    e = _refused(tmp_path, run=full, path=tmp_path / "x", format="merged")
    assert set(e.problems) == {"run"} and "weights were not kept" in str(e) and "keep_weights=True" in str(e)


def test_cli_export_writes_the_folder_and_refuses_an_existing_one(trained, tmp_path, capsys):
    from lorakit.cli.commands import main

    store, lora, _, _ = trained
    out = tmp_path / "cli-merged"
    assert main(["--store", str(store.path), "export", lora.run_id, "--format", "merged", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and (out / "model.safetensors").is_file()
    assert main(["--store", str(store.path), "export", lora.run_id, "--format", "merged", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["--store", str(store.path), "export", "nope", "--out", str(tmp_path / "n")]) == 2
    assert "run: unknown run 'nope'" in capsys.readouterr().err
