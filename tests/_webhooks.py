"""A webhook receiver on loopback for tests: records every request, answers as told (ok, a
server error, a hang, a refusal, a rate limit), and can be stopped and started on its port."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

SECRET = "s3cr3t-token-part"
Mode = Literal["ok", "fail", "hang", "bad", "rate"]


class Receiver:
    """A webhook receiver that records every request and answers as `mode` says."""

    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.answered = 0
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T0/B0/{SECRET}"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [request["body"] for request in self.requests]

    def start(self) -> None:
        """Listen (again) on `port`, or on a free one the first time."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                receiver.arrived.set()
                if receiver.mode == "hang":
                    receiver.release.wait(60)
                status, text = {
                    "ok": (200, "ok"),
                    "hang": (200, "ok"),
                    "fail": (500, "rollup_error"),
                    "bad": (400, "invalid_payload"),
                    "rate": (429, "rate_limited"),
                }[receiver.mode]
                self.send_response(status)
                if receiver.mode == "rate":
                    self.send_header("Retry-After", "120")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())
                receiver.answered += 1

            def log_message(self, *_: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that gave up (the hang test) closed the socket; nothing to report.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        # a short poll, so that stopping the receiver takes no time
        serve = lambda: self._server.serve_forever(poll_interval=0.01)  # noqa: E731
        threading.Thread(target=serve, daemon=True).start()

    def stop(self) -> None:
        """Close the port: connecting to it is refused until `start` again."""
        assert self._server is not None
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        self.release.clear()


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    try:
        yield receiver
    finally:
        if receiver._server is not None:
            receiver.stop()
