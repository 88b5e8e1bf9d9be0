"""Whether a model-server instance serves what its env's deployment table says.

An instance is ready when supervisord runs its master, every worker of that master has loaded the
table's generation (their acks in the deployment directory say so) and the endpoint answers.
Workers are told apart by their parent: while a new instance starts beside an old one, both
answer on the same socket, so only the acks say which instance has loaded what.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ...errors import StateError
from ...serving import read_acks, read_deployment
from ._supervisor import Supervisor

__all__ = [
    "HEALTH_TIMEOUT",
    "UP_STATES",
    "Expected",
    "StartFailed",
    "live",
    "problem",
    "wait_ready",
]

HEALTH_PATH = "/v2/health/live"
# How long a starting server or monitor may take to be ready before `up` gives it up. Definite
# failures (supervisord gave up, a refused table) end the wait at once; this bounds only a slow
# start, and a two-core machine busy with other work was seen to need more than 30 s to start two
# workers that import scikit-learn, pandas and pyarrow.
HEALTH_TIMEOUT = 120.0
_STATES = {
    "BACKOFF": "it exited while starting",
    "FATAL": "it kept exiting and supervisord gave up",
    "EXITED": "it exited",
    "STOPPED": "it was stopped",
    "STOPPING": "it is stopping",
    "STARTING": "it is starting",
    "GONE": "supervisord is gone",
}
_GAVE_UP = frozenset({"BACKOFF", "FATAL", "GONE"})
UP_STATES = frozenset({"RUNNING", "STARTING"})  # STARTING: up for less than startsecs


@dataclass(frozen=True)
class Expected:
    """What a ready instance looks like."""

    url: str
    workers: int
    deployment: Path
    """The env's deployment directory: the table and the workers' acks."""


class StartFailed(Exception):
    """The instance cannot become ready; the message says why, in one line."""


def wait_ready(instance: Supervisor, expected: Expected, timeout: float = HEALTH_TIMEOUT) -> None:
    """Return once the instance is ready; raise StartFailed as soon as it cannot be."""
    deadline = time.monotonic() + timeout
    master_pid = None
    while True:
        state = instance.program_state()
        if state in _GAVE_UP:
            raise StartFailed(f"{_STATES[state]}: {_last_line(instance)}")
        master = instance.program()
        if master is not None:
            if master_pid not in (None, master.pid):
                raise StartFailed(f"it exited while starting: {_last_line(instance)}")
            master_pid = master.pid
            refusal, waiting_for = _workers(master, expected)
            if refusal is not None:
                raise StartFailed(refusal)
            if waiting_for is None and live(expected.url):
                return
        else:
            waiting_for = "its master process"
        if time.monotonic() > deadline:
            raise StartFailed(f"not ready within {timeout:g} s (waiting for {waiting_for})")
        time.sleep(0.05)


def problem(instance: Supervisor, expected: Expected) -> str | None:
    """Why a running instance does not serve what it should, or None."""
    state = instance.program_state()
    master = instance.program()
    if state not in UP_STATES or master is None:
        return f"supervisord says {state}: {_STATES.get(state, 'not running')}"
    orphans = [p.pid for p in instance.marked() if _is_worker(p) and _parent(p) != master.pid]
    if orphans:
        return f"{len(orphans)} workers outlived their master (pids {orphans})"
    refusal, _ = _workers(master, expected)
    if refusal is not None:
        return refusal
    if not live(expected.url):
        return f"no answer at {expected.url}"
    return None


def live(url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        response = httpx.get(url + HEALTH_PATH, timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _workers(master: psutil.Process, expected: Expected) -> tuple[str | None, str | None]:
    """(why the master's workers refused the table, or None; what readiness still waits for,
    or None when every worker serves the table's generation)."""
    try:
        workers = {p.pid for p in master.children() if _is_worker(p)}
    except psutil.Error:
        return None, "its workers"
    try:
        table = read_deployment(expected.deployment)
        acks = [ack for ack in read_acks(expected.deployment) if ack.pid in workers]
    except (OSError, ValueError, StateError) as exc:  # what the workers make of it counts
        return None, f"a readable deployment table ({exc})"
    for ack in acks:
        if table is not None and ack.failed == table.generation != ack.serving:
            return ack.error or f"generation {table.generation} refused", None
    loaded = [ack for ack in acks if table is None or ack.serving == table.generation]
    if len(workers) < expected.workers or len(loaded) < len(workers):
        what = f"generation {table.generation}" if table is not None else "the deployment table"
        return None, f"{len(loaded)} of {expected.workers} workers to load {what}"
    return None, None


def _is_worker(process: psutil.Process) -> bool:
    """A uvicorn worker (started by multiprocessing's spawn)."""
    try:
        return "spawn_main" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def _parent(process: psutil.Process) -> int | None:
    try:
        return process.ppid()
    except psutil.Error:
        return None


def _last_line(instance: Supervisor) -> str:
    lines = instance.log_tail(1).strip().splitlines()
    return lines[-1] if lines else "(empty log)"
