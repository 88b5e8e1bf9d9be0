"""Commands that change what an env serves: deploy, promote, abort, rollback, rollout status
and resume.

Thin: each parses, calls the env's API (`mlinfra.api.Env`), and renders. `deploy` and `promote`
first clear the version against the env's gates (`Env.check_release`), which imports the
project's model code; `rollback` and `abort` never ask the gates. Otherwise the web stack and
scikit-learn are never imported here; the registry loads them only to check a version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import GateFailedError
from ._options import (
    BranchOption,
    EnvOption,
    ForceOption,
    JsonOption,
    ModelOption,
    ProjectOption,
    ReasonOption,
    command_line,
    open_env,
    override_reason,
    pinned_env,
)
from ._output import console, emit_json

if TYPE_CHECKING:
    from ..api import Env
    from ..evaluation import Clearance, ReleaseRefusedError
    from ..rollout import Rollout, StepResult
    from ..serving import Deployment

__all__ = [
    "CanaryOption",
    "IntervalOption",
    "MinSamplesOption",
    "RolloutPlan",
    "ShadowOption",
    "StepsOption",
    "StickyHeaderOption",
    "WaitOption",
    "clear_release",
    "print_clearance",
    "print_result",
    "raise_if_stopped",
    "register",
    "release_json",
    "serve",
    "show_refusal",
]

CanaryOption = Annotated[
    int | None,
    typer.Option("--canary", min=1, max=100, help="Start as a canary taking PCT% of traffic."),
]
StepsOption = Annotated[
    str | None, typer.Option("--steps", help="Canary weights per step, e.g. 10,25,50,100.")
]
IntervalOption = Annotated[
    str, typer.Option("--interval", help="Analysis window per step: 30s, 2m, 500ms.")
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="Stay until the rollout is promoted or aborted.")
]
ShadowOption = Annotated[
    bool, typer.Option("--shadow", help="Mirror traffic to the canary; stable answers all.")
]
StickyHeaderOption = Annotated[
    str | None,
    typer.Option("--sticky-header", help="Same header value, same variant (A/B by user)."),
]
MinSamplesOption = Annotated[
    int, typer.Option("--min-samples", min=1, help="Canary requests before any verdict.")
]


@dataclass(frozen=True)
class RolloutPlan:
    """How a version is to be served, from the options `deploy` and `models promote` share."""

    DEFAULT_INTERVAL: ClassVar[str] = "30s"
    DEFAULT_MIN_SAMPLES: ClassVar[int] = 100

    steps: tuple[int, ...] | None  # None: at once
    interval_seconds: float
    wait: bool
    min_samples: int
    shadow: bool
    sticky_header: str | None

    @classmethod
    def parse(
        cls,
        *,
        canary: int | None,
        steps: str | None,
        interval: str,
        wait: bool,
        shadow: bool,
        sticky_header: str | None,
        min_samples: int,
    ) -> RolloutPlan:
        from ..rollout import parse_duration, parse_steps

        return cls(
            steps=parse_steps(steps, canary) if (canary or steps or shadow) else None,
            interval_seconds=parse_duration(interval),
            wait=wait,
            min_samples=min_samples,
            shadow=shadow,
            sticky_header=sticky_header,
        )


def deploy(
    version: Annotated[str, typer.Argument(help="Version to serve: 3, v3, latest or an alias.")],
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    canary: CanaryOption = None,
    steps: StepsOption = None,
    interval: IntervalOption = RolloutPlan.DEFAULT_INTERVAL,
    wait: WaitOption = False,
    shadow: ShadowOption = False,
    sticky_header: StickyHeaderOption = None,
    min_samples: MinSamplesOption = RolloutPlan.DEFAULT_MIN_SAMPLES,
    force: ForceOption = False,
    reason: ReasonOption = None,
    json_: JsonOption = False,
) -> None:
    """Serve a registered version that passed the env's gates: at once, or as a canary.

    The version's stored evaluation counts if it was made with today's gates against today's
    champion; otherwise it is evaluated now. Failed gates exit 7 unless --force --reason.
    With --canary or --steps, the canary takes a growing share of traffic; at every step it is
    compared with stable (errors, p99 latency, predictions) and then promoted or aborted.
    Without --model: the model the env serves, or the only one declared.
    """
    override = override_reason(force, reason)
    plan = RolloutPlan.parse(
        canary=canary,
        steps=steps,
        interval=interval,
        wait=wait,
        shadow=shadow,
        sticky_header=sticky_header,
        min_samples=min_samples,
    )
    with pinned_env(project, env, branch) as environment:
        name = _model_to_serve(environment, model)
        clearance = clear_release(environment, name, version, override=override, json_=json_)
        before = _generation(environment)
        result = serve(environment, clearance, plan=plan, json_=json_)
    _finish(result, json_=json_, extra=release_json(clearance), before=before)


def serve(
    environment: Env, clearance: Clearance, *, plan: RolloutPlan, json_: bool
) -> Rollout | Deployment:
    """Serve the cleared version as `plan` says; the new table, or the rollout."""
    from ..rollout import AnalysisPolicy
    from ..rollout import deploy as run_deploy

    return run_deploy(
        environment.rollout_target(),
        str(clearance.version),
        wait=plan.wait,
        on_result=None if json_ else _print_step,
        model=clearance.model,
        steps=plan.steps,
        interval_seconds=plan.interval_seconds,
        policy=AnalysisPolicy(min_samples=plan.min_samples),
        mode="shadow" if plan.shadow else "split",
        sticky_header=plan.sticky_header,
        clearance=clearance,
    )


def _model_to_serve(environment: Env, model: str | None) -> str:
    table = environment.deployment() if model is None else None
    return table.model if table is not None else environment.model_name(model)


def clear_release(
    environment: Env, model: str, ref: str, *, override: str | None, json_: bool
) -> Clearance:
    """Check version `ref` against the env's gates and show on what grounds it may serve; a
    refusal shows the failed report before its error line."""
    from ..evaluation import ReleaseRefusedError

    try:
        clearance = environment.check_release(model, ref, override=override, command=command_line())
    except ReleaseRefusedError as refused:
        show_refusal(refused, json_=json_)
        raise
    if not json_:
        print_clearance(clearance)
    return clearance


def promote(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    reason: ReasonOption = None,
    force: ForceOption = False,
    json_: JsonOption = False,
) -> None:
    """Promote the running canary now, if it passes the env's gates: it takes all traffic and
    becomes champion. Failed gates exit 7 unless --force --reason."""
    from ..evaluation import ReleaseRefusedError

    override = override_reason(force, reason, reason_alone=True)
    with pinned_env(project, env, branch) as environment:
        try:
            rollout = environment.promote(
                reason=reason or "promoted by hand", override=override, command=command_line()
            )
        except ReleaseRefusedError as refused:
            show_refusal(refused, json_=json_)
            raise
    clearance = rollout.clearance  # the one checked just now, which promote records
    if clearance is not None and not json_:
        print_clearance(clearance)
    _finish(rollout, json_=json_, extra=None if clearance is None else release_json(clearance))


def abort(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    reason: ReasonOption = None,
    json_: JsonOption = False,
) -> None:
    """Abort the running canary now: all traffic goes back to stable. Never gated."""
    rollout = open_env(project, env, branch).abort(reason=reason or "aborted by hand")
    _finish(rollout, json_=json_, failed_is_error=False)


def rollback(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Version to serve (default: previous champion).")
    ] = None,
    reason: ReasonOption = None,
    json_: JsonOption = False,
) -> None:
    """Serve the previous champion (or --to VERSION) at once; a running canary is aborted.

    Never gated: going back must work even when today's gates would refuse the old version.
    """
    with pinned_env(project, env, branch) as environment:
        before = _generation(environment)
        result = environment.rollback(to=to, reason=reason)
    _finish(result, json_=json_, before=before)


def resume(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    wait: WaitOption = False,
    json_: JsonOption = False,
) -> None:
    """Start a driver for the env's paused rollout, or one whose driver died: it goes on at the
    step where the rollout stands, with the results so far (and in the analysis window a dead
    driver left open)."""
    from ..rollout import resume as run_resume

    rollout = run_resume(
        open_env(project, env, branch).rollout_target(),
        wait=wait,
        on_result=None if json_ else _print_step,
    )
    _finish(rollout, json_=json_)


def status(
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    history: Annotated[int, typer.Option("--history", min=0, help="Past events to show.")] = 10,
    json_: JsonOption = False,
) -> None:
    """What the env serves, the rollout in progress or last finished, and recent changes."""
    report = open_env(project, env, branch).deployment_status(history=history)
    if json_:
        emit_json(report)
        return
    _print_status(report)


def register(app: typer.Typer) -> None:
    for command in (deploy, promote, abort, rollback):
        app.command()(command)
    rollout = typer.Typer(name="rollout", help="Canary rollouts of an env.", no_args_is_help=True)
    rollout.command("status")(status)
    rollout.command("resume")(resume)
    app.add_typer(rollout)


# --- rendering ----------------------------------------------------------------------------


def _generation(environment: Env) -> int | None:
    table = environment.deployment()
    return None if table is None else table.generation


def _finish(
    result: Rollout | Deployment,
    *,
    json_: bool,
    failed_is_error: bool = True,
    extra: dict[str, Any] | None = None,
    before: int | None = None,
) -> None:
    """Print the outcome (`extra` joins the JSON); an aborted or paused rollout fails CI.

    A table still at generation `before` means there was nothing to do (already served)."""
    from ..serving import Deployment

    unchanged = isinstance(result, Deployment) and result.generation == before
    if json_:
        changed = {"changed": not unchanged} if isinstance(result, Deployment) else {}
        emit_json({**result.model_dump(mode="json"), **changed, **(extra or {})})
    else:
        print_result(result, unchanged=unchanged)
    if failed_is_error:
        raise_if_stopped(result)


def print_result(result: Rollout | Deployment, *, unchanged: bool = False) -> None:
    from ..serving import Deployment

    if isinstance(result, Deployment):
        console.print(
            f"env {escape(result.env)} {'already serves' if unchanged else 'serves'} "
            f"{escape(result.model)} v{result.stable} (generation {result.generation})"
            + ("; nothing to do" if unchanged else "")
        )
        return
    _print_rollout(result)
    if result.phase == "progressing":
        console.print("follow it with `mlinfra rollout status`")


def raise_if_stopped(result: Rollout | Deployment) -> None:
    """A rollout that was aborted or paused is an error for CI (exit 7)."""
    from ..serving import Deployment

    if not isinstance(result, Deployment) and result.phase in ("aborted", "paused"):
        raise GateFailedError(f"rollout {result.phase}: {result.reason}")


def release_json(clearance: Clearance) -> dict[str, Any]:
    """The clearance and the evaluation behind it, as `--json` adds them."""
    report = clearance.report
    return {
        "clearance": clearance.model_dump(mode="json"),
        "evaluation": None if report is None else report.to_dict(),
    }


def show_refusal(refused: ReleaseRefusedError, *, json_: bool) -> None:
    """What comes before a refusal's error line: the failed evaluation, or it as JSON."""
    if json_:
        emit_json(release_json(refused.clearance))
    else:
        print_clearance(refused.clearance)


def print_clearance(clearance: Clearance) -> None:
    """The evaluation when it was made now or failed, then one line of grounds."""
    from .lifecycle._render import print_report

    report = clearance.report
    if report is not None and (clearance.evaluated_now or clearance.failed_gates):
        print_report(report)
    colour = "yellow" if clearance.forced else "red" if clearance.failed_gates else "green"
    console.print(
        f"gates of {escape(clearance.model)} v{clearance.version} in {escape(clearance.env)}: "
        f"[{colour}]{escape(clearance.grounds)}[/]",
        soft_wrap=True,
    )


def _print_step(_rollout: Rollout, result: StepResult) -> None:
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[result.verdict]
    console.print(
        f"[{colour}]{result.verdict}[/] at {result.weight}%: "
        f"canary {_numbers(result.canary)}; stable {_numbers(result.stable)}; "
        f"{escape('; '.join(result.reasons))}"
    )


def _numbers(stats: dict[str, Any]) -> str:
    """Latency at the quantile the analysis judged (p99 in records made before it was kept)."""
    quantile, tail = stats.get("tail_quantile", 0.99), stats.get("tail_ms", stats["p99_ms"])
    shown = "-" if tail is None else f"{tail:.1f} ms"
    return f"{stats['requests']} req, {stats['error_rate']:.2%} errors, p{quantile * 100:g} {shown}"


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
        console.print(
            f"rollout {rollout['id']}: v{rollout['canary']} {rollout['phase']}, steps {steps}"
            + (f"; {escape(rollout['reason'])}" if rollout["reason"] else ""),
            soft_wrap=True,
        )
        if report["driver"] is not None:
            console.print(f"driver: {_driver_line(report['driver'])}", soft_wrap=True)
        console.print(f"gates: {escape(_grounds(rollout['clearance']))}", soft_wrap=True)
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
                escape(str(event.get("reason") or event.get("gates") or "")),
            )
        console.print(history)


_WHAT_NEXT = "run `mlinfra rollout resume`, `mlinfra promote` or `mlinfra abort`"


def _driver_line(driver: dict[str, Any]) -> str:
    restarts = driver["restarts"]
    restarted = f", restarted {restarts} time{'s' * (restarts != 1)}" if restarts else ""
    if driver["state"] == "running":
        return f"running (pid {driver['pid']}{restarted})"
    if driver["state"] == "starting":
        return f"starting (its watchdog is pid {driver['watchdog_pid']}{restarted})"
    if driver["state"] == "none":
        return f"none while paused; {_WHAT_NEXT}"
    return f"dead since {driver['since'][:19].replace('T', ' ')} UTC; {_WHAT_NEXT}"


def _grounds(clearance: dict[str, Any] | None) -> str:
    from ..evaluation import Clearance

    if clearance is None:
        return "not checked (started without a gate clearance)"
    return Clearance.model_validate(clearance).grounds
