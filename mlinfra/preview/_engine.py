"""The engine of a branch env: the env's own engine, plus what a branch env's life needs. Its
record is written as it comes up (port, commit, last up), its registry seeded with the base
env's champion the first time, and the record dropped once a destroy deleted everything."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._environments import claim, forget, state_of

if TYPE_CHECKING:
    from ..config import Environment
    from ..engine import DriftReport, Engine, EventSink, HeldData, RunResult
    from ..state import KeptResource, LockHolder, ResourceState, UpdateRecord

__all__ = ["BranchEngine"]


class BranchEngine:
    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name

    @property
    def env(self) -> Environment:
        return self.inner.env

    @env.setter
    def env(self, env: Environment) -> None:
        self.inner.env = env

    def up(
        self,
        *,
        refresh: bool = False,
        force_unlock: bool = False,
        on_event: EventSink | None = None,
        delete_data: bool = False,
    ) -> RunResult:
        self.env = claim(self.env)
        warming = self._warm_seeding()
        result = self.inner.up(
            refresh=refresh, force_unlock=force_unlock, on_event=on_event, delete_data=delete_data
        )
        if warming is not None:
            warming.join()
        result.notes.extend(self._seed(result.outputs))
        return result

    def destroy(
        self,
        *,
        force_unlock: bool = False,
        on_event: EventSink | None = None,
        delete_data: bool = False,
    ) -> RunResult:
        """A destroy with `delete_data` that leaves nothing leaves no record either; without
        it, the record stays with the data kept, for `gc` or `destroy --delete-data`."""
        result = self.inner.destroy(
            force_unlock=force_unlock, on_event=on_event, delete_data=delete_data
        )
        if not delete_data:
            result.notes.append(
                f"branch env {self.env.name} keeps its record, port and data until "
                f"`mlinfra destroy {self.env.cli_args} --delete-data` or `mlinfra gc`"
            )
        elif not self.inner.resources() and not self.inner.kept():
            self.inner.forget()
            forget(self.env)
            result.notes.append(f"branch env {self.env.name} is gone: its record and port too")
        return result

    def _to_seed(self) -> bool:
        """Is the env still to be seeded: recorded, never seeded, `preview.seed_champion`?"""
        env = self.env
        with state_of(env.project) as store:
            record = store.branch_env(env.name)
        wanted = env.project.config.preview.seed_champion
        return wanted and record is not None and record.seeded is None

    def _warm_seeding(self) -> threading.Thread | None:
        """Import what seeding needs (skops, which imports scikit-learn: seconds) while `up`
        waits for the new server to answer, rather than after it."""
        if not self._to_seed():
            return None
        thread = threading.Thread(
            target=importlib.import_module, args=("skops.io",), name="warm-seeding", daemon=True
        )
        thread.start()
        return thread

    def _seed(self, outputs: dict[str, Any]) -> list[str]:
        """Seed the registry on the first up that made one."""
        from ..state import plain
        from ._seed import seed_champions

        registry_path = plain(outputs).get("registry_path")
        if not registry_path or not self._to_seed():
            return []
        seeded, notes = seed_champions(self.env, Path(registry_path))
        with state_of(self.env.project) as store:
            store.set_branch_env_seeded(self.env.name, seeded)
        return notes

    # The rest is the env's own engine's.

    def preview(self, *, on_event: EventSink | None = None) -> RunResult:
        return self.inner.preview(on_event=on_event)

    def refresh(self, *, apply: bool = False, force_unlock: bool = False) -> list[DriftReport]:
        return self.inner.refresh(apply=apply, force_unlock=force_unlock)

    def outputs(self) -> dict[str, Any]:
        return self.inner.outputs()

    def resources(self) -> list[ResourceState]:
        return self.inner.resources()

    def history(self, limit: int = 50) -> list[UpdateRecord]:
        return self.inner.history(limit=limit)

    def lock_holder(self) -> LockHolder | None:
        return self.inner.lock_holder()

    def data_at_risk(self) -> dict[str, HeldData]:
        return self.inner.data_at_risk()

    def kept(self) -> list[KeptResource]:
        return self.inner.kept()

    def forget(self) -> None:
        self.inner.forget()

    def close(self) -> None:
        self.inner.close()
