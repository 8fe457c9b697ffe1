"""The Compare panel's Export action: one selected run written with ``lorakit.export`` on a thread.

The panel only forwards its widgets' values here; this checks them (exactly one run, a destination),
runs the export off the kernel's thread (a GGUF of SmolLM2 takes a minute on a laptop) and reports
``(level, text)`` back: the written path and its size, or lorakit's message naming the argument.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Optional

import lorakit

from .jobs import error_text

FORMATS, GGUF_TYPES = lorakit.EXPORT_FORMATS, lorakit.GGUF_TYPES


def _size(path: Path) -> int:
    folder = path.parent if path.is_file() else path
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


class RunExport:
    """Export one run at a time; ``report(level, text)`` hears how it went."""

    def __init__(self, report: Callable[[str, str], None]):
        self.report = report
        self.thread: Optional[threading.Thread] = None
        self.written: Optional[Path] = None

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, run_ids, records, path: str, fmt: str, gguf_type: str = "f16", overwrite: bool = False,
              store=None, background: bool = True) -> bool:
        """Check the request and start it; False (and a message) when it is refused before starting."""
        if self.busy:
            self.report("warn", "An export is already running; wait for it to finish.")
            return False
        if len(run_ids) != 1:
            self.report("warn", f"Select exactly one run to export ({len(run_ids)} selected).")
            return False
        record = next((r for r in records if r.run_id == run_ids[0]), None)
        if record is None:
            self.report("error", f"run: {run_ids[0]!r} is not in the store any more; press Refresh.")
            return False
        dest = (path or "").strip() or f"{record.run_id}-{fmt}"
        self.written = None
        self.report("info", f"Exporting run {record.run_id} as {fmt} to {dest} ...")

        def job():
            try:
                self.written = lorakit.export(record, dest, format=fmt, store=store, overwrite=overwrite,
                                              gguf_type=gguf_type)
            except lorakit.ExportError as exc:
                self.report("error", "; ".join(f"{k}: {v}" for k, v in exc.problems.items()))
                return
            except Exception as exc:  # noqa: BLE001 - a full disk, a missing base: a message, nothing written
                self.report("error", f"Export failed (nothing was written): {error_text(exc)}")
                return
            self.report("ok", f"Wrote {self.written} ({_size(self.written) / 2**20:.1f} MiB)")

        if not background:
            job()
            return True
        self.thread = threading.Thread(target=job, name="lorakit-export", daemon=True)
        self.thread.start()
        return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True when no export is running (after at most ``timeout`` seconds)."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.busy
