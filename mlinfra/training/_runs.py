"""Training runs recorded in the workspace: the intent before any work, the outcome after.

`runs/<id>/run.json` says what ran and how it ended; the directory is the run's scratch space
(the data handed to workers). A run killed mid-way stays "running" with a dead pid: the next
run marks it interrupted and frees its scratch data.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from .._fs import atomic_write_text
from .._process import ProcessIdentity
from ..registry._types import utc_now

__all__ = ["RunRecord"]

RUNS_DIR = "runs"
RECORD_FILE = "run.json"


class RunRecord:
    def __init__(self, workspace: Path, model: str, env: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.id = f"{stamp}-{model}-{uuid.uuid4().hex[:8]}"
        self.directory = workspace / RUNS_DIR / self.id
        self._fields: dict[str, Any] = {"id": self.id, "model": model, "env": env}

    def start(self, **details: Any) -> None:
        _reap_interrupted(self.directory.parent)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fields.update(
            details,
            status="running",
            pid=os.getpid(),
            started_at=utc_now(),
            started=ProcessIdentity.current().started,
        )
        self._write()

    def finish(self, status: str, **details: Any) -> None:
        self._fields.update(details, status=status, finished_at=utc_now())
        self._write()

    def _write(self) -> None:
        _save(self.directory / RECORD_FILE, self._fields)


def _save(record: Path, fields: dict[str, Any]) -> None:
    atomic_write_text(record, json.dumps(fields, indent=2, default=str) + "\n")


def _reap_interrupted(runs: Path) -> None:
    """Mark runs whose process is gone as interrupted, and drop their scratch data."""
    if not runs.is_dir():
        return
    for record in runs.glob(f"*/{RECORD_FILE}"):
        try:
            fields = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if fields.get("status") != "running" or _alive(fields.get("pid"), fields.get("started")):
            continue
        fields.update(status="interrupted", finished_at=utc_now())
        for leftover in record.parent.iterdir():
            if leftover.name != RECORD_FILE:
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        _save(record, fields)


def _alive(pid: Any, started: Any) -> bool:
    """The recorded process still runs (and is not a new process that reused its pid)."""
    if not isinstance(pid, int) or pid < 1 or not isinstance(started, int | float):
        return False
    return ProcessIdentity(pid=pid, started=started).alive()
