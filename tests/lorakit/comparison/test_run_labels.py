"""Run labels: the model named, a user's name kept, runs sharing a label told apart by what differs."""
from __future__ import annotations

import pandas as pd

from lorakit.comparison.run_labels import model_word, tell_apart
from lorakit.comparison.table import compare, display_names
from lorakit.config.run_config import RunConfig
from lorakit.run.record import RunRecord


def test_a_model_is_named_by_its_last_part():
    assert model_word("smollm2-135m") == "smollm2-135m"
    assert model_word("HuggingFaceTB/SmolLM2-135M") == "SmolLM2-135M"
    assert model_word("/home/ann/models/my-llama/") == "my-llama"
    assert model_word(r"C:\models\phi") == "phi"


def test_only_rows_sharing_a_label_get_the_settings_that_differ_among_them():
    df = pd.DataFrame({"label": ["a", "a", "b", "c", "c"], "alpha": [16.0, 32.0, 16.0, 8.0, 8.0],
                       "learning_rate": [2e-4, 2e-4, 1e-3, 1e-4, None],
                       "double_quant": [True, False, True, True, True]})
    assert list(tell_apart(df)) == ["a · alpha 16 · double quant on", "a · alpha 32 · double quant off", "b",
                                    "c · lr 0.0001", "c · lr -"]


def test_the_table_and_the_charts_use_the_same_names():
    runs = [RunRecord(RunConfig(model="smollm2-135m", quant="nf4", rank=16), run_id="aaaaaa1"),
            RunRecord(RunConfig(model="tiny-llama", quant="nf4", rank=16), run_id="bbbbbb2"),
            RunRecord(RunConfig(model="tiny-llama", quant="nf4", rank=16), run_id="cccccc3")]
    assert list(compare(runs)["label"]) == ["smollm2-135m · qlora-nf4-r16", "tiny-llama · qlora-nf4-r16",
                                            "tiny-llama · qlora-nf4-r16"]
    # nothing differs between the last two: the charts add the run id where the table has its own column
    assert display_names(runs) == ["smollm2-135m · qlora-nf4-r16", "tiny-llama · qlora-nf4-r16 [bbbbbb]",
                                   "tiny-llama · qlora-nf4-r16 [cccccc]"]
