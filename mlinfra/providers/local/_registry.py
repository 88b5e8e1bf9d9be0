"""The model registry's home: content-addressed artifacts/ and the registry.db SQLite file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from ...registry import ARTIFACTS_DIR, DATABASE_FILE, initialize
from ._base import LocalResource
from ._files import DirectoryInputs, DirectoryProvider

__all__ = ["RegistryStore", "RegistryStoreArgs", "RegistryStoreProvider"]


class RegistryStoreProvider(DirectoryProvider[DirectoryInputs]):
    """Replaced when the path changes; a deleted artifacts/ or registry.db is found by read and
    remade by update (initialize is idempotent). Delete leaves files mlinfra did not make."""

    inputs_model = DirectoryInputs
    parts = (ARTIFACTS_DIR, DATABASE_FILE)
    # SQLite's sidecar files, and the per-env deployment tables the model server keeps here.
    leftovers = (
        f"{DATABASE_FILE}-wal",
        f"{DATABASE_FILE}-shm",
        f"{DATABASE_FILE}-journal",
        "serving",
    )

    def build(self, root: Path, inputs: DirectoryInputs) -> None:
        initialize(root)

    def describe(self, root: Path, inputs: DirectoryInputs) -> dict[str, Any]:
        return {"uri": root.as_uri(), "db_path": str(root / DATABASE_FILE)}


@dataclass(frozen=True, kw_only=True)
class RegistryStoreArgs:
    path: pulumi.Input[str]


class RegistryStore(LocalResource[RegistryStoreArgs], module="mlinfra", name="RegistryStore"):
    """`uri` is the registry's file:// URI; `db_path` its SQLite metadata file."""

    provider_type = RegistryStoreProvider
    computed = ("uri", "db_path")
    path: pulumi.Output[str]
    uri: pulumi.Output[str]
    db_path: pulumi.Output[str]
