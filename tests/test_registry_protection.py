"""Models are data, through the real CLI on the iris example: real trainings, a real model server
on loopback, real registries. Moving an env onto a shared registry moves its versions; a
registry holding versions is never deleted by `up` and is kept by `destroy` unless
--delete-data."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from _serving import new_registry, register
from conftest import IrisProject
from sklearn.linear_model import LogisticRegression

from mlinfra.registry import Registry
from mlinfra.serving import deployment_dir, read_deployment

ROW = {"instances": [[6.7, 3.0, 5.2, 2.3]]}


def _ok(project: IrisProject, *args: str) -> str:
    done = project.cli(*args, "--env", "dev")
    assert done.returncode == 0, done.stderr
    return done.stdout


def _own_registry(project: IrisProject) -> Path:
    return project.root / ".mlinfra" / "envs" / "dev" / "registry"


def _set_registry_path(project: IrisProject, path: Path) -> None:
    config = project.root / "mlinfra.toml"
    config.write_text(
        config.read_text().replace("[env.dev]\n", f'[env.dev]\nregistry.path = "{path}"\n')
    )


def _served_version(port: int, timeout: float = 60) -> str:
    """The version the server answers with, once it answers (it loads after a restart)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=ROW, timeout=5)
            if response.status_code == 200:
                assert response.json() == {"predictions": ["virginica"]}
                return response.headers["x-model-version"]
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server never served a model"
        time.sleep(0.2)


@pytest.mark.slow
def test_moving_onto_a_shared_registry_moves_versions_and_the_server_follows(
    iris_project: IrisProject, tmp_path: Path
) -> None:
    _ok(iris_project, "up", "--yes")
    _ok(iris_project, "train", "--search", "none")
    _ok(iris_project, "train", "--search", "none", "-p", "logisticregression__C=0.5")
    _ok(iris_project, "deploy", "2", "--force", "--reason", "test")
    port = iris_project.ports["dev"]
    assert _served_version(port) == "2"
    with Registry.open(_own_registry(iris_project)) as old:
        old_aliases = old.aliases("iris", env="dev")
    shared = new_registry(tmp_path / "shared")
    register(shared, LogisticRegression(C=3.0, max_iter=500))  # someone else's iris v1 there

    _set_registry_path(iris_project, shared)
    shown = _ok(iris_project, "preview")
    assert f"would move 2 model versions (iris v1-v2) to {shared}" in shown
    planned = json.loads(_ok(iris_project, "preview", "--json"))
    (move,) = [s["data_move"] for s in planned["steps"] if s["name"] == "registry-store"]
    assert move == {
        "what": "2 model versions (iris v1-v2)",
        "from": str(_own_registry(iris_project)),
        "to": str(shared),
    }

    done = json.loads(_ok(iris_project, "up", "--yes", "--json"))
    assert {s["name"]: s["op"] for s in done["steps"] if s["op"] != "same"} == {
        "registry-store": "update",
        "serving-server": "update",
        "serving-monitor-process": "update",  # it reads reference samples from the registry
    }
    (warning,) = done["warnings"]
    assert f"{_own_registry(iris_project)} is left as it was: remove it once" in warning
    with Registry.open(shared) as registry:
        origins = {
            v.version: v.lineage["origin"]["version"]
            for v in registry.list_versions()
            if "origin" in v.lineage
        }
        assert origins == {2: 1, 3: 2}, "renumbered after the version already there"
        renumbered = {origin: new for new, origin in origins.items()}
        assert registry.aliases("iris", env="dev") == {
            alias: renumbered[number] for alias, number in old_aliases.items()
        }
    table = read_deployment(deployment_dir(shared, "dev"))
    assert table is not None and table.stable == 3
    assert _served_version(port) == "3", "the same model, served from the shared registry"
    status = json.loads(_ok(iris_project, "status", "--json"))
    (server,) = [r for r in status["resources"] if r["name"] == "serving-server"]
    assert server["outputs"]["registry"] == str(shared)
    with Registry.open(_own_registry(iris_project)) as old:
        assert len(old.list_versions()) == 2, "the old registry is left in place"


@pytest.mark.slow
def test_a_registry_holding_versions_is_protected_kept_by_destroy_and_found_again(
    iris_project: IrisProject,
) -> None:
    _ok(iris_project, "up", "--yes")
    _ok(iris_project, "train", "--search", "none")
    registry = _own_registry(iris_project)
    config = iris_project.root / "mlinfra.toml"
    bundled = config.read_text()
    stacks = iris_project.root / "stacks"
    stacks.mkdir()
    (stacks / "__main__.py").write_text(
        "import mlinfra.config\n"
        "from mlinfra.components import ServingStack, ServingStackArgs\n"
        "env = mlinfra.config.current_environment()\n"
        'ServingStack("serving", ServingStackArgs.from_environment(env, '
        "registry_path=str(env.registry_path)))\n"
    )
    config.write_text(bundled.replace(bundled.split("stack = ")[1].split("\n")[0], '"stacks"'))

    shown = _ok(iris_project, "preview")
    assert f"would delete 1 model version (iris v1) at {registry}" in shown
    refused = iris_project.cli("up", "--yes", "--env", "dev")
    assert refused.returncode == 5
    assert refused.stderr.strip().splitlines() == [
        f"error: registry-store holds 1 model version (iris v1) at {registry} and is no longer "
        "in the program; put it back, or run `mlinfra up --delete-data` to delete it and what "
        "it holds"
    ]
    assert (registry / "registry.db").is_file()

    config.write_text(bundled)
    destroyed = json.loads(_ok(iris_project, "destroy", "--yes", "--json"))
    assert destroyed["counts"] == {"delete": 7, "keep": 1}  # the monitor's two went too
    (warning,) = destroyed["warnings"]
    assert warning.startswith(
        f"kept registry-store: it holds 1 model version (iris v1) at {registry}"
    )
    assert warning.endswith("`mlinfra destroy --delete-data` deletes it")
    assert iris_project.processes() == []
    with Registry.open(registry) as kept:
        assert [v.version for v in kept.list_versions()] == [1]

    _ok(iris_project, "up", "--yes")
    listed = json.loads(_ok(iris_project, "models", "list", "--json"))
    assert [row["version"] for row in listed] == [1], "up found the kept registry again"
    assert json.loads(_ok(iris_project, "status", "--json"))["kept"] == []

    _ok(iris_project, "destroy", "--delete-data", "--yes")
    assert not registry.exists()
    assert sorted(p.name for p in (iris_project.root / ".mlinfra").iterdir()) == [
        "backups",
        "state.db",
    ]


def test_an_up_failing_on_a_port_in_use_leaves_nothing_to_warn_about(
    iris_project: IrisProject,
) -> None:
    """The failed create cleaned up after itself; and the empty registry goes with destroy."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", iris_project.ports["dev"]))
        holder.listen()
        failed = iris_project.cli("up", "--yes", "--env", "dev")
    assert failed.returncode == 5 and "port" in failed.stderr
    destroyed = json.loads(_ok(iris_project, "destroy", "--yes", "--json"))
    assert destroyed["warnings"] == []
    assert {s["op"] for s in destroyed["steps"]} == {"delete"}
    assert not _own_registry(iris_project).exists()
