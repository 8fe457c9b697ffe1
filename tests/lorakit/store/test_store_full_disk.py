"""A disk that fills during a run: the kernel's own refusal (RLIMIT_FSIZE, with SIGXFSZ ignored, turns
every write past a size into EFBIG, as a full disk turns them into ENOSPC) hits the store mid-run. The run
ends with one reason, the returned record and the stored one agree on status, reason and the steps
actually done, and no traceback reaches stderr."""
from __future__ import annotations

from store_support import run_py

FILL = """
    import os, resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(2) instead of a killed process
    import lorakit
    from lorakit.run.events import StepLogged

    path = {path!r}

    def fill(event):  # after step 2, no file may grow past the store's current size
        if isinstance(event, StepLogged) and event.step == 2:
            size = max(os.path.getsize(f) for f in (path, path + "-wal") if os.path.exists(f))
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

    cfg = lorakit.RunConfig(model="tiny-llama", dataset="arithmetic", seq_len=256, batch_size=2,
                            train_examples=16, eval_examples=1, max_steps=8)
    rec = lorakit.train(cfg, sinks=[fill], store=path)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    stored = lorakit.store.RunStore(path).load(rec.run_id)
    for r in (rec, stored):
        print("RUN", r.status, "|", r.reason, "|", r.steps_done, "|", [h["step"] for h in r.history])
"""


def test_a_full_disk_tells_one_true_story(tmp_path):
    path = str(tmp_path / "runs.db")
    r = run_py(FILL.format(path=path), LORAKIT_STORE=path)
    assert r.returncode == 0, r.stderr[-3000:]
    returned, stored = [line for line in r.stdout.splitlines() if line.startswith("RUN ")]
    assert returned == stored
    status, reason, steps, history = returned[4:].split(" | ")
    assert status == "failed" and reason.startswith("the run store could not be written (")
    assert f"stopped after step {steps}" in reason and 2 <= int(steps) < 8
    assert history == str(list(range(1, int(steps) + 1)))
    assert "Traceback" not in r.stderr
    assert r.stderr.count("could not be written") == 1
