"""What the export tests share: one left-padded batch of chat prompts, and a model's logits for it."""
from __future__ import annotations

import torch


def chat_batch(tok):
    """Three chat prompts (the template applied, generation prompt added), left-padded as generation pads."""
    texts = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
             for t in ("Extract the name: Ada, 36, London", "What is 12 + 30?", "Say hi")]
    return tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)


def logits(model, enc):
    with torch.no_grad():
        return model(**enc).logits.float()
