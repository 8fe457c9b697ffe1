"""Taking a run home: a peft adapter, a merged model or a GGUF (+ Ollama Modelfile), with a model card.
"""
