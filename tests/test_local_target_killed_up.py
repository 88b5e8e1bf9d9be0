"""`mlinfra up` of the bundled example killed with SIGKILL while it starts a real server, again and
again, and the next `up` leaving exactly one supervised server.

Each kill must land mid-run, or it proves nothing: every run is given a server to start (a new
port, so the old server is deleted and a new one created), the kill comes at a random moment once
the new server's process exists, and the history must still show the run's update in progress.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
from functools import partial

import httpx
from conftest import IrisProject, free_port, wait_for


def _live(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _serve_on(project: IrisProject, port: int) -> None:
    """Declare a new serving port for dev in mlinfra.toml."""
    config = project.root / "mlinfra.toml"
    old = f"serving.port = {project.ports['dev']}"
    config.write_text(
        re.sub(f"^{re.escape(old)}$", f"serving.port = {port}", config.read_text(), flags=re.M)
    )
    project.ports["dev"] = port


def _command_lines(project: IrisProject) -> list[str]:
    return [" ".join(p.info["cmdline"] or []) for p in project.processes()]


def _server_started_on(project: IrisProject, port: int) -> bool:
    return any(f"--port {port} " in line for line in _command_lines(project))


def _started_or_ended(project: IrisProject, port: int, up: subprocess.Popen[str]) -> bool:
    return _server_started_on(project, port) or up.poll() is not None


def _latest_update(project: IrisProject) -> dict:
    return json.loads(project.cli("history", "--json", "--env", "dev").stdout)[0]


def _kill_while_it_starts_a_server(project: IrisProject, rng: random.Random) -> None:
    """Run `up` with a new port and SIGKILL it at a random moment after the new server's
    process appeared; only a kill while the update is still in progress counts."""
    for _ in range(5):
        port = free_port()
        _serve_on(project, port)
        process = project.popen("up", "--yes", "--env", "dev")
        wait_for(partial(_started_or_ended, project, port, process), "the up started the server")
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        if _latest_update(project)["result"] == "in-progress":
            return
    raise AssertionError("no kill landed while `up` was still starting the server")


def test_killed_up_mid_run_repeatedly_leaves_no_duplicate_or_orphan_server(
    iris_project: IrisProject,
) -> None:
    rng = random.Random(11)
    for _ in range(3):
        _kill_while_it_starts_a_server(iris_project, rng)
    result = iris_project.cli("up", "--yes", "--env", "dev")
    assert result.returncode == 0, result.stderr
    status = json.loads(iris_project.cli("status", "--json", "--env", "dev").stdout)
    names = [r["name"] for r in status["resources"]]
    assert len(names) == len(set(names)) == 8  # 6, and the drift monitor and its process
    lines = _command_lines(iris_project)
    supervisors = [line for line in lines if "supervisord" in line]
    assert len(supervisors) == 2, "one supervised server, one supervised monitor"
    assert len([line for line in lines if "mlinfra.monitoring" in line]) == 1
    servers = [line for line in lines if "mlinfra.serving" in line]
    assert len(servers) == 1 and f"--port {iris_project.ports['dev']} " in servers[0], servers
    assert _live(iris_project.ports["dev"])
    history = json.loads(iris_project.cli("history", "--json", "--env", "dev").stdout)
    assert history[0]["result"] == "succeeded"
    assert [h["result"] for h in history[1:]].count("interrupted") >= 3
    assert iris_project.cli("destroy", "--yes", "--env", "dev").returncode == 0
    assert iris_project.processes() == []
