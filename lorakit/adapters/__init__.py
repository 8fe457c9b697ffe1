"""LoRA with peft: attaching, saving, loading and merging adapters, the variants, and the record of the base an adapter
was trained on; a full fine-tuning's kept model (``full_weights``).
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "attach_lora": "lora",
    "prepare_full": "lora",
    "linear_modules": "lora",
    "count_params": "lora",
    "expected_lora_params": "lora",
    "resolve_targets": "lora",
    "save_adapter": "lora",
    "load_adapter": "lora",
    "merge_adapter": "lora",
    "save_full": "full_weights",
    "load_full": "full_weights",
    "check_base": "base_record",
    "AdapterError": "base_record",
    "AdapterMismatch": "base_record",
    "effective_weight": "variants",
    "adapter_params": "variants",
    "loftq_init": "variants",
    "init_errors": "variants",
    "lora_layers": "variants",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
