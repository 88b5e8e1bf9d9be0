"""The bundled example on the local target, for real: supervised server processes on loopback
ports, `mlinfra up` killed with SIGKILL, and `destroy` leaving nothing behind."""

from __future__ import annotations

import json

import httpx
import psutil


def _live(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _supervisors(project) -> list[psutil.Process]:
    return [p for p in project.processes() if "supervisord" in " ".join(p.cmdline())]


def test_up_starts_real_server_process_and_destroy_leaves_nothing(iris_project):
    port = iris_project.ports["dev"]
    result = iris_project.cli("up", "--yes", "--env", "dev")
    assert result.returncode == 0, result.stderr
    assert _live(port)
    outputs = json.loads(iris_project.cli("outputs", "--json", "--env", "dev").stdout)
    assert outputs["serving_url"] == f"http://127.0.0.1:{port}"
    assert len(_supervisors(iris_project)) == 2, "the model server and the drift monitor"
    result = iris_project.cli("destroy", "--yes", "--env", "dev")
    assert result.returncode == 0, result.stderr
    assert iris_project.processes() == []
    assert not _live(port)
    state_dir = iris_project.root / ".mlinfra"
    assert sorted(p.name for p in state_dir.iterdir()) == ["backups", "state.db"]


def test_refresh_reports_dead_server_and_up_refresh_repairs(iris_project):
    port = iris_project.ports["dev"]
    assert iris_project.cli("up", "--yes", "--env", "dev").returncode == 0
    for process in iris_project.processes():
        process.kill()
    psutil.wait_procs(iris_project.processes(), timeout=10)
    drift = iris_project.cli("refresh", "--json", "--env", "dev")
    assert drift.returncode == 1
    statuses = {r["name"]: r["status"] for r in json.loads(drift.stdout)["resources"]}
    assert statuses["serving-server"] == "gone"
    assert iris_project.cli("up", "--yes", "--refresh", "--env", "dev").returncode == 0
    assert _live(port)


def test_two_environments_run_side_by_side(iris_project):
    for env in ("dev", "staging"):
        result = iris_project.cli("up", "--yes", "--env", env)
        assert result.returncode == 0, result.stderr
    assert _live(iris_project.ports["dev"]) and _live(iris_project.ports["staging"])
    unauthenticated = httpx.get(f"http://127.0.0.1:{iris_project.ports['staging']}/v2/models/iris")
    assert unauthenticated.status_code == 401, "staging has serving.auth = true"
    staging = json.loads(iris_project.cli("outputs", "--json", "--env", "staging").stdout)
    assert staging["serving_token"] == "[secret]"
    shown = iris_project.cli("outputs", "--json", "--show-secrets", "--env", "staging")
    token = json.loads(shown.stdout)["serving_token"]
    authenticated = httpx.get(
        f"http://127.0.0.1:{iris_project.ports['staging']}/v2/health/ready",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert authenticated.status_code == 400, "OIP v2: not ready (no model yet) is a 4xx"
    assert token.encode() not in (iris_project.root / ".mlinfra" / "state.db").read_bytes()


def test_a_registry_shared_by_two_envs_survives_destroying_one(iris_project):
    config = iris_project.root / "mlinfra.toml"
    text = config.read_text()
    for env in ("dev", "staging"):
        text = text.replace(f"[env.{env}]\n", f'[env.{env}]\nregistry.path = ".mlinfra/shared"\n')
    config.write_text(text)
    for env in ("dev", "staging"):
        assert iris_project.cli("up", "--yes", "--env", env).returncode == 0
    shared = iris_project.root / ".mlinfra" / "shared"
    assert (shared / "registry.db").exists()
    assert iris_project.cli("destroy", "--yes", "--env", "dev").returncode == 0
    assert (shared / "registry.db").exists(), "staging still uses it"
    staging = json.loads(iris_project.cli("outputs", "--json", "--env", "staging").stdout)
    assert staging["registry_path"] == str(shared)
