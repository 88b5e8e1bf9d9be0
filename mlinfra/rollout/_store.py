"""Where rollouts keep their records, beside the env's deployment table.

<registry>/serving/<env>/
    deployment.json   what the server serves (mlinfra.serving)
    rollout.json      the latest rollout, rewritten at every change
    pending.json      an alias move decided but not yet made (finished by the next command)
    history.jsonl     every deploy, step, promotion, abort and rollback, appended
    .lock             held while any command changes the above
    .controller.lock  held by the process driving a rollout
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .._fs import atomic_write_text
from ..errors import StateLockedError
from ..serving import Deployment
from ._model import Rollout

__all__ = ["AliasMove", "Pending", "RolloutStore"]


class AliasMove(BaseModel):
    """One registry alias change: to a version, or removed (`version` None)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alias: str
    version: int | None
    reason: str


class Pending(BaseModel):
    """Alias moves owed once the table holds `generation`: the intent half of a transition.

    `previous` is the table it replaces, to put back if the server refused the new one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    generation: int
    moves: list[AliasMove]
    event: dict[str, Any]
    actor: str
    previous: Deployment | None = None


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
    def controller(self) -> Iterator[None]:
        """Held by the one process driving a rollout; a second one is refused at once."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".controller.lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateLockedError(
                    "another process is already driving this env's rollout; "
                    "see `mlinfra rollout status`"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def rollout(self) -> Rollout | None:
        try:
            return Rollout.model_validate_json((self.directory / "rollout.json").read_text())
        except FileNotFoundError:
            return None

    def save(self, rollout: Rollout) -> None:
        atomic_write_text(self.directory / "rollout.json", rollout.model_dump_json(indent=2))

    def pending(self) -> Pending | None:
        try:
            return Pending.model_validate_json((self.directory / "pending.json").read_text())
        except FileNotFoundError:
            return None

    def set_pending(self, pending: Pending | None) -> None:
        path = self.directory / "pending.json"
        if pending is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_text(path, pending.model_dump_json(indent=2))

    def record(self, event: dict[str, Any]) -> None:
        """Append one event to the env's history (one JSON object per line)."""
        line = json.dumps({"at": datetime.now(UTC).isoformat(), **event}, default=str)
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "history.jsonl", "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        try:
            lines = (self.directory / "history.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        events = [json.loads(line) for line in lines if line.strip()]
        return events[-limit:] if limit else events
