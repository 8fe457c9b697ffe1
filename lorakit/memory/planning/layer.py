"""What autograd saves for backward in one training forward of a LLaMA-family model: ``LayerModel``, whose
subclasses are the other families (``gpt2``, ``encoder`` (BERT), ``t5``); ``activations.layer_model`` picks one.

Derived from ``memory.saved_activation_tensors`` on tiny-llama and SmolLM2 (fp32, CPU), where it
matches to the byte. Per token (N = batch*seq tokens; the output head and the loss per row of the
logits, ``Step.loss_rows``: every position, or only the labelled ones with lorakit's labelled-only
head), H hidden, I intermediate, nh/nkv heads of hd dims, r rank, e the activation element size;
"req" = requires grad. A tensor is saved only when some input of the op that needs it requires grad,
so a frozen nn.Linear saves nothing (its input is needed only for the weight gradient) while the
first layer of a LoRA model (whose embedding output does not require grad) saves less than the others.
"""
from __future__ import annotations

import math

from lorakit.memory.planning.model import Dims, Step
from lorakit.memory.planning.states import DTYPE_BYTES, FP32

CPU_RNG_STATE = 5056  # bytes of torch.get_rng_state() (mt19937)
CUDA_RNG_STATE = 16  # bytes of torch.cuda.get_rng_state() (philox seed + offset)


def residual_bytes(step: Step) -> int:
    """Element size of the residual stream: the dtype, except on a quantized base, where
    prepare_model_for_kbit_training made embeddings/norms fp32 and bitsandbytes layers return
    their input's dtype, so activations stay fp32 whatever the compute dtype."""
    return FP32 if step.quantized else DTYPE_BYTES[step.dtype]


class LayerModel:
    """Per-token bytes one decoder layer saves, part by part."""

    def __init__(self, dims: Dims, step: Step):
        self.d, self.s = dims, step
        self.e = residual_bytes(step)
        self.e_lora = DTYPE_BYTES[step.adapter_dtype]  # peft casts the LoRA branch input to the adapter dtype
        # dropout mask: bool on CUDA, the input's dtype on CPU
        self.mask_bytes = 1 if step.device == "cuda" else self.e_lora
        self.fixed = 0  # bytes per decoder layer that do not grow with the tokens (DoRA's), summed over layer()

    def quantized_layer(self, name: str) -> bool:
        """Whether bitsandbytes quantizes the layers ``name`` (T5 keeps ``wo`` in fp32)."""
        return True

    def trainable(self, name: str) -> bool:
        return self.s.full or name in self.s.targets

    def projections(self, input_req: bool, names: tuple, d_in: int, input_saved: bool = False) -> int:
        """Bytes saved for the input of projections ``names`` sharing one input tensor."""
        s, b = self.s, 0
        shared = False  # the input tensor itself kept (counted once for all of them)
        for name in names:
            if s.full:
                shared = True  # weight gradient needs the input
            elif s.quant == "int8" and input_req and self.quantized_layer(name):
                shared = True  # bnb's int8 matmul keeps its input as ctx.A when it requires grad
            if name in s.targets:
                if s.dropout > 0:
                    b += d_in * self.e_lora  # dropout output, input of lora_A (its weight gradient needs it)
                    if input_req:
                        b += d_in * self.mask_bytes  # dropout mask (saved only when the input requires grad)
                elif self.e != self.e_lora:
                    b += d_in * self.e_lora  # the fp32 cast of the input
                else:
                    shared = True  # lora_A keeps the very input tensor
                b += s.rank * self.e_lora  # A x: input of lora_B
                if s.use_dora:
                    b += self.dora(input_req, name, d_in)
        if shared and not input_saved:
            b += d_in * self.e
        return b

    def d_out(self, name: str) -> int:
        d = self.d
        kv = d.kv_heads * d.head_dim
        return {"q_proj": d.heads * d.head_dim, "k_proj": kv, "v_proj": kv, "o_proj": d.hidden,
                "gate_proj": d.inter, "up_proj": d.inter, "down_proj": d.hidden}[name]

    def dora(self, input_req: bool, name: str, d_in: int) -> int:
        """DoRA's extra bytes for one adapted layer: per token returned, per layer added to ``fixed``.
        peft's DoraLinearLayer builds the LoRA weight as lora_B(lora_A(eye(d_in))), saving the identity
        (d_in x d_in) and A·eye (d_in x r); m / ||W + s·BA|| saves the norm (d_out); the output
        (m/n - 1)·base + (m/n)·lora saves the base and LoRA results (d_out per token each), m/n (d_out) and,
        when the base result requires grad, m/n - 1 (d_out). With dropout the base result is recomputed from
        the dropped input (in the adapter dtype), and when W had to be dequantized or cast to that dtype,
        F.linear keeps the copy (d_in x d_out) if the input requires grad."""
        s, el, out = self.s, self.e_lora, self.d_out(name)
        self.fixed += (d_in * d_in + d_in * s.rank + 2 * out + (out if input_req else 0)) * el
        if s.dropout > 0 and input_req and (s.quantized or s.dtype != s.adapter_dtype):  # W a new tensor
            self.fixed += d_in * out * el
        return out * ((el if s.dropout > 0 else self.e) + el)

    def norm(self, input_req: bool) -> int:
        b = 0
        if input_req:
            b += self.d.hidden * FP32 + FP32  # input as fp32 (pow/mul) + rsqrt of the variance (one per token)
        if self.s.full:
            b += self.d.hidden * self.e  # normalised input, for the norm weight's gradient
        return b

    @property
    def math_attention(self) -> bool:
        """CUDA with fp32 queries and grouped-query attention: flash attention has no fp32 kernel and
        the memory-efficient one no GQA, so sdpa falls back to its math path (seen on an H200)."""
        return (self.s.device == "cuda" and self.e == FP32 and self.d.kv_heads < self.d.heads
                and not self.s.padded)

    def attention(self, q_req: bool, k_req: bool, v_req: bool) -> int:
        """sdpa (flash on CPU, GQA without repeat_kv): rotated q (nh*hd), rotated k (nkv*hd), v (nkv*hd,
        the v_proj output), output (nh*hd) and the fp32 log-sum-exp (nh). With padding transformers
        passes a mask, so k and v are first repeated to nh heads, and the kernel saves the mask
        converted to the query dtype (batch x seq x seq, per layer). The math path saves instead
        what each of its ops needs: k^T (for q's gradient), q (for k's), the softmax output
        (nh x seq per token) and v repeated to nh heads (for the probabilities' gradient)."""
        d, s = self.d, self.s
        if self.math_attention:
            probs_req = q_req or k_req
            b = d.heads * d.head_dim * self.e * (int(q_req) + int(k_req) + int(probs_req))
            return b + (d.heads * s.seq_len * self.e if probs_req or v_req else 0)
        kv = d.heads if s.padded else d.kv_heads
        b = (2 * d.heads * d.head_dim + 2 * kv * d.head_dim) * self.e
        if s.padded:
            b += s.seq_len * self.e
        lse_rows = s.seq_len if s.device != "cuda" else 32 * math.ceil(s.seq_len / 32)
        return b + d.heads * FP32 * lse_rows // s.seq_len

    def mlp(self, h2_req: bool) -> tuple[int, bool]:
        """(bytes, output of the product requires grad) for gate/up, silu and their product."""
        b = self.projections(h2_req, ("gate_proj", "up_proj"), self.d.hidden)
        g_req, u_req = h2_req or self.trainable("gate_proj"), h2_req or self.trainable("up_proj")
        # act = silu(gate) saves gate; act * up saves act if up requires grad and up if act does
        if g_req:
            b += 2 * self.d.inter * self.e  # gate (silu's backward) and up (the product's backward)
        if u_req:
            b += self.d.inter * self.e  # act, for the product's backward w.r.t. up
        return b, g_req or u_req

    def layer(self, gin: bool) -> tuple[int, bool, bool]:
        """(per-token bytes, output requires grad, rotary cos/sin saved) for one decoder layer."""
        d = self.d
        b = self.norm(gin)  # input_layernorm
        h_req = gin or self.s.full
        b += self.projections(h_req, ("q_proj", "k_proj", "v_proj"), d.hidden)
        q_req, k_req, v_req = (h_req or self.trainable(n) for n in ("q_proj", "k_proj", "v_proj"))
        attn_req = q_req or k_req or v_req
        if attn_req:
            b += self.attention(q_req, k_req, v_req)
        # o_proj's input is the sdpa output, already saved when the flash kernel is.
        b += self.projections(attn_req, ("o_proj",), d.heads * d.head_dim,
                              input_saved=attn_req and not self.math_attention)
        r_req = gin or attn_req or self.trainable("o_proj")  # residual stream after attention
        b += self.norm(r_req)  # post_attention_layernorm
        mlp_b, p_req = self.mlp(r_req or self.s.full)
        b += mlp_b
        b += self.projections(p_req, ("down_proj",), d.inter)  # the product act*up (not otherwise saved)
        return b, r_req or p_req or self.trainable("down_proj"), q_req or k_req

    def embedding_bytes(self, gin: bool) -> tuple[int, int]:
        """(per token, fixed) bytes the embeddings save: a LLaMA's none (``gin``: their output requires grad)."""
        return 0, 0

    def activation_bytes(self) -> int:
        """Bytes autograd saves for backward in one training forward (see the module docstring)."""
        per_token = fixed = 0
        if self.s.gradient_checkpointing:
            # Checkpointed layers keep only their input (the hidden state entering the layer); the
            # rest is recomputed during backward. Layer 0's input requires grad here (peft/transformers
            # enable input grads with checkpointing).
            per_token += self.d.layers * self.d.hidden * self.e
            final_req = True
            if self.s.quantized:
                # peft's prepare_model_for_kbit_training turns on transformers' default (reentrant)
                # checkpointing, whose autograd node also keeps the RNG state of each layer's forward.
                fixed += self.d.layers * (CPU_RNG_STATE + (CUDA_RNG_STATE if self.s.device == "cuda" else 0))
            emb_token, emb_fixed = self.embedding_bytes(True)
        else:
            gin = self.s.full  # a LoRA model's embedding output does not require grad; full fine-tuning's does
            emb_token, emb_fixed = self.embedding_bytes(gin)
            rope_saved = False
            for _ in range(self.d.layers):
                b, gin, rope = self.layer(gin)
                per_token += b
                rope_saved |= rope
            final_req = gin
            if rope_saved:
                fixed += 2 * self.s.seq_len * self.d.head_dim * self.e  # rotary cos and sin (batch dim 1), shared
            fixed += self.fixed  # DoRA's per-layer tensors
        per_token += emb_token
        fixed += emb_fixed + FP32  # nll_loss's total weight
        return self.output_bytes(per_token, fixed, final_req)

    def output_bytes(self, per_token: int, fixed: int, final_req: bool) -> int:
        """The forward's bytes from the layers' ``per_token`` and ``fixed`` ones: adds the final norm, and the
        head and loss on ``Step.loss_rows`` rows (``final_req``: the last hidden state requires grad)."""
        per_token += self.norm(final_req)  # final norm
        per_row = loss_bytes_per_token(self.d, self.s)  # rows of the logits: every position, or the labelled ones
        if self.s.full:
            per_row += self.d.hidden * self.e  # lm_head input, for the (tied) head weight's gradient
        return self.s.tokens * per_token + self.s.loss_rows * per_row + fixed


def loss_bytes_per_token(dims: Dims, step: Step) -> int:
    """Per row of the logits: transformers upcasts them to fp32; log_softmax saves its fp32 (N, V) result,
    nll_loss its int64 shifted targets (N). The logits themselves are not saved. The labelled-only head
    (``labelled_loss``) also keeps the int64 row index its gather (``index_select``) needs in backward."""
    return dims.vocab * FP32 + 8 + (0 if step.labelled is None else 8)
