"""The Playground panel headless: values set and buttons clicked in Python, as in a notebook."""
from __future__ import annotations

import threading

import pytest
from playground_support import stored_run  # tests/support: the engine tests' stored runs

import lorakit
from lorakit.store import RunStore

WAIT = 600  # seconds; generous for a loaded CI machine, never asserted on
PROMPT = "Anna is 31 and lives in Oslo."


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pgw") / "runs.db"
    with RunStore(path) as st:
        ids = [stored_run(st, seed=1).run_id, stored_run(st, seed=2).run_id]
        gpt2 = stored_run(st, model="tiny-gpt2", targets=("c_attn",)).run_id
        full = stored_run(st, method="full").run_id
    return path, ids, gpt2, full


def _panel(path):
    from lorakit.widgets import Playground

    return Playground(store=path, model="tiny-llama")


def test_generate_fills_every_chosen_column_with_its_models_answer(runs):
    path, ids, gpt2, full = runs
    pg = _panel(path)
    assert [n for _, n in pg.columns_pick.options] == ["base", *ids]
    unavailable = pg.unavailable.value
    assert gpt2 in unavailable and "tiny-gpt2" in unavailable
    assert full in unavailable and "full fine-tuning" in unavailable
    pg.columns_pick.value = ("base", ids[1])
    pg.max_new_tokens.value = 6
    pg.prompt.value = PROMPT
    pg.click_generate()
    assert pg.play.wait(WAIT)
    want = lorakit.generate(PROMPT, runs=[ids[1]], store=path, max_new_tokens=6)
    assert pg.answer_text("base") == want.iloc[0]["base"] and pg.answer_text(ids[1]) == want.iloc[0][ids[1]]
    assert "Done." in pg.status_text and pg.stop_button.disabled is not False
    assert "(once)" in pg.memory.value and ids[1] in pg.memory.value and ids[0] not in pg.memory.value
    foot = pg._cells[ids[1]][2].value
    assert "tokens" in foot and "first after" in foot and "tok/s" in foot
    pg.controller.close() if hasattr(pg.controller, "close") else None


def test_stop_ends_the_answer_and_skips_the_columns_not_started(runs):
    path, ids, _, _ = runs
    pg = _panel(path)
    pg.columns_pick.value = ("base", *ids)
    pg.max_new_tokens.value = 400
    pg.prompt.value = PROMPT
    pressed = threading.Event()

    def press(name):
        if name == ids[0] and pg.play.columns[1].text and not pressed.is_set():
            pressed.set()
            pg.click_stop()

    pg.controller.on("playground_piece", press)
    pg.click_generate()
    assert pg.play.wait(WAIT)
    states = {c.name: c.state for c in pg.play.columns}
    assert pressed.is_set()  # the first adapter wrote something, and Stop was pressed then
    assert states[ids[0]] == "stopped" and states[ids[1]] == "stopped"
    assert pg.play.columns[2].text == "" and "Stopped." in pg.status_text
    assert pg.play.columns[1].stats.tokens < 400
    assert not pg.play.running and not pg.generate_button.disabled


def test_bad_settings_and_an_empty_prompt_are_said_in_the_panel_and_nothing_runs(runs):
    path, _, _, _ = runs
    pg = _panel(path)
    pg.max_new_tokens.value = 0
    assert "max_new_tokens" in pg.status_text
    pg.prompt.value = PROMPT
    pg.click_generate()
    assert not pg.play.running and pg.play.columns == [] and "max_new_tokens" in pg.status_text
    pg.max_new_tokens.value = 4
    pg.prompt.value = "  "
    pg.click_generate()
    assert not pg.play.running and "prompt" in pg.status_text


def test_a_failure_on_the_job_thread_is_said_in_the_panel(runs):
    path, _, _, _ = runs
    pg = _panel(path)
    pg.columns_pick.value = ("base",)
    pg.prompt.value = "word " * 3000  # longer than tiny-llama's context
    pg.click_generate()
    assert pg.play.wait(WAIT)
    assert "Generate failed" in pg.status_text and "prompt" in pg.status_text
    assert pg.play.columns[0].state == "failed" and not pg.play.running


def test_user_and_model_text_is_escaped(runs):
    from lorakit.widgets.playground import ColumnState

    path, _, _, _ = runs
    pg = _panel(path)
    pg.play.columns = [ColumnState("base", "<i>label</i>", text="<script>alert(1)</script>")]
    pg._redraw_columns()
    head, body, _ = pg._cells["base"]
    assert "<script>" not in body.value and "&lt;script&gt;" in body.value and "&lt;i&gt;" in head.value


def test_the_studio_has_a_playground(runs):
    from lorakit.widgets import Studio

    path, ids, _, _ = runs
    s = Studio(store=path, autoload=False, model="tiny-llama")
    assert s.playground_panel in s.children and s.playground_panel.play is s.controller.playground
    assert [n for _, n in s.playground_panel.columns_pick.options] == ["base", *ids]
