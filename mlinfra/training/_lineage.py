"""What a version records about how it was made: code, environment, libraries."""

from __future__ import annotations

import math
import platform
import socket
from importlib import metadata
from pathlib import Path
from typing import Any

from .._identity import git_state

__all__ = ["LIBRARIES", "git_lineage", "jsonable", "library_versions", "machine"]

LIBRARIES = ("mlinfra-iac", "scikit-learn", "numpy", "pandas", "scipy", "skops", "joblib")


def git_lineage(folder: Path | None) -> dict[str, Any]:
    """The commit checked out in `folder` and whether the tree differs from it (untracked too)."""
    commit, dirty = git_state(folder) if folder is not None else (None, None)
    return {"git_commit": commit, "git_dirty": dirty}


def library_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict[str, str]:
    return {"host": socket.gethostname(), "platform": platform.platform()}


def jsonable(value: Any) -> Any:
    """`value` made of JSON types: numpy scalars become numbers, other objects their repr."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)
