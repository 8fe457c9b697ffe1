"""The memory probe's activations: what a Trainer's own first training forward saves for backward,
counted while it runs, so the probe costs no extra forward.

Two ways in, one ``memory.ActivationRecorder`` underneath:

- ``ProbingTrainer`` (``lorakit.train`` owns the Trainer): its ``compute_loss`` wraps the first
  training forward, so the loss and the Trainer's one-element loss normaliser are counted too.
- ``ForwardHooks`` (someone else's Trainer: no ``compute_loss`` to wrap): a forward pre-hook on the
  model enters the recorder on the first training forward and a forward hook (``always_call``)
  leaves it; a causal LM computes its loss inside ``forward``, so the loss path is counted. The
  pre-hook also keeps the latest training batch and can count its real tokens.

With gradient accumulation the recorded micro-batch is the one reported, so the measurement and the
planner's prediction describe the same forward.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

from transformers import Trainer

from lorakit.memory.breakdown import ActivationRecorder
from lorakit.models.labelled_loss import labelled_loss, lm_parts

BATCH_KEYS = ("input_ids", "attention_mask", "labels")


class ProbingTrainer(Trainer):
    """A Trainer whose first training forward also counts the bytes autograd saves for backward, and
    whose causal-LM loss runs the output head at the labelled positions only (``labelled_head``, see
    ``labelled_loss``; the same loss, less time and memory)."""

    def __init__(self, *args, activation_probe: Optional[Callable[[int, dict], None]] = None,
                 labelled_head: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.activation_probe = activation_probe  # called once: (bytes, the batch)
        self.labelled_head = labelled_head

    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        if self.activation_probe is None or not model.training:
            return self._loss(model, inputs, return_outputs, **kwargs)
        probe, self.activation_probe = self.activation_probe, None
        with ActivationRecorder(model, inputs) as recorder:
            loss, outputs = self._loss(model, inputs, True, **kwargs)
        recorder.add_outputs(outputs)
        probe(recorder.nbytes, inputs)
        return (loss, outputs) if return_outputs else loss

    def _loss(self, model, inputs, return_outputs, num_items_in_batch=None, **kwargs):
        """The Trainer's loss, or the same loss at the labelled rows only when that is the same computation.
        With ``labelled_head`` the outputs' ``logits`` are those rows' (N_lab, V), not (B, T, V)."""
        parts = self._labelled_parts(model, inputs)
        if parts is None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch, **kwargs)
        # as the Trainer's compute_loss: the model sees num_items_in_batch only if its forward takes loss kwargs
        items = num_items_in_batch if self.model_accepts_loss_kwargs else None
        with self.accelerator.autocast():  # what accelerate wraps the model's own forward in (bf16 autocast)
            outputs = labelled_loss(parts, inputs, items)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _labelled_parts(self, model, inputs) -> Optional[tuple]:
        """``labelled_loss.lm_parts`` when the Trainer's loss would be the model's own causal-LM loss on
        this one process (no label smoother, custom loss, multi-device wrapper), else None."""
        if (not self.labelled_head or inputs.get("labels") is None or "inputs_embeds" in inputs
                or self.label_smoother is not None or self.compute_loss_func is not None
                or self.args.n_gpu > 1 or self.accelerator.num_processes > 1
                or self.accelerator.unwrap_model(model) is not model):
            return None
        return lm_parts(model)


class ForwardHooks:
    """Hooks on a model during training: the latest training batch, its real tokens, and (``record``)
    the activations of the first training forward, reported once through ``on_recorded(bytes, batch)``.

    A hook never raises into the user's forward: failures go to ``on_error`` (then the probe replays).
    """

    def __init__(self, on_recorded: Callable[[int, dict], None], on_error: Callable[[BaseException], None]):
        self.on_recorded, self.on_error = on_recorded, on_error
        self.batch: Optional[dict] = None  # the latest training batch (input_ids, attention_mask, labels)
        self.tokens = 0  # real tokens seen since take_tokens()
        self.record = False  # record the next training forward (once per attach)
        self.count_tokens = True
        self.paused = False  # True while the probe's own replay forward runs: not a training batch
        self._hook = self._post_hook = self._recorder = None
        self._recorded_batch: Optional[dict] = None
        self._recording_thread: Optional[int] = None

    def attach(self, model, record: bool, count_tokens: bool = True) -> None:
        self.detach()  # a run interrupted mid-forward (Ctrl-C skips always_call hooks) may have left some
        self.tokens = 0
        self.record, self.count_tokens = record, count_tokens
        self._hook = model.register_forward_pre_hook(self._capture, with_kwargs=True)

    def detach(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._stop_recording()
        self.batch = self._recorded_batch = None

    def take_tokens(self) -> int:
        tokens, self.tokens = self.tokens, 0
        return tokens

    def _capture(self, module, args, kwargs):
        """Forward pre-hook: remember the training batch (for the memory probe) and count its real tokens."""
        if self.paused or not module.training:
            return None
        batch = dict(kwargs)
        if args and "input_ids" not in batch:
            batch["input_ids"] = args[0]
        self.batch = {k: v for k, v in batch.items() if k in BATCH_KEYS and hasattr(v, "shape")}
        if self.count_tokens:
            mask, ids = self.batch.get("attention_mask"), self.batch.get("input_ids")
            try:
                self.tokens += int(mask.sum()) if mask is not None else (int(ids.numel()) if ids is not None else 0)
            except Exception:  # noqa: BLE001
                pass
        if self.record and self._recorder is None and self._recorded_batch is None:
            self._start_recording(module)
        return None

    def _start_recording(self, module) -> None:
        """Count what autograd saves from here to the end of this forward (the loss included: a causal
        LM computes it inside forward when given labels)."""
        try:
            # with gradient accumulation the step ends several batches later: keep this one for the
            # measurement and the prediction, so both describe the recorded forward
            self._recorded_batch = self.batch
            self._recording_thread = threading.get_ident()
            self._recorder = ActivationRecorder(module, self.batch).__enter__()
            # always_call: a forward that raises must not leave the saved-tensor hooks installed
            self._post_hook = module.register_forward_hook(self._finish_recording, always_call=True)
        except Exception as exc:  # noqa: BLE001 - the probe then falls back to one replay forward
            self.on_error(exc)
            self._stop_recording()

    def _finish_recording(self, module, args, output):
        if threading.get_ident() != self._recording_thread:
            return None  # another thread's forward of a shared module (DataParallel): not the one recorded
        recorder = self._recorder
        self._stop_recording()
        if recorder is not None:
            try:
                recorder.add_outputs(output)  # tensors custom autograd Functions keep on ctx
                self.on_recorded(recorder.nbytes, self._recorded_batch)
            except Exception as exc:  # noqa: BLE001
                self.on_error(exc)
        return None

    def _stop_recording(self) -> None:
        if self._post_hook is not None:
            self._post_hook.remove()
            self._post_hook = None
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            try:
                recorder.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001 - never into the user's forward
                self.on_error(exc)
