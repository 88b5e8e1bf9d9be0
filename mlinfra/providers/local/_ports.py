"""Whether a TCP port can be listened on, and which process holds it when it cannot."""

from __future__ import annotations

import errno
import hashlib
import socket
import time
from collections.abc import Iterator

import psutil

__all__ = ["listen_error", "port_free", "port_holder", "spread_ports", "wait_port_free"]


def spread_ports(key: str, ports: range) -> Iterator[int]:
    """Every port of `ports` once, starting at one picked by a hash of `key`: names that differ
    start far apart, so that projects and branch envs on one machine seldom try the same port."""
    start = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")
    return (ports[(start + step) % len(ports)] for step in range(len(ports)))


def listen_error(host: str) -> str | None:
    """Why this machine cannot listen on `host` (not one of its addresses, no such name), or
    None; checked on a port the system picks, so whatever holds the server's port is no matter."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.bind(address)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def port_free(host: str, port: int) -> bool:
    """Try the bind the server will do; SO_REUSEADDR as uvicorn sets it, so TIME_WAIT is free.

    Raises OSError when `host` is not an address of this machine.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def wait_port_free(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not port_free(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def port_holder(port: int) -> str:
    """'pid 123 (python -m http.server 8700)', or a vaguer phrase when the OS will not say."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return "another process"
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "a process of another user"
            try:
                command = " ".join(psutil.Process(conn.pid).cmdline())
            except psutil.Error:
                return f"pid {conn.pid}"
            if len(command) > 80:
                command = command[:77] + "..."
            return f"pid {conn.pid} ({command})"
    return "another process"
