"""Experiment trackers as sinks: a run with report_to=['mlflow', 'tensorboard'] read back with MLflow's
client and TensorBoard's EventAccumulator, compared with the store's record of the same run."""
from __future__ import annotations

import json

import pytest

import lorakit
from lorakit import ConfigError, RunConfig
from lorakit.memory.breakdown import CATEGORIES
from lorakit.store import RunStore

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

def same(got: list, want: list, rel: float) -> bool:
    """(step, value) pairs: the same steps, values within ``rel``."""
    return ([s for s, _ in got] == [s for s, _ in want]
            and [v for _, v in got] == pytest.approx([v for _, v in want], rel=rel))


TINY = dict(model="tiny-llama", max_steps=4, eval_every=2, batch_size=2, train_examples=8, eval_examples=2,
            seq_len=256, learning_rate=1e-3, warmup_steps=1, rank=4)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One tiny-llama LoRA run reported to both trackers; (store record, MLflow client, MLflow run, TB folder)."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = RunConfig(**TINY, report_to=["mlflow", "tensorboard"], mlflow_uri=uri, tensorboard_dir=str(root / "tb"))
    with RunStore(root / "runs.db") as store:
        rec = store.load(lorakit.train(cfg, store=store).run_id)
    assert rec.status == "finished", rec.reason
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("lorakit").experiment_id])
    assert len(runs) == 1
    folders = list((root / "tb").iterdir())
    assert [f.name for f in folders] == [f"{cfg.label}-{rec.run_id}"]
    return rec, client, runs[0], folders[0]


def test_mlflow_has_every_parameter_tag_and_artifact(tracked):
    rec, client, run, _ = tracked
    expected = {k: v if isinstance(v, str) else json.dumps(v) for k, v in rec.config.to_dict().items()}
    assert run.data.params == expected  # every RunConfig field, as the store recorded it
    assert run.data.params["rank"] == "4" and run.data.params["report_to"] == '["mlflow", "tensorboard"]'
    tags = run.data.tags
    assert (tags["method"], tags["quant"], tags["variant"], tags["lorakit.run_id"]) == ("lora", "none", "lora",
                                                                                          rec.run_id)
    assert tags["status"] == "finished" and run.info.status == "FINISHED"
    root = tracked[3].parent.parent  # the artifacts lie beside the SQLite store, not in the working directory
    assert run.info.artifact_uri.startswith((root / "mlruns").as_uri())
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {"adapter", "report.html"}
    adapter = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in adapter


def test_mlflow_metrics_match_the_store(tracked):
    rec, client, run, _ = tracked

    def history(key):
        return [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key),
                                                   key=lambda m: m.step)]

    for key, field in (("train/loss", "loss"), ("train/learning_rate", "learning_rate"),
                       ("train/tokens_per_s", "tokens_per_s")):
        assert same(history(key), [(h["step"], h[field]) for h in rec.history], 1e-12), key
    assert [s for s, _ in history("train/loss")] == [1, 2, 3, 4]
    assert same(history("eval/loss"), [(e["step"], e["eval_loss"]) for e in rec.evals], 1e-12)
    last = run.data.metrics  # each key's latest value
    for kind, mem in (("measured", rec.memory), ("planned", rec.planned_memory)):
        for c in CATEGORIES:
            assert last[f"memory/{kind}/{c}"] == getattr(mem, c), (kind, c)
        assert last[f"memory/{kind}/total"] == mem.total and last[f"memory/{kind}/peak"] == mem.peak
    assert rec.memory.peak > 0 and rec.planned_memory.peak > 0
    assert last["final/eval_loss"] == pytest.approx(rec.eval_loss, rel=1e-12)
    if rec.task_metric is not None:
        assert last["final/task_metric"] == rec.task_metric
        assert last["final/task_metric_before"] == rec.task_metric_before


def test_tensorboard_event_files_match_the_store(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    rec, _, _, folder = tracked
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()

    def scalars(tag):
        return [(e.step, e.value) for e in acc.Scalars(tag)]

    # event files hold float32
    assert same(scalars("train/loss"), [(h["step"], h["loss"]) for h in rec.history], 1e-6)
    assert same(scalars("train/learning_rate"), [(h["step"], h["learning_rate"]) for h in rec.history], 1e-6)
    assert same(scalars("eval/loss"), [(e["step"], e["eval_loss"]) for e in rec.evals], 1e-6)
    for kind, mem in (("measured", rec.memory), ("planned", rec.planned_memory)):
        for c in (*CATEGORIES, "total", "peak"):
            value = mem.total if c == "total" else getattr(mem, c)
            assert scalars(f"memory/{kind}/{c}")[-1][1] == pytest.approx(value, rel=1e-6), (kind, c)
    start = [plugin_data_pb2.HParamsPluginData.FromString(content)
             for content in acc.PluginTagToContent("hparams").values()]
    hparams = next(p.session_start_info.hparams for p in start if p.HasField("session_start_info"))
    assert hparams["rank"].string_value == "4" and hparams["tag.method"].string_value == "lora"
    assert set(rec.config.to_dict()) <= set(hparams)


def test_a_resumed_run_goes_on_in_the_same_tracker_runs(tmp_path):
    """Stopped at step 5, its checkpoint at 5 removed (as a kill between checkpoints leaves it), resumed from 3 to
    step 7: one MLflow run, running again and then finished, with the resume in its tags; TensorBoard drops what
    the stopped part logged after step 3, so each step has one value, the store's."""
    import shutil
    import threading

    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lorakit.run import events as ev

    uri, tb, db = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "tb", tmp_path / "runs.db"
    cfg = RunConfig(**dict(TINY, max_steps=6, eval_every=0), checkpoint_every=3, report_to=["mlflow", "tensorboard"],
                    mlflow_uri=uri, tensorboard_dir=str(tb))
    stop = threading.Event()
    stopped = lorakit.train(cfg, store=db, stop=stop,
                            sinks=[lambda e: isinstance(e, ev.StepLogged) and e.step == 4 and stop.set()])
    assert stopped.status == "stopped" and stopped.checkpoint_step == 5
    with RunStore(db) as store:
        shutil.rmtree(store.adapter_dir(stopped.run_id) / "checkpoints" / "checkpoint-5")
    rec = lorakit.resume(stopped.run_id, max_steps=7, store=db)
    assert rec.status == "finished" and rec.resumed_at == [3]

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("lorakit").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "finished"
    assert run.data.tags["resumed_at_step"] == "3" and run.data.tags["resumed.max_steps"] == "7"
    assert run.data.params["max_steps"] == "6"  # MLflow keeps a parameter's first value
    newest = {}
    for m in sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.timestamp):
        newest[m.step] = m.value  # steps 4 and 5 were logged twice: the resumed values came last
    assert newest == pytest.approx({h["step"]: h["loss"] for h in rec.history}, rel=1e-6)

    (folder,) = tb.iterdir()
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    assert same([(e.step, e.value) for e in acc.Scalars("train/loss")],
                [(h["step"], h["loss"]) for h in rec.history], 1e-6)


def test_report_to_is_checked_by_name(monkeypatch):
    with pytest.raises(ConfigError) as err:
        RunConfig(report_to=["wandb"])
    assert set(err.value.problems) == {"report_to"} and "'mlflow', 'tensorboard'" in err.value.problems["report_to"]
    assert RunConfig(report_to="mlflow").report_to == ("mlflow",)
    # a tracker whose library is missing: refused by name before anything trains
    import lorakit.training.trackers as trackers

    monkeypatch.setitem(trackers._NEEDS, "tensorboard", ("lorakit_no_such_package",))
    with pytest.raises(ConfigError, match=r"report_to: 'tensorboard' needs lorakit_no_such_package.*lorakit\[track\]"):
        lorakit.train(RunConfig(**TINY, report_to=["tensorboard"]), store=False)


def test_the_cli_flag_takes_several_trackers():
    from lorakit.cli import commands as cli

    ns = cli.build_parser().parse_args(["train", "--model", "tiny-llama", "--report-to", "mlflow", "tensorboard"])
    assert RunConfig(**cli._config_kwargs(ns)).report_to == ("mlflow", "tensorboard")
    ns = cli.build_parser().parse_args(["sweep", "--rank", "2", "4", "--report-to", "mlflow"])
    kwargs = cli._config_kwargs(ns)
    assert kwargs["report_to"] == [["mlflow"]] and kwargs["rank"] == [2, 4]


def test_mlflow_logs_a_full_runs_kept_model_as_the_model_artifact(tmp_path, monkeypatch):
    """A full fine-tuning's run folder is its kept model, not an adapter: logged under 'model'."""
    from lorakit.run.record import RunRecord
    from lorakit.training.trackers.mlflow_sink import MlflowSink, _Run

    logged = []

    class Client:
        def set_tag(self, *args):
            pass

        def log_artifacts(self, run_id, folder, name):
            logged.append((folder, name))

        def set_terminated(self, *args):
            pass

    monkeypatch.setattr(MlflowSink, "_report", staticmethod(lambda handle, record: None))
    (tmp_path / "config.json").write_text("{}")
    for method, want in (("full", "model"), ("lora", "adapter")):
        rec = RunRecord(RunConfig(model="tiny-llama", method=method), status="finished", adapter_path=str(tmp_path))
        MlflowSink().close(_Run(Client(), "r1"), rec, "finished")
        assert logged[-1] == (str(tmp_path), want)
