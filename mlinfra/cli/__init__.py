"""The `mlinfra` command: thin wrappers that parse, call one library function (for an env, its
API: `mlinfra.api.Env`), and render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import __version__
from ..scaffold import Template, create_project
from ._errors import run_guarded
from ._options import BranchOption, EnvOption, ProjectOption, open_env
from ._output import console

__all__ = ["app", "main"]

app = typer.Typer(
    name="mlinfra",
    help="MLOps infrastructure as code: stacks per environment, train, evaluate, deploy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"mlinfra {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """MLOps infrastructure as code: stacks per environment, train, evaluate, deploy."""


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the project.")],
    template: Annotated[
        Template,
        typer.Option(
            help="What the model does: classification (iris) or regression (diabetes).",
        ),
    ] = Template.CLASSIFICATION,
    name: Annotated[
        str | None, typer.Option(help="Project name (default: the directory's).")
    ] = None,
) -> None:
    """Create a working project: mlinfra.toml, model code and its own stacks/ program.

    Each env gets a serving port of its own, derived from the project name and free now.
    """
    created = create_project(directory, template=template, name=name)
    ports = ", ".join(f"{env} {port}" for env, port in created.ports.items())
    console.print(
        f"created {created.config_file} from the {template} template; serving ports: {ports}",
        soft_wrap=True,
    )
    console.print(f"next: cd {directory} && mlinfra up --env dev --yes")


@app.command()
def tui(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    readonly: Annotated[
        bool, typer.Option("--readonly", help="Look only: every action is disabled.")
    ] = False,
) -> None:
    """The project's envs in a terminal, live: environments, resources, models, deployments,
    alerts, history; rollback, promote, abort, refresh and acknowledge, each confirmed first.

    Keys: `:` jumps to a view, `/` filters, `?` lists the keys, Esc goes back, q quits.
    """
    from ..tui import run  # Textual is imported for this command only

    if branch:  # the TUI finds a branch env by its own name
        env = open_env(project, env, branch).name
    run(project, env=env, readonly=readonly)


def _register_commands() -> None:
    from . import _stack

    _stack.register(app)
    for module in ("lifecycle", "serving", "monitoring", "preview", "kubernetes"):
        try:
            plugin = __import__(f"{__name__}.{module}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            continue
        plugin.register(app)


_register_commands()


def main() -> None:
    """Console entry point: every outcome becomes an exit code CI can trust."""
    raise SystemExit(run_guarded(lambda: app(standalone_mode=False)))
