"""How stack results look: rich tables for people, plain dicts for --json."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from ..state import is_secret
from ._output import console

if TYPE_CHECKING:
    from ..engine import DriftReport, PropertyDiff, RunResult, Step, StepEvent
    from ..state import ResourceState, UpdateRecord

__all__ = [
    "StepPrinter",
    "drift_json",
    "history_json",
    "mask",
    "print_drift",
    "print_history",
    "print_outputs",
    "print_result",
    "print_status",
    "resources_json",
    "result_json",
]

_SYMBOLS = {
    "create": "[green]+[/]",
    "update": "[yellow]~[/]",
    "replace": "[magenta]+-[/]",
    "delete": "[red]-[/]",
    "same": " ",
    "refresh": "[cyan]?[/]",
}


def mask(value: Any, *, show_secrets: bool = False) -> Any:
    """Secrets become "[secret]"; values not known until `up` become "(known after up)"."""
    if isinstance(value, dict):
        if is_secret(value):
            return mask(value.get("value"), show_secrets=True) if show_secrets else "[secret]"
        return {k: mask(v, show_secrets=show_secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, show_secrets=show_secrets) for v in value]
    if value == "04da6b54-80e4-46f7-96ec-b56ff0331ba9" or type(value).__name__ == "Unknown":
        return "(known after up)"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _diff_json(diff: PropertyDiff) -> dict[str, Any]:
    return {
        "path": diff.path,
        "kind": diff.kind,
        "old": mask(diff.old),
        "new": mask(diff.new),
        "replaces": diff.replaces,
    }


def _step_json(step: Step) -> dict[str, Any]:
    return {
        "urn": step.urn,
        "type": step.type,
        "name": step.name,
        "op": step.op.value,
        "diffs": [_diff_json(d) for d in step.diffs],
        "error": step.error,
    }


def result_json(result: RunResult, *, show_secrets: bool = False) -> dict[str, Any]:
    return {
        "stack": result.stack,
        "kind": result.kind,
        "engine": result.engine,
        "changed": result.changed,
        "counts": result.counts,
        "steps": [_step_json(s) for s in result.steps],
        "outputs": mask(result.outputs, show_secrets=show_secrets),
        "seconds": round(result.seconds, 3),
        "warnings": result.warnings,
    }


def _type_label(step_type: str, name: str) -> str:
    return step_type.rsplit(":", 1)[-1] + " " + name


class StepPrinter:
    """Prints each step as it finishes, so a long `up` shows its progress live."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._status = console.status("starting", spinner="dots")

    def __enter__(self) -> StepPrinter:
        self._status.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._status.stop()

    def __call__(self, event: StepEvent) -> None:
        step = event.step
        key = f"{step.urn}:{step.op.value}"
        if event.phase == "start":
            self._started[key] = time.perf_counter()
            self._status.update(f"{step.op.value} {step.name} ...")
            return
        if step.op.value == "same":
            return
        began = self._started.pop(key, None)
        took = f"  [dim]{time.perf_counter() - began:.1f}s[/]" if began is not None else ""
        symbol = _SYMBOLS[step.op.value]
        label = _type_label(step.type, step.name)
        if event.phase == "failed":
            console.print(f" [red]x[/] {step.op.value:8} {label}  [red]{escape(step.error)}[/]")
        else:
            console.print(f" {symbol} {step.op.value:8} {label}{took}")


def print_result(result: RunResult, *, diff: bool = False, show_secrets: bool = False) -> None:
    changes = [s for s in result.steps if s.op.value != "same"]
    if result.kind == "preview":
        for step in changes:
            console.print(
                f" {_SYMBOLS[step.op.value]} {step.op.value:8} {_type_label(step.type, step.name)}"
            )
            if diff or step.op.value in ("update", "replace"):
                for d in step.diffs:
                    forces = " [magenta](forces replacement)[/]" if d.replaces else ""
                    if diff or d.kind == "update":
                        change = escape(f"{mask(d.old)!r} => {mask(d.new)!r}")
                        console.print(f"       {d.path}: {change}{forces}")
    counts = ", ".join(
        f"{n} to {op}" if result.kind == "preview" else f"{n} {op}d"
        for op, n in sorted(result.counts.items())
        if op != "same"
    )
    same = result.counts.get("same", 0)
    summary = counts or "no changes"
    console.print(
        f"[bold]{result.kind}[/] of [bold]{result.stack}[/] ({result.engine} engine): {summary}"
        + (f", {same} unchanged" if same else "")
        + f" [dim]in {result.seconds:.2f}s[/]"
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if result.outputs and result.kind != "destroy":
        print_outputs(result.outputs, show_secrets=show_secrets)


def print_outputs(outputs: dict[str, Any], *, show_secrets: bool = False) -> None:
    table = Table("output", "value", box=None, pad_edge=False)
    for key, value in sorted(outputs.items()):
        table.add_row(key, escape(str(mask(value, show_secrets=show_secrets))))
    console.print(table)


def resources_json(resources: list[ResourceState]) -> list[dict[str, Any]]:
    return [
        {
            "urn": r.urn,
            "type": r.type,
            "name": r.name,
            "id": r.id,
            "custom": r.custom,
            "parent": r.parent,
            "dependencies": r.dependencies,
            "protect": r.protect,
            "pending_delete": r.pending_delete,
            "outputs": mask({k: v for k, v in r.outputs.items() if k != "__provider"}),
        }
        for r in resources
    ]


def print_status(
    stack: str, engine: str, resources: list[ResourceState], last: Any, lock: Any
) -> None:
    table = Table("type", "name", "id", title=f"{stack} ({engine} engine)", title_justify="left")
    for r in resources:
        marker = " [red](pending delete)[/]" if r.pending_delete else ""
        table.add_row(r.type.rsplit(":", 1)[-1], r.name + marker, r.id or "-")
    console.print(table if resources else f"{stack}: no resources (run `mlinfra up`)")
    if last is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.started))
        console.print(f"last update: {last.kind} {last.result} at {when} by {last.user}")
    if lock is not None:
        console.print(f"[yellow]locked[/] by `{lock.command}` (pid {lock.pid} on {lock.host})")


def history_json(records: list[UpdateRecord]) -> list[dict[str, Any]]:
    return [dict(r.__dict__) for r in records]


def print_history(records: list[UpdateRecord]) -> None:
    table = Table("#", "kind", "result", "started", "took", "user", "commit", "changes")
    for r in records:
        took = f"{r.finished - r.started:.1f}s" if r.finished else "-"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started))
        commit = (r.commit[:8] + ("+dirty" if r.dirty else "")) if r.commit else "-"
        changes = ", ".join(f"{op} {n}" for op, n in sorted(r.summary.items())) or "-"
        colour = {"succeeded": "green", "failed": "red"}.get(r.result, "yellow")
        table.add_row(
            str(r.id), r.kind, f"[{colour}]{r.result}[/]", when, took, r.user, commit, changes
        )
    console.print(table if records else "no updates yet")


def drift_json(reports: list[DriftReport]) -> list[dict[str, Any]]:
    return [
        {
            "urn": r.urn,
            "type": r.type,
            "name": r.name,
            "status": r.status,
            "diffs": [_diff_json(d) for d in r.diffs],
        }
        for r in reports
    ]


def print_drift(stack: str, reports: list[DriftReport], *, applied: bool) -> None:
    drifted = [r for r in reports if r.status != "ok"]
    for r in drifted:
        if r.status == "gone":
            console.print(f" [red]-[/] {_type_label(r.type, r.name)}: gone (deleted out of band)")
            continue
        console.print(f" [yellow]~[/] {_type_label(r.type, r.name)}: changed out of band")
        for d in r.diffs:
            console.print(f"       {d.path}: " + escape(f"{mask(d.old)!r} => {mask(d.new)!r}"))
    if not drifted:
        console.print(f"{stack}: all {len(reports)} resources match the state")
    elif applied:
        console.print(f"{stack}: state updated; run `mlinfra up` to repair")
    else:
        console.print(f"{stack}: {len(drifted)} drifted; `mlinfra up --refresh` repairs them")
