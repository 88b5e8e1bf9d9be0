"""The local providers called directly, as an engine calls them: real directories, a real SQLite
registry, and a real model server under a real supervisord on loopback ports."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from conftest import free_port, wait_for
from pulumi.output import Unknown

from mlinfra.errors import ConfigError, DeploymentError
from mlinfra.providers.local import (
    GeneratedTokenProvider,
    ModelServerProvider,
    RegistryStoreProvider,
    TrainingWorkspaceProvider,
)
from mlinfra.providers.local._instances import Instances, handover_path
from mlinfra.providers.local._supervisor import Supervisor


def test_public_surface() -> None:
    import mlinfra.providers.local as local

    assert local.__all__ == sorted(local.__all__)
    assert {name.removesuffix("Args").removesuffix("Provider") for name in local.__all__} == {
        "DaskCluster",
        "DriftMonitor",
        "DriftMonitorProcess",
        "GeneratedToken",
        "ModelServer",
        "RegistryStore",
        "TrainingWorkspace",
        "server_url",
    }


# Workspace


def test_workspace_create_makes_real_layout_with_workers_per_core(tmp_path: Path) -> None:
    provider = TrainingWorkspaceProvider()
    root = tmp_path / "training"
    result = provider.create({"path": str(root), "workers": 0, "__provider": "x"})
    assert result.id == str(root)
    assert result.outs == {
        "path": str(root),
        "workers": os.cpu_count(),
        "code_paths": [],
        "missing": [],
    }
    assert (root / "runs").is_dir() and (root / "cache").is_dir()
    assert json.loads((root / "pool.json").read_text()) == {"workers": os.cpu_count()}


def test_workspace_create_again_after_a_killed_create_finishes_the_layout(tmp_path: Path) -> None:
    provider = TrainingWorkspaceProvider()
    root = tmp_path / "training"
    (root / "runs").mkdir(parents=True)  # what a create killed half-way left
    (root / ".pool.json.k1ll3d.partial").write_text('{"work')
    result = provider.create({"path": str(root), "workers": 2})
    assert result.outs["missing"] == []
    assert sorted(p.name for p in root.iterdir()) == ["cache", "pool.json", "runs"]


def test_workspace_read_reports_deleted_dir_and_edited_pool(tmp_path: Path) -> None:
    provider = TrainingWorkspaceProvider()
    root = tmp_path / "training"
    props = {"path": str(root), "workers": 2}
    outs = provider.create(props).outs
    (root / "runs").rmdir()
    (root / "pool.json").write_text('{"workers": 7}')
    read = provider.read(str(root), outs)
    assert read.id == str(root)
    assert read.outs["missing"] == ["runs"] and read.outs["workers"] == 7
    diff = provider.diff(str(root), read.outs, props)
    assert diff.changes is True and diff.replaces == []
    repaired = provider.update(str(root), read.outs, props).outs
    assert repaired["missing"] == [] and repaired["workers"] == 2
    assert provider.diff(str(root), repaired, props).changes is False


def test_workspace_read_of_a_removed_workspace_says_gone(tmp_path: Path) -> None:
    provider = TrainingWorkspaceProvider()
    root = tmp_path / "training"
    outs = provider.create({"path": str(root), "workers": 1}).outs
    provider.delete(str(root), outs)
    read = provider.read(str(root), outs)
    assert (read.id, read.outs) == ("", {})


def test_workspace_diff_replaces_on_path_and_updates_workers(tmp_path: Path) -> None:
    provider = TrainingWorkspaceProvider()
    props = {"path": str(tmp_path / "a"), "workers": 0}
    outs = provider.create(props).outs
    assert provider.diff("a", outs, props).changes is False  # 0 and the resolved count agree
    moved = provider.diff("a", outs, {**props, "path": str(tmp_path / "b")})
    assert (moved.changes, moved.replaces, moved.delete_before_replace) == (True, ["path"], False)
    resized = provider.diff("a", outs, {**props, "workers": 99})
    assert (resized.changes, resized.replaces) == (True, [])


def test_workspace_delete_keeps_files_mlinfra_did_not_make(tmp_path: Path) -> None:
    provider = TrainingWorkspaceProvider()
    root = tmp_path / "training"
    outs = provider.create({"path": str(root), "workers": 1}).outs
    (root / "runs" / "run-1").mkdir()
    (root / "notes.txt").write_text("mine")
    provider.delete(str(root), outs)
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
    (root / "notes.txt").unlink()
    provider.delete(str(root), outs)  # idempotent, and now the empty root goes too
    assert not root.exists()


def test_workspace_check_names_bad_inputs() -> None:
    result = TrainingWorkspaceProvider().check({}, {"path": "relative/dir", "workers": -1})
    assert sorted(f.property for f in result.failures) == ["path", "workers"]
    with pytest.raises(ConfigError, match="TrainingWorkspace input 'path'.*absolute"):
        TrainingWorkspaceProvider().create({"path": "relative/dir"})


# Registry


def test_registry_create_makes_real_sqlite_db_and_artifact_dir(tmp_path: Path) -> None:
    provider = RegistryStoreProvider()
    root = tmp_path / "registry"
    outs = provider.create({"path": str(root), "env": "dev"}).outs
    assert outs == {
        "path": str(root),
        "env": "dev",
        "uri": root.as_uri(),
        "db_path": str(root / "registry.db"),
        "missing": [],
    }
    assert (root / "artifacts").is_dir()
    with sqlite3.connect(root / "registry.db") as db:
        assert db.execute("select count(*) from sqlite_master").fetchone()[0] > 0


def test_registry_read_finds_deleted_artifacts_and_update_remakes_them(tmp_path: Path) -> None:
    provider = RegistryStoreProvider()
    root = tmp_path / "registry"
    props = {"path": str(root)}
    outs = provider.create(props).outs
    (root / "artifacts").rmdir()
    read = provider.read(str(root), outs)
    assert read.outs["missing"] == ["artifacts"]
    assert provider.diff(str(root), read.outs, props).changes is True
    assert provider.update(str(root), read.outs, props).outs["missing"] == []
    assert (root / "artifacts").is_dir()


def test_registry_delete_removes_db_with_sidecars_and_the_empty_root(tmp_path: Path) -> None:
    provider = RegistryStoreProvider()
    root = tmp_path / "registry"
    outs = provider.create({"path": str(root)}).outs
    (root / "serving" / "dev").mkdir(parents=True)  # the model server's deployment table
    provider.delete(str(root), outs)
    assert not root.exists()
    assert provider.read(str(root), outs).id == ""


# Token


def test_token_create_makes_distinct_urlsafe_tokens_kept_by_read() -> None:
    provider = GeneratedTokenProvider()
    first, second = provider.create({"nbytes": 32}), provider.create({"nbytes": 32})
    token = first.outs["token"]
    assert token != second.outs["token"] and len(token) >= 43
    assert token not in first.id
    assert provider.read(first.id, first.outs).outs["token"] == token
    assert provider.diff(first.id, first.outs, {"nbytes": 32}).changes is False
    longer = provider.diff(first.id, first.outs, {"nbytes": 64})
    assert (longer.replaces, longer.delete_before_replace) == (["nbytes"], False)
    assert provider.read(first.id, {"nbytes": 32}).id == ""


# Model server


def server_props(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    registry = tmp_path / "registry"
    registry.mkdir(exist_ok=True)
    return {  # numbers as floats: the pulumi wire format has no integers
        "run_dir": str(tmp_path / "serving"),
        "registry": str(registry),
        "env": "dev",
        "host": "127.0.0.1",
        "port": float(free_port()),
        "workers": 1.0,
        "token": None,
        "__provider": "serialized provider",
        **overrides,
    }


def live(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(
        url + "/v2/health/live", headers=headers, timeout=2, trust_env=False
    ).status_code


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(condition: Any, timeout: float = 60) -> None:
    wait_for(condition, condition.__name__, timeout)


def listening_socket(port: int) -> int:
    """The inode of the socket listening on the loopback port (Linux's /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return int(inode)
    raise AssertionError(f"nothing listens on port {port}")


def program_process(supervisord: psutil.Process) -> psutil.Process:
    return next(p for p in supervisord.children() if "mlinfra.serving" in p.cmdline())


def assert_nothing_left(run_dir: Path, port: float, processes: list[psutil.Process]) -> None:
    assert not run_dir.exists()
    assert port_is_free(int(port))
    assert [p.pid for p in processes if alive(p)] == []
    assert Supervisor(run_dir).marked() == []


class Server:
    """A model server created by the provider for one test, deleted afterwards whatever happens."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        self.provider = ModelServerProvider()
        self.props = server_props(tmp_path, **overrides)
        self.run_dir = Path(self.props["run_dir"])
        self.outs = self.provider.create(self.props).outs

    @property
    def supervisord(self) -> psutil.Process:
        return psutil.Process(self.outs["pid"])

    @property
    def instance(self) -> Supervisor:
        """The instance serving now (each change starts a new one)."""
        return Supervisor(Path(self.outs["instance_dir"]))

    def processes(self) -> list[psutil.Process]:
        return [self.supervisord, *self.supervisord.children(recursive=True)]

    def delete(self) -> None:
        self.provider.delete(str(self.run_dir), self.outs)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, token="s3cret-token-value")
    yield running
    running.delete()


def test_create_starts_real_server_under_supervisord_on_loopback(server: Server) -> None:
    outs = server.outs
    assert outs["url"] == f"http://127.0.0.1:{server.props['port']:.0f}"
    assert outs["healthy"] is True and "token" not in outs
    assert live(outs["url"]) == 200
    supervisord = server.supervisord
    assert server.instance.run_dir.parent == server.run_dir
    assert str(server.instance.conf) in supervisord.cmdline()
    assert "--port" in program_process(supervisord).cmdline()


def test_token_is_in_a_private_file_never_on_a_command_line_or_log(server: Server) -> None:
    token = server.props["token"]
    token_file = server.instance.run_dir / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text() == token
    assert all(token not in " ".join(p.cmdline()) for p in server.processes())
    for path in server.run_dir.rglob("*"):
        if path.is_file() and path != token_file:
            assert token not in path.read_text(errors="replace"), path
    assert token not in json.dumps(server.outs)


def test_killed_server_process_is_restarted_by_supervisord(server: Server) -> None:
    program = program_process(server.supervisord)
    program.send_signal(signal.SIGKILL)

    def restarted_and_healthy() -> bool:
        new = [p for p in server.supervisord.children() if p.pid != program.pid and alive(p)]
        return bool(new) and server.provider.read(str(server.run_dir), server.outs).outs["healthy"]

    wait_until(restarted_and_healthy)
    assert live(server.outs["url"]) == 200


def test_read_diff_and_update_follow_a_stopped_program(server: Server) -> None:
    provider, run_dir = server.provider, str(server.run_dir)
    assert provider.read(run_dir, server.outs).outs == server.outs
    assert provider.diff(run_dir, server.outs, server.props).changes is False
    stopped = server.instance
    with stopped.rpc() as supervisord:
        supervisord.supervisor.stopProcess("server")
    read = provider.read(run_dir, server.outs)
    assert read.id == run_dir and read.outs["healthy"] is False
    assert read.outs["problem"] == "supervisord says STOPPED: it was stopped"
    diff = provider.diff(run_dir, read.outs, server.props)
    assert (diff.changes, diff.replaces) == (True, [])
    server.outs = provider.update(run_dir, read.outs, server.props).outs
    assert server.outs["healthy"] is True and "problem" not in server.outs
    assert server.instance != stopped and not stopped.run_dir.exists()
    assert live(server.outs["url"]) == 200


def test_read_reports_a_program_supervisord_gave_up_on_and_update_repairs(server: Server) -> None:
    failing = server.instance
    conf = failing.conf.read_text()
    failing.conf.write_text(re.sub(r"^command=.*$", "command=/bin/false", conf, flags=re.M))
    with failing.rpc() as supervisord:  # what `supervisorctl update` does after a hand edit
        supervisord.supervisor.reloadConfig()
        supervisord.supervisor.stopProcessGroup("server")
        supervisord.supervisor.removeProcessGroup("server")
        supervisord.supervisor.addProcessGroup("server")
    provider, run_dir = server.provider, str(server.run_dir)
    wait_until(lambda: failing.program_state() == "FATAL")
    read = provider.read(run_dir, server.outs)
    assert read.outs["healthy"] is False
    assert read.outs["problem"].startswith("supervisord says FATAL")
    assert provider.diff(run_dir, read.outs, server.props).changes is True
    server.outs = provider.update(run_dir, read.outs, server.props).outs
    assert server.outs["healthy"] is True and live(server.outs["url"]) == 200


def test_read_reports_a_worker_outliving_its_master_as_unhealthy(server: Server) -> None:
    """The stand-in is a real process marked as the instance's own, as a worker of a server of
    an earlier mlinfra was left when its master was killed (they did not die with it)."""
    instance = server.instance
    stray = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "spawn_main"],
        env={**os.environ, "MLINFRA_RUN_DIR": str(instance.run_dir)},
    )
    try:
        wait_until(lambda: any(p.pid == stray.pid for p in instance.marked()))
        read = server.provider.read(str(server.run_dir), server.outs)
        assert read.outs["healthy"] is False
        assert read.outs["problem"] == f"1 workers outlived their master (pids [{stray.pid}])"
        server.outs = server.provider.update(str(server.run_dir), read.outs, server.props).outs
        assert stray.wait(timeout=20) is not None, "the repair stopped it"
        assert server.outs["healthy"] is True
    finally:
        stray.kill()
        stray.wait()


def test_read_reports_a_port_changed_out_of_band_and_diff_replaces(server: Server) -> None:
    supervisor = server.instance
    old_port, new_port = int(server.props["port"]), free_port()
    conf = supervisor.conf.read_text()
    supervisor.conf.write_text(conf.replace(f"--port {old_port}", f"--port {new_port}"))
    with supervisor.rpc() as supervisord:  # what `supervisorctl update` does after a hand edit
        supervisord.supervisor.reloadConfig()
        supervisord.supervisor.stopProcessGroup("server")
        supervisord.supervisor.removeProcessGroup("server")
        supervisord.supervisor.addProcessGroup("server")
    wait_until(lambda: server.provider.read(str(server.run_dir), server.outs).outs["healthy"])
    read = server.provider.read(str(server.run_dir), server.outs)
    assert (read.outs["port"], read.outs["url"]) == (new_port, f"http://127.0.0.1:{new_port}")
    diff = server.provider.diff(str(server.run_dir), read.outs, server.props)
    assert (diff.replaces, diff.delete_before_replace) == (["port"], False), "the new one first"
    server.outs = read.outs  # so the fixture's delete waits for the port really in use


def test_update_starts_a_new_instance_on_the_old_ones_socket_then_stops_the_old(
    server: Server,
) -> None:
    old, old_processes = server.instance, server.processes()
    listening = listening_socket(int(server.props["port"]))
    news = {**server.props, "workers": 2, "token": "another-token-value"}
    diff = server.provider.diff(str(server.run_dir), server.outs, news)
    assert (diff.changes, diff.replaces) == (True, [])
    outs = server.provider.update(str(server.run_dir), server.outs, news).outs
    server.outs = outs
    assert outs["workers"] == 2 and outs["pid"] != old_processes[0].pid
    argv = program_process(server.supervisord).cmdline()
    assert argv[argv.index("--workers") + 1] == "2"
    assert argv[argv.index("--take-over") + 1] == str(handover_path(old))
    assert listening_socket(int(server.props["port"])) == listening, "the same kernel socket"
    assert (server.instance.run_dir / "token").read_text() == "another-token-value"
    assert [p.pid for p in old_processes if alive(p)] == [] and not old.run_dir.exists()
    assert live(outs["url"], "another-token-value") == 200
    assert server.provider.diff(str(server.run_dir), outs, news).changes is False


def test_diff_replaces_port_first_and_host_or_run_dir_on_the_same_port_deleting_first(
    server: Server,
) -> None:
    for key, value, deletes_first in [
        ("port", free_port(), False),
        ("host", "0.0.0.0", True),
        ("run_dir", "/elsewhere", True),
    ]:
        diff = server.provider.diff(str(server.run_dir), server.outs, {**server.props, key: value})
        assert (diff.changes, diff.replaces, diff.delete_before_replace) == (
            True,
            [key],
            deletes_first,
        )


def test_check_refuses_a_host_of_another_machine_saying_the_old_server_keeps_serving(
    tmp_path: Path,
) -> None:
    olds = server_props(tmp_path, port=8123.0)
    news = {**olds, "host": "192.0.2.1"}  # TEST-NET-1: never a local address
    [failure] = ModelServerProvider().check(olds, news).failures
    assert failure.property == "host"
    assert failure.reason.startswith("cannot listen on 192.0.2.1 (")
    assert failure.reason.endswith(
        "set env.dev.serving.host in mlinfra.toml; the server on port 8123 keeps serving"
    )
    assert ModelServerProvider().check(olds, olds).failures == []


def test_check_and_diff_take_values_preview_cannot_know(tmp_path: Path) -> None:
    provider = ModelServerProvider()
    olds = {**server_props(tmp_path), "token_sha256": ""}
    props = {**olds, "token": Unknown()}
    assert provider.check({}, props).failures == []
    token_diff = provider.diff("serving", olds, props)
    assert (token_diff.changes, token_diff.replaces) == (True, [])
    port_diff = provider.diff("serving", olds, {**olds, "port": Unknown()})
    assert (port_diff.changes, port_diff.replaces) == (True, ["port"])


def test_create_again_with_same_inputs_adopts_the_running_server(server: Server) -> None:
    processes = server.processes()
    again = server.provider.create(server.props)
    assert again.outs == server.outs
    assert [p.pid for p in server.processes()] == [p.pid for p in processes]


def test_read_reports_killed_supervisord_as_gone_and_create_cleans_up_orphans(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path)
    try:
        orphans = server.processes()[1:]
        supervisord = server.supervisord
        supervisord.send_signal(signal.SIGKILL)
        wait_until(lambda: not alive(supervisord))
        read = server.provider.read(str(server.run_dir), server.outs)
        assert (read.id, read.outs) == ("", {})
        assert all(alive(p) for p in orphans)  # the server outlived its supervisor
        server.outs = server.provider.create(server.props).outs
        assert [p.pid for p in orphans if alive(p)] == []
        marked = server.instance.marked()
        supervisors = [p for p in marked if "supervisor.supervisord" in p.cmdline()]
        assert [p.pid for p in supervisors] == [server.outs["pid"]]
        assert live(server.outs["url"]) == 200
    finally:
        processes = server.processes()
        server.delete()
    assert_nothing_left(server.run_dir, server.props["port"], processes)


def test_update_of_a_server_of_the_old_layout_restarts_it_in_place_once(tmp_path: Path) -> None:
    """An earlier mlinfra ran the server from the run dir itself, offering no socket to hand
    over: it is set up here as that one did, and then updated."""
    props = server_props(tmp_path)
    run_dir = Path(props["run_dir"])
    legacy = Supervisor(run_dir)
    legacy.write(
        [sys.executable, "-m", "mlinfra.serving", "--port", f"{props['port']:.0f}"]
        + ["--registry", props["registry"], "--env", "dev"],
        {},
    )
    legacy.launch()
    provider = ModelServerProvider()
    wait_until(lambda: provider.read(str(run_dir), props).outs.get("healthy") is True)
    olds = provider.read(str(run_dir), props).outs
    assert "instance_dir" not in olds  # nothing new in the state of an upgraded project
    legacy_processes = [legacy.process(), *legacy.process().children(recursive=True)]
    outs = provider.update(str(run_dir), olds, {**props, "workers": 2}).outs
    try:
        assert [p.pid for p in legacy_processes if alive(p)] == []
        assert sorted(p.name for p in run_dir.iterdir()) == ["1", "current"]
        assert outs["instance_dir"] == str(run_dir / "1") and live(outs["url"]) == 200
    finally:
        provider.delete(str(run_dir), outs)
    assert not run_dir.exists()


def test_create_with_other_inputs_replaces_what_a_killed_create_left(tmp_path: Path) -> None:
    server = Server(tmp_path)
    try:
        first = server.processes()
        server.props = {**server.props, "max_body_bytes": 4096}
        server.outs = server.provider.create(server.props).outs
        assert [p.pid for p in first if alive(p)] == []
        assert "4096" in program_process(server.supervisord).cmdline()
        assert [i.run_dir for i in Instances(server.run_dir).all()] == [server.instance.run_dir]
        marked = {p.pid for p in server.instance.marked()}
        assert marked == {p.pid for p in server.processes()}  # one supervisord and its tree
    finally:
        processes = server.processes()
        server.delete()
    assert_nothing_left(server.run_dir, server.props["port"], processes)


def test_port_in_use_fails_fast_in_one_line_naming_holder_and_key(tmp_path: Path) -> None:
    props = server_props(tmp_path, env="staging")
    port = int(props["port"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(DeploymentError) as failure:
            ModelServerProvider().create(props)
    message = str(failure.value)
    assert "\n" not in message
    assert f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()}" in message
    assert "env.staging.serving.port" in message
    assert not Path(props["run_dir"]).exists()
    assert Supervisor(Path(props["run_dir"])).marked() == []


def test_host_that_is_not_this_machine_names_the_config_key(tmp_path: Path) -> None:
    props = server_props(tmp_path, host="192.0.2.1")  # TEST-NET-1: never a local address
    with pytest.raises(
        ConfigError, match=r"cannot listen on 192\.0\.2\.1.*env\.dev\.serving\.host"
    ):
        ModelServerProvider().create(props)
    assert not Path(props["run_dir"]).exists()


def test_server_that_cannot_start_fails_create_in_one_line_from_its_log_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    registry_file = tmp_path / "not-a-directory"
    registry_file.write_text("")
    props = server_props(tmp_path, registry=str(registry_file))
    with pytest.raises(DeploymentError) as failure:
        ModelServerProvider().create(props)
    message = str(failure.value)
    assert "\n" not in message
    port = int(props["port"])
    assert message.startswith(f"the model server for env dev did not start on port {port}: ")
    assert "it exited while starting: NotADirectoryError" in message
    assert_nothing_left(Path(props["run_dir"]), props["port"], [])


def test_long_run_dir_puts_the_socket_in_the_temp_dir() -> None:
    supervisor = Supervisor(Path("/" + "deep/" * 30 + "serving"))
    assert len(str(supervisor.socket)) <= 100
    assert supervisor.socket == Supervisor(Path("/" + "deep/" * 30 + "serving")).socket
