"""`mlinfra train` and `mlinfra evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ...errors import ConfigError
from .._options import EnvOption, JsonOption, ModelOption, ProjectOption
from .._output import emit_json
from ._context import VersionArgument, definition, open_registry
from ._render import TrialBars, print_findings, print_report, print_trained

__all__ = ["evaluate", "train"]


def train(
    model: Annotated[
        str | None, typer.Argument(help="Model to train (default: the only one).")
    ] = None,
    env: EnvOption = None,
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
    from ...data import DataValidationError
    from ...training import parse_overrides
    from ...training import train as run_training

    if search not in (None, "grid", "random", "halving", "none"):
        raise ConfigError(f"--search {search!r}: choose grid, random, halving or none")
    overrides = parse_overrides(param or [])
    with (
        open_registry(project, env) as (environment, registry, outputs),
        TrialBars(quiet=json_) as bars,
    ):
        declared = definition(environment, model)
        try:
            result = run_training(
                declared,
                registry=registry,
                env=environment.name,
                workspace=Path(outputs["training_workspace"]),
                workers=int(outputs["training_workers"]),
                code_paths=outputs.get("training_code_paths"),  # None from a stack without it
                params=overrides,
                search=search,  # type: ignore[arg-type]
                trials=trials,
                progress=bars,
            )
        except DataValidationError as exc:
            bars.stop(failed=True)
            print_findings(exc.report, title="data checks failed; nothing was trained")
            raise
    if json_:
        emit_json(result.to_dict())
        return
    print_findings(result.validation, title="data warnings")
    print_trained(result, environment.name)


def evaluate(
    version: VersionArgument,
    env: EnvOption = None,
    project: ProjectOption = None,
    model: ModelOption = None,
    against: Annotated[
        str, typer.Option(help="Version or alias to compare with; 'none' to compare with none.")
    ] = "champion",
    json_: JsonOption = False,
) -> None:
    """Score a version on the env's evaluation data and check its gates; exit 7 if one fails."""
    from ...evaluation import evaluate_declared

    with open_registry(project, env) as (environment, registry, _):
        declared = definition(environment, model)
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
