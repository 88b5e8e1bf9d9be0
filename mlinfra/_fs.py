"""Atomic file writes: a crash or a kill at any moment leaves the old file or the new one, never
half of either, so every reader (the server, the next run, `mlinfra` itself) sees a whole file.

The bytes go to a temporary file beside the target (same filesystem, so the rename is atomic),
are fsynced, then renamed over the target.
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "partial_files"]

_PARTIAL_SUFFIX = ".partial"


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data`, making missing parent directories.

    The file has `mode` whatever the umask; it is created owner-only and given `mode` before any
    byte is written, so a 0600 file is never readable by others, not even half-written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temp name: concurrent writers of one path never write into each other's file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_PARTIAL_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    """`atomic_write_bytes` of `text` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def partial_files(path: Path) -> list[Path]:
    """Temporary files that writes of `path` killed before their rename left behind."""
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*{_PARTIAL_SUFFIX}"))
