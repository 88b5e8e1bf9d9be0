"""How lifecycle commands find their env, registry and model: through the stack's outputs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ...errors import ConfigError
from .._options import resolve_env

if TYPE_CHECKING:
    from ...config import Environment
    from ...registry import Registry
    from ...training import ModelDefinition

__all__ = ["VersionArgument", "definition", "env_outputs", "model_name", "open_registry"]

VersionArgument = Annotated[
    str, typer.Argument(help="Version: 3, v3, latest, or an alias of the env (champion).")
]


def env_outputs(project: Path | None, env: str | None) -> tuple[Environment, dict[str, Any]]:
    """The env and its stack's outputs (registry_path, serving_url, ...); the env must be up."""
    from ...engine import stack_outputs

    environment = resolve_env(project, env)
    return environment, stack_outputs(environment)


@contextmanager
def open_registry(
    project: Path | None, env: str | None
) -> Iterator[tuple[Environment, Registry, dict[str, Any]]]:
    """The env, its registry and its stack's outputs (the env must be up)."""
    from ...registry import Registry

    environment, outputs = env_outputs(project, env)
    with Registry.open(outputs["registry_path"]) as registry:
        yield environment, registry, outputs


def model_name(environment: Environment, model: str | None) -> str:
    declared = list(environment.project.config.models)
    if model is not None:
        return model
    if len(declared) == 1:
        return declared[0]
    raise ConfigError(f"choose a model with --model: {', '.join(declared) or 'none declared'}")


def definition(environment: Environment, model: str | None) -> ModelDefinition:
    """The model's entry points, imported from the user's project."""
    from ...training import load_definition

    name = model_name(environment, model)
    spec = environment.project.config.models.get(name)
    if spec is None:
        raise ConfigError(f"no [models.{name}] in {environment.project.config_file}")
    return load_definition(name, spec, environment.project.root)
