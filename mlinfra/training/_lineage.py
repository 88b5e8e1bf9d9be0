"""What a version records about how it was made: code, environment, libraries."""

from __future__ import annotations

import math
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["LIBRARIES", "git_state", "jsonable", "library_versions", "machine"]

LIBRARIES = ("mlinfra-iac", "scikit-learn", "numpy", "pandas", "scipy", "skops", "joblib")
_GIT_TIMEOUT_S = 10


def git_state(folder: Path | None) -> dict[str, Any]:
    """The commit checked out in `folder` and whether the tree differs from it (untracked too)."""
    if folder is None:
        return {"git_commit": None, "git_dirty": None}
    try:
        commit = _git(folder, "rev-parse", "HEAD")
        changes = _git(folder, "status", "--porcelain")
    except (OSError, subprocess.SubprocessError):  # not a repository, no commit yet, no git
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(changes)}


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT_S,
        check=True,
    )
    return done.stdout.strip()


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
