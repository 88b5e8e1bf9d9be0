"""The embedded engine: runs the stack program in-process and applies it through dynamic
providers, keeping state in SQLite. No pulumi CLI needed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._identity import git_state
from ..config import Environment, using_environment
from ..errors import DeploymentError, MlinfraError
from ..state import (
    KeptResource,
    LockHolder,
    PendingOperation,
    ResourceState,
    SqliteStateStore,
    UpdateRecord,
    is_secret,
    open_state,
    plain,
)
from ._data import HeldData, allowing_data_loss
from ._diff import diff_properties
from ._types import DriftReport, EventSink, Op, RunResult, Step, StepEvent, count_ops

if TYPE_CHECKING:
    from ._deployment import Deployment

__all__ = ["EmbeddedEngine"]


class EmbeddedEngine:
    name = "embedded"

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._store: SqliteStateStore | None = None

    @property
    def store(self) -> SqliteStateStore:
        if self._store is None:
            self._store = open_state(self.env.state_dir)
        return self._store

    @property
    def stack(self) -> str:
        return self.env.stack_name

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # Reads

    def outputs(self) -> dict[str, Any]:
        return self.store.outputs(self.stack)

    def resources(self) -> list[ResourceState]:
        return self.store.resources(self.stack)

    def history(self, limit: int = 50) -> list[UpdateRecord]:
        return self.store.history(self.stack, limit=limit)

    def lock_holder(self) -> LockHolder | None:
        return self.store.lock_holder(self.stack)

    def kept(self) -> list[KeptResource]:
        return self.store.kept(self.stack)

    def forget(self) -> None:
        self.store.forget_stack(self.stack)

    def data_at_risk(self) -> dict[str, HeldData]:
        """What deleting each resource would lose, by name, asked live of the providers."""
        from ._deployment import data_held_by

        self._make_providers_importable()
        found = {}
        for resource in self.store.resources(self.stack):
            held = data_held_by(resource)
            if held is not None:
                found[_step_name(resource)] = held
        return found

    # Changes

    def preview(self, *, on_event: EventSink | None = None) -> RunResult:
        started = time.perf_counter()
        from ._deployment import Deployment

        deployment = Deployment(self.store, self.stack, preview=True, on_event=on_event)
        self._run(deployment)
        return self._result("preview", deployment.steps, deployment.outputs, started)

    def up(
        self,
        *,
        refresh: bool = False,
        force_unlock: bool = False,
        on_event: EventSink | None = None,
        delete_data: bool = False,
    ) -> RunResult:
        started = time.perf_counter()
        with self._update("up", force_unlock) as record, allowing_data_loss(delete_data):
            interrupted = self._reconcile()
            if refresh:
                self._refresh(apply=True)
            from ._deployment import Deployment

            deployment = Deployment(
                self.store, self.stack, preview=False, on_event=on_event, delete_data=delete_data
            )
            record["steps"] = deployment.steps
            self._run(deployment)
            # A re-declared resource was created again (providers adopt what a killed create
            # left); one the program dropped in the meantime may have left something behind.
            dropped = [op for op in interrupted if op.urn not in deployment.registered]
            result = self._result("up", deployment.steps, deployment.outputs, started)
            result.warnings = [*deployment.warnings, *(_interrupted_create(op) for op in dropped)]
            return result

    def destroy(
        self,
        *,
        force_unlock: bool = False,
        on_event: EventSink | None = None,
        delete_data: bool = False,
    ) -> RunResult:
        """Delete every resource; one holding data is kept (out of the state, its data in
        place) unless `delete_data`, which also deletes what earlier destroys kept."""
        started = time.perf_counter()
        steps: list[Step] = []
        with self._update("destroy", force_unlock) as record, allowing_data_loss(delete_data):
            record["steps"] = steps
            interrupted = self._reconcile()
            resources = self.store.resources(self.stack)
            protected = [r.name for r in resources if r.protect and not r.pending_delete]
            if protected:
                raise DeploymentError(
                    f"cannot destroy: {', '.join(protected)} protected; set protect=False and "
                    "run `mlinfra up` first"
                )
            from ._deployment import data_held_by, delete_order

            self._make_providers_importable()
            earlier = self.store.kept(self.stack)
            for resource in delete_order(resources):
                held = data_held_by(resource)
                keep = held is not None and not delete_data
                step = Step(
                    urn=resource.urn,
                    type=resource.type,
                    name=_step_name(resource),
                    op=Op.KEEP if keep else Op.DELETE,
                    data_at_risk=held,
                )
                with _destroy_step(step, on_event, steps):
                    self._remove(resource, kept_for=held if keep else None)
            for kept in earlier if delete_data else ():
                resource = kept.resource
                step = Step(urn=resource.urn, type=resource.type, name=resource.name, op=Op.DELETE)
                with _destroy_step(step, on_event, steps):
                    self._delete_kept(kept)
            self.store.set_outputs(self.stack, {})
        _remove_empty_folders(self.env.env_dir, stop_at=self.env.state_dir)
        result = self._result("destroy", steps, {}, started)
        still_kept = [] if delete_data else earlier
        result.warnings = [
            *(_kept_warning(s.name, str(s.data_at_risk)) for s in steps if s.op is Op.KEEP),
            *(_kept_warning(k.resource.name, k.held) for k in still_kept),
            *(_interrupted_create(op) for op in interrupted),
        ]
        return result

    def _remove(self, resource: ResourceState, *, kept_for: HeldData | None) -> None:
        """Delete a resource, or keep it (out of the state) for the data it holds."""
        from ._deployment import delete_resource

        if kept_for is not None:
            self.store.keep_resource(self.stack, resource, held=str(kept_for))
        else:
            delete_resource(self.store, self.stack, resource)

    def _delete_kept(self, kept: KeptResource) -> None:
        """Delete what an earlier destroy kept, through its provider."""
        from ._deployment import delete_resource

        delete_resource(self.store, self.stack, kept.resource)
        self.store.forget_kept(self.stack, kept.resource.urn)

    def refresh(self, *, apply: bool = False, force_unlock: bool = False) -> list[DriftReport]:
        """Read every resource through its provider and say what changed out of band."""
        if not apply:
            return self._refresh(apply=False)
        with self._update("refresh", force_unlock):
            self._reconcile()
            return self._refresh(apply=True)

    # Internals; the pulumi SDK (0.3 s to import) is loaded only by what runs programs or
    # providers, so reads such as outputs, status and history stay quick.

    def _make_providers_importable(self) -> None:
        from ._program import ensure_importable

        ensure_importable([self.env.project.stack_dir, self.env.project.root])

    def _provider(self, resource: ResourceState) -> Any:
        from ._providers import load_provider

        self._make_providers_importable()
        return load_provider(resource.outputs or resource.inputs, resource.name)

    def _read(self, resource: ResourceState) -> Any:
        """What the resource's provider reads now; its failure names the resource, as a failed
        step of `up` does."""
        provider = self._provider(resource)  # failing to load one is mlinfra's own fault
        try:
            return provider.read(resource.id, plain(resource.outputs))
        except MlinfraError:
            raise
        except Exception as exc:
            raise DeploymentError(
                f"{resource.name} ({resource.type}): read failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _run(self, deployment: Deployment) -> None:
        project = self.env.project
        try:
            with using_environment(self.env):
                from ._program import run_program

                self._make_providers_importable()
                run_program(
                    project.stack_dir,
                    deployment,
                    project=project.name,
                    stack=self.stack,
                    preview=deployment.preview,
                )
        except MlinfraError:
            if not deployment.failures:
                raise
        except Exception as exc:
            if not deployment.failures:
                raise DeploymentError(
                    f"the stack program {project.stack_dir} failed: {type(exc).__name__}: {exc}"
                ) from exc
        if deployment.refusals:
            raise deployment.refusals[0]
        if deployment.failures:
            first = deployment.failures[0]
            verb = "preview" if deployment.preview else first.op.value
            raise DeploymentError(f"{first.name} ({first.type}): {verb} failed: {first.error}")
        deployment.finish()

    @contextmanager
    def _update(self, kind: str, force_unlock: bool) -> Iterator[dict[str, Any]]:
        """Hold the stack's lock, back the state up and write the history record around a
        change; Ctrl-C is recorded as `interrupted`, anything else that stops it as `failed`."""
        store = self.store
        store.acquire_lock(self.stack, f"mlinfra {kind} {self.env.cli_args}", force=force_unlock)
        record: dict[str, Any] = {"steps": []}
        try:
            commit, dirty = git_state(self.env.project.root, untracked=False)
            update_id = store.start_update(self.stack, kind, commit=commit or "", dirty=bool(dirty))
            try:
                store.back_up(update_id)
                yield record
            except BaseException as exc:
                summary = count_ops(record["steps"])
                interrupted = isinstance(exc, KeyboardInterrupt)
                store.finish_update(
                    update_id,
                    result="interrupted" if interrupted else "failed",
                    summary=summary,
                    error="interrupted (Ctrl-C)" if interrupted else str(exc),
                )
                raise
            store.finish_update(update_id, result="succeeded", summary=count_ops(record["steps"]))
        finally:
            store.release_lock(self.stack)

    def _reconcile(self) -> list[PendingOperation]:
        """Finish what a killed run left: refresh resources whose provider call was cut off.

        Returns the creates that were cut off before their resource was recorded.
        """
        store = self.store
        current = {r.urn: r for r in store.resources(self.stack) if not r.pending_delete}
        interrupted = []
        for operation in store.pending_operations(self.stack):
            resource = current.get(operation.urn)
            if resource is not None and resource.custom and operation.kind in ("update", "delete"):
                self._read_into_state(resource)
            if operation.kind in ("create", "replace") and operation.urn not in current:
                interrupted.append(operation)
            store.end_operation(operation.id)
        return interrupted

    def _read_into_state(self, resource: ResourceState) -> DriftReport:
        result = self._read(resource)
        report = DriftReport(urn=resource.urn, type=resource.type, name=resource.name, status="ok")
        if not result.id:
            self.store.remove_resource(
                self.stack, resource.urn, pending_delete=resource.pending_delete
            )
            return DriftReport(resource.urn, resource.type, resource.name, "gone")
        outs = dict(result.outs or {})
        diffs = diff_properties(plain(resource.outputs), outs)
        if diffs:
            refreshed = ResourceState(**resource.__dict__)
            refreshed.outputs = {
                key: resource.outputs[key]
                if key in resource.outputs and plain(resource.outputs[key]) == value
                else value
                for key, value in outs.items()
            }
            refreshed.outputs["__provider"] = resource.outputs.get("__provider")
            self.store.put_resource(self.stack, refreshed)
            report = DriftReport(resource.urn, resource.type, resource.name, "changed", diffs)
        return report

    def _refresh(self, *, apply: bool) -> list[DriftReport]:
        reports = []
        for resource in self.store.resources(self.stack):
            if not resource.custom or resource.pending_delete:
                continue
            if apply:
                reports.append(self._read_into_state(resource))
                continue
            result = self._read(resource)
            if not result.id:
                reports.append(DriftReport(resource.urn, resource.type, resource.name, "gone"))
                continue
            diffs = diff_properties(plain(resource.outputs), dict(result.outs or {}))
            status = "changed" if diffs else "ok"
            reports.append(DriftReport(resource.urn, resource.type, resource.name, status, diffs))
        return reports

    def _result(
        self, kind: str, steps: list[Step], outputs: dict[str, Any], started: float
    ) -> RunResult:
        return RunResult(
            stack=self.stack,
            kind=kind,
            steps=list(steps),
            outputs=outputs,
            seconds=time.perf_counter() - started,
            engine=self.name,
        )


def _interrupted_create(operation: PendingOperation) -> str:
    """Say what a cut-off create was asked for (secrets masked), so the user can check for it."""
    asked = {
        key: "[secret]" if is_secret(value) else value
        for key, value in operation.inputs.items()
        if key != "__provider" and isinstance(value, str | int | float | bool | dict)
    }
    name = operation.urn.rsplit("::", 1)[-1]
    return (
        f"a create of {name} was interrupted before it was recorded and the program no longer "
        f"declares it; what it made may remain: {asked}"
    )


def _kept_warning(name: str, held: str) -> str:
    return (
        f"kept {name}: it holds {held}; `mlinfra up` takes it back, "
        "`mlinfra destroy --delete-data` deletes it"
    )


def _step_name(resource: ResourceState) -> str:
    return f"{resource.name} (replaced)" if resource.pending_delete else resource.name


@contextmanager
def _destroy_step(step: Step, on_event: EventSink | None, steps: list[Step]) -> Iterator[None]:
    """Report one step of a destroy as it starts and ends; a failure stops the destroy."""
    _emit(on_event, step, "start")
    try:
        yield
    except Exception as exc:
        step.error = str(exc)
        _emit(on_event, step, "failed")
        raise DeploymentError(f"deleting {step.name} failed: {exc}") from exc
    steps.append(step)
    _emit(on_event, step, "done")


def _emit(on_event: EventSink | None, step: Step, phase: str) -> None:
    if on_event is not None:
        on_event(StepEvent(step=step, phase=phase))


def _remove_empty_folders(folder: Path, *, stop_at: Path) -> None:
    """Take away the env's folders once its providers have emptied them."""
    while folder != stop_at and stop_at in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
