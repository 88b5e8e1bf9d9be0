"""What one server worker serves right now, and how it follows the env's deployment table.

The worker polls the table (one `stat` per tick); on a new generation it loads the versions it does
not hold yet in a thread, then swaps one reference. Requests already running finish on the models
they started with, new ones see the new set: no request is dropped or answered by half a switch.
If a version cannot be loaded (tampered artifact, unknown type), the old set keeps serving and the
refusal is acknowledged so the rollout that asked can undo its change; the worker tries again with
a growing delay, so a version whose artifact comes back (restored from a backup) is then served.

A worker loads the table once before it accepts any request (`start`), so a worker that was just
restarted never answers "no model is deployed" for an env that has one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from ._deployments import Deployment, WorkerAck, deployment_dir, read_deployment, write_ack
from ._metrics import VariantMetrics

if TYPE_CHECKING:
    from ._loading import ServedModel

__all__ = ["RETRY_FIRST_SECONDS", "RETRY_MAX_SECONDS", "Runtime", "Served", "Variant"]

log = logging.getLogger("mlinfra.serving")
# A generation that could not be loaded is tried again after 0.5 s, then twice as long each time.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class Variant:
    name: str  # "stable" or "canary"
    model: ServedModel
    metrics: VariantMetrics

    @property
    def version(self) -> int:
        return self.model.version


@dataclass(frozen=True)
class Served:
    """One consistent set of variants; replaced whole, never changed in place."""

    deployment: Deployment
    stable: Variant
    canary: Variant | None
    bin_edges: Any = None  # the stable version's regression deciles, shared by both variants

    def pick(self, sticky_value: str | None) -> Variant:
        """The variant answering this request (in shadow mode always stable)."""
        canary = self.canary
        weight = self.deployment.canary_weight
        if canary is None or weight == 0 or self.deployment.mode == "shadow":
            return self.stable
        if sticky_value is not None:
            bucket = zlib.crc32(sticky_value.encode()) % 100
        else:
            bucket = random.randrange(100)
        return canary if bucket < weight else self.stable

    def shadow(self) -> Variant | None:
        """The variant that also sees every request without answering it, if any."""
        return self.canary if self.deployment.mode == "shadow" else None

    def by_version(self, version: int) -> Variant | None:
        for variant in (self.stable, self.canary):
            if variant is not None and variant.version == version:
                return variant
        return None


class Runtime:
    """The worker's view of the env's deployment, kept current by `watch()`."""

    def __init__(self, *, registry_root: Path, env: str, poll_seconds: float = 0.2) -> None:
        self.registry_root = registry_root
        self.env = env
        self.directory = deployment_dir(registry_root, env)
        self.poll_seconds = poll_seconds
        self.served: Served | None = None
        self.last_error: str | None = None
        self._failed: int | None = None
        self._refused = False
        self._seen: tuple[int, int] | None = None
        self._acked: WorkerAck | None = None
        self._attempts = 0  # failed loads of the table's generation in a row
        self._retry_at: float | None = None  # monotonic time of the next try, after a failure

    @property
    def not_deployed_message(self) -> str:
        return (
            f"no model is deployed in env {self.env!r}; "
            f"run `mlinfra deploy VERSION --env {self.env}`"
        )

    @property
    def unavailable_reason(self) -> str:
        """Why nothing is served: the table's version was refused (and is retried), or there
        is no table yet."""
        return self.last_error or self.not_deployed_message

    async def start(self, *, hold: Callable[[], bool] = lambda: False) -> None:
        """Load what the table says before the worker accepts requests. A worker that cannot
        load it still starts, answers 503 saying why and tries again; unless `hold()`, which
        keeps it trying without accepting anything meanwhile."""
        await self._tick()
        while self._failed is not None and hold():
            await asyncio.sleep(self.poll_seconds)
            await self._tick()

    async def watch(self) -> None:
        """Follow the table until cancelled."""
        # Importing scikit-learn and skops takes seconds; do it now, not when a deploy waits.
        warming = asyncio.create_task(asyncio.to_thread(_import_model_libraries))
        warming.add_done_callback(lambda task: task.cancelled() or task.exception())
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self._tick()

    async def _tick(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # keep serving what we have; the next tick tries again
            log.warning("deployment table unreadable: %s", exc)

    async def refresh(self) -> None:
        """Load the table's generation if it is new to this worker, or due for another try."""
        try:
            stat = os.stat(self.directory / "deployment.json")
        except FileNotFoundError:
            self._acknowledge()
            return
        seen = (stat.st_ino, stat.st_mtime_ns)
        retry = self._retry_at is not None and time.monotonic() >= self._retry_at
        if seen == self._seen and not retry:
            return
        deployment = read_deployment(self.directory)
        if seen != self._seen:
            self._attempts = 0  # a new table: its first try is now
        self._seen = seen
        if deployment is None or self._current_generation() == deployment.generation:
            self._retry_at = None
            self._acknowledge()
            return
        try:
            served = await asyncio.to_thread(self._load, deployment)
        except Exception as exc:
            self._refuse(deployment.generation, exc)
        else:
            self.served = served
            self._failed = self._retry_at = self.last_error = None
            self._refused = False
            self._attempts = 0
            log.info("serving generation %s", deployment.generation)
        self._acknowledge()

    def _refuse(self, generation: int, exc: Exception) -> None:
        """Keep serving what is loaded, say why, and try again later."""
        error = f"generation {generation} refused: {exc}"
        if error != self.last_error:  # a retry failing the same way is not logged again
            log.error("%s; still serving generation %s", error, self._current_generation())
        self._failed = generation
        self._refused = isinstance(exc, ValidationError)
        self.last_error = error
        delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2**self._attempts)
        self._attempts += 1
        self._retry_at = time.monotonic() + delay

    def _current_generation(self) -> int | None:
        return self.served.deployment.generation if self.served else None

    def _load(self, deployment: Deployment) -> Served:
        from ._loading import load_served_model

        held = {}
        if self.served is not None:
            held = {v.version: v.model for v in (self.served.stable, self.served.canary) if v}

        def variant(name: str, version: int) -> Variant:
            model = held.get(version)
            if model is None or model.name != deployment.model:
                model = load_served_model(self.registry_root, deployment.model, version)
            return Variant(name, model, VariantMetrics(deployment.model, version, name))

        stable = variant("stable", deployment.stable)
        canary = variant("canary", deployment.canary) if deployment.canary is not None else None
        return Served(deployment, stable, canary, stable.model.decile_edges())

    def _acknowledge(self) -> None:
        """Tell rollouts where this worker stands; written only when that changes."""
        ack = WorkerAck(
            pid=os.getpid(),
            serving=self._current_generation(),
            failed=self._failed,
            error=self.last_error,
            refused=self._refused,
        )
        if self._acked is not None and self._acked.model_dump(exclude={"at"}) == ack.model_dump(
            exclude={"at"}
        ):
            return
        try:
            write_ack(self.directory, ack)
        except OSError as exc:
            log.warning("cannot write worker ack: %s", exc)
        else:
            self._acked = ack


def _import_model_libraries() -> None:
    import pandas  # noqa: F401
    import skops.io  # noqa: F401
