"""PlaygroundControl: the Playground panel's state, and the only place it calls the engine
(``lorakit.playground.session.Session``).

The panel forwards its widgets' values (``set_prompt``, ``select``, ``set_setting``, ``set_base``) and its
buttons (``generate``, ``stop``, ``clear``); it redraws on the controller's topics:

- ``playground`` (): the choices, the selection, the settings' problems or the memory changed;
- ``playground_piece`` (column): a column's answer grew by a piece (the panel throttles its redraws);
- ``playground_status`` (): the panel's status line changed (running, done, stopped, an error).

Generate runs on the Studio's job machinery (``jobs.Jobs``): the session (the base once, the chosen runs'
adapters by name) is loaded on a job thread, then every chosen column answers in turn, token by token.
Stop ends the answer being written within a token and skips the columns not yet started.

A conversation: each Generate's answers become a turn (``turns``), and a column answers its own earlier turns
plus the new prompt (``conversation``), through the chat template; Clear starts a new one. Changing the
columns attaches / detaches adapters on the loaded base; only another base loads anew.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from lorakit.config import ConfigError
from lorakit.playground import AnswerStats, GenerationSettings

from .jobs import error_text

BASE = "base"


@dataclass
class ColumnState:
    """One column's answer so far and its timing."""
    name: str
    label: str
    text: str = ""
    stats: AnswerStats = field(default_factory=AnswerStats)
    state: str = "waiting"  # 'waiting', 'writing', 'done', 'stopped', 'failed'
    messages: list = field(default_factory=list)  # the conversation it answers: its earlier turns + the prompt


@dataclass
class Turn:
    """One prompt of the conversation and the answer of each column that gave one."""
    prompt: str
    answers: dict = field(default_factory=dict)  # column name -> its answer (as shown, a stopped one cut short)


class PlaygroundControl:
    """What the Playground shows and does; ``controller`` is the Studio's (its store, jobs and status)."""

    def __init__(self, controller, model: Optional[str] = None):
        self.c = controller
        self.prompt = ""
        self.settings: dict = GenerationSettings().__dict__.copy()
        self.problems: dict = {}
        self.base = model or self._default_base()
        self.selected: list = []
        self.columns: list = []  # ColumnState of the latest Generate, in column order
        self.turns: list = []  # the conversation before the latest Generate (Turn); Clear empties it
        self.asked = ""  # the latest Generate's prompt
        self.memory_text = ""
        self.status: tuple = ("info", "Type a prompt, pick the columns, press Generate.")
        self.lock = threading.Lock()  # guards columns' text while the job thread writes
        self._stop = threading.Event()
        self._running = False
        self._session = None
        self._session_key: tuple = ()
        self.selected = self._default_selection()
        controller.on("runs", self.refresh)

    # --- what can be chosen ----------------------------------------------------------------------------
    def _records(self) -> list:
        return [r for r in self.c.records() if r.status in ("finished", "stopped")]

    def _default_base(self) -> str:
        form = self.c.values.get("model") or "smollm2-135m"
        lora = [r.config.model for r in self._records() if r.config.method == "lora" and r.adapter_path]
        return form if form in lora or not lora else lora[-1]  # the form's model, unless only others have runs

    def bases(self) -> list:
        """The base models to choose from: those of stored LoRA runs, and the form's model."""
        names = [r.config.model for r in self._records() if r.config.method == "lora"]
        names += [self.c.values.get("model"), self.base]
        return list(dict.fromkeys(n for n in names if n))

    def choices(self) -> list:
        """[(name, label)] of the columns that can be loaded: the base, then its stored runs, newest last."""
        from lorakit.playground import column_label, why_not

        out = [(BASE, f"base ({self.base})")]
        out += [(r.run_id, column_label(r)) for r in self._records() if not why_not(r, self.base)]
        return out

    def unavailable(self) -> list:
        """[(run id, reason)] of the stored runs that cannot be a column on this base."""
        from lorakit.playground import why_not

        return [(r.run_id, why) for r in self._records() if (why := why_not(r, self.base))]

    def _default_selection(self) -> list:
        names = [n for n, _ in self.choices()]
        return names[:1] + names[1:][-2:]  # the base and the two newest runs

    def refresh(self) -> None:
        """The store changed (a run finished): keep the selection that still exists."""
        names = {n for n, _ in self.choices()}
        self.selected = [n for n in self.selected if n in names] or self._default_selection()
        self.c._notify("playground")

    # --- values from the widgets -------------------------------------------------------------------------
    def set_prompt(self, text: str) -> None:
        self.prompt = str(text)

    def set_base(self, model: str) -> None:
        if model and model != self.base:
            self.base = model
            self.selected = self._default_selection()
            self._forget()  # another model: the conversation was with the previous one
            self.c._notify("playground")

    def select(self, names) -> None:
        known = {n for n, _ in self.choices()}
        self.selected = [n for n in names if n in known]
        self.c._notify("playground")

    def set_setting(self, name: str, value) -> dict:
        """One generation setting; returns the settings' problems (every field named)."""
        if name not in self.settings:
            raise ConfigError({name: f"unknown setting; allowed: {', '.join(self.settings)}"})
        self.settings[name] = value
        try:
            GenerationSettings(**self.settings).validate()
            self.problems = {}
        except ConfigError as exc:
            self.problems = exc.problems
        self.c._notify("playground")
        return self.problems

    # --- Generate / Stop ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    def generate(self, background: bool = True) -> bool:
        """Answer the prompt in every chosen column (on a job thread); False, with the reason, when refused."""
        why = self._why_not()
        if why:
            self._say("error" if self.problems or not self._running else "warn", why)
            return False
        settings = GenerationSettings(**self.settings)
        order = [n for n, _ in self.choices() if n in self.selected]
        labels = dict(self.choices())
        with self.lock:
            self._fold()
            self.asked = self.prompt
            self.columns = [ColumnState(n, labels[n], messages=self.conversation(n)) for n in order]
        self._stop = threading.Event()
        self._running = True
        self.c._notify("playground")
        self._say("info", self._loading_text(order))
        stop = self._stop
        self.c._jobs.start("playground", lambda: self._run(order, settings, stop), background)
        return True

    def _loading_text(self, order: list) -> str:
        if self._session is None or self._session_key[:1] != (self.base,):
            return "Loading the base and the adapters…"
        return "Attaching the adapters…" if self._session_key != self._key(order) else "Generating…"

    # --- the conversation ---------------------------------------------------------------------------------
    def conversation(self, name: str) -> list:
        """What column ``name`` answers: its earlier turns (the prompts it answered, with its answers) and the
        latest prompt, as chat messages; the session applies the chat template to all of it."""
        out = []
        for t in self.turns:
            if name in t.answers:
                out += [{"role": "user", "content": t.prompt}, {"role": "assistant", "content": t.answers[name]}]
        return out + [{"role": "user", "content": self.asked}]

    def history(self, name: str) -> list:
        """[(prompt, answer)] of column ``name``'s earlier turns, oldest first (what its column shows above)."""
        return [(t.prompt, t.answers[name]) for t in self.turns if name in t.answers]

    def _fold(self) -> None:
        """The latest Generate's answers become a turn of the conversation (a failed or empty one is left out)."""
        answers = {c.name: c.text.strip() for c in self.columns if c.state in ("done", "stopped") and c.text.strip()}
        if self.asked and answers:
            self.turns.append(Turn(self.asked, answers))

    def _forget(self) -> None:
        with self.lock:
            self.turns, self.columns, self.asked = [], [], ""

    def clear(self) -> bool:
        """Start a new conversation (refused while generating: Stop first)."""
        if self._running:
            self._say("warn", "The Playground is generating: press Stop, then Clear.")
            return False
        self._forget()
        self.c._notify("playground")
        self._say("info", "Conversation cleared: the next prompt starts a new one.")
        return True

    def _why_not(self) -> str:
        if self._running:
            return "The Playground is generating: press Stop, or wait for it to finish."
        if self.problems:
            return "; ".join(f"{k}: {v}" for k, v in self.problems.items())
        if not self.prompt.strip():
            return "prompt: type a prompt first."
        if not self.selected:
            return "columns: pick at least one column (the base or a stored run)."
        return ""

    def stop(self) -> bool:
        """End the answer being written within a token; the columns not started stay empty."""
        if not self._running:
            return False
        self._stop.set()
        self._say("warn", "Stopping…")
        return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        return self.c._jobs.wait(deadline)

    # --- on the job thread ----------------------------------------------------------------------------------
    def _key(self, order: list) -> tuple:
        return (self.base, tuple(sorted(n for n in order if n != BASE)))

    def _load(self, order: list):
        """The session for these columns: a different base loads anew; other runs on the same base are
        attached / detached by name on the base already loaded (``Session.set_runs``)."""
        from lorakit.playground import Session

        key, runs = self._key(order), [n for n in order if n != BASE]
        if self._session is None or self._session.model_name != self.base:
            self._session = None  # let the previous base go before the next one loads
            self._session = Session(runs, store=self.c.store, model=self.base)
        elif self._session_key != key:
            self._session_key = ()  # a failure part way leaves it to be redone next time
            self._session.set_runs(runs, store=self.c.store)
        self._session_key = key
        self.memory_text = self._session.memory().text()
        self.c._notify("playground")
        return self._session

    def _run(self, order: list, settings: GenerationSettings, stop: threading.Event) -> None:
        try:
            session = self._load(order)
            self._say("info", "Generating…")
            for col in self.columns:
                if stop.is_set():
                    col.state = "stopped"
                    continue
                self._answer(session, col, settings, stop)
            stopped = any(c.state == "stopped" for c in self.columns)
            # set, not said: the redraw below draws the columns' final state, then this line
            self.status = ("warn", f"Stopped. {self._summary()}") if stopped else \
                ("success", f"Done. {self._summary()}")
        except Exception as exc:  # noqa: BLE001 - said in the panel, never a silent thread
            for col in self.columns:
                if col.state in ("waiting", "writing"):
                    col.state = "failed"
            self.status = ("error", f"Generate failed: {error_text(exc)}")
        finally:
            self._running = False
            self.c._notify("playground")

    def _answer(self, session, col: ColumnState, settings, stop) -> None:
        col.state = "writing"
        self.c._notify("playground_piece", col.name)
        for piece in session.stream(col.messages, col.name, settings, stop=stop, stats=col.stats):
            with self.lock:
                col.text += piece
            self.c._notify("playground_piece", col.name)
        col.state = "stopped" if col.stats.stopped else "done"
        self.c._notify("playground_piece", col.name)

    def _summary(self) -> str:
        return " · ".join(f"{c.name}: {c.stats.tokens} tokens" for c in self.columns)

    def _say(self, level: str, text: str) -> None:
        self.status = (level, text)
        self.c._notify("playground_status")
