"""What autograd saves for backward in one training forward of a T5 encoder-decoder (per token, as
``activations.py`` does for LLaMA; derived from ``memory.saved_activation_tensors`` on 2-layer T5 and
T5 v1.1 models built from configs, fp32, CPU, LoRA).

Assumes the target (decoder) sequence as long as the input (``seq_len`` both): a run's plan passes the longer of
a batch's inputs and targets (``run_plan.batch_shapes``, ``planner._batch_shape``), an upper bound where they differ
(1.4-1.8x on the tiny T5, benchmarks/RESULTS.md). With activation
checkpointing, only the blocks' inputs stay (``_checkpointed_bytes``). Each block is pre-norm
(T5's RMS LayerNorm: input and 1/rms, as LLaMA's): self-attention (q, k, v, o; the relative position
bias is a float mask, so sdpa takes its fp32 math path, as with dropout), in the decoder a cross-
attention whose k and v read the encoder's output, then the MLP (wi, ReLU, dropout, wo; T5 v1.1:
wi_0 with gelu_new times wi_1), each sublayer's output dropped out (0.1) and added. The LM head reads
the decoder's last state (scaled by d_model^-0.5 when tied); the loss keeps the log-softmax in the
logits' dtype (T5 does not upcast them, unlike the decoders).
"""
from __future__ import annotations

from lorakit.memory.planning.encoder import EncoderLayer
from lorakit.memory.planning.gpt2 import ACT_SAVES
from lorakit.memory.planning.layer import CPU_RNG_STATE, CUDA_RNG_STATE
from lorakit.memory.planning.states import FP32


class T5Layer(EncoderLayer):
    """Per-token bytes of T5's sublayers (dropout masks and attention as BERT's, norms as LLaMA's)."""

    def norm(self, input_req: bool) -> int:
        if not input_req:
            return self.d.hidden * self.e if self.s.full else 0
        # the input's fp32 copy (for the variance) and 1/rms; a 16-bit input is kept too (the product's)
        b = self.d.hidden * FP32 + FP32 + (self.d.hidden * self.e if self.e != FP32 else 0)
        return b + (self.d.hidden * self.e if self.s.full else 0)

    def quantized_layer(self, name: str) -> bool:
        return name != "wo"  # T5's _keep_in_fp32_modules

    def d_out(self, name: str) -> int:
        return self.d.inter if name.startswith("wi") else self.d.heads * self.d.head_dim if name in "qkv" else \
            self.d.hidden

    def self_attention(self, gin: bool) -> tuple[int, bool]:
        d, s = self.d, self.s
        b = self.norm(gin)
        h_req = gin or s.full
        b += self.projections(h_req, ("q", "k", "v"), d.hidden)
        q_req, k_req, v_req = (h_req or self.trainable(n) for n in ("q", "k", "v"))
        attended, out_req = self.attend(gin, q_req, k_req, v_req)
        return b + attended, out_req

    def attend(self, gin: bool, q_req: bool, k_req: bool, v_req: bool) -> tuple[int, bool]:
        """How both attentions end: attention over q, k, v, the output projection o and its dropout."""
        d = self.d
        b = self.attention_qkv(q_req, k_req, v_req)
        attn_req = q_req or k_req or v_req
        b += self.projections(attn_req, ("o",), d.heads * d.head_dim)
        o_req = attn_req or self.trainable("o")
        b += self.dropout_mask(o_req, d.resid_dropout, d.hidden)
        return b, gin or o_req

    def cross_attention(self, gin: bool, enc_req: bool) -> tuple[int, bool]:
        """q from the decoder; k and v from the encoder's output (which requires grad under any LoRA:
        every target name is in the encoder too); per decoder token, the encoder as long."""
        d, s = self.d, self.s
        b = self.norm(gin)
        h_req = gin or s.full
        b += self.projections(h_req, ("q",), d.hidden)
        b += self.projections(enc_req, ("k", "v"), d.hidden, input_saved=True)  # the shared encoder output
        q_req = h_req or self.trainable("q")
        k_req, v_req = (enc_req or self.trainable(n) for n in ("k", "v"))
        attended, out_req = self.attend(gin, q_req, k_req, v_req)
        return b + attended, out_req

    def mlp_block(self, gin: bool) -> tuple[int, bool]:
        d, s = self.d, self.s
        b = self.norm(gin)
        m_req = gin or s.full
        if d.gated:
            b += self.projections(m_req, ("wi_0", "wi_1"), d.hidden)
            g_req, u_req = m_req or self.trainable("wi_0"), m_req or self.trainable("wi_1")
            if g_req:
                b += ACT_SAVES.get(d.act, 1) * d.inter * self.e + d.inter * self.e  # act(wi_0), wi_1 for the product
            if u_req:
                b += d.inter * self.e  # act(wi_0) output, for wi_1's gradient
            f_req = g_req or u_req
        else:
            b += self.projections(m_req, ("wi",), d.hidden)
            f_req = m_req or self.trainable("wi")
            b += d.inter * self.e if f_req else 0  # ReLU's output
        b += self.dropout_mask(f_req, d.resid_dropout, d.inter)
        b += self.projections(f_req, ("wo",), d.inter)  # the dropped activation
        w_req = f_req or self.trainable("wo")
        b += self.dropout_mask(w_req, d.resid_dropout, d.hidden)
        return b, gin or w_req

    def checkpointed_bytes(self) -> int:
        """With activation checkpointing each block keeps its inputs: its hidden state, in the decoder the
        encoder's output (one tensor for all blocks), and in blocks after the first the position bias (nh x
        seq x seq, shared; the decoder's self- and cross-attention ones); reentrant checkpointing (a
        quantized base) also an RNG state per block. Embedding dropouts, final norms and dropouts, the loss
        as without checkpointing (input grads on: every embedding output requires grad)."""
        d, s = self.d, self.s
        mask = self.dropout_mask(True, d.resid_dropout, d.hidden)
        per_token = 2 * (mask + self.norm(True) + mask) + (d.layers + d.decoder_layers + 1) * d.hidden * self.e
        bias = d.heads * s.seq_len ** 2 * self.e
        fixed = self.e + (bias if d.layers > 1 else 0) + (2 * bias if d.decoder_layers > 1 else 0)
        if s.quantized:
            fixed += (d.layers + d.decoder_layers) * (CPU_RNG_STATE + (CUDA_RNG_STATE if s.device == "cuda" else 0))
        return s.tokens * (per_token + d.vocab * self.e) + fixed

    def activation_bytes(self) -> int:
        """Bytes autograd saves in one forward of encoder and decoder (LoRA or full fine-tuning)."""
        d, s = self.d, self.s
        if s.gradient_checkpointing:
            return self.checkpointed_bytes()
        gin = s.full
        per_token = self.dropout_mask(gin, d.resid_dropout, d.hidden)  # encoder embedding dropout
        for _ in range(d.layers):
            b, gin = self.self_attention(gin)
            b2, gin = self.mlp_block(gin)
            per_token += b + b2
        per_token += self.norm(gin) + self.dropout_mask(gin, d.resid_dropout, d.hidden)  # final norm, dropout
        enc_req = gin
        if s.full or s.quant == "int8":  # the encoder output, kept once by every cross-attention's k and v
            per_token += d.hidden * self.e  # (their weight gradients; int8: bitsandbytes' matmul keeps its input)
        gin = s.full
        per_token += self.dropout_mask(gin, d.resid_dropout, d.hidden)
        for _ in range(d.decoder_layers):
            b, gin = self.self_attention(gin)
            b2, gin = self.cross_attention(gin, enc_req)
            b3, gin = self.mlp_block(gin)
            per_token += b + b2 + b3
        per_token += self.norm(gin) + self.dropout_mask(gin, d.resid_dropout, d.hidden)
        fixed = self.e  # the loss's total weight (in the logits' dtype)
        if s.full:
            per_token += d.hidden * self.e  # lm_head's input
            # trained embeddings keep their indices: each stack's relative-position buckets (seq x seq int64),
            # the decoder's shifted input ids (int64); the trained position bias makes each decoder layer keep
            # the causal mask (seq x seq bool)
            fixed += 2 * s.seq_len ** 2 * 8 + s.tokens * 8 + d.decoder_layers * s.seq_len ** 2
        return s.tokens * (per_token + d.vocab * self.e) + fixed  # + the log-softmax, in the logits' dtype
