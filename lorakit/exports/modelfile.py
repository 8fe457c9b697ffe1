"""An Ollama ``Modelfile`` for an exported GGUF: FROM, TEMPLATE (the chat template in Go-template form),
SYSTEM (a default system prompt the template inserts), stop tokens and PARAMETER lines.

The Jinja chat template is not translated text by text: it is rendered with marker messages, and where each
message renders as prefix + content + suffix independently of the others (ChatML and most templates), those
pieces become a Go template over Ollama's ``.Messages``. ``ChatParts.render`` composes the pieces as the Go
template does, so a test can check them against the tokenizer's own rendering. A template that is not
piecewise gets no TEMPLATE line (Ollama then reads the GGUF's own chat template) and a comment says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

_MARK = {"system": "\x01SYSTEM\x01", "user": "\x01USER\x01", "assistant": "\x01ASSISTANT\x01"}


@dataclass
class ChatParts:
    """A chat template as pieces: each role's (prefix, suffix), the generation prompt, a default system."""
    roles: dict  # role -> (prefix, suffix) around the message's content
    generation: str  # text after the last message that starts the assistant's answer
    default_system: str = ""  # inserted when a conversation has no system message ("" : none)

    def render(self, messages: list) -> str:
        """The prompt text the Go template produces (Ollama adds SYSTEM as a first message when none is given)."""
        if self.default_system and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.default_system}, *messages]
        text = "".join(self.roles[m["role"]][0] + m["content"] + self.roles[m["role"]][1] for m in messages)
        return text + self.generation

    def go_template(self) -> str:
        branches = "".join(
            f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{pre}{{{{ .Content }}}}{post}'
            for i, (role, (pre, post)) in enumerate(self.roles.items()))
        return f"{{{{ range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{self.generation}"


def _render(tokenizer, roles: list, generation: bool) -> str:
    msgs = [{"role": r, "content": _MARK[r]} for r in roles]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation)


def chat_parts(tokenizer) -> Optional[ChatParts]:
    """The template's pieces, or None when it is not piecewise (or there is no template)."""
    if not tokenizer.chat_template:
        return None
    try:
        sys_only = _render(tokenizer, ["system"], False)
        su = _render(tokenizer, ["system", "user"], False)
        sua = _render(tokenizer, ["system", "user", "assistant"], False)
        su_gen = _render(tokenizer, ["system", "user"], True)
        u_only = _render(tokenizer, ["user"], False)
    except Exception:  # noqa: BLE001 - a template that refuses a system role, or any role order
        return None
    if not (su.startswith(sys_only) and sua.startswith(su) and su_gen.startswith(su)):
        return None
    roles = {}
    for role, seg in (("system", sys_only), ("user", su[len(sys_only):]), ("assistant", sua[len(su):])):
        pre, sep, post = seg.partition(_MARK[role])
        if not sep or any(m in pre + post for m in _MARK.values()):
            return None
        roles[role] = (pre, post)
    user_seg = roles["user"][0] + _MARK["user"] + roles["user"][1]
    default = ""
    if u_only != user_seg:  # the template inserted a system message of its own
        head = u_only[:len(u_only) - len(user_seg)] if u_only.endswith(user_seg) else None
        pre, post = roles["system"]
        if not head or not (head.startswith(pre) and head.endswith(post)):
            return None
        default = head[len(pre):len(head) - len(post)]
    parts = ChatParts(roles, su_gen[len(su):], default)
    return parts if "{{" not in "".join(pre + post for pre, post in roles.values()) else None


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def modelfile_text(gguf_name: str, tokenizer, stop_tokens: list, context_length: int) -> str:
    """The Modelfile beside ``gguf_name`` (a file name in the same folder)."""
    parts = chat_parts(tokenizer)
    lines = ["# Written by lorakit. Use: ollama create NAME -f Modelfile && ollama run NAME", f"FROM ./{gguf_name}"]
    if parts is not None:
        lines.append(f'TEMPLATE """{parts.go_template()}"""')
        if parts.default_system:
            lines.append(f'SYSTEM """{parts.default_system}"""')
    else:
        lines.append("# No TEMPLATE: the chat template is not piecewise; Ollama reads the GGUF's own chat template.")
    lines += [f"PARAMETER stop {_quoted(t)}" for t in stop_tokens]
    # lorakit scored the run with greedy decoding; the context is the model's own, capped for a laptop
    lines += ["PARAMETER temperature 0", f"PARAMETER num_ctx {min(int(context_length), 4096)}"]
    return "\n".join(lines) + "\n"
