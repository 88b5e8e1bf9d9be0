"""Commands that change what an env serves: deploy, promote, abort, rollback, rollout status.

Thin: each parses, calls one function of `mlinfra.rollout`, and renders. The web stack and
scikit-learn are never imported here; the registry loads them only when a version is checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import GateFailedError
from ._options import EnvOption, JsonOption, ModelOption, ProjectOption, resolve_env
from ._output import console, emit_json

if TYPE_CHECKING:
    from ..rollout import Rollout, StepResult, Target
    from ..serving import Deployment

__all__ = ["register"]

ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why, for the registry's audit trail.")
]


def _target(project: Path | None, env: str | None) -> Target:
    """The env's serving endpoint and registry, read from its stack's outputs."""
    from ..engine import stack_outputs
    from ..rollout import Target

    environment = resolve_env(project, env)
    outputs = stack_outputs(environment)
    return Target(
        registry=Path(outputs["registry_path"]),
        env=environment.name,
        url=str(outputs["serving_url"]),
        token=outputs.get("serving_token"),
    )


def deploy(
    version: Annotated[str, typer.Argument(help="Version to serve: 3, v3, latest or an alias.")],
    env: EnvOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    canary: Annotated[
        int | None,
        typer.Option("--canary", min=1, max=100, help="Start as a canary taking PCT% of traffic."),
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option("--steps", help="Canary weights per step, e.g. 10,25,50,100."),
    ] = None,
    interval: Annotated[
        str, typer.Option("--interval", help="Analysis window per step: 30s, 2m, 500ms.")
    ] = "30s",
    wait: Annotated[
        bool, typer.Option("--wait", help="Stay until the rollout is promoted or aborted.")
    ] = False,
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Mirror traffic to the canary; stable answers all.")
    ] = False,
    sticky_header: Annotated[
        str | None,
        typer.Option("--sticky-header", help="Same header value, same variant (A/B by user)."),
    ] = None,
    min_samples: Annotated[
        int, typer.Option("--min-samples", min=1, help="Canary requests before any verdict.")
    ] = 100,
    json_: JsonOption = False,
) -> None:
    """Serve a registered version: at once, or as a canary analysed step by step.

    With --canary or --steps, the canary takes a growing share of traffic; at every step it is
    compared with stable (errors, p99 latency, predictions) and then promoted or aborted.
    Without --model: the model the env serves, or the registry's only one.
    """
    from ..rollout import AnalysisPolicy, parse_duration, parse_steps
    from ..rollout import deploy as run_deploy

    plan = parse_steps(steps, canary) if (canary or steps or shadow) else None
    seconds = parse_duration(interval)
    target = _target(project, env)
    result = run_deploy(
        target,
        version,
        wait=wait,
        on_result=None if json_ else _print_step,
        model=model,
        steps=plan,
        interval_seconds=seconds,
        policy=AnalysisPolicy(min_samples=min_samples),
        mode="shadow" if shadow else "split",
        sticky_header=sticky_header,
    )
    _finish(result, json_=json_)


def promote(
    env: EnvOption = None,
    project: ProjectOption = None,
    reason: ReasonOption = None,
    json_: JsonOption = False,
) -> None:
    """Promote the running canary now: it takes all traffic and becomes champion."""
    from ..rollout import promote as run_promote

    _finish(run_promote(_target(project, env), reason=reason or "promoted by hand"), json_=json_)


def abort(
    env: EnvOption = None,
    project: ProjectOption = None,
    reason: ReasonOption = None,
    json_: JsonOption = False,
) -> None:
    """Abort the running canary now: all traffic goes back to stable."""
    from ..rollout import abort as run_abort

    rollout = run_abort(_target(project, env), reason=reason or "aborted by hand")
    _finish(rollout, json_=json_, failed_is_error=False)


def rollback(
    env: EnvOption = None,
    project: ProjectOption = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Version to serve (default: previous champion).")
    ] = None,
    reason: ReasonOption = None,
    json_: JsonOption = False,
) -> None:
    """Serve the previous champion (or --to VERSION) at once; a running canary is aborted."""
    from ..rollout import rollback as run_rollback

    _finish(run_rollback(_target(project, env), to=to, reason=reason), json_=json_)


def status(
    env: EnvOption = None,
    project: ProjectOption = None,
    history: Annotated[int, typer.Option("--history", min=0, help="Past events to show.")] = 10,
    json_: JsonOption = False,
) -> None:
    """What the env serves, the rollout in progress or last finished, and recent changes."""
    from ..rollout import status as read_status

    report = read_status(_target(project, env), history=history)
    if json_:
        emit_json(report)
        return
    _print_status(report)


def register(app: typer.Typer) -> None:
    for command in (deploy, promote, abort, rollback):
        app.command()(command)
    rollout = typer.Typer(name="rollout", help="Canary rollouts of an env.", no_args_is_help=True)
    rollout.command("status")(status)
    app.add_typer(rollout)


# --- rendering ----------------------------------------------------------------------------


def _finish(result: Rollout | Deployment, *, json_: bool, failed_is_error: bool = True) -> None:
    """Print the outcome; a rollout that was aborted or paused is an error for CI."""
    from ..serving import Deployment

    if json_:
        emit_json(result.model_dump(mode="json"))
    elif isinstance(result, Deployment):
        console.print(
            f"env {escape(result.env)} serves {escape(result.model)} v{result.stable} "
            f"(generation {result.generation})"
        )
    else:
        _print_rollout(result)
    if isinstance(result, Deployment):
        return
    if result.phase == "progressing" and not json_:
        console.print("follow it with `mlinfra rollout status`")
    if failed_is_error and result.phase in ("aborted", "paused"):
        raise GateFailedError(f"rollout {result.phase}: {result.reason}")


def _print_step(_rollout: Rollout, result: StepResult) -> None:
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[result.verdict]
    console.print(
        f"[{colour}]{result.verdict}[/] at {result.weight}%: "
        f"canary {_numbers(result.canary)}; stable {_numbers(result.stable)}; "
        f"{escape('; '.join(result.reasons))}"
    )


def _numbers(stats: dict[str, Any]) -> str:
    p99 = "-" if stats["p99_ms"] is None else f"{stats['p99_ms']:.1f} ms"
    return f"{stats['requests']} req, {stats['error_rate']:.2%} errors, p99 {p99}"


def _print_rollout(rollout: Rollout) -> None:
    stable = "none" if rollout.stable is None else f"v{rollout.stable}"
    console.print(
        f"rollout {rollout.id}: {escape(rollout.model)} {stable} -> v{rollout.canary}, "
        f"[bold]{rollout.phase}[/]"
        + (f" at {rollout.weight}%" if rollout.active else "")
        + (f" ({escape(rollout.reason)})" if rollout.reason else "")
    )


def _print_status(report: dict[str, Any]) -> None:
    table = report["deployment"]
    if table is None:
        console.print(f"nothing deployed in env {escape(report['env'])}; run `mlinfra deploy`")
    else:
        canary = (
            f", canary v{table['canary']} at {table['canary_weight']}% ({table['mode']})"
            if table["canary"]
            else ""
        )
        console.print(
            f"env {escape(report['env'])} serves {escape(table['model'])} v{table['stable']}"
            f"{canary} (generation {table['generation']})"
        )
    rollout = report["rollout"]
    if rollout is not None:
        steps = ", ".join(f"{s}%" for s in rollout["steps"])
        driver = "running" if report["controller_running"] else "not running"
        console.print(
            f"rollout {rollout['id']}: v{rollout['canary']} {rollout['phase']}, steps {steps}, "
            f"controller {driver}" + (f"; {escape(rollout['reason'])}" if rollout["reason"] else "")
        )
        results = Table("weight", "verdict", "canary", "stable", "PSI", "reasons", box=None)
        for result in rollout["results"]:
            results.add_row(
                f"{result['weight']}%",
                result["verdict"],
                _numbers(result["canary"]),
                _numbers(result["stable"]),
                "-" if result["psi"] is None else f"{result['psi']:.3f}",
                escape("; ".join(result["reasons"])),
            )
        if rollout["results"]:
            console.print(results)
    workers = report["workers"]
    serving = sorted({w["serving"] for w in workers if w["serving"] is not None})
    console.print(f"server workers: {len(workers)}, serving generation(s) {serving or 'none'}")
    if report["history"]:
        history = Table("at", "action", "from", "to", "by", "reason", box=None)
        for event in report["history"]:
            history.add_row(
                event["at"][:19],
                event["action"],
                str(event.get("from") or event.get("canary") or ""),
                str(event.get("to") or (f"{event['weight']}%" if "weight" in event else "")),
                event.get("actor", ""),
                escape(str(event.get("reason") or "")),
            )
        console.print(history)
