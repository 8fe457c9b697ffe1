"""The notebooks in notebooks/: committed clean, and every one executes top to bottom.

Execution runs each notebook with nbclient in a temporary copy of notebooks/ (so run stores and
adapters land there), with ``LORAKIT_FAST=1`` unless the caller set it. It fails on an error in
any cell, on library warnings or progress-bar debris in any output, and, for the workshop
notebooks, on an exercise check that is not green. Select or skip with ``-m notebooks`` /
``-m "not notebooks"``.
"""
from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
WORKSHOP = (
    "02_lora_from_the_math", "03_lora_vs_qlora_vs_full", "04_rank_and_targets",
    "05_quantization_explained", "06_memory_planner", "07_adapters", "08_gpt_bert_t5", "09_beyond_lora",
)
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
# Library warnings and tqdm bars must not reach a learner's screen.
FORBIDDEN = ("Warning", "warn(", "it/s", "%|")
# torch's C++ side logs to file descriptor 2 as "[W1207 20:37:17.572635138 CPUAllocator.cpp:245] ...": a kernel
# puts that in the cell too
CPP_LOG = re.compile(r"\[[WE]\d{4} \d{2}:\d{2}:\d{2}")
# Outputs that are data for a renderer, not text a person reads.
SKIPPED_MIMETYPES = ("application/vnd.plotly.v1+json", "image/png", "image/jpeg", "image/svg+xml",
                     "application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")
CELL_TIMEOUT_S = 1800

with warnings.catch_warnings():  # the marker is registered by no conftest of ours: keep collection quiet
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    notebooks_mark = pytest.mark.notebooks


def _ids(paths):
    return [p.stem for p in paths]


def test_workshop_notebooks_exist():
    present = {p.stem for p in NOTEBOOKS}
    missing = [n for n in WORKSHOP if n not in present]
    assert not missing, f"missing workshop notebooks: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    spec = nb.metadata.get("kernelspec") or {}
    assert spec.get("name") == "python3" and spec.get("display_name"), \
        f"{path.name}: needs a python3 kernelspec in its metadata (else JupyterLab asks for a kernel)"
    if path.stem in WORKSHOP:
        assert spec == KERNELSPEC, f"{path.name}: kernelspec must be {KERNELSPEC}"
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs or execution counts; clear them"


def _output_texts(output) -> list[str]:
    kind = output.get("output_type")
    if kind == "stream":
        return [output.get("text", "")]
    if kind == "error":
        return [f"{output.get('ename')}: {output.get('evalue')}"]
    texts = []
    for mime, value in output.get("data", {}).items():
        if mime in SKIPPED_MIMETYPES:
            continue
        texts.append(value if isinstance(value, str) else "".join(value) if isinstance(value, list) else str(value))
    return texts


@notebooks_mark
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes_cleanly(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    workdir = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOK_DIR, workdir, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.db", "*.db-*"))
    monkeypatch.setenv("LORAKIT_FAST", os.environ.get("LORAKIT_FAST") or "1")
    monkeypatch.delenv("LORAKIT_STORE", raising=False)  # default store: lorakit_runs.db in the work dir
    nb = nbformat.read(workdir / path.name, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, startup_timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    failure = None
    try:
        client.execute()
    except CellExecutionError as exc:
        failure = str(exc)
    if failure is not None:  # outside the except block: one traceback in the report, not two
        pytest.fail(f"{path.name}: a cell raised:\n{failure[-4000:]}")

    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            for text in _output_texts(output):
                for bad in FORBIDDEN:
                    if bad in text:
                        at = text.index(bad)
                        problems.append(f"cell {i}: {bad!r} in output: ...{text[max(0, at - 150):at + 150]}...")
                if CPP_LOG.search(text):
                    problems.append(f"cell {i}: a C++ log line in output: {text.strip()[:300]}")
                if path.stem in WORKSHOP and "❌" in text:
                    problems.append(f"cell {i}: an exercise check is red: {text.strip()[:300]}")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)

    if path.stem in WORKSHOP:
        all_text = "".join(t for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                           for t in _output_texts(o))
        assert "✅" in all_text, f"{path.name}: no exercise check ran green"
