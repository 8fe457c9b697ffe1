"""compare(): one row per run, its columns and dtypes, from records, run ids or a store; styled()."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from comparison_support import LORA_PEAK, LORA_PEAK_PLANNED, QLORA_PEAK, REQUIRED, SMOL_TOTAL, sample_records

import lorakit
from lorakit.common.display import MiB
from lorakit.comparison.table import COLUMNS, FULL_TARGETS, SPEC, compare, styled
from lorakit.config.run_config import RunConfig
from lorakit.run.record import RunRecord
from lorakit.store import RunStore


@pytest.fixture
def records():
    return sample_records()


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
    assert lora["target_modules"] == "qv"  # the preset, as configured
    assert qlora["target_modules"] == "all-linear" and qlora["optimizer"] == "paged_adamw_8bit"
    assert bool(qlora["double_quant"]) is True and bool(lora["double_quant"]) is False  # 4-bit only
    assert pd.isna(full["rank"]) and pd.isna(full["alpha"]) and full["target_modules"] == FULL_TARGETS
    assert lora["eval_loss"] == 1.7 and lora["task_metric"] == 0.5 and lora["train_loss"] == 1.6
    assert lora["perplexity"] == pytest.approx(math.exp(1.7))
    assert lora["adapter_bytes"] == 1_846_432 and pd.isna(full["adapter_bytes"])
    assert lora["steps_done"] == 4 and lora["max_steps"] == 30 and lora["dataset"] == "extract-json"
    assert isinstance(lora["created_at"], pd.Timestamp)
    # the model named in each label (tiny-llama's runs beside SmolLM2's read as different runs)
    assert list(df["label"]) == ["smollm2-135m · lora-r8", "smollm2-135m · qlora-nf4-r16", "smollm2-135m · full"]


def test_the_step_peak_columns_measured_its_phase_and_planned(records, tmp_path):
    df = compare(records)
    cols = list(df.columns)
    assert cols.index("mem_peak") + 1 == cols.index("mem_peak_at") == cols.index("mem_peak_planned") - 1
    assert list(df["mem_peak"][:2]) == [LORA_PEAK, QLORA_PEAK] and pd.isna(df.loc[2, "mem_peak"])  # full: none
    assert list(df["mem_peak_at"][:2]) == ["logits-loss", "backward"] and pd.isna(df.loc[2, "mem_peak_at"])
    assert df.loc[0, "mem_peak_planned"] == LORA_PEAK_PLANNED and df["mem_peak_planned"][1:].isna().all()
    with RunStore(tmp_path / "runs.db") as s:  # the store keeps them: the same columns from stored runs
        for r in records:
            s.save(r)
        again = compare(store=s)
    pd.testing.assert_frame_equal(again[["mem_peak", "mem_peak_at", "mem_peak_planned"]],
                                  df[["mem_peak", "mem_peak_at", "mem_peak_planned"]])
    html = styled(df).to_html()
    assert f"{LORA_PEAK / MiB:,.1f} MiB" in html and f"{LORA_PEAK_PLANNED / MiB:,.1f} MiB" in html


def test_missing_numbers_and_empty_input():
    failed = RunRecord(config=RunConfig(model="smollm2-135m"), run_id="dead", status="failed",
                       reason="loss became NaN at step 3", train_loss=float("nan"))
    df = compare([failed])
    row = df.iloc[0]
    assert pd.isna(row["mem_total"]) and pd.isna(row["train_loss"]) and pd.isna(row["trainable_pct"])
    assert row["reason"] == "loss became NaN at step 3"
    empty = compare([])
    assert list(empty.columns) == list(COLUMNS) and len(empty) == 0


def test_perplexity_is_blank_for_a_classifier_even_one_stored_with_it():
    """exp of a loss over labels is no perplexity: a classification run's column is empty (also for a run
    stored before the bridge stopped sending one); a seq2seq run keeps its target tokens' perplexity."""
    runs = [RunRecord(config=RunConfig(model="minilm-l6"), run_id="cls", task="classification", eval_loss=0.4,
                      perplexity=math.exp(0.4)),
            RunRecord(config=RunConfig(model="tiny-t5"), run_id="t5", task="seq2seq", eval_loss=2.0,
                      perplexity=math.exp(2.0))]
    df = compare(runs)
    assert pd.isna(df.loc[0, "perplexity"]) and df.loc[0, "eval_loss"] == 0.4
    assert df.loc[1, "perplexity"] == pytest.approx(math.exp(2.0))


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


def test_every_column_has_the_dtype_its_spec_line_names(records):
    df = compare(records)
    for name, dtype, _ in SPEC:
        if dtype == "datetime":
            assert pd.api.types.is_datetime64_dtype(df[name]), name
        else:
            assert str(df[name].dtype) == dtype, name
    assert str(compare([]).dtypes["mem_total"]) == "Int64"  # an empty table keeps its types


def test_the_package_names_the_function_and_the_chart_and_export_functions():
    """lorakit.compare is the function only (no module of that name shadows or decorates it); the charts
    and exports are package functions of their own."""
    import importlib

    from lorakit.comparison import figures, report, table

    assert lorakit.compare is table.compare and not hasattr(lorakit.compare, "loss_figure")
    for name in ("loss_figure", "memory_figure", "pareto_figure", "pareto_front"):
        assert getattr(lorakit, name) is getattr(figures, name)
    assert (lorakit.export_csv, lorakit.export_html, lorakit.styled) == (report.export_csv, report.export_html,
                                                                         table.styled)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lorakit.compare")
