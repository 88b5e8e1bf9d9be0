"""How lifecycle results look on a terminal: rich tables, and training progress bars."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from .._output import console, emit_json, error_console

if TYPE_CHECKING:
    from ...data import ValidationReport
    from ...evaluation import EvaluationReport
    from ...training import TrainResult

__all__ = [
    "TrialBars",
    "metrics_table",
    "number",
    "parameters",
    "print_alias_history",
    "print_findings",
    "print_report",
    "print_trained",
    "version_label",
]


def metrics_table(columns: dict[str, dict[str, Any]]) -> Table:
    table = Table("metric", *columns)
    names = list(dict.fromkeys(name for metrics in columns.values() for name in metrics))
    for name in names:
        table.add_row(name, *(number(metrics.get(name)) for metrics in columns.values()))
    return table


def print_report(report: EvaluationReport) -> None:
    verdict = "[green]passed[/]" if report.passed else "[bold red]FAILED[/]"
    against = (
        f" against {report.against['ref']} v{report.against['version']}" if report.against else ""
    )
    console.print(
        f"{report.model} v{report.version} in {report.env}{against}: {verdict} "
        f"({report.data['rows']} rows of {escape(report.data['source'])}; "
        f"report {report.report_id})"
    )
    table = Table("gate", "result", "detail")
    colors = {"passed": "green", "failed": "red", "skipped": "yellow"}
    for gate in report.gates:
        table.add_row(
            escape(gate.gate), f"[{colors[gate.status]}]{gate.status}[/]", escape(gate.detail)
        )
    if report.gates:
        console.print(table)
    mine = f"v{report.version}"
    theirs = f"{report.against['ref']} v{report.against['version']}" if report.against else None
    columns = {mine: report.metrics}
    if theirs and report.champion_metrics is not None:
        columns[theirs] = report.champion_metrics
    console.print(metrics_table(columns))
    for name, found in report.slices.items():
        columns = {mine: found["metrics"]}
        if theirs and found.get("champion_metrics") is not None:
            columns[theirs] = found["champion_metrics"]
        console.print(
            f"slice {escape(name)}: {escape(found['query'])} ({found['rows']} rows)", soft_wrap=True
        )
        console.print(metrics_table(columns))


def print_trained(result: TrainResult, env: str) -> None:
    """The new version, how it was found, with which parameters, and its test metrics."""
    version, search = result.version, result.search
    metric = str(version.lineage.get("metric"))
    found = ""
    if search is not None:
        found = f"; best of {search.candidates} candidate{'' if search.candidates == 1 else 's'}"
        if search.rounds > 1:
            found += f" ({len(search.trials)} trials in {search.rounds} {search.strategy} rounds)"
    console.print(
        f"registered [bold]{version.model} v{version.version}[/] in {env}: "
        f"{metric} {number(version.metrics.get(metric))} on the test split{found}",
        soft_wrap=True,
    )
    if search is not None:
        console.print(
            f"parameters found by {search.strategy} search (cv {metric} "
            f"{number(search.best.mean)}): {escape(parameters(search.best.params))}",
            soft_wrap=True,
        )
    overrides = version.lineage.get("overrides") or {}
    if overrides:
        console.print(f"parameters from --param: {escape(parameters(overrides))}", soft_wrap=True)
    console.print(metrics_table({f"v{version.version}": version.metrics}))


def parameters(values: dict[str, Any]) -> str:
    return ", ".join(f"{name}={number(value)}" for name, value in values.items()) or "-"


def print_findings(report: ValidationReport, *, title: str) -> None:
    findings = report.findings
    if not findings:
        return
    table = Table("severity", "rule", "column", "finding", title=title)
    for finding in findings:
        color = "red" if finding.severity == "error" else "yellow"
        table.add_row(
            f"[{color}]{finding.severity}[/]",
            finding.rule,
            escape(finding.column or ""),
            escape(finding.message),
        )
    error_console.print(table)


def print_alias_history(
    name: str, current: int | None, events: list[dict[str, Any]], json_: bool
) -> None:
    if json_:
        emit_json({"alias": name, "version": current, "history": events})
        return
    console.print(f"{name}: {version_label(current)}")
    table = Table("when", "who", "from", "to", "why")
    for event in events:
        table.add_row(
            event["at"][:19],
            escape(event["actor"]),
            version_label(event["from_version"]),
            version_label(event["to_version"]),
            escape(event["reason"]),
        )
    console.print(table if events else "never set")


def version_label(number: int | None) -> str:
    return "-" if number is None else f"v{number}"


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


class TrialBars:
    """Training progress on stderr: the current stage, and one bar per trial (folds done)."""

    def __init__(self, *, quiet: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[score]}"),
            TimeElapsedColumn(),
            console=error_console,
            disable=quiet,
        )
        self._stage: Any = None
        self._trials: dict[int, Any] = {}

    def __enter__(self) -> TrialBars:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.stop(failed=kind is not None)

    def stop(self, *, failed: bool = False) -> None:
        """End the display; a run that failed says so above its error, not "done"."""
        if self._stage is None:
            return  # never started: stopping would still print an empty line before an error
        self._progress.update(
            self._stage,
            description="failed" if failed else "done",
            total=1,
            completed=0 if failed else 1,
        )
        self._progress.stop()
        self._stage = None  # the `with` block's exit after an explicit stop changes nothing

    def stage(self, name: str) -> None:
        """Shown from the first stage on: errors found before any work print no bars."""
        if self._stage is None:
            self._progress.start()
            self._stage = self._progress.add_task(name, total=None, score="")
        self._progress.update(self._stage, description=name)

    def trial_started(self, trial: int, params: dict[str, Any], steps: int) -> None:
        shown = ", ".join(f"{k.rsplit('__', 1)[-1]}={v}" for k, v in params.items())
        self._trials[trial] = self._progress.add_task(
            escape(f"  trial {trial} {shown}"), total=steps, score=""
        )

    def trial_advanced(self, trial: int) -> None:
        self._progress.advance(self._trials[trial])

    def trial_finished(self, trial: int, score: float | None) -> None:
        self._progress.update(
            self._trials[trial], score="failed" if score is None else f"{score:.4f}"
        )
