"""The detached rollout driver against a real server process and a real registry: killed with
SIGKILL it is started again by its watchdog and the rollout goes on from its recorded step and
analysis window; with no watchdog left it is reported dead and `resume` continues it; stopped,
it pauses the rollout. Process identities (pid and start time) on real processes.

Traffic comes from a thread that holds off while the test says so: a canary step cannot pass
without traffic, so the tests know which step a driver is in when they kill it.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from _serving import ROW, Server, new_registry, register, start_server
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlinfra._process import ProcessIdentity
from mlinfra.errors import ConfigError, MlinfraError, RolloutConflictError
from mlinfra.registry import Registry
from mlinfra.rollout import (
    AnalysisPolicy,
    Target,
    abort,
    begin,
    deploy,
    parse_duration,
    parse_steps,
    resume,
    status,
    stop_driver,
)
from mlinfra.rollout._model import Window
from mlinfra.serving import WorkerAck, read_acks, read_deployment
from mlinfra.serving._deployments import write_ack

GOOD = 2
INTERVAL = 0.3
# Room for a starved step to stay open while a driver is killed and started again (30 s).
# latency is judged in its own tests; here a loaded machine must not abort the canary
POLICY = AnalysisPolicy(min_samples=20, max_wait_intervals=100, latency_slack_ms=1000.0)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_registry(tmp_path_factory.mktemp("driver") / "registry")
    register(root, LogisticRegression(max_iter=500))
    register(root, DecisionTreeClassifier(max_depth=3, random_state=0))
    return root


@pytest.fixture(scope="module")
def server(registry: Path) -> Iterator[Server]:
    server = start_server(registry)
    yield server
    server.stop()


@pytest.fixture
def target(server: Server, registry: Path) -> Iterator[Target]:
    """The env with iris v1 alone serving, no rollout running; no driver left afterwards."""
    target = Target(registry=registry, env="dev", url=server.url, load_timeout=30)
    rollout = target.store.rollout()
    if rollout is not None and rollout.active:
        abort(target, reason="test baseline")
    table = read_deployment(target.directory)
    if table is None or table.stable != 1:
        begin(target, "1")
    yield target
    stop_driver(target.directory)


class HeldLoad:
    """Steady traffic from a thread, held off while `holding` says so (checked before every
    request, so at most the one in flight lands after it turns true)."""

    def __init__(self, url: str, holding: Callable[[], bool]) -> None:
        self.url = url
        self.holding = holding
        self.codes: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                if self.holding():
                    time.sleep(0.02)
                    continue
                answer = client.post(f"{self.url}/invocations", json={"instances": [ROW]})
                self.codes[answer.status_code] += 1

    def __enter__(self) -> HeldLoad:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_for(condition: Callable[[], Any], what: str, log: Path, timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout:g} s; driver log:\n{log.read_text()}")


def driver(target: Target) -> dict[str, Any]:
    report = status(target)["driver"]
    assert report is not None, "no rollout in progress"
    return report


def starved_window(target: Target, step: int, after: int = 0) -> Window | None:
    """The driver's window for `step` once it waited out more than `after` intervals."""
    window = target.store.window()
    rollout = target.store.rollout()
    if window is None or rollout is None or (window.rollout, window.step) != (rollout.id, step):
        return None
    return window if window.intervals > after else None


def test_driver_killed_mid_canary_is_restarted_and_goes_on_from_its_step_and_window(
    target: Target,
) -> None:
    log = target.directory / "controller.log"
    started = deploy(target, "2", steps=(25, 50, 100), interval_seconds=INTERVAL, policy=POLICY)
    released = threading.Event()  # until then, no traffic once the canary reached 50%
    held = lambda: not released.is_set() and target.store.rollout().step >= 1  # noqa: E731
    with HeldLoad(target.url, held) as load:
        window = wait_for(lambda: starved_window(target, step=1), "starved step at 50%", log)
        before = target.store.rollout()
        assert [(r.weight, r.verdict) for r in before.results] == [(25, "pass")]
        killed = driver(target)
        assert killed["state"] == "running" and killed["restarts"] == 0
        os.kill(killed["pid"], signal.SIGKILL)
        again = wait_for(
            lambda: (d := driver(target))["state"] == "running" and d["pid"] != killed["pid"] and d,
            "restarted driver",
            log,
        )
        assert again["restarts"] == 1
        continued(target, window, step=1, log=log)
        assert target.store.rollout().results == before.results
        released.set()
        wait_for(lambda: not target.store.rollout().active, "end of the rollout", log)
    final = target.store.rollout()
    assert final.id == started.id and final.phase == "promoted", final.reason
    assert [(r.weight, r.verdict) for r in final.results] == [
        (25, "pass"),
        (50, "pass"),
        (100, "pass"),
    ]
    assert final.results[0] == before.results[0] and final.driver_restarts == 1
    assert status(target)["rollout"]["driver_restarts"] == 1  # what `rollout status --json` shows
    assert read_deployment(target.directory).stable == GOOD
    assert "was killed by SIGKILL; starting it again" in log.read_text()
    assert set(load.codes) == {200}


def continued(target: Target, opened: Window, *, step: int, log: Path) -> None:
    """The driver running now goes on in the window `opened` (by a driver since killed): the
    same baseline, more intervals than the dead one recorded."""
    last = target.store.window()
    later = wait_for(lambda: starved_window(target, step, last.intervals), "next interval", log)
    assert (later.opened_at, later.baseline) == (opened.opened_at, opened.baseline)


def test_driver_with_no_watchdog_left_is_reported_dead_and_resume_goes_on(
    target: Target,
) -> None:
    log = target.directory / "controller.log"
    hold = threading.Event()
    hold.set()
    with HeldLoad(target.url, hold.is_set) as load:
        deploy(target, "2", steps=(50, 100), interval_seconds=INTERVAL, policy=POLICY)
        window = wait_for(lambda: starved_window(target, step=0), "starved first step", log)
        running = driver(target)
        watchdog = target.store.rollout().watchdog
        assert running["watchdog_pid"] == watchdog.pid
        os.kill(watchdog.pid, signal.SIGKILL)
        wait_for(lambda: not watchdog.alive(), "watchdog gone", log)
        os.kill(running["pid"], signal.SIGKILL)

        dead = wait_for(lambda: (d := driver(target))["state"] == "dead" and d, "dead driver", log)
        assert dead["pid"] is None and dead["since"] is not None
        assert target.store.rollout().phase == "progressing"
        with pytest.raises(RolloutConflictError, match="in progress") as busy:
            begin(target, "1")
        assert busy.value.exit_code == 8

        resumed = resume(target)
        assert resumed.phase == "progressing" and resumed.step == 0
        wait_for(lambda: driver(target)["state"] == "running", "resumed driver", log)
        continued(target, window, step=0, log=log)
        hold.clear()
        wait_for(lambda: not target.store.rollout().active, "end of the rollout", log)
    final = target.store.rollout()
    assert final.phase == "promoted" and final.driver_restarts == 1, final.reason
    actions = [event["action"] for event in target.store.history()]
    after_resume = actions[len(actions) - 1 - actions[::-1].index("resume") :]
    assert set(after_resume[1:-1]) <= {"step"} and after_resume[-1] == "promote", actions
    assert set(load.codes) == {200}


def test_stopped_driver_pauses_the_rollout_leaves_no_process_and_resume_goes_on(
    target: Target,
) -> None:
    log = target.directory / "controller.log"
    deploy(target, "2", steps=(50, 100), interval_seconds=INTERVAL, policy=POLICY)
    wait_for(lambda: starved_window(target, step=0), "starved first step", log)
    rollout = target.store.rollout()
    processes = [rollout.watchdog, rollout.controller]
    assert all(p is not None and p.alive() for p in processes)
    stop_driver(target.directory)
    assert not any(p.alive() for p in processes)
    paused = target.store.rollout()
    assert paused.phase == "paused" and "SIGTERM" in paused.reason, paused.reason
    assert "mlinfra rollout resume" in paused.reason
    assert driver(target)["state"] == "none"
    assert read_deployment(target.directory).canary == GOOD  # held where it was

    paused_at = datetime.now(UTC)
    resume(target)  # after a pause, the step is analysed again in a new window
    wait_for(lambda: (w := target.store.window()) and w.opened_at > paused_at, "new window", log)
    with HeldLoad(target.url, lambda: False):
        wait_for(lambda: not target.store.rollout().active, "end of the rollout", log)
    assert target.store.rollout().phase == "promoted"


def test_deploy_of_the_version_already_served_changes_nothing(target: Target) -> None:
    table = read_deployment(target.directory)
    events = target.store.history()
    again = begin(target, "1")
    assert again == table and target.store.history() == events


def test_deploy_of_the_version_a_restarted_server_refused_serves_it_again(
    tmp_path: Path,
) -> None:
    """The version's artifact was missing when the server started: the table says v1, the
    worker serves nothing, so deploying v1 is not "nothing to do" but writes it again."""
    root = new_registry(tmp_path / "registry")
    register(root, LogisticRegression(max_iter=500))
    target = Target(registry=root, env="dev", url="http://127.0.0.1:9", load_timeout=30)
    first = begin(target, "1")  # no server yet: recorded for the one to come
    with Registry.open(root) as opened:
        digest = opened.get("iris", 1).artifact_sha256
    artifact = root / "artifacts" / digest[:2] / digest[2:]
    shutil.move(artifact, tmp_path / "away")
    server = start_server(root)
    try:
        wait_for(
            lambda: any(a.failed == first.generation for a in read_acks(target.directory)),
            "refusal",
            server.log,
        )
        with pytest.raises(MlinfraError, match="the server refused the change"):
            begin(target, "1")  # written again, and refused again: the artifact is still away
        shutil.move(tmp_path / "away", artifact)
        begin(target, "1")  # written again (unless the worker's own retry was quicker)
        answer = server.post("/invocations", json={"instances": [ROW]})
        assert answer.status_code == 200 and answer.headers["x-model-version"] == "1"
        served = read_deployment(target.directory)
        assert begin(target, "1") == served  # now every worker serves it: nothing to do
    finally:
        server.stop()


def test_ack_whose_pid_went_to_another_process_is_a_dead_workers(
    registry: Path, tmp_path: Path
) -> None:
    """A worker ack names this test process's pid with another start time, as the ack of a
    dead worker does once its pid is reused: a deploy must not wait for that "worker"."""
    target = Target(registry=registry, env="reused", url="http://127.0.0.1:9", load_timeout=1)
    me = ProcessIdentity.current()
    write_ack(target.directory, WorkerAck(pid=me.pid, started=me.started - 3600, serving=1))
    assert read_acks(target.directory) == []
    assert not (target.directory / "workers" / f"{me.pid}.json").exists()
    write_ack(target.directory, WorkerAck(pid=me.pid, started=me.started - 3600, serving=1))
    assert begin(target, "1").stable == 1  # would wait for it, and fail after load_timeout
    write_ack(tmp_path, WorkerAck(pid=me.pid, serving=1))  # stamped with the real start time
    assert [ack.process for ack in read_acks(tmp_path)] == [me]


def test_rollout_plan_is_bounded_with_a_clear_error(target: Target) -> None:
    for text in ("25h", "50ms"):
        with pytest.raises(ConfigError, match="from 100ms to 24h"):
            parse_duration(text)
    assert parse_duration("24h") == 86400
    with pytest.raises(ConfigError, match="at most 20 steps"):
        parse_steps(",".join(str(step) for step in range(1, 22)), None)
    with pytest.raises(ConfigError, match="from 100ms to 24h"):
        begin(target, "2", steps=(50, 100), interval_seconds=10**6)
    rollout = target.store.rollout()
    assert rollout is None or not rollout.active
