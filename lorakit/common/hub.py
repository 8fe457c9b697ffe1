"""Can the Hugging Face Hub be reached? Asked before a download (a model, a dataset), so that a
machine without internet fails at once with a plain reason instead of minutes of retries."""
from __future__ import annotations

import os
import socket
from typing import Optional
from urllib.parse import urlsplit


def unreachable_reason(*offline_vars: str) -> Optional[str]:
    """None when the Hub (``HF_ENDPOINT``, default huggingface.co) accepts a connection within 3 s,
    else why not. ``HF_HUB_OFFLINE`` and any ``offline_vars`` the caller's library also honours
    (e.g. ``HF_DATASETS_OFFLINE``) count as unreachable when set."""
    for var in ("HF_HUB_OFFLINE", *offline_vars):
        if os.environ.get(var) not in (None, "", "0"):
            return f"{var} is set"
    url = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    try:
        port = url.port or (80 if url.scheme == "http" else 443)  # a mirror may name its own port
        socket.create_connection((host, port), timeout=3).close()
    except (OSError, ValueError) as exc:  # ValueError: a port that is not a number
        return f"cannot reach {url.netloc or host} ({exc})"
    return None
