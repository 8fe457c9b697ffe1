"""The measured peak of training steps: the most memory the tensor allocator held at any moment.

What decides an out-of-memory error is this peak, not the tensors that stay alive after the forward
pass (``memory.measure``): on top of those sit transients such as the fp32 logits and their
gradient, a layer's backward working set or the optimizer's temporaries.

- **CPU**: torch's profiler with ``profile_memory=True`` records every allocation and free of the
  CPU allocator (``[memory]`` events with signed byte counts). Summed in time order they are the
  allocation trajectory; its maximum, added to what was resident when recording began, is the peak.
  RSS is not used: it counts the Python heap, libraries and pages the allocator keeps.
- **CUDA**: ``torch.cuda.max_memory_allocated`` (reset when recording begins) less what was
  allocated when it began is the step's rise, added to the resident bytes as on the CPU (so tensors
  the process holds for other reasons, an earlier model say, are not this run's peak);
  ``max_memory_reserved`` gives the allocator's slack on top, and the device memory outside the
  caching allocator (CUDA context, libraries) is read as ``total - free - reserved`` from
  ``torch.cuda.mem_get_info`` (the process is assumed alone on the device).

``peak_at`` names the phase the peak falls in: ``forward``, ``logits-loss`` (the output head, the
cross-entropy and their backward), ``backward`` or ``optimizer step``. On CPU it comes from the op
that made the peak allocation; on CUDA from the phase marks the caller sets (``mark``).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import sys
import warnings
import weakref
from dataclasses import dataclass
from typing import Callable, Optional

from lorakit.memory.timeline import PhaseLevel, cpu_levels, measured_timeline

PHASES = ("forward", "logits-loss", "backward", "optimizer step")

# ops of the output head and the loss (forward and backward): their transients are the logits-loss phase
_LOSS_OPS = ("log_softmax", "logsoftmax", "nll_loss", "nllloss", "cross_entropy", "crossentropy")


@dataclass
class PeakReading:
    """A measured step peak, in bytes."""
    peak: int
    """Most bytes held by the tensor allocator at any moment of the recorded steps."""
    peak_at: str
    """Phase of the peak: forward, logits-loss, backward or optimizer step ('' if unknown)."""
    reserved: Optional[int] = None
    """CUDA only: ``peak`` plus the caching allocator's slack at its most (max reserved - max allocated)."""
    context: Optional[int] = None
    """CUDA only: device memory in use outside the caching allocator (CUDA context, libraries)."""
    timeline: Optional[list] = None
    """[(phase, {category: bytes})] at each phase's highest moment (``memory.timeline``); None when the
    resident categories were not given."""

    def as_dict(self) -> dict:
        return {"peak": self.peak, "peak_at": self.peak_at, "reserved": self.reserved, "context": self.context,
                "timeline": self.timeline}


def phase_of(op_names: list[str]) -> str:
    """The phase of an allocation from the names of the ops enclosing it (outermost first)."""
    joined = " ".join(op_names).lower()
    if "optimizer." in joined or "clip_grad" in joined or "_foreach_norm" in joined:
        return "optimizer step"
    if any(k in joined for k in _LOSS_OPS):
        return "logits-loss"
    if "autograd::engine::evaluate_function" in joined or "backward" in joined:
        return "backward"
    return "forward"


class _StderrSieve:
    """From ``begin`` to ``end``, file descriptor 2 goes to a temporary file (torch's C++ side writes there, past
    Python's sys.stderr, into notebook cells); at ``end`` every line written meanwhile is passed on unless ``drop``
    says otherwise (delayed, not lost)."""

    def __init__(self, drop: Callable[[bytes], bool]):
        self.drop = drop
        self._saved: Optional[int] = None
        self._file = None

    def begin(self) -> None:
        import tempfile

        try:
            sys.stderr.flush()
            file = tempfile.TemporaryFile()
        except (OSError, ValueError):  # no temporary file to be had: leave fd 2 alone
            return
        saved = None
        try:
            saved = os.dup(2)
            os.dup2(file.fileno(), 2)
        except OSError:  # no fd 2 to redirect (an embedded interpreter): leave it alone
            if saved is not None:
                os.close(saved)
            file.close()
            return
        self._saved, self._file = saved, file

    def end(self) -> None:
        if self._saved is None:
            return
        saved, file, self._saved, self._file = self._saved, self._file, None, None
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        file.seek(0)
        kept = b"".join(line for line in file if not self.drop(line))
        file.close()
        if kept:
            os.write(2, kept)


@contextlib.contextmanager
def _quiet_profiler():
    """Silence what the profiler's C++ side prints on start and stop (kineto's "USDT: ... profiler_start" lines)."""
    sieve = _StderrSieve(drop=lambda line: True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sieve.begin()
        try:
            yield
        finally:
            sieve.end()


# torch's CPU allocator logs this (to file descriptor 2, every 1000th time) when a block allocated before the
# profiler started is freed while it records: every recorded training step frees some. It is about the
# profiler's own bookkeeping, not the user's run, and it reached notebook cells ("[W1207 ... CPUAllocator.cpp:245]").
_ALLOCATOR_NOTICE = b"Memory block of unknown size was allocated before the profiling started"


def _allocator_notice(line: bytes) -> bool:
    return _ALLOCATOR_NOTICE in line


_RECORDING: "weakref.WeakSet[StepPeak]" = weakref.WeakSet()


@atexit.register
def _stop_recordings() -> None:
    """A profiler still recording when the interpreter exits (a run thread abandoned mid-step) is
    stopped first: left running, its C++ side can abort the process during shutdown."""
    for sp in list(_RECORDING):
        sp.stop()


class StepPeak:
    """Records the allocator peak between ``start(resident)`` and ``stop()``.

    ``resident``: bytes alive when recording starts (weights, adapters, optimizer state, gradients),
    from ``memory.measure_*``; the peak is that plus the largest rise seen. Only one recording may run
    at a time in a process (the profiler is process-wide); a failure to record leaves ``reading`` None
    and the reason in ``error``.
    """

    def __init__(self, device: str = "cpu"):
        self.device = str(device)
        self.cuda = self.device.startswith("cuda")
        self.reading: Optional[PeakReading] = None
        self.error: Optional[str] = None
        self._sieve = _StderrSieve(drop=_allocator_notice)  # while the profiler records
        self._prof = None
        self._resident = 0
        self._phase_peaks: dict[str, int] = {}
        self._phase = "forward"
        self._slack = self._allocated_at_start = 0
        self._started = False
        self._parts: Optional[dict] = None
        self._optimizer = None
        self._state_at_start = 0
        self._began: dict[str, int] = {}

    def start(self, resident: int, parts: Optional[dict] = None, optimizer=None) -> None:
        """``parts``: ``resident`` by category (then the reading has a timeline); ``optimizer``: its state
        created during the step counts as optimizer state in the timeline."""
        self._resident, self._phase_peaks, self._phase, self._slack = int(resident), {}, "forward", 0
        self._parts, self._optimizer, self._began = parts, optimizer, {"forward": 0}
        self._state_at_start = _state_bytes(optimizer)
        self._started = True
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._allocated_at_start = int(torch.cuda.memory_allocated(self.device))
            return
        from torch.profiler import ProfilerActivity, profile

        try:
            self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            with _quiet_profiler():
                self._prof.__enter__()
            _RECORDING.add(self)
            self._sieve.begin()
        except Exception as exc:  # noqa: BLE001 - e.g. another profiler already running: no peak, say why
            self._prof, self._started = None, False
            self.error = f"could not record the step's peak ({type(exc).__name__}: {exc})"

    def mark(self, phase: str) -> None:
        """CUDA: close the current phase (its peak is kept) and begin ``phase``. CPU: nothing to do."""
        if self.cuda and self._started:
            self._close_phase(phase)

    def _close_phase(self, phase: str) -> None:
        import torch

        peak = int(torch.cuda.max_memory_allocated(self.device))
        self._phase_peaks[self._phase] = max(self._phase_peaks.get(self._phase, 0), peak)
        # the reset clears the reserved peak too: keep the largest slack of the allocator's cache
        self._slack = max(self._slack, int(torch.cuda.max_memory_reserved(self.device)) - peak)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._phase = phase
        self._began.setdefault(phase, int(torch.cuda.memory_allocated(self.device)) - self._allocated_at_start)

    def stop(self) -> Optional[PeakReading]:
        if not self._started:
            return self.reading
        self._started = False
        try:
            self.reading, levels = self._stop_cuda() if self.cuda else self._stop_cpu()
            if self.reading is not None and self._parts is not None:
                new_state = max(0, _state_bytes(self._optimizer) - self._state_at_start)
                self.reading.timeline = measured_timeline(self._parts, levels, new_state)
        except Exception as exc:  # noqa: BLE001 - a failed measurement must not fail the run
            self.error = f"could not read the step's peak ({type(exc).__name__}: {exc})"
        self._optimizer = None
        return self.reading

    # --- CPU: the profiler's allocation trajectory ------------------------------------------------
    def _stop_cpu(self) -> tuple:
        prof, self._prof = self._prof, None
        _RECORDING.discard(self)
        if prof is None:
            return None, []
        try:
            with _quiet_profiler():
                prof.__exit__(None, None, None)
        finally:
            self._sieve.end()
        levels, rise, where = cpu_levels(prof)  # the whole trajectory, each allocation's phase
        return PeakReading(peak=self._resident + rise, peak_at=where), levels

    # --- CUDA: the caching allocator's own peak ---------------------------------------------------
    def _stop_cuda(self) -> tuple:
        import torch

        torch.cuda.synchronize(self.device)
        self._close_phase(self._phase)  # not mark(): the recording has stopped, the last phase's peak still counts
        peak_at = max(self._phase_peaks, key=self._phase_peaks.get) if self._phase_peaks else ""
        free, total = torch.cuda.mem_get_info(self.device)
        reserved_now = int(torch.cuda.memory_reserved(self.device))
        rise = max(self._phase_peaks.values(), default=0) - self._allocated_at_start
        peak = self._resident + max(0, rise)
        levels = [PhaseLevel(p, began, self._phase_peaks.get(p, began + self._allocated_at_start)
                             - self._allocated_at_start) for p, began in self._began.items()]
        return PeakReading(peak=peak, peak_at=peak_at, reserved=peak + self._slack,
                           context=max(0, int(total - free) - reserved_now)), levels


def _state_bytes(optimizer) -> int:
    from lorakit.memory.breakdown import measure_optimizer

    return measure_optimizer(optimizer) if optimizer is not None else 0


class TrainingPeak:
    """The peak of a training run's first ``steps`` optimizer steps, one ``StepPeak`` per step.

    Step 1 shows the one-time costs (the optimizer creating its state while every gradient exists);
    step 2 is the steady step (the state exists during forward and backward): the larger of the two
    is what a device must hold. Driven from a ``TrainerCallback`` (``step_begin`` / ``mark`` /
    ``step_end``); while a step records, hooks on the model keep its batch (``batches``: the largest
    micro-batch of each recorded step, for the planner) and mark the end of its forward. The resident
    bytes at each step's start are counted from the real tensors (weights, optimizer state, gradients).
    """

    def __init__(self, device: str = "cpu", steps: int = 2, also: Optional[int] = None):
        self.device, self.steps = str(device), steps
        # one more step to record (1-based), e.g. the one a run's plan names as its peak (``lorakit.plan``)
        self.also = also if also is not None and also > steps else None
        self.readings: list[PeakReading] = []
        self.reading_steps: list[int] = []  # the step of each reading
        self.batches: list[dict] = []
        self.errors: list[str] = []
        self._current: Optional[StepPeak] = None
        self._hooks: list = []
        self._batch: Optional[dict] = None
        self._step = 0
        self._weights: Optional[tuple] = None  # (base, adapters) bytes

    @property
    def recording(self) -> bool:
        return self._current is not None

    @property
    def done(self) -> bool:
        return len(self.readings) + len(self.errors) >= self.steps + (self.also is not None)

    @property
    def first_done(self) -> bool:
        """The first ``steps`` are recorded (``also`` may still be to come)."""
        return len(self.readings) + len(self.errors) >= self.steps

    @property
    def peak_step(self) -> Optional[int]:
        """The step of the highest reading (None before the first step ended)."""
        if not self.readings:
            return None
        return self.reading_steps[max(range(len(self.readings)), key=lambda i: self.readings[i].peak)]

    @property
    def reading(self) -> Optional[PeakReading]:
        """The highest reading so far (None before the first step ended)."""
        return max(self.readings, key=lambda r: r.peak, default=None)

    def step_begin(self, model, optimizer, step: Optional[int] = None) -> None:
        """Record step ``step`` (1-based; None: the next of the first ``steps``) if it is one to record."""
        if self._current is not None or self.done:
            return
        if step is not None and self.first_done and step != self.also:
            return
        self._step = step if step is not None else len(self.readings) + len(self.errors) + 1
        from lorakit.memory.breakdown import measure_allocated_grads, measure_optimizer, measure_weights

        if self._weights is None:  # the weights' bytes do not change while training: counted once
            self._weights = measure_weights(model)
        base, adapters = self._weights
        parts = {"base_weights": base, "adapters": adapters, "optimizer": measure_optimizer(optimizer),
                 "gradients": measure_allocated_grads(model)}
        resident = sum(parts.values())
        self._batch = None
        self._hooks = [model.register_forward_pre_hook(self._keep_batch, with_kwargs=True),
                       model.register_forward_hook(lambda *a: self.mark("backward"))]
        self._current = StepPeak(self.device)
        self._current.start(resident, parts, optimizer)
        if self._current.error:
            self.errors.append(self._current.error)
            self._stop_hooks()
            self._current = None

    def mark(self, phase: str) -> None:
        if self._current is not None:
            self._current.mark(phase)

    def step_end(self) -> Optional[PeakReading]:
        """Stop the current step's recording; its reading (None if none was running)."""
        current, self._current = self._current, None
        self._stop_hooks()
        if current is None:
            return None
        reading = current.stop()
        if reading is not None:
            self.readings.append(reading)
            self.reading_steps.append(self._step)
            if self._batch is not None:
                self.batches.append(self._batch)
        elif current.error:
            self.errors.append(current.error)
        return reading

    def _keep_batch(self, module, args, kwargs) -> None:
        """Forward pre-hook: the step's largest micro-batch (input_ids and attention_mask)."""
        ids = kwargs.get("input_ids", args[0] if args else None)
        if not module.training or not hasattr(ids, "shape") or ids.dim() != 2:
            return None
        if self._batch is None or ids.numel() > self._batch["input_ids"].numel():
            self._batch = {"input_ids": ids, "attention_mask": kwargs.get("attention_mask")}
        return None

    def _stop_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
