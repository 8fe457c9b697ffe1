"""``lorakit generate`` and ``lorakit chat``: the Playground in a terminal (``playground.Session``).

``generate`` prints each model's answer to each ``--prompt`` once; ``chat`` reads a message per line and
streams every model's answer as it is generated, each model keeping its own conversation (multi-turn);
``/quit`` (or end of input) ends it, Ctrl-C stops the answers being written.
"""
from __future__ import annotations

import argparse
import sys
import threading

from lorakit.playground.streaming import GenerationSettings

QUIT = "/quit"


def add_parsers(sub) -> None:
    """The two subcommands, on ``lorakit``'s subparsers."""
    g = sub.add_parser("generate", help="answer prompts with the base and stored runs' adapters, side by side")
    g.add_argument("--prompt", action="append", required=True, help="a user message (repeat for several)")
    _common(g)
    c = sub.add_parser("chat", help="a terminal chat streaming the answers of the base and stored runs' adapters")
    _common(c)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids from the store (lorakit compare lists them)")
    p.add_argument("--model", default=None, help="the base without runs (default: the runs' base)")
    p.add_argument("--no-base", action="store_true", help="leave the base's own column out")
    d = GenerationSettings()
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature, help="0: greedy; > 0: sample")
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--seed", type=int, default=d.seed)


def _settings(ns) -> GenerationSettings:
    return GenerationSettings(ns.max_new_tokens, ns.temperature, ns.top_p, ns.seed).validate()


def _session(ns):
    from lorakit.playground.session import Session

    return Session(ns.runs, store=ns.store, model=ns.model, base=not ns.no_base)


def cmd_generate(ns, out=None) -> int:
    out = out or sys.stdout
    settings = _settings(ns)
    session = _session(ns)
    for prompt in ns.prompt:
        out.write(f"> {prompt}\n")
        for col in session.columns:
            out.write(f"[{col.label}] {_text(session.answer(prompt, col.name, settings))}\n")
        out.write("\n")
    return 0


def _text(answer) -> str:
    return answer if isinstance(answer, str) else ", ".join(f"{k} {v:.3f}" for k, v in answer.items())


def cmd_chat(ns, inp=None, out=None) -> int:
    from lorakit.playground.streaming import AnswerStats

    inp, out = inp or sys.stdin, out or sys.stdout
    settings = _settings(ns)
    session = _session(ns)
    out.write(f"lorakit chat: {', '.join(c.label for c in session.columns)}. Type a message; {QUIT} ends.\n")
    histories = {c.name: [] for c in session.columns}  # each model's own conversation
    while True:
        out.write("you> ")
        out.flush()
        line = inp.readline()
        if not line or line.strip() == QUIT:
            return 0
        if not line.strip():
            continue
        for col in session.columns:
            turns = histories[col.name] + [{"role": "user", "content": line.strip()}]
            out.write(f"[{col.label}] ")
            stats, stop, pieces = AnswerStats(), threading.Event(), []
            try:
                for piece in session.stream(turns, col.name, settings, stop=stop, stats=stats):
                    pieces.append(piece)
                    out.write(piece)
                    out.flush()
            except KeyboardInterrupt:
                out.write(" [stopped]")
            out.write(f"\n    ({_timing(stats)})\n")
            histories[col.name] = turns + [{"role": "assistant", "content": "".join(pieces).strip()}]


def _timing(stats) -> str:
    rate = f"{stats.tokens_per_s:.1f} tok/s" if stats.tokens_per_s else "- tok/s"
    ttft = f"{stats.ttft_s:.2f} s" if stats.ttft_s is not None else "-"
    return f"{stats.tokens} tokens, first after {ttft}, {rate}"
