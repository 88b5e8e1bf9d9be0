"""`mlinfra state backups|recover`: the embedded engine's state.db, its backups, restoring one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ._options import JsonOption, ProjectOption, YesOption, confirm
from ._output import console, emit_json

if TYPE_CHECKING:
    from datetime import datetime

    from ..state import Recovery, RecoveryPlan, StateFile

__all__ = ["register"]

FromOption = Annotated[
    Path | None,
    typer.Option(
        "--from",
        exists=True,
        dir_okay=False,
        help="Restore this file (a backup, or a copy of your own), even if state.db is sound.",
    ),
]


def _state_dir(project: Path | None) -> Path:
    from ..config import load_project

    return load_project(project).state_dir


def backups(project: ProjectOption = None, json_: JsonOption = False) -> None:
    """List the backups of state.db (one is taken before each update), newest first, checked."""
    from ..state import inspect_state_file, list_backups

    state_dir = _state_dir(project)
    found = [(b, inspect_state_file(b.path)) for b in reversed(list_backups(state_dir))]
    if json_:
        emit_json(
            [
                {**_file_json(held), "taken_at": b.taken_at.isoformat(), "update_id": b.update_id}
                for b, held in found
            ]
        )
        return
    if not found:
        console.print(f"no backups in {state_dir / 'backups'}; `mlinfra up` takes one each time")
        return
    table = Table("taken", "before update", "holds", "check", "file", title=str(state_dir))
    for backup, held in found:
        table.add_row(
            _when(backup.taken_at),
            _update_label(held) or str(backup.update_id),
            _holds(held),
            "[green]ok[/]" if held.problem is None else f"[red]{escape(held.problem)}[/]",
            escape(backup.path.name),
        )
    console.print(table)


def recover(
    project: ProjectOption = None,
    from_: FromOption = None,
    yes: YesOption = False,
    json_: JsonOption = False,
) -> None:
    """Check state.db and, if it is damaged, missing or empty, restore the newest good backup.

    The file it replaces is renamed aside (state.db.damaged-TIME), never deleted.
    """
    from ..state import plan_recovery
    from ..state import recover as restore

    plan = plan_recovery(_state_dir(project), source=from_)
    current = plan.current
    if plan.source is None:
        if json_:
            emit_json({"state": _file_json(current), "restored": None})
        else:
            console.print(
                f"{current.path} is sound ({_holds(current)}); nothing to restore "
                "(`--from FILE` restores one anyway; `mlinfra state backups` lists them)",
                soft_wrap=True,
            )
        return
    if not json_:
        state = "sound" if current.problem is None else escape(current.problem)
        console.print(f"{current.path} is {state}", soft_wrap=True)
        console.print(f"would restore {_source_label(plan)}", soft_wrap=True)
    if not confirm(f"Restore {plan.source.path.name} as {current.path.name}?", yes=yes):
        raise typer.Exit(1)
    done = restore(plan)
    if json_:
        emit_json(_recovery_json(done))
        return
    aside = f"is kept as {done.moved_aside[0]}" if done.moved_aside else "was missing"
    console.print(
        f"restored {current.path} from {_source_label(plan)}; the file it replaced {aside}. "
        "Changes made after that backup are not in it: run `mlinfra refresh --env ENV` to "
        "compare with what runs now",
        soft_wrap=True,
    )


def _source_label(plan: RecoveryPlan) -> str:
    """The file to restore, when it was made and what it holds."""
    assert plan.source is not None and plan.taken_at is not None
    update = _update_label(plan.source)
    if plan.backup is not None:
        made = f"taken {_when(plan.taken_at)}" + (f" before update {update}" if update else "")
    else:
        made = f"written {_when(plan.taken_at)}" + (f", last update {update}" if update else "")
    return f"{plan.source.path}, {made}, with {_holds(plan.source)}"


def _update_label(held: StateFile) -> str:
    last = held.last_update
    return f"{last.id} ({last.kind} of {last.stack})" if last else ""


def _holds(held: StateFile) -> str:
    if held.problem is not None:
        return "-"
    total = sum(held.resources.values())
    stacks = ", ".join(f"{stack} {count}" for stack, count in sorted(held.resources.items()))
    return f"{total} resources ({stacks})" if total else "no resources"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _file_json(held: StateFile) -> dict[str, Any]:
    last = held.last_update
    return {
        "path": str(held.path),
        "problem": held.problem,
        "resources": held.resources,
        "last_update": {"id": last.id, "stack": last.stack, "kind": last.kind} if last else None,
    }


def _recovery_json(done: Recovery) -> dict[str, Any]:
    plan = done.plan
    assert plan.source is not None and plan.taken_at is not None
    return {
        "state": _file_json(plan.current),
        "restored": {**_file_json(plan.source), "taken_at": plan.taken_at.isoformat()},
        "moved_aside": [str(path) for path in done.moved_aside],
    }


def register(app: typer.Typer) -> None:
    """Add `mlinfra state` to the app."""
    group = typer.Typer(
        name="state",
        help="The embedded engine's state.db: its backups, and restoring one.",
        no_args_is_help=True,
    )
    group.command()(backups)
    group.command()(recover)
    app.add_typer(group, name="state")
