"""Where rollouts keep their records, beside the env's deployment table.

<registry>/serving/<env>/
    deployment.json   what the server serves (mlinfra.serving)
    rollout.json      the latest rollout, rewritten at every change
    pending.json      an alias move decided but not yet made (finished by the next command)
    history.jsonl     every deploy, step, promotion, abort, rollback and resume, appended
    window.json       the driver's place in the current step's analysis window
    controller.beat   touched by the driver at every tick: when it was last seen alive
    .lock             held while any command changes the above
    .controller.lock  held by the process driving a rollout
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict

from .._fs import atomic_write_text, read_record
from ..errors import StateLockedError
from ..serving import Deployment
from ._model import Rollout, Window

__all__ = ["AliasMove", "Pending", "RolloutStore"]

log = logging.getLogger("mlinfra.rollout")


class AliasMove(BaseModel):
    """One registry alias change: to a version, or removed (`version` None)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alias: str
    version: int | None
    reason: str


class Pending(BaseModel):
    """Alias moves owed once the table holds `generation`: the intent half of a transition.

    `previous` is the table it replaces, to put back if the server refused the new one;
    `rollout` the rollout record to save once the table is served (its new step, or its end).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    generation: int
    moves: list[AliasMove]
    event: dict[str, Any]
    actor: str
    previous: Deployment | None = None
    rollout: Rollout | None = None


class RolloutStore:
    """Files of one env's rollouts; every write is atomic."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise commands that change this env's deployment (waits for the holder)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def controller(self, wait: float = 0.0) -> Iterator[None]:
        """Held by the one process driving a rollout; a second one is refused after `wait`
        seconds (a driver just told to stop may take a tick to let go)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".controller.lock", "a") as handle:
            deadline = time.monotonic() + wait
            while not _try_flock(handle):
                if time.monotonic() >= deadline:
                    raise StateLockedError(
                        "another process is already driving this env's rollout; "
                        "see `mlinfra rollout status`"
                    )
                time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def rollout(self) -> Rollout | None:
        return read_record(self.directory / "rollout.json", Rollout)

    def save(self, rollout: Rollout) -> None:
        atomic_write_text(self.directory / "rollout.json", rollout.model_dump_json(indent=2))

    def window(self) -> Window | None:
        try:
            return Window.model_validate_json((self.directory / "window.json").read_text())
        except (FileNotFoundError, ValueError):
            return None  # none yet, or one from an older mlinfra: the step opens a new window

    def save_window(self, window: Window) -> None:
        atomic_write_text(self.directory / "window.json", window.model_dump_json())

    def drop_window(self) -> None:
        (self.directory / "window.json").unlink(missing_ok=True)

    def beat(self) -> None:
        """Say the driver is alive now (the file's modification time)."""
        (self.directory / "controller.beat").touch()

    def last_beat(self) -> datetime | None:
        try:
            mtime = (self.directory / "controller.beat").stat().st_mtime
        except FileNotFoundError:
            return None
        return datetime.fromtimestamp(mtime, UTC)

    def pending(self) -> Pending | None:
        return read_record(self.directory / "pending.json", Pending)

    def set_pending(self, pending: Pending | None) -> None:
        path = self.directory / "pending.json"
        if pending is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_text(path, pending.model_dump_json(indent=2))

    def record(self, event: dict[str, Any]) -> None:
        """Append one event to the env's history (one JSON object per line); called with the
        store locked. A line torn by a crash mid-append is cut off first, so that it never
        swallows the start of this one."""
        line = json.dumps({"at": datetime.now(UTC).isoformat(), **event}, default=str)
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "history.jsonl", "a+b") as handle:
            _cut_torn_line(handle)
            handle.write(line.encode() + b"\n")  # one write: the line and its end go together
            handle.flush()
            os.fsync(handle.fileno())

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded events, oldest first; a line counts once its newline is written."""
        try:
            text = (self.directory / "history.jsonl").read_text()
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        if lines[-1]:
            log.debug("skipping a torn last line of %s/history.jsonl", self.directory)
        events = [event for line in lines[:-1] if (event := _event(line)) is not None]
        return events[-limit:] if limit else events


def _event(line: str) -> dict[str, Any] | None:
    """One history line; a damaged one is skipped (and logged): the history is a record of what
    happened, and the rest of it still says so."""
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        log.warning("skipping a damaged line of a rollout history: %.80r", line)
        return None
    return event


def _try_flock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _cut_torn_line(handle: IO[bytes]) -> None:
    """Truncate the file back to the end of its last whole line."""
    end = handle.seek(0, os.SEEK_END)
    position = end
    while position > 0:
        start = max(0, position - 4096)
        handle.seek(start)
        chunk = handle.read(position - start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            position = start + newline + 1
            break
        position = start
    if position < end:
        handle.truncate(position)
