"""What autograd saves for backward in one training forward of a GPT-2 model (per token, as
``activations.py`` does for LLaMA; derived from ``memory.saved_activation_tensors`` on tiny-gpt2, fp32,
CPU, where it matches to the byte).

GPT-2 differs from LLaMA where it matters for memory: learned position embeddings (added, nothing
rotated), LayerNorm with a bias (saves its input and a per-token mean and 1/std), q, k, v fused in one
Conv1D (``c_attn``: one LoRA pair on H -> 3H), a two-projection MLP (``c_fc``, ``mlp.c_proj``) around
gelu_new, and dropout (0.1 by default) on the attention probabilities, on each sublayer's output and
on the embeddings, each saving its mask when its input requires grad. With attention dropout, torch's
sdpa on CPU takes its math path, in fp32 even for 16-bit inputs: it saves q, k^T, v, the softmax
output, the dropout mask and the dropped probabilities (nh x seq each per token).
"""
from __future__ import annotations

import math

from lorakit.memory.planning.layer import LayerModel
from lorakit.memory.planning.states import FP32

# tensors an activation's backward keeps, in units of its input (gelu_new: x, x^3's input, tanh, ...)
ACT_SAVES = {"gelu_new": 4, "gelu_pytorch_tanh": 1, "gelu": 1, "relu": 1, "quick_gelu": 2}


class GPT2Layer(LayerModel):
    """Per-token bytes one GPT-2 block saves, part by part (``layer`` as ``LayerModel.layer``)."""

    def d_out(self, name: str) -> int:
        d = self.d
        return {"c_attn": 3 * d.hidden, "attn.c_proj": d.hidden, "c_fc": d.inter, "mlp.c_proj": d.hidden}[name]

    def norm(self, input_req: bool) -> int:
        """LayerNorm saves its input and the mean and 1/std per token, in the input's dtype (when anything
        needs them: its input's gradient or, in full fine-tuning, its weight's)."""
        return (self.d.hidden + 2) * self.e if input_req or self.s.full else 0

    def dropout_mask(self, req: bool, p: float, per_token: int) -> int:
        """A dropout mask, saved when its input requires grad (bool on CUDA, the input's dtype on CPU)."""
        return per_token * self.mask_bytes_of_residual if req and p > 0 else 0

    @property
    def mask_bytes_of_residual(self) -> int:
        return 1 if self.s.device == "cuda" else self.e

    def attention(self, req: bool) -> int:
        """sdpa over the fused q, k, v. CPU with attention dropout: the math path (q, k^T, v and, per head
        and key, the softmax output, its dropout mask and the dropped probabilities). Otherwise the
        flash / memory-efficient kernel: q, k, v, the output and the fp32 log-sum-exp (not checked on a GPU)."""
        if not req:
            return 0
        d, s = self.d, self.s
        if s.device != "cuda" and d.attn_dropout > 0:  # the math path computes in fp32 whatever the dtype
            return 3 * d.hidden * FP32 + 3 * d.heads * s.seq_len * FP32
        if s.device != "cuda":  # no dropout: the softmax output is what the product with v keeps too
            return 3 * d.hidden * self.e + d.heads * s.seq_len * self.e
        lse_rows = 32 * math.ceil(s.seq_len / 32)
        return 4 * d.hidden * self.e + d.heads * FP32 * lse_rows // s.seq_len

    def layer(self, gin: bool) -> tuple[int, bool, bool]:
        d, s = self.d, self.s
        b = self.norm(gin)  # ln_1
        h_req = gin or s.full
        b += self.projections(h_req, ("c_attn",), d.hidden)
        qkv_req = h_req or self.trainable("c_attn")
        b += self.attention(qkv_req)
        b += self.projections(qkv_req, ("attn.c_proj",), d.hidden)  # the merged heads: not otherwise saved
        a_req = qkv_req or self.trainable("attn.c_proj")
        b += self.dropout_mask(a_req, d.resid_dropout, d.hidden)  # resid_dropout
        r_req = gin or a_req  # the residual stream after attention
        b += self.norm(r_req)  # ln_2
        m_req = r_req or s.full
        b += self.projections(m_req, ("c_fc",), d.hidden)
        f_req = m_req or self.trainable("c_fc")
        if f_req:
            b += ACT_SAVES.get(d.act, 1) * d.inter * self.e
        b += self.projections(f_req, ("mlp.c_proj",), d.inter)  # the activation's output
        p_req = f_req or self.trainable("mlp.c_proj")
        b += self.dropout_mask(p_req, d.resid_dropout, d.hidden)  # mlp.dropout
        return b, r_req or p_req, False

    def embedding_bytes(self, gin: bool) -> tuple[int, int]:
        """(per token, fixed) bytes the embeddings save: the embedding dropout's mask when their output
        requires grad (full fine-tuning, or checkpointing's input grads); a trained position embedding
        (full fine-tuning) keeps its position ids (seq int64, batch dim 1)."""
        return self.dropout_mask(gin, self.d.resid_dropout, self.d.hidden), 8 * self.s.seq_len if self.s.full else 0
