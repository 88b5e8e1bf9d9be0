"""`mlinfra train` and `mlinfra evaluate`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ...errors import ConfigError
from .._options import (
    BranchOption,
    EnvOption,
    JsonOption,
    ModelOption,
    ProjectOption,
    VersionArgument,
    pinned_env,
)
from .._output import emit_json
from ._render import TrialBars, print_findings, print_report, print_trained

if TYPE_CHECKING:
    from ...api import Env
    from ...registry import Registry
    from ...training import TrainResult

__all__ = ["evaluate", "train", "train_version"]


def train(
    model: Annotated[
        str | None, typer.Argument(help="Model to train (default: the only one).")
    ] = None,
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Estimator parameter as key=value; repeatable."),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            help="grid, random, halving, or none (default: search when a space is declared)."
        ),
    ] = None,
    trials: Annotated[
        int | None, typer.Option(min=1, help="Candidates for random and halving search.")
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Check the data, search, fit and register a new version on the env's training cluster."""
    if search not in (None, "grid", "random", "halving", "none"):
        raise ConfigError(f"--search {search!r}: choose grid, random, halving or none")
    with pinned_env(project, env, branch) as environment, environment.registry() as registry:
        result = train_version(
            environment,
            registry,
            model,
            params=param or [],
            search=search,
            trials=trials,
            json_=json_,
        )
    if json_:
        emit_json(result.to_dict())


def train_version(
    environment: Env,
    registry: Registry,
    model: str | None,
    *,
    params: list[str],
    search: str | None,
    trials: int | None,
    json_: bool,
) -> TrainResult:
    """Train and register a version on the env's training cluster, with progress bars and,
    unless `json_`, what was registered (data checks that fail are shown, then raised)."""
    from ...data import DataValidationError
    from ...training import parse_overrides
    from ...training import train as run_training

    overrides = parse_overrides(params)
    outputs = environment.outputs()
    with TrialBars(quiet=json_) as bars:
        declared = environment.definition(model)
        try:
            result = run_training(
                declared,
                registry=registry,
                env=environment.name,
                workspace=outputs.training_workspace,
                scheduler=outputs.training_scheduler,
                code_paths=outputs.training_code_paths,  # None from a stack without it
                params=overrides,
                search=search,  # type: ignore[arg-type]
                trials=trials,
                progress=bars,
            )
        except DataValidationError as exc:
            bars.stop(failed=True)
            print_findings(exc.report, title="data checks failed; nothing was trained")
            raise
    if not json_:
        print_findings(result.validation, title="data warnings")
        print_trained(result, environment.name)
    return result


def evaluate(
    version: VersionArgument,
    env: EnvOption = None,
    branch: BranchOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    against: Annotated[
        str, typer.Option(help="Version or alias to compare with; 'none' to compare with none.")
    ] = "champion",
    json_: JsonOption = False,
) -> None:
    """Score a version on the env's evaluation data and check its gates; exit 7 if one fails."""
    from ...evaluation import evaluate_declared

    with pinned_env(project, env, branch) as environment, environment.registry() as registry:
        declared = environment.definition(model)
        report = evaluate_declared(
            declared,
            registry,
            version,
            env=environment.name,
            against=None if against == "none" else against,
        )
    if json_:
        emit_json(report.to_dict())
    else:
        print_report(report)
    report.raise_if_failed()
