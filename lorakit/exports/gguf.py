"""Write a merged LLaMA-family model as one GGUF file (llama.cpp, Ollama, LM Studio) with the ``gguf`` package.

The tensor names are the reverse of the map transformers reads LLaMA GGUFs with
(``transformers.modeling_gguf_pytorch_utils.get_gguf_hf_weights_map``: gguf's own
``get_tensor_name_map(MODEL_ARCH.LLAMA, n_layers)``, hf name -> gguf name). llama.cpp's converter
permutes the rows of q_proj and k_proj (its rotary embedding pairs neighbouring dimensions, transformers'
pairs the two halves of a head); transformers undoes that on reading (``LlamaTensorProcessor.
_reverse_permute_weights``), so the writer applies the forward permutation here. The tokenizer goes in as
llama.cpp's "gpt2" model (byte-level BPE: tokens, merges, token types), with the special ids and the chat
template; hyperparameters under ``llama.*``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

GGUF_TYPES = ("f16", "bf16", "q8_0")
GGUF_ARCHITECTURES = ("LlamaForCausalLM",)  # the LLaMA family: LLaMA, SmolLM2, TinyLlama-style decoders
GGUF_FAMILIES = "LLaMA-family decoders (LlamaForCausalLM, e.g. smollm2-135m, tiny-llama)"
# llama.cpp's pre-tokenizer names for the byte-level BPE pre-tokenizers lorakit can recognise
_PRE_TOKENIZERS = {("Digits", "ByteLevel"): "smollm", ("ByteLevel",): "gpt-2"}


class GGUFUnsupported(ValueError):
    """The model or its tokenizer cannot be written as GGUF by lorakit; the message says what works."""


def check_gguf_model(model) -> None:
    """Refuse anything but a LLaMA-family causal LM with plain RoPE, naming the format and what works."""
    arch = type(model).__name__
    if arch not in GGUF_ARCHITECTURES:
        raise GGUFUnsupported(f"format='gguf' cannot write a {arch} ({model.config.model_type}); "
                              f"it writes {GGUF_FAMILIES}. Export format='merged' or 'peft' instead.")
    rope_type = _rope(model.config).get("rope_type", "default")
    if rope_type not in ("default", None):
        raise GGUFUnsupported(f"format='gguf' writes LLaMA models with plain RoPE; this one uses rope_type "
                              f"{rope_type!r}. Export format='merged' instead.")


def _rope(config) -> dict:
    """transformers 5 keeps theta (and any scaling) in ``rope_parameters``; older configs in ``rope_theta``."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return params


def pre_tokenizer_name(tokenizer) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer; a tokenizer lorakit cannot describe is refused."""
    import json

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model_type = spec["model"]["type"]
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = tuple(s.get("type") for s in steps)
    digits_ok = all(s.get("individual_digits", True) for s in steps if s.get("type") == "Digits")
    if model_type != "BPE" or kinds not in _PRE_TOKENIZERS or not digits_ok:
        raise GGUFUnsupported(f"format='gguf' writes byte-level BPE tokenizers (GPT-2 style, as SmolLM2's); this "
                              f"one is {model_type} with pre-tokenizer {kinds or 'none'}. Export format='merged'.")
    return _PRE_TOKENIZERS[kinds]


# --- tensors ------------------------------------------------------------------------------------

def permute_qk(w, n_head: int, n_head_kv: int):
    """llama.cpp's row order for q/k (convert_hf_to_gguf ``LlamaModel.permute``): within each head, the two
    rotary halves interleaved. w: (n_head * head_dim, ...) -> same shape."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_tensors(model):
    """(gguf name, float32 numpy array) for every weight, q/k permuted; the tied lm_head is left out
    (llama.cpp reads token_embd in its place when there is no ``output.weight``)."""
    import gguf

    cfg = model.config
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        module, _, suffix = hf_name.rpartition(".")
        if tied and module == "lm_head":
            continue
        name = name_map.get_name(module)
        if name is None:
            raise GGUFUnsupported(f"format='gguf': no GGUF name for the tensor {hf_name!r} of this "
                                  f"{type(model).__name__}; it writes {GGUF_FAMILIES}")
        data = tensor.detach().float().cpu().numpy()
        if module.endswith("self_attn.q_proj"):
            data = permute_qk(data, n_head, n_head)
        elif module.endswith("self_attn.k_proj"):
            data = permute_qk(data, n_head, n_kv)
        yield f"{name}.{suffix}", data


def encode_tensor(data, gguf_type: str):
    """(array, raw_dtype) as GGUFWriter.add_tensor takes them. 1-D tensors (norms, biases) stay F32, as
    llama.cpp's converter keeps them; Q8_0 needs rows in blocks of 32, other rows go in F16."""
    import gguf
    import numpy as np

    if data.ndim < 2:
        return data.astype(np.float32), None
    if gguf_type == "f16":
        return data.astype(np.float16), None
    kind = gguf.GGMLQuantizationType.BF16 if gguf_type == "bf16" else gguf.GGMLQuantizationType.Q8_0
    if kind == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % gguf.GGML_QUANT_SIZES[kind][0]:
        return data.astype(np.float16), None
    return gguf.quants.quantize(data, kind), kind


# --- metadata -----------------------------------------------------------------------------------

def _file_type(gguf_type: str):
    import gguf

    return {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type]


def add_hyperparameters(writer, config, name: str, gguf_type: str) -> None:
    """Everything llama.cpp's LLaMA loader (and transformers' GGUF_CONFIG_MAPPING['llama']) reads."""
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(_rope(config)["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(_file_type(gguf_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def token_table(tokenizer, vocab_size: int):
    """(tokens, token types, merges) in id order, padded to the model's vocabulary with unused entries."""
    import json

    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    by_id = {i: t for t, i in spec["model"]["vocab"].items()}
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    by_id.update({i: a["content"] for i, a in added.items()})
    tokens, types = [], []
    for i in range(vocab_size):
        if i in added:
            kind = gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED
        else:
            kind = gguf.TokenType.NORMAL if i in by_id else gguf.TokenType.UNUSED
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        types.append(int(kind))
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    return tokens, types, merges


def _adds(tokenizer, token_id) -> tuple[bool, bool]:
    """(adds BOS first, adds EOS last) when the tokenizer encodes text with special tokens."""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return (token_id[0] is not None and ids[:1] == [token_id[0]],
            token_id[1] is not None and ids[-1:] == [token_id[1]])


def add_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    tokens, types, merges = token_table(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for kind in ("bos", "eos", "unk", "pad"):
        tid = getattr(tokenizer, f"{kind}_token_id")
        if tid is not None:
            getattr(writer, f"add_{kind}_token_id")(int(tid))
    add_bos, add_eos = _adds(tokenizer, (tokenizer.bos_token_id, tokenizer.eos_token_id))
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    writer.add_add_space_prefix(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def write_gguf(model, tokenizer, path: Union[str, Path], gguf_type: str = "f16", name: str = "") -> Path:
    """Write ``model`` (a plain, merged LlamaForCausalLM) and its tokenizer to one GGUF file at ``path``."""
    import gguf

    check_gguf_model(model)
    pre_tokenizer_name(tokenizer)  # refused before any byte is written
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        add_hyperparameters(writer, model.config, name or path.stem, gguf_type)
        add_tokenizer(writer, tokenizer, model.config.vocab_size)
        for tensor_name, data in gguf_tensors(model):
            array, raw = encode_tensor(data, gguf_type)
            writer.add_tensor(tensor_name, array, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path
