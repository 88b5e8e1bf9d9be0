"""Plain records the state store keeps; the engine builds and reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BranchEnvRecord",
    "KeptResource",
    "LockHolder",
    "PendingOperation",
    "ResourceState",
    "UpdateRecord",
]


@dataclass
class ResourceState:
    """One resource as the last run left it: what it was asked for and what it became."""

    urn: str
    type: str
    name: str
    custom: bool
    id: str = ""
    parent: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    dependencies: list[str] = field(default_factory=list)
    protect: bool = False
    delete_before_replace: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    secret_outputs: list[str] = field(default_factory=list)
    retain_on_delete: bool = False
    pending_delete: bool = False
    """An old instance replaced create-before-delete, still to be deleted."""


@dataclass(frozen=True)
class KeptResource:
    """A resource `destroy` left in place for the data it holds: out of the state, remembered
    so that `destroy --delete-data` can still delete it and `up` can take it back."""

    resource: ResourceState
    held: str
    """What it held when it was kept, as the provider said: "5 model versions (...) at /path"."""
    kept_at: float


@dataclass(frozen=True)
class PendingOperation:
    """Written before a provider call and removed after it, so a crash leaves a trace."""

    id: int
    urn: str
    kind: str
    inputs: dict[str, Any]
    started: float


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    user: str
    command: str
    since: float


@dataclass(frozen=True)
class UpdateRecord:
    id: int
    stack: str
    kind: str
    started: float
    finished: float | None
    user: str
    host: str
    commit: str
    dirty: bool
    result: str
    summary: dict[str, int]
    error: str


@dataclass(frozen=True)
class BranchEnvRecord:
    """A branch env (`--branch`): what it derives from, who made it from which commit, when, how
    long it may stay idle, and the serving port it holds for as long as it exists."""

    stack: str
    base: str
    branch: str
    port: int
    commit: str
    creator: str
    created_at: float
    updated_at: float
    """when it was last brought up: its TTL counts from here"""
    ttl_seconds: float
    seeded: dict[str, int] | None = None
    """model -> the base env's champion version copied in at creation; None: not seeded yet"""

    def expires_at(self, older_than: float | None = None) -> float:
        return self.updated_at + (self.ttl_seconds if older_than is None else older_than)
