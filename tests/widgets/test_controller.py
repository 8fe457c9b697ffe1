"""StudioController driven as the panels drive it: ``set``, ``load_model``, ``request_plan``, ``train``,
``stop``; what they read back: ``problems``, ``status``, ``plan_result``, ``live``, ``errors``.

The run-control tests replace ``lorakit.train`` by a fake engine that waits on an event, so a run is
"going" for exactly as long as a test needs (no timing); the real engine is in test_studio.py.
"""
from __future__ import annotations

import threading

import pytest

import lorakit
from lorakit.config.run_config import ConfigError, RunConfig
from lorakit.run.events import RunFinished, RunStarted, StepLogged
from lorakit.store import RunStore

WAIT = 600  # seconds; generous for a loaded CI machine, never asserted on


def _controller(tiny, store=False, **values):
    from lorakit.widgets import StudioController

    return StudioController(store=store, **dict(tiny, **values))


def _listen(c, topic: str) -> list:
    """Every notification of ``topic``, as the tuple of its arguments."""
    heard: list = []
    c.on(topic, lambda *args: heard.append(args))
    return heard


# --- form state and validation ---------------------------------------------------------------------------

def test_set_reports_every_problem_by_field_and_config_follows_the_form(tiny):
    c = _controller(tiny)
    assert c.problems == {}
    problems_heard, values_heard = _listen(c, "problems"), _listen(c, "values")
    problems = c.set(rank=0, learning_rate=-1.0, dropout=0.2)
    assert problems["rank"] == "rank must be an integer >= 1, got 0"
    assert problems["learning_rate"] == "learning_rate must be a number > 0, got -1.0"
    assert set(problems) == {"rank", "learning_rate"} and c.problems == problems
    assert values_heard == [({"rank": 0, "learning_rate": -1.0, "dropout": 0.2},)]
    assert problems_heard[-1] == (problems,)
    with pytest.raises(ConfigError) as err:
        c.config()
    assert set(err.value.problems) == {"rank", "learning_rate"}
    # a value equal to the form's is no change: nothing is announced
    c.set(dropout=0.2)
    assert len(values_heard) == 1
    # fixing the fields: the form is a RunConfig again, with the widget values converted
    assert c.set(rank=16, learning_rate=1e-3, target_modules=["q_proj", "k_proj"]) == {}
    cfg = c.config()
    assert (cfg.rank, cfg.learning_rate, cfg.dropout, cfg.target_modules) == (16, 1e-3, 0.2, ("q_proj", "k_proj"))
    with pytest.raises(TypeError, match="not a Studio field: seed"):
        c.set(seed=3)  # a RunConfig field the panels do not edit


def test_fields_given_from_code_are_kept_and_unknown_ones_refused(tiny):
    c = _controller(tiny, seed=7, eval_every=2)
    assert c.extra == {"seed": 7, "eval_every": 2} and "seed" not in c.values
    assert (c.config().seed, c.config().eval_every) == (7, 2)
    with pytest.raises(TypeError, match="unknown RunConfig field"):
        _controller(tiny, ranks=8)


def test_target_modules_name_their_field_and_presets_count_against_the_loaded_model(tiny):
    c = _controller(tiny)
    problems = c.set(target_modules=("q_proj", "wq"))
    assert "'wq'" in problems["target_modules"] and "all-linear" in problems["target_modules"]
    assert c.set(target_modules=())["target_modules"].startswith("target_modules must name at least one")
    c.set(target_modules="qv", rank=8)
    assert c.trainable() is None  # nothing to count before the model is loaded
    c.load_model(background=False)
    assert c.wait(WAIT)
    n = c.model_info.num_params
    # tiny-llama: 2 layers, hidden 64, 2 kv heads of 16; LoRA adds r (d_in + d_out) per adapted layer
    assert c.trainable()[0] == 2 * 8 * ((64 + 64) + (64 + 32))  # q_proj, v_proj
    c.set(target_modules="all-linear")
    lora = 2 * 8 * (128 + 96 + 96 + 128 + 192 + 192 + 192)
    assert c.trainable() == (lora, n + lora, pytest.approx(100 * lora / (n + lora)))
    c.set(method="full")
    assert c.trainable() == (n, n, 100.0)


# --- background jobs and plan coalescing -------------------------------------------------------------------

def test_plan_requests_while_one_is_computing_fold_into_one_more_with_the_newest_values(tiny):
    c = _controller(tiny)
    started, release = threading.Event(), threading.Event()
    seen_ranks = []

    def slow_plan():  # the planner, held until the test releases it
        seen_ranks.append(c.values["rank"])
        started.set()
        release.wait(WAIT)
        return None, f"planned rank {c.values['rank']}"

    c.plan = slow_plan
    heard = _listen(c, "plan")
    c.request_plan()
    assert started.wait(WAIT)
    for rank in (2, 4, 16):  # each set() asks for a plan while the first is still computing
        c.set(rank=rank)
    c.request_plan()
    release.set()
    assert c.wait(WAIT)
    assert seen_ranks == [8, 16]  # one more plan, not four, and for the newest values
    assert len(heard) == 2 and c.plan_result == (None, "planned rank 16")


def test_the_real_plan_follows_the_form_and_an_invalid_form_says_which_fields(tiny):
    c = _controller(tiny)
    c.request_plan(background=False)
    plan, why = c.plan_result
    assert why == "" and plan.base_weights > 0
    c.set(quant="nf4")
    assert c.wait(WAIT)
    assert c.plan_result[0].base_weights < plan.base_weights  # 4-bit base weights
    c.set(batch_size=0)
    assert c.wait(WAIT)
    assert c.plan_result == (None, "fix the highlighted fields to see the plan (batch_size)")


def test_the_fit_verdict_plans_every_planner_field_of_the_config_even_those_set_from_code(tiny):
    gpu = next(name for name in lorakit.memory.fit.accelerators() if name.startswith("24GB"))
    needs = {}
    for adapter_dtype in ("float32", "bfloat16"):  # not a Studio field: given from code, kept in extra
        c = _controller(tiny, adapter_dtype=adapter_dtype)
        c.set_fit_device(gpu, background=False)
        fit, why = c.fit_result
        assert why == "" and fit.device == gpu
        expected = lorakit.fits(c.config(), devices=[gpu])[0]  # the run the plan shown beside it plans
        assert fit == expected
        needs[adapter_dtype] = fit.need
    assert needs["bfloat16"] < needs["float32"]  # 16-bit adapters, gradients and AdamW state


def test_a_slider_move_builds_and_validates_its_runconfig_once(tiny, monkeypatch):
    """One rank change, the plan not cached: the form's RunConfig is built (and field_problems run) once,
    and the plan and the fit verdict take its parts without validating again (before the parts: 5 and 7)."""
    import lorakit.config.run_config as config
    import lorakit.memory.planner as planner

    c = _controller(tiny)
    assert c.wait(WAIT)
    counts = {"RunConfig": 0, "field_problems": 0}
    post, problems = RunConfig.__post_init__, config.field_problems

    def counting_post(self):
        counts["RunConfig"] += 1
        return post(self)

    def counting_problems(values):
        counts["field_problems"] += 1
        return problems(values)

    monkeypatch.setattr(RunConfig, "__post_init__", counting_post)
    monkeypatch.setattr(config, "field_problems", counting_problems)
    monkeypatch.setattr(planner, "field_problems", counting_problems)
    c._plan_cache.clear()
    c.set(rank=c.values["rank"] * 2)
    assert c.wait(WAIT)
    assert c.plan_result[0] is not None and c.fit_result[0] is not None
    assert counts == {"RunConfig": 1, "field_problems": 1}


def test_errors_in_jobs_and_panels_land_in_the_state_not_in_the_caller(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network probe: fail at once
    c = _controller(tiny)
    # a model that cannot be loaded: a message next to the model field, and Train is refused for it
    c.load_model("someone/not-a-cached-model", background=False)
    assert "not-a-cached-model" in c.problems["model"] and c.model_info is None
    assert c.train() is False and "Cannot train" in c.status[1] and "model" in c.status[1]
    c.load_model("tiny-llama", background=False)
    assert "model" not in c.problems
    assert c.wait(WAIT)  # the plan job the model change started is over: the next request runs here
    # a job that raises: the status line says what failed, nothing is raised here or on the thread

    def broken_plan():
        raise RuntimeError("the planner broke")

    c.plan = broken_plan
    c.request_plan(background=False)
    assert c.status == ("error", "planning memory failed: RuntimeError: the planner broke")
    assert c.errors[-1] == c.status[1]
    del c.plan  # the real planner again
    # a panel whose redraw raises: reported in the status line, the form still changes
    c.on("values", lambda changes: 1 / 0)
    assert c.set(rank=4) == {} and c.values["rank"] == 4
    assert c.status[0] == "error" and "display error (values): ZeroDivisionError" in c.status[1]
    assert isinstance(c.errors[-1], ZeroDivisionError)
    assert c.wait(WAIT)


# --- data that cannot train is said before Train -----------------------------------------------------------

def test_data_that_fits_no_example_is_a_dataset_problem_before_train(tiny, tmp_path):
    store = tmp_path / "runs.db"
    c = _controller(tiny, store=store, seq_len=16)  # no chat-formatted example fits in 16 tokens
    assert "dataset" not in c.problems  # not known before the tokenizer is
    data_heard = _listen(c, "data")
    c.load_model(background=False)  # the check follows the load, in the background
    assert c.wait(WAIT)
    problem = c.problems["dataset"]
    assert "seq_len=16" in problem and "dataset" in problem
    assert data_heard  # the data panel heard about it
    assert c.train() is False
    assert c.status[0] == "error" and c.status[1].startswith("Cannot train: fix 1 field(s) (dataset)")
    assert c.live is None and not c.running
    # a longer seq_len: the problem goes at once (it was for other values) and the check passes
    assert "dataset" not in c.set(seq_len=256)
    assert c.wait(WAIT)
    assert c.problems == {}
    with RunStore(store) as st:
        assert len(st) == 0  # the refused press left nothing in the run store


def test_train_pressed_before_the_background_check_ran_checks_first(tiny, tmp_path):
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "2+2", "reply": "4"}\n{"question": "3+3", "reply": "6"}\n')
    c = _controller(tiny, store=tmp_path / "runs.db")
    c.load_model(background=False)
    assert c.wait(WAIT) and c.problems == {}
    c.set(dataset=str(bad))  # its background check may or may not have run when Train is pressed
    assert c.train() is False
    assert "Cannot train" in c.status[1] and "qa.jsonl" in c.problems["dataset"]
    assert c.live is None
    assert c.wait(WAIT)


def test_a_preview_finishing_after_a_change_is_dropped(tiny, monkeypatch):
    import lorakit.data

    c = _controller(tiny)
    real = lorakit.data.build_data

    def build_then_edit(cfg, tok):
        bundle = real(cfg, tok)
        c.set(train_examples=40)  # the user edits the field while the preview builds
        return bundle

    monkeypatch.setattr(lorakit.data, "build_data", build_then_edit)
    c.preview_data(background=False)
    assert c.data_stats is None and c.data_html == ""  # not the counts for 48 examples
    assert c.wait(WAIT)  # the plan job set() started


# --- the run itself ------------------------------------------------------------------------------------------

@pytest.fixture
def fake_engine(monkeypatch):
    """``lorakit.train`` replaced: RunStarted and step 1, then it waits for ``release`` (or Stop)."""
    engine = type("FakeEngine", (), {})()
    engine.release, engine.stepped, engine.calls = threading.Event(), threading.Event(), []

    def train(cfg, sinks=(), store=None, stop=None):
        engine.calls.append(cfg)
        sink = sinks[0]
        sink(RunStarted("run-1", cfg, 10, 100))
        sink(StepLogged("run-1", 1, cfg.max_steps, 2.5, 1e-3, 100.0, 0.1))
        engine.stepped.set()
        while not engine.release.wait(0.01):
            if stop.is_set():
                sink(RunFinished("run-1", "stopped", None, "stopped by the user"))
                return
        sink(RunFinished("run-1", "finished", None))

    monkeypatch.setattr(lorakit, "train", train)
    return engine


def test_a_second_train_while_a_run_is_going_is_refused_with_a_message(tiny, fake_engine):
    c = _controller(tiny)
    runs_heard, events_heard = _listen(c, "run"), _listen(c, "event")
    assert c.train() is True and c.running
    first = c.live
    assert fake_engine.stepped.wait(WAIT)
    assert c.train() is False
    assert c.status[0] == "warn" and "A run is already going (step 1/6)" in c.status[1]
    assert c.live is first and len(fake_engine.calls) == 1
    fake_engine.release.set()
    assert c.wait(WAIT)
    assert not c.running and first.status == "finished" and c.status[0] == "ok"
    assert [type(e).__name__ for (e,) in events_heard] == ["RunStarted", "StepLogged", "RunFinished"]
    assert runs_heard[0] == (first,)
    assert isinstance(fake_engine.calls[0], RunConfig) and fake_engine.calls[0].max_steps == 6


def test_stop_ends_the_run_and_frees_train(tiny, fake_engine):
    c = _controller(tiny)
    assert c.stop() is False and c.status == ("info", "Nothing to stop: no run is going.")
    assert c.train() is True
    assert fake_engine.stepped.wait(WAIT)
    assert c.stop() is True and c.live.stopping
    assert c.wait(WAIT)
    assert c.live.status == "stopped" and not c.running
    assert c.status[0] == "warn" and "stopped after step 1" in c.status[1]
    fake_engine.stepped.clear()
    assert c.train() is True  # Train is free again
    fake_engine.release.set()
    assert c.wait(WAIT) and c.live.status == "finished"


def test_an_engine_that_raises_ends_the_run_as_failed_with_its_reason(tiny, monkeypatch):
    def crash(cfg, sinks=(), store=None, stop=None):
        raise MemoryError("out of memory while loading")

    monkeypatch.setattr(lorakit, "train", crash)
    c = _controller(tiny)
    assert c.train() is True
    assert c.wait(WAIT)
    assert c.live.status == "failed" and not c.running
    assert c.status == ("error", "lora-r8 failed: MemoryError: out of memory while loading")
