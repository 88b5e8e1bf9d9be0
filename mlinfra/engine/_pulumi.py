"""The pulumi engine: the same stack program and interface, applied by the `pulumi` CLI through
the Automation API, with a file:// backend under the project's state dir by default.

Only imported when an environment chooses this engine, so its workspace and CLI checks
stay off the embedded engine's path.
"""

from __future__ import annotations

import os
import re
import runpy
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pulumi.automation as auto

from .._identity import current_user
from ..config import Environment, using_environment
from ..errors import (
    DeploymentError,
    EngineUnavailableError,
    MlinfraError,
    StateError,
    StateLockedError,
)
from ..state import PASSPHRASE_ENV, KeptResource, LockHolder, ResourceState, UpdateRecord
from . import missing_cli_message
from ._data import HeldData, allowing_data_loss
from ._program import ensure_importable, program_file
from ._pulumi_translate import (
    GENERIC_FAILURES,
    DriftCollector,
    EventReader,
    StepCollector,
    command_streams,
    lock_holder_from_file,
    resources_from_deployment,
    update_record,
    useful_line,
    wrapped_outputs,
)
from ._types import DriftReport, EventSink, RunResult

__all__ = ["PulumiEngine"]

_LOCK_HOLDER = re.compile(r"created by (\S+) \(pid (\d+)\) at (\S+)")


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

    def data_at_risk(self) -> dict[str, HeldData]:
        """Not known ahead here: Pulumi runs the providers, whose own delete refuses."""
        return {}

    def kept(self) -> list[KeptResource]:
        """Pulumi keeps no record of what it leaves behind."""
        return []

    def forget(self) -> None:
        """`pulumi stack rm`: the stack's history goes from the backend too."""
        if self._existing_stack() is not None:
            with self._errors():
                self._open_workspace().remove_stack(self.stack_name)
            self._stack = None

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
        delete_data: bool = False,
    ) -> RunResult:
        started = time.perf_counter()
        self._main()
        self._unlock(force_unlock)
        stack = self._stack_to_change()
        events = StepCollector(on_event)
        # The CLI, and the provider process it starts, inherit the consent to delete data.
        with self._errors(events), allowing_data_loss(delete_data):
            result = stack.up(
                refresh=refresh, on_event=events, color="never", message=self._message("up")
            )
        return self._result("up", events, wrapped_outputs(result.outputs), started)

    def destroy(
        self,
        *,
        force_unlock: bool = False,
        on_event: EventSink | None = None,
        delete_data: bool = False,
    ) -> RunResult:
        started = time.perf_counter()
        self._unlock(force_unlock)
        stack = self._existing_stack()
        events = StepCollector(on_event)
        if stack is not None:
            with self._errors(events), allowing_data_loss(delete_data):
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
        return program_file(self.env.project.stack_dir)

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
        return f"mlinfra {kind} {self.env.cli_args} by {current_user()}@{socket.gethostname()}"

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
            raise EngineUnavailableError(missing_cli_message(self.env)) from exc
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
            [m for m in events.general_errors if not GENERIC_FAILURES.match(m)] if events else []
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


def _locked_message(stack: str, exc: auto.CommandError) -> str:
    _, stderr = command_streams(exc)
    holder = _LOCK_HOLDER.search(stderr)
    who = f"{holder[1]} (pid {holder[2]}, since {holder[3]})" if holder else "another update"
    return (
        f"stack {stack!r} is locked by {who}; wait for it to finish, "
        "or pass --force-unlock if that process is gone"
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
