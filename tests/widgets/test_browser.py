"""The Studio in a real browser: JupyterLab + headless Debian chromium driven by playwright.

Runs notebooks/01_studio.ipynb as a user would, on a laptop's screen (1280 x 800, the file browser open):
run all cells and find Train, the live loss and the memory chart without scrolling; train LoRA
on the default model until three loss points are on the live chart, press Stop; switch the base to
NF4 and do the same for QLoRA; then read both runs in the memory chart and the run table; Delete asks
before deleting; and choosing minilm-l6 in the form, nothing typed, trains a short run to the end. Saves a screenshot
in the test's tmp dir, and to docs/studio.png (the README's picture)
when LORAKIT_UPDATE_SCREENSHOT=1, so an ordinary test run leaves the checkout untouched. A second test
starts a two-trial sweep from the Sweep panel (tiny-llama, three steps) and sees both rows finish and
land in the Compare table.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "01_studio.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MS = 1000
LONG = 600 * MS  # model conversion, kernel start and imports on a loaded 2-core machine

# JS: the live plotly charts of the page, as {title, n, points, bars}
PLOTS_JS = """
() => Array.from(document.querySelectorAll('.lorakit-studio .js-plotly-plot')).map(gd => ({
    title: (gd.layout && gd.layout.title && (gd.layout.title.text || gd.layout.title)) || '',
    traces: (gd.data || []).map(t => ({name: t.name || '', n: (t.x || []).length,
                                        y: Array.from(t.y || []).filter(v => v !== null)})),
    bars: gd.querySelectorAll('g.trace.bars path').length,
    points: gd.querySelectorAll('g.scatterlayer g.trace g.points path').length,
}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need_browser():
    """Skip where the browser stack is missing, unless LORAKIT_REQUIRE_BROWSER=1 (CI): then fail."""
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} not found: install Debian chromium (scripts/setup.sh --system does)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "the playwright Python package is not installed (pip install -e .[test])"
    elif shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        missing = "jupyterlab is not installed next to this Python (pip install -e .[test])"
    if missing and os.environ.get("LORAKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"LORAKIT_REQUIRE_BROWSER=1 but {missing}")
    if missing:
        pytest.skip(missing)


def test_a_missing_browser_fails_when_required(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("LORAKIT_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="LORAKIT_REQUIRE_BROWSER=1 but /nonexistent/chromium"):
        _need_browser()
    monkeypatch.delenv("LORAKIT_REQUIRE_BROWSER")
    with pytest.raises(pytest.skip.Exception):
        _need_browser()


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free port, rooted in a temp dir holding a copy of the notebook."""
    _need_browser()
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = _free_port()
    env = dict(os.environ, LORAKIT_STORE=str(root / "lorakit_runs.db"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), PYTHONUNBUFFERED="1")
    cmd = [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--ServerApp.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={root}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                log = (tmp_path / "jupyterlab.log").read_text()[-3000:]
                pytest.fail(f"jupyter lab exited ({proc.returncode}): {log}")
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("jupyter lab did not answer within 300 s")
                time.sleep(1)
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _plots(page) -> list:
    return page.evaluate(PLOTS_JS)


def _wait_until(page, condition, what: str) -> None:
    deadline = time.monotonic() + LONG / MS
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not render"
        page.wait_for_timeout(500)


def _loss_points(page, label: str) -> int:
    """Train-loss points on the live chart once it shows the run ``label`` (0 before)."""
    for p in _plots(page):
        if str(p["title"]) == f"Loss · {label}":
            return len(p["traces"][0]["y"]) if p["traces"] else 0
    return 0


def _train_three_points_then_stop(page, studio, label: str) -> None:
    studio.get_by_role("button", name="Train", exact=True).click()
    deadline = time.monotonic() + LONG / MS
    while _loss_points(page, label) < 3:
        status = page.locator(".lorakit-studio .lorakit-status").first.inner_text()
        assert "failed" not in status, status
        assert time.monotonic() < deadline, f"no 3 loss points for {label}; status: {status}"
        page.wait_for_timeout(500)
    # the curve is drawn, not only in the data
    assert page.locator(".lorakit-studio .js-plotly-plot g.scatterlayer path.js-line").count() >= 1
    # the Train panel's Stop (the Playground below has a Stop of its own, for answers)
    studio.locator("button[title^='End the run after the current step']").click()
    page.wait_for_selector(f".lorakit-studio .lorakit-runs-table tr:has-text('{label}') td:has-text('stopped')",
                           timeout=LONG)
    page.wait_for_selector(".lorakit-studio .lorakit-status-warn:has-text('stopped after step')", timeout=LONG)
    status = page.locator(".lorakit-studio .lorakit-status").first.inner_text()
    assert "stopped after step" in status and "kept" in status, status


# JS: the box of the Train button and of the live loss and memory charts (page pixels), as a user sees them
BOXES_JS = """
() => {
  const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
                      return {top: r.top, left: r.left, bottom: r.bottom, right: r.right}; };
  const studio = document.querySelector('.lorakit-studio');
  // the charts' plots inside their places in the Studio (their own title arrives with the layout)
  return {train: box(Array.from(studio.querySelectorAll('button')).find(b => b.innerText.trim() === 'Train')),
          loss: box(studio.querySelector('.lorakit-live-loss .js-plotly-plot')),
          memory: box(studio.querySelector('.lorakit-live-memory .js-plotly-plot'))};
}
"""
LAPTOP = {"width": 1280, "height": 800}


@contextmanager
def _run_all_cells(url: str, name: str, viewport: dict = None):
    """Open notebook ``name`` in JupyterLab in headless chromium, wait for the kernel, Run > Run All Cells;
    yields the page, and closes the browser after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport or {"width": 1750, "height": 2900})
            page.goto(f"{url}/lab/tree/{name}", timeout=LONG)
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=LONG)
            page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=LONG)  # the kernel is up
            page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
            page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
            yield page
        finally:
            browser.close()


def test_studio_in_jupyterlab(lab, tmp_path):
    url, root = lab
    shot = tmp_path / "studio.png"
    with _run_all_cells(url, NOTEBOOK.name, viewport=LAPTOP) as page:
        studio = page.locator(".lorakit-studio")
        studio.wait_for(timeout=LONG)
        # the model panel reports the loaded default model
        page.wait_for_selector(".lorakit-studio .lorakit-model-info:has-text('parameters')", timeout=LONG)
        assert page.locator(".lorakit-studio .lorakit-trainable:has-text('trainable:')").count() == 1
        page.wait_for_selector(".lorakit-studio .lorakit-plan", timeout=LONG)  # planned memory
        # a laptop's screen with the file browser open: Train, the loss and the memory chart without scrolling
        assert page.locator("#filebrowser").is_visible()  # JupyterLab opens with it, and a beginner keeps it
        _wait_until(page, lambda: all(page.evaluate(BOXES_JS).values()), "Train, the loss and the memory chart")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(tmp_path / "studio-1280x800.png"))
        boxes = page.evaluate(BOXES_JS)
        for name, b in boxes.items():
            assert b is not None, (name, boxes)
            assert 0 <= b["top"] and b["bottom"] <= LAPTOP["height"] and b["right"] <= LAPTOP["width"], (name, b)
        page.set_viewport_size({"width": 1750, "height": 2900})  # the rest reads the whole Studio

        _train_three_points_then_stop(page, studio, "lora-r8")
        studio.get_by_role("button", name="NF4", exact=True).click()  # Quantization panel
        page.wait_for_selector(".lorakit-studio .lorakit-trainable:has-text('trainable:')", timeout=LONG)
        _train_three_points_then_stop(page, studio, "qlora-nf4-r8")

        # the Memory panel says in one line how the two runs of one model compare
        verdict = page.locator(".lorakit-studio .lorakit-memory-verdict")
        verdict.wait_for(timeout=LONG)
        assert re.fullmatch(r"qlora-nf4-r8 used \d+ % of lora-r8's memory at the step's peak \(.+ vs .+, both on "
                            r"smollm2-135m\)", verdict.inner_text().strip()), verdict.inner_text()
        # memory chart: five categories, planned next to measured, the LoRA run next to QLoRA
        mem = [p for p in _plots(page) if str(p["title"]).startswith("Memory: steady")]
        assert len(mem) == 1, [p["title"] for p in _plots(page)]
        assert [t["name"] for t in mem[0]["traces"]] == [
            "base weights", "adapters", "gradients", "optimizer state", "activations",
            "step peak (planned)", "step peak (measured)"]
        assert len(mem[0]["traces"][6]["y"]) == 2  # both runs' measured peaks (recorded by step 2)
        base = mem[0]["traces"][0]["y"]
        assert len(base) == 4, base  # LoRA planned, measured; QLoRA planned, measured
        assert mem[0]["bars"] >= 10
        # MiB of base weights: SmolLM2 fp32 ~513, NF4 ~161: the picture QLoRA is about
        assert base[1] > 400 and base[3] < 0.4 * base[1], base
        # the run table has both stopped runs, and their charts rendered
        rows = page.locator(".lorakit-studio .lorakit-runs-table tbody tr")
        assert rows.count() == 2
        table = page.locator(".lorakit-studio .lorakit-runs-table").first.inner_text()
        assert "lora-r8" in table and "qlora-nf4-r8" in table and "nf4" in table
        _wait_until(page, lambda: any(str(p["title"]).startswith("Steady memory by category") and p["bars"] > 0
                                      for p in _plots(page)), "the comparison memory chart")
        _wait_until(page, lambda: any(str(p["title"]).startswith("Loss (") and p["traces"] for p in _plots(page)),
                    "the comparison loss chart")
        page.wait_for_timeout(1500)  # let the last redraw settle before the picture
        page.locator(".jp-Notebook").first.evaluate("el => el.scrollTop = 0")
        studio.screenshot(path=str(shot), timeout=LONG)

        # Delete asks first and says how many; No keeps the runs
        compare = page.locator(".lorakit-studio .lorakit-runs-table").first
        select = studio.locator(".lorakit-compare-select select")
        qlora = [o for o in select.locator("option").all_inner_texts() if "qlora-nf4-r8" in o]  # "<model> · qlora-..."
        select.select_option(label=qlora)
        studio.get_by_role("button", name="Delete selected…", exact=True).click()
        page.wait_for_selector(".lorakit-confirm-delete:has-text('Delete 1 run and their adapters')", timeout=LONG)
        studio.locator(".lorakit-confirm-delete").get_by_role("button", name="No", exact=True).click()
        page.wait_for_selector(".lorakit-studio :text('Nothing deleted.')", timeout=LONG)
        assert rows.count() == 2 and "qlora-nf4-r8" in compare.inner_text()

        # the encoder from the form alone: its task and data follow, it loads, and a short run finishes
        studio.get_by_role("button", name="none", exact=True).click()  # the Quantization panel: back to none
        registry = page.locator(".lorakit-studio .lorakit-model-registry select")
        minilm = [o for o in registry.locator("option").all_inner_texts() if o.startswith("minilm-l6")]
        registry.select_option(label=minilm)  # options read "<name> · <family>"
        page.wait_for_selector(".lorakit-studio .lorakit-model-info:has-text('BertFor')", timeout=LONG)
        errors = page.locator(".lorakit-studio .lorakit-field-error")  # the data check runs after the load: it clears
        _wait_until(page, lambda: errors.count() == 0, f"a form without errors (at first: {errors.all_inner_texts()})")
        studio.get_by_role("button", name="Train", exact=True).click()
        page.wait_for_selector(".lorakit-studio .lorakit-status-ok:has-text('finished')", timeout=LONG)
        page.wait_for_selector(".lorakit-studio .lorakit-runs-table tr:has-text('finished')", timeout=LONG)
        assert rows.count() == 3, page.locator(".lorakit-studio .lorakit-runs-table").first.inner_text()
    assert shot.stat().st_size > 10_000
    if os.environ.get("LORAKIT_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, REPO / "docs" / "studio.png")


# A Studio on tiny-llama with three steps a run: a sweep of two trials takes seconds, not minutes.
SWEEP_CELL = ('from lorakit.widgets import Studio\n'
              'Studio(model="tiny-llama", dataset="arithmetic", seq_len=256, batch_size=2, train_examples=48, '
              'eval_examples=4, max_steps=3, learning_rate=1e-3)')


def _notebook(path: Path, source: str) -> None:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    path.write_text(json.dumps({"cells": [cell], "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}))


def test_sweep_in_jupyterlab(lab, tmp_path):
    """Pick two ranks in the Sweep panel, press Run sweep: both rows finish and land in the Compare table."""
    url, root = lab
    _notebook(root / "sweep.ipynb", SWEEP_CELL)
    with _run_all_cells(url, "sweep.ipynb") as page:
        sweep = page.locator(".lorakit-studio .lorakit-sweep")
        sweep.wait_for(timeout=LONG)
        page.wait_for_selector(".lorakit-studio .lorakit-model-info:has-text('parameters')", timeout=LONG)
        sweep.locator(".lorakit-sweep-rank select").select_option(label=["4", "8"])
        # two trials, each with its planned memory, before anything runs
        page.wait_for_selector(".lorakit-sweep-summary:has-text('2 trial(s)')", timeout=LONG)
        for rank in (4, 8):
            page.wait_for_selector(f".lorakit-sweep-table tr:has-text('rank={rank}'):has-text('planned')"
                                   f":has-text('MiB')", timeout=LONG)
        sweep.get_by_role("button", name="Run sweep", exact=True).click()
        for rank in (4, 8):
            page.wait_for_selector(f".lorakit-sweep-table tr:has-text('rank={rank}') td:has-text('finished')",
                                   timeout=LONG)
        page.wait_for_selector(".lorakit-sweep .lorakit-status:has-text('Sweep ended: 2 finished')", timeout=LONG)
        # both trials in the Compare table, and their curves on the sweep's chart
        page.wait_for_selector(".lorakit-runs-table tr:has-text('lora-r8') td:has-text('finished')", timeout=LONG)
        rows = page.locator(".lorakit-studio .lorakit-runs-table tbody tr")
        assert rows.count() == 2
        table = page.locator(".lorakit-studio .lorakit-runs-table").first.inner_text()
        assert "lora-r4" in table and "lora-r8" in table
        _wait_until(page, lambda: any(str(p["title"]) == "Loss per trial"
                                      and [len(t["y"]) for t in p["traces"]] == [3, 3] for p in _plots(page)),
                    "both trials' loss curves")
        page.wait_for_timeout(1000)
        sweep.screenshot(path=str(tmp_path / "sweep.png"), timeout=LONG)
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


# The Playground alone on two stored tiny-llama runs (adapters built directly: seconds, no training)
PLAYGROUND_CELL = 'from lorakit.widgets import Playground\nPlayground(model="tiny-llama")'
ANSWERS_JS = "() => Array.from(document.querySelectorAll('.lorakit-playground-answer')).map(e => e.innerText)"


def test_playground_in_jupyterlab(lab, tmp_path):
    """Type a prompt, press Generate: two adapter columns fill token by token (three or more intermediate
    states seen in the page), then Stop ends the answer being written. A third column makes the check hold
    whatever the model writes: even if the second answer ends (EOS) just before the click, the third is stopped."""
    sys.path.insert(0, str(REPO / "tests" / "support"))  # the server's kernel too: pytest's pythonpath is ours only
    from playground_support import stored_run

    from lorakit.store import RunStore

    url, root = lab
    with RunStore(root / "lorakit_runs.db") as st:  # the lab's LORAKIT_STORE
        ids = [stored_run(st, seed=seed).run_id for seed in (1, 2, 3)]
    _notebook(root / "playground.ipynb", PLAYGROUND_CELL)
    with _run_all_cells(url, "playground.ipynb") as page:
        panel = page.locator(".lorakit-playground-prompt")
        panel.wait_for(timeout=LONG)
        page.locator(".lorakit-playground-prompt textarea").fill("Anna is 31 and lives in Oslo.")
        page.locator(".widget-select-multiple select").select_option(value=None, label=[
            o for o in page.locator(".widget-select-multiple select option").all_inner_texts()
            if o.startswith(tuple(ids))])
        number = page.locator(".widget-inline-hbox:has-text('max new tokens') input")
        number.fill("300")
        number.press("Enter")
        page.get_by_role("button", name="Generate", exact=True).click()
        seen: list = []  # distinct (column texts) states while the columns fill
        deadline = time.monotonic() + LONG / MS
        while True:
            texts = page.evaluate(ANSWERS_JS)
            if len(texts) == 3 and (not seen or seen[-1] != texts):
                seen.append(texts)
            # the second column has grown through three states: both have filled progressively; press Stop
            if len({s[1] for s in seen if s[1].strip()}) >= 3:
                break
            assert time.monotonic() < deadline, f"the columns did not fill: {seen[-3:]}"
            page.wait_for_timeout(100)
        page.get_by_role("button", name="Stop", exact=True).click()
        page.wait_for_selector(".lorakit-status:has-text('Stopped.')", timeout=LONG)
        first = [s[0] for s in seen if s[0].strip()]
        assert len(set(first)) >= 3, first[:5]  # the first column, too, was seen part-written
        assert all(a.startswith(b) for a, b in zip(first[1:], first[:-1], strict=False))  # growing, never rewritten
        page.wait_for_selector(".lorakit-playground-columns:has-text('stopped')", timeout=LONG)
        heads = page.locator(".lorakit-playground-columns").inner_text()
        assert "done" in heads and "tok/s" in heads, heads  # the first answer finished, with its rate
        page.screenshot(path=str(tmp_path / "playground.png"))
