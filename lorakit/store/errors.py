"""What the run store raises: one error type whose message names the file and says why, in plain words."""
from __future__ import annotations


class StoreError(RuntimeError):
    """The run store cannot be used: the message says which file and why, in plain words."""


class RunNotFound(StoreError, KeyError):
    """No run with that id in this store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
