"""Errors the registry raises, placed in mlinfra's tree so the CLI maps them to exit codes.

MlinfraError
├── ModelNotFoundError (1)        no such model, version or alias
├── StateError
│   ├── RegistryNotFoundError (4) the path holds no registry (the env is not up)
│   ├── RegistrySchemaError (4)   the registry was written by an older or newer mlinfra
│   └── AliasConflictError (4)    an alias moved under a compare-and-set
└── ValidationError
    └── ArtifactRefusedError (6)  an artifact failed its checks and was not loaded
        ├── TamperedArtifactError    missing, or its sha256 differs from the record
        └── UntrustedArtifactError   it holds types outside the trusted set
"""

from __future__ import annotations

from ..errors import MlinfraError, StateError, ValidationError

__all__ = [
    "AliasConflictError",
    "ArtifactRefusedError",
    "ModelNotFoundError",
    "RegistryNotFoundError",
    "RegistrySchemaError",
    "TamperedArtifactError",
    "UntrustedArtifactError",
]


class ModelNotFoundError(MlinfraError):
    exit_code = 1


class RegistryNotFoundError(StateError):
    pass


class RegistrySchemaError(StateError):
    pass


class AliasConflictError(StateError):
    pass


class ArtifactRefusedError(ValidationError):
    pass


class TamperedArtifactError(ArtifactRefusedError):
    pass


class UntrustedArtifactError(ArtifactRefusedError):
    pass
