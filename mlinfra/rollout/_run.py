"""Driving a rollout step by step, in the foreground (`deploy --wait`) or in a detached process.

One process at a time drives an env's rollout (the controller lock). Others may still promote or
abort it: the driver re-reads the record every tick and stops when it has moved on without it.
A driver started after one died takes the rollout on where it stands: at its recorded step, and
in the analysis window the dead one had opened (`window.json`), with the counters it read then.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from .._process import ProcessIdentity
from ..errors import DeploymentError, MlinfraError, StateLockedError
from ..serving import Deployment, read_acks, read_deployment
from ._analysis import analyse
from ._controller import Target, advance, begin, claim, pause, reopen
from ._driver import describe_driver, spawn_driver
from ._model import Rollout, StepResult, Window
from ._stats import Snapshot, scrape

__all__ = ["deploy", "drive", "resume", "status"]

_TICK = 0.2
_SCRAPE_PATIENCE = 15.0
_LOCK_PATIENCE = 5.0  # for a driver told to stop, which lets go within a tick or a scrape

OnResult = Callable[[Rollout, StepResult], None]

log = logging.getLogger("mlinfra.rollout")


class _Stopped(Exception):
    """The driver was told to stop (SIGTERM)."""


def deploy(
    target: Target,
    ref: str,
    *,
    wait: bool = False,
    detach: bool = True,
    on_result: OnResult | None = None,
    **options: Any,
) -> Rollout | Deployment:
    """`mlinfra deploy`: serve `ref` at once, or start a canary rollout and see it through,
    here (`wait`) or from a detached process (`detach`); `options` go to `begin`."""
    started = begin(target, ref, **options)
    if isinstance(started, Deployment):
        return started
    return _see_through(target, started, wait=wait, detach=detach, on_result=on_result)


def resume(
    target: Target,
    *,
    wait: bool = False,
    detach: bool = True,
    on_result: OnResult | None = None,
    actor: str | None = None,
) -> Rollout:
    """`mlinfra rollout resume`: start a driver for the env's paused or driverless rollout; it
    continues the current step (and its analysis window) with the results so far."""
    reopened = reopen(target, actor=actor)
    return _see_through(target, reopened, wait=wait, detach=detach, on_result=on_result)


def _see_through(
    target: Target, rollout: Rollout, *, wait: bool, detach: bool, on_result: OnResult | None
) -> Rollout:
    if wait:
        return drive(target, on_result=on_result)
    if detach:
        spawn_driver(target)
    return rollout


def drive(
    target: Target,
    *,
    on_result: OnResult | None = None,
    stop: threading.Event | None = None,
) -> Rollout:
    """Analyse each step of the env's rollout and act on it until promoted, aborted or paused;
    setting `stop` pauses it (the detached driver sets it on SIGTERM)."""
    store = target.store
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(store.controller(wait=_LOCK_PATIENCE))
        except StateLockedError as refused:
            return _unclaimed(target, refused)
        rollout = claim(target, ProcessIdentity.current())
        store.beat()
        if rollout.phase == "progressing":
            log.info(
                "driving rollout %s at %s%% (step %d of %d, %d restart(s) so far)",
                rollout.id,
                rollout.weight,
                rollout.step + 1,
                len(rollout.steps),
                rollout.driver_restarts,
            )
        try:
            _drive_steps(target, rollout, on_result, stop or threading.Event())
        except KeyboardInterrupt:
            _hold(target, rollout.id, "interrupted")
            raise
        except _Stopped:
            _hold(target, rollout.id, "it was sent SIGTERM")
        except MlinfraError as exc:
            _hold(target, rollout.id, str(exc))
        final = store.rollout()
        assert final is not None
        return final


def _unclaimed(target: Target, refused: StateLockedError) -> Rollout:
    """The lock stayed held (say, by the driver of a rollout aborted a moment ago): pause the
    rollout rather than leave it progressing with no driver, unless a live driver claimed it."""
    rollout = target.store.rollout()
    driver = rollout.controller if rollout is not None else None
    if rollout is None or rollout.phase != "progressing" or (driver is not None and driver.alive()):
        raise refused
    return pause(
        target,
        rollout.id,
        f"no driver: another process held the controller lock for {_LOCK_PATIENCE:g} s",
    )


def _drive_steps(
    target: Target, rollout: Rollout, on_result: OnResult | None, stop: threading.Event
) -> None:
    while rollout.phase == "progressing":
        window = _open_window(target, rollout, stop)
        result = _analyse_step(target, rollout, window, stop)
        if result is None:  # promoted, aborted or moved on by another command
            return
        rollout = advance(target, rollout.id, result)
        if on_result is not None:
            on_result(rollout, result)


def _hold(target: Target, rollout_id: str, why: str) -> None:
    """The driver is stopping early: pause the rollout rather than leave it progressing with no
    one to analyse it (unless another command already ended it, which is why we stopped)."""
    with contextlib.suppress(MlinfraError):
        pause(target, rollout_id, f"the driver stopped: {why}")


def _scrape(target: Target, rollout: Rollout, stop: threading.Event) -> Snapshot:
    """The server's counters; a server restarting (supervisor, `up --refresh`) gets a while."""
    deadline = time.monotonic() + _SCRAPE_PATIENCE
    while True:
        try:
            return scrape(target.url, model=rollout.model, token=target.token)
        except DeploymentError:
            if time.monotonic() > deadline:
                raise
            if stop.wait(0.5):
                raise _Stopped from None


def _open_window(target: Target, rollout: Rollout, stop: threading.Event) -> Window:
    """The current step's analysis window: the one a dead driver opened, or a new one."""
    store = target.store
    saved = store.window()
    if saved is not None and (saved.rollout, saved.step) == (rollout.id, rollout.step):
        log.info("going on with the analysis window opened at %s", saved.opened_at)
        return saved
    baseline = _scrape(target, rollout, stop).to_json()
    window = Window(
        rollout=rollout.id,
        step=rollout.step,
        opened_at=datetime.now(UTC),
        baseline=baseline,
        start=saved.start if saved is not None and saved.rollout == rollout.id else baseline,
    )
    store.save_window(window)
    return window


def _analyse_step(
    target: Target, rollout: Rollout, window: Window, stop: threading.Event
) -> StepResult | None:
    """Wait out the step's interval (longer while traffic is thin), then judge it."""
    policy = rollout.policy
    baseline = Snapshot.from_json(window.baseline)
    intervals = window.intervals
    while True:
        due = window.opened_at + timedelta(seconds=rollout.interval_seconds * (intervals + 1))
        if not _sleep(target, rollout, (due - datetime.now(UTC)).total_seconds(), stop):
            return None
        now = _scrape(target, rollout, stop)
        canary = now.minus(baseline).get("canary", rollout.canary)
        intervals += 1
        if canary.requests >= policy.min_samples or intervals >= policy.max_wait_intervals:
            break
        target.store.save_window(window.model_copy(update={"intervals": intervals}))
    stable_version = rollout.stable or rollout.canary
    stable = now.minus(baseline).get("stable", stable_version)
    if stable.requests < policy.min_samples:  # e.g. at 100%: judge against the whole rollout
        stable = now.minus(Snapshot.from_json(window.start)).get("stable", stable_version)
    return analyse(rollout.weight, canary, stable, policy)


def _sleep(target: Target, rollout: Rollout, seconds: float, stop: threading.Event) -> bool:
    """Sleep, but return False as soon as the rollout changed under us; say we are alive."""
    deadline = time.monotonic() + seconds
    while True:
        target.store.beat()
        current = target.store.rollout()
        if (
            current is None
            or current.id != rollout.id
            or current.phase != rollout.phase
            or current.step != rollout.step
        ):
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        if stop.wait(min(_TICK, left)):
            raise _Stopped


def status(target: Target, *, history: int = 10) -> dict[str, Any]:
    """Everything `rollout status` shows: the table, the rollout and its driver, the workers,
    recent history."""
    store = target.store
    table = read_deployment(target.directory)
    rollout = store.rollout()
    driver = None if rollout is None else describe_driver(store, rollout)
    pending = store.pending()
    return {
        "env": target.env,
        "deployment": None if table is None else table.model_dump(mode="json"),
        "rollout": None if rollout is None else rollout.model_dump(mode="json"),
        "driver": driver,
        "controller_running": driver is not None and driver["state"] == "running",
        "workers": [ack.model_dump(mode="json") for ack in read_acks(target.directory)],
        "pending": None if pending is None else pending.model_dump(mode="json"),
        "history": store.history(history),
    }
