"""Small HTTP pieces shared by the routes: JSON responses, bounded body reading, bearer auth."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["BearerAuth", "HTTPProblem", "json_response", "read_json", "shortened"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HTTPProblem(Exception):
    """A request the server answers with an error status and a JSON body saying why."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


def shortened(value: Any, limit: int = 64) -> str:
    """`repr(value)` cut to `limit` characters: an error names what it was sent, not all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def json_response(payload: Any, status: int = 200) -> Response:
    # Plain json.dumps with no indent: JSONResponse does the same work behind two more calls.
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=_jsonable)
    return Response(body, status_code=status, media_type="application/json")


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays in a model's output, as JSON knows them."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


async def read_json(request: Request, limit: int) -> Any:
    """The JSON body; 413 past `limit` bytes (before reading them all), 400 if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(413, f"request body is over the limit of {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError) as exc:
        raise HTTPProblem(400, f"request body is not valid JSON: {exc}") from None


class BearerAuth:
    """Pure ASGI guard: every path except the open ones needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, *, token: str, open_paths: frozenset[str]) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        response = json_response({"error": "missing or wrong bearer token"}, status=401)
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)
