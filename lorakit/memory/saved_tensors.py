"""What autograd saves for backward during a training forward, counted from the real tensors.

``ActivationRecorder`` sees every tensor saved through ``saved_tensors_hooks`` (each storage once;
weights, buffers and the batch itself excluded) and, after the forward, what custom autograd
Functions keep as ``ctx`` attributes (bitsandbytes' int8 matmul keeps its input that way; reentrant
checkpointing its RNG state). ``lorakit.train`` wraps its own first forward in one (``probe.py``);
``saved_activation_tensors`` runs one extra forward inside one, for teaching and for the planner's
formula (``planning/activations.py``).
"""
from __future__ import annotations

from lorakit.common.devices import model_device
from lorakit.memory.tensor_bytes import is_tensor, module_extra_tensors, storage_key, stored_tensors


def _model_tensor_keys(model) -> set:
    keys = set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            for t in stored_tensors(p):
                keys.add(storage_key(t))
        for b in module.buffers(recurse=False):
            keys.add(storage_key(b))
        for t in module_extra_tensors(module):
            keys.add(storage_key(t))
    return keys


def _batch_tensors(batch) -> list:
    if is_tensor(batch):
        return [batch]
    if isinstance(batch, dict):
        return [v for v in batch.values() if is_tensor(v)]
    if isinstance(batch, (list, tuple)):
        return [v for v in batch if is_tensor(v)]
    return []


def _as_inputs(model, batch) -> dict:
    if is_tensor(batch):
        batch = {"input_ids": batch}
    batch = dict(batch)
    if "labels" not in batch and "input_ids" in batch:
        batch["labels"] = batch["input_ids"]
    if getattr(model, "config", None) is not None:
        batch.setdefault("use_cache", False)  # a KV cache is not part of training memory
    device = model_device(model)
    return {k: (v.to(device) if is_tensor(v) else v) for k, v in batch.items()}


class ActivationRecorder:
    """Counts the distinct tensors autograd saves for backward while it is active (a context manager).

    Used two ways: ``saved_activation_tensors`` runs one extra forward inside it, and the training
    loop wraps its own first forward in it, so a run measures its real step instead of replaying it.
    Parameters, buffers and the batch's own tensors are weights and inputs, not activations: skipped.
    After the forward, ``add_outputs(out)`` adds what custom autograd Functions hold on ``ctx``.
    """

    def __init__(self, model, batch):
        self.skip = _model_tensor_keys(model) | {storage_key(t) for t in _batch_tensors(batch)}
        self.seen: dict = {}
        self._hooks = None

    def pack(self, t):
        if is_tensor(t) and t.device.type != "meta":
            key = storage_key(t)
            if key not in self.skip and key not in self.seen:
                self.seen[key] = (t, t.untyped_storage().nbytes())
        return t

    def add_outputs(self, out) -> None:
        for t in _ctx_held_tensors(out):
            self.pack(t)

    @property
    def tensors(self) -> list:
        return list(self.seen.values())

    @property
    def nbytes(self) -> int:
        return sum(n for _, n in self.seen.values())

    def __enter__(self):
        import torch

        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        self._hooks = None
        return False


def saved_activation_tensors(model, batch) -> list:
    """The distinct tensors saved for backward during one training-mode forward (for teaching and
    for deriving the planner's formula): a list of (tensor, nbytes) with each storage once."""
    import torch

    inputs = _as_inputs(model, batch)
    recorder = ActivationRecorder(model, list(_batch_tensors(batch)) + list(_batch_tensors(inputs)))
    was_training = {m: m.training for m in model.modules()}
    devices = [model_device(model).index or 0] if model_device(model).type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            model.train()
            with recorder:
                out = model(**inputs)
            recorder.add_outputs(out)
            del out  # frees the graph: nothing is backpropagated, no .grad is touched
    finally:
        for m, mode in was_training.items():
            m.training = mode
    return recorder.tensors


def _ctx_held_tensors(out) -> list:
    """Tensors custom autograd Functions keep as ``ctx`` attributes instead of ``save_for_backward``
    (invisible to saved-tensor hooks, yet held until backward), e.g. bitsandbytes' int8 matmul
    keeps its input as ``ctx.A``."""
    import torch

    roots = []
    for name in ("loss", "logits"):
        t = getattr(out, name, None) if not isinstance(out, dict) else out.get(name)
        if is_tensor(t) and t.grad_fn is not None:
            roots.append(t.grad_fn)
    found, seen, stack = [], set(), roots
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            for v in vars(node).values():
                vs = v if isinstance(v, (tuple, list)) else (v,)
                found += [x for x in vs if is_tensor(x)]
        stack.extend(nxt for nxt, _ in node.next_functions)
    return found


def measure_activations(model, batch) -> int:
    """Bytes saved for backward by one training-mode forward of ``batch`` (with labels, so the
    loss path is included), each storage counted once; weights and the batch itself excluded.

    ``batch``: a dict like ``{"input_ids": ..., "attention_mask": ..., "labels": ...}`` or a tensor
    of input ids (labels default to the input ids). The model's train/eval modes are restored,
    the RNG state is untouched and no gradient is left behind.
    """
    return sum(n for _, n in saved_activation_tensors(model, batch))
