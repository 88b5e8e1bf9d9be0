"""The server's transport sends the writes of one event-loop turn (a response's head and body) in
one send, and sends what is pending before it closes: on a real loopback connection, with the
real asyncio transport under a spy that counts its writes."""

from __future__ import annotations

import asyncio
from typing import Any

from mlinfra.serving._http import _CoalescingTransport


class _Spy:
    """The real transport, with its writes recorded."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _Received(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


async def _exchange() -> tuple[list[list[bytes]], bytes]:
    loop = asyncio.get_running_loop()
    received = _Received()
    server = await loop.create_server(lambda: received, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    spy = _Spy(transport)
    coalescing = _CoalescingTransport(spy, loop)  # type: ignore[arg-type]
    seen = []
    coalescing.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    coalescing.write(b"ok")
    seen.append(list(spy.writes))  # nothing sent within the turn
    await asyncio.sleep(0)
    seen.append(list(spy.writes))
    coalescing.write(b"bye")
    coalescing.close()  # sends it first
    seen.append(list(spy.writes))
    await asyncio.wait_for(received.closed, 10)
    server.close()
    await server.wait_closed()
    return seen, bytes(received.data)


def test_a_response_head_and_body_go_out_in_one_send_and_close_sends_what_is_pending() -> None:
    seen, data = asyncio.run(_exchange())
    head_and_body = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    assert seen == [[], [head_and_body], [head_and_body, b"bye"]]
    assert data == head_and_body + b"bye"
