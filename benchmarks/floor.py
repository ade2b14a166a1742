"""A reference point, not an SMTP client: the least an asyncio or trio program can do per message.

It writes pre-built commands and content, and counts the final lines of replies
without parsing, validating or checking anything, with the same round trips a
pipelining client needs: MAIL, RCPT and DATA in one write, then the content. A real
client on asyncio can hardly do less per message on the same machine and server, so
its figures show how much of a target the event loop and the kernel leave to reach.
:class:`TrioFloorSMTP` is the same exchange over trio's sockets (``trio-floor`` in
benchmarks/client.py), so that a client on trio is compared with what trio itself
costs, and trio's floor with asyncio's.
"""

from __future__ import annotations

import asyncio
from typing import Any

ENVELOPE = b"MAIL FROM:<bench@example.org>\r\nRCPT TO:<sink@example.org>\r\nDATA\r\n"


class _Counter(asyncio.Protocol):
    """Counts complete replies: lines whose code is followed by a space (or nothing)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.partial = b""
        self.replies = 0
        self.wanted = 0
        self.waiter: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\r\n")
        self.partial = lines.pop()
        self.replies += sum(1 for line in lines if line[3:4] != b"-")
        if self.waiter is not None and self.replies >= self.wanted and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    async def exchange(self, data: bytes | None, replies: int) -> None:
        if data is not None:
            self.transport.write(data)
        self.wanted += replies
        while self.replies < self.wanted:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter


class FloorSMTP:
    """Just enough of ``SMTP`` for the benchmark scenarios that await each message."""

    def __init__(self, hostname: str, port: int, **_: Any) -> None:
        self.hostname, self.port = hostname, port
        self.protocol: _Counter | None = None

    async def __aenter__(self) -> FloorSMTP:
        loop = asyncio.get_running_loop()
        _, self.protocol = await loop.create_connection(_Counter, self.hostname, self.port)
        await self.protocol.exchange(None, 1)  # greeting
        await self.protocol.exchange(b"EHLO bench.local\r\n", 1)
        return self

    async def sendmail(self, sender: str, recipients: list[str], message: bytes) -> None:
        assert self.protocol is not None
        await self.protocol.exchange(ENVELOPE, 3)
        await self.protocol.exchange(message + b"\r\n.\r\n", 1)

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.protocol is not None
        await self.protocol.exchange(b"QUIT\r\n", 1)
        self.protocol.transport.close()
        await self.protocol.closed


SMTP = FloorSMTP


class TrioFloorSMTP:
    """The same exchange over a trio socket: trio's own reference point.

    Each round trip is one ``send`` and as many ``recv`` calls as the replies take;
    trio's socket methods are its cheapest public I/O (a try first, a wait only when
    the socket is not ready, a checkpoint in each).
    """

    def __init__(self, hostname: str, port: int, **_: Any) -> None:
        self.hostname, self.port = hostname, port
        self.sock: Any = None
        self.partial = b""

    async def _exchange(self, data: bytes | None, replies: int) -> None:
        sock = self.sock
        if data is not None:
            view = memoryview(data)
            while view:
                view = view[await sock.send(view) :]
        while replies > 0:
            received = await sock.recv(65536)
            if not received:
                raise ConnectionError("the server closed the connection")
            lines = (self.partial + received).split(b"\r\n")
            self.partial = lines.pop()
            replies -= sum(1 for line in lines if line[3:4] != b"-")

    async def __aenter__(self) -> TrioFloorSMTP:
        import trio

        self.sock = trio.socket.socket()
        self.sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        await self.sock.connect((self.hostname, self.port))
        await self._exchange(None, 1)  # greeting
        await self._exchange(b"EHLO bench.local\r\n", 1)
        return self

    async def sendmail(self, sender: str, recipients: list[str], message: bytes) -> None:
        await self._exchange(ENVELOPE, 3)
        await self._exchange(message + b"\r\n.\r\n", 1)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exchange(b"QUIT\r\n", 1)
        self.sock.close()
