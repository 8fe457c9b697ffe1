"""Steady bytes: base weights as stored, adapters, gradients and optimizer state.

- **base weights** per module: a bitsandbytes-quantized linear layer (every ``nn.Linear`` except
  the output head, which transformers leaves unquantized) stores
  int8: ``d_in*d_out`` int8 + one fp32 scale (SCB) per output row;
  nf4/fp4: ``ceil(numel/2)`` packed bytes + a 16-entry fp32 code book + per 64-block absmax: fp32,
  or with double quantization uint8 + (per 256 absmax blocks one fp32) + an fp32 offset + a
  256-entry fp32 code (bitsandbytes keeps one such nested state *per layer*, so double
  quantization only pays off for layers above ~22k weights).
  A classifier's head and the module of the last parameter stay unquantized too (transformers'
  ``get_keys_to_not_convert``). Everything else (embeddings, norms, an untied head) in ``dtype``, or
  fp32 when the base is quantized (but the bias of a 4-bit layer: bitsandbytes casts it to the compute
  dtype in the first forward) (peft's ``prepare_model_for_kbit_training``, called by ``adapters.attach_lora``, casts
  fp16/bf16 parameters to fp32); buffers (rotary inverse frequencies) as built.
- **adapters**: ``r*(d_in+d_out)`` per adapted layer in the adapter dtype (fp32 unless asked: peft
  upcasts adapter weights to fp32); DoRA adds its magnitude, ``d_out`` per adapted layer, in the same
  dtype. The other variants (rsLoRA, PiSSA/OLoRA/LoftQ init, LoRA+) change values, not sizes.
- **head**: a sequence classifier's new head trains in full under LoRA too (peft's ``modules_to_save``
  keeps a trained copy beside the frozen original): the copy counts in base weights, its gradients and
  optimizer state in theirs (``MemoryBreakdown.head`` shows the share), as ``memory.measure`` counts them.
- **gradients**: one gradient per trainable parameter, in its dtype.
- **optimizer**: torch AdamW: exp_avg + exp_avg_sq in the parameter's dtype + a 4-byte step per
  tensor; bitsandbytes 8-bit AdamW: two uint8 states + two fp32 absmax per 256-block, except
  tensors under 4096 elements (``min_8bit_size``), which keep two fp32 states; plus the two
  256-entry fp32 quantization maps shared by all tensors.
"""
from __future__ import annotations

import math

from lorakit.config.parts import four_bit
from lorakit.memory.planning.model import Step, Tally

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
FP32 = 4
_BNB_4BIT_BLOCK = 64  # weights per absmax (bitsandbytes 4-bit)
_BNB_NESTED_BLOCK = 256  # absmax values per fp32 scale under double quantization
_BNB_NESTED_CODE = 256  # fp32 entries of the nested (dynamic 8-bit) code
_BNB_4BIT_CODE = 16  # fp32 entries of the nf4/fp4 code book
_OPT8_BLOCK = 256  # bitsandbytes 8-bit optimizer block size
_OPT8_MIN_SIZE = 4096  # bitsandbytes min_8bit_size: smaller tensors keep fp32 state
_OPT8_QMAP = 256  # fp32 entries of each of the two quantization maps


def quantized_linear_bytes(d_in: int, d_out: int, quant: str, double_quant: bool = True) -> int:
    """Bytes bitsandbytes stores for one (d_out x d_in) linear weight under ``quant``."""
    n = d_in * d_out
    if quant == "int8":
        return n + FP32 * d_out  # int8 rows + fp32 SCB scale per row
    if four_bit(quant):
        blocks = math.ceil(n / _BNB_4BIT_BLOCK)
        total = math.ceil(n / 2) + FP32 * _BNB_4BIT_CODE
        if double_quant:
            total += blocks  # uint8 absmax
            total += FP32 * math.ceil(blocks / _BNB_NESTED_BLOCK)  # nested absmax
            total += FP32 + FP32 * _BNB_NESTED_CODE  # offset + nested code
        else:
            total += FP32 * blocks
        return total
    raise ValueError(f"quant must be 'int8', 'nf4' or 'fp4', got {quant!r}")


def base_weight_bytes(tally: Tally, step: Step) -> int:
    # Unquantized parameters: dtype, or fp32 after prepare_model_for_kbit_training (quantized base).
    plain = FP32 if step.quantized else DTYPE_BYTES[step.dtype]
    total = tally.buffers
    for _, d_in, d_out, is_head in tally.linears:
        if step.quantized and not is_head:
            total += quantized_linear_bytes(d_in, d_out, step.quant, step.double_quant)
        else:
            total += d_in * d_out * plain
    for numel, _ in tally.others:
        total += numel * plain
    # a 4-bit layer's bias: bitsandbytes casts it to the compute dtype in the first forward
    total += sum(tally.biases) * (DTYPE_BYTES[step.dtype] if step.base.four_bit else plain)
    if not step.full:
        total += sum(tally.head) * plain  # peft's modules_to_save: the trained copy beside the frozen head
    return total


def head_tensors(tally: Tally, step: Step) -> list[tuple[int, int]]:
    """(numel, element size) of a classifier head's trainable parameters (peft's copy under LoRA, the head
    itself under full fine-tuning): in the dtype, fp32 on a quantized base (prepare_model_for_kbit_training)."""
    es = FP32 if step.quantized and not step.full else DTYPE_BYTES[step.dtype]
    return [(n, es) for n in tally.head]


def trainable_tensors(tally: Tally, step: Step) -> list[tuple[int, int]]:
    """(numel, element size) of every trainable tensor: all weights (full) or lora_A/lora_B, then a
    classifier head's (``head_tensors``, LoRA only: full fine-tuning has them among all weights)."""
    if step.full:
        es = DTYPE_BYTES[step.dtype]
        return ([(d_in * d_out, es) for _, d_in, d_out, _ in tally.linears] + [(n, es) for n, _ in tally.others]
                + [(n, es) for n in tally.biases])
    tensors = []
    for g in tally.groups:
        if g.name in step.targets:  # lora_A: r x d_in and lora_B: d_out x r per layer (DoRA: + m, d_out)
            es = DTYPE_BYTES[step.adapter_dtype]
            layer = [(step.rank * g.d_in, es), (g.d_out * step.rank, es)] + ([(g.d_out, es)] if step.use_dora else [])
            tensors += layer * g.count
    return tensors + head_tensors(tally, step)


def optimizer_bytes(tensors: list[tuple[int, int]], optimizer: str) -> int:
    """Optimizer state for trainable tensors given as (numel, element_size)."""
    if optimizer == "adamw":
        # exp_avg, exp_avg_sq (param dtype) + step (fp32 scalar)
        return sum(2 * numel * es + FP32 for numel, es in tensors)
    total = 0
    any8 = False
    for numel, _ in tensors:
        if numel < _OPT8_MIN_SIZE:
            total += 2 * numel * FP32  # small tensors: 32-bit state1/state2
        else:
            any8 = True
            total += 2 * numel + 2 * FP32 * math.ceil(numel / _OPT8_BLOCK)
    if any8:
        total += 2 * FP32 * _OPT8_QMAP  # shared signed/unsigned dynamic maps
    return total
