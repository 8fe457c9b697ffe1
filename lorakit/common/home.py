"""Where lorakit keeps its caches (converted models, saved datasets): a leaf module that imports nothing of lorakit."""
from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """``$LORAKIT_HOME``, else the user cache directory."""
    env = os.environ.get("LORAKIT_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lorakit"))
