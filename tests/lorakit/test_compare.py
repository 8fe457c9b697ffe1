"""The comparison table, its charts and the HTML / CSV exports, from hand-built run records."""
from __future__ import annotations

import math
import re

import pandas as pd
import plotly.graph_objects as go
import pytest

from lorakit.compare import (
    COLUMNS, FULL_TARGETS, MiB, compare, export_csv, export_html, loss_figure, memory_figure, pareto_figure,
    pareto_front, styled,
)
from lorakit.config import RunConfig
from lorakit.memory import MemoryBreakdown
from lorakit.record import RunRecord
from lorakit.store import RunStore

REQUIRED = [
    "run_id", "label", "method", "quant", "rank", "alpha", "target_modules", "trainable_params", "trainable_pct",
    "mem_base_weights", "mem_adapters", "mem_gradients", "mem_optimizer", "mem_activations", "mem_total",
    "tokens_per_s", "train_loss", "eval_loss", "task_metric", "wall_s", "status", "double_quant", "optimizer",
    "dataset", "max_steps", "perplexity", "task_metric_before", "adapter_bytes", "created_at",
]
SMOL_TOTAL = 134_515_008


def run(run_id, cfg, *, trainable, mem, planned=None, task=None, losses=(2.6, 2.1, 1.8, 1.6), evals=(),
        created=1_760_000_000.0, status="finished", samples=()):
    history = [{"step": i + 1, "loss": l, "learning_rate": 2e-4, "tokens_per_s": 400.0, "elapsed_s": 0.6 * (i + 1),
                "grad_norm": 1.0} for i, l in enumerate(losses)]
    return RunRecord(
        config=cfg, run_id=run_id, status=status, created_at=created, history=history,
        evals=[{"step": s, "eval_loss": v, "perplexity": math.exp(v), "task_metric": task} for s, v in evals],
        memory=mem, planned_memory=planned, trainable_params=trainable,
        total_params=SMOL_TOTAL + (trainable if cfg.method == "lora" else 0),
        train_loss=losses[-1] if losses else None, eval_loss=evals[-1][1] if evals else None,
        perplexity=math.exp(evals[-1][1]) if evals else None, task_metric=task, task_metric_before=0.0,
        tokens_per_s=400.0, wall_s=12.5, adapter_bytes=1_846_432 if cfg.method == "lora" else None,
        samples=list(samples),
    )


@pytest.fixture
def records():
    lora = run("lora8", RunConfig(model="smollm2-135m", rank=8, alpha=16), trainable=460_800,
               mem=MemoryBreakdown(538_060_032, 1_843_200, 1_843_200, 3_686_400, 61_865_984),
               planned=MemoryBreakdown(538_060_032, 1_843_200, 1_843_200, 3_686_400, 58_720_256), task=0.50,
               evals=[(2, 2.0), (4, 1.7)], created=100.0,
               samples=[{"prompt": "Extract: <Ann & Bob>", "reference": '{"n": 2}', "before": "Sure!",
                         "after": '{"n": 2}'}])
    qlora = run("qlora16", RunConfig(model="smollm2-135m", quant="nf4", rank=16, alpha=32,
                                     target_modules="all-linear", optimizer="paged_adamw_8bit"),
                trainable=4_884_480, mem=MemoryBreakdown(92_000_000, 19_537_920, 19_537_920, 9_900_000, 70_000_000),
                task=0.55, losses=(2.7, 2.2, 1.9, 1.7), created=200.0)
    full = run("full", RunConfig(model="smollm2-135m", method="full"), trainable=SMOL_TOTAL,
               mem=MemoryBreakdown(538_060_032, 0, 538_060_032, 1_076_120_064, 80_000_000), task=0.60,
               losses=(2.6, 1.9, 1.5, 1.3), created=300.0)
    return [lora, qlora, full]


# ----------------------------------------------------------------- the table

def test_columns_and_values(records):
    df = compare(records)
    assert list(df.columns) == list(COLUMNS)
    assert set(REQUIRED) <= set(df.columns)
    assert list(df["run_id"]) == ["lora8", "qlora16", "full"]
    lora, qlora, full = (df.iloc[i] for i in range(3))
    assert lora["trainable_pct"] == pytest.approx(100 * 460_800 / (SMOL_TOTAL + 460_800))
    assert full["trainable_pct"] == pytest.approx(100.0)
    for i, r in enumerate(records):
        parts = [df.iloc[i][f"mem_{c}"] for c in ("base_weights", "adapters", "gradients", "optimizer", "activations")]
        assert df.iloc[i]["mem_total"] == sum(parts) == r.memory.total
    assert lora["planned_total"] == records[0].planned_memory.total and pd.isna(qlora["planned_total"])
    assert (lora["method"], lora["quant"], lora["rank"], lora["alpha"]) == ("lora", "none", 8, 16.0)
    assert lora["target_modules"] == "q_proj,v_proj"
    assert qlora["target_modules"] == "all-linear" and qlora["optimizer"] == "paged_adamw_8bit"
    assert bool(qlora["double_quant"]) is True and bool(lora["double_quant"]) is False  # 4-bit only
    assert pd.isna(full["rank"]) and pd.isna(full["alpha"]) and full["target_modules"] == FULL_TARGETS
    assert lora["eval_loss"] == 1.7 and lora["task_metric"] == 0.5 and lora["train_loss"] == 1.6
    assert lora["perplexity"] == pytest.approx(math.exp(1.7))
    assert lora["adapter_bytes"] == 1_846_432 and pd.isna(full["adapter_bytes"])
    assert lora["steps_done"] == 4 and lora["max_steps"] == 30 and lora["dataset"] == "extract-json"
    assert isinstance(lora["created_at"], pd.Timestamp)
    assert list(df["label"]) == ["lora-r8", "qlora-nf4-r16", "full"]


def test_missing_numbers_and_empty_input():
    failed = RunRecord(config=RunConfig(model="smollm2-135m"), run_id="dead", status="failed",
                       reason="loss became NaN at step 3", train_loss=float("nan"))
    df = compare([failed])
    row = df.iloc[0]
    assert pd.isna(row["mem_total"]) and pd.isna(row["train_loss"]) and pd.isna(row["trainable_pct"])
    assert row["reason"] == "loss became NaN at step 3"
    empty = compare([])
    assert list(empty.columns) == list(COLUMNS) and len(empty) == 0


def test_compare_from_a_store_and_by_id(records, tmp_path, monkeypatch):
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        for r in reversed(records):  # saved newest first; the store lists oldest first
            s.save(r)
        by_store = compare(store=s)
        by_id = compare(["full", "lora8"], store=s)
    assert list(by_store["run_id"]) == ["lora8", "qlora16", "full"]
    assert list(by_id["run_id"]) == ["full", "lora8"]
    assert list(compare(store=str(path))["mem_total"]) == [r.memory.total for r in records]
    monkeypatch.setenv("LORAKIT_STORE", str(path))
    assert list(compare()["run_id"]) == ["lora8", "qlora16", "full"]  # the default store


def test_styled_formats_memory_and_percentages(records):
    html = styled(compare(records)).to_html()
    assert isinstance(styled(compare(records)), pd.io.formats.style.Styler)
    assert f"{records[0].memory.total / MiB:,.1f} MiB" in html
    assert "0.341%" in html  # 460,800 of 134,975,808
    assert "linear-gradient" in html  # memory bars


# ----------------------------------------------------------------- Pareto front

def _point(run_id, mem_mib, metric):
    return run(run_id, RunConfig(model="smollm2-135m", name=run_id), trainable=1,
               mem=MemoryBreakdown(int(mem_mib * MiB), 0, 0, 0, 0), task=metric)


def test_pareto_front_excludes_dominated_runs():
    pts = [_point("A", 100, 0.5), _point("B", 200, 0.7), _point("C", 300, 0.6),  # C: B uses less and scores more
           _point("D", 150, 0.4),  # D: A dominates
           _point("E", 400, 0.9), _point("F", 400, 0.8),  # F: same memory as E, lower score
           _point("G", 50, None)]  # no metric: not plotted
    assert pareto_front(pts) == ["A", "B", "E"]
    # lower is better for a loss: the front flips
    losses = [_point("A", 100, None), _point("B", 200, None)]
    losses[0].eval_loss, losses[1].eval_loss = 1.2, 1.0
    assert pareto_front(losses, metric="eval_loss") == ["A", "B"]
    losses[1].eval_loss = 1.3  # more memory and a worse loss
    assert pareto_front(losses, metric="eval_loss") == ["A"]
    assert pareto_front(losses, metric="eval_loss", higher_is_better=True) == ["A", "B"]  # neither dominates
    losses[1].eval_loss = 1.0
    assert pareto_front(losses, metric="eval_loss", higher_is_better=True) == ["A"]


def test_pareto_figure_marks_the_front():
    pts = [_point("A", 100, 0.5), _point("B", 200, 0.7), _point("C", 300, 0.6), _point("E", 400, 0.9)]
    fig = pareto_figure(pts)
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    runs, front = fig.data
    assert list(runs.text) == ["A", "B", "C", "E"] and list(runs.y) == [0.5, 0.7, 0.6, 0.9]
    assert list(front.x) == pytest.approx([100, 200, 400]) and list(front.y) == [0.5, 0.7, 0.9]
    assert "lines" in front.mode
    colors = list(runs.marker.color)
    assert colors[2] != colors[0] == colors[1] == colors[3]  # the dominated run is drawn differently
    with pytest.raises(ValueError, match="unknown metric"):
        pareto_figure(pts, metric="accuracy_typo")


# ----------------------------------------------------------------- figures

def test_loss_figure_traces(records):
    fig = loss_figure(records)
    assert isinstance(fig, go.Figure)
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    assert len(fig.data) == 4  # three train curves + one eval curve (only lora8 has evals)
    names = [t.name for t in fig.data]
    assert names == ["lora-r8", "lora-r8 (eval)", "qlora-nf4-r16", "full"]
    assert list(fig.data[0].y) == [2.6, 2.1, 1.8, 1.6] and list(fig.data[0].x) == [1, 2, 3, 4]
    assert list(fig.data[1].y) == [2.0, 1.7] and fig.data[1].line.dash == "dash"
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color


def test_loss_figure_unique_names_for_same_label():
    cfg = RunConfig(model="smollm2-135m")
    a = run("aaaaaa111", cfg, trainable=1, mem=None)
    b = run("bbbbbb222", cfg, trainable=1, mem=None)
    assert [t.name for t in loss_figure([a, b]).data] == ["lora-r8 [aaaaaa]", "lora-r8 [bbbbbb]"]


def test_memory_figure_stacks_measured_and_planned(records):
    fig = memory_figure(records)
    assert len(fig.data) == 5 and all(isinstance(t, go.Bar) for t in fig.data)
    assert fig.layout.barmode == "stack"
    assert [t.name for t in fig.data] == ["base weights", "adapters", "gradients", "optimizer state", "activations"]
    base, *_rest, act = fig.data
    # bars: lora8 measured, lora8 planned, qlora16 measured, full measured (two-level axis)
    assert [list(level) for level in base.x] == [["lora-r8", "lora-r8", "qlora-nf4-r16", "full"],
                                                  ["measured", "planned", "measured", "measured"]]
    assert list(base.y) == pytest.approx([538_060_032 / MiB, 538_060_032 / MiB, 92_000_000 / MiB, 538_060_032 / MiB])
    assert list(act.y) == pytest.approx([61_865_984 / MiB, 58_720_256 / MiB, 70_000_000 / MiB, 80_000_000 / MiB])
    stacked = [sum(t.y[i] for t in fig.data) for i in range(4)]
    assert stacked == pytest.approx([r / MiB for r in (records[0].memory.total, records[0].planned_memory.total,
                                                        records[1].memory.total, records[2].memory.total)])
    assert "MiB" in fig.layout.yaxis.title.text
    only_measured = memory_figure(records, planned=False)
    assert list(only_measured.data[0].x) == ["lora-r8", "qlora-nf4-r16", "full"]


# ----------------------------------------------------------------- export

def test_export_html_is_self_contained(records, tmp_path):
    path = export_html(records, tmp_path / "report" / "runs.html", title="Workshop <day 1>")
    text = path.read_text(encoding="utf-8")
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert text.count(bundle[:200]) == 1  # the library itself is inlined, once ...
    assert text.count("Plotly.newPlot") == 3  # ... and three charts use it
    assert '<script src="http' not in text
    assert re.search(r"<script[^>]*\bsrc\s*=", text) is None  # no external script of any kind
    assert re.search(r"<link[^>]*\bhref\s*=\s*[\"']https?:", text) is None
    assert "Workshop &lt;day 1&gt;" in text
    assert "Extract: &lt;Ann &amp; Bob&gt;" in text  # samples, escaped
    for label in ("lora-r8", "qlora-nf4-r16", "full"):
        assert label in text
    assert f"{records[2].memory.total / MiB:,.1f} MiB" in text  # the table


def test_export_csv_round_trip(records, tmp_path):
    path = export_csv(records, tmp_path / "runs.csv")
    back = pd.read_csv(path)
    df = compare(records)
    assert list(back.columns) == list(df.columns)
    assert list(back["run_id"]) == list(df["run_id"])
    assert list(back["mem_total"]) == [r.memory.total for r in records]
    assert list(back["trainable_pct"]) == pytest.approx(list(df["trainable_pct"]))
    assert back["rank"].isna().tolist() == [False, False, True]
    # a DataFrame goes out unchanged
    export_csv(df[["run_id", "task_metric"]], tmp_path / "small.csv")
    assert pd.read_csv(tmp_path / "small.csv")["task_metric"].tolist() == [0.5, 0.55, 0.6]
