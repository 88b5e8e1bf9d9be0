"""`Registry`: versions, aliases, tags and reports over a metadata store and an artifact store."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

from .._identity import current_user
from ..errors import ConfigError
from ._artifacts import ArtifactStore
from ._errors import ModelNotFoundError, RegistryNotFoundError
from ._sqlite import SqliteStore
from ._store import MetadataStore
from ._trust import load_model, refuse_untrusted
from ._types import (
    ALIAS_PATTERN,
    AliasEvent,
    ModelVersion,
    NewVersion,
    Report,
    VersionSummary,
)

if TYPE_CHECKING:
    import pandas

__all__ = ["ARTIFACTS_DIR", "DATABASE_FILE", "Registry", "initialize"]

DATABASE_FILE = "registry.db"
ARTIFACTS_DIR = "artifacts"
_VERSION_REF = re.compile(r"^v?([0-9]{1,30})$")  # longer digit strings are no version either
_TAG_KEY = re.compile(r"^[A-Za-z][\w.-]{0,62}$")
_MAX_VERSION = 2**63 - 1  # SQLite's largest integer: no version can be numbered above it


def initialize(root: Path) -> None:
    """Create a registry at `root` (directory 0700, database 0600); a no-op when it exists."""
    root = Path(root)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    (root / ARTIFACTS_DIR).mkdir(mode=0o700, exist_ok=True)
    SqliteStore.create(root / DATABASE_FILE).close()


class Registry:
    """A model registry rooted at a directory; open it with `Registry.open(root)`.

    Safe to share between threads, and to keep open in a long-lived process: every call reads the
    current state of the store, so versions registered by other processes show up at once.
    """

    def __init__(self, root: Path, store: MetadataStore, artifacts: ArtifactStore) -> None:
        self.root = root
        self._store = store
        self._artifacts = artifacts

    @classmethod
    def open(cls, root: Path | str) -> Registry:
        root = Path(root)
        database = root / DATABASE_FILE
        if not database.is_file():
            raise RegistryNotFoundError(
                f"no model registry at {root}; bring the env up first (`mlinfra up --env ENV`)"
            )
        store = SqliteStore(database)
        store.check()
        return cls(root, store, ArtifactStore(root / ARTIFACTS_DIR))

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- versions ----------------------------------------------------------------------------

    def register(self, new: NewVersion) -> ModelVersion:
        """Store the artifacts, then record the version in one transaction: all of it or none.

        A crash before the commit leaves at most unreferenced blobs, never a partial version.
        """
        refuse_untrusted(new.model_bytes, new.trusted_types, model=new.model)
        artifact = self._artifacts.put(new.model_bytes)
        reference = (
            None if new.reference_sample is None else self._artifacts.put(new.reference_sample)
        )
        return self._store.insert_version(
            new,
            artifact_sha256=artifact,
            reference_sha256=reference,
            created_by=new.created_by or current_user(),
        )

    def models(self) -> list[str]:
        return self._store.model_names()

    def get(self, model: str, version: int) -> ModelVersion:
        found = self._store.get_version(model, version) if 0 < version <= _MAX_VERSION else None
        if found is None:
            self._require_model(model)
            raise ModelNotFoundError(f"model {model!r} has no version {version}")
        return found

    def latest(self, model: str) -> ModelVersion | None:
        """The newest version of `model`, or None when it has none yet."""
        return self._store.latest_version(model)

    def list_versions(
        self, model: str | None = None, *, limit: int | None = None
    ) -> list[ModelVersion]:
        """Versions by model name, newest first; all models when `model` is None."""
        if model is not None:
            self._require_model(model)
        return self._store.list_versions(model, limit=limit)

    def summaries(
        self, model: str | None = None, *, limit: int | None = None
    ) -> list[VersionSummary]:
        """Like `list_versions`, lighter: the fields a listing shows, fast for 10,000 versions."""
        if model is not None:
            self._require_model(model)
        return self._store.list_summaries(model, limit=limit)

    def resolve(self, model: str, ref: str | int, *, env: str | None = None) -> ModelVersion:
        """Find a version by number (`3`, `"3"`, `"v3"`), `"latest"`, or an alias of `env`."""
        text = str(ref).strip()
        number = _VERSION_REF.match(text)
        if number:
            return self.get(model, int(number.group(1)))
        self._require_model(model)
        if text == "latest":
            latest = self.latest(model)
            assert latest is not None  # the model exists, so it has a version
            return latest
        if env is None:
            raise ConfigError(f"{text!r} is not a version number; to resolve an alias, give --env")
        aliases = self._store.aliases(model, env)
        if text not in aliases:
            known = ", ".join(aliases) or "none"
            raise ModelNotFoundError(
                f"model {model!r} has no alias {text!r} in env {env!r} (aliases there: {known})"
            )
        return self.get(model, aliases[text])

    def _require_model(self, model: str) -> None:
        names = self._store.model_names()
        if model not in names:
            known = ", ".join(names) or "none yet; run `mlinfra train`"
            raise ModelNotFoundError(f"no model named {model!r} in the registry (models: {known})")

    # -- artifacts and documents -------------------------------------------------------------

    def load(self, version: ModelVersion, *, trusted: Iterable[str] | None = None) -> Any:
        """The fitted estimator, after checking its sha256 and the types it holds.

        `trusted` replaces the version's recorded `trusted_types` (the user's own classes).
        """
        data = self.artifact(version)
        return load_model(data, version.trusted_types if trusted is None else trusted)

    def artifact(self, version: ModelVersion) -> bytes:
        """The version's serialized model, refused unless it still hashes to its record."""
        return self._artifacts.get(version.artifact_sha256)

    def reference_bytes(self, version: ModelVersion) -> bytes | None:
        """The stored reference sample as written (Parquet), verified like an artifact."""
        if version.reference_sha256 is None:
            return None
        return self._artifacts.get(version.reference_sha256)

    def documents(self, version: ModelVersion) -> dict[str, Any]:
        """Every side record of a version by kind: schema, importances, validation, search."""
        return self._store.documents(version.model, version.version)

    def find_by_artifact(self, model: str, artifact_sha256: str) -> list[ModelVersion]:
        """Versions of `model` holding exactly these model bytes, oldest first."""
        return self._store.find_versions(model, artifact_sha256)

    def schema(self, version: ModelVersion) -> dict[str, Any] | None:
        """The training data's schema: columns in order with kind, dtype, range, categories, nulls.

        Plain JSON; `mlinfra.data.DatasetSchema.model_validate()` gives the typed form.
        """
        return self._store.document(version.model, version.version, "schema")

    def importances(self, version: ModelVersion) -> dict[str, Any] | None:
        """Permutation importances on the test split: {"metric", "rows", "repeats",
        "features": [{"feature", "mean", "std"}, ...]}, most important feature first."""
        return self._store.document(version.model, version.version, "importances")

    def search_results(self, version: ModelVersion) -> dict[str, Any] | None:
        """The hyperparameter search that chose the params: every trial with its scores."""
        return self._store.document(version.model, version.version, "search")

    def reference_sample(self, version: ModelVersion) -> pandas.DataFrame | None:
        """A sample of the training features, with the training dtypes, for drift detection."""
        if version.reference_sha256 is None:
            return None
        from ..data import DatasetSchema, read_sample

        schema = DatasetSchema.model_validate(self.schema(version))
        return read_sample(self._artifacts.get(version.reference_sha256), schema)

    # -- aliases and tags --------------------------------------------------------------------

    def aliases(self, model: str, *, env: str) -> dict[str, int]:
        """Alias name to version number, for one environment."""
        return self._store.aliases(model, env)

    def set_alias(
        self,
        model: str,
        alias: str,
        version: int,
        *,
        env: str,
        reason: str,
        actor: str | None = None,
        expected: int | None | EllipsisType = ...,
    ) -> AliasEvent:
        """Point `alias` of `env` at `version`, recording who, when, why and from which version.

        Pass `expected` (a version, or None for "unset") to move it only if it still points there.
        """
        _check_alias(alias)
        return self._store.move_alias(
            model,
            env,
            alias,
            version,
            actor=actor or current_user(),
            reason=reason,
            expected=expected,
        )

    def remove_alias(
        self,
        model: str,
        alias: str,
        *,
        env: str,
        reason: str,
        actor: str | None = None,
        expected: int | None | EllipsisType = ...,
    ) -> AliasEvent:
        if alias not in self._store.aliases(model, env):
            raise ModelNotFoundError(f"model {model!r} has no alias {alias!r} in env {env!r}")
        return self._store.move_alias(
            model, env, alias, None, actor=actor or current_user(), reason=reason, expected=expected
        )

    def alias_history(
        self, model: str, *, env: str | None = None, alias: str | None = None
    ) -> list[AliasEvent]:
        """Every alias move of `model`, oldest first, optionally for one env and alias."""
        return self._store.alias_history(model, env, alias)

    def tag(
        self,
        version: ModelVersion,
        set_: Mapping[str, str] | None = None,
        remove: Iterable[str] = (),
    ) -> ModelVersion:
        """Set and remove free-form `key=value` tags on a version; returns the updated version."""
        set_ = dict(set_ or {})
        for key in [*set_, *remove]:
            if not _TAG_KEY.match(key):
                raise ConfigError(f"tag key {key!r}: use letters, digits, '_', '.', '-' (max 63)")
        self._store.set_tags(version.model, version.version, set_, list(remove))
        return self.get(version.model, version.version)

    # -- reports -----------------------------------------------------------------------------

    def add_report(
        self,
        version: ModelVersion,
        *,
        env: str,
        kind: str,
        passed: bool,
        body: dict[str, Any],
        markdown: str,
        created_by: str | None = None,
    ) -> Report:
        return self._store.add_report(
            version.model,
            version.version,
            env=env,
            kind=kind,
            passed=passed,
            body=body,
            markdown=markdown,
            created_by=created_by or current_user(),
        )

    def reports(self, version: ModelVersion) -> list[Report]:
        """Reports stored for a version, oldest first."""
        return self._store.reports(version.model, version.version)


def _check_alias(alias: str) -> None:
    if not ALIAS_PATTERN.match(alias):
        raise ConfigError(
            f"alias {alias!r}: use lowercase letters, digits, '_' and '-', starting with a letter; "
            "not 'latest' and not a version number"
        )
