"""Stores that merge: another store's runs (rows and adapter folders) brought in once each; runs
exported to a store file or one archive and merged on the other side; ``compare()`` shows the node."""
from __future__ import annotations

import hashlib

import pandas as pd
import pytest
from store_support import make_record

import lorakit
from lorakit import RunConfig
from lorakit.cli.commands import main
from lorakit.store import RunStore, StoreError, export_runs, merge
from lorakit.store.errors import RunNotFound

TINY = dict(model="tiny-llama", max_steps=2, batch_size=2, train_examples=8, eval_examples=2, seq_len=256,
            learning_rate=1e-3)


def _files(folder) -> dict:
    """Each file of a folder (relative name) -> its sha256: what a copy must keep byte for byte."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    """Store A with runs a1, a2 (real tiny-llama LoRA runs); store B with its own run b1."""
    root = tmp_path_factory.mktemp("stores")
    with RunStore(root / "a.db") as a, RunStore(root / "b.db") as b:
        a1 = lorakit.train(RunConfig(**TINY, name="a1"), store=a).run_id
        a2 = lorakit.train(RunConfig(**TINY, name="a2", rank=4), store=a).run_id
        b1 = lorakit.train(RunConfig(**TINY, name="b1", seed=1), store=b).run_id
    return root, a1, a2, b1


def _table(store) -> pd.DataFrame:
    return lorakit.compare(store=store).sort_values("run_id").reset_index(drop=True)


def test_two_stores_with_an_overlapping_run_merge_into_one(two_stores, tmp_path):
    import shutil

    from safetensors.torch import load_file

    from lorakit.adapters.lora import load_adapter

    root, a1, a2, b1 = two_stores
    for name in ("a.db", "b.db"):
        shutil.copy(root / name, tmp_path / name)
        shutil.copytree(root / name.replace(".db", "_adapters"), tmp_path / name.replace(".db", "_adapters"))
    a_path, b_path = tmp_path / "a.db", tmp_path / "b.db"
    first = merge(a_path, b_path, run_ids=[a2])  # the overlap: B has a2 before the whole of A comes
    assert first.added == [a2]
    union = pd.concat([_table(a_path), _table(tmp_path / "b.db")]).drop_duplicates("run_id")
    a_bytes = a_path.read_bytes()
    result = merge(a_path, b_path)
    assert result.added == [a1] and result.already == [a2] and "1 already here" in str(result)
    assert a_path.read_bytes() == a_bytes  # the source is only read
    with RunStore(b_path) as b:
        assert sorted(b.run_ids()) == sorted([a1, a2, b1]) and len(b) == 3  # every run once
        merged = {r.run_id: r for r in b.records()}
    # compare() of the merged store is the union of the two (every column, every value)
    pd.testing.assert_frame_equal(_table(b_path), union.sort_values("run_id").reset_index(drop=True))
    # the adapters came along byte for byte, into B's own folder, and load onto the base with peft
    for run_id in (a1, a2):
        path = merged[run_id].adapter_path
        assert path == str(tmp_path / "b_adapters" / run_id)
        assert _files(tmp_path / "b_adapters" / run_id) == _files(tmp_path / "a_adapters" / run_id)
        model = load_adapter(lorakit.load_model("tiny-llama").model, path)
        saved = load_file(f"{path}/adapter_model.safetensors")
        loaded = {k: v for k, v in model.state_dict().items() if "lora_" in k}
        assert len(saved) == len(loaded) > 0
        for key, tensor in saved.items():
            match = [v for k, v in loaded.items() if k.replace(".default", "") == key]
            assert len(match) == 1 and bool((match[0] == tensor).all()), key
    # a second merge adds nothing
    again = merge(a_path, b_path)
    assert again.added == [] and sorted(again.already) == sorted([a1, a2])


def test_export_to_one_archive_and_merge_it_from_the_cli(two_stores, tmp_path, capsys):
    import tarfile

    root, a1, a2, _ = two_stores
    archive = tmp_path / "carry.tar.gz"
    assert main(["--store", str(root / "a.db"), "store", "export", a1, a2, "--to", str(archive)]) == 0
    assert f"exported 2 run(s) to {archive}" in capsys.readouterr().out
    with tarfile.open(archive) as tar:  # one file: the store and its run folders
        names = tar.getnames()
    assert "runs.db" in names and f"runs_adapters/{a1}/adapter_model.safetensors" in names
    here = tmp_path / "here.db"
    assert main(["--store", str(here), "store", "merge", str(archive)]) == 0
    assert "merged 2 run(s)" in capsys.readouterr().out
    with RunStore(here) as h:
        assert sorted(h.run_ids()) == sorted([a1, a2])
        assert h.load(a1).history == RunStore(root / "a.db").load(a1).history
    assert _files(tmp_path / "here_adapters" / a1) == _files(root / "a_adapters" / a1)
    # refused with a message: an existing file, an unknown run, a file that is not a store
    assert main(["--store", str(root / "a.db"), "store", "export", a1, "--to", str(archive)]) == 2
    assert "exists; give a new file name" in capsys.readouterr().err
    assert main(["--store", str(root / "a.db"), "store", "export", "nope", "--to", str(tmp_path / "n.db")]) == 2
    assert "no run 'nope'" in capsys.readouterr().err and not (tmp_path / "n.db").exists()
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["--store", str(here), "store", "merge", str(tmp_path / "notes.txt")]) == 2
    assert "not a lorakit run store" in capsys.readouterr().err


def test_export_to_a_store_file(tmp_path):
    with RunStore(tmp_path / "src.db") as src:
        src.save(make_record("r1"))
        src.save(make_record("r2", created_at=1_760_000_100.0))
    out = export_runs(["r2"], tmp_path / "out.db", store=tmp_path / "src.db")
    with RunStore(out) as o:
        assert o.run_ids() == ["r2"] and o.load("r2").history == make_record("r2").history
    with pytest.raises(RunNotFound, match="no run 'zz'"):
        merge(tmp_path / "src.db", tmp_path / "x.db", run_ids=["zz"])


def test_a_running_run_is_left_out_and_the_node_is_shown(tmp_path):
    with RunStore(tmp_path / "src.db") as src:
        src.save(make_record("done", node="worker-7"))
        src.save(make_record("busy", status="running", created_at=1_760_000_100.0))
    result = merge(tmp_path / "src.db", tmp_path / "dst.db")
    assert result.added == ["done"] and result.running == ["busy"] and "still running there" in str(result)
    table = lorakit.compare(store=tmp_path / "dst.db")
    assert "node" in table.columns and table.loc[0, "node"] == "worker-7"
    with pytest.raises(StoreError, match="is not a file"):
        merge(tmp_path / "missing.db", tmp_path / "dst.db")
