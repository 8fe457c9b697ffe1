"""imports.warm: every engine entry point resolves transformers' lazy names under one lock, so the
notebook's thread and a Studio job resolving them at once cannot fail with 'cannot import name'."""
from __future__ import annotations

import threading

import pytest

import lorakit
from lorakit.common import threads as imports


@pytest.fixture
def asked(monkeypatch):
    """The modules warm() resolves from now on, as if nothing had been resolved yet."""
    seen: list = []
    real = imports._resolve

    def recording(importlib, module):
        assert imports._lock.locked(), "names resolved outside the lock"
        seen.append(module)
        real(importlib, module)

    monkeypatch.setattr(imports, "_done", set())
    monkeypatch.setattr(imports, "_resolve", recording)
    return seen


def test_warm_resolves_each_module_once(asked):
    imports.warm("transformers")
    imports.warm("transformers", "accelerate")
    imports.warm()
    assert asked == ["transformers", "accelerate", "peft", "datasets"]
    import transformers

    assert "AutoConfig" in vars(transformers)  # resolved: later lookups never enter the lazy loader


def test_the_planner_resolves_what_it_uses_and_not_peft(asked):
    lorakit.plan_memory("tiny-llama")
    assert asked == ["transformers", "accelerate"]


def test_load_model_resolves_transformers_first(asked):
    lorakit.load_model("tiny-llama")
    assert asked[0] == "transformers"


def test_train_resolves_everything_before_the_run(asked):
    rec = lorakit.train(lorakit.RunConfig(model="tiny-llama", max_steps=1), store=False, stop=_stopped())
    assert asked == ["transformers", "peft", "accelerate", "datasets"]
    assert rec.status in ("stopped", "finished")


def test_a_thread_waits_for_the_one_resolving(asked):
    """While one caller holds the lock the other does not touch transformers; both then succeed."""
    imports._lock.acquire()
    try:
        t = threading.Thread(target=imports.warm, args=("transformers",))
        t.start()
        t.join(0.2)
        assert t.is_alive() and asked == []  # blocked on the lock, resolved nothing
    finally:
        imports._lock.release()
    t.join()
    assert asked == ["transformers"]


def _stopped() -> threading.Event:
    ev = threading.Event()
    ev.set()
    return ev
