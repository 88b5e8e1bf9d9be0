"""One preview or update of a stack: step generation as registrations arrive, then deletes.

Steps run as the program registers resources, so a resource's outputs exist before anything
that depends on it registers: creation follows the dependency order, as in Pulumi.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from pulumi.dynamic import ResourceProvider
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from ..errors import DeploymentError, MlinfraError, ProtectedResourceError
from ..state import ResourceState, SqliteStateStore
from ._data import DataMove, HeldData, held_data, planned_move
from ._diff import INTERNAL_KEYS, diff_properties
from ._program import Registration, StepFailed
from ._providers import (
    DYNAMIC_TYPE_PREFIX,
    PROVIDER_KEY,
    is_secret,
    load_provider,
    overrides,
    plain,
    wrap_secret,
)
from ._types import EventSink, Op, PropertyDiff, Step, StepEvent

__all__ = ["Deployment", "data_held_by", "delete_order", "delete_resource"]

T = TypeVar("T")


class Deployment:
    """Receives registrations from the running program and turns them into steps."""

    def __init__(
        self,
        store: SqliteStateStore,
        stack: str,
        *,
        preview: bool,
        on_event: EventSink | None,
        delete_data: bool = False,
    ) -> None:
        self.store = store
        self.stack = stack
        self.preview = preview
        self.delete_data = delete_data
        """Deleting or replacing resources that hold data was allowed (`--delete-data`)."""
        self._on_event = on_event
        self._lock = threading.Lock()
        prior = store.resources(stack)
        self.old = {r.urn: r for r in prior if not r.pending_delete}
        self.pending_deletes = [r for r in prior if r.pending_delete]
        self.registered: dict[str, Registration] = {}
        self.steps: list[Step] = []
        self.failures: list[Step] = []
        self.refusals: list[ProtectedResourceError] = []
        """Steps refused to protect a resource; reported as they are, not as failures."""
        self._failed_urns: set[str] = set()
        self.outputs: dict[str, Any] = {}
        self.kept = {k.resource.urn: k for k in store.kept(stack)}
        self.warnings: list[str] = []
        """What the user should know although the run succeeded (data moved, data kept)."""

    # Registrar protocol

    def set_stack_outputs(self, outputs: dict[str, Any]) -> None:
        self.outputs = outputs

    def register(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        step = Step(urn=reg.urn, type=reg.type, name=reg.name, op=Op.SAME)
        with self._lock:
            duplicate = reg.urn in self.registered
            self.registered[reg.urn] = reg
            blocked = self._failed_urns & {reg.parent, *reg.dependencies}
        try:
            if duplicate:
                raise DeploymentError(f"two resources are named {reg.name!r} with type {reg.type}")
            if blocked:
                with self._lock:
                    self._failed_urns.add(reg.urn)
                raise StepFailed(reg.urn)
            return self._register(reg, step)
        except StepFailed:
            raise
        except Exception as exc:
            step.error = str(exc) if isinstance(exc, MlinfraError) else _describe(exc)
            with self._lock:
                self.failures.append(step)
                self._failed_urns.add(reg.urn)
                if isinstance(exc, ProtectedResourceError):
                    self.refusals.append(exc)
            self._emit(step, "failed")
            raise StepFailed(reg.urn) from None

    # Steps

    def _register(self, reg: Registration, step: Step) -> tuple[str, dict[str, Any]]:
        old = self.old.get(reg.urn)
        if not reg.custom:
            step.op = Op.CREATE if old is None else Op.SAME
            self._record(step)
            if not self.preview:
                self._checkpoint(old, self._state(reg, id_="", inputs=reg.inputs, outputs={}))
            return "", {}
        if not reg.type.startswith(DYNAMIC_TYPE_PREFIX):
            return self._foreign(reg, step)
        news = self._apply_ignore_changes(reg, old)
        unknown = _has_unknown(news)
        provider = load_provider(news if not unknown or old is None else old.outputs, reg.name)
        if not unknown and overrides(provider, "check"):
            news = self._check(provider, reg, old, news)
        if old is None:
            step.op = Op.CREATE
            step.diffs = diff_properties({}, news)
            return self._create(reg, step, provider, news)
        step.op, step.diffs, before = self._diff(reg, old, provider, news, unknown)
        if step.op is Op.SAME:
            self._record(step)
            if not self.preview:
                state = self._state(reg, id_=old.id, inputs=news, outputs=old.outputs)
                state.outputs[PROVIDER_KEY] = news[PROVIDER_KEY]
                self._checkpoint(old, state)
            return old.id, old.outputs
        if step.op is Op.UPDATE:
            if not unknown:
                step.data_move = planned_move(provider, old.id, plain(old.outputs), plain(news))
            return self._update(reg, step, provider, old, news)
        if old.protect or reg.protect:
            raise ProtectedResourceError(
                f"{reg.name} is protected and would be replaced; remove protect=True from the "
                "program, run `mlinfra up` once, then make the change"
            )
        step.data_at_risk = data_held_by(old)
        step.deletes_first = before
        if step.data_at_risk is not None and not self.preview and not self.delete_data:
            raise _refusal(reg.name, step.data_at_risk, replaced=True)
        if before:
            self._delete_now(old, step)
        return self._create(reg, step, provider, news, replacing=None if before else old)

    def _foreign(self, reg: Registration, step: Step) -> tuple[str, dict[str, Any]]:
        """A resource of a real Pulumi provider (kubernetes, docker): only pulumi can apply it."""
        if not self.preview:
            package = reg.type.split(":", 1)[0]
            raise DeploymentError(
                f"{reg.type} {reg.name}: the embedded engine runs pulumi.dynamic providers only; "
                f'set engine = "pulumi" (and install the pulumi CLI) to apply {package} resources'
            )
        step.op = Op.CREATE if reg.urn not in self.old else Op.SAME
        step.diffs = diff_properties({}, reg.inputs) if step.op is Op.CREATE else []
        self._record(step)
        return "", {key: UNKNOWN for key in reg.inputs}

    def _apply_ignore_changes(self, reg: Registration, old: ResourceState | None) -> dict[str, Any]:
        news = dict(reg.inputs)
        if old is not None:
            for key in reg.ignore_changes:
                if key in old.inputs:
                    news[key] = old.inputs[key]
                else:
                    news.pop(key, None)
        return news

    def _check(
        self,
        provider: ResourceProvider,
        reg: Registration,
        old: ResourceState | None,
        news: dict[str, Any],
    ) -> dict[str, Any]:
        result = provider.check(plain(old.inputs) if old else {}, plain(news))
        if result.failures:
            problems = "; ".join(f"{f.property}: {f.reason}" for f in result.failures)
            raise DeploymentError(f"{reg.name}: invalid inputs: {problems}")
        checked = dict(result.inputs or {})
        return {
            key: wrap_secret(v) if is_secret(news.get(key)) else v for key, v in checked.items()
        }

    def _diff(
        self,
        reg: Registration,
        old: ResourceState,
        provider: ResourceProvider,
        news: dict[str, Any],
        unknown: bool,
    ) -> tuple[Op, list[PropertyDiff], bool]:
        """The operation, the changed properties, and whether to delete before replacing."""
        replace_keys = set(reg.replace_on_changes)
        changes: bool | None = None
        before = bool(reg.delete_before_replace)
        if not unknown and overrides(provider, "diff"):
            result = provider.diff(old.id, plain(old.outputs), plain(news))
            changes = result.changes
            replace_keys |= set(result.replaces or [])
            if reg.delete_before_replace is None and result.delete_before_replace:
                before = True
        if old.type != reg.type:
            replace_keys.add("type")
        diffs = diff_properties(old.inputs, news, replace_keys=frozenset(replace_keys))
        if changes is False and not replace_keys:
            return Op.SAME, [], before
        if changes and not diffs:
            diffs = [PropertyDiff(path="(provider)", kind="update")]
        if not diffs and "type" not in replace_keys:
            return Op.SAME, [], before
        needs_replace = any(d.replaces for d in diffs) or "type" in replace_keys
        if "*" in replace_keys or not overrides(provider, "update"):
            needs_replace = True
        return (Op.REPLACE if needs_replace else Op.UPDATE), diffs, before

    def _create(
        self,
        reg: Registration,
        step: Step,
        provider: ResourceProvider,
        news: dict[str, Any],
        *,
        replacing: ResourceState | None = None,
    ) -> tuple[str, dict[str, Any]]:
        self._emit(step, "start")
        if self.preview:
            self._record(step)
            return "", _preview_outputs(news, replacing)
        operation, result = provider_call(
            self.store,
            self.stack,
            reg.urn,
            step.op.value,
            news,
            lambda: provider.create(plain(news)),
        )
        outputs = self._outputs(reg, news, result.outs or {})
        state = self._state(reg, id_=str(result.id or ""), inputs=news, outputs=outputs)
        if not state.id:
            raise DeploymentError(f"{reg.name}: the provider's create returned no id")
        if replacing is not None:
            self.store.replace_resource(self.stack, replacing, state, clear_operation=operation)
            self.pending_deletes.append(replacing)
        else:
            self.store.put_resource(self.stack, state, clear_operation=operation)
        self._take_back(reg.name, state)
        self._record(step, "done")
        return state.id, outputs

    def _take_back(self, name: str, state: ResourceState) -> None:
        """A resource an earlier destroy kept is in the state again: its provider's create
        adopted what was there, unless it was made somewhere else."""
        kept = self.kept.pop(state.urn, None)
        if kept is None:
            return
        self.store.forget_kept(self.stack, state.urn)
        if kept.resource.id != state.id:
            self.warnings.append(
                f"{name}: what an earlier destroy kept ({kept.held}) is not where it is now "
                f"({state.id}); it is left as it was"
            )

    def _update(
        self,
        reg: Registration,
        step: Step,
        provider: ResourceProvider,
        old: ResourceState,
        news: dict[str, Any],
    ) -> tuple[str, dict[str, Any]]:
        self._emit(step, "start")
        if self.preview:
            self._record(step)
            return old.id, _preview_outputs(news, old)
        operation, result = provider_call(
            self.store,
            self.stack,
            reg.urn,
            "update",
            news,
            lambda: provider.update(old.id, plain(old.outputs), plain(news)),
        )
        outputs = self._outputs(reg, news, result.outs or {})
        self.store.put_resource(
            self.stack,
            self._state(reg, id_=old.id, inputs=news, outputs=outputs),
            clear_operation=operation,
        )
        if step.data_move is not None:
            self.warnings.append(_moved(reg.name, step.data_move))
        self._record(step, "done")
        return old.id, outputs

    def _delete_now(self, old: ResourceState, step: Step) -> None:
        if not self.preview:
            delete_resource(self.store, self.stack, old)

    def _outputs(
        self, reg: Registration, news: dict[str, Any], outs: dict[str, Any]
    ) -> dict[str, Any]:
        """Outputs as the program sees them: secret where the input was, or where asked."""
        secret_keys = {k for k, v in news.items() if is_secret(v)} | set(
            reg.additional_secret_outputs
        )
        outputs = {k: wrap_secret(v) if k in secret_keys else v for k, v in outs.items()}
        outputs[PROVIDER_KEY] = news[PROVIDER_KEY]
        return outputs

    def _state(
        self, reg: Registration, *, id_: str, inputs: dict[str, Any], outputs: dict[str, Any]
    ) -> ResourceState:
        return ResourceState(
            urn=reg.urn,
            type=reg.type,
            name=reg.name,
            custom=reg.custom,
            id=id_,
            parent=reg.parent,
            inputs=inputs,
            outputs=dict(outputs),
            dependencies=reg.dependencies,
            protect=reg.protect,
            delete_before_replace=bool(reg.delete_before_replace),
            ignore_changes=reg.ignore_changes,
            secret_outputs=reg.additional_secret_outputs,
            retain_on_delete=reg.retain_on_delete,
        )

    def _checkpoint(self, old: ResourceState | None, new: ResourceState) -> None:
        """Write a resource whose provider was not called, only when something changed."""
        if old is None or old.__dict__ != new.__dict__:
            self.store.put_resource(self.stack, new)

    def _record(self, step: Step, phase: str = "done") -> None:
        with self._lock:
            self.steps.append(step)
        self._emit(step, phase)

    def _emit(self, step: Step, phase: str) -> None:
        if self._on_event is not None:
            self._on_event(StepEvent(step=step, phase=phase))

    # After the program

    def finish(self) -> None:
        """Delete what the program no longer declares, dependents first, and old replacements."""
        gone = [r for urn, r in self.old.items() if urn not in self.registered]
        for resource in gone:
            if resource.protect:
                raise ProtectedResourceError(
                    f"{resource.name} is protected and no longer in the program; put it back, "
                    "or set protect=False and run `mlinfra up` before removing it"
                )
        doomed = [(r, data_held_by(r)) for r in delete_order(gone + self.pending_deletes)]
        at_risk = [(resource, held) for resource, held in doomed if held is not None]
        if at_risk and not self.preview and not self.delete_data:
            first, first_held = at_risk[0]
            raise _refusal(first.name, first_held, replaced=first.pending_delete)
        for resource, held in doomed:
            step = Step(urn=resource.urn, type=resource.type, name=resource.name, op=Op.DELETE)
            step.data_at_risk = held
            if resource.pending_delete:
                step.name = f"{resource.name} (replaced)"
            self._emit(step, "start")
            if not self.preview:
                try:
                    delete_resource(self.store, self.stack, resource)
                except Exception as exc:
                    step.error = str(exc) if isinstance(exc, MlinfraError) else _describe(exc)
                    self.failures.append(step)
                    self._emit(step, "failed")
                    raise
            self._record(step)
        if not self.preview:
            self.store.set_outputs(self.stack, self.outputs)


def delete_resource(store: SqliteStateStore, stack: str, resource: ResourceState) -> None:
    """Delete through the provider (unless retained), recording intent first."""

    def delete() -> None:
        if resource.custom and not resource.retain_on_delete:
            provider = load_provider(resource.outputs or resource.inputs, resource.name)
            provider.delete(resource.id, plain(resource.outputs))

    operation, _ = provider_call(store, stack, resource.urn, "delete", resource.inputs, delete)
    store.remove_resource(
        stack, resource.urn, pending_delete=resource.pending_delete, clear_operation=operation
    )


def provider_call(
    store: SqliteStateStore,
    stack: str,
    urn: str,
    kind: str,
    inputs: dict[str, Any],
    call: Callable[[], T],
) -> tuple[int, T]:
    """Run one provider call inside its pending-operation record. A call that raised has ended
    (the provider cleans up after a failure), so its record goes; only a call cut off by a
    crash leaves one for the next run to reconcile."""
    operation = store.begin_operation(stack, urn, kind, inputs)
    try:
        return operation, call()
    except Exception:
        store.end_operation(operation)
        raise


def data_held_by(resource: ResourceState) -> HeldData | None:
    """What deleting `resource` would lose, read live from its provider; nothing when it is
    retained on delete or its provider does not say."""
    props = resource.outputs or resource.inputs
    if not resource.custom or resource.retain_on_delete or PROVIDER_KEY not in props:
        return None
    provider = load_provider(props, resource.name)
    return held_data(provider, resource.id, plain(resource.outputs))


def _refusal(name: str, held: HeldData, *, replaced: bool) -> ProtectedResourceError:
    if replaced:
        return ProtectedResourceError(
            f"{name} holds {held} and would be replaced, which deletes what it holds; undo "
            "the change that forces the replacement, or pass `mlinfra up --delete-data`"
        )
    return ProtectedResourceError(
        f"{name} holds {held} and is no longer in the program; put it back, or run "
        "`mlinfra up --delete-data` to delete it and what it holds"
    )


def _moved(name: str, move: DataMove) -> str:
    return (
        f"{name} moved {move.what} from {move.source} to {move.target}; {move.source} is left "
        f"as it was: remove it once you have checked {move.target}"
    )


def delete_order(resources: list[ResourceState]) -> list[ResourceState]:
    """Dependents before what they depend on (children before parents)."""
    by_urn = {r.urn: r for r in resources if not r.pending_delete}
    ordered: list[ResourceState] = []
    placed: set[str] = set()

    def place(resource: ResourceState, path: frozenset[str]) -> None:
        if resource.urn in placed:
            return
        for other in by_urn.values():
            if other.urn in path or other.urn in placed:
                continue
            if resource.urn in other.dependencies or other.parent == resource.urn:
                place(other, path | {resource.urn})
        placed.add(resource.urn)
        ordered.append(resource)

    for resource in reversed(list(by_urn.values())):
        place(resource, frozenset())
    return [r for r in resources if r.pending_delete] + ordered


def _has_unknown(value: Any) -> bool:
    """Preview inputs not known yet arrive as the sentinel string or as pulumi's Unknown."""
    if isinstance(value, Unknown) or (isinstance(value, str) and value == UNKNOWN):
        return True
    if isinstance(value, dict):
        return any(_has_unknown(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_unknown(item) for item in value)
    return False


def _preview_outputs(news: dict[str, Any], old: ResourceState | None) -> dict[str, Any]:
    """In a preview, inputs pass through and everything else the provider computes is unknown."""
    outputs = {key: UNKNOWN for key in (old.outputs if old else {}) if key not in INTERNAL_KEYS}
    outputs.update({key: value for key, value in news.items() if key not in INTERNAL_KEYS})
    return outputs


def _describe(exc: BaseException) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last
