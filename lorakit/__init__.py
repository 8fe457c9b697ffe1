"""lorakit: LoRA and QLoRA fine-tuning you can see, from a notebook or the command line."""
from .config import ConfigError, RunConfig
from .memory import MemoryBreakdown
from .models import ModelUnavailable, list_models, load_model

__version__ = "0.1.0"
