"""A store written by someone else: stored paths that climb out, records cut or nulled, a folder the user
cannot write. Nothing outside the store is touched, one bad record never hides the rest, and a
read-only store is read."""
from __future__ import annotations

import json
import os
import sqlite3
import warnings
from pathlib import Path

import pytest
from store_support import HERE, make_record

from lorakit.store import DamagedRunsWarning, RunStore, StoreError


def _edit(path: Path, sql: str, *params) -> None:
    """Change the file behind lorakit's back, as a hand edit or a cut write would."""
    c = sqlite3.connect(path)
    c.execute(sql, params)
    c.commit()
    c.close()


# --------------------------------------------------------------------------- stored paths

def test_delete_never_follows_a_stored_path_out_of_the_store(store, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "thesis.tex").write_text("years of work")
    climb = store.adapters_root / ".." / "precious"
    store.save(make_record(run_id="climber", adapter_path=str(climb)))
    with pytest.raises(StoreError, match="outside the store's folder"):
        store.adapter_path_of("climber")
    notes = store.delete("climber")
    assert (outside / "thesis.tex").read_text() == "years of work"
    assert "climber" not in store and len(notes) == 1 and "refused" in notes[0]


def test_delete_removes_a_link_in_the_adapter_folder_not_its_target(store, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    store.adapters_root.mkdir()
    store.adapter_dir("linked").symlink_to(target, target_is_directory=True)
    store.save(make_record(run_id="linked", adapter_path=str(store.adapter_dir("linked"))))
    store.delete("linked")
    assert not store.adapter_dir("linked").is_symlink()
    assert (target / "keep.txt").read_text() == "keep"


def test_an_adapter_path_inside_the_store_is_given_resolved(store):
    inside = store.adapter_dir("ok")
    store.save(make_record(run_id="ok", adapter_path=str(inside)))
    assert store.adapter_path_of("ok") == inside.resolve()


# --------------------------------------------------------------------------- damaged records

DAMAGE = {
    "cut record": ("UPDATE runs SET record = substr(record, 1, 40) WHERE run_id = ?", "the record"),
    "null record": ("UPDATE runs SET record = 'null' WHERE run_id = ?", "JSON null"),
    "cut config": ("UPDATE runs SET config = '{\"model\": ' WHERE run_id = ?", "the config"),
    "cut step extra": ("UPDATE steps SET extra = '{' WHERE run_id = ? AND step = 3", "step 3"),
    "bad memory extra": ("UPDATE memory SET extra = '[1' WHERE run_id = ? AND kind = 'measured'", "measured memory"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_one_damaged_record_is_named_and_the_others_are_listed(tmp_path, kind):
    import lorakit

    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        for rid in ("a", "bad", "c"):
            s.save(make_record(run_id=rid, created_at=1e9 + len(s)))
    sql, words = DAMAGE[kind]
    _edit(path, sql, "bad")
    with RunStore(path) as s:
        with pytest.warns(DamagedRunsWarning) as w:
            listed = s.records()
        assert [r.run_id for r in listed] == ["a", "c"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DamagedRunsWarning)  # said above
            table = lorakit.compare(store=s)  # the table's read needs no step extras: it may keep that run
        assert {"a", "c"} <= set(table["run_id"]) and len(table) >= 2
        said = str(w[0].message)
        assert str(path) in said and "run bad" in said and words in said
        (d,) = s.check()
        assert d.run_id == "bad" and d.store == path and words in d.problem
        notes = s.repair()
        assert notes and "bad" in notes[0]
        assert s.check() == []
        fixed = s.load("bad")  # readable again, with what the store kept
        assert fixed.status == "finished" and len(fixed.history) == 12


def test_repair_drop_removes_only_the_damaged_run(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        s.save(make_record(run_id="a"))
        s.save(make_record(run_id="bad", created_at=2e9))
    _edit(path, "UPDATE runs SET record = 'null', config = 'null' WHERE run_id = 'bad'")
    with RunStore(path) as s:
        assert [n.split(":")[0] for n in s.repair(drop=True)] == ["run bad"]
        assert s.run_ids() == ["a"] and s.check() == []


def test_cli_store_check_repair_and_compare_name_the_damaged_run(tmp_path, capsys):
    from lorakit.cli.commands import main

    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        s.save(make_record(run_id="good"))
        s.save(make_record(run_id="bad", created_at=2e9))
    _edit(path, "UPDATE runs SET record = substr(record, 1, 9) WHERE run_id = 'bad'")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLI names it in a line of its own, no Python warning
        assert main(["--store", str(path), "compare"]) == 0
    out, err = capsys.readouterr()
    assert "good" in out and f"{path}: run bad" in err
    assert main(["--store", str(path), "store", "check"]) == 1
    assert "damaged: " in capsys.readouterr().out
    assert main(["--store", str(path), "store", "repair"]) == 0
    assert main(["--store", str(path), "store", "check"]) == 0
    assert "2 readable run(s), 0 damaged" in capsys.readouterr().out


# --------------------------------------------------------------------------- read-only and damaged files

READ_ONLY_READER = """
    import os, sys, warnings
    sys.path.insert(0, {here!r})
    import lorakit
    from lorakit.store import RunStore, StoreError, StoreSink
    s = RunStore({path!r})
    assert s.read_only, s.read_only_reason
    print("runs", s.run_ids(), "reason", s.read_only_reason)
    print("compare", list(lorakit.compare(store=s)["run_id"]))
    lorakit.export_html(s, {report!r})
    try:
        StoreSink(s)
    except StoreError as e:
        print("train:", e)
    s.close()
"""
# Root writes through permission bits (CAP_DAC_OVERRIDE); the tests run as root here. setpriv (util-linux)
# starts the reader as root *without* that capability, so the kernel applies the folder's and the file's
# permission bits to it, as to any user: a real read-only place, not a patched os.access.
NO_OVERRIDE = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
               "--bounding-set=-dac_override,-dac_read_search"]


def _as_a_user(code: str):
    import shutil
    import subprocess
    import sys
    import textwrap

    from store_support import REPO

    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root ignores permission bits and setpriv (util-linux) is not installed")
        prefix = NO_OVERRIDE
    return subprocess.run([*prefix, sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=str(REPO), timeout=120)


def test_a_store_the_user_cannot_write_is_read_and_left_as_it_was(tmp_path):
    """A shared course folder: the folder is 0555 and the file 0444, and the reader is refused every
    write by the kernel. It reads, compares and exports; training into it is refused with a clear word;
    nothing appears beside the file."""
    shared, out = tmp_path / "course", tmp_path / "out"
    shared.mkdir()
    out.mkdir()
    path = shared / "runs.db"
    with RunStore(path) as s:
        s.save(make_record(run_id="lecture-1"))
    path.chmod(0o444)
    shared.chmod(0o555)
    try:
        r = _as_a_user(READ_ONLY_READER.format(here=str(HERE), path=str(path), report=str(out / "r.html")))
        assert r.returncode == 0, r.stderr
        assert "runs ['lecture-1'] reason the file is read-only" in r.stdout
        assert "compare ['lecture-1']" in r.stdout
        assert "train: this store is read-only" in r.stdout and "pass another store to train" in r.stdout
        assert "corrupted" not in r.stdout + r.stderr
        assert (out / "r.html").exists()
        assert sorted(p.name for p in shared.iterdir()) == ["runs.db"]  # no -wal, no -shm
        probe = _as_a_user(f"open({str(shared / 'x')!r}, 'w')")
        assert probe.returncode != 0 and "Permission denied" in probe.stderr  # the place really is read-only
    finally:
        shared.chmod(0o755)
        path.chmod(0o644)


def test_a_damaged_store_file_is_refused_and_nothing_is_left_beside_it(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        for i in range(20):
            s.save(make_record(run_id=f"r{i}", steps=40))
    data = bytearray(path.read_bytes())
    for off in range(4096, len(data), 4096):  # every page after the first: garbage
        data[off:off + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as e:
        RunStore(path).records()
    assert str(path) in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


def test_explicit_read_only_creates_nothing_and_refuses_writes(tmp_path):
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        s.save(make_record(run_id="a"))
    with RunStore(path, read_only=True) as s:
        assert [r.run_id for r in s.records()] == ["a"]
        with pytest.raises(StoreError, match="this store is read-only"):
            s.save(make_record(run_id="b"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]
    assert json.loads(json.dumps(s.read_only_reason)) == "opened read-only"
