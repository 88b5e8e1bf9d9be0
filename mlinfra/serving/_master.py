"""The server's master process: it owns the listening socket, runs uvicorn's workers on it, and
hands the socket to the server that replaces it.

A change of settings starts a new server beside the running one. The new master asks the old one
for its listening socket (`--take-over PATH`, a unix socket the old one serves with `--handover`,
the descriptor passed with SCM_RIGHTS) instead of binding a socket of its own, so the workers of
both accept from one kernel queue; when the new workers are ready, the old server stops and no
connection waiting in that queue is lost. (Two sockets sharing a port with SO_REUSEPORT would
each have their own queue, and the old one's waiting connections are reset when it closes.)

While the old server still serves, a new worker that cannot load the deployment does not accept
requests (it would answer them 503): it waits, and the server replacing the old one is given up.
Each worker dies with its master: a master killed with SIGKILL must not leave workers serving
unsupervised and holding the port, which would stop supervisord from starting a new master.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .._process import ProcessIdentity

if TYPE_CHECKING:
    import uvicorn

__all__ = ["MASTER_PID_ENV", "die_with_master", "exit_on_term", "predecessor_serves", "run_master"]

MASTER_PID_ENV = "MLINFRA_SERVING_MASTER_PID"
_PREDECESSOR_ENV = "MLINFRA_SERVING_PREDECESSOR"  # the master whose socket this one took over
# Workers of a master killed a moment ago close their copy of the socket within 0.1 s of the
# signal; a master started by supervisord right then waits this long for the port to be free.
_BIND_WAIT_SECONDS = 10.0
_TAKE_OVER_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
log = logging.getLogger("mlinfra.serving")


def run_master(config: uvicorn.Config, *, handover: Path | None, take_over: Path | None) -> None:
    """Serve `config` with its workers on one socket until told to stop."""
    from uvicorn.supervisors.multiprocess import Multiprocess

    taken = _take_over(take_over, config.port) if take_over is not None else None
    if taken is not None:
        listener, predecessor = taken
        if predecessor is not None:
            os.environ[_PREDECESSOR_ENV] = predecessor.model_dump_json()
    else:
        listener = _bind(config.host, config.port, config.backlog)
    os.environ[MASTER_PID_ENV] = str(os.getpid())  # the workers inherit the environment
    offer = _Handover(handover, listener) if handover is not None else None
    try:
        Multiprocess(config, sockets=[listener]).run()
    finally:
        if offer is not None:
            offer.close()


def die_with_master() -> None:
    """In a worker: be sent SIGTERM (a graceful stop) the moment the master process exits.

    PR_SET_PDEATHSIG rather than a thread watching `os.getppid()`: the kernel signals at once,
    with nothing to poll and no need for the GIL, which a busy worker may hold for a while. It
    is Linux's: elsewhere a killed master's workers go on until `mlinfra refresh` reports them
    and `mlinfra up --refresh` stops them.
    """
    master = int(os.environ.get(MASTER_PID_ENV, "0"))
    if not master:
        return  # not started by run_master
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != master:  # it died before the line above
        sys.exit("the server's master process exited before this worker started")


def predecessor_serves() -> bool:
    """In a worker: whether the server whose socket its master took over still runs."""
    recorded = os.environ.get(_PREDECESSOR_ENV)
    return recorded is not None and ProcessIdentity.model_validate_json(recorded).alive()


@contextlib.contextmanager
def exit_on_term() -> Iterator[None]:
    """SIGTERM ends the process at once: for a worker that has accepted nothing yet, so has
    nothing to finish (uvicorn would only stop it once started)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (the app run by a test client)
        return
    previous = signal.signal(signal.SIGTERM, lambda _signal, _frame: os._exit(0))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket on host:port, waiting while a killed master's workers let go of it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + _BIND_WAIT_SECONDS
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                sys.exit(f"cannot listen on {host} port {port}: {exc.strerror or exc}")
            time.sleep(0.1)
            continue
        # Listening from now on: connections wait in the queue until a worker has loaded the
        # deployment and accepts them, rather than being refused while it loads.
        sock.listen(backlog)
        sock.set_inheritable(True)
        return sock


def _take_over(path: Path, port: int) -> tuple[socket.socket, ProcessIdentity | None] | None:
    """The listening socket of the server answering at `path` (and that server's master), if
    one answers there, for this port."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(_TAKE_OVER_TIMEOUT)
            client.connect(str(path))
            peer = _peer(client)
            if peer is not None and peer[1] != os.getuid():
                log.warning("%s is served by another user; not taking its socket", path)
                return None
            _, descriptors, _, _ = socket.recv_fds(client, 64, 1)
    except OSError:
        return None  # no server there any more: bind a socket of our own
    if not descriptors:
        return None
    listener = socket.socket(fileno=descriptors[0])
    if listener.getsockname()[1] != port:
        listener.close()
        return None
    listener.set_inheritable(True)
    log.info("took over the listening socket of the server at %s", path)
    return listener, ProcessIdentity.of(peer[0]) if peer is not None else None


def _peer(connection: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end of a unix socket; None where the system does
    not say (only Linux does; the path is in a private directory anyway)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid, uid, _gid = (int.from_bytes(credentials[i : i + 4], sys.byteorder) for i in (0, 4, 8))
    return pid, uid


class _Handover:
    """Gives the listening socket to whoever connects to `path` (the server replacing this one)."""

    def __init__(self, path: Path, listener: socket.socket) -> None:
        self._path = path
        self._listener = listener
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._offered = False
        try:
            path.unlink(missing_ok=True)
            self._server.bind(str(path))
            path.chmod(0o600)
            self._server.listen()
        except OSError as exc:  # the next server can then only start once this one stopped
            log.warning("cannot offer the listening socket at %s: %s", path, exc)
            self._server.close()
            return
        self._offered = True
        threading.Thread(target=self._serve, name="mlinfra-handover", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            with connection, contextlib.suppress(OSError):
                peer = _peer(connection)
                if peer is None or peer[1] == os.getuid():
                    socket.send_fds(connection, [b"listener"], [self._listener.fileno()])

    def close(self) -> None:
        self._server.close()
        if self._offered:
            self._path.unlink(missing_ok=True)
