"""Options every command shares, and the one way commands find their environment."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..config import Environment, load_project
from ..errors import ConfigError

__all__ = [
    "EnvOption",
    "ForceOption",
    "ForceUnlockOption",
    "JsonOption",
    "ModelOption",
    "ProjectOption",
    "ReasonOption",
    "YesOption",
    "command_line",
    "confirm",
    "override_reason",
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
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why, for the registry's audit trail.")
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Release even though gates failed; needs --reason, kept in the audit trail.",
    ),
]


def override_reason(force: bool, reason: str | None, *, reason_alone: bool = False) -> str | None:
    """The reason a --force override records; --force needs --reason (and --reason goes with
    --force, unless the command has a reason of its own: `reason_alone`)."""
    if force and not (reason and reason.strip()):
        raise ConfigError(
            "--force needs --reason TEXT: the audit trail records why gates were overridden"
        )
    if reason and not force and not reason_alone:
        raise ConfigError("--reason goes with --force: it records why failed gates were overridden")
    return reason if force else None


def command_line() -> str:
    """The command being run, as the audit trail records it."""
    return shlex.join(["mlinfra", *sys.argv[1:]])


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
