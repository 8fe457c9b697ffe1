"""The lorakit command, called in-process through main(argv) and once as a real console script."""
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import lorakit
from lorakit.cli.commands import _config_kwargs, build_parser, demo_verdict, main
from lorakit.store import RunStore

TINY = ["--model", "tiny-llama", "--seq-len", "400", "--batch-size", "2", "--train-examples", "16",
        "--eval-examples", "1", "--max-steps", "2"]


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "134.5M" in out and "llama-65b" in out


def _plan_rows(out: str) -> dict:
    """name -> GiB of every byte row ``lorakit plan`` printed (the categories, total, peak, overhead)."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\s+(\w+)\s+[\d,.]+ MiB\s+([\d.]+) GiB", line)
        if m:
            rows[m[1]] = float(m[2])
    return rows


def _fit_rows(out: str) -> dict:
    """device -> (fits, max batch_size, max seq_len) from the fits table ``lorakit plan`` printed."""
    table = out[out.index("what fits"):].splitlines()[2:]
    return {re.split(r"\s{2,}", line.strip())[0]: (line.split()[-3], int(line.split()[-2]), int(line.split()[-1]))
            for line in table if line.strip()}


def test_plan_prints_the_breakdown_the_peak_and_what_it_assumes_for_a_65b_qlora(capsys):
    assert main(["plan", "llama-65b", "--quant", "nf4", "--rank", "16", "--target-modules", "all-linear",
                 "--dtype", "auto", "--device", "cuda", "--devices", "48GB", "80GB"]) == 0
    out = capsys.readouterr().out
    rows = _plan_rows(out)
    assert set(rows) == {"base_weights", "adapters", "gradients", "optimizer", "activations", "total", "peak",
                         "step_peak", "load_peak", "device_overhead", "device_total"}
    assert rows["peak"] == max(rows["step_peak"], rows["load_peak"])
    assert 30 < rows["base_weights"] < 40  # GiB: 65B weights in ~4.1 bits
    steady = ("base_weights", "adapters", "gradients", "optimizer", "activations")
    assert rows["total"] == pytest.approx(sum(rows[k] for k in steady), abs=0.05)
    assert rows["device_total"] == pytest.approx(rows["peak"] + rows["device_overhead"], abs=0.02)
    peak_line = next(line for line in out.splitlines() if line.split()[0] == "step_peak")
    assert re.search(r"at (forward|logits-loss|backward|optimizer step)", peak_line)
    assert "an upper bound" in out  # a config-only size: no tokenizer, so full-length batches
    # a CUDA plan without --dtype computes in bf16, and says so
    assumes = next(line for line in out.splitlines() if line.startswith("assumes: "))
    assert assumes.startswith("assumes: cuda, bfloat16 (cuda's default), ")
    assert "batch 4 × 128 tokens unpadded, no gradient checkpointing, adamw" in assumes
    fit = _fit_rows(out)
    assert set(fit) == {"48GB (e.g. A6000 / L40S)", "80GB (e.g. A100-80 / H100)"}
    assert fit["80GB (e.g. A100-80 / H100)"][0] == "yes"  # ~75 GiB peak + context fit on 80 GB


def test_plan_verdict_flips_at_the_planned_need(capsys):
    cfg = lorakit.RunConfig(model="tiny-llama", dtype="float32")
    need = lorakit.fits(cfg, devices=[1])[0].need  # a GPU: the run's peak + device overhead
    above, below = need * 1.0001 / 2**30, need * 0.9999 / 2**30
    assert main(["plan", "tiny-llama", "--dtype", "float32", "--devices", repr(above), repr(below)]) == 0
    out = capsys.readouterr().out
    assert "float32 (given)" in out
    fit = _fit_rows(out)
    expected = lorakit.fits(cfg, devices=[above, below])
    assert [f.fits for f in expected] == [True, False]
    assert list(fit.values()) == [("yes" if f.fits else "no", f.max_batch_size, f.max_seq_len) for f in expected]
    assert fit[f"{above:g} GiB"][1] >= 4 > fit[f"{below:g} GiB"][1]  # the default batch_size fits only above


def test_plan_takes_trains_flags_and_plans_the_run_train_would_train(capsys):
    flags = ["--model", "tiny-llama", "--dataset", "arithmetic", "--batch-size", "2", "--max-steps", "5",
             "--train-examples", "12", "--seq-len", "200"]
    assert main(["plan", *flags, "--device", "cpu", "--devices", "24GB"]) == 0
    out = capsys.readouterr().out
    run = lorakit.plan(lorakit.RunConfig(**_config_kwargs(build_parser().parse_args(["train", *flags]))), device="cpu")
    peak_line = next(line for line in out.splitlines() if line.split()[0] == "peak")
    assert f"{run.peak / 2**20:,.1f} MiB" in peak_line and f"in {run.text}" in peak_line
    assert not run.upper_bound and f"step {run.peak_step}'s batch, 2 x " in peak_line
    assert main(["plan", *flags, "--device", "cpu", "--devices", "24GB", "--no-data"]) == 0
    assert "an upper bound: the data was not read" in capsys.readouterr().out


def test_plan_lists_every_accelerator_and_this_machine_by_default(capsys):
    assert main(["plan", "tiny-llama"]) == 0
    fit = _fit_rows(capsys.readouterr().out)
    assert list(fit) == [*lorakit.memory.fit.accelerators(), "this machine (free RAM, as a CPU run)"]


def test_plan_takes_the_adapter_dtype(capsys):
    adapters = {}
    for dtype in ("float32", "bfloat16"):
        assert main(["plan", "smollm2-135m", "--adapter-dtype", dtype, "--device", "cpu", "--devices", "24GB"]) == 0
        adapters[dtype] = float(re.search(r"adapters\s+([\d.]+) MiB", capsys.readouterr().out)[1])
    # r=8 on q_proj, v_proj of 30 layers: 460,800 parameters in 4 bytes, then in 2
    assert adapters == {"float32": round(460_800 * 4 / 2**20, 1), "bfloat16": round(460_800 * 2 / 2**20, 1)}


def test_plan_with_a_bad_device_names_devices_not_a_traceback(capsys):
    assert main(["plan", "tiny-llama", "--devices", "24GB", "99GB", "-3"]) == 2
    err = capsys.readouterr().err
    assert "devices: unknown device or size '99GB', -3.0" in err and "24GB (e.g. RTX 3090" in err
    assert "Traceback" not in err


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
        assert main(["plan", "tiny-llama", *flag, "--devices", "24GB"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2] and "adapters" in outputs[0]
    assert main(["plan", "tiny-llama", "--target-modules", "mlp", "--devices", "24GB"]) == 0
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
    captured = capsys.readouterr()
    out = captured.out
    table = lorakit.compare(store=RunStore(db))
    lora, qlora = "LoRA r8 all-linear (fp32 base)", "QLoRA r8 all-linear (NF4 base, fp32 compute)"
    assert sorted(table["label"]) == [lora, qlora, "full fine-tuning"]
    assert set(table["status"]) == {"finished"}
    # each method at its own learning rate, said in the output
    assert "full fine-tuning, learning rate 0.0001" in out and f"{lora}, learning rate 0.002" in out
    # the line under the table: each adapter run's peak memory as a share of full fine-tuning's
    peak = table.set_index("label")["mem_peak"]
    for name, label in [("LoRA", lora), ("QLoRA", qlora)]:
        share = peak[label] / peak["full fine-tuning"]
        assert f"{name} needs {share:.0%} of full fine-tuning's memory" in out
    # each run says where its time went; full fine-tuning's base is LoRA's: its "before" is reused
    assert (table["train_s"] > 0).all() and (table["task_eval_s"] > 0).all() and "train_s" in out
    assert captured.err.count("  time: load ") == 3
    assert [r.before_cached for r in RunStore(db).records()] == [False, False, True]
    assert qlora in out and html.stat().st_size > 10_000


def test_demo_verdict_compares_each_finished_adapter_run_with_full_fine_tuning():
    from types import SimpleNamespace as NS

    def run(name, method, peak_mib, metric, status="finished"):
        memory = NS(peak=peak_mib * 2**20, total=peak_mib * 2**20)
        return NS(config=NS(name=name, method=method), status=status, memory=memory, task_metric=metric)

    full, lora = run("full fine-tuning", "full", 400, 0.5), run("LoRA r8", "lora", 100, 0.25)
    assert demo_verdict([lora, full]) == ("LoRA needs 25% of full fine-tuning's memory (100 vs 400 MiB at the "
                                          "step's peak) and scores 50% of its task metric (0.25 vs 0.50).")
    no_metric = demo_verdict([run("QLoRA r8", "lora", 50, None), full])  # user data: no task metric
    assert no_metric.startswith("QLoRA needs 12% of") and "task metric" not in no_metric
    assert demo_verdict([lora, run("full fine-tuning", "full", 400, 0.5, status="failed")]).startswith(
        "full fine-tuning did not finish")
    assert demo_verdict([run("LoRA r8", "lora", 100, 0.3, status="failed"), full]) == "no adapter run finished."


def test_plan_prints_how_long_here_and_per_step_on_each_gpu(capsys, monkeypatch):
    import lorakit.memory.timing as timing
    from lorakit.memory.calibration import Calibration

    cal = Calibration("float32", 2.0, 1.0, 1.0, 1.0, 5.0, 0.001, 1.0, 3.0)
    monkeypatch.setattr(timing, "calibrate", lambda *a, **k: cal)  # nothing measured: the figures are known
    assert main(["plan", "tiny-llama", "--device", "cpu", "--devices", "24GB", "this-machine"]) == 0
    out = capsys.readouterr().out
    cfg = lorakit.RunConfig(model="tiny-llama")  # what `lorakit train tiny-llama` would train: its own batches
    expected = timing.plan_time(cfg, lorakit.plan(cfg, device="cpu").batches, calibration=cal)
    assert f"time on this machine: {expected.text}: " in out
    assert f"{expected.steps} steps x {expected.step_s:.2f} s" in out
    a10 = lorakit.fits(cfg, devices="24GB")[0]
    assert f"A10: {a10.step_s * 1e3:,.1f} ms a step" in out and "at 40% of each card's published bf16" in out
    assert list(_fit_rows(out)) == ["24GB (e.g. RTX 3090 / 4090 / A10 / L4)", "this machine (free RAM, as a CPU run)"]
