"""Screenshots of the Studio in JupyterLab at a laptop's and a desktop's size, and where its working parts land.

    .venv/bin/python scripts/studio_screenshots.py [--out docs] [--tag after]

Starts JupyterLab on a free port in a temporary directory (with the Studio notebook and a fresh run store),
opens the notebook in headless chromium at 1280 x 800 with the file browser open, runs all cells, waits for
the model to load, and records the bounding boxes of Train, the live loss chart and the memory chart (page
pixels, after Run All, no scrolling); then the same at 1920 x 1080. Writes ``studio-1280x800-<tag>.png``,
``studio-1920x1080-<tag>.png`` and prints one JSON line per size.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01_studio.ipynb"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LONG = 600_000
# JS: the boxes of the Studio's working parts (None when absent)
BOXES_JS = """
() => {
  const box = el => { if (!el) return null; const r = el.getBoundingClientRect();
                      return {x: Math.round(r.x), y: Math.round(r.y),
                              w: Math.round(r.width), h: Math.round(r.height)}; };
  const studio = document.querySelector('.lorakit-studio');
  const train = Array.from(studio.querySelectorAll('button')).find(b => b.innerText.trim() === 'Train');
  const plots = Array.from(studio.querySelectorAll('.js-plotly-plot'));
  const titled = test => plots.find(gd => {
      const x = gd.layout && gd.layout.title; return test(String((x && (x.text || x)) || '')); });
  return {viewport: [window.innerWidth, window.innerHeight], studio: box(studio), train: box(train),
          loss: box(studio.querySelector('.lorakit-live-loss .js-plotly-plot')),
          memory: box(studio.querySelector('.lorakit-live-memory .js-plotly-plot')),
          loss_titled: Boolean(titled(t => t === 'Loss' || t.startsWith('Loss ·'))),
          model: box(studio.querySelector('.lorakit-model-info'))};
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(tmp: Path):
    root = tmp / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    port = _free_port()
    env = dict(os.environ, LORAKIT_STORE=str(root / "lorakit_runs.db"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), PYTHONUNBUFFERED="1")
    app = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings"  # as make lab does: no news popup
    app.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "scripts" / "jupyterlab-overrides.json", app / "overrides.json")
    cmd = [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=open(tmp / "lab.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=5).read()
            return proc, url
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit("jupyter lab did not answer within 300 s")


def shoot(browser, url: str, size: tuple, path: Path) -> dict:
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    errors: list = []
    page.on("console", lambda m: errors.append(m.text[:300]) if m.type == "error" else None)
    try:
        page.goto(f"{url}/lab/tree/{NOTEBOOK.name}", timeout=LONG)
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=LONG)
        page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=LONG)
        page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
        page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
        page.wait_for_selector(".lorakit-studio .lorakit-model-info:has-text('parameters')", timeout=LONG)
        page.wait_for_selector(".lorakit-studio .lorakit-plan", timeout=LONG)
        t0 = time.monotonic()
        while True:  # the live charts drawn with their layout (on a loaded machine: seconds after the widgets)
            boxes = page.evaluate(BOXES_JS)
            if (boxes["loss"] and boxes["memory"] and boxes["loss_titled"]) or time.monotonic() - t0 > 60:
                break
            page.wait_for_timeout(1000)
        page.wait_for_timeout(1000)
        boxes = {**page.evaluate(BOXES_JS), "charts_after_s": round(time.monotonic() - t0, 1)}
        page.screenshot(path=str(path))
        return {**boxes, "console_errors": errors}
    finally:
        page.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs"))
    ap.add_argument("--tag", default="after")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as d:
        proc, url = start_lab(Path(d))
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                for size in ((1280, 800), (1920, 1080)):
                    path = Path(args.out) / f"studio-{size[0]}x{size[1]}-{args.tag}.png"
                    print(json.dumps({"size": size, "shot": str(path), **shoot(browser, url, size, path)}))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
