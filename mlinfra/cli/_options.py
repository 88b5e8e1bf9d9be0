"""Options every command shares, and the one way commands find their environment."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ..api import Env, open_project
from ..errors import ConfigError

__all__ = [
    "BranchOption",
    "EnvOption",
    "ForceOption",
    "ForceUnlockOption",
    "JsonOption",
    "ModelOption",
    "ProjectOption",
    "ReasonOption",
    "VersionArgument",
    "YesOption",
    "command_line",
    "confirm",
    "open_env",
    "override_reason",
    "pinned_env",
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
BranchOption = Annotated[
    str | None,
    typer.Option(
        "--branch",
        envvar="MLINFRA_BRANCH",
        help="Act on this branch's own env, derived from --env (made by `up`; see "
        "docs/preview-envs.md).",
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
VersionArgument = Annotated[
    str, typer.Argument(help="Version: 3, v3, latest, or an alias of the env (champion).")
]
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


def open_env(project_dir: Path | None, env_name: str | None, branch: str | None = None) -> Env:
    """The environment a command acts on; without --env, the project's only one; with
    --branch, that branch's env derived from it."""
    return open_project(project_dir).env(env_name, branch=branch or None)


@contextmanager
def pinned_env(
    project_dir: Path | None, env_name: str | None, branch: str | None = None
) -> Iterator[Env]:
    """The environment a command acts on, its stack's outputs read once for the command
    (EnvNotUpError before `mlinfra up`; ConfigError naming an export the stack lacks)."""
    environment = open_env(project_dir, env_name, branch)
    with environment.pinned():
        yield environment


def confirm(question: str, *, yes: bool) -> bool:
    """Ask before a change; with no terminal to ask on, refuse unless --yes was given."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise ConfigError(f"{question} needs confirmation and no terminal is attached; pass --yes")
    return typer.confirm(question, default=False)
