"""The model registry: versions with lineage, per-env aliases with an audit trail, safe loading.

A registry is a directory::

    root/registry.db        SQLite (WAL, 0600): versions, documents, tags, aliases, reports
    root/artifacts/ab/cd..  blobs named by their sha256 (skops models, reference samples)

`initialize(root)` creates one (the RegistryStore provider calls it when an env goes up).
Everything else goes through `Registry.open(root)`::

    from mlinfra.registry import Registry

    with Registry.open(root) as registry:
        version = registry.resolve("iris", "champion", env="staging")  # or 3, "3", "v3", "latest"
        model = registry.load(version)          # sha256 verified, skops trusted types only
        schema = registry.schema(version)       # {"columns": [{"name", "kind", "dtype",
                                                #   "nullable", "min", "max", "categories"}], ...}
        registry.set_alias("iris", "champion", 4, env="staging", reason="canary passed",
                           expected=version.version)  # compare-and-set: AliasConflictError if moved
        registry.alias_history("iris", env="staging")  # who moved what, when, why, from where

Version numbers are per model name, assigned inside the registering transaction, and never reused.
A `Registry` may be shared by threads and kept open by a long-lived process (server, TUI).
"""

from .._identity import current_user
from ._errors import (
    AliasConflictError,
    ArtifactRefusedError,
    ModelNotFoundError,
    RegistryNotFoundError,
    RegistrySchemaError,
    TamperedArtifactError,
    UntrustedArtifactError,
)
from ._registry import ARTIFACTS_DIR, DATABASE_FILE, Registry, initialize
from ._store import MetadataStore
from ._transfer import Transfer, copy_version, same_registry
from ._trust import dump_model
from ._types import AliasEvent, ModelVersion, NewVersion, Report, VersionSummary

__all__ = [
    "ARTIFACTS_DIR",
    "DATABASE_FILE",
    "AliasConflictError",
    "AliasEvent",
    "ArtifactRefusedError",
    "MetadataStore",
    "ModelNotFoundError",
    "ModelVersion",
    "NewVersion",
    "Registry",
    "RegistryNotFoundError",
    "RegistrySchemaError",
    "Report",
    "TamperedArtifactError",
    "Transfer",
    "UntrustedArtifactError",
    "VersionSummary",
    "copy_version",
    "current_user",
    "dump_model",
    "initialize",
    "same_registry",
]
