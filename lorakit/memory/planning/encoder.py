"""What autograd saves for backward in one training forward of a BERT-family encoder classifier (per
token, as ``activations.py`` does for LLaMA; derived from ``memory.saved_activation_tensors`` on a
2-layer BERT and RoBERTa built from a config, fp32, CPU, LoRA and full fine-tuning).

A BERT layer is post-LN: attention (separate query, key, value ``nn.Linear``), its output projection,
dropout, residual add, LayerNorm; then intermediate.dense, GELU, output.dense, dropout, residual add,
LayerNorm. With attention dropout (0.1) torch's sdpa on CPU takes its math path, in fp32: it keeps k^T
for q's gradient, q for k's, v and the softmax output and its dropout mask for the probabilities'
gradient, and the dropped probabilities for v's. The head works on the first token only, so it saves
mostly per example, not per token (``head_bytes``); the loss is a cross-entropy over the labels.
"""
from __future__ import annotations

import math

from lorakit.memory.planning.gpt2 import ACT_SAVES, GPT2Layer
from lorakit.memory.planning.states import FP32


class EncoderLayer(GPT2Layer):
    """Per-token bytes one BERT layer saves (LayerNorm and dropout masks as GPT-2's)."""

    def d_out(self, name: str) -> int:
        return self.d.inter if name == "intermediate.dense" else self.d.hidden

    def attention_qkv(self, q_req: bool, k_req: bool, v_req: bool) -> int:
        d, s = self.d, self.s
        if not (q_req or k_req or v_req):
            return 0
        if s.device == "cuda" or d.attn_dropout == 0:  # flash / memory-efficient kernel (not checked on a GPU)
            lse_rows = 32 * math.ceil(s.seq_len / 32) if s.device == "cuda" else s.seq_len
            return 4 * d.hidden * self.e + d.heads * FP32 * lse_rows // s.seq_len
        probs_req = q_req or k_req
        b = d.hidden * FP32 * (int(q_req) + int(k_req))  # k^T for q's gradient, q for k's
        if probs_req:
            b += d.hidden * FP32 + 2 * d.heads * s.seq_len * FP32  # v, softmax output, dropout mask
        if v_req:
            b += d.heads * s.seq_len * FP32  # the dropped probabilities
        return b

    def layer(self, gin: bool) -> tuple[int, bool, bool]:
        d, s = self.d, self.s
        h_req = gin or s.full
        b = self.projections(h_req, ("query", "key", "value"), d.hidden)
        q_req, k_req, v_req = (h_req or self.trainable(n) for n in ("query", "key", "value"))
        b += self.attention_qkv(q_req, k_req, v_req)
        attn_req = q_req or k_req or v_req
        b += self.projections(attn_req, ("attention.output.dense",), d.hidden)
        ao_req = attn_req or self.trainable("attention.output.dense")
        b += self.dropout_mask(ao_req, d.resid_dropout, d.hidden)
        r_req = gin or ao_req
        b += self.norm(r_req)  # attention.output.LayerNorm
        m_req = r_req or s.full
        b += self.projections(m_req, ("intermediate.dense",), d.hidden)
        i_req = m_req or self.trainable("intermediate.dense")
        if i_req:
            b += ACT_SAVES.get(d.act, 1) * d.inter * self.e
        b += self.projections(i_req, ("layer.output.dense",), d.inter)
        o_req = i_req or self.trainable("layer.output.dense")
        b += self.dropout_mask(o_req, d.resid_dropout, d.hidden)
        b += self.norm(r_req or o_req)  # output.LayerNorm
        return b, r_req or o_req, False

    def embedding_bytes(self, gin: bool) -> tuple[int, int]:
        """(per token, fixed): the embeddings' LayerNorm and dropout mask, when their output requires grad
        (full fine-tuning, or checkpointing's input grads); trained embeddings (full fine-tuning) keep their
        int64 indices: BERT its token types (seq; positions are a buffer), RoBERTa its token types and the
        positions it computes from the input ids (batch x seq each)."""
        if not gin:
            return 0, 0
        per_token = self.norm(True) + self.dropout_mask(True, self.d.resid_dropout, self.d.hidden)
        if not self.s.full:
            return per_token, 0
        return (per_token, 8 * self.s.seq_len) if self.d.pooler else (per_token + 2 * 8, 0)

    def head_bytes(self) -> tuple[int, int]:
        """(per token, per example) bytes of the head, which works on the first token. BERT: pooler.dense, tanh,
        dropout, classifier; RoBERTa (no pooler): dropout, dense, tanh, dropout, out_proj. The trained head
        keeps each linear's input, tanh its output, each dropout its mask; a trained pooler.dense keeps its
        input, a view of the last hidden state, whose whole storage (batch x seq) stays alive. Then the
        log-softmax over the labels (in the logits' dtype: BERT does not upcast them)."""
        d, e = self.d, self.e
        mask = self.dropout_mask(True, d.resid_dropout, d.hidden)
        if d.pooler:
            per_token = d.hidden * e if self.s.full or self.s.quant == "int8" else 0  # int8: bnb's matmul keeps it
            lora = self.projections(True, ("pooler.dense",), d.hidden, input_saved=True)
            return per_token, lora + d.hidden * e + mask + d.hidden * e + d.labels * e
        return 0, mask + d.hidden * e + d.hidden * e + mask + d.hidden * e + d.labels * e

    def output_bytes(self, per_token: int, fixed: int, final_req: bool) -> int:
        """Post-LN: no final norm; the head sees the first token of each example (``head_bytes``); the loss's
        total weight is in the logits' dtype."""
        head_token, head_example = self.head_bytes()
        fixed += self.e - FP32
        return self.s.tokens * (per_token + head_token) + fixed + self.s.batch_size * head_example
