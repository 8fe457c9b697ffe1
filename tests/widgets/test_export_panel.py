"""The Compare panel's Export action: set the widgets' values, click, read the panel's message and the files."""
from __future__ import annotations

import os

import pytest

import lorakit

TINY = dict(model="tiny-llama", max_steps=2, batch_size=2, train_examples=16, eval_examples=2, learning_rate=2e-2)
WAIT = 600  # seconds; generous for a loaded 2-core machine (never an assertion on time)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    from lorakit.run.record import RunRecord
    from lorakit.store import RunStore

    path = tmp_path_factory.mktemp("panel") / "runs.db"
    with RunStore(path) as st:
        lora = lorakit.train(lorakit.RunConfig(**TINY), store=st)
        # a GPT-2 run as train() records it (the GGUF refusal reads only its config): no second training
        gpt2 = RunRecord(lorakit.RunConfig(**dict(TINY, model="tiny-gpt2")), status="finished", task="causal-lm")
        st.save(gpt2)
    assert lora.status == "finished"
    return path, lora, gpt2


@pytest.fixture
def panel(stored):
    from lorakit.widgets import ComparePanel, StudioController

    return ComparePanel(StudioController(store=stored[0]))


def _click(panel):
    panel.export_run_button.click()
    assert panel.run_export.wait(WAIT)


def test_export_button_writes_the_selected_run_in_the_chosen_format(panel, stored, tmp_path):
    from transformers import AutoModelForCausalLM

    _, lora, _ = stored
    panel.select.value = (lora.run_id,)
    panel.export_format.value = "merged"
    panel.export_dest.value = str(tmp_path / "home")
    _click(panel)
    assert panel.export_text.startswith(f"Wrote {tmp_path / 'home'}") and "MiB" in panel.export_text
    AutoModelForCausalLM.from_pretrained(str(tmp_path / "home"))  # plain transformers reads it
    panel.export_format.value, panel.gguf_type.value = "gguf", "q8_0"
    panel.export_dest.value = str(tmp_path / "g")
    _click(panel)
    assert panel.run_export.written.name.endswith(".q8_0.gguf") and (tmp_path / "g" / "Modelfile").is_file()


def test_export_button_shows_lorakit_refusals_in_the_panel_and_writes_nothing(panel, stored, tmp_path):
    _, lora, gpt2 = stored
    panel.select.value = ()
    _click(panel)
    assert "Select exactly one run" in panel.export_text
    panel.select.value = (gpt2.run_id,)
    panel.export_format.value = "gguf"
    panel.export_dest.value = str(tmp_path / "g")
    _click(panel)
    assert panel.export_text.startswith("format: format='gguf' cannot write") and "LLaMA-family" in panel.export_text
    (tmp_path / "taken").mkdir()
    panel.select.value = (lora.run_id,)
    panel.export_format.value = "peft"
    panel.export_dest.value = str(tmp_path / "taken")
    _click(panel)
    assert panel.export_text.startswith("path:") and "overwrite" in panel.export_text
    assert sorted(os.listdir(tmp_path)) == ["taken"] and os.listdir(tmp_path / "taken") == []
    panel.export_overwrite.value = True
    _click(panel)
    assert panel.export_text.startswith("Wrote") and (tmp_path / "taken" / "adapter_config.json").is_file()
