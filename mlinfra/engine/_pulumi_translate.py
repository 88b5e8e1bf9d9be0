"""Pulumi's events, exports and history, translated into mlinfra's records.

Apart from the engine (_pulumi.py), which drives the CLI: everything here reads what the CLI
reported, so it is tested on pulumi's own JSON, without a CLI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import dropwhile
from pathlib import Path
from typing import Any

import pulumi.automation as auto

from ..state import LockHolder, ResourceState, UpdateRecord
from ._diff import INTERNAL_KEYS, diff_properties
from ._program import STACK_TYPE
from ._providers import is_secret, wrap_secret
from ._types import DriftReport, EventSink, Op, PropertyDiff, Step, StepEvent

__all__ = [
    "GENERIC_FAILURES",
    "DriftCollector",
    "EventReader",
    "StepCollector",
    "clean_message",
    "command_streams",
    "from_state",
    "lock_holder_from_file",
    "masked",
    "raised_error",
    "resources_from_deployment",
    "step_diffs",
    "update_record",
    "useful_line",
    "wrapped_outputs",
]

PROVIDER_TYPE_PREFIX = "pulumi:providers:"
SECRET_MASK = "[secret]"
# Pulumi's step ops onto ours. A replacement arrives as create-replacement + replace (one step
# of ours) and delete-replaced (a delete of the old instance, as the embedded engine shows it).
_OPS = {
    "same": Op.SAME,
    "read": Op.SAME,
    "create": Op.CREATE,
    "import": Op.CREATE,
    "update": Op.UPDATE,
    "replace": Op.REPLACE,
    "create-replacement": Op.REPLACE,
    "import-replacement": Op.REPLACE,
    "read-replacement": Op.REPLACE,
    "delete": Op.DELETE,
    "discard": Op.DELETE,
    "delete-replaced": Op.DELETE,
    "discard-replaced": Op.DELETE,
    "refresh": Op.REFRESH,
}
_REPLACED_OPS = frozenset({"delete-replaced", "discard-replaced"})
_KINDS = {"update": "up"}
_COLOR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|<\{%[^%]*%\}>")
_PATH_TOKEN = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]|\.?([^.\[\]]+)')
_RUNNER = re.compile(r" by (?P<user>[^@\s]+)@(?P<host>\S+)$")
_TRACEBACK = "Traceback (most recent call last):"
GENERIC_FAILURES = re.compile(r"^(error: )?(update|preview|refresh|destroy) failed$")


# Engine events -> steps and drift


class EventReader:
    """Reads one operation's engine events; the Automation API delivers them from one stream,
    so one thread at a time."""

    def __init__(self) -> None:
        self.failures: list[Step] = []
        self.general_errors: list[str] = []
        self._errors: dict[str, str] = {}

    def __call__(self, event: auto.EngineEvent) -> None:
        if event.diagnostic_event is not None:
            diagnostic = event.diagnostic_event
            if diagnostic.severity == "error":
                message = raised_error(diagnostic.message)
                # Errors filed under the stack or a provider are about the run, not a resource.
                if diagnostic.urn and not _bookkeeping(_urn_type(diagnostic.urn)):
                    self._errors[diagnostic.urn] = message
                else:
                    self.general_errors.append(message)
        elif event.resource_pre_event is not None:
            self.pre(event.resource_pre_event.metadata)
        elif event.res_outputs_event is not None:
            self.done(event.res_outputs_event.metadata)
        elif event.res_op_failed_event is not None:
            self.failed(event.res_op_failed_event.metadata)

    def error_for(self, urn: str) -> str:
        return self._errors.get(urn, "")

    def pre(self, meta: auto.StepEventMetadata) -> None:
        return None

    def done(self, meta: auto.StepEventMetadata) -> None:
        return None

    def failed(self, meta: auto.StepEventMetadata) -> None:
        return None


class StepCollector(EventReader):
    """Steps of a preview, up or destroy, sent on to the caller's sink as they happen."""

    def __init__(self, on_event: EventSink | None = None) -> None:
        super().__init__()
        self._on_event = on_event
        self._steps: dict[tuple[str, bool], Step] = {}
        self._finished: set[tuple[str, bool]] = set()
        self.outputs: dict[str, Any] = {}
        """The stack's outputs as the last event showed them (unknowns in a preview)."""

    @property
    def steps(self) -> list[Step]:
        return list(self._steps.values())

    def pre(self, meta: auto.StepEventMetadata) -> None:
        op = _OPS.get(meta.op.value)
        # Refresh steps inside `up --refresh` are not changes of the update.
        if op is None or op is Op.REFRESH or _bookkeeping(meta.type):
            return
        key = _step_key(meta)
        step = self._steps.get(key)
        if step is None:
            step = Step(urn=meta.urn, type=meta.type, name=_name(meta.urn), op=op)
            if key[1]:
                step.name = f"{step.name} (replaced)"
            self._steps[key] = step
            if op is not Op.SAME:
                self._emit(step, "start")
        if not step.diffs:
            step.diffs = step_diffs(meta, op)

    def done(self, meta: auto.StepEventMetadata) -> None:
        if meta.type == STACK_TYPE:
            if meta.new is not None:
                self.outputs = dict(meta.new.outputs or {})
            return
        key = _step_key(meta)
        step = self._steps.get(key)
        if step is not None and key not in self._finished:
            self._finished.add(key)
            self._emit(step, "done")

    def failed(self, meta: auto.StepEventMetadata) -> None:
        self.pre(meta)
        key = _step_key(meta)
        step = self._steps.get(key)
        if step is None:
            return
        step.error = self.error_for(meta.urn) or f"{meta.op.value} failed"
        self.failures.append(step)
        self._finished.add(key)
        self._emit(step, "failed")

    def _emit(self, step: Step, phase: str) -> None:
        if self._on_event is not None:
            self._on_event(StepEvent(step=step, phase=phase))


class DriftCollector(EventReader):
    """What a refresh found: pulumi reports a drifted resource's step as `update` and a vanished
    one as `delete`; unchanged ones stay `refresh` (or `same`)."""

    def __init__(self) -> None:
        super().__init__()
        self._reports: dict[str, DriftReport] = {}

    @property
    def reports(self) -> list[DriftReport]:
        return list(self._reports.values())

    def done(self, meta: auto.StepEventMetadata) -> None:
        state = meta.old or meta.new
        if state is None or state.custom is False or _bookkeeping(meta.type):
            return
        name = _name(meta.urn)
        if meta.op.value == "delete" or meta.new is None:
            report = DriftReport(meta.urn, meta.type, name, "gone")
        else:
            old = dict(meta.old.outputs or {}) if meta.old else {}
            diffs = diff_properties(old, dict(meta.new.outputs or {}))
            if not diffs and meta.op.value == "update":
                diffs = step_diffs(meta, Op.UPDATE)
            report = DriftReport(meta.urn, meta.type, name, "changed" if diffs else "ok", diffs)
        self._reports[meta.urn] = report


def step_diffs(meta: auto.StepEventMetadata, op: Op) -> list[PropertyDiff]:
    """Changed inputs of a create, update or replace: pulumi's detailed diff where the provider
    gave one, else the inputs that differ plus the keys pulumi names (`diffs`, `keys`)."""
    if op not in (Op.CREATE, Op.UPDATE, Op.REPLACE):
        return []
    old = dict(meta.old.inputs or {}) if meta.old else {}
    new = dict(meta.new.inputs or {}) if meta.new else {}
    replace_keys = frozenset(meta.keys or [])
    if meta.detailed_diff:
        old_outputs = dict(meta.old.outputs or {}) if meta.old else {}
        return [
            _detailed_diff(path, diff, old if diff.input_diff else old_outputs, new, replace_keys)
            for path, diff in sorted(meta.detailed_diff.items())
            if _root(path) not in INTERNAL_KEYS
        ]
    diffs = diff_properties(old, new, replace_keys=replace_keys)
    # Secrets reach events masked, so a changed secret is only visible in pulumi's key lists.
    named = {key for key in {*(meta.diffs or []), *replace_keys} if key in old or key in new}
    for key in sorted(named - INTERNAL_KEYS - {d.path for d in diffs}):
        diffs.append(
            PropertyDiff(
                path=key,
                kind="update",
                old=masked(old.get(key)),
                new=masked(new.get(key)),
                replaces=key in replace_keys,
            )
        )
    if not diffs and op is not Op.CREATE:
        diffs = [PropertyDiff(path="(provider)", kind="update", replaces=op is Op.REPLACE)]
    return diffs


def _detailed_diff(
    path: str,
    diff: auto.PropertyDiff,
    old: dict[str, Any],
    new: dict[str, Any],
    replace_keys: frozenset[str],
) -> PropertyDiff:
    kind = diff.diff_kind.value  # add, update, delete, each with an optional "-replace"
    return PropertyDiff(
        path=path,
        kind=kind.removesuffix("-replace"),
        old=masked(_lookup(old, path)) if not kind.startswith("add") else None,
        new=masked(_lookup(new, path)) if not kind.startswith("delete") else None,
        replaces=kind.endswith("-replace") or _root(path) in replace_keys,
    )


def _path_keys(path: str) -> list[str | int]:
    """`a.b[0]["c.d"]` -> ["a", "b", 0, "c.d"], pulumi's property path syntax."""
    keys: list[str | int] = []
    for quoted, index, plain_key in _PATH_TOKEN.findall(path):
        keys.append(int(index) if index else quoted or plain_key)
    return keys


def _root(path: str) -> str | int | None:
    keys = _path_keys(path)
    return keys[0] if keys else None


def _lookup(props: dict[str, Any], path: str) -> Any:
    value: Any = props
    for key in _path_keys(path):
        if isinstance(key, int):
            if not isinstance(value, list) or key >= len(value):
                return None
        elif not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def masked(value: Any) -> Any:
    if is_secret(value):
        return SECRET_MASK
    if isinstance(value, dict):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def _step_key(meta: auto.StepEventMetadata) -> tuple[str, bool]:
    return meta.urn, meta.op.value in _REPLACED_OPS


def _bookkeeping(type_: str) -> bool:
    """The stack itself and provider instances: pulumi's own records, which the embedded engine
    does not have, kept out of steps, drift and resources so both engines report alike."""
    return type_ == STACK_TYPE or type_.startswith(PROVIDER_TYPE_PREFIX)


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _urn_type(urn: str) -> str:
    """urn:pulumi:STACK::PROJECT::PARENT$TYPE::NAME -> TYPE"""
    parts = urn.split("::")
    return parts[2].rsplit("$", 1)[-1] if len(parts) == 4 else ""


# State, outputs and history


def wrapped_outputs(outputs: Mapping[str, auto.OutputValue]) -> dict[str, Any]:
    """Stack outputs with secrets wrapped as pulumi's secret value, as the embedded engine keeps
    them, so the CLI masks them."""
    return {
        key: wrap_secret(output.value) if output.secret else output.value
        for key, output in outputs.items()
    }


def resources_from_deployment(deployment: auto.Deployment) -> list[ResourceState]:
    """An exported (v3) deployment as our resource records."""
    body = deployment.deployment or {}
    return [
        ResourceState(
            urn=r["urn"],
            type=r["type"],
            name=_name(r["urn"]),
            custom=bool(r.get("custom")),
            id=str(r.get("id") or ""),
            parent=r.get("parent") or "",
            inputs=from_state(r.get("inputs") or {}),
            outputs=from_state(r.get("outputs") or {}),
            dependencies=list(r.get("dependencies") or []),
            protect=bool(r.get("protect")),
            ignore_changes=list(r.get("ignoreChanges") or []),
            secret_outputs=list(r.get("additionalSecretOutputs") or []),
            retain_on_delete=bool(r.get("retainOnDelete")),
            pending_delete=bool(r.get("delete")),
        )
        for r in body.get("resources") or []
        if not _bookkeeping(r.get("type", ""))
    ]


def from_state(value: Any) -> Any:
    """Pulumi's exported secrets ({sig, plaintext: JSON}) as our wrapper ({sig, value})."""
    if is_secret(value):
        if "plaintext" not in value:
            return wrap_secret(SECRET_MASK)
        try:
            inner = json.loads(value["plaintext"])
        except (TypeError, ValueError):
            inner = value["plaintext"]
        return wrap_secret(from_state(inner))
    if isinstance(value, dict):
        return {key: from_state(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_state(item) for item in value]
    return value


def update_record(summary: auto.UpdateSummary, stack: str) -> UpdateRecord:
    """One entry of `pulumi stack history`; the runner comes from the message mlinfra wrote."""
    runner = _RUNNER.search(summary.message or "")
    environment = summary.environment or {}
    changes = summary.resource_changes or {}
    ops = {op.value for op in Op}
    return UpdateRecord(
        id=int(summary.version or 0),
        stack=stack,
        kind=_KINDS.get(summary.kind, summary.kind),
        started=_timestamp(summary.start_time),
        finished=_timestamp(summary.end_time) if summary.end_time else None,
        user=runner["user"] if runner else "",
        host=runner["host"] if runner else "",
        commit=environment.get("git.head", ""),
        dirty=environment.get("git.dirty") == "true",
        result=summary.result,
        summary={key: int(n) for op, n in changes.items() if (key := _op_name(op)) in ops},
        error="",
    )


def lock_holder_from_file(path: Path) -> LockHolder:
    """A DIY backend's lock file: {"pid", "username", "hostname", "timestamp"}."""
    try:
        lock = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        lock = {}
    try:
        since = datetime.fromisoformat(str(lock["timestamp"])).timestamp()
    except (KeyError, ValueError):
        since = path.stat().st_mtime
    return LockHolder(
        pid=int(lock.get("pid") or 0),
        host=str(lock.get("hostname") or ""),
        user=str(lock.get("username") or ""),
        command="pulumi",
        since=since,
    )


def _op_name(op: Any) -> str:
    """Keys of pulumi's change counts are OpType members or, from JSON, plain strings."""
    return str(getattr(op, "value", op))


def _timestamp(moment: datetime) -> float:
    """`pulumi stack history` times are UTC without a zone."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# CLI output


def command_streams(exc: auto.CommandError) -> tuple[str, str]:
    """stdout and stderr of a failed command; CommandError keeps only their rendering."""
    text = str(exc)
    head, _, stderr = text.rpartition("\n stderr: ")
    _, _, stdout = head.partition("\n stdout: ")
    return stdout, stderr


def useful_line(stderr: str, stdout: str = "") -> str:
    """The line of a failed command that says why: the last `error:` line that is more than
    "update failed", from stderr, else stdout; else the last line."""
    streams = [
        [clean_message(ln) for ln in text.splitlines() if ln.strip()] for text in (stderr, stdout)
    ]
    for lines in streams:
        specific = [
            ln for ln in lines if ln.startswith("error:") and not GENERIC_FAILURES.match(ln)
        ]
        if specific:
            return specific[-1]
    for lines in streams:
        if lines:
            return lines[-1]
    return "the command failed without saying why"


def clean_message(message: str) -> str:
    return _COLOR.sub("", message).strip()


def raised_error(message: str) -> str:
    """A dynamic provider's failure arrives as its Python traceback; report what was raised
    (the unindented text after the last frame) as the embedded engine does."""
    message = clean_message(message)
    if _TRACEBACK not in message:
        return message.removeprefix("error: ")
    tail = message.rsplit(_TRACEBACK, 1)[1].splitlines()
    raised = "\n".join(dropwhile(lambda line: not line or line[0].isspace(), tail)).strip()
    kind, colon, text = raised.partition(": ")
    if not colon or " " in kind:
        return raised
    return text if kind.startswith("mlinfra.errors.") else f"{kind.rsplit('.', 1)[-1]}: {text}"
