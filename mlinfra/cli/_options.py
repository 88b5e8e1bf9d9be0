"""Options every command shares, and the one way commands find their environment."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..config import Environment, load_project
from ..errors import ConfigError

__all__ = [
    "EnvOption",
    "ForceUnlockOption",
    "JsonOption",
    "ModelOption",
    "ProjectOption",
    "YesOption",
    "confirm",
    "resolve_env",
]

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        "-e",
        envvar="MLINFRA_ENV",
        help="Environment, as named by [env.NAME] in mlinfra.toml.",
    ),
]
ProjectOption = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-C",
        envvar="MLINFRA_PROJECT_DIR",
        help="Project directory (default: found from the current directory upwards).",
        file_okay=False,
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model name, as in [models.NAME] (default: the only one)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts and CI.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ForceUnlockOption = Annotated[
    bool,
    typer.Option("--force-unlock", help="Take the stack's lock even if another run holds it."),
]


def resolve_env(project_dir: Path | None, env_name: str | None) -> Environment:
    """The environment a command acts on; without --env, the project's only one."""
    project = load_project(project_dir)
    if env_name is None:
        if len(project.env_names) == 1:
            return project.environment(project.env_names[0])
        known = ", ".join(project.env_names)
        raise ConfigError(f"choose an environment with --env (or MLINFRA_ENV): {known}")
    return project.environment(env_name)


def confirm(question: str, *, yes: bool) -> bool:
    """Ask before a change; with no terminal to ask on, refuse unless --yes was given."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError(f"{question} needs confirmation and no terminal is attached; pass --yes")
    return typer.confirm(question, default=False)
