"""lorakit compare on a store of many runs: the short columns, the newest runs with a line naming how many
are left out, --all, --columns, bytes in MiB, and no model library imported to print a table."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lorakit.cli.commands import main
from lorakit.config.run_config import RunConfig
from lorakit.store import RunStore

sys.path.insert(0, str(Path(__file__).resolve().parent / "store"))
from store_support import REPO, make_record  # noqa: E402

N = 25


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_compare") / "runs.db"
    with RunStore(path) as s:
        for i in range(N):
            model = "tiny-llama" if i % 2 else "smollm2-135m"
            s.save(make_record(f"run{i:02d}", created_at=1_760_000_000.0 + i,
                               config=RunConfig(model=model, rank=4 + i % 3 * 4, learning_rate=1e-4 * (1 + i % 2))))
    return str(path)


def _lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_the_newest_runs_in_the_short_columns_and_how_many_are_left_out(db, capsys):
    assert main(["--store", db, "compare"]) == 0
    header, *rows, note = _lines(capsys)
    assert header.split() == ["label", "model", "method", "quant", "rank", "total_MiB", "peak_MiB", "eval_loss",
                              "task_metric", "wall_s", "status", "run_id"]
    assert len(rows) == 20 and rows[-1].split()[-1] == "run24" and rows[0].split()[-1] == "run05"
    assert "5 older run(s) not shown" in note and "--all" in note
    assert "tiny-llama · lora-r4" in "\n".join(rows) and "smollm2-135m · lora-r8" in "\n".join(rows)
    assert rows[-1].split()[-7] == "579"  # mem_total 607,299,072 bytes in MiB, 3 significant digits


def test_all_limit_and_columns(db, capsys):
    assert main(["--store", db, "compare", "--all"]) == 0
    out = _lines(capsys)
    assert len(out) == 1 + N and not any("not shown" in line for line in out)
    assert main(["--store", db, "compare", "--limit", "3", "--columns", "run_id,model,mem_base_weights"]) == 0
    header, *rows, note = _lines(capsys)
    assert header.split() == ["run_id", "model", "base_weights_MiB"] and len(rows) == 3
    assert rows[0].split() == ["run22", "smollm2-135m", "513"] and "22 older run(s) not shown" in note
    assert main(["--store", db, "compare", "--columns", "all", "--limit", "1"]) == 0
    header = _lines(capsys)[0].split()
    assert {"alpha", "target_modules", "planned_total_MiB", "adapter_MiB", "created_at"} <= set(header)


def test_a_bad_column_or_limit_is_named(db, capsys):
    assert main(["--store", db, "compare", "--columns", "label,memory"]) == 2
    err = capsys.readouterr().err
    assert "unknown column(s) 'memory'" in err and "mem_total" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["--store", db, "compare", "--limit", "0"])
    assert "--limit must be a whole number of runs, 1 or more" in capsys.readouterr().err


def test_the_csv_holds_every_run_and_column_whatever_is_printed(db, tmp_path, capsys):
    import pandas as pd

    from lorakit.comparison.table import COLUMNS

    csv = tmp_path / "all.csv"
    assert main(["--store", db, "compare", "--limit", "2", "--csv", str(csv)]) == 0
    back = pd.read_csv(csv)
    assert len(back) == N and list(back.columns) == list(COLUMNS)


def test_printing_the_table_imports_no_model_library(db):
    code = ("import sys; from lorakit.cli.commands import main; main(['--store', %r, 'compare']); "
            "print('loaded:', sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))" % db)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "run24" in out and out.strip().endswith("loaded: []")


def test_the_html_report_holds_the_runs_printed_and_charts_only_the_newest(db, tmp_path, capsys, monkeypatch):
    import lorakit.comparison.report as report

    drawn, real = [], report.loss_figure
    monkeypatch.setattr(report, "loss_figure", lambda recs, *a, **k: drawn.append([r.run_id for r in recs])
                        or real(recs, *a, **k))
    out = tmp_path / "r.html"
    assert main(["--store", db, "compare", "--limit", "4", "--html", str(out)]) == 0
    assert drawn[-1] == ["run21", "run22", "run23", "run24"]  # the four runs printed, their histories read
    assert f"wrote {out} (4 of 25 runs)" in capsys.readouterr().out
    monkeypatch.setattr(report, "CHART_RUNS", 10)
    assert main(["--store", db, "compare", "--all", "--html", str(out)]) == 0
    assert drawn[-1] == [f"run{i:02d}" for i in range(15, 25)]  # one curve a run: the newest ten
    text = out.read_text()
    assert "charts and the samples show the newest 10; the table and the memory-vs-metric chart show all 25" in text
    assert all(f"run{i:02d}" in text for i in range(N))  # the table lists every run
