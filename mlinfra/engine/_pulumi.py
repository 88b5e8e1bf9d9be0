"""The pulumi engine: the same stack program and interface, applied by the `pulumi` CLI through
the Automation API, with a file:// backend under the project's state dir by default.

Only imported when an environment chooses this engine, so `pulumi.automation` and its gRPC
servers stay off the embedded engine's start-up path.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import runpy
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import dropwhile
from pathlib import Path
from typing import Any

import pulumi.automation as auto

from ..config import Environment, using_environment
from ..errors import (
    ConfigError,
    DeploymentError,
    EngineUnavailableError,
    MlinfraError,
    StateError,
    StateLockedError,
)
from ..state import PASSPHRASE_ENV, LockHolder, ResourceState, UpdateRecord
from ._diff import INTERNAL_KEYS, diff_properties
from ._program import STACK_TYPE, ensure_importable
from ._providers import is_secret, wrap_secret
from ._types import DriftReport, EventSink, Op, PropertyDiff, RunResult, Step, StepEvent

__all__ = ["PulumiEngine"]

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
_LOCK_HOLDER = re.compile(r"created by (\S+) \(pid (\d+)\) at (\S+)")
_RUNNER = re.compile(r" by (?P<user>[^@\s]+)@(?P<host>\S+)$")
_TRACEBACK = "Traceback (most recent call last):"
_GENERIC_FAILURES = re.compile(r"^(error: )?(update|preview|refresh|destroy) failed$")


class PulumiEngine:
    name = "pulumi"

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.home = env.state_dir / "pulumi"
        """Everything this engine keeps locally: workspace, passphrase file, default backend."""
        self.backend_url = _absolute_file_url(
            env.settings.pulumi.backend_url or f"file://{self.home}", env.project.root
        )
        self._workspace: auto.LocalWorkspace | None = None
        self._stack: auto.Stack | None = None
        self._program_error: BaseException | None = None
        ensure_importable([env.project.stack_dir, env.project.root])

    @property
    def stack_name(self) -> str:
        return self.env.stack_name

    def close(self) -> None:
        """Nothing stays open between calls: every operation is one CLI process."""
        self._stack = None
        self._workspace = None

    # Reads

    def outputs(self) -> dict[str, Any]:
        stack = self._existing_stack()
        if stack is None:
            return {}
        with self._errors():
            return wrapped_outputs(stack.outputs())

    def resources(self) -> list[ResourceState]:
        stack = self._existing_stack()
        if stack is None:
            return []
        with self._errors():
            return resources_from_deployment(stack.export_stack())

    def history(self, limit: int = 50) -> list[UpdateRecord]:
        stack = self._existing_stack()
        if stack is None:
            return []
        with self._errors():
            return [update_record(s, self.stack_name) for s in stack.history(page_size=limit)]

    def lock_holder(self) -> LockHolder | None:
        """The holder named in the backend's lock file; unknown (None) unless it is file://."""
        files = self._lock_files()
        return lock_holder_from_file(files[0]) if files else None

    # Changes

    def preview(self, *, on_event: EventSink | None = None) -> RunResult:
        started = time.perf_counter()
        self._main()
        stack = self._stack_to_change()
        events = StepCollector(on_event)
        with self._errors(events, preview=True):
            stack.preview(on_event=events, diff=True, color="never")
        return self._result("preview", events, events.outputs, started)

    def up(
        self,
        *,
        refresh: bool = False,
        force_unlock: bool = False,
        on_event: EventSink | None = None,
    ) -> RunResult:
        started = time.perf_counter()
        self._main()
        self._unlock(force_unlock)
        stack = self._stack_to_change()
        events = StepCollector(on_event)
        with self._errors(events):
            result = stack.up(
                refresh=refresh, on_event=events, color="never", message=self._message("up")
            )
        return self._result("up", events, wrapped_outputs(result.outputs), started)

    def destroy(
        self, *, force_unlock: bool = False, on_event: EventSink | None = None
    ) -> RunResult:
        started = time.perf_counter()
        self._unlock(force_unlock)
        stack = self._existing_stack()
        events = StepCollector(on_event)
        if stack is not None:
            with self._errors(events):
                stack.destroy(on_event=events, color="never", message=self._message("destroy"))
        return self._result("destroy", events, {}, started)

    def refresh(self, *, apply: bool = False, force_unlock: bool = False) -> list[DriftReport]:
        """Read every resource through its provider; with `apply`, write what was read."""
        self._unlock(force_unlock)
        stack = self._existing_stack()
        if stack is None:
            return []
        drift = DriftCollector()
        with self._errors(drift):
            if apply:
                stack.refresh(on_event=drift, color="never", message=self._message("refresh"))
            else:
                preview_refresh = getattr(stack, "preview_refresh", None)
                if preview_refresh is None:
                    raise EngineUnavailableError(
                        "this pulumi SDK cannot preview a refresh (no Stack.preview_refresh); "
                        "upgrade the `pulumi` package, or refresh for real with --apply"
                    )
                preview_refresh(on_event=drift, color="never")
        return drift.reports

    # The workspace and the stack

    def _existing_stack(self) -> auto.Stack | None:
        """The stack if the backend has it: reading a stack never deployed finds nothing."""
        if self._stack is None:
            workspace = self._open_workspace()
            with self._errors():
                try:
                    self._stack = auto.Stack.select(self.stack_name, workspace)
                except auto.StackNotFoundError:
                    return None
        return self._stack

    def _stack_to_change(self) -> auto.Stack:
        stack = self._stack
        if stack is None:
            workspace = self._open_workspace()
            with self._errors():
                stack = auto.Stack.create_or_select(self.stack_name, workspace)
            self._stack = stack
        return stack

    def _open_workspace(self) -> auto.LocalWorkspace:
        if self._workspace is None:
            work_dir = self.home / "workspace"
            work_dir.mkdir(parents=True, exist_ok=True)
            backend_dir = _file_backend_dir(self.backend_url)
            if backend_dir is not None:
                backend_dir.mkdir(parents=True, exist_ok=True)
            settings = auto.ProjectSettings(
                name=self.env.project.name,
                runtime="python",
                backend=auto.ProjectBackend(url=self.backend_url),
                description="written by mlinfra's pulumi engine for the project's stack",
            )
            with self._errors():
                self._workspace = auto.LocalWorkspace(
                    work_dir=str(work_dir),
                    program=self._program,
                    env_vars=self._cli_env(),
                    secrets_provider="passphrase",
                    project_settings=settings,
                )
        return self._workspace

    def _cli_env(self) -> dict[str, str]:
        """What the CLI and the dynamic-provider process it starts need from us."""
        project = self.env.project
        paths = [str(project.stack_dir), str(project.root), os.environ.get("PYTHONPATH", "")]
        env = {
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            # Dynamic providers run in a separate python; it must import the project's modules,
            # as the inline program here can.
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        }
        if sys.prefix != sys.base_prefix:
            # Pulumi's dynamic-provider shim runs `python3` from PATH unless told which venv
            # holds the SDK and mlinfra: this one.
            env["PULUMI_RUNTIME_VIRTUALENV"] = sys.prefix
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if passphrase:
            env["PULUMI_CONFIG_PASSPHRASE"] = passphrase
        else:
            env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(self._passphrase_file())
        return env

    def _passphrase_file(self) -> Path:
        """A generated passphrase, made once, readable by the owner only; never printed."""
        path = self.home / "passphrase"
        if not path.exists():
            draft = path.with_name(f".passphrase.{os.getpid()}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
            try:
                os.link(draft, path)  # atomic: a concurrent first run keeps the other's file
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return path

    def _main(self) -> Path:
        main = self.env.project.stack_dir / "__main__.py"
        if not main.is_file():
            raise ConfigError(
                f"no Pulumi program at {main}; set `stack` under [project] in mlinfra.toml "
                "to the directory holding __main__.py"
            )
        return main

    def _program(self) -> None:
        """The stack program as pulumi runs it inline: in this process but on one of the
        Automation API's server threads, so the environment is set here, not inherited."""
        try:
            with using_environment(self.env):
                runpy.run_path(str(self._main()), run_name="__main__")
        except BaseException as exc:
            self._program_error = exc
            raise

    def _message(self, kind: str) -> str:
        """The update message pulumi keeps in its history; `history()` reads the runner back."""
        return f"mlinfra {kind} --env {self.env.name} by {_user()}@{socket.gethostname()}"

    # Locks

    def _lock_files(self) -> list[Path]:
        backend_dir = _file_backend_dir(self.backend_url)
        if backend_dir is None:
            return []
        locks = backend_dir / ".pulumi" / "locks"
        project, stack = self.env.project.name, self.stack_name
        # Project-scoped layout (pulumi >= 3.61) first, then the older flat one.
        return sorted(locks.glob(f"organization/{project}/{stack}/*.json")) + sorted(
            locks.glob(f"{stack}/*.json")
        )

    def _unlock(self, force: bool) -> None:
        """--force-unlock: the holder is gone, take the stack over.

        A file backend's lock is a file under .pulumi/locks/; removing it is what pulumi's own
        lock message tells users to do, and needs no CLI run. Other backends hold the lock on
        their server, where only `pulumi cancel` (Stack.cancel) ends it, by stopping an update
        that may still be running: too drastic to do unasked, so the user is told instead.
        """
        if not force:
            return
        if _file_backend_dir(self.backend_url) is None:
            raise StateError(
                f"--force-unlock clears locks of file:// backends only; for {self.backend_url} "
                f"run `pulumi cancel --stack {self.stack_name}` in {self.home / 'workspace'}"
            )
        for path in self._lock_files():
            path.unlink(missing_ok=True)

    # Errors

    @contextmanager
    def _errors(
        self, events: EventReader | None = None, *, preview: bool = False
    ) -> Iterator[None]:
        """Automation API failures as mlinfra errors, with the most specific reason known."""
        self._program_error = None
        try:
            yield
        except FileNotFoundError as exc:
            if exc.filename != "pulumi":
                raise
            raise EngineUnavailableError(_missing_cli(self.env)) from exc
        except subprocess.CalledProcessError as exc:
            raise EngineUnavailableError(
                f"`pulumi version` failed (exit {exc.returncode}); check the pulumi CLI "
                'installation, or set engine = "embedded"'
            ) from exc
        except auto.InvalidVersionError as exc:
            raise EngineUnavailableError(
                f'{" ".join(str(exc).split())} Or set engine = "embedded".'
            ) from exc
        except auto.ConcurrentUpdateError as exc:
            raise StateLockedError(_locked_message(self.stack_name, exc)) from exc
        except auto.CommandError as exc:
            raise self._failure(exc, events, preview) from exc

    def _failure(
        self, exc: auto.CommandError, events: EventReader | None, preview: bool
    ) -> MlinfraError:
        error = self._program_error
        if isinstance(error, MlinfraError):
            return error
        if error is not None:
            return DeploymentError(
                f"the stack program {self._main()} failed: {type(error).__name__}: {error}"
            )
        if events is not None and events.failures:
            first = events.failures[0]
            verb = "preview" if preview else first.op.value
            return DeploymentError(f"{first.name} ({first.type}): {verb} failed: {first.error}")
        stdout, stderr = command_streams(exc)
        if "incorrect passphrase" in stderr:
            return StateError(
                f"cannot decrypt pulumi stack {self.stack_name!r}: set {PASSPHRASE_ENV} to the "
                f"passphrase it was created with, or restore {self.home / 'passphrase'}"
            )
        general = (
            [m for m in events.general_errors if not _GENERIC_FAILURES.match(m)] if events else []
        )
        reason = general[-1] if general else useful_line(stderr, stdout)
        return DeploymentError(f"pulumi: {reason.removeprefix('error: ')}")

    def _result(
        self, kind: str, events: StepCollector, outputs: dict[str, Any], started: float
    ) -> RunResult:
        return RunResult(
            stack=self.stack_name,
            kind=kind,
            steps=events.steps,
            outputs=outputs,
            seconds=time.perf_counter() - started,
            engine=self.name,
        )


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
            ln for ln in lines if ln.startswith("error:") and not _GENERIC_FAILURES.match(ln)
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


def _locked_message(stack: str, exc: auto.CommandError) -> str:
    _, stderr = command_streams(exc)
    holder = _LOCK_HOLDER.search(stderr)
    who = f"{holder[1]} (pid {holder[2]}, since {holder[3]})" if holder else "another update"
    return (
        f"stack {stack!r} is locked by {who}; wait for it to finish, "
        "or pass --force-unlock if that process is gone"
    )


def _missing_cli(env: Environment) -> str:
    return (
        f"env {env.name!r} uses the pulumi engine but no `pulumi` CLI is on PATH; install it "
        '(https://www.pulumi.com/docs/install/) or set engine = "embedded"'
    )


def _absolute_file_url(url: str, root: Path) -> str:
    """A relative file:// backend is relative to the project, not to pulumi's working dir."""
    path = _file_backend_dir(url)
    if path is None or path.is_absolute():
        return url
    query = url.partition("?")[1:]
    return f"file://{(root / path).resolve()}{''.join(query)}"


def _file_backend_dir(url: str) -> Path | None:
    if not url.startswith("file://"):
        return None
    return Path(url.removeprefix("file://").partition("?")[0]).expanduser()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
