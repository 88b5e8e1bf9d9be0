"""The detached driver of a rollout, and the watchdog that starts it again when it dies.

`mlinfra deploy` and `mlinfra rollout resume` start `python -m mlinfra.rollout` in a session of
its own: a watchdog, which runs the driver (`--no-watchdog`) as its child and starts it again
each time it dies (killed, crashed) while its rollout is still progressing, but not when it exits
because the rollout ended or paused. The new driver takes the rollout on at its recorded step
and analysis window. Both processes are recorded in the rollout (pid and start time), so
`rollout status` can tell a live driver from a dead one, and the model server's delete
(`mlinfra destroy`) stops them.

supervisord, which keeps the server up, would outlive the program: every env would keep an idle
daemon once its rollouts ended. The watchdog ends with its rollout.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeGuard

from .._code_paths import code_path_arguments, recorded_code_paths
from .._process import ProcessIdentity
from ._controller import Target, _pause, pause, watched_by
from ._model import Rollout
from ._store import RolloutStore

__all__ = [
    "NO_WATCHDOG_OPTION",
    "TOKEN_VARIABLE",
    "UNEXPECTED_EXIT",
    "describe_driver",
    "spawn_driver",
    "stop_driver",
    "watch",
]

TOKEN_VARIABLE = "MLINFRA_SERVING_TOKEN"  # how a detached driver gets the token: never in argv
NO_WATCHDOG_OPTION = "--no-watchdog"
UNEXPECTED_EXIT = 3  # the driver hit a bug: worth a restart, as a death is
_DEATHS_IN_A_ROW = 5  # quick deaths before the watchdog gives up and pauses the rollout
_STEADY_SECONDS = 30.0  # a driver that ran this long before dying starts the count again
_FIRST_BACKOFF = 0.2  # doubled at every quick death
_STOP_WAIT = 10.0  # a driver told to stop lets go within a tick, or a switch it is making

log = logging.getLogger("mlinfra.rollout")


def driver_command(target: Target, code_paths: list[str], *, watchdog: bool) -> list[str]:
    command = [
        sys.executable, "-m", "mlinfra.rollout",
        "--registry", str(target.registry.resolve()), "--env", target.env, "--url", target.url,
        *code_path_arguments(code_paths),
    ]  # fmt: skip
    return command if watchdog else [*command, NO_WATCHDOG_OPTION]


def spawn_driver(target: Target) -> int:
    """Drive the env's rollout from a detached watchdog and driver that outlive this process;
    the watchdog's pid. They import the project's code from where the env's server does."""
    log_file = open(target.directory / "controller.log", "ab")  # noqa: SIM115 - the child keeps it
    env = dict(os.environ)
    if target.token:
        env[TOKEN_VARIABLE] = target.token
    command = driver_command(target, recorded_code_paths(target.directory), watchdog=True)
    with log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=env,
            cwd=target.directory,  # not this process's, which `-m` would put on its import path
            start_new_session=True,
        )
    # Reap it if it ends while we live (no zombie that looks alive); a CLI process simply exits
    # and leaves it to init.
    threading.Thread(target=process.wait, daemon=True).start()
    identity = ProcessIdentity.of(process.pid)
    if identity is not None:
        watched_by(target, identity)
    return process.pid


def watch(target: Target, code_paths: list[str]) -> int:
    """The watchdog: run the driver until the rollout no longer needs one; SIGTERM stops both."""
    store = target.store
    stopping = threading.Event()
    child: subprocess.Popen[bytes] | None = None

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.terminate()  # the driver pauses the rollout and exits

    signal.signal(signal.SIGTERM, stop)
    command = driver_command(target, code_paths, watchdog=False)
    first = store.rollout()
    if first is None or not _progressing(first, first.id):
        return 0  # ended or paused before we started: nothing to drive
    deaths = 0
    while not stopping.is_set():
        began = time.monotonic()
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        if stopping.is_set():  # told to stop while starting it
            child.terminate()
        code = child.wait()
        rollout = store.rollout()
        if stopping.is_set() or not _died(code) or not _progressing(rollout, first.id):
            return 0
        deaths = deaths + 1 if time.monotonic() - began < _STEADY_SECONDS else 1
        if deaths >= _DEATHS_IN_A_ROW:
            pause(target, rollout.id, f"the driver {_how(code)} {deaths} times in a row")
            log.error("the driver %s %d times in a row; rollout paused", _how(code), deaths)
            return 1
        log.warning("the driver (pid %d) %s; starting it again", child.pid, _how(code))
        stopping.wait(_FIRST_BACKOFF * 2 ** (deaths - 1))
    return 0


def _died(code: int) -> bool:
    return code < 0 or code == UNEXPECTED_EXIT


def _progressing(rollout: Rollout | None, rollout_id: str) -> TypeGuard[Rollout]:
    return rollout is not None and rollout.id == rollout_id and rollout.phase == "progressing"


def _how(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"crashed (exit {code}; see controller.log)"


def stop_driver(directory: Path) -> None:
    """Stop the detached driver of the env whose rollout records live in `directory`, and its
    watchdog; the driver pauses the rollout as it goes. Returns once both have exited."""
    rollout = RolloutStore(directory).rollout()
    if rollout is None or rollout.watchdog is None:
        return  # nothing detached (a `--wait` driver belongs to its terminal)
    processes = [p for p in (rollout.watchdog, rollout.controller) if p is not None and p.alive()]
    for how in ("terminate", "kill"):
        for identity in processes:
            if (process := identity.process()) is not None:
                getattr(process, how)()
        deadline = time.monotonic() + _STOP_WAIT
        while any(p.alive() for p in processes) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not any(p.alive() for p in processes):
            break
    # A driver still starting when SIGTERM came (before its handler was set) could not pause.
    store = RolloutStore(directory)
    with store.locked():
        left = store.rollout()
        if left is not None and left.id == rollout.id and left.phase == "progressing":
            _pause(store, left, "the driver stopped: it was sent SIGTERM")


def describe_driver(store: RolloutStore, rollout: Rollout) -> dict[str, Any] | None:
    """What drives an active rollout: `state` is running, starting (its watchdog is starting
    one), none (paused: no driver needed) or dead (progressing with no one to analyse it)."""
    if not rollout.active:
        return None
    controller, watchdog = rollout.controller, rollout.watchdog
    watching = watchdog if watchdog is not None and watchdog.alive() else None
    since: datetime | None = None
    if controller is not None and controller.alive():
        state = "running"
    elif watching is not None:
        state = "starting"
    elif rollout.phase == "paused":
        state = "none"
    else:
        state = "dead"
        beat = store.last_beat()
        since = max(beat, rollout.started_at) if beat is not None else rollout.started_at
    return {
        "state": state,
        "pid": controller.pid if state == "running" and controller is not None else None,
        "watchdog_pid": watching.pid if watching is not None else None,
        "restarts": rollout.driver_restarts,
        "since": None if since is None else since.astimezone(UTC).isoformat(),
    }
