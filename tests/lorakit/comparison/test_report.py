"""Exports: the HTML report (self-contained, escaped) and the CSV table; the sample generations' HTML."""
from __future__ import annotations

import dataclasses
import os
import re

import pandas as pd
import pytest
from comparison_support import sample_records

from lorakit.common.display import MiB
from lorakit.comparison.report import export_csv, export_html
from lorakit.comparison.table import compare
from lorakit.comparison.timeline_figure import timeline_figure
from lorakit.memory.timeline import moment


@pytest.fixture
def records():
    return sample_records()


def test_export_html_is_self_contained(records, tmp_path):
    path = export_html(records, tmp_path / "report" / "runs.html", title="Workshop <day 1>")
    text = path.read_text(encoding="utf-8")
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert text.count(bundle[:200]) == 1  # the library itself is inlined, once ...
    assert text.count("Plotly.newPlot") == 4  # ... and four charts use it (loss, memory, Pareto, timeline)
    assert '<script src="http' not in text
    assert re.search(r"<script[^>]*\bsrc\s*=", text) is None  # no external script of any kind
    assert re.search(r"<link[^>]*\bhref\s*=\s*[\"']https?:", text) is None
    assert "Workshop &lt;day 1&gt;" in text
    # a viewer that runs no script (JupyterLab's, untrusted) shows what to do; a script removes it where they run
    note = text.index('<p id="lorakit-needs-scripts"')
    assert "Trust HTML" in text[note:note + 400] and text.index("lorakit-needs-scripts\").remove()") > note
    assert "Extract: &lt;Ann &amp; Bob&gt;" in text  # samples, escaped
    for label in ("lora-r8", "qlora-nf4-r16", "full"):
        assert label in text
    assert f"{records[2].memory.total / MiB:,.1f} MiB" in text  # the table
    mask = os.umask(0o077)
    os.umask(mask)  # written whole through a temporary file (0600), yet with the mode any file the user writes gets
    assert export_html(records, tmp_path / "shared.html").stat().st_mode & 0o777 == 0o666 & ~mask != 0o600


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


def test_samples_html_escapes_and_shows_the_chosen_columns(records):
    from lorakit.comparison.report import samples_html

    full = samples_html(records)
    assert "Extract: &lt;Ann &amp; Bob&gt;" in full and "<th" in full
    assert [h for h in ("prompt", "reference", "before training", "after training") if f">{h}</th>" in full] == \
        ["prompt", "reference", "before training", "after training"]
    assert full.count('class="lorakit-samples"') == 1  # only lora8 has samples
    short = samples_html(records, keys=("prompt", "after"))
    assert ">reference</th>" not in short and "Sure!" not in short and '{&quot;n&quot;: 2}' in short
    assert "nothing yet" in samples_html(records[1:], empty="nothing yet")


def test_the_report_table_names_the_model_in_the_short_columns_and_folds_every_column(records, tmp_path):
    from lorakit.comparison.table import COLUMNS
    from lorakit.config.run_config import RunConfig

    other = records[0].__class__(**{**records[0].__dict__, "run_id": "tiny8", "config": RunConfig(model="tiny-llama")})
    text = export_html([*records, other], tmp_path / "runs.html").read_text(encoding="utf-8")
    short, folded = text.split("<details class='all-columns'>", 1)
    short = short[short.index("<h2>Runs</h2>"):]
    heads = re.findall(r'class="col_heading level0 col\d+" >([^<]*)</th>', short)
    assert heads == ["run", "model", "method", "quant", "rank", "memory", "peak", "eval loss", "task metric", "time",
                     "status", "run id"]
    assert ">smollm2-135m · lora-r8<" in short and ">tiny-llama · lora-r8<" in short and ">tiny-llama<" in short
    folded = folded[:folded.index("</details>")]
    assert f"Every column ({len(COLUMNS)})" in folded
    assert set(re.findall(r'class="col_heading level0 col\d+" >([^<]*)</th>', folded)) == set(COLUMNS)


def test_the_report_shows_a_step_moment_by_moment_planned_next_to_measured(records, tmp_path):
    lora = records[0]
    base = dict(base_weights=lora.memory.base_weights, adapters=lora.memory.adapters)
    lora.memory.timeline = [("forward", moment(**base, activations=70 * MiB)),
                            ("logits-loss", moment(**base, activations=58 * MiB, transient=40 * MiB))]
    lora.planned_memory.timeline = [("forward", moment(**base, activations=56 * MiB)),
                                    ("logits-loss", moment(**base, activations=56 * MiB, transient=24 * MiB)),
                                    ("optimizer step", moment(**base, gradients=MiB, optimizer=3 * MiB))]
    lora.config = dataclasses.replace(lora.config, name="<script>x</script>")
    fig = timeline_figure(records)
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.name for t in bars} == {"base weights", "adapters", "gradients", "optimizer state", "activations",
                                      "on top (transient)"}
    x = [list(level) for level in bars[0].x]  # only the LoRA run has a timeline: one row of bars
    assert x == [["forward", "forward", "logits-loss", "logits-loss", "optimizer step"],
                 ["planned", "measured", "planned", "measured", "planned"]]
    heights = [sum(t.y[i] for t in bars) * MiB for i in range(5)]
    assert max(heights) == pytest.approx(lora.memory.base_weights + lora.memory.adapters + 98 * MiB)  # measured, loss
    assert "&lt;script&gt;x&lt;/script&gt;" in fig.layout.annotations[0].text  # the run's name, escaped
    text = export_html(records, tmp_path / "runs.html").read_text(encoding="utf-8")
    assert "never all exist at once" in text and "A step, moment by moment" in text
