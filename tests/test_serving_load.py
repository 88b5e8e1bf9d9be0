"""The model server under load it did not ask for, as a real process on loopback: bodies of 10 MB,
more large requests than it admits, and clients that send half a request (slowloris)."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from _serving import (
    COLUMNS,
    FEATURES,
    ROW,
    Server,
    new_registry,
    register,
    serve_table,
    start_server,
)
from sklearn.linear_model import LogisticRegression

from mlinfra.serving._app import LARGE_ADMITTED, LARGE_BODY_BYTES
from mlinfra.serving._http import HEAD_TIMEOUT_SECONDS, MAX_HEAD_BYTES

LIMIT = 10 * 1024 * 1024
ONE_ROW = {"instances": [ROW]}
DEADLINE = 60  # seconds a test waits for something that takes a few: a hang fails, not a slow run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    registry = new_registry(tmp_path_factory.mktemp("load") / "registry")
    register(registry, LogisticRegression(max_iter=500))
    server = start_server(registry)  # the default body limit, 10 MiB
    try:
        server.wait_generation(serve_table(registry, "dev", stable=1).generation)
        yield server
    finally:
        server.stop()


def big_body() -> tuple[bytes, list[list[float]]]:
    """A `dataframe_split` body of iris rows just under the 10 MiB limit (about 470,000 rows)."""
    per_row = len(json.dumps(ROW)) + 2
    table = FEATURES.to_numpy().tolist()
    rows = random.Random(0).choices(table, k=int(LIMIT * 0.99) // per_row)
    body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows}}).encode()
    assert LIMIT * 0.9 < len(body) <= LIMIT
    return body, rows


def test_probes_and_small_predictions_answer_before_four_10_mb_requests(server: Server) -> None:
    body, rows = big_body()
    expected = server.post("/invocations", json={"instances": rows[:50]}).json()["predictions"]
    finished: list[str] = []  # completion order: list.append is atomic
    uploaded = [threading.Event() for _ in range(4)]

    def post_big(index: int) -> list[int]:
        def chunks() -> Iterator[bytes]:
            for offset in range(0, len(body), 1 << 20):
                yield body[offset : offset + (1 << 20)]
            uploaded[index].set()  # the last chunk has been handed to the socket

        response = httpx.post(
            server.url + "/invocations",
            content=chunks(),
            headers={"content-type": "application/json", "content-length": str(len(body))},
            timeout=300,
        )
        finished.append(f"big {index}")
        assert response.status_code == 200, response.text[:300]
        return response.json()["predictions"]

    with ThreadPoolExecutor(4) as pool:
        bigs = [pool.submit(post_big, index) for index in range(4)]
        for event in uploaded:
            assert event.wait(DEADLINE)
        for _ in range(2):  # the server now holds all four bodies
            for path in ("/v2/health/live", "/v2/health/ready", "/ping"):
                assert server.get(path).status_code == 200
                finished.append(path)
            assert server.post("/invocations", json=ONE_ROW).json() == {"predictions": [0]}
            finished.append("one row")
        answers = [big.result(timeout=300) for big in bigs]
    first_big = min(finished.index(f"big {index}") for index in range(4))
    assert first_big == 8, finished  # all eight small requests were answered before any big one
    for predictions in answers:
        assert len(predictions) == len(rows) and predictions[:50] == expected


def test_large_requests_beyond_the_admitted_number_are_503_with_retry_after(
    server: Server,
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    held = []
    try:
        for _ in range(LARGE_ADMITTED):  # each admitted, and waiting for its body
            connection = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
            connection.sendall(
                b"POST /invocations HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
                b"content-length: 1000000\r\nexpect: 100-continue\r\n\r\n"
            )
            assert connection.recv(100).startswith(b"HTTP/1.1 100 Continue")
            held.append(connection)
        large = {"instances": [ROW] * (LARGE_BODY_BYTES // 10)}
        assert len(json.dumps(large, separators=(",", ":"))) > LARGE_BODY_BYTES
        refused = server.post("/invocations", json=large)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "large requests" in refused.json()["error"]
        assert server.get("/v2/health/ready").status_code == 200  # small ones are not counted
        assert server.post("/invocations", json=ONE_ROW).status_code == 200
    finally:
        for connection in held:
            connection.close()
    deadline = time.monotonic() + DEADLINE  # the server notices the closed connections
    while server.post("/invocations", json=large).status_code == 503:
        assert time.monotonic() < deadline, "admitted requests were not released"
        time.sleep(0.05)
    answer = server.post("/invocations", json=large)
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == len(large["instances"])


def test_large_bodies_of_unknown_length_and_bad_large_bodies_are_answered(server: Server) -> None:
    rows = [ROW] * 5000
    body = json.dumps({"instances": rows}).encode()
    chunked = server.post("/invocations", content=iter([body[:1000], body[1000:]]))
    assert chunked.status_code == 200 and len(chunked.json()["predictions"]) == 5000
    broken = body[:-1] + b" " * LARGE_BODY_BYTES
    assert server.post("/invocations", content=broken).status_code == 400
    wrong = json.dumps({"instances": [*rows, [1, 2, "x", 4]]})
    refused = server.post("/invocations", content=wrong)
    assert refused.status_code == 422 and refused.json()["field"] == "petal length (cm)"
    tensor = {"name": "x", "shape": [5000, 4], "datatype": "FP32", "data": rows}
    v2 = server.post("/v2/models/iris/infer", json={"inputs": [tensor], "id": "big"}).json()
    assert v2["id"] == "big" and v2["outputs"][0]["shape"] == [5000]
    assert set(v2["outputs"][0]["data"]) == {0}


def _read_until_closed(
    connections: dict[str, socket.socket], trickle: tuple[str, ...]
) -> dict[str, bytes]:
    """What each connection received until the server closed it; one byte a second is sent on
    those in `trickle` meanwhile, which must not keep them open."""
    received = {name: b"" for name in connections}
    open_ = dict(connections)
    deadline = time.monotonic() + DEADLINE
    next_byte = time.monotonic()
    while open_:
        assert time.monotonic() < deadline, f"still open: {sorted(open_)}; got {received}"
        if time.monotonic() >= next_byte:
            for name in trickle:
                if name in open_:
                    open_[name].send(b"x")
            next_byte = time.monotonic() + 1
        readable, _, _ = select.select(list(open_.values()), [], [], 0.2)
        for name, connection in list(open_.items()):
            if connection in readable:
                try:
                    data = connection.recv(65536)
                except ConnectionResetError:
                    data = b""
                received[name] += data
                if not data:
                    del open_[name]
    return received


def test_clients_sending_half_a_request_are_disconnected(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    starts = {
        "silent": b"",
        "half a request line": b"POST /invocations HT",
        "half the headers": b"POST /invocations HTTP/1.1\r\nhost: test\r\ncontent-le",
        "endless headers": b"GET /v2/health/live HTTP/1.1\r\nx-pad: " + b"a" * MAX_HEAD_BYTES,
        "half the body": b"POST /invocations HTTP/1.1\r\nhost: test\r\ncontent-length: 9000"
        b"\r\ncontent-type: application/json\r\n\r\n" + b'{"instances": [',
        "the body after a 413": b"POST /invocations HTTP/1.1\r\nhost: test\r\n"
        b"content-length: 20000000\r\n\r\n" + b"[" * 1000,
    }
    connections = {}
    for name, data in starts.items():
        connections[name] = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        connections[name].sendall(data)
    try:
        received = _read_until_closed(connections, ("half the body", "the body after a 413"))
    finally:
        for connection in connections.values():
            connection.close()
    for name in ("silent", "half a request line", "half the headers"):
        assert received[name].startswith(b"HTTP/1.1 408 "), (name, received[name])
        assert f"within {HEAD_TIMEOUT_SECONDS:g} s".encode() in received[name]
    assert received["endless headers"].startswith(b"HTTP/1.1 431 ")
    assert received["half the body"].startswith(b"HTTP/1.1 408 ")
    assert b"request body too slow" in received["half the body"]
    after_413 = received["the body after a 413"]
    assert after_413.startswith(b"HTTP/1.1 413 ") and after_413.count(b"HTTP/1.1") == 1
    assert server.get("/v2/health/ready").status_code == 200
    assert 'mlinfra_requests_total{code="408",model=""' in server.get("/metrics").text


def test_a_body_sent_in_parts_within_the_deadline_is_answered(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    body = json.dumps(ONE_ROW).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as connection:
        connection.sendall(b"POST /invocations HTTP/1.1\r\nhost: test\r\n")
        time.sleep(0.5)
        connection.sendall(b"content-length: %d\r\n\r\n%s" % (len(body), body[:5]))
        time.sleep(0.5)
        connection.sendall(body[5:])
        answer = b""
        while not answer.endswith(b"}"):  # headers and body may come in two reads
            chunk = connection.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"predictions":[0]}')


def test_a_stopping_server_still_answers_a_request_sent_on_an_idle_keepalive_connection(
    tmp_path: Path,
) -> None:
    """uvicorn closes idle keep-alive connections the moment it stops; a client's next request,
    already on its way, then meets a reset. A stopping worker instead answers it with
    `connection: close` (a server change stops the old instance while clients hold
    connections to it)."""
    registry = new_registry(tmp_path / "registry")
    stopping = start_server(registry)
    try:
        host, port = stopping.url.removeprefix("http://").split(":")
        request = f"GET /v2/health/live HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()
        with socket.create_connection((host, int(port)), timeout=DEADLINE) as connection:
            connection.sendall(request)
            assert read_response(connection).startswith(b"HTTP/1.1 200")
            os.killpg(stopping.process.pid, signal.SIGTERM)  # a graceful stop, master and workers
            time.sleep(0.5)  # uvicorn notices within 0.1 s: before, the connection was closed
            connection.sendall(request)
            answer = read_response(connection)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert b"connection: close" in answer.lower()
    finally:
        stopping.stop()


def read_response(connection: socket.socket) -> bytes:
    """One whole HTTP response with a content-length; b"" if the server closed instead."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
