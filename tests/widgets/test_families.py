"""The Studio by model family: the model picker lists decoders, encoders and encoder-decoders as groups,
the data panel offers the built-in tasks that fit the model's family, and data of another kind is a
``dataset`` problem before Train (a decoder cannot learn the topic classifier's labels as text and vice versa)."""
from __future__ import annotations

from conftest import TINY, WAIT

from lorakit.widgets import Studio


def test_the_model_picker_groups_the_built_in_models_by_family(store_path):
    s = Studio(store=store_path, autoload=False, model="tiny-llama")
    labels = [label for label, _ in s.model_panel.registry.options]
    groups = [label.split(" │ ")[0].split(" · ", 1)[1] for label in labels]  # "name · family · task │ ..."
    assert groups == sorted(groups, key=["decoder · causal-lm", "encoder · classification",
                                         "encoder-decoder · seq2seq"].index)  # each family one run of entries
    by_name = dict(zip([v for _, v in s.model_panel.registry.options], groups, strict=True))
    assert by_name["minilm-l6"] == "encoder · classification" and by_name["tiny-t5"] == "encoder-decoder · seq2seq"
    assert by_name["tiny-gpt2"] == by_name["smollm2-135m"] == "decoder · causal-lm"


def _offered(studio) -> list:
    return [value for _, value in studio.data_panel.task.options]


def test_an_encoder_is_offered_the_classification_task_and_keeps_the_chosen_one(store_path):
    s = Studio(store=store_path, autoload=False, model="minilm-l6", dataset="extract-json")
    assert _offered(s) == ["topic", "extract-json"]  # the fitting task, and the chosen one kept
    s.data_panel.task.value = "topic"
    assert s.controller.values["dataset"] == "topic" and _offered(s) == ["topic"]
    s.model_panel.registry.value = "tiny-llama"  # a decoder cannot train topic: the task follows the model again
    assert s.controller.values["dataset"] == "extract-json" and "topic" not in _offered(s)
    assert s.wait(WAIT)
    assert "dataset" not in s.controller.problems


def test_classification_data_for_a_decoder_is_a_dataset_problem_before_train(store_path):
    s = Studio(store=store_path, **{**TINY, "dataset": "topic"})
    assert s.wait(WAIT)
    assert "topic" not in [t for t in _offered(s) if t != s.controller.values["dataset"]]
    problem = s.controller.problems.get("dataset", "")
    assert "classification task" in problem and "arithmetic" in problem, problem  # names the tasks that fit
    assert s.controller.train() is False


def test_the_adapter_panel_names_a_familys_layers_before_the_model_loads(store_path):
    s = Studio(store=store_path, autoload=False, model="minilm-l6")
    panel = s.adapter_panel
    assert {"query", "value", "attention.output.dense"} <= set(panel.checks) and "q_proj" not in panel.checks
    assert panel.presets.children[0].tooltip == "query, value"  # 'qv' in BERT's names
    assert {n for n, cb in panel.checks.items() if cb.value} == {"query", "value"}  # the default 'qv' preset
    s.controller.set(model="tiny-gpt2")  # not loaded: GPT-2's Conv1D names from the registry
    assert "c_attn" in panel.checks and {n for n, cb in panel.checks.items() if cb.value} == {"c_attn"}
    assert s.wait(WAIT)


def test_choosing_an_encoder_in_the_form_never_dead_ends(store_path):
    """minilm-l6 picked in the dropdown: its task and data follow, it loads (a classifier's labels come from the
    data, or stand-ins), and a refused Train's line and every field message clear when their cause is fixed."""
    s = Studio(store=store_path, autoload=False, model="tiny-llama")
    c = s.controller
    s.model_panel.registry.value = "minilm-l6"
    assert s.wait(WAIT)
    assert c.values["dataset"] == "topic" and c.model_info is not None and c.model_info.name == "minilm-l6"
    assert c.problems == {} and c.model_error == ""
    assert s.model_panel.message("model") == "" and s.data_panel.message("dataset") == ""
    # a task of the wrong kind set from code: the message says what to pick in the form; Train is refused
    c.set(dataset="extract-json")
    assert s.wait(WAIT)
    msg = s.data_panel.message("dataset")
    assert "pick a classification task in the list above, e.g. topic" in msg, msg
    assert c.train() is False and c.status[1].startswith("Cannot train: fix 1 field(s) (dataset)")
    s.data_panel.task.value = "topic"  # the fix clears the field's message and the refusal line
    assert s.wait(WAIT)
    assert s.data_panel.message("dataset") == "" and "Cannot train" not in c.status[1]
    assert s.train_panel.status_text == "Every field is valid now: press Train."


def test_a_failed_load_is_retried_when_the_data_changes(store_path, monkeypatch):
    s = Studio(store=store_path, autoload=False, model="minilm-l6")
    c = s.controller
    c.model_error = "stand-in failure"  # as if the last load failed
    c._validate()
    assert c.problems["model"] == "stand-in failure"
    c.set(dataset="topic-missing.jsonl")  # a change the load depends on (a classifier's labels): load again
    assert s.wait(WAIT)
    assert c.model_error == "" and c.model_info is not None and c.model_info.name == "minilm-l6"
    assert "model" not in c.problems and "dataset" in c.problems  # the missing file is the data's problem
