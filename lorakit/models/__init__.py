"""Loading a base model: the registry's models, heads, quantization (bitsandbytes), 4-bit layouts, compute dtype, the
labelled-only head.
"""
