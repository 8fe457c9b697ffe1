"""The run's status line: a finished run says where its time went."""
from lorakit import RunConfig
from lorakit.run.events import RunFinished
from lorakit.run.record import RunRecord
from lorakit.widgets.runstate import LiveRun


def test_a_finished_runs_status_line_says_where_the_time_went():
    cfg = RunConfig(model="tiny-llama", name="lora")
    rec = RunRecord(config=cfg, run_id="r1", status="finished", wall_s=9.0, task_metric=0.5, task_metric_before=0.0,
                    load_s=1.25, train_s=5.0, eval_s=0.5, task_eval_s=2.0, samples_s=0.0, before_cached=True)
    live = LiveRun.for_config(cfg)
    live.apply(RunFinished("r1", "finished", rec, ""))
    kind, text = live.message()
    assert kind == "ok" and text.startswith("lora finished in 9.0 s")
    assert text.endswith("time: load 1.2 s, train 5.0 s, eval loss 0.5 s, task metric 2.0 s (before: cached), "
                         "samples 0.0 s")
    rec.before_cached, rec.samples_s, rec.eval_s = False, None, None  # what was not timed is not shown
    assert live.message()[1].endswith("time: load 1.2 s, train 5.0 s, task metric 2.0 s")


def test_after_the_last_step_the_status_says_what_the_run_waits_for():
    from lorakit.run import PhaseStarted, StepLogged

    cfg = RunConfig(model="tiny-llama", name="lora", max_steps=2)
    live = LiveRun.for_config(cfg)
    live.apply(StepLogged("r1", 2, 2, 1.5, 2e-4, 100.0, 1.0))
    assert live.message()[1].startswith("lora: step 2/2 · loss 1.5")
    live.apply(PhaseStarted("r1", "answering", "evaluating: generating 32 answers and scoring them", 32))
    assert live.message() == ("running", "lora: trained 2/2 steps · evaluating: generating 32 answers and "
                                         "scoring them…")


def test_a_run_stopped_before_its_first_step_says_so():
    cfg = RunConfig(model="tiny-llama", name="lora")
    live = LiveRun.for_config(cfg)
    rec = RunRecord(config=cfg, run_id="r1", status="stopped")
    live.apply(RunFinished("r1", "stopped", rec, "stopped by request after step 0"))
    level, text = live.message()
    assert level == "warn" and text.startswith("lora stopped before its first step: nothing was trained"), text
