"""Commands on an environment's stack: preview, up, destroy, refresh, status, outputs, history."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from . import _render as render
from ._options import (
    BranchOption,
    EnvOption,
    ForceUnlockOption,
    JsonOption,
    ProjectOption,
    YesOption,
    confirm,
    open_env,
)
from ._output import console, emit_json

if TYPE_CHECKING:
    from ..engine import RunResult

__all__ = ["register"]

ShowSecretsOption = Annotated[
    bool, typer.Option("--show-secrets", help="Show secret values instead of [secret].")
]
DeleteDataOption = Annotated[
    bool,
    typer.Option(
        "--delete-data",
        help="Also delete resources that hold data (a registry's model versions); "
        "without it they are kept.",
    ),
]


def _change(run: Callable[..., RunResult], *, json_: bool) -> None:
    """Run a change: with --json one document at the end, else each step as it happens."""
    if json_:
        emit_json(render.result_json(run()))
        return
    with render.StepPrinter() as printer:
        result = run(on_event=printer)
    render.print_result(result)


def preview(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    diff: Annotated[bool, typer.Option("--diff", help="Show every property that changes.")] = False,
    json_: JsonOption = False,
) -> None:
    """Show what `up` would change, resource by resource; changes nothing."""
    with open_env(project, env, branch).engine() as engine:
        result = engine.preview()
    if json_:
        emit_json(render.result_json(result))
    else:
        render.print_result(result, diff=diff)


def up(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    yes: YesOption = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Read real resources first and repair drift.")
    ] = False,
    force_unlock: ForceUnlockOption = False,
    delete_data: DeleteDataOption = False,
    json_: JsonOption = False,
) -> None:
    """Create or update the environment's resources to match its stack program.

    A registry holding model versions is never deleted or replaced without --delete-data.
    """
    with open_env(project, env, branch).engine() as engine:
        if not yes:
            planned = engine.preview()
            render.print_result(planned)
            if planned.changed and not confirm(f"Apply these changes to {planned.stack}?", yes=yes):
                raise typer.Exit(1)
        run = partial(
            engine.up, refresh=refresh, force_unlock=force_unlock, delete_data=delete_data
        )
        _change(run, json_=json_)


def destroy(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    yes: YesOption = False,
    force_unlock: ForceUnlockOption = False,
    delete_data: DeleteDataOption = False,
    json_: JsonOption = False,
) -> None:
    """Delete every resource of the environment: processes, ports and files it made.

    A registry holding model versions is kept (its files stay, the state forgets it) unless
    --delete-data, which also deletes what earlier destroys kept.
    """
    environment = open_env(project, env, branch)
    with environment.engine() as engine:
        count = len(engine.resources())
        kept = engine.kept()
        # a branch env's destroy --delete-data also drops its record, with nothing else left
        last_of_branch = delete_data and environment.branch is not None
        if count == 0 and not json_ and not (kept and delete_data) and not last_of_branch:
            console.print(f"{engine.env.stack_name}: nothing to destroy")
            render.print_kept(kept)
            return
        held = engine.data_at_risk() if count and not yes else {}
        question = render.destroy_question(count, held, kept, delete_data=delete_data)
        if not confirm(question, yes=yes):
            raise typer.Exit(1)
        environment.forget_last_refresh()
        run = partial(engine.destroy, force_unlock=force_unlock, delete_data=delete_data)
        _change(run, json_=json_)


def refresh(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write what was read into the state.")
    ] = False,
    force_unlock: ForceUnlockOption = False,
    json_: JsonOption = False,
) -> None:
    """Read every resource and report what changed outside mlinfra (exit 1 when drifted)."""
    environment = open_env(project, env, branch)
    reports = environment.refresh(apply=apply, force_unlock=force_unlock)
    if json_:
        emit_json({"stack": environment.stack_name, "resources": render.drift_json(reports)})
    else:
        unread = [r for r in environment.resources() if not r.custom or r.pending_delete]
        render.print_drift(environment.stack_name, reports, applied=apply, unread=unread)
    if any(r.status != "ok" for r in reports) and not apply:
        raise typer.Exit(1)


def status(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    json_: JsonOption = False,
) -> None:
    """Show the environment's resources, its last update and who holds its lock."""
    found = open_env(project, env, branch).status()
    last, lock = found.last_update, found.lock
    if json_:
        emit_json(
            {
                "stack": found.stack,
                "engine": found.engine,
                "resources": render.resources_json(found.resources),
                "kept": [
                    {"urn": k.resource.urn, "name": k.resource.name, "held": k.held}
                    for k in found.kept
                ],
                "last_update": render.history_json([last])[0] if last else None,
                "lock": dict(lock.__dict__) if lock else None,
            }
        )
    else:
        render.print_status(found.stack, found.engine, found.resources, last, lock)
        render.print_kept(found.kept)


def outputs(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    show_secrets: ShowSecretsOption = False,
    json_: JsonOption = False,
) -> None:
    """Print the stack's outputs (secrets masked unless --show-secrets)."""
    values = open_env(project, env, branch).raw_outputs()
    if json_:
        emit_json(render.masked(values, show_secrets=show_secrets))
    else:
        render.print_outputs(values, show_secrets=show_secrets)


def history(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many updates.")] = 20,
    json_: JsonOption = False,
) -> None:
    """List the stack's updates: when, who, which commit, what changed, how it ended."""
    records = open_env(project, env, branch).history(limit=limit)
    if json_:
        emit_json(render.history_json(records))
    else:
        render.print_history(records)


def register(app: typer.Typer) -> None:
    from . import _state

    for command in (preview, up, destroy, refresh, status, outputs, history):
        app.command()(command)
    _state.register(app)
