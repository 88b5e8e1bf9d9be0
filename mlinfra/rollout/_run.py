"""Driving a rollout step by step, in the foreground (`deploy --wait`) or in a detached process.

One process at a time drives an env's rollout (the controller lock). Others may still promote or
abort it: the driver re-reads the record every tick and stops when it has moved on without it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .._code_paths import code_path_arguments, recorded_code_paths
from ..errors import DeploymentError, MlinfraError, StateLockedError
from ..serving import Deployment, pid_alive, read_acks, read_deployment
from ._analysis import analyse
from ._controller import Target, active_rollout, advance, begin, pause
from ._model import Rollout, StepResult
from ._stats import Snapshot, scrape

__all__ = ["TOKEN_VARIABLE", "deploy", "drive", "spawn_driver", "status"]

TOKEN_VARIABLE = "MLINFRA_SERVING_TOKEN"  # how a detached driver gets the token: never in argv
_TICK = 0.2
_SCRAPE_PATIENCE = 15.0
_LOCK_PATIENCE = 5.0  # for a driver told to stop, which lets go within a tick or a scrape


def deploy(
    target: Target,
    ref: str,
    *,
    wait: bool = False,
    detach: bool = True,
    on_result: Callable[[Rollout, StepResult], None] | None = None,
    **options: Any,
) -> Rollout | Deployment:
    """`mlinfra deploy`: serve `ref` at once, or start a canary rollout and see it through,
    here (`wait`) or from a detached process (`detach`); `options` go to `begin`."""
    started = begin(target, ref, **options)
    if isinstance(started, Deployment):
        return started
    if wait:
        return drive(target, on_result=on_result)
    if detach:
        spawn_driver(target)
    return started


def drive(
    target: Target, *, on_result: Callable[[Rollout, StepResult], None] | None = None
) -> Rollout:
    """Analyse each step of the env's rollout and act on it until promoted, aborted or paused."""
    store = target.store
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(store.controller(wait=_LOCK_PATIENCE))
        except StateLockedError as refused:
            return _unclaimed(target, refused)
        with store.locked():
            rollout = active_rollout(store)
            rollout.controller_pid = os.getpid()
            store.save(rollout)
        try:
            _drive_steps(target, rollout, on_result)
        except KeyboardInterrupt:
            _hold(target, rollout.id, "interrupted")
            raise
        except MlinfraError as exc:
            _hold(target, rollout.id, str(exc))
        final = store.rollout()
        assert final is not None
        return final


def _unclaimed(target: Target, refused: StateLockedError) -> Rollout:
    """The lock stayed held (say, by the driver of a rollout aborted a moment ago): pause the
    rollout rather than leave it progressing with no driver, unless a live driver claimed it."""
    rollout = target.store.rollout()
    if (
        rollout is None
        or rollout.phase != "progressing"
        or (rollout.controller_pid is not None and pid_alive(rollout.controller_pid))
    ):
        raise refused
    return pause(
        target,
        rollout.id,
        f"no driver: another process held the controller lock for {_LOCK_PATIENCE:g} s",
    )


def _drive_steps(
    target: Target, rollout: Rollout, on_result: Callable[[Rollout, StepResult], None] | None
) -> None:
    start = _scrape(target, rollout)
    while rollout.phase == "progressing":
        result = _analyse_step(target, rollout, start)
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


def _scrape(target: Target, rollout: Rollout) -> Snapshot:
    """The server's counters; a server restarting (supervisor, `up --refresh`) gets a while."""
    deadline = time.monotonic() + _SCRAPE_PATIENCE
    while True:
        try:
            return scrape(target.url, model=rollout.model, token=target.token)
        except DeploymentError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _analyse_step(target: Target, rollout: Rollout, start: Snapshot) -> StepResult | None:
    """Wait out the step's interval (longer while traffic is thin), then judge it."""
    policy = rollout.policy
    baseline = _scrape(target, rollout)
    for _ in range(policy.max_wait_intervals):
        if not _sleep(target, rollout, rollout.interval_seconds):
            return None
        now = _scrape(target, rollout)
        window = now.minus(baseline)
        canary = window.get("canary", rollout.canary)
        if canary.requests >= policy.min_samples:
            break
    stable_version = rollout.stable or rollout.canary
    stable = window.get("stable", stable_version)
    if stable.requests < policy.min_samples:  # e.g. at 100%: judge against the whole rollout
        stable = now.minus(start).get("stable", stable_version)
    return analyse(rollout.weight, canary, stable, policy)


def _sleep(target: Target, rollout: Rollout, seconds: float) -> bool:
    """Sleep, but return False as soon as the rollout changed under us."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(_TICK, left))
        current = target.store.rollout()
        if (
            current is None
            or current.id != rollout.id
            or current.phase != rollout.phase
            or current.step != rollout.step
        ):
            return False
    return True


def spawn_driver(target: Target) -> int:
    """Drive the env's rollout from a detached process that outlives this one; its pid.

    It imports the project's code from where the env's server does (its stack's `code_paths`).
    """
    log = open(target.directory / "controller.log", "ab")  # noqa: SIM115 - the child keeps it
    env = dict(os.environ)
    if target.token:
        env[TOKEN_VARIABLE] = target.token
    command = [
        sys.executable, "-m", "mlinfra.rollout",
        "--registry", str(target.registry.resolve()), "--env", target.env, "--url", target.url,
        *code_path_arguments(recorded_code_paths(target.directory)),
    ]  # fmt: skip
    with log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=target.directory,  # not this process's, which `-m` would put on its import path
            start_new_session=True,
        )
    # Reap it if it ends while we live (no zombie that looks alive); a CLI process simply exits
    # and leaves it to init.
    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid


def status(target: Target, *, history: int = 10) -> dict[str, Any]:
    """Everything `rollout status` shows: the table, the rollout, the workers, recent history."""
    store = target.store
    table = read_deployment(target.directory)
    rollout = store.rollout()
    driver = rollout.controller_pid if rollout is not None and rollout.active else None
    pending = store.pending()
    return {
        "env": target.env,
        "deployment": None if table is None else table.model_dump(mode="json"),
        "rollout": None if rollout is None else rollout.model_dump(mode="json"),
        "controller_running": driver is not None and pid_alive(driver),
        "workers": [ack.model_dump(mode="json") for ack in read_acks(target.directory)],
        "pending": None if pending is None else pending.model_dump(mode="json"),
        "history": store.history(history),
    }
