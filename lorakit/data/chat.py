"""The chat template, applied the same way for training and for generation.

The prompt is the tokenizer's own chat template applied to the turns before the answer with
``add_generation_prompt=True`` (exactly what generation sees later); the answer is followed by the
template's end-of-turn token so the model learns to stop. A model without a chat template gets
plain turns separated by blank lines, and its EOS token as the end of turn.
"""
from __future__ import annotations

from lorakit.data.rows import DataError

# An answer no template alters (invisible separators around a name): what the template writes after it
# is the end-of-turn text.
_SENTINEL = "\u2063LORAKIT_ANSWER\u2063"


def end_of_turn(tokenizer) -> str:
    """The text the chat template puts after an assistant answer (e.g. ``<|im_end|>``), else EOS."""
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}], tokenize=False)
            tail = text.split(_SENTINEL, 1)[1].rstrip()
            if tail:
                return tail
        except Exception:  # a template that refuses this bare exchange: EOS is the best guess
            pass
    return tokenizer.eos_token or ""


def prompt_text(tokenizer, messages: list) -> str:
    """The prompt exactly as training and generation see it: chat template + generation prompt."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # e.g. a template that allows no system turn, or wants alternation
            roles = "/".join(m.get("role", "?") for m in messages)
            raise DataError(f"dataset: the model's chat template rejected a conversation with the turns "
                            f"{roles}: {exc}") from exc
    # A base model without a chat template: plain turns, the answer follows a blank line.
    return "\n\n".join(m["content"] for m in messages) + "\n\n"

