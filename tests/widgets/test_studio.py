"""The Studio headless: set widget values, click Train in Python, read the charts, the status and the table."""
from __future__ import annotations

import logging

import pytest

from lorakit.memory.breakdown import CATEGORIES
from lorakit.memory.step_peak import PHASES
from lorakit.run.events import StepLogged
from lorakit.store import RunStore

WAIT = 600  # seconds to wait for a run; generous for a loaded CI machine, never asserted on


def test_train_lora_then_qlora_fills_chart_memory_and_table(studio, store_path):
    s = studio
    tp, ap, qp = s.train_panel, s.adapter_panel, s.quant_panel
    # the form, through the widgets as a user would fill it
    tp.max_steps.value = 5
    tp.learning_rate.value = 2e-3
    ap.rank.value = 16
    ap.apply_preset("attention")
    assert [n for n, cb in ap.checks.items() if cb.value] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    # 2 layers x r=16 x (q 64+64, k 64+32, v 64+32, o 64+64)
    assert "trainable: 14,336 LoRA parameters" in ap.trainable_text
    s.controller.extra["eval_every"] = 2

    tp.click_train()
    tp.click_train()  # a second press while the first run is going
    assert "already going" in tp.status_text
    assert s.wait(WAIT)

    live = s.controller.live
    assert live.status == "finished", tp.status_text
    assert "finished" in tp.status_text and "train loss" in tp.status_text
    steps = [x for x, _ in tp.chart.train_points]
    assert steps == [1, 2, 3, 4, 5]
    assert all(y is not None and y > 0 for _, y in tp.chart.train_points)
    assert [x for x, _ in tp.chart.eval_points] == [2, 4, 5]
    assert tp.progress.value == 5 and tp.progress.bar_style == "success"

    bars = s.memory_panel.chart.values()
    this = "lora-r16 (this run)"
    assert set(bars) == {(this, "planned"), (this, "measured")}
    for kind in ("planned", "measured"):
        assert set(bars[(this, kind)]) == set(CATEGORIES)
        assert bars[(this, kind)]["base_weights"] > 0 and bars[(this, kind)]["adapters"] > 0
    assert bars[(this, "measured")]["adapters"] == 14_336 * 4  # fp32 LoRA tensors, measured
    assert len(s.memory_panel.chart.figure.data) == 7  # five categories + the planned and measured peaks
    assert "planned" in s.memory_panel.table.value and "measured" in s.memory_panel.table.value
    # the step peak of the first two optimizer steps, measured and planned for those very batches
    peaks = s.memory_panel.chart.peaks()
    assert peaks == {(this, "planned"): live.planned.peak, (this, "measured"): live.memory.peak}
    assert live.memory.peak > live.memory.base_weights + live.memory.activations
    assert live.memory.peak_at in PHASES and live.planned.peak_at in PHASES
    assert "step peak" in s.memory_panel.table.value

    frame = s.compare_panel.frame
    assert list(frame["run_id"]) == [live.run_id]
    assert frame.iloc[0]["status"] == "finished" and frame.iloc[0]["rank"] == 16
    assert live.run_id in s.compare_panel.table.value
    assert [v for _, v in s.compare_panel.select.options] == [live.run_id]
    assert len(s.compare_panel.loss_chart.data) >= 1  # the loss overlay of the stored run

    # QLoRA next: both runs side by side in the memory chart and the table
    qp.quant.value = "nf4"
    tp.max_steps.value = 3
    tp.click_train()
    assert s.wait(WAIT)
    assert s.controller.live.status == "finished", tp.status_text
    bars = s.memory_panel.chart.values()
    labels = {label for label, _ in bars}
    assert labels == {"lora-r16 (previous)", "qlora-nf4-r16 (this run)"}
    lora_base = bars[("lora-r16 (previous)", "measured")]["base_weights"]
    qlora_base = bars[("qlora-nf4-r16 (this run)", "measured")]["base_weights"]
    assert 0 < qlora_base < lora_base  # 4-bit base weights are smaller
    assert list(s.compare_panel.frame["quant"]) == ["none", "nf4"]
    with RunStore(store_path) as st:
        assert [r.status for r in st.records()] == ["finished", "finished"]  # the refused press made no run
    # charts follow the row selection: only the first run's loss curve
    cp = s.compare_panel
    first = cp.frame.iloc[0]["run_id"]
    cp.select.value = (first,)
    assert {t.name for t in cp.loss_chart.data} == {"tiny-llama · lora-r16", "tiny-llama · lora-r16 (eval)"}
    bars_, peaks_ = cp.memory_chart.data[:5], cp.memory_chart.data[5:]
    assert all(len(t.y) == 2 for t in bars_)  # measured and planned
    assert [t.name for t in peaks_] == ["step peak (measured)", "step peak (planned)"]
    assert "before training" in cp.samples.value and "after training" in cp.samples.value
    # the table survives a kernel restart: a new Studio on the same store shows both runs
    from lorakit.widgets import Studio

    again = Studio(store=store_path, autoload=False)
    assert list(again.compare_panel.frame["run_id"]) == list(cp.frame["run_id"])
    assert set(again.memory_panel.chart.values()) == {("qlora-nf4-r16 (previous)", "planned"),
                                                      ("qlora-nf4-r16 (previous)", "measured")}


def test_bad_values_show_messages_next_to_fields_and_train_is_refused(studio, store_path):
    s = studio
    tp, ap, qp = s.train_panel, s.adapter_panel, s.quant_panel
    tp.learning_rate.value = 0.0
    assert "learning_rate must be a number > 0" in tp.message("learning_rate")
    ap.dropout.value = 1.5
    assert "dropout must be in [0, 1)" in ap.message("dropout")
    tp.batch_size.value = 0
    assert "batch_size must be an integer >= 1" in tp.message("batch_size")
    ap.select_targets([])  # LoRA with no target module
    assert "target_modules must name at least one" in ap.message("target_modules")
    tp.click_train()
    assert "Cannot train" in tp.status_text and "learning_rate" in tp.status_text
    assert not s.controller.running
    # fixing a field clears its message, the others stay
    tp.learning_rate.value = 1e-3
    assert tp.message("learning_rate") == ""
    assert "dropout" in ap.message("dropout")
    # full fine-tuning cannot train a quantized base: said next to the method and the quantization
    ap.dropout.value, tp.batch_size.value = 0.05, 2
    ap.apply_preset("qv")
    ap.method.value = "full"
    qp.quant.value = "nf4"
    assert "full fine-tuning needs an unquantized base" in ap.message("method")
    assert "full fine-tuning needs an unquantized base" in qp.message("quant")
    qp.quant.value = "none"
    assert ap.message("method") == "" and s.controller.problems == {}
    assert s.wait(WAIT)
    with RunStore(store_path) as st:
        assert len(st) == 0  # nothing ran


def test_stop_mid_run_keeps_history(studio, store_path):
    s = studio
    s.train_panel.max_steps.value = 40

    def stop_at_step_2(event):
        if isinstance(event, StepLogged) and event.step == 2:
            s.train_panel.click_stop()  # pressed from the training thread, as a sink

    s.controller.on("event", stop_at_step_2)
    s.train_panel.click_train()
    assert s.wait(WAIT)
    live = s.controller.live
    assert live.status == "stopped"
    assert "stopped after step" in s.train_panel.status_text and "kept" in s.train_panel.status_text
    assert s.train_panel.progress.bar_style == "warning"
    with RunStore(store_path) as st:
        rec = st.load(live.run_id)
    assert rec.status == "stopped"
    assert 2 <= len(rec.history) <= 3  # ends within one step of the press
    assert [h["step"] for h in rec.history] == list(range(1, len(rec.history) + 1))
    assert s.compare_panel.frame.iloc[-1]["status"] == "stopped"
    assert s.train_panel.stop_button.disabled  # nothing left to stop


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # no silent thread death
def test_failed_run_and_broken_listener_are_messages_not_tracebacks(studio, monkeypatch, store_path, caplog, capsys):
    import lorakit.adapters.lora

    caplog.set_level(logging.DEBUG, logger="lorakit.widgets")  # where the widgets keep tracebacks
    s = studio
    seen = []

    def no_adapter(*args, **kwargs):  # fails inside the run, after every check before Train passed
        raise RuntimeError("peft refused the adapter")

    def broken(event):
        raise ValueError("this panel is broken")

    monkeypatch.setattr(lorakit.adapters.lora, "attach", no_adapter)  # what train() calls
    s.controller.on("event", broken)
    s.controller.on("status", lambda: seen.append(s.train_panel.status_text))
    s.train_panel.click_train()
    assert s.wait(WAIT)
    assert s.controller.live.status == "failed"
    text = s.train_panel.status_text
    assert text.startswith("lora-r8 failed:") and "peft refused the adapter" in text  # the engine's reason
    assert "Traceback" not in text
    assert any("display error" in t and "this panel is broken" in t for t in seen)
    # the broken panel's traceback is kept for debugging, at DEBUG only (hidden at default levels) ...
    kept = [r for r in caplog.records if r.name == "lorakit.widgets" and r.exc_info
            and "this panel is broken" in str(r.exc_info[1])]
    assert kept and all(r.levelno == logging.DEBUG for r in kept)
    assert not [r for r in caplog.records if r.name.startswith("lorakit") and r.levelno >= logging.WARNING
                and r.exc_info]
    # ... and nothing reaches the notebook's output
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "this panel is broken" not in out + err
    with RunStore(store_path) as st:
        assert [r.status for r in st.records()] == ["failed"]


def test_unavailable_model_message_next_to_the_field(tmp_path, monkeypatch, tiny):
    from lorakit.widgets import Studio

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network probe: fail at once
    s = Studio(store=tmp_path / "runs.db", **tiny)
    s.model_panel.path.value = "someone/not-a-cached-model"
    s.model_panel.load_button.click()
    assert s.wait(WAIT)
    msg = s.model_panel.message("model")
    assert "not-a-cached-model" in msg and "hub" in msg.lower()
    s.train_panel.click_train()
    assert "Cannot train" in s.train_panel.status_text and "model" in s.train_panel.status_text
    s.model_panel.path.value = ""  # back to the registry choice: the message goes
    assert s.wait(WAIT)
    assert s.model_panel.message("model") == ""
    assert "parameters" in s.model_panel.info.value


def test_panels_alone(tmp_path, tiny):
    from lorakit.widgets import AdapterPanel, DataPanel, QuantPanel, StudioController

    c = StudioController(store=False, **tiny)
    adapter = AdapterPanel(c, autoload=True)
    quant = QuantPanel(c)
    data = DataPanel(c)
    assert c.wait(WAIT)
    # checkboxes discovered from the model, each with its parameter count
    assert list(adapter.checks) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    # q_proj: 2 layers of 64 -> 64 = 8,192 weights; LoRA at r=8 adds 2 x 8 x (64 + 64) = 2,048
    assert adapter.checks["q_proj"].description == "q_proj · 2× 64→64 · 8,192 · LoRA +2,048"
    # the trainable count follows the rank live: r (d_in + d_out) per layer
    adapter.rank.value = 8
    n8 = c.trainable()[0]
    adapter.rank.value = 32
    assert c.trainable()[0] == 4 * n8 and f"{4 * n8:,}" in adapter.trainable_text
    adapter.apply_preset("all-linear")
    assert all(cb.value for cb in adapter.checks.values()) and c.values["target_modules"] == "all-linear"
    adapter.method.value = "full"
    assert "100 %" in adapter.trainable_text and adapter.rank.disabled
    adapter.method.value = "lora"
    # the planner's plan for the quantization choice, before anything is trained
    assert c.wait(WAIT)
    base_none = quant.planned.base_weights
    quant.quant.value = "nf4"
    assert c.wait(WAIT)
    assert quant.planned.base_weights < base_none
    assert "planned memory" in quant.plan.value and "base weights" in quant.plan.value
    assert not quant.double_quant.disabled
    # data: counts and the loss-token preview
    data.preview_button.click()
    assert c.wait(WAIT)
    assert "48</b> train" in data.counts.value and "4</b> eval" in data.counts.value
    assert "carry loss" in data.preview.value and "#ffd54f" in data.preview.value
    data.path.value = str(tmp_path / "missing.jsonl")
    data.preview_button.click()
    assert c.wait(WAIT)
    assert "missing.jsonl" in data.message("dataset")


def test_compare_panel_delete_and_export(studio, tmp_path):
    s = studio
    s.train_panel.max_steps.value = 2
    s.train_panel.click_train()
    assert s.wait(WAIT)
    cp = s.compare_panel
    rid = s.controller.live.run_id
    cp.path.value = str(tmp_path / "out" / "runs")
    assert cp.export("csv").read_text().count(rid) == 1
    html = cp.export("html").read_text()
    assert rid in html and "Sample generations" in html
    assert "Wrote 1 run(s)" in cp.message_text
    cp.select.value = (rid,)
    cp.delete_selected()  # asks first: nothing deleted yet
    assert cp.confirm_question.startswith("Delete 1 run and their adapters") and len(cp.frame) == 1
    cp.cancel_delete()
    assert cp.confirm_question == "" and len(cp.frame) == 1 and "Nothing deleted" in cp.message_text
    cp.delete_selected()
    assert cp.confirm_delete() == 1
    assert len(cp.frame) == 0 and cp.select.options == () and cp.confirm_question == ""
    assert "Deleted 1 run(s)" in cp.message_text
