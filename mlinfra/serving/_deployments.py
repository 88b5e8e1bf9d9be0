"""The deployment table: what an env's server serves, written by rollouts, watched by the server.

One small JSON file per env, next to the registry (`<registry>/serving/<env>/deployment.json`),
replaced atomically so a reader never sees half a table. Every change bumps `generation`; each
server worker acknowledges the generation it has loaded (or why it could not) in
`workers/<pid>.json`, so a rollout knows when the whole server has switched. An ack names its
worker by pid and start time: one whose pid now belongs to another process is a dead worker's.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .._fs import atomic_write_text, read_record
from .._process import ProcessIdentity

__all__ = [
    "Deployment",
    "WorkerAck",
    "deployment_dir",
    "read_acks",
    "read_deployment",
    "write_ack",
    "write_deployment",
]

_TABLE = "deployment.json"
_WORKERS = "workers"


class Deployment(BaseModel):
    """Which versions take traffic, and how it is split between them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str
    model: str
    generation: int = Field(ge=1)
    stable: int = Field(ge=1, description="version answering all traffic not sent to the canary")
    canary: int | None = Field(default=None, ge=1)
    canary_weight: int = Field(
        default=0, ge=0, le=100, description="percent of requests to the canary"
    )
    mode: Literal["split", "shadow"] = Field(
        default="split",
        description="shadow: the canary sees a copy of every request, stable answers",
    )
    sticky_header: str | None = Field(
        default=None, description="requests with the same value of this header get the same variant"
    )
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class WorkerAck(BaseModel):
    """One server worker's report: the generation it serves, and the last one it could not load."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: int
    started: float | None = Field(
        default=None, description="the worker's start time, stamped by write_ack"
    )
    serving: int | None = Field(
        default=None, description="generation answering requests; None: nothing"
    )
    failed: int | None = Field(
        default=None, description="generation refused, the old one kept serving"
    )
    error: str | None = None
    refused: bool = Field(
        default=False, description="the version itself was refused (tampered, untrusted)"
    )
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def settled(self, generation: int) -> bool:
        """Whether this worker has either switched to `generation` or refused it."""
        return self.serving == generation or self.failed == generation

    @property
    def process(self) -> ProcessIdentity:
        return ProcessIdentity(pid=self.pid, started=self.started)


def deployment_dir(registry_root: str | os.PathLike[str], env: str) -> Path:
    """Where an env's deployment table, worker acks and rollout records live."""
    return Path(registry_root) / "serving" / env


def read_deployment(directory: Path) -> Deployment | None:
    """The current table, or None when nothing was ever deployed to this env."""
    return read_record(directory / _TABLE, Deployment)


def write_deployment(directory: Path, deployment: Deployment) -> None:
    atomic_write_text(directory / _TABLE, deployment.model_dump_json(indent=2))


def write_ack(directory: Path, ack: WorkerAck) -> None:
    """Write a worker's own ack, stamped with its start time (the worker is alive as it writes)."""
    if ack.started is None and (me := ProcessIdentity.of(ack.pid)) is not None:
        ack = ack.model_copy(update={"started": me.started})
    atomic_write_text(directory / _WORKERS / f"{ack.pid}.json", ack.model_dump_json())


def read_acks(directory: Path) -> list[WorkerAck]:
    """Acks of the workers still alive; files left by dead workers are removed."""
    acks = []
    for path in sorted((directory / _WORKERS).glob("*.json")):
        try:
            ack = WorkerAck.model_validate_json(path.read_text())
        except (OSError, ValueError):
            continue  # a file being replaced right now; the next read sees it whole
        if ack.process.alive():
            acks.append(ack)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return acks
