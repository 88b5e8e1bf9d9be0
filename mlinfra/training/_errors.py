"""Errors of training, in mlinfra's tree: ParameterError (2) and TrainingError (1)."""

from __future__ import annotations

from ..errors import ConfigError, MlinfraError

__all__ = ["ParameterError", "TrainingError"]


class ParameterError(ConfigError):
    """A bad --param, an unknown estimator parameter, or a search space that does not fit."""


class TrainingError(MlinfraError):
    """Training could not finish: every trial failed, or a worker process died."""
