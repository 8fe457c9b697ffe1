"""sweep(executor="ray") on a real two-node Ray cluster on this machine: a head and a second node started
as separate processes (``ray start``, one CPU and a temp dir each), shared by every test here.

The store is written by the driver (this process) only; the trials run in Ray workers on both nodes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import ray

import lorakit
from lorakit.run.events import RunFinished, RunStarted, StepLogged
from lorakit.store import RunStore

RAY = str(Path(sys.executable).with_name("ray"))
BASE = dict(model="tiny-llama", dataset="arithmetic", max_steps=2, batch_size=2, train_examples=8, eval_examples=1,
            seed=3)
GRID = dict(rank=[2, 4], learning_rate=[1e-3, 3e-3])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the same auth mode on both nodes; a loaded CI machine may take long to start a node's agents
RAY_ENV = dict(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", RAY_agent_register_timeout_ms="300000")


def _ray_start(args: list, temp_dir: Path, groups: list, tries: int = 3) -> None:
    """`ray start` in a process group of its own: the daemons it leaves behind are that group, ended at teardown.

    Ray gives a node 30 s to come up; on a loaded 2-core machine its agents can take longer, so a node
    that timed out is ended and started again."""
    for attempt in range(tries):
        proc = subprocess.Popen([RAY, "start", "--num-cpus=1", f"--temp-dir={temp_dir}", "--include-log-monitor=false",
                                 "--object-store-memory=80000000", "--disable-usage-stats", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, **RAY_ENV), start_new_session=True)
        groups.append(proc.pid)
        out, _ = proc.communicate(timeout=300)
        if proc.returncode == 0:
            return
        _end(groups.pop())
        assert attempt < tries - 1 and "timed out during startup" in out, out[-3000:]


def _end(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The head's address; this process is connected to it as the driver."""
    head, node = tmp_path_factory.mktemp("ray-head"), tmp_path_factory.mktemp("ray-node")
    address = f"127.0.0.1:{_free_port()}"
    groups: list[int] = []
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    try:
        _ray_start(["--head", f"--port={address.split(':')[1]}", "--include-dashboard=false"], head, groups)
        _ray_start([f"--address={address}"], node, groups)
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        yield address
    finally:
        ray.shutdown()
        for group in groups:  # `ray stop` would stop every Ray of this machine
            _end(group)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def swept(cluster, tmp_path_factory):
    """The 2x2 grid run locally and on Ray; the Ray one's events as a driver sink saw them."""
    folder = tmp_path_factory.mktemp("swept")
    base = lorakit.RunConfig(**BASE)
    local = lorakit.sweep(base, store=RunStore(folder / "local.db"), **GRID)
    events = []
    store = RunStore(folder / "ray.db")
    remote = lorakit.sweep(base, store=store, sinks=[events.append], executor="ray", address=cluster, **GRID)
    return local, remote, events, store


def _by_axes(table) -> dict:
    return {(r["rank"], r["learning_rate"]): r for _, r in table.iterrows()}


def test_ray_grid_gives_the_local_rows(swept):
    local, remote, _, _ = swept
    here, there = _by_axes(local), _by_axes(remote)
    assert set(here) == set(there) and len(there) == 4
    for key, row in there.items():
        assert row["status"] == "finished", row["reason"]
        assert row["train_loss"] == pytest.approx(here[key]["train_loss"], rel=1e-5), key  # seeded: same losses
        assert row["eval_loss"] == pytest.approx(here[key]["eval_loss"], rel=1e-5), key


def test_remote_events_reach_the_driver_in_step_order(swept):
    _, remote, events, store = swept
    for run_id in remote["run_id"]:
        mine = [e for e in events if e.run_id == run_id]
        assert isinstance(mine[0], RunStarted) and isinstance(mine[-1], RunFinished)
        assert [e.step for e in mine if isinstance(e, StepLogged)] == [1, 2]
        assert [h["step"] for h in store.load(run_id).history] == [1, 2]  # written by the driver's store sink


def test_trials_ran_on_both_nodes_and_their_adapters_came_back(swept):
    _, remote, _, store = swept
    records = [store.load(run_id) for run_id in remote["run_id"]]
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(alive) == 2
    assert {r.node for r in records} == alive  # each trial row names its node: both were used
    for r in records:  # the adapter's bytes, written into the driver's store
        assert Path(r.adapter_path).parent == store.adapter_dir(r.run_id).parent
        assert (Path(r.adapter_path) / "adapter_model.safetensors").stat().st_size > 0


def _pid_of(run_id: str) -> int:
    """The worker training ``run_id``: it titles itself 'ray::lorakit trial <run_id>'."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"lorakit trial {run_id}" in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError(f"no worker process titled for {run_id}")


def test_a_worker_killed_mid_trial_fails_that_trial_only(cluster, tmp_path):
    store = RunStore(tmp_path / "runs.db")
    victim = {}

    def kill_at_step_2(event):
        if isinstance(event, RunStarted) and event.config.max_steps == 500:
            victim["run_id"] = event.run_id
        elif isinstance(event, StepLogged) and event.run_id == victim.get("run_id") and event.step == 2:
            os.kill(_pid_of(event.run_id), signal.SIGKILL)

    table = lorakit.sweep(lorakit.RunConfig(**BASE), store=store, sinks=[kill_at_step_2], executor="ray",
                          address=cluster, max_steps=[2, 500])
    rows = {r["run_id"]: r for _, r in table.iterrows()}
    killed = rows.pop(victim["run_id"])
    assert killed["status"] == "failed" and "worker" in killed["reason"] and "died" in killed["reason"]
    kept = store.load(victim["run_id"])
    assert kept.status == "failed" and [h["step"] for h in kept.history][:2] == [1, 2]  # its steps so far
    assert [r["status"] for r in rows.values()] == ["finished"]


def test_stop_ends_the_running_trials_and_starts_no_queued_one(cluster, tmp_path):
    store, stop = RunStore(tmp_path / "runs.db"), threading.Event()

    def stop_at_first_step(event):
        if isinstance(event, StepLogged):
            stop.set()

    table = lorakit.sweep(lorakit.RunConfig(**dict(BASE, max_steps=500)), store=store, sinks=[stop_at_first_step],
                          stop=stop, executor="ray", address=cluster, rank=[2, 4, 8])
    # two CPUs: at most two trials had started; the third was queued and never ran
    assert 1 <= len(table) <= 2 and set(table["status"]) == {"stopped"}, table[["status", "reason"]]
    assert {r.status for r in store.records()} == {"stopped"} and len(store.records()) == len(table)


def test_an_interrupted_driver_leaves_no_trial_running(cluster, tmp_path):
    store = RunStore(tmp_path / "runs.db")

    def ctrl_c(event):
        if isinstance(event, StepLogged):
            raise KeyboardInterrupt

    lorakit.sweep(lorakit.RunConfig(**dict(BASE, max_steps=500)), store=store, sinks=[ctrl_c], executor="ray",
                  address=cluster, rank=[2, 4, 8])
    statuses = [r.status for r in store.records()]  # the sweep returned long before 500 steps
    assert statuses and set(statuses) == {"stopped"}, statuses


def test_a_cancelled_trial_that_ends_failed_is_recorded_stopped():
    """stop() cancels trials still loading; Ray's interrupt can surface inside train() as another error (seen
    in CI: "TypeError: 'Handlers' object is not callable"), which train() reports as 'failed'."""
    from lorakit.run.record import RunRecord
    from lorakit.sweeps.ray_trials import Trial, _Driver

    class Stub:  # just what deliver() calls: ray.get(relay.drain.remote())
        def __init__(self, items):
            self.drain = self
            self.items = items

        def remote(self):
            return self.items

        def get(self, items):
            return items

    cfg = lorakit.RunConfig(**BASE)
    cancelled, running = RunRecord(config=cfg), RunRecord(config=cfg)
    for rec in (cancelled, running):
        rec.status, rec.reason = "failed", "TypeError: 'Handlers' object is not callable"
    backlog = [(0, "node", RunFinished("a", "failed", cancelled, cancelled.reason), None),
               (1, "node", RunFinished("b", "failed", running, running.reason), None)]
    seen = []
    driver = _Driver(Stub(None), Stub(backlog), [Trial(cfg), Trial(cfg)], [seen.append], None)
    driver.cancelled.add(driver.trials[0])
    driver.deliver()
    assert [(e.status, e.record.status) for e in seen] == [("stopped", "stopped"), ("failed", "failed")]
    assert driver.trials[0].record.reason.startswith("cancelled while starting (TypeError")


def test_a_ray_sweep_of_two_trials_reports_two_mlflow_runs_from_the_driver(cluster, tmp_path):
    """report_to on a Ray sweep: the driver (this process) writes the trackers, one MLflow run per trial, with
    the losses its store recorded and the adapter that came back from the worker."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = lorakit.RunConfig(**dict(BASE, report_to=["mlflow"], mlflow_uri=uri))
    with RunStore(tmp_path / "runs.db") as store:
        table = lorakit.sweep(base, store=store, executor="ray", address=cluster, rank=[2, 4])
        assert list(table["status"]) == ["finished", "finished"], list(table["reason"])
        client = MlflowClient(tracking_uri=uri)
        runs = client.search_runs([client.get_experiment_by_name("lorakit").experiment_id])
        by_id = {r.data.tags["lorakit.run_id"]: r for r in runs}
        assert len(runs) == 2 and set(by_id) == set(table["run_id"])
        for run_id, run in by_id.items():
            rec = store.load(run_id)
            assert run.data.params["rank"] == str(rec.config.rank) and run.info.status == "FINISHED"
            losses = sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)
            assert [m.step for m in losses] == [h["step"] for h in rec.history] == [1, 2]
            assert [m.value for m in losses] == pytest.approx([h["loss"] for h in rec.history], rel=1e-12)
            artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
            assert "adapter/adapter_model.safetensors" in artifacts
