"""The lorakit command, called in-process through main(argv) and once as a real console script."""
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import lorakit
from lorakit.cli import _config_kwargs, build_parser, main
from lorakit.store import RunStore

TINY = ["--model", "tiny-llama", "--seq-len", "400", "--batch-size", "2", "--train-examples", "16",
        "--eval-examples", "1", "--max-steps", "2"]


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "134.5M" in out and "llama-65b" in out


def test_plan_prints_the_breakdown_for_a_65b_qlora(capsys):
    assert main(["plan", "llama-65b", "--quant", "nf4", "--rank", "16", "--target-modules", "all-linear"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: float(line.split()[-2]) for line in out.splitlines()[1:]}
    assert set(rows) == {"base_weights", "adapters", "gradients", "optimizer", "activations", "total"}
    assert 30 < rows["base_weights"] < 40  # GiB: 65B weights in ~4.1 bits
    assert rows["total"] == pytest.approx(sum(v for k, v in rows.items() if k != "total"), abs=0.05)


def test_train_then_compare_with_csv_and_html(tmp_path, capsys):
    db = str(tmp_path / "runs.db")
    assert main(["--store", db, "train", *TINY, "--quiet", "--rank", "4", "--target-modules", "q_proj", "k_proj"]) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "adapter:" in out
    csv, html = tmp_path / "t.csv", tmp_path / "r.html"
    assert main(["--store", db, "compare", "--csv", str(csv), "--html", str(html)]) == 0
    table = pd.read_csv(csv)
    assert len(table) == 1 and table.loc[0, "rank"] == 4 and table.loc[0, "target_modules"] == "q_proj,k_proj"
    assert html.stat().st_size > 1_000_000  # plotly.js inlined: a self-contained report


def test_bad_flags_get_a_message_naming_the_field_not_a_traceback(tmp_path, capsys):
    code = main(["--store", str(tmp_path / "r.db"), "train", *TINY, "--rank", "0", "--learning-rate", "-1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "rank must be an integer >= 1, got 0" in err and "learning_rate must be a number > 0" in err
    assert "Traceback" not in err


def test_a_corrupted_store_is_reported_and_left_untouched(tmp_path, capsys):
    bad = tmp_path / "runs.db"
    bad.write_bytes(b"not a database at all" * 10)
    before = bad.read_bytes()
    assert main(["--store", str(bad), "compare"]) == 2
    assert "lorakit: error:" in capsys.readouterr().err
    assert bad.read_bytes() == before


def test_sweep_flags_become_grid_axes():
    ns = build_parser().parse_args(["sweep", "--rank", "4", "16", "--quant", "none", "nf4"])
    assert ns.rank == [4, 16] and ns.quant == ["none", "nf4"]
    # --target-modules once per axis value: a preset stays a preset, several words are layer names
    ns = build_parser().parse_args(["sweep", "--target-modules", "qv", "--target-modules", "q_proj", "k_proj"])
    assert _config_kwargs(ns)["target_modules"] == ["qv", ("q_proj", "k_proj")]


def test_plan_takes_a_preset_or_the_layer_names_it_stands_for(capsys):
    outputs = []
    for words in (["qv"], ["q_proj", "v_proj"], []):  # [] : the default, RunConfig's
        flag = ["--target-modules", *words] if words else []
        assert main(["plan", "tiny-llama", *flag]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2] and "adapters" in outputs[0]
    assert main(["plan", "tiny-llama", "--target-modules", "mlp"]) == 0
    assert capsys.readouterr().out != outputs[0]
    assert main(["plan", "tiny-llama", "--target-modules", "wq"]) == 2
    assert "target_modules" in capsys.readouterr().err


def test_console_script_is_installed():
    # The script pip installed next to this interpreter (a venv's bin/ need not be on PATH).
    exe = shutil.which("lorakit", path=os.path.dirname(sys.executable))
    assert exe, f"no lorakit console script next to {sys.executable}: pip install -e . installs it"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "plan" in out.stdout


def test_demo_compares_the_three_methods_and_writes_the_report(tmp_path, capsys):
    db, html = tmp_path / "runs.db", tmp_path / "report.html"
    assert main(["--store", str(db), "demo", "--model", "tiny-llama", "--steps", "2", "--seq-len", "512",
                 "--eval-examples", "2", "--html", str(html)]) == 0
    out = capsys.readouterr().out
    table = lorakit.compare(store=RunStore(db))
    assert sorted(table["label"]) == ["LoRA r8 (fp32 base)", "QLoRA r8 (NF4 base, fp32 compute)", "full fine-tuning"]
    assert set(table["status"]) == {"finished"}
    assert "QLoRA r8 (NF4 base, fp32 compute)" in out and html.stat().st_size > 10_000
