"""What the Studio works out on background threads before a run: the model's layers, the planned
memory, whether the data fits, and the data preview.

``BackgroundWork`` is a part of ``StudioController`` (a mixin: it shares the controller's form,
lock and notifications). Results land in attributes the panels read, and each is announced on a
topic (``model``, ``plan``, ``data``); errors become messages next to a field, never exceptions.

- the model (``load_model``): loaded once for its linear layers and tokenizer, weights dropped;
- the plan (``request_plan``): the planner's plan for the form, and whether it fits on the chosen
  device (``fit_device``: "this machine" or a name of ``lorakit.memory.fit.accelerators()``), coalesced;
- the data check (``request_data_check``): the engine builds the form's data with the loaded model's
  tokenizer, coalesced; a combination that cannot train (no example fits in ``seq_len``, a missing
  file, an unknown task) becomes a ``dataset`` problem before Train is pressed, not a failed run;
- the preview (``preview_data``): the same build, plus counts and the loss tokens as HTML.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional

import lorakit
from lorakit.config import ConfigError
from lorakit.memory import THIS_MACHINE

from .form import ModelSummary
from .jobs import Coalesced, error_text


class Recent(OrderedDict):
    """A dict of the ``size`` newest entries: a form's recent values stay planned, and a session that goes through
    hundreds of values (or a fuzzer) does not keep every plan and its per-step batches."""

    def __init__(self, size: int = 32):
        super().__init__()
        self.size = size

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class BackgroundWork:
    """Model loading, memory planning, data checks and previews, for ``StudioController``."""

    def _init_background(self) -> None:
        self.model_info: Optional[ModelSummary] = None
        self.model_error: str = ""  # why the current model could not be loaded
        self.model_loading: str = ""  # name being loaded
        self.data_stats: Optional[dict] = None
        self.data_html: str = ""
        self.data_error: str = ""  # the dataset problem found by the check or a preview
        self.data_changed: tuple = ()  # the DATA_FIELDS changed since the last preview (it was cleared)
        self.data_hint: str = ""  # why Preview did nothing (other fields are invalid); never a problem
        self._previewed = False  # a preview (its counts or its error) is shown
        self._data_checked: Optional[tuple] = None  # the data key the check or a preview last built
        self._check_lock = threading.Lock()  # one data check at a time (a job, or train() itself)
        self.plan_result: tuple = (None, "computing the plan…")  # (MemoryBreakdown or None, message)
        self._plan_cache: dict = Recent(256)  # a sweep grid reads its trials here
        self.fit_device: str = THIS_MACHINE  # the device the fit verdict is for
        self.fit_result: tuple = (None, "")  # (lorakit.Fit or None, why there is none)
        self.time_result: tuple = (None, "")  # (lorakit.TimePlan or None, why there is none)
        self._time_cache: dict = Recent(256)
        self._run_batches: dict = Recent(16)  # RunConfig -> the run plan's per-step batch shapes (None: not known)
        # One model construction at a time: the planner builds models under accelerate's
        # init_empty_weights, which patches torch.nn.Module for the whole process, so a model
        # loading on another thread meanwhile would get meta tensors (or untied weights). Jobs
        # take this lock around engine calls; a run holds it until its first step is logged.
        self._engine = threading.Lock()
        self._planner = Coalesced(self._jobs, "planning memory", self._replan)
        self._checker = Coalesced(self._jobs, "checking the data", self.check_data)

    # --- the model ---------------------------------------------------------------------------------
    def load_model(self, name: Optional[str] = None, background: bool = True) -> None:
        """Load ``name`` (default: the form's model) to discover its layers; weights are dropped after."""
        name = name or self.values["model"]
        if not isinstance(name, str) or not name.strip():
            self._validate()  # nothing to load: the model field's message says why
            return
        name = name.strip()
        if name != self.values["model"]:
            self.set(model=name)
        self.model_loading, self.model_error = name, ""
        self._notify("model")
        self._jobs.start(f"loading {name}", lambda: self._load(name), background)

    def _load(self, name: str) -> None:
        from lorakit.adapters import linear_modules

        try:
            with self._engine:
                loaded = lorakit.load_model(name, device="cpu", labels=self._summary_labels(name))
                info = ModelSummary(name, loaded.num_params, loaded.num_layers, loaded.architecture,
                                    loaded.load_s, linear_modules(loaded.model), loaded.tokenizer, loaded.task)
                del loaded
        except Exception as exc:  # noqa: BLE001 - ModelUnavailable and anything else: next to the field
            with self._lock:
                if self.values["model"] == name:
                    self.model_error = error_text(exc)
                self.model_loading = ""
            self._notify("model")
            self._validate()
            return
        with self._lock:
            self.model_info, self.model_loading, self.model_error = info, "", ""
        self._notify("model")
        self._validate()
        self.request_data_check()  # the tokenizer is here: does the form's data fit?

    def _summary_labels(self, name: str) -> Optional[tuple]:
        """A classifier's labels for the load that lists its layers: the form's data's when it has two or
        more, else two stand-ins. The weights are dropped, and a data problem is the data check's to say at
        the dataset field: the model must load whatever the data is (or the form dead-ends)."""
        from lorakit.config import REGISTRY
        from lorakit.data import data_labels

        if name in REGISTRY and REGISTRY[name].task != "classification":
            return None  # a built-in decoder or encoder-decoder: no classifier head
        cfg = self.form.data_config()
        try:
            labels = tuple(data_labels(cfg)) if cfg is not None else ()
        except Exception:  # noqa: BLE001 - unreadable data: the data check names why
            labels = ()
        return labels if len(set(labels)) >= 2 else ("label 0", "label 1")

    def _loaded(self) -> Optional[ModelSummary]:
        """The loaded model's summary when it is the form's model."""
        info = self.model_info
        return info if info is not None and info.name == self.values["model"] else None

    # --- planner -------------------------------------------------------------------------------------
    def plan(self) -> tuple:
        """(MemoryBreakdown or None, message): the planner's plan for the form's choices."""
        try:
            cfg = self.config()
        except ConfigError as exc:
            return None, "fix the highlighted fields to see the plan (" + ", ".join(exc.problems) + ")"
        if cfg in self._plan_cache:
            return self._plan_cache[cfg], ""
        from lorakit.memory import plan as plan_run

        try:
            with self._engine:  # the run train(cfg) trains, from its own data: compare()'s planned peak after it
                run = plan_run(cfg)
                plan = run.as_planned()
        except Exception as exc:  # noqa: BLE001 - an unplannable model is a message, not a crash
            return None, f"no plan for {cfg.model}: {error_text(exc)}"
        self._plan_cache[cfg] = plan
        self._run_batches[cfg] = None if run.upper_bound else run.batches  # the time estimate prices these
        return plan, ""

    def request_plan(self, background: bool = True) -> None:
        """Recompute ``plan_result`` and ``fit_result`` in the background (the first plan imports
        transformers: seconds)."""
        self._planner.request(background)

    def _replan(self) -> None:
        self.plan_result = self.plan()
        self.fit_result = self.fit_verdict()
        self.time_result = self.time_estimate()
        self._notify("plan")

    # --- how long it will take ------------------------------------------------------------------------
    def time_estimate(self) -> tuple:
        """(lorakit.TimePlan or None, message): how long the form's run will take on this machine (the first
        estimate measures the machine: a few seconds, once)."""
        try:
            cfg = self.config()
        except ConfigError:
            return None, ""
        if cfg in self._time_cache:
            return self._time_cache[cfg], ""
        try:
            with self._engine:
                plan = lorakit.plan_time(cfg, self._run_batches.get(cfg), steps=cfg.max_steps)  # the plan's batches
        except Exception as exc:  # noqa: BLE001 - an unplannable model is a message, not a crash
            return None, f"no time estimate: {error_text(exc)}"
        self._time_cache[cfg] = plan
        return plan, ""

    @property
    def time_text(self) -> str:
        """'about 2 min (training 1 min, evaluation 40 s)' for the form's run, or why there is none."""
        plan, why = self.time_result
        if plan is None:
            return why
        from lorakit.memory import about

        return (f"{plan.text} (training {about(plan.train_s).removeprefix('about ')}, evaluation "
                f"{about(plan.eval_s).removeprefix('about ')})")

    # --- will it fit ----------------------------------------------------------------------------------
    @staticmethod
    def fit_devices() -> list:
        """What the fit verdict can be asked for: this machine, then the accelerators of lorakit's table."""
        from lorakit.memory import accelerators

        return [THIS_MACHINE, *accelerators()]

    def set_fit_device(self, device: str, background: bool = True) -> None:
        """Ask the fit verdict for ``device`` (one of ``fit_devices()``); recomputed with the plan."""
        if device not in self.fit_devices():
            raise ValueError(f"unknown device {device!r}: one of {', '.join(map(repr, self.fit_devices()))}")
        if device != self.fit_device:
            self.fit_device = device
            self._notify("plan")  # the verdict shown is the previous device's until the new one is in
            self.request_plan(background)

    def fit_verdict(self) -> tuple:
        """(lorakit.Fit or None, message): does the form's run fit on ``fit_device``, and the largest
        batch_size and seq_len that do. A GPU is planned as a CUDA run with the form's dtype."""
        try:
            cfg = self.config()
        except ConfigError:
            return None, "fix the highlighted fields to see the verdict"
        from lorakit.memory import fits

        device = self.fit_device
        try:
            with self._engine:  # the run plan shown: the verdict is for it
                return fits(cfg, devices=[device])[0], ""
        except Exception as exc:  # noqa: BLE001 - an unplannable model is a message, not a crash
            return None, f"no verdict for {device}: {error_text(exc)}"

    # --- the data check --------------------------------------------------------------------------------
    def request_data_check(self, background: bool = True) -> None:
        """Check in the background that the form's data can train, once the form's model is loaded."""
        if self._loaded() is not None and self._data_checked != self._data_key():
            self._checker.request(background)

    def check_data(self) -> str:
        """Build the form's data with the loaded model's tokenizer, as a run would; the problem found
        ("" when none, or when the model is not loaded or a data field is invalid) becomes the
        ``dataset`` problem. A key already checked (or previewed) is not built again."""
        from lorakit.data import build_data

        with self._check_lock:
            key, info, cfg = self._data_key(), self._loaded(), self.form.data_config()
            if self._data_checked == key:
                return self.data_error
            if info is None or cfg is None:
                return ""
            try:
                build_data(cfg, info.tokenizer, cfg.task or info.task)  # data of another kind: named
                error = ""
            except Exception as exc:  # noqa: BLE001 - DataError and friends: next to the dataset field
                error = error_text(exc)
            with self._lock:
                if key != self._data_key():
                    return ""  # the form changed meanwhile: set() asked for another check
                self.data_error, self._data_checked = error, key
        self._notify("data")
        self._validate()
        return error

    # --- data preview ----------------------------------------------------------------------------------
    def preview_data(self, n: int = 3, background: bool = True) -> None:
        """Build the data for the form's choices: counts, truncation and a preview of the loss tokens."""
        self._jobs.start("preparing data", lambda: self._preview(n), background)

    def _preview(self, n: int) -> None:
        from lorakit.data import build_data

        from .preview import preview_html

        key = self._data_key()  # a change while the preview builds makes its result stale: dropped
        try:
            cfg = self.config()
        except ConfigError as exc:
            with self._lock:
                self.data_stats, self.data_html, self.data_changed = None, "", ()
                # only a dataset problem is the data's own; any other is already shown at its field,
                # and must not turn into a dataset problem that outlives its fix (it would block Train)
                self.data_error = exc.problems.get("dataset", "")
                self.data_hint = "" if self.data_error else (
                    "fix the highlighted fields first: " + ", ".join(exc.problems))
                self._previewed = bool(self.data_error)
            self._notify("data")
            return
        try:
            if self._loaded() is None:
                self._load(cfg.model)
                if self._loaded() is None:  # why is said at the model field: not a problem of the data
                    with self._lock:
                        self.data_hint = "the model did not load, so there is no tokenizer: see the model's message"
                    self._notify("data")
                    return
            tok = self.model_info.tokenizer
            bundle = build_data(cfg, tok, cfg.task or self.model_info.task)
            html = preview_html(bundle, tok, n=n)
        except Exception as exc:  # noqa: BLE001 - DataError and friends: next to the dataset field
            self._data_done(key, None, "", error_text(exc))
            return
        self._data_done(key, dict(bundle.stats), html, "")

    def _data_done(self, key: tuple, stats: Optional[dict], html: str, error: str) -> None:
        """Show a finished preview, unless the form changed meanwhile (set() already cleared it)."""
        with self._lock:
            if key != self._data_key():
                return
            self.data_stats, self.data_html, self.data_error, self.data_changed = stats, html, error, ()
            self.data_hint, self._previewed = "", True
            self._data_checked = key  # a preview is a check too
        self._notify("data")
        self._validate()

    def _clear_data(self, changed: tuple) -> None:
        """Forget the preview and the check: they were for other values (the caller holds the lock)."""
        if self._previewed or self.data_changed:  # say why the preview went away
            self.data_changed = tuple(dict.fromkeys((*self.data_changed, *changed)))
        self.data_stats, self.data_html, self.data_error, self.data_hint = None, "", "", ""
        self._previewed, self._data_checked = False, None

    def _data_key(self) -> tuple:
        return self.form.data_key()

