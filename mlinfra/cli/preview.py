"""Commands over a project's envs and its branch envs (previews): `envs`, `gc`, `ci summary`.

Thin: each calls the project's API (`mlinfra.api.Project.branch_envs`, `collect_garbage`,
`Env.summary`) and renders; the branch logic lives in mlinfra.preview.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..api import open_project
from ._options import (
    BranchOption,
    EnvOption,
    JsonOption,
    ModelOption,
    ProjectOption,
    YesOption,
    confirm,
    open_env,
)
from ._output import console, emit_json

if TYPE_CHECKING:
    from ..preview import BranchEnvStatus, Collected

__all__ = ["register"]


class SummaryFormat(StrEnum):
    MARKDOWN = "markdown"
    JSON = "json"


def envs(project: ProjectOption = None, json_: JsonOption = False) -> None:
    """List the project's envs, and its branch envs with their base, port, status and age."""
    loaded = open_project(project)
    rows = [
        {
            "name": name,
            "target": settings.target,
            "engine": settings.engine,
            "port": settings.serving.port,
        }
        for name, settings in loaded.config.config.env.items()
    ]
    branches = loaded.branch_envs()
    if json_:
        emit_json(
            {
                "project": loaded.name,
                "root": str(loaded.root),
                "envs": rows,
                "branch_envs": [found.to_dict() for found in branches],
            }
        )
        return
    table = Table(
        "env", "target", "engine", "port", title=f"project {loaded.name}", title_justify="left"
    )
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("name", "target", "engine", "port")))
    console.print(table)
    if branches:
        console.print(_branch_table(branches))
    else:
        console.print("no branch envs (`mlinfra up --env ENV --branch BRANCH` makes one)")


def gc(
    project: ProjectOption = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Destroy branch envs not brought up for this long (default: each one's "
            "TTL, preview.ttl when it was last brought up): 12h, 7d.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say which branch envs would go.")
    ] = False,
    yes: YesOption = False,
    json_: JsonOption = False,
) -> None:
    """Destroy expired branch envs, data and all (they are previews), and say what went.

    A branch env that cannot be destroyed (its lock is held, a resource will not go) is
    reported and the others are still tried; the exit code is then that of the first failure.
    """
    from .._durations import parse_duration

    loaded = open_project(project)
    seconds = None if older_than is None else parse_duration(older_than, what="--older-than")
    expired = [found for found in loaded.branch_envs() if found.expired(seconds)]
    if expired and not dry_run and not json_:
        console.print(_branch_table(expired, title="expired branch envs"))
    if expired and not dry_run:
        question = f"Destroy {len(expired)} expired branch env(s), their data included?"
        if not confirm(question, yes=yes):
            raise typer.Exit(1)
    confirmed = [found.record.stack for found in expired]  # no other env, if one expires now
    done = (
        loaded.collect_garbage(older_than=seconds, dry_run=dry_run, only=confirmed)
        if expired
        else []
    )
    failed = [outcome for outcome in done if outcome.outcome == "failed"]
    if json_:
        emit_json(
            {
                "dry_run": dry_run,
                "older_than_seconds": seconds,
                "branch_envs": [outcome.to_dict() for outcome in done],
                "failed": len(failed),
            }
        )
    else:
        _print_collected(done, dry_run=dry_run)
    if failed:
        raise typer.Exit(failed[0].exit_code)


def summary(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    format_: Annotated[
        SummaryFormat, typer.Option("--format", help="markdown (for a pull request) or json.")
    ] = SummaryFormat.MARKDOWN,
) -> None:
    """A pull-request summary of a branch env: the last update's resource changes, the branch's
    model against the base env's champion, its gates, and its endpoint.

    The Markdown is also appended to $GITHUB_STEP_SUMMARY when that is set (GitHub Actions).
    """
    found = open_env(project, env, branch).summary(model)
    found.write_step_summary()
    if format_ is SummaryFormat.JSON:
        emit_json(found.to_dict())
    else:
        sys.stdout.write(found.to_markdown())


def register(app: typer.Typer) -> None:
    app.command()(envs)
    app.command()(gc)
    ci = typer.Typer(
        name="ci", help="For CI pipelines: a pull request's branch env.", no_args_is_help=True
    )
    ci.command()(summary)
    app.add_typer(ci)


def _branch_table(branches: list[BranchEnvStatus], *, title: str = "branch envs") -> Table:
    """Name, branch, base, port, status, age, expiry; `--json` has commit, creator and more."""
    table = Table(
        "name",
        "branch",
        "base",
        "port",
        "status",
        "age",
        "expires",
        title=title,
        title_justify="left",
    )
    for found in branches:
        record = found.record
        left = record.expires_at() - found.at
        table.add_row(
            record.stack,
            escape(record.branch),
            record.base,
            str(record.port),
            found.status,
            _human(found.age_seconds),
            "expired" if left <= 0 else f"in {_human(left)}",
        )
    return table


def _print_collected(done: list[Collected], *, dry_run: bool) -> None:
    if not done:
        console.print("gc: no branch env has expired")
        return
    table = Table("name", "branch", "idle", "outcome", "detail", box=None, pad_edge=False)
    for outcome in done:
        detail = outcome.error or (
            f"{outcome.deleted} resources deleted" if outcome.outcome == "destroyed" else ""
        )
        table.add_row(
            outcome.env.record.stack,
            escape(outcome.env.record.branch),
            _human(outcome.env.idle_seconds),
            outcome.outcome,
            escape(detail),
        )
    console.print(table)
    failed = sum(outcome.outcome == "failed" for outcome in done)
    if dry_run:
        console.print(f"gc: {len(done)} expired branch env(s) would be destroyed (dry run)")
    else:
        gone = len(done) - failed
        console.print(
            f"gc: destroyed {gone} of {len(done)} expired branch env(s)"
            + (f"; [red]{failed} could not be destroyed[/]" if failed else "")
        )


def _human(seconds: float) -> str:
    """Roughly, for people: 45s, 12m, 3h 5m, 6d 2h."""
    seconds = max(seconds, 0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"
