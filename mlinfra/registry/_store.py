"""The one small interface between the registry and where its metadata lives.

SQLite implements it today (`SqliteStore`); a PostgreSQL store for team mode implements the same
methods. Every method is one transaction, so a crash at any line leaves the store whole.
"""

from __future__ import annotations

from types import EllipsisType
from typing import Any, Protocol

from ._types import AliasEvent, ModelVersion, NewVersion, Report, VersionSummary

__all__ = ["MetadataStore"]


class MetadataStore(Protocol):
    def insert_version(
        self,
        new: NewVersion,
        *,
        artifact_sha256: str,
        reference_sha256: str | None,
        created_by: str,
    ) -> ModelVersion:
        """Allocate the next number and record the version with its documents, atomically."""
        ...

    def get_version(self, model: str, version: int) -> ModelVersion | None: ...

    def latest_version(self, model: str) -> ModelVersion | None: ...

    def list_versions(self, model: str | None, *, limit: int | None) -> list[ModelVersion]: ...

    def list_summaries(self, model: str | None, *, limit: int | None) -> list[VersionSummary]: ...

    def model_names(self) -> list[str]: ...

    def document(self, model: str, version: int, kind: str) -> Any | None: ...

    def documents(self, model: str, version: int) -> dict[str, Any]:
        """Every document of a version, by kind."""
        ...

    def find_versions(self, model: str, artifact_sha256: str) -> list[ModelVersion]:
        """Versions of `model` whose artifact has this sha256, oldest first."""
        ...

    def set_tags(
        self, model: str, version: int, set_: dict[str, str], remove: list[str]
    ) -> None: ...

    def aliases(self, model: str, env: str) -> dict[str, int]: ...

    def move_alias(
        self,
        model: str,
        env: str,
        alias: str,
        to_version: int | None,
        *,
        actor: str,
        reason: str,
        expected: int | None | EllipsisType,
    ) -> AliasEvent:
        """Point `alias` at `to_version` (None removes it) and append the move to the audit trail.

        With `expected` other than `...`, refuse unless the alias points there now.
        """
        ...

    def alias_history(self, model: str, env: str | None, alias: str | None) -> list[AliasEvent]: ...

    def add_report(
        self,
        model: str,
        version: int,
        *,
        env: str,
        kind: str,
        passed: bool,
        body: dict[str, Any],
        markdown: str,
        created_by: str,
    ) -> Report: ...

    def reports(self, model: str, version: int) -> list[Report]: ...

    def close(self) -> None: ...
