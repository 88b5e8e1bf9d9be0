"""Atomic file writes: a crash or a kill at any moment leaves the old file or the new one, never
half of either, so every reader (the server, the next run, `mlinfra` itself) sees a whole file;
and reading such a record back, with damage (a disk fault, a hand edit) said in one line.

The bytes go to a temporary file beside the target (same filesystem, so the rename is atomic),
are fsynced, then renamed over the target.
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["atomic_write_bytes", "atomic_write_text", "partial_files", "read_record"]

RecordT = TypeVar("RecordT", bound="BaseModel")

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


def read_record(path: Path, model: type[RecordT]) -> RecordT | None:
    """The JSON record at `path` as `model`, or None when there is none; a record that cannot be
    read is a StateError (exit 4) naming the file, not a traceback."""
    from pydantic import ValidationError

    from .errors import StateError

    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        problem = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise StateError(
            f"{path} cannot be read ({problem}); mlinfra writes it whole, so it was damaged or "
            "edited: put back a good copy, or move it aside to start that record afresh"
        ) from exc
