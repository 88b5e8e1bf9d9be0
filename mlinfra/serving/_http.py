"""Small HTTP pieces shared by the routes: JSON in and out, bounded body reading, bearer auth, and
uvicorn's protocol with deadlines on the client.

Slow clients hold a connection, never the server: a request's head must arrive within
`HEAD_TIMEOUT_SECONDS` and `MAX_HEAD_BYTES` (uvicorn itself would wait for ever), its body at a
minimum pace (`read_body`), and a connection idle between requests is closed after 5 s.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "BODY_BYTES_PER_SECOND",
    "BODY_GRACE_SECONDS",
    "HEAD_TIMEOUT_SECONDS",
    "MAX_HEAD_BYTES",
    "PIECE_ITEMS",
    "TOO_SLOW",
    "BearerAuth",
    "GuardedHTTP",
    "HTTPProblem",
    "declared_length",
    "json_response",
    "parse_json",
    "read_body",
    "release",
    "shortened",
]

HEAD_TIMEOUT_SECONDS = 5.0
MAX_HEAD_BYTES = 64 * 1024
# A body may take BODY_GRACE_SECONDS, plus one second per BODY_BYTES_PER_SECOND received: a
# client must keep sending at that pace (as Apache's mod_reqtimeout asks), at most 165 s for 10 MiB.
BODY_GRACE_SECONDS = 5.0
BODY_BYTES_PER_SECOND = 64 * 1024
# A worker told to stop (a server change hands the socket to a new instance) keeps an idle
# keep-alive connection open this long, for a request already on its way to it.
DRAIN_IDLE_SECONDS = 2.0
TOO_SLOW = "mlinfra.too_slow"  # scope key: why GuardedHTTP cut a request's body off
# Large data is converted, encoded and freed this many items per C call: each call then holds the
# GIL for a few milliseconds, and the event loop's thread gets its turn in between.
PIECE_ITEMS = 16_384

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HTTPProblem(Exception):
    """A request the server answers with an error status and a JSON body saying why."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}
        self.headers = dict(headers or {})

    def response(self) -> Response:
        response = json_response(self.body, self.status)
        response.headers.update(self.headers)
        return response


def shortened(value: Any, limit: int = 64) -> str:
    """`repr(value)` cut to `limit` characters: an error names what it was sent, not all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def json_response(payload: Any, status: int = 200, *, in_pieces: bool = False) -> Response:
    """`payload` as JSON; `in_pieces` encodes long arrays a piece at a time (large answers)."""
    # Plain json.dumps with no indent: JSONResponse does the same work behind two more calls.
    body = _dumps_in_pieces(payload) if in_pieces else _dumps(payload)
    return Response(body, status_code=status, media_type="application/json")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_jsonable)


def _dumps_in_pieces(value: Any) -> str:
    """What `_dumps` writes, with sequences longer than PIECE_ITEMS encoded a piece at a time."""
    if isinstance(value, dict):
        members = (f"{_dumps(str(key))}:{_dumps_in_pieces(item)}" for key, item in value.items())
        return "{" + ",".join(members) + "}"
    is_array = getattr(value, "ndim", 0) > 0  # numpy
    if not (is_array or isinstance(value, list | tuple)):
        return _dumps(value)
    if len(value) > PIECE_ITEMS:
        pieces = range(0, len(value), PIECE_ITEMS)
        return "[" + ",".join(_dumps(value[i : i + PIECE_ITEMS])[1:-1] for i in pieces) + "]"
    if is_array:
        return _dumps(value)
    return "[" + ",".join(map(_dumps_in_pieces, value)) + "]"


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays in a model's output, as JSON knows them."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def declared_length(request: Request, limit: int) -> int | None:
    """The body's Content-Length, if it has one; 413 at once if it is over `limit`."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        return None  # chunked; the parser refuses a malformed length before we see it
    if int(declared) > limit:
        raise HTTPProblem(413, f"request body is over the limit of {limit} bytes")
    return int(declared)


async def read_body(request: Request, limit: int) -> bytes:
    """The body as it streams in, 413 past `limit` bytes. `GuardedHTTP` cuts off a client that
    sends it too slowly (a 408), which the app sees as the client leaving."""
    chunks = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            if request.scope.get(TOO_SLOW):
                raise HTTPProblem(408, request.scope[TOO_SLOW])
            raise HTTPProblem(400, f"the client left after {size} bytes of its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(raw: bytes, *, interruptible: bool = False) -> Any:
    """The body as JSON, or a 400.

    `json.loads` holds the GIL until it is done (0.15 s for 10 MB, more with the collector), so a
    parse in a worker thread would still stall the event loop. `interruptible` passes every number
    through a Python function, where the interpreter can hand the GIL over: the parse takes 50%
    longer, a tenth of a large request's time.
    """
    try:
        if interruptible:
            return json.loads(raw, parse_float=_float, parse_int=_int)
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise HTTPProblem(400, f"request body is not valid JSON: {exc}") from None


def release(value: Any) -> None:
    """Free a parsed body a piece at a time: dropping half a million lists at once would hold
    the GIL for 60 ms or more. Empties `value`, which nothing else may use any more."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
            item.clear()
        elif isinstance(item, list):
            while item:
                piece = item[-PIECE_ITEMS:]
                del item[-PIECE_ITEMS:]
                # rows of a few values go with their piece; anything longer is freed on its own
                pending.extend(x for x in piece if isinstance(x, list | dict) and len(x) > 64)
                del piece


def _float(text: str) -> float:
    return float(text)


def _int(text: str) -> int:
    return int(text)


class BearerAuth:
    """Pure ASGI guard: every path except the open ones needs `Authorization: Bearer <token>`.

    The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
    """

    def __init__(self, app: ASGIApp, *, token: str, open_paths: frozenset[str]) -> None:
        self.app = app
        self.expected = token.encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        scheme, _, credentials = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(
            credentials.lstrip(b" "), self.expected
        ):
            await self.app(scope, receive, send)
            return
        response = json_response({"error": "missing or wrong bearer token"}, status=401)
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)


class GuardedHTTP(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with deadlines on the client and a size limit on request heads.

    uvicorn waits for a request's head and body for ever: a client sending half a request, or a
    body a byte at a time (slowloris), would hold its connection and memory until it gave up.
    Each connection is in one phase at a time, and one timer per connection checks the phase's
    deadline, so that a request costs no timer of its own. Run uvicorn with
    `http="mlinfra.serving._http:GuardedHTTP"`.
    """

    _phase = "head"  # "head", "body", "app" (the app has the whole request) or "idle"
    _since = 0.0  # when the phase began, in loop time
    _received = 0  # bytes received in the phase
    _watchdog: asyncio.TimerHandle | None = None
    _draining = False  # the server is stopping: no connection is kept alive after its answer

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self._enter("head")
        self._watchdog = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._phase == "head" and not self._app_busy():
            self._received += len(data)
            if self._received > MAX_HEAD_BYTES:
                self._refuse(431, f"request head is over {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._enter("head")

    def on_headers_complete(self) -> None:
        self._enter("body")
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with `connection: close`

    def shutdown(self) -> None:
        """A graceful stop. uvicorn closes an idle keep-alive connection at once, which races
        a client's next request on it: the client sees a reset. Instead, it may carry one more
        request, answered with `connection: close`, or is closed after DRAIN_IDLE_SECONDS of
        silence; a request in flight is answered first, as uvicorn does."""
        self._draining = True
        if self._app_busy():
            super().shutdown()
        else:
            self.loop.call_later(DRAIN_IDLE_SECONDS, self._close_when_idle)

    def _close_when_idle(self) -> None:
        if self.transport.is_closing():
            return
        if self._phase == "idle" or (self._phase == "head" and self._received == 0):
            self.transport.close()
        elif self.cycle is not None:
            self.cycle.keep_alive = False  # a request arrived meanwhile: close after it

    def on_body(self, body: bytes) -> None:
        self._received += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        answered = self.cycle is not None and self.cycle.response_complete  # answered unread
        self._enter("idle" if answered else "app")
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._phase == "app" and not self._app_busy():
            self._enter("idle")  # else the rest of a body answered unread keeps its deadline

    def _enter(self, phase: str) -> None:
        self._phase = phase
        self._since = self.loop.time()
        self._received = 0

    def _app_busy(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _due(self) -> float | None:
        """When the current phase must be over; None while the app has the request."""
        if self._phase == "body":
            return self._since + BODY_GRACE_SECONDS + self._received / BODY_BYTES_PER_SECOND
        if self._phase == "app" or self._app_busy():  # a pipelined request waits its turn
            return None
        return self._since + HEAD_TIMEOUT_SECONDS  # "head", "idle"

    def _check(self) -> None:
        self._watchdog = None
        now = self.loop.time()
        due = self._due()
        if due is None or now < due or (self._phase == "body" and self.flow.read_paused):
            # not late, or the server is the slow one (it stopped reading, for flow control)
            wake = due if due is not None and due > now else now + HEAD_TIMEOUT_SECONDS
            self._watchdog = self.loop.call_at(wake, self._check)
        elif self._phase == "head":
            self._refuse(408, f"request head not received within {HEAD_TIMEOUT_SECONDS:g} s")
        elif self._phase == "body" and not self.cycle.response_started:
            why = (
                f"request body too slow: {self._received} bytes in {BODY_GRACE_SECONDS:g} s "
                f"plus 1 s per {BODY_BYTES_PER_SECOND} bytes"
            )
            self.cycle.scope[TOO_SLOW] = why  # type: ignore[literal-required]
            self._refuse(408, why)
        else:  # idle, or the rest of a body after its answer
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request the app will not answer, and close its connection."""
        if self.transport.is_closing():
            return
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = json.dumps({"error": message}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()


class _CoalescingTransport:
    """A transport whose writes made in one turn of the event loop go out in one send.

    uvicorn writes a response's head and its body separately, and on loopback every send is a
    system call that also runs the receiver's side of TCP: a tenth of a one-row prediction's
    time. Writes are joined and sent once the turn's callbacks have run; closing sends them first.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._send)
        self._pending.append(data)

    def close(self) -> None:
        self._send()
        self._transport.close()

    def _send(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
