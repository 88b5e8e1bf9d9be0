"""The records the registry hands out: frozen dataclasses that turn into JSON with `to_dict()`."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ALIAS_PATTERN",
    "AliasEvent",
    "ModelVersion",
    "NewVersion",
    "Report",
    "VersionSummary",
    "utc_now",
]

# Aliases may not look like version numbers ("3", "v3"), so that resolve() is never ambiguous.
ALIAS_PATTERN = re.compile(r"^(?!v?\d+$)(?!latest$)[a-z][a-z0-9_-]{0,39}$")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, as `list_versions`, `resolve` and `get` return it.

    Bulky documents (schema, trials, importances) are read on demand.
    """

    model: str
    version: int
    task: str
    env: str
    created_at: str
    created_by: str
    artifact_sha256: str
    artifact_size: int
    reference_sha256: str | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    trusted_types: list[str]
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.model}:v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VersionSummary:
    """A version in a long listing: a table row's fields, read without decoding any document.

    `score` is the test value of `metric`, the metric the training optimized.
    """

    model: str
    version: int
    task: str
    env: str
    created_at: str
    created_by: str
    metric: str | None
    score: float | None
    git_commit: str | None
    git_dirty: bool | None
    data_hash: str | None
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)  # shallow: asdict's deep copy costs a third of a 10k listing


@dataclass(frozen=True)
class NewVersion:
    """What a training run hands to `Registry.register`; the registry assigns number and time.

    `documents` holds JSON-able side records read on demand: "schema", "importances", "search".
    """

    model: str
    task: str
    env: str
    model_bytes: bytes
    params: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    documents: dict[str, Any] = field(default_factory=dict)
    reference_sample: bytes | None = None
    trusted_types: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    created_by: str | None = None


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias: the audit trail a regulated team shows."""

    id: int
    model: str
    env: str
    alias: str
    from_version: int | None
    to_version: int | None
    at: str
    actor: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    """An evaluation (or other) report stored with a version, as JSON and as Markdown."""

    id: int
    model: str
    version: int
    env: str
    kind: str
    created_at: str
    created_by: str
    passed: bool
    body: dict[str, Any]
    markdown: str

    def to_dict(self, *, markdown: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not markdown:
            del data["markdown"]
        return data
