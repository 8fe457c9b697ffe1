"""Model families and tasks: which transformers head class a model trains with, from its ``model_type``.

LoRA applies to decoders (GPT, LLaMA), encoders (BERT) and encoder-decoders (T5) alike; what differs
is the head and the loss: a decoder predicts the next token (``causal-lm``), an encoder labels the
whole input (``classification``, one vector per example from the first token), an encoder-decoder
writes an output sequence from an input sequence (``seq2seq``). A leaf module: plain data, no imports
from lorakit or heavy libraries, so ``RunConfig`` validation can ask it.
"""
from __future__ import annotations

TASKS = ("causal-lm", "classification", "seq2seq")
FAMILIES = ("decoder", "encoder", "encoder-decoder")

# transformers auto class per task (a name: transformers is imported where the model is built)
AUTO_CLASS = {
    "causal-lm": "AutoModelForCausalLM",
    "classification": "AutoModelForSequenceClassification",
    "seq2seq": "AutoModelForSeq2SeqLM",
}

# model_type (config.json) -> family; the family's natural task is its default (DEFAULT_TASK)
FAMILY = {
    **dict.fromkeys(("llama", "mistral", "qwen2", "gemma", "gpt2", "gpt_neox", "opt", "phi"), "decoder"),
    **dict.fromkeys(("bert", "roberta", "distilbert", "electra", "deberta-v2", "xlm-roberta"), "encoder"),
    **dict.fromkeys(("t5", "mt5", "bart", "mbart", "pegasus"), "encoder-decoder"),
}
# the module a *ForSequenceClassification model keeps its new head in (BERT, RoBERTa / LLaMA, GPT-2): it
# trains in full beside LoRA (peft's modules_to_save for SEQ_CLS)
CLASSIFIER_HEADS = ("classifier", "score")
DEFAULT_TASK = {"decoder": "causal-lm", "encoder": "classification", "encoder-decoder": "seq2seq"}
# which tasks a family can train: an encoder has no language-model head lorakit trains, a decoder
# could classify (transformers has *ForSequenceClassification for LLaMA and GPT-2)
FAMILY_TASKS = {
    "decoder": ("causal-lm", "classification"),
    "encoder": ("classification",),
    "encoder-decoder": ("seq2seq",),
}


def family_of(model_type: str) -> str:
    """'decoder', 'encoder' or 'encoder-decoder' for a config's ``model_type`` (unknown: 'decoder',
    what transformers' AutoModelForCausalLM would try)."""
    return FAMILY.get(str(model_type), "decoder")


def default_task(model_type: str) -> str:
    """The task a model of this type trains for when ``RunConfig.task`` is left empty."""
    return DEFAULT_TASK[family_of(model_type)]


def task_problem(task: str, model_type: str) -> str:
    """Why ``task`` cannot train a ``model_type`` model ("" when it can, or when the task is empty)."""
    if not task:
        return ""
    if task not in TASKS:
        return f"task must be one of {', '.join(map(repr, TASKS))} or '' (from the model); got {task!r}"
    family = family_of(model_type)
    if task not in FAMILY_TASKS[family]:
        allowed = ", ".join(map(repr, FAMILY_TASKS[family]))
        return f"task {task!r} does not fit a {model_type} model ({family}); it trains for {allowed}"
    return ""
