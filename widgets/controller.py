"""StudioController: the Studio's state, and the only place that calls the engine.

Panels forward widget values with ``set(**fields)`` and button presses with ``train()``,
``stop()``, ``load_model()``, ``preview_data()``…; they redraw when the controller notifies a
topic they subscribed to with ``on(topic, fn)``:

- ``values`` (changes): form values changed (a preset button, a loaded model's targets);
- ``problems`` (problems): field -> message, for the message next to each field;
- ``model`` (): a model was loaded, or loading started / failed (``model_info``, ``model_error``);
- ``plan`` (): the planner's prediction for the form (``plan_result``) was recomputed;
- ``data`` (): a data preview finished or failed, or a change made it stale (``data_stats``,
  ``data_html``, ``data_error``, ``data_changed``, ``data_hint``);
- ``status`` (): the status line changed for a reason other than a training step;
- ``run`` (live): Train was pressed (or an outside run started): a fresh ``LiveRun``;
- ``event`` (event): a lorakit event of the current run, already folded into ``live``;
- ``runs`` (): the run store changed (a run finished, runs were deleted).

Sinks run on the training thread and only update state and notify; every error (a bad field, a
missing model package, a failed run, an exception in a panel) ends up as a readable message in a
field's message or the status line, never as a silent thread death or a traceback.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Optional

import lorakit
from lorakit.config import ConfigError, RunConfig
from lorakit.events import RunFinished, RunStarted, StepLogged, error_line

from .imports import warm
from .runstate import LiveRun

log = logging.getLogger("lorakit.widgets")

# The RunConfig fields the Studio's panels edit (everything else keeps RunConfig's default).
FORM_FIELDS = (
    "model", "method", "quant", "double_quant", "dtype", "optimizer", "rank", "alpha", "dropout",
    "target_modules", "dataset", "train_examples", "eval_examples", "max_steps", "batch_size", "seq_len",
    "learning_rate",
)
# A data preview describes these values: changing any of them clears it (it would be stale).
DATA_FIELDS = ("model", "dataset", "seq_len", "train_examples", "eval_examples")
# The ranks the Studio's rank slider offers; a rank set from code outside them (Studio(rank=12)) is
# valid LoRA and becomes one extra stop on the slider rather than a refusal.
RANKS = tuple(2 ** i for i in range(9))  # 1 … 256


@dataclass
class ModelSummary:
    """What the panels need from a loaded model (the weights themselves are not kept)."""
    name: str
    num_params: int
    num_layers: int
    architecture: str
    load_s: float
    groups: list  # [lorakit.adapters.LinearGroup]
    tokenizer: Any = None

    @property
    def group_names(self) -> list:
        return [g.name for g in self.groups]


class StudioController:
    """Form values, the loaded model's summary, the run in progress and the run store."""

    def __init__(self, store=None, **values):
        defaults = RunConfig()
        self.values: dict = {f: getattr(defaults, f) for f in FORM_FIELDS}
        unknown = set(values) - {f.name for f in dataclasses.fields(RunConfig)}
        if unknown:
            raise TypeError(f"unknown RunConfig field(s): {', '.join(sorted(unknown))}")
        self.extra: dict = {k: v for k, v in values.items() if k not in FORM_FIELDS}  # kept, not shown
        self.values.update({k: _plain(v) for k, v in values.items() if k in FORM_FIELDS})
        self.problems: dict = {}
        self.model_info: Optional[ModelSummary] = None
        self.model_error: str = ""  # why the current model could not be loaded
        self.model_loading: str = ""  # name being loaded
        self.data_stats: Optional[dict] = None
        self.data_html: str = ""
        self.data_error: str = ""
        self.data_changed: tuple = ()  # the DATA_FIELDS changed since the last preview (it was cleared)
        self.data_hint: str = ""  # why Preview did nothing (other fields are invalid); never a problem
        self.live: Optional[LiveRun] = None  # the current (or last) run
        self.previous: Optional[LiveRun] = None  # the run before it, for side-by-side memory
        self.status: tuple = ("info", "Ready. Pick a model and settings, then press Train.")
        self.errors: list = []  # every error reported, newest last (for tests and debugging)
        self._listeners: dict = defaultdict(list)
        self._lock = threading.RLock()
        self._thread: Optional[threading.Thread] = None
        self._active = False
        self._stop: Optional[threading.Event] = None
        self._jobs: list = []
        # One model construction at a time: the planner builds models under accelerate's
        # init_empty_weights, which patches torch.nn.Module for the whole process, so a model
        # loading on another thread meanwhile would get meta tensors (or untied weights). Jobs
        # take this lock around engine calls; a run holds it until its first step is logged.
        self._engine = threading.Lock()
        self._plan_cache: dict = {}
        self.plan_result: tuple = (None, "computing the prediction…")  # (MemoryBreakdown or None, message)
        self._plan_wanted = False
        self._plan_busy = False
        self.store = None
        self.store_error = ""
        self._open_store(store)
        self._validate(notify=False)

    # --- subscriptions ---------------------------------------------------------------------------
    def on(self, topic: str, fn: Callable) -> None:
        """Call ``fn(*args)`` whenever ``topic`` is notified."""
        self._listeners[topic].append(fn)

    def _notify(self, topic: str, *args) -> None:
        for fn in list(self._listeners[topic]):
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - a broken panel must not break the run
                self.errors.append(exc)
                log.debug("listener %r failed on %s", fn, topic, exc_info=True)
                if topic != "status":  # reporting must not loop through a broken status line
                    self._set_status("error", f"display error ({topic}): {type(exc).__name__}: {exc}")

    def _set_status(self, level: str, text: str) -> None:
        self.status = (level, text)
        self._notify("status")

    def report(self, level: str, text: str) -> None:
        """Show a message in the status line (panels use it for their own errors)."""
        if level == "error":
            self.errors.append(text)
        self._set_status(level, text)

    # --- form values and validation -------------------------------------------------------------
    def set(self, **changes) -> dict:
        """Update form values (from widgets); re-validate; returns the problems."""
        unknown = set(changes) - set(FORM_FIELDS)
        if unknown:
            raise TypeError(f"not a Studio field: {', '.join(sorted(unknown))}")
        changes = {k: _plain(v) for k, v in changes.items()}
        changes = {k: v for k, v in changes.items() if self.values.get(k) != v}
        if not changes:
            return self.problems
        stale = tuple(k for k in DATA_FIELDS if k in changes)
        with self._lock:
            if "model" in changes:
                self.model_error = ""
            if stale:
                self._clear_data(stale)
            self.values.update(changes)
        self._notify("values", changes)
        if stale:
            self._notify("data")
        problems = self._validate()
        self.request_plan()
        return problems

    def _clear_data(self, changed: tuple) -> None:
        """Forget the preview: its counts and tokens were for other values (the caller holds the lock)."""
        had_preview = self.data_stats is not None or bool(self.data_html or self.data_error)
        if had_preview or self.data_changed:
            self.data_changed = tuple(dict.fromkeys((*self.data_changed, *changed)))
        self.data_stats, self.data_html, self.data_error, self.data_hint = None, "", "", ""

    def _data_key(self) -> tuple:
        return tuple(self.values[k] for k in DATA_FIELDS)

    def _validate(self, notify: bool = True) -> dict:
        problems: dict = {}
        try:
            RunConfig(**self._config_kwargs())
        except ConfigError as exc:
            problems.update(exc.problems)
        except (TypeError, ValueError) as exc:
            problems["form"] = str(exc)
        v, info = self.values, self.model_info
        if (info is not None and info.name == v["model"] and v["method"] == "lora"
                and "target_modules" not in problems and isinstance(v["target_modules"], tuple)):
            unknown = [t for t in v["target_modules"] if t not in info.group_names]
            if unknown:
                problems["target_modules"] = (
                    f"{', '.join(map(repr, unknown))} not in {info.name}; its linear layers are "
                    f"{', '.join(info.group_names)}")
        if self.model_error:
            problems["model"] = self.model_error
        if self.data_error:
            problems["dataset"] = self.data_error
        self.problems = problems
        if notify:
            self._notify("problems", problems)
        return problems

    def _config_kwargs(self) -> dict:
        kw = dict(self.extra)
        kw.update(self.values)
        return kw

    def config(self) -> RunConfig:
        """The RunConfig the form describes (raises ConfigError with every problem)."""
        problems = self._validate(notify=False)
        if problems:
            raise ConfigError(problems)
        return RunConfig(**self._config_kwargs())

    # --- the model ---------------------------------------------------------------------------------
    def load_model(self, name: Optional[str] = None, background: bool = True) -> None:
        """Load ``name`` (default: the form's model) to discover its layers; weights are dropped after."""
        name = (name or self.values["model"]).strip()
        if name != self.values["model"]:
            self.set(model=name)
        self.model_loading, self.model_error = name, ""
        self._notify("model")
        self._job(f"loading {name}", lambda: self._load(name), background)

    def _load(self, name: str) -> None:
        from lorakit.adapters import linear_modules

        try:
            with self._engine:
                loaded = lorakit.load_model(name, device="cpu")
                info = ModelSummary(name, loaded.num_params, loaded.num_layers, loaded.architecture,
                                    loaded.load_s, linear_modules(loaded.model), loaded.tokenizer)
                del loaded
        except Exception as exc:  # noqa: BLE001 - ModelUnavailable and anything else: next to the field
            with self._lock:
                if self.values["model"] == name:
                    self.model_error = _message(exc)
                self.model_loading = ""
            self._notify("model")
            self._validate()
            return
        with self._lock:
            self.model_info, self.model_loading, self.model_error = info, "", ""
        self._notify("model")
        self._validate()

    def trainable(self) -> Optional[tuple]:
        """(trainable, total, percent) for the form's choices, or None until the model is loaded."""
        info, v = self.model_info, self.values
        if info is None or info.name != v["model"]:
            return None
        if v["method"] == "full":
            return info.num_params, info.num_params, 100.0
        tm = v["target_modules"]
        preset = lorakit.config.TARGET_PRESETS.get(tm) if isinstance(tm, str) else tm
        targets = info.group_names if preset == "all-linear" else list(preset or ())
        rank = v["rank"] if isinstance(v["rank"], int) and v["rank"] > 0 else 0
        lora = sum(g.lora_params(rank) for g in info.groups if g.name in targets)
        total = info.num_params + lora
        return lora, total, (100.0 * lora / total if total else 0.0)

    # --- planner -------------------------------------------------------------------------------------
    def plan(self) -> tuple:
        """(MemoryBreakdown or None, message): the planner's prediction for the form's choices."""
        try:
            cfg = self.config()
        except ConfigError as exc:
            return None, "fix the highlighted fields to see the prediction (" + ", ".join(exc.problems) + ")"
        if cfg in self._plan_cache:
            return self._plan_cache[cfg], ""
        try:
            from lorakit.planner import plan_for_config
        except ImportError:
            return None, "the memory planner is not available in this lorakit version"
        try:
            with self._engine:
                plan = plan_for_config(cfg)
        except Exception as exc:  # noqa: BLE001 - an unplannable model is a message, not a crash
            return None, f"no prediction for {cfg.model}: {_message(exc)}"
        self._plan_cache[cfg] = plan
        return plan, ""

    def request_plan(self, background: bool = True) -> None:
        """Recompute ``plan_result`` in the background (the first plan imports transformers: seconds)."""
        with self._lock:
            self._plan_wanted = True
            if self._plan_busy:
                return  # the running job picks the new values up
            self._plan_busy = True
        self._job("planning memory", self._plan_loop, background)

    def _plan_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._plan_wanted:
                        self._plan_busy = False
                        return
                    self._plan_wanted = False
                self.plan_result = self.plan()
                self._notify("plan")
        finally:
            with self._lock:
                self._plan_busy = False

    # --- data preview ----------------------------------------------------------------------------------
    def preview_data(self, n: int = 3, background: bool = True) -> None:
        """Build the data for the form's choices: counts, truncation and a preview of the loss tokens."""
        self._job("preparing data", lambda: self._preview(n), background)

    def _preview(self, n: int) -> None:
        from lorakit.data import build_data, preview_html

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
            self._notify("data")
            return
        try:
            if self.model_info is None or self.model_info.name != cfg.model:
                self._load(cfg.model)
                if self.model_info is None or self.model_info.name != cfg.model:
                    raise RuntimeError(self.model_error or f"cannot load {cfg.model}")
            tok = self.model_info.tokenizer
            bundle = build_data(cfg, tok)
            html = preview_html(bundle, tok, n=n)
        except Exception as exc:  # noqa: BLE001 - DataError and friends: next to the dataset field
            self._data_done(key, None, "", _message(exc))
            return
        self._data_done(key, dict(bundle.stats), html, "")

    def _data_done(self, key: tuple, stats: Optional[dict], html: str, error: str) -> None:
        """Show a finished preview, unless the form changed meanwhile (set() already cleared it)."""
        with self._lock:
            if key != self._data_key():
                return
            self.data_stats, self.data_html, self.data_error, self.data_changed = stats, html, error, ()
            self.data_hint = ""
        self._notify("data")
        self._validate()

    # --- training --------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True from the Train press until the run's thread has ended."""
        return self._active

    def train(self) -> bool:
        """Start a run in a background thread; False (with a message) when refused."""
        with self._lock:
            if self.running:
                live = self.live
                where = f" (step {live.last_step}/{live.max_steps})" if live and live.steps else ""
                self._set_status("warn", f"A run is already going{where}: {live.label if live else ''}. "
                                         "Press Stop first, or wait for it to finish.")
                return False
            problems = self._validate()
            if problems:
                fields = ", ".join(problems)
                first = next(iter(problems.values()))
                self._set_status("error", f"Cannot train: fix {len(problems)} field(s) ({fields}). {first}")
                return False
            cfg = self.config()
            self.previous = self._previous_candidate()
            self.live = LiveRun.for_config(cfg, self._plan_cache.get(cfg))
            self._stop = threading.Event()
            self._active = True
            self._thread = threading.Thread(target=self._run, args=(cfg, self._stop, self.live),
                                            name="lorakit-studio-run", daemon=True)
            self._set_status("running", f"{cfg.label}: loading the model and preparing data…")
            self._notify("run", self.live)
            self._thread.start()
            return True

    def _previous_candidate(self) -> Optional[LiveRun]:
        """The last run with a memory breakdown: this session's, else the newest in the store."""
        if self.live is not None and self.live.memory is not None:
            return self.live
        if self.previous is not None:
            return self.previous
        for rec in reversed(self.records()):
            if rec.memory is not None:
                live = LiveRun.for_config(rec.config, rec.planned_memory)
                live.memory, live.status, live.run_id, live.record = rec.memory, rec.status, rec.run_id, rec
                live.plan_scope = "batch"  # the engine stores the prediction for the trained batch
                if rec.planned_memory is None:
                    live.plan_error = "the run store has no prediction for this run"
                return live
        return None

    def _run(self, cfg: RunConfig, stop: threading.Event, live: LiveRun) -> None:
        try:
            warm()
            if live.planned is None:  # the prediction, before the model loads (replaced by the engine's)
                live.planned = self.plan()[0]
                self._notify("run", live)
            self._engine.acquire()
            live.holds_engine = True  # released at the first logged step (see _sink)
            lorakit.train(cfg, sinks=[lambda e: self._sink(e, live)],
                          store=self.store if self.store is not None else False, stop=stop)
        except BaseException as exc:  # noqa: BLE001 - train() never raises, but never die silently
            self._sink(RunFinished(live.run_id, "failed", None, _message(exc)), live)
        finally:
            self._release_engine(live)
            if not live.done:  # the engine ended without RunFinished: say so
                self._sink(RunFinished(live.run_id, "failed", None, "the run ended without a result"), live)
            self._active = False
            self._notify("status")  # Stop goes grey, Train is free again

    def feed(self, event) -> None:
        """Events from outside the Studio (``LiveCallback`` on a user's own Trainer)."""
        if self._active:  # the Studio's own run owns the panels: an outside event must not end or mix into it
            self.errors.append(RuntimeError(f"outside {type(event).__name__} ignored: the Studio is training"))
            return
        if isinstance(event, RunStarted) or self.live is None or self.live.done:
            if self.live is not None and self.live.memory is not None:
                self.previous = self.live
            cfg = getattr(event, "config", None)
            live = LiveRun.for_config(cfg) if isinstance(cfg, RunConfig) else LiveRun(label=_outside_label(event))
            self.live = live
            self._notify("run", live)
        self._sink(event, self.live)

    def _sink(self, event, live: LiveRun) -> None:
        """Called on the training thread: fold the event in, update the status, notify panels."""
        try:
            if isinstance(event, (StepLogged, RunFinished)):
                self._release_engine(live)  # model built, adapters attached, memory planned
            live.apply(event)
            if live is self.live:
                self.status = live.message()
            self._notify("event", event)
            if isinstance(event, RunFinished):
                self._set_status(*live.message())
                self._notify("runs")
        except Exception as exc:  # noqa: BLE001 - never a traceback from the training thread
            self.errors.append(exc)
            log.debug("display failed on %s", type(event).__name__, exc_info=True)  # for debugging only
            self._set_status("error", f"display error on {type(event).__name__}: {type(exc).__name__}: {exc}")

    def _release_engine(self, live: LiveRun) -> None:
        if getattr(live, "holds_engine", False):
            live.holds_engine = False
            self._engine.release()

    def stop(self) -> bool:
        """Ask the run to end after the current step (status 'stopped', history kept)."""
        if not self.running or self._stop is None:
            self._set_status("info", "Nothing to stop: no run is going.")
            return False
        self._stop.set()
        live = self.live
        live.stopping = True
        self._set_status("warn", f"{live.label}: stopping after the current step…")
        return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the run and background jobs end; True when everything finished."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        for t in [self._thread, *list(self._jobs)]:
            if t is None:
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        alive = [t for t in [self._thread, *self._jobs] if t is not None and t.is_alive()]
        return not alive

    # --- the run store ---------------------------------------------------------------------------------
    def _open_store(self, store) -> None:
        if store is False:
            return
        try:
            from lorakit.store import RunStore

            self.store = store if isinstance(store, RunStore) else RunStore(store)
        except Exception as exc:  # noqa: BLE001 - StoreError: say it, train without a store
            self.store_error = _message(exc)
            self.status = ("error", f"Run store unavailable (runs will not be kept): {self.store_error}")

    def records(self) -> list:
        """Every stored run, oldest first (empty without a store)."""
        if self.store is None:
            return []
        try:
            return self.store.records()
        except Exception as exc:  # noqa: BLE001
            self.report("error", f"cannot read the run store: {_message(exc)}")
            return []

    def delete_runs(self, run_ids) -> int:
        """Delete runs (and their adapters) from the store; the running run is refused."""
        if self.store is None:
            return 0
        run_ids = list(run_ids)
        if self.running and self.live is not None and self.live.run_id in run_ids:
            self.report("warn", "The running run cannot be deleted; stop it first.")
            return 0
        n = 0
        for rid in run_ids:
            try:
                self.store.delete(rid)
                n += 1
            except Exception as exc:  # noqa: BLE001
                self.report("error", f"cannot delete run {rid}: {_message(exc)}")
        self._notify("runs")
        return n

    # --- background jobs -------------------------------------------------------------------------------
    def _job(self, what: str, fn: Callable[[], None], background: bool) -> None:
        def guarded():
            try:
                warm()
                fn()
            except Exception as exc:  # noqa: BLE001 - jobs report, never die silently
                log.debug("%s failed", what, exc_info=True)  # for debugging only
                self.report("error", f"{what} failed: {_message(exc)}")

        if not background:
            guarded()
            return
        t = threading.Thread(target=guarded, name=f"lorakit-studio-{what}", daemon=True)
        self._jobs = [j for j in self._jobs if j.is_alive()] + [t]
        t.start()


def _message(exc: BaseException) -> str:
    """A readable one-paragraph message for an exception (no traceback)."""
    if isinstance(exc, ConfigError):
        return error_line(exc)  # its problems, "field: message; ..."
    text = str(exc).strip() or type(exc).__name__
    if type(exc).__name__ not in ("ModelUnavailable", "DataError", "StoreError"):
        text = f"{type(exc).__name__}: {text}"
    return text


def _plain(value):
    """Widget values to RunConfig values: lists become tuples, numpy scalars Python numbers."""
    if isinstance(value, list):
        return tuple(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value


def _outside_label(event) -> str:
    return getattr(event, "run_id", "") or "your run"
