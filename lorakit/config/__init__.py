"""What can be chosen (models, families, targets, recommended values) and one run's settings, RunConfig.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "RunConfig": "run_config",
    "ConfigError": "run_config",
    "field_problems": "run_config",
    "field_docs": "run_config",
    "variant_name": "run_config",
    "builtin_model_type": "run_config",
    "METHODS": "run_config",
    "QUANTS": "run_config",
    "DTYPES": "run_config",
    "DTYPE_CHOICES": "run_config",
    "OPTIMIZERS": "run_config",
    "INITS": "run_config",
    "TRACKERS": "run_config",
    "REGISTRY": "registry",
    "family_of": "families",
    "default_task": "families",
    "PRESETS": "targets",
    "LAYOUTS": "targets",
    "recommended": "recommend",
    "RECOMMENDED": "recommend",
    "Settings": "parts",
    "Base": "parts",
    "Adapter": "parts",
    "Shape": "parts",
    "split": "parts",
    "four_bit": "parts",
    "positive_int": "parts",
    "quant_of": "parts",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
