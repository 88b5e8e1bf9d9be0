"""Rendering shared by every command: rich for people, JSON for scripts, NO_COLOR respected."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

__all__ = ["console", "emit_json", "error_console"]

_no_color = bool(os.environ.get("NO_COLOR"))
console = Console(no_color=_no_color, highlight=False)
error_console = Console(stderr=True, no_color=_no_color, highlight=False)


def emit_json(payload: Any, *, compact: bool = False) -> None:
    """Print one JSON document on stdout, nothing else, for `--json`.

    `compact` (no indentation) is for long listings: only then does json use its C encoder.
    """
    indent = None if compact else 2
    sys.stdout.write(json.dumps(payload, indent=indent, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
