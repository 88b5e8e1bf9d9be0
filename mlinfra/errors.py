"""Errors mlinfra raises on purpose, each with the exit code the CLI returns for it.

    MlinfraError (1)
    ├── ConfigError (2)            malformed mlinfra.toml, unknown env, bad option
    ├── EngineUnavailableError (2) the pulumi engine was asked for but its CLI is missing
    ├── StateLockedError (4)       another run holds the stack's lock
    ├── StateError (4)             the state store cannot be read or written
    ├── DeploymentError (5)        a resource step failed; the rest of the state is saved
    │   └── ProtectedResourceError (5)
    ├── ValidationError (6)        data or request failed its checks
    ├── GateFailedError (7)        an evaluation gate or rollout analysis said no
    ├── RolloutConflictError (8)   a rollout is in progress: promote, abort or roll it back first
    └── DriftDetectedError (9)     `mlinfra drift --fail-on-drift` found drift

    AlertNotFoundError (1, in mlinfra.monitoring) is an MlinfraError too.

Anything else that escapes is a bug: the CLI exits 3 and writes the traceback to a log file.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeploymentError",
    "DriftDetectedError",
    "EngineUnavailableError",
    "GateFailedError",
    "MlinfraError",
    "ProtectedResourceError",
    "RolloutConflictError",
    "StateError",
    "StateLockedError",
    "ValidationError",
]


class MlinfraError(Exception):
    """A user-facing error: the message says what went wrong and what to do next."""

    exit_code = 1


class ConfigError(MlinfraError):
    exit_code = 2


class EngineUnavailableError(MlinfraError):
    exit_code = 2


class StateError(MlinfraError):
    exit_code = 4


class StateLockedError(StateError):
    exit_code = 4


class DeploymentError(MlinfraError):
    exit_code = 5


class ProtectedResourceError(DeploymentError):
    exit_code = 5


class ValidationError(MlinfraError):
    exit_code = 6


class GateFailedError(MlinfraError):
    exit_code = 7


class RolloutConflictError(MlinfraError):
    """Not a failure of anything: the env is busy with a rollout that a person or its driver
    ends; CI may wait and retry."""

    exit_code = 8


class DriftDetectedError(MlinfraError):
    """Live or current data drifted from the reference; asked for with --fail-on-drift, so that
    a batch job or CI can stop on it."""

    exit_code = 9
