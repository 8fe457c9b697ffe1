"""Checkpoints and resume on tiny-llama: a killed run and a stopped full fine-tuning go on exactly where they
were (losses and weights equal to an uninterrupted run's), as the same run; and the store's side of it."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lorakit
from lorakit.cli.commands import main
from lorakit.run import events as ev
from lorakit.store import RunStore

# 24 examples at batch 2: 12 steps an epoch, so a resume at step 10 also crosses into the second epoch
RUN = dict(model="tiny-llama", dataset="arithmetic", seq_len=256, batch_size=2, train_examples=24,
           eval_examples=2, max_steps=24, learning_rate=1e-3, checkpoint_every=5)

# the killed run, in a process of its own: steps written to the store as they come, slowed from step 11 and held at
# step 13, so that the parent's SIGKILL lands between two checkpoints however loaded the machine (how long a step
# takes changes no number)
CHILD = """
import sys, time
import lorakit, lorakit.store.sink
from lorakit.run import events as ev
lorakit.store.sink.FLUSH_EVERY = 1
def slow(e):
    if isinstance(e, ev.StepLogged) and e.step >= 11:
        time.sleep(600 if e.step >= 13 else 0.3)
lorakit.train(lorakit.RunConfig(**%r), sinks=[slow], store=sys.argv[1])
"""


def _losses(rec, first=1):
    return {h["step"]: h["loss"] for h in rec.history if h["step"] >= first}


def _assert_same_losses(got, want, first):
    a, b = _losses(got, first), _losses(want, first)
    assert a.keys() == b.keys() and a
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5), f"step {step}"


def _assert_same_weights(path_a, path_b, name="adapter_model.safetensors"):
    a, b = load_file(str(Path(path_a) / name)), load_file(str(Path(path_b) / name))
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def _max_step(db: Path) -> int:
    try:
        conn = sqlite3.connect(db.absolute().as_uri() + "?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COALESCE(MAX(step), 0) FROM steps").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created yet


def test_a_run_killed_at_step_12_resumes_exactly_as_the_same_run(tmp_path):
    db = tmp_path / "runs.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD % RUN, str(db)], env=dict(os.environ))
    try:
        while _max_step(db) < 12:
            assert child.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    with RunStore(db) as store:  # opening it marks the killed run stopped
        (killed,) = store.records()
        assert killed.status == "stopped" and killed.steps_done >= 12
        folder = store.adapter_dir(killed.run_id) / "checkpoints"
        assert (folder / "checkpoint-10").is_dir() and not (folder / "checkpoint-15" / "trainer_state.json").exists()
        memory = killed.memory.as_dict()
    rec = lorakit.resume(killed.run_id, store=db)
    assert rec.status == "finished", rec.reason
    assert rec.run_id == killed.run_id and rec.resumed_at == [10]
    want = lorakit.train(lorakit.RunConfig(**RUN), store=tmp_path / "plain.db")
    _assert_same_losses(rec, want, first=11)
    _assert_same_weights(rec.adapter_path, want.adapter_path)
    with RunStore(db) as store:  # the same run, its history extended: steps 11.. trained again replace the killed ones
        (stored,) = store.records()
        assert stored.run_id == killed.run_id and stored.status == "finished"
        assert [h["step"] for h in stored.history] == list(range(1, 25))
        assert stored.memory.as_dict() == memory  # measured on the first steps; not measured again
        # the newest checkpoint_keep (2) are kept; the one at the end lets a larger max_steps go on
        assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-20", "checkpoint-24"]
        assert stored.checkpoint_step == 24 and stored.checkpoint_bytes > 0
        assert stored.adapter_bytes < stored.checkpoint_bytes  # the adapter alone, not its checkpoints


def test_full_fine_tuning_stopped_by_request_resumes_exactly(tmp_path):
    cfg = lorakit.RunConfig(**dict(RUN, method="full", learning_rate=1e-4, max_steps=12))
    stop = threading.Event()

    def stop_at_7(e):
        if isinstance(e, ev.StepLogged) and e.step == 7:
            stop.set()

    stopped = lorakit.train(cfg, sinks=[stop_at_7], store=tmp_path / "runs.db", stop=stop)
    assert stopped.status == "stopped" and stopped.steps_done == 8
    assert stopped.checkpoint_step == 8  # saved at the step it stopped on, not only at 5
    with RunStore(tmp_path / "runs.db") as store:
        ckpt = store.adapter_dir(stopped.run_id) / "checkpoints"
    assert (ckpt / "checkpoint-8" / "model.safetensors").is_file()  # full fine-tuning: every weight
    assert stopped.checkpoint_bytes > 3 * (ckpt / "checkpoint-8" / "model.safetensors").stat().st_size  # + AdamW
    rec = lorakit.resume(stopped.run_id, store=tmp_path / "runs.db")
    assert rec.status == "finished" and [h["step"] for h in rec.history] == list(range(1, 13))
    want = lorakit.train(cfg, store=tmp_path / "plain.db")
    _assert_same_losses(rec, want, first=9)
    with RunStore(tmp_path / "plain.db") as store:
        plain = store.adapter_dir(want.run_id) / "checkpoints"
    _assert_same_weights(ckpt / "checkpoint-12", plain / "checkpoint-12", name="model.safetensors")


# --- no training: refusals, the CLI, the store's cleanup ---------------------------------------------------------

def _stored_run(store, status="stopped", steps=12, checkpoints=(5, 10), complete=True):
    """A stored tiny-llama run with checkpoint folders (only their trainer_state.json: enough to be found)."""
    rec = lorakit.RunRecord(config=lorakit.RunConfig(**RUN), status=status, created_at=time.time(),
                            history=[dict(step=s, loss=1.0, learning_rate=1e-3, tokens_per_s=1.0, elapsed_s=float(s),
                                          grad_norm=None) for s in range(1, steps + 1)])
    store.save(rec)
    for s in checkpoints:
        c = store.adapter_dir(rec.run_id) / "checkpoints" / f"checkpoint-{s}"
        c.mkdir(parents=True)
        if complete or s != checkpoints[-1]:
            (c / "trainer_state.json").write_text(json.dumps({"global_step": s}))
    return rec


def test_config_fields_name_themselves():
    with pytest.raises(lorakit.ConfigError) as e:
        lorakit.RunConfig(model="tiny-llama", checkpoint_every=-1, checkpoint_keep=0)
    assert set(e.value.problems) == {"checkpoint_every", "checkpoint_keep"}
    assert "checkpoint_keep must be an integer >= 1" in e.value.problems["checkpoint_keep"]
    assert lorakit.RunConfig(model="tiny-llama", checkpoint_every=0).checkpoint_every == 0


def test_what_cannot_be_resumed_says_why(tmp_path):
    from lorakit.training.resuming import resume_point, why_not

    with RunStore(tmp_path / "runs.db") as store:
        ok = _stored_run(store)
        assert why_not(ok, store) == "" and resume_point(ok, store).name == "checkpoint-10"
        half = _stored_run(store, checkpoints=(5, 10), complete=False)  # killed while writing checkpoint-10
        assert resume_point(half, store).name == "checkpoint-5"
        none = _stored_run(store, checkpoints=())
        assert "no checkpoint" in why_not(none, store)
        running = _stored_run(store, status="running")
        assert "still running" in why_not(running, store)
        finished = _stored_run(store, status="finished", steps=24, checkpoints=(24,))
        with pytest.raises(lorakit.ResumeError, match="max_steps above that"):
            lorakit.resume(finished.run_id, store=store)
        with pytest.raises(lorakit.ResumeError, match="above the checkpoint's step 10"):
            lorakit.resume(ok.run_id, max_steps=8, store=store)


def test_cli_resume_takes_only_max_steps(tmp_path, capsys):
    with RunStore(tmp_path / "runs.db") as store:
        rec = _stored_run(store)
    assert main(["--store", str(tmp_path / "runs.db"), "train", "--resume", rec.run_id, "--rank", "4"]) == 2
    assert "only --max-steps may change (remove --rank)" in capsys.readouterr().err
    assert main(["--store", str(tmp_path / "runs.db"), "train", "--resume", "nosuchrun"]) == 2


def test_the_store_deletes_repairs_and_carries_checkpoints(tmp_path, capsys):
    from lorakit.store.merge import export_runs, merge

    db = tmp_path / "runs.db"
    with RunStore(db) as store:
        keep, gone, half = _stored_run(store), _stored_run(store), _stored_run(store, complete=False)
        orphan = store.adapter_dir("0rphan0rphan") / "checkpoints" / "checkpoint-5"
        orphan.mkdir(parents=True)
        store.delete(gone.run_id)  # the run folder goes, checkpoints and all
        assert not store.adapter_dir(gone.run_id).exists()
        leftovers = {p.name: why for p, why in store.leftover_checkpoints()}
        assert leftovers == {"checkpoint-10": "a checkpoint cut short while it was written",
                             "checkpoints": "checkpoints of a run this store does not have"}
    assert main(["--store", str(db), "store", "check"]) == 0
    assert capsys.readouterr().out.count("leftover checkpoint: ") == 2
    assert main(["--store", str(db), "store", "repair"]) == 0
    with RunStore(db) as store:
        assert store.leftover_checkpoints() == [] and not orphan.exists()
        assert (store.adapter_dir(half.run_id) / "checkpoints" / "checkpoint-5").is_dir()
    # merge carries the checkpoints by default (the run resumes there); export can leave them out
    with_ck, without = tmp_path / "with.db", tmp_path / "without.tar.gz"
    merge(db, with_ck, [keep.run_id])
    with RunStore(with_ck) as other:
        from lorakit.training.resuming import why_not

        assert why_not(other.load(keep.run_id), other) == ""
    export_runs([keep.run_id], without, store=db, checkpoints=False)
    merge(without, tmp_path / "there.db")
    with RunStore(tmp_path / "there.db") as there:
        assert "no checkpoint" in why_not(there.load(keep.run_id), there)
