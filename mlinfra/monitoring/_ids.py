"""Request ids: how the server names an answer and each of its rows, so that labels sent later
(`/feedback`, `mlinfra feedback`) join the logged predictions.

A request keeps the id it brings (the v2 body's `id`, else the `x-request-id` header); one that
brings none is given one. The row of a one-row request carries the request's id; row i (from 0)
of a longer request carries `<id>/<i>`.
"""

from __future__ import annotations

import itertools
import os

__all__ = ["MAX_REQUEST_ID", "REQUEST_ID_RULE", "RequestIds", "row_ids", "valid_request_id"]

MAX_REQUEST_ID = 256
REQUEST_ID_RULE = f"1 to {MAX_REQUEST_ID} printable ASCII characters"


def valid_request_id(text: str) -> bool:
    """Whether a client's id (v2 `id`, `x-request-id`, a label's `request_id`) can be used: it
    goes back in a header, which holds ASCII only, and into every file of the log."""
    return 0 < len(text) <= MAX_REQUEST_ID and text.isascii() and text.isprintable()


class RequestIds:
    """Ids for requests that bring none: a random prefix per worker and a counter (a uuid4
    costs ten times as much: 9 µs against 0.8 µs measured here)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex() + "-"
        self._counter = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


def row_ids(request_id: str, rows: int) -> list[str]:
    """The ids of a request's rows, as the log and its labels name them."""
    if rows == 1:
        return [request_id]
    return [f"{request_id}/{row}" for row in range(rows)]
