"""Watching production, end to end and for real: the example up with its drift monitor (a
supervised process), real traffic to the real server, alerts delivered to a webhook receiver
running in the test, and the retrain policy running `mlinfra cycle` until a new version serves.

The monitor checks every second over a 4 s window here, so that the test takes seconds, not
hours; the statistics are the same as at the default settings.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from _webhooks import running_receiver
from sklearn.datasets import load_iris

from mlinfra.serving import deployment_dir, read_deployment

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS = load_iris().data


def _monitoring(webhook: str, policy: str) -> str:
    return f"""
[env.dev.monitoring]
interval = "1s"
window = "4s"
min_samples = 60
policy = "{policy}"
webhook = "{webhook}"
cooldown = "1h"
retrain_cooldown = "1h"
"""


@contextmanager
def _traffic(port: int, shift: Callable[[], float]) -> Iterator[None]:
    """Single-row v2 requests of iris rows (petal features moved by `shift()`), about 100 a
    second from a thread, until the block ends; every one must succeed."""
    stop = threading.Event()
    failures: list[str] = []

    def send() -> None:
        rng = np.random.default_rng(0)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            while not stop.is_set():
                row = IRIS[rng.integers(len(IRIS))].copy()
                row[2:] += shift()
                inputs = [
                    {"name": name, "shape": [1], "datatype": "FP64", "data": [float(value)]}
                    for name, value in zip(FEATURES, row, strict=True)
                ]
                answer = client.post("/v2/models/iris/infer", json={"inputs": inputs})
                if answer.status_code != 200:
                    failures.append(answer.text)
                time.sleep(0.01)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
    assert not failures, failures[:3]


def _report(project: Any) -> dict[str, Any] | None:
    path = project.root / ".mlinfra" / "envs" / "dev" / "monitoring" / "report.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _checked_with_data(project: Any, verdict: str) -> bool:
    report = _report(project)
    return bool(report and report["report"] and report["report"]["verdict"] == verdict)


def _deployed(project: Any) -> None:
    for command in (("up", "--yes"), ("train", "--search", "none"), ("deploy", "latest")):
        done = project.cli(*command, "--env", "dev")
        assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_drift_is_alerted_once_to_the_webhook_and_the_retrain_policy_serves_a_new_version(
    iris_project,
):
    with running_receiver() as receiver:
        config = iris_project.root / "mlinfra.toml"
        config.write_text(config.read_text() + _monitoring(receiver.url, "retrain"))
        _deployed(iris_project)
        shift = 0.0
        with _traffic(iris_project.ports["dev"], lambda: shift):
            # undrifted: windows with enough rows and no drift, nothing raised or delivered
            _wait(lambda: _checked_with_data(iris_project, "no drift"), 30, "a no-drift check")
            time.sleep(3)
            assert receiver.bodies == []
            assert json.loads(iris_project.cli("alerts", "--json", "--env", "dev").stdout) == []
            # drifted: the petal features move by two standard deviations of petal length
            shift = 3.5
            _wait(lambda: receiver.bodies, 40, "an alert at the webhook")
            time.sleep(4)  # several more checks of the same drift
        alerts = [body["alert"] for body in receiver.bodies]
        named = [alert["feature"] for alert in alerts if alert["kind"] == "feature_drift"]
        assert "petal_length" in named
        kinds = [(alert["kind"], alert["feature"]) for alert in alerts]
        assert len(kinds) == len(set(kinds)), "one delivery per alert within the cool-down"
        listed = json.loads(iris_project.cli("alerts", "--json", "--env", "dev").stdout)
        assert {alert["id"] for alert in listed} == {alert["id"] for alert in alerts}
        assert max(alert["count"] for alert in listed) > 1, "repeats were grouped"
        # the retrain policy ran `mlinfra cycle`, which trained v2 and started serving it
        registry = iris_project.root / ".mlinfra" / "envs" / "dev" / "registry"

        def serves_v2() -> bool:
            table = read_deployment(deployment_dir(registry, "dev"))
            return table is not None and 2 in (table.stable, table.canary)

        _wait(serves_v2, 120, "the retraining cycle to serve v2")
        history = json.loads(iris_project.cli("history", "--json", "--env", "dev").stdout)
        cycles = [record for record in history if record["kind"] == "cycle"]
        assert [record["result"] for record in cycles] == ["succeeded"]
        acknowledged = iris_project.cli("alerts", "ack", str(alerts[0]["id"]), "--env", "dev")
        assert acknowledged.returncode == 0, acknowledged.stderr


@pytest.mark.slow
def test_the_rollback_policy_rolls_a_fresh_version_back_once_and_keeps_the_restored_one(
    iris_project,
):
    config = iris_project.root / "mlinfra.toml"
    config.write_text(config.read_text() + _monitoring("", "rollback"))
    _deployed(iris_project)
    for command in (("train", "--search", "none"), ("deploy", "latest")):
        done = iris_project.cli(*command, "--env", "dev")
        assert done.returncode == 0, done.stderr
    registry = iris_project.root / ".mlinfra" / "envs" / "dev" / "registry"

    def stable() -> int | None:
        table = read_deployment(deployment_dir(registry, "dev"))
        return table.stable if table is not None else None

    assert stable() == 2
    # every request moves the petal features far out: v2's predictions drift at once
    with _traffic(iris_project.ports["dev"], lambda: 3.5):
        _wait(lambda: stable() == 1, 60, "the monitor to roll v2 back")
        rolled_back_at = time.time()

        def checked_v1_since() -> bool:
            report = _report(iris_project)
            return bool(
                report
                and report["checked_at"] > _iso(rolled_back_at + 5)
                and report["report"]
                and report["report"]["verdict"] == "drift"
            )

        # v1 sees the same drifted inputs, but a rollback restored it: it stays
        _wait(checked_v1_since, 60, "checks of the restored v1 with drift")
        assert stable() == 1
    status = iris_project.cli("rollout", "status", "--json", "--env", "dev")
    history = json.loads(status.stdout)["history"]
    rollbacks = [record for record in history if record["action"] == "rollback"]
    assert [(r["from"], r["to"], r["actor"]) for r in rollbacks] == [(2, 1, "mlinfra-monitor")]


def test_a_killed_monitor_is_restarted_and_serving_never_notices(iris_project):
    config = iris_project.root / "mlinfra.toml"
    config.write_text(config.read_text() + _monitoring("", "alert"))
    _deployed(iris_project)

    def monitors() -> list[psutil.Process]:
        return [
            process
            for process in iris_project.processes()
            if "mlinfra.monitoring" in " ".join(process.cmdline())
        ]

    with _traffic(iris_project.ports["dev"], lambda: 0.0):
        first = _wait(monitors, 10, "the monitor")[0]
        first.kill()
        again = _wait(lambda: [p for p in monitors() if p.pid != first.pid], 30, "a restart")
        assert again
        killed_at = time.time()

        def checked_since() -> bool:
            report = _report(iris_project)
            return bool(report and report["checked_at"] > _iso(killed_at + 1))

        _wait(checked_since, 30, "a check by the restarted monitor")
    # every request in the block succeeded (`_traffic` asserts it)


def _iso(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
