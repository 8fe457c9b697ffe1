"""One model's answer, token by token: transformers' ``generate`` on a thread, its text through a
``TextIteratorStreamer``, a stop that ends it within a token, and the answer's timing.

``generate`` calls the streamer with each new token (a (1,) tensor; the prompt first, which
``skip_prompt`` drops) and asks its ``StoppingCriteria`` after every token, so a ``threading.Event``
watched there ends generation after at most one more token. Time to first token is measured from
the call to the first new token reaching the streamer; tokens/s over the tokens after it (decoding
only, the prompt's prefill is in the TTFT).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

from lorakit.common.errors import ConfigError


@dataclass
class GenerationSettings:
    """How an answer is generated (the Playground's settings, ``lorakit.generate``'s keywords)."""
    max_new_tokens: int = 64  # at most this many new tokens per answer (1 to 4096)
    temperature: float = 0.0  # 0: greedy (the most likely token each time); > 0: sample with this temperature
    top_p: float = 1.0  # sampling only: keep the smallest set of tokens whose probability reaches top_p (0 < p <= 1)
    seed: int = 0  # sampling only: the random seed, so the same settings give the same answer

    def validate(self) -> "GenerationSettings":
        """Every problem at once, as a ConfigError naming each field."""
        p = {}
        if not _is_int(self.max_new_tokens) or not 1 <= self.max_new_tokens <= 4096:
            p["max_new_tokens"] = f"max_new_tokens must be an integer from 1 to 4096, got {self.max_new_tokens!r}"
        if not _is_num(self.temperature) or not 0 <= self.temperature <= 10:
            p["temperature"] = f"temperature must be a number from 0 (greedy) to 10, got {self.temperature!r}"
        if not _is_num(self.top_p) or not 0 < self.top_p <= 1:
            p["top_p"] = f"top_p must be a number in (0, 1], got {self.top_p!r}"
        if not _is_int(self.seed) or self.seed < 0:
            p["seed"] = f"seed must be a non-negative integer, got {self.seed!r}"
        if p:
            raise ConfigError(p)
        return self

    @classmethod
    def from_kwargs(cls, **kwargs) -> "GenerationSettings":
        """Settings from keywords; an unknown keyword is a ConfigError naming the allowed ones."""
        known = set(cls.__dataclass_fields__)
        problems = {k: f"unknown generation setting {k!r}; allowed: {', '.join(sorted(known))}"
                    for k in sorted(set(kwargs) - known)}
        settings = cls(**{k: v for k, v in kwargs.items() if k in known})
        try:
            settings.validate()
        except ConfigError as exc:
            problems.update(exc.problems)
        if problems:
            raise ConfigError(problems)
        return settings


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


@dataclass
class AnswerStats:
    """What one answer cost: the tokens it has so far and their timing (seconds)."""
    tokens: int = 0
    ttft_s: Optional[float] = None  # from the call to the first new token
    wall_s: float = 0.0  # from the call to the last token (or now, while it runs)
    stopped: bool = False  # ended by a stop request, not by EOS or max_new_tokens
    _first_at: Optional[float] = field(default=None, repr=False)
    _last_at: Optional[float] = field(default=None, repr=False)

    @property
    def tokens_per_s(self) -> Optional[float]:
        """Decoding speed: the tokens after the first over the time since it (None below 2 tokens)."""
        if self.tokens < 2 or self._first_at is None or self._last_at is None or self._last_at <= self._first_at:
            return None
        return (self.tokens - 1) / (self._last_at - self._first_at)

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "ttft_s": self.ttft_s, "tokens_per_s": self.tokens_per_s,
                "wall_s": self.wall_s, "stopped": self.stopped}


def _streamer(tokenizer, stats: AnswerStats, started: float, timeout: Optional[float]):
    """A ``TextIteratorStreamer`` that also counts the new tokens and times them."""
    from transformers import TextIteratorStreamer

    class _Timed(TextIteratorStreamer):
        def put(self, value):
            if not self.next_tokens_are_prompt:  # the prompt (or an encoder-decoder's start token) is skipped
                now = time.perf_counter()
                stats.tokens += int(value.numel())
                if stats._first_at is None:
                    stats._first_at, stats.ttft_s = now, now - started
                stats._last_at, stats.wall_s = now, now - started
            super().put(value)

    return _Timed(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout)


def stop_criteria(*events: threading.Event):
    """A ``StoppingCriteriaList`` that ends generation once any of ``events`` is set (checked after each token)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _OnEvent(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            # one flag per sequence: (batch,) bool
            done = any(e.is_set() for e in events)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_OnEvent()])


def generate_kwargs(tokenizer, settings: GenerationSettings) -> dict:
    """``model.generate`` keywords for ``settings``: greedy with no sampling knobs (nothing to warn about),
    or sampling with temperature and top-p; stops at EOS and the chat template's end of turn."""
    from lorakit.training.evaluation import generation_config

    cfg = generation_config(tokenizer, settings.max_new_tokens)
    if settings.temperature > 0:
        cfg.do_sample, cfg.temperature, cfg.top_p = True, float(settings.temperature), float(settings.top_p)
        cfg.top_k = 0  # transformers' default top_k=50 would cut what top_p keeps
    return {"generation_config": cfg}


def stream_tokens(model, tokenizer, inputs: dict, settings: GenerationSettings, stop: threading.Event,
                  stats: AnswerStats, prepare=None) -> Iterator[str]:
    """Yield the answer's text pieces as ``model.generate`` makes them on a thread; ``stats`` fills as it
    goes. ``prepare()``, if given, returns a context manager entered on that thread around ``generate``
    (the adapter switch, the 4-bit dense copies). An error in ``generate`` is raised here."""
    import torch

    started = time.perf_counter()
    streamer = _streamer(tokenizer, stats, started, timeout=None)
    failure: list = []
    abandoned = threading.Event()  # the consumer closed the generator: this answer alone stops

    def work():
        import contextlib

        try:
            torch.manual_seed(settings.seed)  # sampling draws from torch's global generator
            with torch.no_grad(), (prepare() if prepare else contextlib.nullcontext()):
                model.generate(**inputs, streamer=streamer, stopping_criteria=stop_criteria(stop, abandoned),
                               **generate_kwargs(tokenizer, settings))
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
            failure.append(exc)
            streamer.end()  # generate did not: the iterator below must not wait for ever

    thread = threading.Thread(target=work, name="lorakit-generate", daemon=True)
    thread.start()
    drained = False
    try:
        for piece in streamer:
            if piece:
                yield piece
        drained = True
    finally:
        if not drained:  # the consumer left early (a closed generator): stop the thread too
            abandoned.set()
        thread.join()
        stats.wall_s = time.perf_counter() - started
        stats.stopped = stop.is_set() or abandoned.is_set()
    if failure:
        raise failure[0]
