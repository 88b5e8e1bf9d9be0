"""`mlinfra deploy / promote / abort / rollback / rollout status` as real CLI processes against the
bundled example brought up for real (`mlinfra up`), with real models in its registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from _serving import FEATURES, ROW, register
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlinfra.errors import GateFailedError, RolloutConflictError, ValidationError
from mlinfra.registry import Registry
from mlinfra.rollout import Target, status


def _json(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _steady_load(url: str, stop: threading.Event, codes: list[int]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            codes.append(client.post(f"{url}/invocations", json={"instances": [ROW]}).status_code)


@pytest.mark.slow
def test_cli_deploys_rolls_out_reports_and_rolls_back_on_a_real_env(iris_project) -> None:  # noqa: ANN001
    iris_project.set_gates()  # these versions are fitted here, not on the example's data
    up = iris_project.cli("up", "--env", "dev", "--yes", "--json")
    assert up.returncode == 0, up.stderr
    outputs = _json(iris_project.cli("outputs", "--env", "dev", "--json"))
    registry, url = Path(outputs["registry_path"]), outputs["serving_url"]
    register(registry, LogisticRegression(max_iter=500))
    register(registry, DecisionTreeClassifier(max_depth=3, random_state=0))
    register(
        registry, LogisticRegression(), features=FEATURES.iloc[:, :3], schema_features=FEATURES
    )
    register(registry, DecisionTreeClassifier(max_depth=1, random_state=0))
    with Registry.open(registry) as opened:
        digest = opened.get("iris", 4).artifact_sha256
    tampered = registry / "artifacts" / digest[:2] / digest[2:]
    tampered.write_bytes(tampered.read_bytes()[:-4] + b"evil")

    first = _json(iris_project.cli("deploy", "1", "--env", "dev", "--json"))
    assert (first["stable"], first["canary"]) == (1, None)
    stop, codes = threading.Event(), []
    load = threading.Thread(target=_steady_load, args=(url, stop, codes))
    load.start()
    try:
        canary = iris_project.cli(
            "deploy", "v2", "--env", "dev", "--steps", "50,100", "--interval", "400ms",
            "--min-samples", "20", "--wait", "--json",
        )  # fmt: skip
        broken = iris_project.cli(
            "deploy", "3", "--env", "dev", "--canary", "50", "--interval", "400ms",
            "--min-samples", "20", "--wait",
        )  # fmt: skip
    finally:
        stop.set()
        load.join()
    rollout = _json(canary)
    assert (
        rollout["phase"] == "promoted"
        and [r["verdict"] for r in rollout["results"]] == ["pass"] * 2
    )
    assert broken.returncode == GateFailedError.exit_code
    assert broken.stderr.count("\n") == 1 and "rollout aborted: error rate" in broken.stderr
    assert 200 in codes and set(codes) <= {200, 500}

    report = _json(iris_project.cli("rollout", "status", "--env", "dev", "--json"))
    assert report["deployment"]["stable"] == 2 and report["rollout"]["phase"] == "aborted"
    assert [e["action"] for e in report["history"]][-2:] == ["step", "abort"]
    people = iris_project.cli("rollout", "status", "--env", "dev")
    assert people.returncode == 0 and "env dev serves iris v2" in people.stdout

    refused = iris_project.cli("deploy", "4", "--env", "dev")
    assert refused.returncode == ValidationError.exit_code
    assert "modified after registration" in refused.stderr
    nothing = iris_project.cli("promote", "--env", "dev")
    assert nothing.returncode == 1 and "no rollout" in nothing.stderr

    back = _json(iris_project.cli("rollback", "--env", "dev", "--json"))
    assert back["stable"] == 1
    answer = httpx.post(f"{url}/invocations", json={"instances": [ROW]}, timeout=10)
    assert answer.headers["x-model-version"] == "1"


def test_cli_serving_commands_do_not_import_the_web_stack_or_scikit_learn() -> None:
    probe = (
        "import sys, mlinfra.cli.serving, mlinfra.rollout; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'sklearn', 'pandas', 'skops', "
        "'httpx', 'prometheus_client') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "1", "--steps", "50,10"], "steps"),
        (["deploy", "1", "--interval", "soon"], "interval"),
        (["deploy", "1", "--canary", "0"], "--canary"),
        (["deploy", "1", "--interval", "25h"], "from 100ms to 24h"),
        (["deploy", "1", "--steps", ",".join(map(str, range(1, 22)))], "at most 20 steps"),
    ],
)
def test_cli_refuses_bad_rollout_options_in_one_line(
    iris_project, args: list[str], message: str
) -> None:  # noqa: ANN001
    result = iris_project.cli(*args, "--env", "dev")
    assert result.returncode == 2 and message in result.stderr


def _wait_for_driver(target: Target, state: str) -> dict:
    deadline = time.monotonic() + 60
    while (driver := status(target)["driver"]) is None or driver["state"] != state:
        assert time.monotonic() < deadline, f"driver never {state}: {driver}"
        time.sleep(0.1)
    return driver


@pytest.mark.slow
def test_cli_says_a_driver_died_resumes_it_and_destroy_stops_it(iris_project) -> None:  # noqa: ANN001
    iris_project.set_gates()
    assert iris_project.cli("up", "--env", "dev", "--yes").returncode == 0
    outputs = _json(iris_project.cli("outputs", "--env", "dev", "--json"))
    registry = Path(outputs["registry_path"])
    target = Target(registry=registry, env="dev", url=outputs["serving_url"])
    register(registry, LogisticRegression(max_iter=500))
    register(registry, DecisionTreeClassifier(max_depth=3, random_state=0))
    assert _json(iris_project.cli("deploy", "1", "--env", "dev", "--json"))["changed"] is True
    same = iris_project.cli("deploy", "1", "--env", "dev")
    assert same.returncode == 0 and "already serves iris v1" in same.stdout, same.stderr
    assert "nothing to do" in same.stdout

    canary = iris_project.cli(
        "deploy", "2", "--env", "dev", "--steps", "50,100", "--interval", "10s",
        "--min-samples", "20",
    )  # fmt: skip
    assert canary.returncode == 0, canary.stderr
    running = _wait_for_driver(target, "running")  # no traffic: it waits at 50% for 100 s
    busy = iris_project.cli("deploy", "1", "--env", "dev")
    assert busy.returncode == RolloutConflictError.exit_code == 8
    assert busy.stderr.count("\n") == 1 and "in progress" in busy.stderr

    os.kill(running["watchdog_pid"], signal.SIGKILL)
    os.kill(running["pid"], signal.SIGKILL)
    _wait_for_driver(target, "dead")
    dead = iris_project.cli("rollout", "status", "--env", "dev")
    assert dead.returncode == 0 and "driver: dead since" in dead.stdout, dead.stdout
    assert "`mlinfra rollout resume`, `mlinfra promote` or `mlinfra abort`" in dead.stdout

    assert iris_project.cli("rollout", "resume", "--env", "dev").returncode == 0
    _wait_for_driver(target, "running")
    alive = iris_project.cli("rollout", "status", "--env", "dev")
    assert "restarted 1 time)" in alive.stdout, alive.stdout
    rollout = target.store.rollout()
    drivers = [rollout.watchdog, rollout.controller]

    destroyed = iris_project.cli("destroy", "--env", "dev", "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert not any(process.alive() for process in drivers)
    assert iris_project.processes() == []
    paused = target.store.rollout()
    assert paused.phase == "paused" and "SIGTERM" in paused.reason
