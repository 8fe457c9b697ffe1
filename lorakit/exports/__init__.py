"""Taking a run home: a peft adapter, a merged model or a GGUF (+ Ollama Modelfile), with a model card.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "export": "writer",
    "ExportError": "writer",
    "FORMATS": "writer",
    "GGUF_TYPES": "gguf",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
