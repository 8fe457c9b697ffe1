"""``lorakit generate`` and ``lorakit chat`` on tiny-llama runs in a temporary store."""
from __future__ import annotations

import io

import pytest
from playground_support import stored_run

import lorakit
from lorakit.cli.commands import main
from lorakit.store import RunStore


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "runs.db"
    with RunStore(path) as st:
        ids = [stored_run(st, seed=1).run_id, stored_run(st, seed=2).run_id]
    return str(path), ids


def test_generate_prints_every_models_answer_to_every_prompt(runs, capsys):
    path, ids = runs
    assert main(["--store", path, "generate", "--prompt", "Anna is 31.", "--prompt", "Bo is 7.", *ids,
                 "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    want = lorakit.generate(["Anna is 31.", "Bo is 7."], runs=ids, store=path, max_new_tokens=6)
    for prompt, row in want.iterrows():
        assert f"> {prompt}" in out
        assert f"[base (tiny-llama)] {row['base']}\n" in out
        for run_id in ids:
            assert f"[{run_id} (LoRA r4, extract-json)] {row[run_id]}\n" in out


def test_chat_streams_each_model_keeps_its_own_history_and_quits(runs, monkeypatch, capsys):
    path, ids = runs
    monkeypatch.setattr("sys.stdin", io.StringIO("Anna is 31.\nAnd Bo?\n/quit\nnever read\n"))
    assert main(["--store", path, "chat", ids[0], "--no-base", "--max-new-tokens", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("you> ") == 3 and out.count(f"[{ids[0]} (LoRA r4, extract-json)]") == 2
    assert out.count("tokens, first after") == 2 and "base (tiny-llama)" not in out
    # the second turn saw the first: the answer equals the adapter's to the whole conversation
    first = lorakit.generate("Anna is 31.", runs=ids[:1], base=False, store=path, max_new_tokens=5).iloc[0, 0]
    second = "".join(lorakit.stream([{"role": "user", "content": "Anna is 31."},
                                     {"role": "assistant", "content": first},
                                     {"role": "user", "content": "And Bo?"}], run=ids[0], store=path,
                                    max_new_tokens=5)).strip()
    assert second in out.split("you> ")[2]


@pytest.mark.parametrize("args, word", [
    (["generate", "--prompt", "x", "nope"], "runs"),
    (["generate", "--prompt", "x", "--max-new-tokens", "0", "RUN"], "max_new_tokens"),
    (["generate", "--prompt", "word " * 3000, "RUN"], "prompt"),
])
def test_bad_input_is_a_message_naming_the_argument(runs, capsys, args, word):
    path, ids = runs
    args = [ids[0] if a == "RUN" else a for a in args]
    assert main(["--store", path, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lorakit: ") and f"{word}:" in err and "Traceback" not in err
