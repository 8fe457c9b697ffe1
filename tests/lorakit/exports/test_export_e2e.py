"""Round trips of a SmolLM2 LoRA run through every export format, each read back by a reader lorakit did not
write: plain transformers (merged), transformers' GGUF loader and gguf.GGUFReader (GGUF), llama.cpp itself
(llama-cpp-python). Greedy answers on the task's 32 held-out prompts are compared with the in-memory adapter's.
"""
import gc
import os

import pytest
import torch

import lorakit
from lorakit.store import RunStore
from lorakit.training.evaluation import generate

pytestmark = pytest.mark.e2e
NEW_TOKENS = 32  # per answer: enough for the task's short answers, and a long enough greedy path to disagree on
# a high rate: B far from zero after 3 steps; the run scores 4 held-out answers (the 32 below are this module's)
CFG = dict(model="smollm2-135m", max_steps=3, batch_size=2, seq_len=128, train_examples=32, eval_examples=4,
           learning_rate=1e-3, target_modules="qv")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """(store, record, prompts, reference answers, reference logits of one batch, tokenizer, folder)."""
    from lorakit.adapters.lora import load_adapter
    from lorakit.data import build_data

    root = tmp_path_factory.mktemp("export-e2e")
    store = RunStore(root / "runs.db")
    rec = lorakit.train(lorakit.RunConfig(**CFG), store=store)
    assert rec.status == "finished", rec.reason
    loaded = lorakit.load_model("smollm2-135m", device="cpu")
    tok = loaded.tokenizer
    # the task's 32 held-out prompts (eval_examples=32: the split a 32-example run scores on)
    prompts = [r["messages"] for r in build_data(lorakit.RunConfig(**dict(CFG, eval_examples=32)), tok).eval_raw]
    prompts = [m[:-1] if m[-1]["role"] == "assistant" else m for m in prompts]  # the question, not its answer
    assert len(prompts) == 32
    model = load_adapter(loaded.model, rec.adapter_path).eval()
    answers = generate(model, tok, prompts, max_new_tokens=NEW_TOKENS)
    enc = _batch(tok, prompts[:4])
    logits = _logits(model, enc)
    del model, loaded
    gc.collect()
    return dict(store=store, rec=rec, prompts=prompts, answers=answers, logits=logits, enc=enc, tok=tok, root=root)


def _batch(tok, prompts):
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    return tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)


def _logits(model, enc):
    """Logits at the real tokens only, (n_real, vocab): a left-padded position's logits are not an answer's."""
    with torch.no_grad():
        return model(**enc).logits.float()[enc["attention_mask"].bool()]


def _agree(a, b) -> int:
    return sum(x == y for x, y in zip(a, b, strict=True))


def _size(path) -> int:
    folder = path.parent if path.is_file() else path
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@pytest.fixture(scope="module")
def merged(home):
    """The merged export, loaded by plain transformers, with its greedy answers."""
    from transformers import AutoModelForCausalLM

    out = lorakit.export(home["rec"].run_id, home["root"] / "merged", format="merged", store=home["store"])
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    return dict(path=out, model=model, answers=generate(model, home["tok"], home["prompts"],
                                                        max_new_tokens=NEW_TOKENS))


def test_merged_gives_the_adapters_greedy_answers_and_logits(home, merged):
    from transformers import AutoTokenizer

    agree = _agree(merged["answers"], home["answers"])
    diff = (_logits(merged["model"], home["enc"]) - home["logits"]).abs().max().item()
    print(f"\nmerged: {agree}/32 answers as the in-memory adapter, logits max |diff| {diff:.2e}, "
          f"{_size(merged['path']) / 2**20:.1f} MiB")
    # W + s*BA rounded once in fp32 against W x + s*B(A x): measured 1.13e-4 on logits of magnitude ~20 (relative
    # ~5e-6), just over the 1e-4; 2e-4 still fails a merge that lost or doubled the update (>1e-2)
    assert agree >= 31 and diff < 2e-4
    assert sum(a != "" for a in merged["answers"]) >= 16  # real answers, not empty strings agreeing
    tok = AutoTokenizer.from_pretrained(str(merged["path"]))
    assert tok.chat_template == home["tok"].chat_template and len(tok) == len(home["tok"])


def _f16_rounded(model):
    """The merged model with every matrix rounded to float16 and back, as an F16 GGUF stores it (norms stay F32)."""
    import copy

    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.copy_(p.half().float())
    return m


def _gguf_meta(path):
    import gguf

    r = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


def test_gguf_f16_reads_back_in_transformers_with_the_merged_models_answers_and_metadata(home, merged):
    from transformers import AutoModelForCausalLM

    path = lorakit.export(home["rec"].run_id, home["root"] / "gguf-f16", format="gguf", store=home["store"])
    meta = _gguf_meta(path)
    tok = home["tok"]
    assert meta["llama.vocab_size"] == len(meta["tokenizer.ggml.tokens"]) == len(tok) == 49152
    assert meta["tokenizer.ggml.tokens"] == tok.convert_ids_to_tokens(list(range(len(tok))))
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"],
            meta["tokenizer.ggml.padding_token_id"]) == (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    assert meta["tokenizer.chat_template"] == tok.chat_template
    g = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    got = _logits(g, home["enc"])
    exact = (got - _logits(_f16_rounded(merged["model"]), home["enc"])).abs().max().item()
    diff = (got - _logits(merged["model"], home["enc"])).abs().max().item()
    agree = _agree(generate(g, tok, home["prompts"], max_new_tokens=NEW_TOKENS), merged["answers"])
    print(f"\ngguf f16: {agree}/32 answers as merged, logits max |diff| {diff:.2e} to merged (fp32), "
          f"{exact:.2e} to merged rounded to f16; {path.stat().st_size / 2**20:.1f} MiB")
    # The writer itself loses nothing beyond F16's rounding (measured 0.0: the same logits as the merged model with
    # its matrices rounded to float16). F16 rounding alone moves SmolLM2's logits by more than the issue's 1e-2
    # (measured 0.038 at the real tokens of 4 prompts; up to 0.75 at left-padded positions, not compared here),
    # and changes none of the 32 greedy answers.
    assert exact < 1e-3
    assert diff < 0.1 and agree >= 30
    globals()["_F16_PATH"] = path


def test_gguf_q8_0_reads_back_and_most_answers_agree(home, merged):
    from transformers import AutoModelForCausalLM

    path = lorakit.export(home["rec"].run_id, home["root"] / "gguf-q8", format="gguf", store=home["store"],
                          gguf_type="q8_0")
    g = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    agree = _agree(generate(g, home["tok"], home["prompts"], max_new_tokens=NEW_TOKENS), merged["answers"])
    diff = (_logits(g, home["enc"]) - _logits(merged["model"], home["enc"])).abs().max().item()
    peft = lorakit.export(home["rec"].run_id, home["root"] / "peft", format="peft", store=home["store"])
    print(f"\ngguf q8_0: {agree}/32 answers as merged, logits max |diff| {diff:.2e}; "
          f"{path.stat().st_size / 2**20:.1f} MiB; peft folder {_size(peft) / 2**20:.2f} MiB")
    assert agree >= 16  # reported; Q8_0 rounds every weight to 8 bits per block of 32


def _llama_cpp():
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        if os.environ.get("LORAKIT_REQUIRE_LLAMA_CPP"):
            raise
        pytest.skip("llama_cpp is not importable (pip install 'lorakit[gguf]'; CI sets LORAKIT_REQUIRE_LLAMA_CPP "
                    "so that it fails instead)")
    return llama_cpp


def test_llama_cpp_reads_the_gguf_and_answers_as_the_merged_model(home, merged):
    llama_cpp = _llama_cpp()
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    path = globals().get("_F16_PATH") or lorakit.export(home["rec"].run_id, home["root"] / "gguf-f16b",
                                                        format="gguf", store=home["store"])
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=2, seed=0, verbose=False)
    tok = home["tok"]
    fmt = Jinja2ChatFormatter(llm.metadata["tokenizer.chat_template"], eos_token=tok.eos_token,
                              bos_token=tok.bos_token or "")
    for p in home["prompts"][:4]:
        assert fmt(messages=p).prompt == tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
    answers = []
    for p in home["prompts"]:
        out = llm.create_chat_completion(messages=p, max_tokens=NEW_TOKENS, temperature=0.0, top_k=1)
        answers.append(out["choices"][0]["message"]["content"].strip())
    agree = _agree(answers, merged["answers"])
    print(f"\nllama.cpp (f16): {agree}/32 answers as merged")
    assert agree >= 28
