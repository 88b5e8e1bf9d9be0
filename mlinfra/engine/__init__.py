"""Engines that apply a stack program: `open_engine(env)` is the entry point.

Two engines share one interface (preview, up, destroy, refresh, outputs, resources, history):
the embedded engine (in-process, SQLite state, dynamic providers) and the pulumi engine
(Automation API, when the `pulumi` CLI is installed).
"""

from __future__ import annotations

import shutil
from typing import Any, Protocol

from ..config import Environment
from ..errors import EngineUnavailableError
from ..state import KeptResource, LockHolder, ResourceState, UpdateRecord
from ._data import DataMove, HeldData
from ._types import DriftReport, EventSink, Op, PropertyDiff, RunResult, Step, StepEvent

__all__ = [
    "DataMove",
    "DriftReport",
    "Engine",
    "EventSink",
    "HeldData",
    "Op",
    "PropertyDiff",
    "RunResult",
    "Step",
    "StepEvent",
    "open_engine",
]


class Engine(Protocol):
    name: str
    env: Environment

    def preview(self, *, on_event: EventSink | None = None) -> RunResult: ...

    def up(
        self,
        *,
        refresh: bool = False,
        force_unlock: bool = False,
        on_event: EventSink | None = None,
        delete_data: bool = False,
    ) -> RunResult: ...

    def destroy(
        self,
        *,
        force_unlock: bool = False,
        on_event: EventSink | None = None,
        delete_data: bool = False,
    ) -> RunResult: ...

    def refresh(self, *, apply: bool = False, force_unlock: bool = False) -> list[DriftReport]: ...

    def outputs(self) -> dict[str, Any]: ...

    def resources(self) -> list[ResourceState]: ...

    def history(self, limit: int = 50) -> list[UpdateRecord]: ...

    def lock_holder(self) -> LockHolder | None: ...

    def data_at_risk(self) -> dict[str, HeldData]:
        """What deleting each resource would lose (a registry's model versions), by name."""
        ...

    def kept(self) -> list[KeptResource]:
        """Resources an earlier `destroy` kept for their data; `destroy(delete_data=True)`
        deletes them."""
        ...

    def forget(self) -> None:
        """Drop everything the engine keeps of the stack (its history too), once destroyed:
        for a branch env that is gone."""
        ...

    def close(self) -> None: ...


def open_engine(env: Environment) -> Engine:
    """The engine the environment asks for; `auto` takes pulumi when its CLI is on PATH,
    unless the embedded engine already holds this stack's state. A branch env's engine also
    keeps its record (mlinfra.preview)."""
    engine = _own_engine(env)
    if env.branch is None:
        return engine
    from ..preview import BranchEngine

    return BranchEngine(engine)


def _own_engine(env: Environment) -> Engine:
    choice = env.settings.engine
    if env.settings.target == "kubernetes":
        if not shutil.which("pulumi"):
            raise EngineUnavailableError(kubernetes_without_cli_message(env))
        choice = "pulumi"  # mlinfra.toml refuses the embedded engine for kubernetes
    if choice == "auto":
        choice = (
            "pulumi" if shutil.which("pulumi") and not _embedded_state_exists(env) else "embedded"
        )
    if choice == "pulumi":
        if not shutil.which("pulumi"):
            raise EngineUnavailableError(missing_cli_message(env))
        from ._pulumi import PulumiEngine

        return PulumiEngine(env)
    from ._embedded import EmbeddedEngine

    return EmbeddedEngine(env)


def missing_cli_message(env: Environment) -> str:
    """Said here before an engine is made, and by the pulumi engine if the CLI is gone by the
    time it runs; kept here, as choosing an engine must not import `pulumi.automation`."""
    return (
        f"env {env.name!r} uses the pulumi engine but no `pulumi` CLI is on PATH; install it "
        '(https://www.pulumi.com/docs/install/) or set engine = "embedded"'
    )


def kubernetes_without_cli_message(env: Environment) -> str:
    """A kubernetes env is applied by the pulumi engine only; without its CLI, say what works."""
    return (
        f"env {env.name!r} is on kubernetes and is not applied from here: no `pulumi` CLI is on "
        f"PATH; run `mlinfra render {env.cli_args} --out DIR` and `kubectl apply -R -f DIR`, or "
        "install pulumi (https://www.pulumi.com/docs/install/)"
    )


def _embedded_state_exists(env: Environment) -> bool:
    if not (env.state_dir / "state.db").exists():
        return False
    from ._embedded import EmbeddedEngine

    engine = EmbeddedEngine(env)
    try:
        return bool(engine.resources())
    finally:
        engine.close()
