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


def emit_json(payload: Any) -> None:
    """Print one JSON document on stdout, nothing else, for `--json`."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
