"""Loading a base model: the registry's models, heads, quantization (bitsandbytes), 4-bit layouts, compute dtype, the
labelled-only head.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "load_model": "loading",
    "list_models": "loading",
    "LoadedModel": "loading",
    "ModelUnavailable": "loading",
    "model_dir": "loading",
    "building": "loading",
    "default_device": "loading",
    "bnb_config": "quantization",
    "quantization_error": "quantization",
    "quant_state_bytes": "quantization",
    "QuantizationUnavailable": "quantization",
    "usual_4bit": "bnb_layout",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
