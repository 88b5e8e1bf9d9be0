"""What the model server survives, for real: `mlinfra up` on a copy of the iris example while a
thread sends predictions, a master killed with SIGKILL, an artifact gone and back.

Each test serves a registered model (written to the env's deployment table, as a rollout does)
and counts the requests that failed while the env was documented to stay up.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from _serving import ROW, register, serve_table
from conftest import IrisProject, free_port
from sklearn.linear_model import LogisticRegression
from test_providers_local import wait_until

pytestmark = pytest.mark.slow


class Load:
    """Two threads posting predictions in a loop: one on a keep-alive connection, one on a new
    connection each time (so that requests also reach whichever process accepts next)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/invocations"
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(keep_alive,), daemon=True)
            for keep_alive in (True, False)
        ]

    def _run(self, keep_alive: bool) -> None:
        limits = httpx.Limits(max_keepalive_connections=None if keep_alive else 0)
        with httpx.Client(timeout=10, trust_env=False, limits=limits) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json={"instances": [ROW]})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code == 200:
                    self.answered += 1
                else:
                    self.failures.append(f"{response.status_code} {response.text}")
                self._stop.wait(0.002)

    @contextmanager
    def running(self) -> Iterator[Load]:
        for thread in self._threads:
            thread.start()
        wait_until(lambda: self.answered > 0 or bool(self.failures))
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join()


def configure(project: IrisProject, **serving: object) -> None:
    """Set the dev env's `serving.*` keys in mlinfra.toml (the others stay as they are)."""
    config = project.root / "mlinfra.toml"
    head, dev, tail = re.split(r"(?m)^(\[env\.dev\]\n(?:(?!\[).*\n)*)", config.read_text())
    current = dict(re.findall(r"(?m)^serving\.(\w+) = (.*)$", dev))
    current.update({key: json.dumps(value) for key, value in serving.items()})
    lines = [line for line in dev.splitlines() if not line.startswith("serving.")]
    lines += [f"serving.{key} = {value}" for key, value in current.items()]
    config.write_text(head + "\n".join(lines) + "\n\n" + tail.lstrip("\n"))


def up(project: IrisProject, *args: str) -> str:
    result = project.cli("up", "--yes", "--env", "dev", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def serve_a_model(project: IrisProject) -> tuple[Path, int]:
    """Register a model in dev's registry and deploy it; the table's generation."""
    outputs = json.loads(project.cli("outputs", "--json", "--env", "dev").stdout)
    registry = Path(outputs["registry_path"])
    version = register(registry, LogisticRegression(max_iter=300))
    return registry, serve_table(registry, "dev", stable=version).generation


def ready_generation(port: int) -> int | None:
    """The generation the server on `port` answers ready with; None if it is not ready."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5)
    except httpx.HTTPError:
        return None
    return response.json()["generation"] if response.status_code == 200 else None


def closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def masters(project: IrisProject) -> list[psutil.Process]:
    return [p for p in project.processes() if "mlinfra.serving" in p.cmdline()]


def workers_of(master: psutil.Process) -> list[psutil.Process]:
    return [p for p in master.children() if "spawn_main" in " ".join(p.cmdline())]


def test_workers_change_under_load_fails_no_request_and_up_returns_when_ready(iris_project):
    port = iris_project.ports["dev"]
    up(iris_project)
    _, generation = serve_a_model(iris_project)
    wait_until(lambda: ready_generation(port) == generation)
    [old_master] = masters(iris_project)
    configure(iris_project, workers=2)
    with Load(port).running() as load:
        before = load.answered
        up(iris_project)
        assert ready_generation(port) == generation, "ready when up returned"
        during = load.answered - before
    assert load.failures == [] and during > 0
    [new_master] = masters(iris_project)
    assert new_master.pid != old_master.pid and len(workers_of(new_master)) == 2


def test_a_new_port_in_use_or_a_host_of_another_machine_leaves_the_old_server_serving(
    iris_project,
):
    port = iris_project.ports["dev"]
    up(iris_project)
    _, generation = serve_a_model(iris_project)
    wait_until(lambda: ready_generation(port) == generation)
    taken = free_port()
    with Load(port).running() as load, socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        configure(iris_project, port=taken)
        result = iris_project.cli("up", "--yes", "--env", "dev")
        assert result.returncode == 5
        [line] = result.stderr.strip().splitlines()
        assert f"the new server on port {taken} did not start: port {taken} on 127.0.0.1" in line
        assert line.endswith(f"; the old one keeps serving on port {port}")
        configure(iris_project, port=port, host="192.0.2.1")  # TEST-NET-1: never local
        result = iris_project.cli("up", "--yes", "--env", "dev")
        assert result.returncode == 5
        [line] = result.stderr.strip().splitlines()
        assert "cannot listen on 192.0.2.1" in line and "env.dev.serving.host" in line
        assert line.endswith(f"the server on port {port} keeps serving")
    assert load.failures == [] and load.answered > 0
    assert ready_generation(port) == generation


def test_a_new_port_serves_before_the_old_stops_and_the_same_port_says_it_stops_serving(
    iris_project,
):
    old_port, new_port = iris_project.ports["dev"], free_port()
    up(iris_project)
    _, generation = serve_a_model(iris_project)
    configure(iris_project, port=new_port)
    preview = json.loads(iris_project.cli("preview", "--json", "--env", "dev").stdout)
    [step] = [s for s in preview["steps"] if s["op"] == "replace"]
    assert step["deletes_first"] is False
    assert "stops serving" not in iris_project.cli("preview", "--env", "dev").stdout
    up(iris_project)
    assert ready_generation(new_port) == generation and closed(old_port)
    configure(iris_project, host="0.0.0.0")
    preview = iris_project.cli("preview", "--env", "dev")
    assert "stops serving while replaced (the old one is deleted first)" in preview.stdout
    up(iris_project)
    assert ready_generation(new_port) == generation
    assert iris_project.cli("refresh", "--env", "dev").returncode == 0


def test_killed_master_takes_its_workers_along_and_supervisord_starts_a_new_one(iris_project):
    port = iris_project.ports["dev"]
    configure(iris_project, workers=2)
    up(iris_project)
    _, generation = serve_a_model(iris_project)
    wait_until(lambda: ready_generation(port) == generation)
    [master] = masters(iris_project)
    workers = workers_of(master)
    assert len(workers) == 2
    answers: list[int] = []

    def recovered() -> bool:
        try:
            response = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"instances": [ROW]})
        except httpx.HTTPError:
            return False  # no socket between the old master's end and the new one's start
        answers.append(response.status_code)
        restarted = any(p.pid != master.pid for p in masters(iris_project))
        return response.status_code == 200 and restarted

    master.kill()
    wait_until(lambda: not any(p.is_running() and p.status() != "zombie" for p in workers))
    wait_until(recovered)
    assert set(answers) == {200}, "never an error such as 503 while it recovered"
    [new_master] = masters(iris_project)
    assert len(workers_of(new_master)) == 2
    assert ready_generation(port) == generation
    assert iris_project.cli("refresh", "--env", "dev").returncode == 0, "nothing wrong"


def test_a_deployment_refused_at_a_restart_is_reported_and_served_once_its_artifact_is_back(
    iris_project, tmp_path
):
    port = iris_project.ports["dev"]
    up(iris_project)
    registry, generation = serve_a_model(iris_project)
    wait_until(lambda: ready_generation(port) == generation)
    artifacts, aside = registry / "artifacts", tmp_path / "artifacts-aside"
    shutil.copytree(artifacts, aside)
    for path in artifacts.rglob("*"):
        if path.is_file():
            path.unlink()
    reason = f"generation {generation} refused: artifact"
    configure(iris_project, workers=2)
    with Load(port).running() as load:  # the model in memory still answers; a new server cannot
        result = iris_project.cli("up", "--yes", "--env", "dev")
    assert result.returncode == 5
    assert f"the new server on port {port} did not start: {reason}" in result.stderr
    assert load.failures == [] and load.answered > 0, "the new one took no request meanwhile"
    configure(iris_project, workers=1)
    [master] = masters(iris_project)
    [worker] = workers_of(master)
    worker.kill()  # uvicorn's master starts another, which cannot load the deployment

    def refused() -> bool:
        try:  # the new worker accepts once it has tried to load: till then probes wait in line
            response = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5)
        except httpx.TimeoutException:
            return False
        return response.status_code == 400 and response.json()["reason"].startswith(reason)

    wait_until(refused)
    drift = iris_project.cli("refresh", "--json", "--env", "dev")
    assert drift.returncode == 1
    [server] = [r for r in json.loads(drift.stdout)["resources"] if r["name"] == "serving-server"]
    found = {d["path"]: d["new"] for d in server["diffs"]}
    assert found["healthy"] is False and found["problem"].startswith(reason)
    result = iris_project.cli("up", "--yes", "--refresh", "--env", "dev")
    assert result.returncode == 5
    assert f"the new server on port {port} did not start: {reason}" in result.stderr
    assert f"the old one keeps serving on port {port}" in result.stderr
    shutil.copytree(aside, artifacts, dirs_exist_ok=True)
    wait_until(lambda: ready_generation(port) == generation)  # no command needed
    up(iris_project, "--refresh")
    assert iris_project.cli("refresh", "--env", "dev").returncode == 0
