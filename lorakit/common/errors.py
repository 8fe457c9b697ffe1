"""ConfigError: invalid settings, every problem naming its field.

A leaf module (imports nothing from lorakit) so that whatever validates settings can raise it:
``RunConfig``, the target-module resolution in ``targets``, the planner, the model loader.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """One or more invalid fields. ``problems`` maps field name -> message."""

    def __init__(self, problems: dict[str, str]):
        self.problems = dict(problems)
        lines = "\n".join(f"  - {k}: {v}" for k, v in self.problems.items())
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")
