"""Paths read from the store are data, not orders: each is resolved (``..`` and links followed) and must
lie inside the store's adapter folder before lorakit opens or deletes it; anything else is refused.

A record's ``adapter_path`` is whatever was written into the file, by lorakit or by someone editing it,
so it is never followed out of ``<db dir>/<db stem>_adapters``. Deleting never follows a link: a link
in the adapter folder is removed itself, and what it points at is left alone.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Union

from lorakit.store.errors import StoreError


def confined(root: Path, path: Union[str, os.PathLike], what: str = "path") -> Path:
    """``path`` resolved, if it lies strictly inside ``root`` (resolved too); else StoreError naming both."""
    top = Path(root).resolve()
    p = Path(path)
    resolved = (p if p.is_absolute() else top / p).resolve()
    if top not in resolved.parents:
        raise StoreError(f"the stored {what} {str(path)!r} lies outside the store's folder {top}: refused "
                         "(it was not opened or deleted)")
    return resolved


def remove(path: Path) -> None:
    """Remove a file, a link (never its target) or a folder (shutil.rmtree does not follow links inside)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
