"""The Compare panel's Resume: a run stopped with the Studio's Stop goes on from the step it stopped at, as the
same run, and ends with the losses and adapter of a run never stopped (controller level, no browser)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lorakit
from lorakit.run.events import StepLogged

WAIT = 600  # seconds; generous for a loaded CI machine, never asserted on
RUN = dict(model="tiny-llama", dataset="arithmetic", seq_len=256, batch_size=2, train_examples=48, eval_examples=4,
           learning_rate=1e-3, max_steps=16, checkpoint_every=5)


def test_a_run_stopped_in_the_studio_resumes_from_the_compare_panel(tmp_path):
    from lorakit.widgets import ComparePanel, StudioController

    c = StudioController(store=tmp_path / "runs.db", **RUN)
    assert c.wait(WAIT)
    c.on("event", lambda e: c.stop() if isinstance(e, StepLogged) and e.step == 7 else None)
    assert c.train() and c.wait(WAIT)
    run_id = c.live.run_id
    stopped = c.store.load(run_id)
    assert stopped.status == "stopped" and stopped.steps_done == 8 and stopped.checkpoint_step == 8

    panel = ComparePanel(c)
    assert panel.resume_button.disabled  # nothing selected
    panel.select.value = (run_id,)
    assert not panel.resume_button.disabled, panel.resume_button.tooltip
    c._listeners["event"].clear()  # no Stop this time
    panel.resume_button.click()
    assert c.running and panel.resume_button.disabled  # one run at a time
    assert c.wait(WAIT)
    assert c.live.run_id == run_id and c.live.status == "finished", c.live.reason
    assert [s for s, _ in c.live.steps] == list(range(1, 17))  # the chart: the history so far, then the new steps
    rec = c.store.load(run_id)
    assert rec.status == "finished" and [h["step"] for h in rec.history] == list(range(1, 17))
    assert len(c.store) == 1 and rec.resumed_at == [8]
    panel.refresh()
    assert panel.resume_button.disabled and "finished" in panel.resume_button.tooltip

    want = lorakit.train(rec.config, store=tmp_path / "plain.db")
    got, plain = {h["step"]: h["loss"] for h in rec.history}, {h["step"]: h["loss"] for h in want.history}
    for step in range(9, 17):
        assert got[step] == pytest.approx(plain[step], rel=1e-5), step
    a = load_file(str(Path(rec.adapter_path) / "adapter_model.safetensors"))
    b = load_file(str(Path(want.adapter_path) / "adapter_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
