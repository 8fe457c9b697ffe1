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


def test_the_final_status_shows_only_after_every_column_shows_its_final_state(runs):
    """The page gets the columns' last redraw before "Done.": with the throttle's trailing redraw held off
    (a 60 s interval), the heads must still read "done" by the time the status says so."""
    from lorakit.widgets import Playground

    path, ids, _, _ = runs
    pg = Playground(store=path, model="tiny-llama", interval=60)
    pg.columns_pick.value = ("base", ids[0])
    pg.max_new_tokens.value = 8
    pg.prompt.value = PROMPT
    heads_at_done = []
    pg.status.observe(lambda ch: heads_at_done.append([pg._cells[n][0].value for n in ("base", ids[0])])
                      if "Done." in ch["new"] else None, names="value")
    pg.click_generate()
    assert pg.play.wait(WAIT) and "Done." in pg.status_text
    assert heads_at_done and all(">done<" in h for h in heads_at_done[0]), heads_at_done


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
    from lorakit.widgets.playground import ColumnState, Turn

    path, _, _, _ = runs
    pg = _panel(path)
    pg.play.columns = [ColumnState("base", "<i>label</i>", text="<script>alert(1)</script>")]
    pg.play.turns, pg.play.asked = [Turn("<b>q</b>", {"base": "<img src=x>"})], "<u>now</u>"
    pg._redraw_columns()
    head, body, _, talk = pg._cells["base"]
    assert "<script>" not in body.value and "&lt;script&gt;" in body.value and "&lt;i&gt;" in head.value
    assert "<img" not in talk.value and "<u>" not in talk.value and "&lt;b&gt;q" in talk.value


def test_the_studio_has_a_playground(runs):
    from lorakit.widgets import Studio

    path, ids, _, _ = runs
    s = Studio(store=path, autoload=False, model="tiny-llama")
    assert s.playground_panel in s.children and s.playground_panel.play is s.controller.playground
    assert [n for _, n in s.playground_panel.columns_pick.options] == ["base", *ids]


def _spy_loads(monkeypatch) -> list:
    import lorakit.models.loading as loading

    calls, real = [], loading.load_base

    def counting(base, *args, **kwargs):
        calls.append(base.model)
        return real(base, *args, **kwargs)

    monkeypatch.setattr(loading, "load_base", counting)
    return calls


def _generate(pg, prompt):
    pg.prompt.value = prompt
    pg.click_generate()
    assert pg.play.wait(WAIT) and "Done." in pg.status_text, pg.status_text


def test_each_column_keeps_its_conversation_and_the_chat_template_gets_all_of_it(runs, monkeypatch):
    import lorakit.data

    path, ids, _, _ = runs
    rendered, real = [], lorakit.data.prompt_text
    monkeypatch.setattr(lorakit.data, "prompt_text", lambda tok, msgs: rendered.append(real(tok, msgs)) or
                        rendered[-1])
    pg = _panel(path)
    pg.columns_pick.value = tuple(ids)  # the adapters: random, they always say something (the base may not)
    pg.max_new_tokens.value = 6
    _generate(pg, PROMPT)
    first = {c.name: c.text.strip() for c in pg.play.columns}
    assert all(first.values())
    follow = "And how old is she?"
    rendered.clear()
    _generate(pg, follow)
    assert len(rendered) == 2 and all(PROMPT in t and follow in t for t in rendered)
    assert first[ids[0]] in rendered[0] and first[ids[1]] in rendered[1]  # each column its own answers
    for name in ids:
        conv = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": first[name]},
                {"role": "user", "content": follow}]
        assert pg.play.columns[[c.name for c in pg.play.columns].index(name)].messages == conv
        # the whole history went through the template: the same answer as the engine gives to the conversation
        want = lorakit.generate([conv], runs=[name], store=path, max_new_tokens=6, base=False)
        assert pg.answer_text(name) == want.iloc[0][name]
        shown = pg.conversation_text(name)
        assert shown.index(PROMPT) < shown.index(first[name]) < shown.index(follow)
    pg.click_clear()
    assert pg.play.turns == [] and pg.play.columns == [] and pg._cells == {} and "cleared" in pg.status_text
    rendered.clear()
    _generate(pg, follow)
    assert pg.conversation_text(ids[0]) == f"you: {follow}"
    assert len(rendered) == 2 and not any(PROMPT in t for t in rendered)


def test_changing_the_columns_attaches_adapters_without_reloading_the_base(runs, monkeypatch):
    path, ids, gpt2, _ = runs
    loads = _spy_loads(monkeypatch)
    pg = _panel(path)
    pg.columns_pick.value = ("base", ids[0])
    pg.max_new_tokens.value = 4
    _generate(pg, PROMPT)
    assert loads == ["tiny-llama"] and ids[0] in pg.memory.value and ids[1] not in pg.memory.value
    one = pg.play._session.memory().total
    pg.columns_pick.value = ("base", *ids)
    _generate(pg, PROMPT)
    assert loads == ["tiny-llama"] and ids[0] in pg.memory.value and ids[1] in pg.memory.value
    assert pg.play._session.memory().total > one  # the second adapter's bytes, the base still once
    pg.columns_pick.value = (ids[1],)
    _generate(pg, PROMPT)
    assert loads == ["tiny-llama"] and ids[0] not in pg.memory.value and ids[1] in pg.memory.value
    assert pg.play._session.memory().total == one  # the first adapter's tensors are gone
    conv = pg.play.columns[0].messages  # the conversation so far: its answer in the second Generate too
    assert len(conv) == 3
    want = lorakit.generate([conv], runs=[ids[1]], store=path, max_new_tokens=4, base=False)
    assert pg.answer_text(ids[1]) == want.iloc[0][ids[1]]  # the adapter attached later answers as itself
    before = len(loads)  # generate() above loaded its own session
    pg.base.value = "tiny-gpt2"  # another base: loaded anew
    pg.columns_pick.value = ("base", gpt2)
    _generate(pg, PROMPT)
    assert loads[before:] == ["tiny-gpt2"] and gpt2 in pg.memory.value
