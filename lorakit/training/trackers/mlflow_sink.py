"""``MlflowSink``: lorakit runs as MLflow runs, written with ``MlflowClient`` (explicit run ids, so the
interleaved trials of a Ray sweep each go to their own run; the fluent API holds one active run).

Where: ``RunConfig.mlflow_uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
working directory (artifacts under ``mlruns/`` beside a SQLite store's file). MLflow 3.18 refuses its
old ``./mlruns`` file store unless ``MLFLOW_ALLOW_FILE_STORE=true`` is set, so the local default is its
SQLite store (still one file beside the notebook, no server). Experiment: 'lorakit'. Steps are sent in batches.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.training.trackers import metrics
from lorakit.training.trackers.base import TrackerSink

EXPERIMENT = "lorakit"
_STATUS = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
_PENDING = 80  # step metrics kept (about 20 steps) before one log_batch call (MLflow takes up to 1000 a call)


def tracking_uri(cfg) -> str:
    """Where ``cfg``'s run goes (see the module's docstring)."""
    uri = getattr(cfg, "mlflow_uri", "") or os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def artifacts_beside(uri: str):
    """For a SQLite store, ``mlruns/`` beside its file (MLflow's own default is the working directory's, so a
    store given elsewhere would scatter artifacts where the notebook runs); None: the server's default."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).expanduser().absolute().parent / "mlruns").as_uri()


@dataclass
class _Run:
    client: object
    run_id: str  # MLflow's
    pending: list = field(default_factory=list)  # Metric objects not sent yet


class MlflowSink(TrackerSink):
    name = "mlflow"

    def __init__(self):
        super().__init__()
        self.clients: dict = {}  # tracking URI -> (MlflowClient, experiment id)
        self.mlflow_ids: dict = {}  # lorakit run id -> MLflow run id, for whoever reads them back

    def _client(self, uri: str):
        if uri not in self.clients:
            from mlflow.tracking import MlflowClient

            if not os.environ.get("LORAKIT_VERBOSE"):  # "Creating initial MLflow database tables..." in a notebook
                logging.getLogger("mlflow").setLevel(logging.WARNING)

            client = MlflowClient(tracking_uri=uri)
            exp = client.get_experiment_by_name(EXPERIMENT)
            exp_id = exp.experiment_id if exp else client.create_experiment(EXPERIMENT, artifacts_beside(uri))
            self.clients[uri] = (client, exp_id)
        return self.clients[uri]

    def open(self, run_id: str, cfg, resumed_at: int = 0) -> _Run:
        from mlflow.entities import Param

        client, experiment = self._client(tracking_uri(cfg))
        params = metrics.params(cfg)
        run = self._earlier(client, experiment, run_id) if resumed_at else None
        if run is None:
            run = client.create_run(experiment, run_name=cfg.label, tags=metrics.tags(cfg, run_id))
            client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
        else:  # the same lorakit run goes on: the same MLflow run, running again
            self._continue(client, run, params, resumed_at)
        self.mlflow_ids[run_id] = run.info.run_id
        return _Run(client, run.info.run_id)

    @staticmethod
    def _earlier(client, experiment: str, run_id: str):
        """The MLflow run this lorakit run opened before it was stopped (the newest, should there be several)."""
        found = client.search_runs([experiment], filter_string=f"tags.`lorakit.run_id` = '{run_id}'",
                                   order_by=["attributes.start_time DESC"], max_results=1)
        return found[0] if found else None

    @staticmethod
    def _continue(client, run, params: dict, resumed_at: int) -> None:
        """MLflow's parameters cannot change once logged: new ones are logged, changed ones (a resume's
        max_steps) become ``resumed.<name>`` tags. The steps the stopped part logged after the checkpoint stay
        in MLflow's history (it has no way to drop them); the resumed ones come after them in time."""
        from mlflow.entities import Param, RunTag

        mid, had = run.info.run_id, run.data.params
        changed = [RunTag(f"resumed.{k}", v) for k, v in params.items() if k in had and had[k] != v]
        client.log_batch(mid, params=[Param(k, v) for k, v in params.items() if k not in had],
                         tags=changed + [RunTag("resumed_at_step", str(resumed_at)), RunTag("status", "running")])
        client.update_run(mid, status="RUNNING")

    def log(self, handle: _Run, values: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        handle.pending += [Metric(k, v, now, step) for k, v in values.items()]
        if len(handle.pending) >= _PENDING or not any(k.startswith("train/") for k in values):  # evals, memory: now
            self._flush(handle)

    def _flush(self, handle: _Run) -> None:
        if handle.pending:
            handle.client.log_batch(handle.run_id, metrics=handle.pending)
            handle.pending = []

    def close(self, handle: _Run, record, status: str) -> None:
        self._flush(handle)
        client = handle.client
        client.set_tag(handle.run_id, "status", status)
        if getattr(record, "reason", ""):
            client.set_tag(handle.run_id, "reason", record.reason[:5000])
        adapter = getattr(record, "adapter_path", None)
        if adapter and Path(adapter).is_dir():  # a full fine-tuning's is its kept model (keep_weights)
            what = "model" if getattr(record.config, "method", "lora") == "full" else "adapter"
            client.log_artifacts(handle.run_id, adapter, what)
        self._report(handle, record)
        client.set_terminated(handle.run_id, _STATUS.get(status, "FINISHED"))

    @staticmethod
    def _report(handle: _Run, record) -> None:
        """The run's HTML report (lorakit.export_html: charts and table) as an artifact."""
        from lorakit.comparison.report import export_html
        from lorakit.run.record import RunRecord

        if not isinstance(record, RunRecord):
            return
        with tempfile.TemporaryDirectory(prefix="lorakit-mlflow-") as tmp:
            path = Path(tmp) / "report.html"
            export_html([record], str(path))
            handle.client.log_artifact(handle.run_id, str(path))
