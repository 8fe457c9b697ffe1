"""A causal LM's loss with its output head run only where a label is set.

The built-in tasks train on the answer tokens only (labels -100 on the prompt and the padding), yet a
causal LM's forward applies its vocabulary-wide head (SmolLM2: 576 x 49,152, about a fifth of the
forward's matmul FLOPs) and the fp32 log-softmax at every position, and the (N, V) fp32 logits and their
gradient are a step's largest transient. ``labelled_loss`` runs the model's body, keeps the hidden states
whose shifted label is set, and gives only those rows to the head and to the model's own loss function
(transformers' ``ForCausalLMLoss``, called with the already-shifted targets): each loss term is the same
number as in the model's forward, and so is the reduction (mean, or sum / ``num_items_in_batch``).

Taken only where it is that same computation: a transformers causal LM of a family whose forward is
``loss_function(lm_head(body(...).last_hidden_state), labels)`` (no logit scaling or soft-capping), bare or
under a peft LoRA wrapper (peft injects its layers into the body, so they stay active; gradient
checkpointing and bitsandbytes layers live there too). Otherwise ``lm_parts`` says None and the caller
runs the model's own forward.
"""
from __future__ import annotations

from typing import Optional

# families whose XForCausalLM.forward is head(body(...).last_hidden_state) then ForCausalLMLoss (checked in
# transformers' source; Gemma's soft-capping, Cohere's logit_scale, Granite's logits_scaling are not)
PLAIN_HEAD_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gpt2")
IGNORE = -100  # transformers' ignore_index


def lm_parts(model) -> Optional[tuple]:
    """``(body, head, loss_function, vocab)`` of a causal LM whose loss can be taken at the labelled rows
    alone, or None. ``model``: a transformers model or a peft model around one (not prompt learning)."""
    from transformers import PreTrainedModel
    from transformers.loss.loss_utils import LOSS_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    inner = model
    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        if getattr(model.active_peft_config, "is_prompt_learning", True):
            return None  # virtual tokens are prepended in peft's own forward
        inner = model.get_base_model()
    if not isinstance(inner, PreTrainedModel) or inner.config.model_type not in PLAIN_HEAD_FAMILIES:
        return None
    if type(inner).__name__ not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        return None  # a classifier or another head on the same body
    body, head = inner.base_model, inner.get_output_embeddings()
    if body is inner or head is None or inner.loss_function is not LOSS_MAPPING["ForCausalLM"]:
        return None
    return body, head, inner.loss_function, inner.config.vocab_size


def labelled_rows(labels):
    """``(rows, targets)``: the flat (batch x seq) positions whose next token is labelled, and those
    labels. Shifted as transformers does: pad each row with -100, position t predicts label t + 1."""
    import torch.nn.functional as F

    shifted = F.pad(labels, (0, 1), value=IGNORE)[:, 1:].reshape(-1)  # (B*T,)
    rows = (shifted != IGNORE).nonzero().squeeze(1)  # (N_lab,) int64
    return rows, shifted.index_select(0, rows)


def labelled_loss(parts: tuple, inputs: dict, num_items_in_batch=None):
    """The model's loss on ``inputs`` (with ``labels``) computed at the labelled rows only, as a
    ``CausalLMOutputWithPast`` whose ``logits`` are those rows' (N_lab, V). ``parts``: ``lm_parts(model)``.
    ``num_items_in_batch``: as the Trainer passes it to the model (sum / it; None: the mean)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    body, head, loss_function, vocab = parts
    kwargs = {k: v for k, v in inputs.items() if k != "labels"}
    if num_items_in_batch is not None:
        kwargs["num_items_in_batch"] = num_items_in_batch  # the model's forward passes it to the body too
    hidden = body(**kwargs).last_hidden_state  # (B, T, H)
    rows, targets = labelled_rows(inputs["labels"].to(hidden.device))
    # index_select keeps only the (N_lab,) row index for backward, no copy of the hidden states
    logits = head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows))  # (N_lab, V)
    loss = loss_function(logits=logits, labels=None, vocab_size=vocab, num_items_in_batch=num_items_in_batch,
                         shift_labels=targets)
    return CausalLMOutputWithPast(loss=loss, logits=logits)
