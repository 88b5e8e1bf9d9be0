"""One supervisord per run directory, supervising one program.

Its files live in the run directory; it is started as a daemon (so it outlives `mlinfra up`),
driven over XML-RPC on a unix socket, and found again after any crash through psutil: every
process it starts inherits MLINFRA_RUN_DIR, and its own command line names its config file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..._fs import atomic_write_text
from ...errors import DeploymentError

__all__ = ["MARKER_ENV", "PROGRAM", "Supervisor", "unix_socket_path"]

MARKER_ENV = "MLINFRA_RUN_DIR"
PROGRAM = "server"
STOP_WAIT_SECONDS = 15  # the server drains requests for up to 10 s on TERM
_START_TIMEOUT = 10.0
_RPC_TIMEOUT = STOP_WAIT_SECONDS + 15.0  # stopping the program waits up to stopwaitsecs
_SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to 107 bytes on Linux

_CONFIG = """\
; Written by mlinfra for one instance of a model server (see _instances.py).
[supervisord]
pidfile={pidfile}
logfile={logfile}
logfile_maxbytes=1MB
logfile_backups=1
childlogdir={run_dir}
directory={run_dir}

[unix_http_server]
file={socket}
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{socket}

[program:{program}]
command={command}
directory={run_dir}
autostart=true
autorestart=true
startsecs=1
startretries=3
stopsignal=TERM
stopwaitsecs={stop_wait}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={program_log}
stdout_logfile_maxbytes=5MB
stdout_logfile_backups=1
"""


@dataclass(frozen=True)
class Supervisor:
    """Every path is derived from `run_dir`, so a later run finds what an earlier one left."""

    run_dir: Path

    @property
    def conf(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def program_log(self) -> Path:
        return self.run_dir / f"{PROGRAM}.log"

    @property
    def socket(self) -> Path:
        return unix_socket_path(self.run_dir, "supervisor.sock")

    def render(self, command: list[str]) -> str:
        def value(text: str) -> str:
            return text.replace("%", "%%")  # supervisord expands %(name)s in values

        return _CONFIG.format(
            pidfile=value(str(self.pidfile)),
            logfile=value(str(self.run_dir / "supervisord.log")),
            run_dir=value(str(self.run_dir)),
            socket=value(str(self.socket)),
            program=PROGRAM,
            command=value(shlex.join(command)),
            stop_wait=STOP_WAIT_SECONDS,
            program_log=value(str(self.program_log)),
        )

    def write(self, command: list[str], files: dict[str, str | None]) -> None:
        """The config, and private files (mode 0600) the program reads; None removes one."""
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_text(self.conf, self.render(command))
        for name, text in files.items():
            if text is None:
                (self.run_dir / name).unlink(missing_ok=True)
            else:
                atomic_write_text(self.run_dir / name, text, mode=0o600)

    def launch(self) -> psutil.Process:
        """Start supervisord as a daemon and return it once its pidfile names it."""
        # The state's passphrase stays with mlinfra: long-lived processes have no use for it.
        env = {key: value for key, value in os.environ.items() if "PASSPHRASE" not in key}
        env[MARKER_ENV] = str(self.run_dir)
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=_START_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            reason = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
            raise DeploymentError(f"supervisord for {self.run_dir} did not start: {reason[-1]}")
        deadline = time.monotonic() + _START_TIMEOUT
        while (process := self.process()) is None:
            if time.monotonic() > deadline:
                raise DeploymentError(f"supervisord for {self.run_dir} exited right after starting")
            time.sleep(0.02)
        return process

    def process(self) -> psutil.Process | None:
        """The running supervisord of this run dir, checked by its command line, or None."""
        try:
            candidate = _live(int(self.pidfile.read_text().strip()))
        except (OSError, ValueError):
            candidate = None
        if candidate is not None and _runs_conf(candidate, self.conf):
            return candidate
        return next((p for p in self.marked() if _runs_conf(p, self.conf)), None)

    def marked(self) -> list[psutil.Process]:
        """Every live process started for this run dir, supervised or orphaned."""
        wanted = str(self.run_dir)
        return [
            proc
            for proc in psutil.process_iter(["environ"])
            if (proc.info["environ"] or {}).get(MARKER_ENV) == wanted and _alive(proc)
        ]

    def program(self) -> psutil.Process | None:
        """The supervised program's process, when it is running."""
        info = self.program_info()
        pid = int(info["pid"]) if info else 0
        return _live(pid) if pid else None

    def program_state(self) -> str:
        """RUNNING, STARTING, BACKOFF, FATAL, ...; GONE when supervisord does not answer."""
        info = self.program_info()
        return str(info["statename"]) if info else "GONE"

    def program_info(self) -> dict[str, Any] | None:
        """supervisord's record of the program (statename, pid, ...), or None if it is gone."""
        try:
            with self.rpc() as proxy:
                info: dict[str, Any] = proxy.supervisor.getProcessInfo(PROGRAM)  # type: ignore[assignment]
        except (OSError, xmlrpc.client.Error):
            return None
        return info

    def rpc(self) -> xmlrpc.client.ServerProxy:
        """A client of supervisord's XML-RPC interface; use it as a context manager."""
        return xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(self.socket))

    def stop(self) -> None:
        """Stop supervisord, its program and any orphan of an earlier crash; wait until all exit."""
        supervisord = self.process()
        children = _tree(supervisord)[1:] if supervisord is not None else []
        known = {p.pid for p in children} | {supervisord.pid if supervisord else 0}
        orphans = [p for p in self.marked() if p.pid not in known]
        for orphan in orphans:
            _signal(orphan, "terminate")
        if supervisord is None:
            _finish(orphans, self.run_dir)
            return
        try:
            with self.rpc() as proxy:
                proxy.supervisor.shutdown()  # stops the program (TERM, KILL later), then exits
        except (OSError, xmlrpc.client.Error):
            _signal(supervisord, "terminate")  # the same, by signal
        _finish(children + orphans, self.run_dir)
        # With its program gone supervisord exits on its next loop tick, up to a second away;
        # a request on its socket wakes the loop, so knock until it has gone.
        _finish([supervisord], self.run_dir, knock=self._knock)

    def _knock(self) -> None:
        with contextlib.suppress(OSError, xmlrpc.client.Error), self.rpc() as proxy:
            proxy.supervisor.getPID()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.program_log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def unix_socket_path(directory: Path, name: str, *, tag: str = "") -> Path:
    """`directory/name`, unless that path is too long for a unix socket: then
    `mlinfra-<digest of directory><tag>.sock` in the temp dir."""
    path = directory / name
    if len(str(path)) <= _SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mlinfra-{digest}{tag}.sock"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=_RPC_TIMEOUT)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket, with a timeout so a wedged daemon cannot hang us."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        # Kept where the base class looks for it, so close() and ServerProxy.__exit__ close it.
        connection = self._connection[1]
        if connection is None:
            connection = _UnixConnection(self._path)
            self._connection = host, connection
        return connection


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _live(pid: int) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return None
    return process if _alive(process) else None


def _runs_conf(process: psutil.Process, conf: Path) -> bool:
    try:
        return str(conf) in process.cmdline()
    except psutil.Error:
        return False


def _tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def _signal(process: psutil.Process, how: str) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        getattr(process, how)()


def _finish(
    processes: list[psutil.Process], run_dir: Path, knock: Callable[[], None] | None = None
) -> None:
    """Wait for processes already told to stop; kill those that outlast the grace period."""
    if _wait_gone(processes, STOP_WAIT_SECONDS + 5, knock):
        return
    for process in processes:
        _signal(process, "kill")
    if not _wait_gone(processes, 5):
        stuck = [p.pid for p in processes if _alive(p)]
        raise DeploymentError(f"processes of {run_dir} would not exit: pids {stuck}")


def _wait_gone(
    processes: list[psutil.Process], timeout: float, knock: Callable[[], None] | None = None
) -> bool:
    """Zombies count as gone: where init does not reap them they stay in the table forever."""
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in processes):
        if time.monotonic() > deadline:
            return False
        if knock is not None:
            knock()
        time.sleep(0.02)
    return True
