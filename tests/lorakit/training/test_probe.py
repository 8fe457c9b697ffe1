"""ForwardHooks: the batch, its real tokens and the first training forward's activations, from hooks."""
from __future__ import annotations

import threading

import torch

from lorakit.training.probe import ForwardHooks


class Toy(torch.nn.Module):
    """Called like a causal LM (keyword batch); saves activations for backward."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(16, 8)
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, input_ids=None, attention_mask=None, labels=None):
        return torch.relu(self.lin(self.emb(input_ids))).sum()


def _batch(n_real: int, n_pad: int) -> dict:
    ids = torch.arange(n_real + n_pad).remainder(16).unsqueeze(0)
    mask = torch.tensor([[1] * n_real + [0] * n_pad])
    return {"input_ids": ids, "attention_mask": mask, "labels": ids}


def test_the_first_training_forward_is_recorded_once_and_tokens_are_the_real_ones():
    recorded, errors = [], []
    hooks = ForwardHooks(lambda n, b: recorded.append((n, b)), errors.append)
    model = Toy().train()
    hooks.attach(model, record=True)
    first, second = _batch(5, 3), _batch(7, 0)
    model(**first).backward()
    model(**second).backward()
    assert len(recorded) == 1 and recorded[0][0] > 0
    assert recorded[0][1]["input_ids"] is first["input_ids"]  # the recorded forward's own batch
    assert hooks.batch["input_ids"] is second["input_ids"]  # the latest batch
    assert hooks.take_tokens() == 5 + 7 and hooks.take_tokens() == 0  # padding not counted
    model.eval()
    model(**first)
    hooks.paused = True
    model.train()(**first)
    assert hooks.take_tokens() == 0  # eval forwards and the probe's own replay are not training batches
    hooks.detach()
    assert not model._forward_pre_hooks and not model._forward_hooks and hooks.batch is None and not errors


def test_without_record_or_token_counting_the_hooks_only_keep_the_batch():
    recorded = []
    hooks = ForwardHooks(lambda n, b: recorded.append(n), lambda exc: None)
    model = Toy().train()
    hooks.attach(model, record=False, count_tokens=False)
    model(**_batch(4, 0))
    assert not recorded and hooks.take_tokens() == 0 and hooks.batch is not None
    assert not model._forward_hooks  # no recording hook was installed


def test_a_forward_ending_on_another_thread_does_not_end_the_recording():
    """DataParallel replicas share hooks and run on threads: only the recording thread may end it."""
    recorded, errors = [], []
    hooks = ForwardHooks(lambda n, b: recorded.append(n), errors.append)
    model = torch.nn.Linear(4, 4)
    hooks.batch = {"input_ids": torch.zeros(1, 4, dtype=torch.long)}
    hooks._start_recording(model)
    other = threading.Thread(target=hooks._finish_recording, args=(model, (), torch.zeros(1)))
    other.start()
    other.join()
    assert hooks._recorder is not None and not recorded  # still recording, no crash
    hooks._finish_recording(model, (), torch.zeros(1))
    assert hooks._recorder is None and recorded and not errors
