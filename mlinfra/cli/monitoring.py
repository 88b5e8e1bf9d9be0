"""Commands that watch production and act on it: drift, alerts, feedback and cycle.

Thin: each parses, calls the env's API (`mlinfra.api.Env`; for `cycle`, the train, release
and deploy steps the other commands use), and renders.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError, DriftDetectedError
from ._options import (
    BranchOption,
    EnvOption,
    JsonOption,
    ModelOption,
    ProjectOption,
    YesOption,
    confirm,
    open_env,
    pinned_env,
)
from ._output import console, emit_json

if TYPE_CHECKING:
    from ..api import Env
    from ..monitoring import Alert, DriftReport, FeatureDrift

__all__ = ["register"]

FileOption = Annotated[
    Path | None, typer.Option(exists=False, dir_okay=False, help="CSV or Parquet file.")
]


def drift(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    window: Annotated[
        str | None, typer.Option("--window", help="Live traffic to compare: 30m, 1h, 1d.")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option("--reference", dir_okay=False, help="Reference data file.")
    ] = None,
    current: Annotated[
        Path | None, typer.Option("--current", dir_okay=False, help="Current data file.")
    ] = None,
    categorical: Annotated[
        list[str] | None,
        typer.Option("--categorical", help="Column to treat as categorical; repeatable."),
    ] = None,
    prediction: Annotated[
        str | None, typer.Option("--prediction", help="Column holding the model's prediction.")
    ] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 9 when the verdict is drift.")
    ] = False,
    json_: JsonOption = False,
) -> None:
    """The drift report: an env's live traffic now (--env), or two files (--reference and
    --current, CSV or Parquet, no env needed).

    Numeric features: Kolmogorov-Smirnov (Holm-adjusted), PSI and Wasserstein; categorical:
    chi-squared and Jensen-Shannon. With --fail-on-drift, a drift verdict exits 9 (for CI).
    """
    from ..monitoring import DriftSettings, compare_files

    if (reference is None) != (current is None):
        raise ConfigError("compare two files with both --reference FILE and --current FILE")
    if reference is not None and current is not None:
        if window is not None:
            raise ConfigError("--window is for an env's live traffic; the files are compared whole")
        report = compare_files(
            reference,
            current,
            DriftSettings(),
            categorical=categorical or [],
            prediction=prediction,
        )
        if json_:
            emit_json(report.model_dump(mode="json"))
        else:
            console.print(f"[bold]{escape(current.name)}[/] against {escape(reference.name)}")
            _print_report(report)
        _fail_if_drift(report, fail_on_drift)
        return
    if categorical or prediction:
        raise ConfigError("--categorical and --prediction go with --reference and --current")
    document = _observe(open_env(project, env, branch), window)
    report = document["report"]
    if json_:
        emit_json({**document, "report": report.model_dump(mode="json") if report else None})
    else:
        _print_observed(document)
    if report is not None:
        _fail_if_drift(report, fail_on_drift)


def _observe(environment: Env, window: str | None) -> dict[str, Any]:
    from .._durations import parse_duration

    seconds = None if window is None else parse_duration(window, what="--window")
    return environment.observe_drift(window_seconds=seconds)


def _fail_if_drift(report: DriftReport, fail_on_drift: bool) -> None:
    if fail_on_drift and report.verdict == "drift":
        raise DriftDetectedError(
            f"drift: {', '.join(report.drifted_features) or 'the predictions'}; "
            "`mlinfra drift` without --fail-on-drift shows the report"
        )


def alerts(
    context: typer.Context,
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    all_: Annotated[bool, typer.Option("--all", help="Include acknowledged alerts.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest alerts to show.")] = 50,
    json_: JsonOption = False,
) -> None:
    """The env's drift alerts, newest first (open ones, or --all); `alerts ack ID` marks one
    as seen."""
    if context.invoked_subcommand is not None:
        return
    environment = open_env(project, env, branch)
    found = environment.alerts(include_acknowledged=all_, limit=limit)
    if json_:
        emit_json([alert.model_dump(mode="json") for alert in found])
        return
    _print_alerts(environment.name, found, all_)


def acknowledge(
    alert_id: Annotated[int, typer.Argument(metavar="ID", help="The alert's id.")],
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    json_: JsonOption = False,
) -> None:
    """Mark an alert as seen: it is not delivered any more, and a repeat raises a new one."""
    result = open_env(project, env, branch).acknowledge(alert_id)
    if json_:
        emit_json({**result.alert.model_dump(mode="json"), "already": result.already})
    else:
        console.print(result.describe())


def feedback(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="CSV or Parquet: request_id,label.")],
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    json_: JsonOption = False,
) -> None:
    """Record the true labels of served predictions (columns request_id and label), joined by
    request id so that the monitor measures accuracy or RMSE where labels exist."""
    environment = open_env(project, env, branch)
    recorded = environment.record_labels(file)
    name = environment.name
    if json_:
        emit_json({"env": name, "labels": recorded})
    else:
        console.print(f"recorded {recorded} label{'' if recorded == 1 else 's'} for env {name}")


def cycle(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    search: Annotated[
        str | None, typer.Option(help="grid, random, halving, or none (default: as declared).")
    ] = None,
    canary: Annotated[
        int, typer.Option("--canary", min=1, max=100, help="First canary share, percent.")
    ] = 10,
    steps: Annotated[
        str | None, typer.Option("--steps", help="Canary weights per step, e.g. 10,50,100.")
    ] = None,
    interval: Annotated[
        str, typer.Option("--interval", help="Analysis window per canary step.")
    ] = "30s",
    wait: Annotated[
        bool, typer.Option("--wait", help="Stay until the canary is promoted or aborted.")
    ] = False,
    yes: YesOption = False,
    json_: JsonOption = False,
) -> None:
    """Train, evaluate (the env's gates) and deploy as a canary, in one command, recorded in
    the env's history: what the retrain policy runs when drift is confirmed.

    Failed gates exit 7 and serve nothing. With nothing served yet, the version is served at
    once; otherwise as a canary that is analysed and promoted (or aborted) step by step.
    """
    from .lifecycle._commands import train_version
    from .serving import (
        RolloutPlan,
        clear_release,
        print_result,
        raise_if_stopped,
        release_json,
        serve,
    )

    with pinned_env(project, env, branch) as environment, environment.registry() as registry:
        if not confirm(
            f"Train a new version and deploy it to env {environment.name} if its gates pass?",
            yes=yes,
        ):
            raise typer.Exit(1)
        with _recorded_in_history(environment) as summary:
            trained = train_version(
                environment,
                registry,
                model,
                params=[],
                search=search,
                trials=None,
                json_=json_,
            )
            summary["version"] = trained.version.version
            clearance = clear_release(
                environment,
                trained.version.model,
                str(trained.version.version),
                override=None,
                json_=json_,
            )
            served = environment.deployment() is not None
            plan = RolloutPlan.parse(
                canary=canary if served else None,
                steps=steps if served else None,
                interval=interval,
                wait=wait,
                shadow=False,
                sticky_header=None,
                min_samples=RolloutPlan.DEFAULT_MIN_SAMPLES,
            )
            result = serve(environment, clearance, plan=plan, json_=json_)
            summary["canary"] = int(plan.steps is not None)
    if json_:
        emit_json(
            {
                "training": trained.to_dict(),
                **release_json(clearance),
                "deployment": result.model_dump(mode="json"),
            }
        )
    else:
        print_result(result)
    raise_if_stopped(result)


@contextmanager
def _recorded_in_history(environment: Env) -> Iterator[dict[str, int]]:
    """The cycle as one record of the env's history (its summary filled in as it goes):
    succeeded, or failed with its error, or interrupted."""
    from .._identity import git_state
    from ..state import open_state

    store = open_state(environment.environment.state_dir)
    commit, dirty = git_state(environment.environment.project.root, untracked=False)
    update = store.start_update(
        environment.stack_name, "cycle", commit=commit or "", dirty=bool(dirty)
    )
    summary: dict[str, int] = {}
    try:
        yield summary
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        store.finish_update(
            update,
            result="interrupted" if interrupted else "failed",
            summary=summary,
            error="interrupted (Ctrl-C)" if interrupted else str(exc),
        )
        raise
    else:
        store.finish_update(update, result="succeeded", summary=summary)
    finally:
        store.close()


# -- rendering ----------------------------------------------------------------------------------


def _print_observed(document: dict[str, Any]) -> None:
    watching = document["watching"]
    if watching is None:
        for note in document.get("notes", []):
            console.print(note)
        return
    log = document["log"]
    console.print(
        f"env [bold]{escape(document['env'])}[/] serves {escape(watching['model'])} "
        f"v{watching['version']}; window {document['window']} to {document['checked_at']}; "
        f"log: {log['written']} rows written, {log['dropped']} dropped, {log['failed']} failed"
    )
    _print_report(document["report"])
    performance = document["performance"]
    if performance is not None and performance.get("value") is not None:
        console.print(
            f"performance: {performance['statistic']} {performance['value']:.4g} on "
            f"{performance['rows']} labelled predictions (test: "
            f"{_number(performance['reference'], '.4g')}); "
            f"{performance['verdict']}"
        )


def _print_report(report: DriftReport) -> None:
    rows = [*report.features, *([report.prediction] if report.prediction else [])]
    if report.verdict != "not enough data":
        table = Table("feature", "test", "statistic", "p (adj.)", "PSI", "W / JS", "verdict")
        for feature in rows:
            table.add_row(*_row(feature, prediction=feature is report.prediction))
        console.print(table)
    colour = {"drift": "red", "no drift": "green"}.get(report.verdict, "yellow")
    weighted = f" ({report.weighted_share:.0%} by importance)"
    console.print(
        f"[{colour}]{report.verdict}[/]: {len(report.drifted_features)} of {report.tested} "
        f"features drifted{weighted if report.weighted_by_importance else ''}, {report.rows} "
        f"rows against {report.reference_rows} reference rows"
    )
    notes = [f"{feature.feature}: {feature.note}" for feature in rows if feature.note]
    if report.verdict == "not enough data":
        notes = []
    for note in [*notes, *report.notes]:
        console.print(f"note: {escape(note)}")


def _row(feature: FeatureDrift, *, prediction: bool) -> list[str]:
    p = feature.p_value if prediction else feature.adjusted_p_value
    effect = feature.wasserstein if feature.kind == "numeric" else feature.jensen_shannon
    verdict: str = feature.status
    if feature.drifted and feature.confirmed is False:
        verdict = "drift (unconfirmed)"
    colour = "red" if feature.counts else ""
    return [
        escape(_label(feature.feature, prediction=prediction)),
        feature.test,
        _number(feature.statistic),
        _number(p, ".2g"),
        _number(feature.psi),
        _number(effect),
        f"[{colour}]{verdict}[/]" if colour else verdict,
    ]


def _label(name: str, *, prediction: bool) -> str:
    return f"{name} (prediction)" if prediction and name != "prediction" else name


def _number(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _print_alerts(env: str, found: list[Alert], all_: bool) -> None:
    if not found:
        console.print(f"no {'' if all_ else 'open '}alerts in env {env}")
        return
    table = Table("id", "severity", "kind", "feature", "last seen", "seen", "delivery")
    today = time.strftime("%Y-%m-%d")
    for alert in found:
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(alert.last_at))
        delivery = "acknowledged" if alert.acknowledged else alert.delivery.status
        table.add_row(
            str(alert.id),
            alert.severity,
            alert.kind.replace("_", " "),
            escape(alert.feature or "-"),
            seen.removeprefix(today + " "),
            f"{alert.count}x",
            delivery,
        )
    console.print(table)
    for alert in found[:5]:
        console.print(f"{alert.id}: {escape(alert.message)}")


def register(app: typer.Typer) -> None:
    app.command()(drift)
    app.command()(feedback)
    app.command()(cycle)
    group = typer.Typer(name="alerts", help="Drift alerts of an env.", invoke_without_command=True)
    group.callback()(alerts)
    group.command("ack")(acknowledge)
    app.add_typer(group)
