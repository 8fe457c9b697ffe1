"""LoRA with peft: attaching, saving, loading and merging adapters, the variants, and the record of the base an adapter
was trained on.
"""
