"""Faults around a real training run: the trainer killed with SIGKILL, the disk full while the adapter
is saved. Each ends with a clear word in the store and no run lost. (A store file from a newer
schema: test_store_files.py; a process killed inside a save: test_store_runs.py; an adapter record
from a newer lorakit: tests/lorakit/test_adapter_base.py.)"""
from __future__ import annotations

import signal

from store_support import run_py

import lorakit
from lorakit.store import ORPHAN_REASON, RunStore

TINY = dict(model="tiny-llama", dataset="arithmetic", batch_size=2, train_examples=8, eval_examples=1, seq_len=64)


def test_a_trainer_killed_with_sigkill_leaves_a_stopped_run_with_its_steps(tmp_path):
    path = tmp_path / "runs.db"
    proc = run_py(f"""
        import os, signal
        import lorakit
        from lorakit.run.events import StepLogged

        def kill_at_step_6(event):  # the store's own sink comes first: steps 1-5 are written, 6 is buffered
            if isinstance(event, StepLogged) and event.step == 6:
                os.kill(os.getpid(), signal.SIGKILL)

        lorakit.train(lorakit.RunConfig(max_steps=8, **{TINY!r}), sinks=[kill_at_step_6], store={str(path)!r})
        """)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with RunStore(path) as s:  # opening the store finds the orphan
        (run,) = s.records()
        assert run.status == "stopped" and run.reason == ORPHAN_REASON
        # StoreSink writes steps five at a time (flush_every): a kill loses at most the four since
        assert [h["step"] for h in run.history] == [1, 2, 3, 4, 5]


def test_a_full_disk_while_saving_the_adapter_keeps_the_run_and_says_so(tmp_path, disk_full_on_adapter_save):
    with RunStore(tmp_path / "runs.db") as store:
        # no checkpoints: the Trainer's would meet the full disk first (and fail the run, resumable from the last)
        run = lorakit.train(lorakit.RunConfig(max_steps=2, checkpoint_every=0, **TINY), store=store)
        assert run.status == "finished" and run.adapter_path is None
        where = store.adapter_dir(run.run_id)
        assert run.reason == (f"adapter: not saved to {str(where)!r}: No space left on device "
                              "(nothing was left half-written)")
        stored = store.load(run.run_id)
    assert stored.status == "finished" and stored.reason == run.reason and len(stored.history) == 2
    assert not where.exists() and not where.with_name(where.name + ".partial").exists()
