"""The training workspace: a directory for runs and caches, and the worker pool's settings
(how many workers; the code paths they put first on their import path, passed to `train`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pydantic import Field

from ..._fs import atomic_write_text
from ._base import AbsolutePath, LocalResource
from ._files import DirectoryInputs, DirectoryProvider

__all__ = [
    "POOL_FILE",
    "TrainingWorkspace",
    "TrainingWorkspaceArgs",
    "TrainingWorkspaceProvider",
    "resolve_workers",
]

POOL_FILE = "pool.json"


def resolve_workers(workers: Any) -> Any:
    """0 means one worker per core; unknown values (preview) pass through."""
    if workers == 0:
        return os.cpu_count() or 1
    return workers


class WorkspaceInputs(DirectoryInputs):
    workers: int = Field(0, ge=0, le=256)
    code_paths: list[AbsolutePath] = Field(default_factory=list)


class TrainingWorkspaceProvider(DirectoryProvider[WorkspaceInputs]):
    """Replaced when the path changes; a new worker count is an update (pool.json rewritten),
    and so are new code paths (an output only: `mlinfra train` hands them to the workers)."""

    inputs_model = WorkspaceInputs
    parts = ("runs", "cache", POOL_FILE)

    def build(self, root: Path, inputs: WorkspaceInputs) -> None:
        (root / "runs").mkdir(exist_ok=True)
        (root / "cache").mkdir(exist_ok=True)
        pool = {"workers": resolve_workers(inputs.workers)}
        if _read_pool(root) != pool:
            atomic_write_text(root / POOL_FILE, json.dumps(pool, indent=2) + "\n")

    def describe(self, root: Path, inputs: WorkspaceInputs) -> dict[str, Any]:
        pool = _read_pool(root)
        workers = pool.get("workers") if pool else None
        return {"workers": workers if isinstance(workers, int) else resolve_workers(inputs.workers)}

    def comparable(self, props: dict[str, Any]) -> dict[str, Any]:
        # Old outputs hold the resolved count, new inputs may say 0: compare what the pool gets.
        return {
            "path": props.get("path"),
            "workers": resolve_workers(props.get("workers")),
            "code_paths": props.get("code_paths") or [],
        }


def _read_pool(root: Path) -> dict[str, Any] | None:
    """The pool settings on disk, or None when missing or unreadable (an update rewrites them)."""
    try:
        pool = json.loads((root / POOL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return pool if isinstance(pool, dict) else None


@dataclass(frozen=True, kw_only=True)
class TrainingWorkspaceArgs:
    path: pulumi.Input[str]
    workers: pulumi.Input[int] = 0
    code_paths: pulumi.Input[list[str]] = field(default_factory=list)


class TrainingWorkspace(
    LocalResource[TrainingWorkspaceArgs], module="mlinfra", name="TrainingWorkspace"
):
    """A directory with runs/, cache/ and pool.json; `workers` is the resolved pool size."""

    provider_type = TrainingWorkspaceProvider
    path: pulumi.Output[str]
    workers: pulumi.Output[int]
    code_paths: pulumi.Output[list[str]]
