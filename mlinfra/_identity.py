"""Who is acting and which code they act from, as history, audit trails and lineage record it."""

from __future__ import annotations

import getpass
import os
import subprocess
from pathlib import Path

__all__ = ["current_user", "git_state"]

_GIT_TIMEOUT_S = 10


def current_user() -> str:
    """The acting user; containers often run as a uid with no passwd entry."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def git_state(folder: Path, *, untracked: bool = True) -> tuple[str | None, bool | None]:
    """The commit checked out in `folder` and whether the tree differs from it; (None, None)
    outside a repository, before the first commit, or without git."""
    status = ["status", "--porcelain"] + ([] if untracked else ["--untracked-files=no"])
    try:
        commit = _git(folder, "rev-parse", "HEAD")
        changes = _git(folder, *status)
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(changes)


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT_S,
        check=True,
    )
    return done.stdout.strip()
