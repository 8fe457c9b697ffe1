"""open_store: how every store= argument (train, sweep, compare, the Studio) becomes a RunStore."""
from __future__ import annotations

from pathlib import Path

import pytest
from store_support import make_record

from lorakit.store import RunStore, StoreError, open_store


def test_a_run_store_is_used_as_it_is_and_left_open(store):
    got, opened = open_store(store)
    assert got is store and opened is False
    assert open_store(store, required=True) == (store, False)
    assert not store.closed


@pytest.mark.parametrize("kind", [str, Path])
def test_a_path_opens_a_new_store_the_caller_closes(tmp_path, kind):
    path = tmp_path / "sub" / "runs.db"
    got, opened = open_store(kind(path))
    try:
        assert isinstance(got, RunStore) and opened is True
        assert got.path == path and path.is_file()
        got.save(make_record())
    finally:
        got.close()
    with RunStore(path) as again:
        assert again.run_ids() == ["run-lora-r8"]


def test_none_opens_the_default_store(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_STORE", str(tmp_path / "env.db"))
    got, opened = open_store(None)
    try:
        assert opened is True and got.path == tmp_path / "env.db"
    finally:
        got.close()
    monkeypatch.delenv("LORAKIT_STORE")
    monkeypatch.chdir(tmp_path)
    got, opened = open_store()
    try:
        assert opened is True and got.path == tmp_path / "lorakit_runs.db"
    finally:
        got.close()


def test_false_keeps_nothing_unless_a_store_is_required(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_store(False) == (None, False)
    with pytest.raises(TypeError, match=r"store=False \(keep no runs\) cannot be used here"):
        open_store(False, required=True)
    assert list(tmp_path.iterdir()) == []  # no default store was created


@pytest.mark.parametrize("bad", [42, True, ["runs.db"], object()])
def test_other_kinds_are_refused_naming_what_is_accepted(bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match="store must be a RunStore, a file path or None") as e:
        open_store(bad)
    assert type(bad).__name__ in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_file_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        open_store(tmp_path)
