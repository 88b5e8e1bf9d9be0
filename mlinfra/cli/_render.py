"""How stack results look: rich tables for people, plain dicts for --json."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from ..state import masked
from ._output import console

if TYPE_CHECKING:
    from ..api import Resource
    from ..engine import DriftReport, HeldData, PropertyDiff, RunResult, Step, StepEvent
    from ..state import KeptResource, UpdateRecord

__all__ = [
    "StepPrinter",
    "destroy_question",
    "drift_json",
    "history_json",
    "masked",
    "print_drift",
    "print_history",
    "print_kept",
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
    "keep": "[yellow]=[/]",
    "same": " ",
    "refresh": "[cyan]?[/]",
}
_DONE = {op: f"{op}d" for op in ("create", "update", "replace", "delete")} | {
    "keep": "kept",
    "refresh": "refreshed",
}


def _diff_json(diff: PropertyDiff) -> dict[str, Any]:
    return {
        "path": diff.path,
        "kind": diff.kind,
        "old": masked(diff.old),
        "new": masked(diff.new),
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
        "data_at_risk": None if step.data_at_risk is None else str(step.data_at_risk),
        "deletes_first": step.deletes_first,
        "data_move": None
        if step.data_move is None
        else {
            "what": step.data_move.what,
            "from": step.data_move.source,
            "to": step.data_move.target,
        },
    }


def result_json(result: RunResult, *, show_secrets: bool = False) -> dict[str, Any]:
    return {
        "stack": result.stack,
        "kind": result.kind,
        "engine": result.engine,
        "changed": result.changed,
        "counts": result.counts,
        "steps": [_step_json(s) for s in result.steps],
        "outputs": masked(result.outputs, show_secrets=show_secrets),
        "seconds": round(result.seconds, 3),
        "warnings": result.warnings,
        "notes": result.notes,
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
            console.print(f" {symbol} {step.op.value:8} {label}{took}{_data_note(step)}")


def _data_note(step: Step) -> str:
    """What a finished step did with the data its resource holds."""
    if step.op.value == "keep" and step.data_at_risk is not None:
        return f"  [yellow]kept: {escape(str(step.data_at_risk))}[/]"
    if step.op.value in ("delete", "replace") and step.data_at_risk is not None:
        return f"  [red]deleted {escape(str(step.data_at_risk))}[/]"
    if step.data_move is not None:
        move = step.data_move
        return f"  [yellow]moved {escape(move.what)} to {escape(move.target)}[/]"
    return ""


def _data_plan(step: Step) -> str | None:
    """What a planned step would do with the data its resource holds."""
    if step.op.value in ("delete", "replace") and step.data_at_risk is not None:
        return f"[red]would delete {escape(str(step.data_at_risk))}[/]"
    if step.data_move is not None:
        move = step.data_move
        return f"[yellow]would move {escape(move.what)} to {escape(move.target)}[/]"
    return None


def _service_plan(step: Step) -> str | None:
    """Whether a planned replacement leaves a gap: its old resource goes before the new one."""
    if step.op.value == "replace" and step.deletes_first:
        return "[yellow]stops serving while replaced (the old one is deleted first)[/]"
    return None


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
                        change = escape(f"{masked(d.old)!r} => {masked(d.new)!r}")
                        console.print(f"       {d.path}: {change}{forces}")
            for plan in (_data_plan(step), _service_plan(step)):
                if plan is not None:
                    console.print(f"       {plan}")
    counts = ", ".join(
        f"{n} to {op}" if result.kind == "preview" else f"{n} {_DONE.get(op, op)}"
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
    for note in result.notes:
        console.print(escape(note), soft_wrap=True)
    if result.outputs and result.kind != "destroy":
        print_outputs(result.outputs, show_secrets=show_secrets)


def print_outputs(outputs: dict[str, Any], *, show_secrets: bool = False) -> None:
    table = Table("output", "value", box=None, pad_edge=False)
    for key, value in sorted(outputs.items()):
        table.add_row(key, escape(str(masked(value, show_secrets=show_secrets))))
    console.print(table)


def resources_json(resources: list[Resource]) -> list[dict[str, Any]]:
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
            "outputs": r.outputs,
        }
        for r in resources
    ]


def print_status(stack: str, engine: str, resources: list[Resource], last: Any, lock: Any) -> None:
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


def print_drift(
    stack: str, reports: list[DriftReport], *, applied: bool, unread: list[Resource]
) -> None:
    """What refresh found; `unread` are the resources it has no provider to ask (components,
    old instances of replacements), so the counts add up to what `status` lists."""
    drifted = [r for r in reports if r.status != "ok"]
    for r in drifted:
        if r.status == "gone":
            console.print(f" [red]-[/] {_type_label(r.type, r.name)}: gone (deleted out of band)")
            continue
        console.print(f" [yellow]~[/] {_type_label(r.type, r.name)}: changed out of band")
        for d in r.diffs:
            console.print(f"       {d.path}: " + escape(f"{masked(d.old)!r} => {masked(d.new)!r}"))
    read = f"{_plural(len(reports), 'resource')} read"
    if not drifted:
        summary = f"{read}, all as recorded"
    elif applied:
        summary = f"{read}, {len(drifted)} drifted; state updated, run `mlinfra up` to repair"
    else:
        summary = f"{read}, {len(drifted)} drifted; `mlinfra up --refresh` repairs them"
    console.print(f"{stack}: {summary}{_unread_note(unread)}")


def _unread_note(unread: list[Resource]) -> str:
    components = sum(1 for r in unread if not r.custom)
    replaced = len(unread) - components
    notes = []
    if components:
        verb = "has" if components == 1 else "have"
        notes.append(f"{_plural(components, 'component')} {verb} nothing to read")
    if replaced:
        notes.append(f"{_plural(replaced, 'replaced resource')} waiting for deletion not read")
    return f" ({'; '.join(notes)})" if notes else ""


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def destroy_question(
    count: int, held: dict[str, HeldData], kept: list[KeptResource], *, delete_data: bool
) -> str:
    """The confirmation before a destroy, saying what happens to data held."""
    question = f"Destroy all {_plural(count, 'resource')} of this environment" if count else ""
    kept_held = [f"{k.resource.name} ({k.held})" for k in kept]
    if delete_data:
        doomed = [f"{name} with {h}" for name, h in held.items()]
        if kept_held:
            doomed.append("what an earlier destroy kept: " + ", ".join(kept_held))
        if doomed:
            verb = ", and delete " if question else "Delete "
            question += verb + "; ".join(doomed)
        return question + "?"
    notes = [f"{name} is kept, with {h} (--delete-data deletes it)" for name, h in held.items()]
    return question + "?" + "".join(f" {note}." for note in notes)


def print_kept(kept: list[KeptResource]) -> None:
    for k in kept:
        console.print(
            f"kept by an earlier destroy: {k.resource.name} ({escape(k.held)}); "
            "`mlinfra destroy --delete-data` deletes it"
        )
