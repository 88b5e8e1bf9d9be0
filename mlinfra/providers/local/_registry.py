"""The model registry's home: content-addressed artifacts/ and the registry.db SQLite file.

Models are data: a registry that holds versions is protected (the engine asks `data_at_risk`
before any step that would delete it, and `delete` itself refuses unless allowed), and a new
path is a move, not a replacement: every version is copied there, the old registry kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import UpdateResult

from ...engine._data import DataMove, HeldData
from ...errors import MlinfraError
from ...registry import ARTIFACTS_DIR, DATABASE_FILE, initialize
from ._base import LocalResource, is_unknown
from ._files import DirectoryInputs, DirectoryProvider, root_of
from ._registry_move import describe_versions, move_registry, versions_in

__all__ = ["RegistryStore", "RegistryStoreArgs", "RegistryStoreProvider"]


class RegistryInputs(DirectoryInputs):
    env: str | None = None
    """Whose aliases and deployment files move with it; None: every env's."""


class RegistryStoreProvider(DirectoryProvider[RegistryInputs]):
    """A new path is an update that moves the registry there; a deleted artifacts/ or
    registry.db is found by read and remade by update (initialize is idempotent). Delete leaves
    files mlinfra did not make, and refuses while versions are registered, unless allowed."""

    inputs_model = RegistryInputs
    replace_on = frozenset()
    parts = (ARTIFACTS_DIR, DATABASE_FILE)
    # SQLite's sidecar files, and the per-env deployment tables the model server keeps here.
    leftovers = (
        f"{DATABASE_FILE}-wal",
        f"{DATABASE_FILE}-shm",
        f"{DATABASE_FILE}-journal",
        "serving",
    )

    def build(self, root: Path, inputs: RegistryInputs) -> None:
        initialize(root)

    def describe(self, root: Path, inputs: RegistryInputs) -> dict[str, Any]:
        return {"uri": root.as_uri(), "db_path": str(root / DATABASE_FILE)}

    def comparable(self, props: dict[str, Any]) -> dict[str, Any]:
        # The env only says whose aliases a move takes along; it changes nothing on disk.
        return {"path": props.get("path")}

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inputs = self.parse(news)
        result = super().update(id_, olds, news)
        source = root_of(id_, olds)
        if source != Path(inputs.path):
            move_registry(source, Path(inputs.path), env=inputs.env)
        return result

    def data_at_risk(self, id_: str, outputs: dict[str, Any]) -> HeldData | None:
        root = root_of(id_, outputs)
        try:
            versions = versions_in(root)
        except MlinfraError as exc:  # unreadable is not empty: models are data
            return HeldData(f"a registry this mlinfra cannot count ({exc})", str(root))
        return HeldData(describe_versions(versions), str(root)) if versions else None

    def data_move(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DataMove | None:
        target = news.get("path")
        source = root_of(id_, olds)
        if not isinstance(target, str) or is_unknown(target) or Path(target) == source:
            return None
        versions = versions_in(source)
        if not versions:
            return None
        return DataMove(describe_versions(versions), str(source), target)


@dataclass(frozen=True, kw_only=True)
class RegistryStoreArgs:
    path: pulumi.Input[str]
    env: str | None = None
    """The env whose aliases and deployment files move with the registry when `path` changes;
    None moves every env's."""


class RegistryStore(LocalResource[RegistryStoreArgs], module="mlinfra", name="RegistryStore"):
    """`uri` is the registry's file:// URI; `db_path` its SQLite metadata file."""

    provider_type = RegistryStoreProvider
    computed = ("uri", "db_path")
    path: pulumi.Output[str]
    uri: pulumi.Output[str]
    db_path: pulumi.Output[str]
