"""A loopback SMTP server that misbehaves at seeded random points and records what it accepted.

Used by ``benchmarks/soak.py``. It speaks enough ESMTP for a client that pipelines
(EHLO with PIPELINING and 8BITMIME, STARTTLS on its TLS listener, MAIL, RCPT, DATA,
RSET, NOOP, QUIT) and, at points drawn from a seeded random generator, drops the
connection (FIN), resets it (TCP RST), answers 421 or 4xx, stalls past any sane timeout,
closes or stalls during the TLS handshake, or trickles its replies a byte at a time.

A message is *accepted* when the server has read its whole content and decided to keep
it, which happens before its final reply is written (and that reply may never arrive:
a drop or a stall after storing). ``accepted`` counts each message tag (the
``X-Soak-Tag`` header) every time it is accepted, so a message delivered twice shows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import re
import socket
import ssl
import struct

__all__ = ["ChaosServer", "FAULTS", "TAG_HEADER"]

TAG_HEADER = b"X-Soak-Tag"
_TAG = re.compile(rb"^X-Soak-Tag: *(\S+)\r?$", re.MULTILINE)

FAULTS: dict[str, dict[str, float]] = {
    # where: {fault: probability}; at most one fault per roll.
    "accept": {"rst": 0.01, "close": 0.01, "stall": 0.005, "trickle": 0.05},
    "starttls": {"close_in_handshake": 0.03, "rst_in_handshake": 0.01, "stall_in_handshake": 0.01},
    "mail": {"421": 0.015, "451": 0.015, "drop": 0.01, "rst": 0.005, "stall": 0.005},
    "rcpt": {"450": 0.03, "drop": 0.005},
    "data": {"451": 0.01, "drop": 0.005},
    "content": {
        "451": 0.015,
        "drop_before_storing": 0.01,
        "drop_after_storing": 0.01,
        "rst_after_storing": 0.005,
        "stall_after_storing": 0.005,
    },
    "quit": {"stall": 0.02},
}
TRICKLE_DELAY = 0.001  # seconds between the bytes of a trickled reply


class _Close(Exception):
    """End this connection now (the fault already did what it had to)."""


class ChaosServer:
    """Two listeners on 127.0.0.1: ``port`` (plain) and ``tls_port`` (offers STARTTLS).

    ``chaos`` scales every fault probability (0: a well-behaved server); ``faults``
    replaces :data:`FAULTS` (a place left out never misbehaves).
    """

    def __init__(
        self,
        seed: int,
        tls_context: ssl.SSLContext,
        *,
        chaos: float = 1.0,
        faults: dict[str, dict[str, float]] | None = None,
    ) -> None:
        self.random = random.Random(seed)
        self.tls_context = tls_context
        self.chaos = chaos
        self.fault_table = FAULTS if faults is None else faults
        self.accepted: collections.Counter[str] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self.port = 0
        self.tls_port = 0
        self._servers: list[asyncio.Server] = []
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        plain = await asyncio.start_server(
            lambda r, w: self._spawn(r, w, starttls=False), "127.0.0.1", 0, limit=1 << 20
        )
        tls = await asyncio.start_server(
            lambda r, w: self._spawn(r, w, starttls=True), "127.0.0.1", 0, limit=1 << 20
        )
        self._servers = [plain, tls]
        self.port = plain.sockets[0].getsockname()[1]
        self.tls_port = tls.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    def roll(self, where: str) -> str | None:
        value = self.random.random()
        for fault, chance in self.fault_table.get(where, {}).items():
            chance *= self.chaos
            if value < chance:
                self.faults[f"{where}:{fault}"] += 1
                return fault
            value -= chance
        return None

    # -- one connection ----------------------------------------------------------------

    def _spawn(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, starttls: bool
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer, starttls))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, starttls: bool
    ) -> None:
        self.connections += 1
        session = _Session(self, reader, writer, offer_starttls=starttls)
        try:
            await session.run()
        except (
            _Close,
            ConnectionError,
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ssl.SSLError,
            EOFError,
        ):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()


class _Session:
    def __init__(
        self,
        server: ChaosServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        offer_starttls: bool,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.offer_starttls = offer_starttls
        self.trickle = False
        self.sender: bytes | None = None
        self.recipients = 0

    async def run(self) -> None:
        fault = self.server.roll("accept")
        if fault == "rst":
            self.reset()
        if fault == "close":
            raise _Close
        if fault == "stall":
            await self.stall()
        self.trickle = fault == "trickle"
        await self.reply(b"220 soak.test ESMTP chaos\r\n")
        while True:
            line = await self.reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                await self.ehlo(verb)
            elif verb == b"STAR":
                await self.starttls()
            elif verb == b"MAIL":
                await self.mail(line)
            elif verb == b"RCPT":
                await self.rcpt()
            elif verb == b"DATA":
                await self.data()
            elif verb == b"RSET":
                self.sender, self.recipients = None, 0
                await self.reply(b"250 2.0.0 reset\r\n")
            elif verb == b"NOOP":
                await self.reply(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                if self.server.roll("quit") == "stall":
                    await self.stall()
                await self.reply(b"221 2.0.0 bye\r\n")
                return
            else:
                await self.reply(b"502 5.5.2 not implemented\r\n")

    async def ehlo(self, verb: bytes) -> None:
        self.sender, self.recipients = None, 0
        if verb == b"HELO":
            await self.reply(b"250 soak.test\r\n")
            return
        lines = [b"soak.test", b"PIPELINING", b"8BITMIME", b"ENHANCEDSTATUSCODES"]
        if self.offer_starttls:
            lines.append(b"STARTTLS")
        await self.reply(
            b"".join(
                b"250" + (b"-" if i < len(lines) - 1 else b" ") + text + b"\r\n"
                for i, text in enumerate(lines)
            )
        )

    async def starttls(self) -> None:
        if not self.offer_starttls:
            await self.reply(b"502 5.5.1 no STARTTLS here\r\n")
            return
        fault = self.server.roll("starttls")
        await self.reply(b"220 2.0.0 go ahead\r\n")
        if fault is not None:
            await self.reader.read(512)  # the ClientHello (or part of it)
            if fault == "rst_in_handshake":
                self.reset()
            if fault == "stall_in_handshake":
                await self.stall()
            raise _Close
        await self.writer.start_tls(self.server.tls_context)
        self.offer_starttls = False
        self.sender, self.recipients = None, 0

    async def mail(self, line: bytes) -> None:
        fault = self.server.roll("mail")
        if fault == "421":
            await self.reply(b"421 4.3.2 shutting down\r\n")
            raise _Close
        if fault == "451":
            await self.reply(b"451 4.3.0 try again later\r\n")
            return
        await self.misbehave(fault)
        self.sender, self.recipients = line, 0
        await self.reply(b"250 2.1.0 sender ok\r\n")

    async def rcpt(self) -> None:
        if self.sender is None:
            await self.reply(b"503 5.5.1 MAIL first\r\n")
            return
        fault = self.server.roll("rcpt")
        if fault == "450":
            await self.reply(b"450 4.2.1 mailbox busy\r\n")
            return
        await self.misbehave(fault)
        self.recipients += 1
        await self.reply(b"250 2.1.5 recipient ok\r\n")

    async def data(self) -> None:
        if self.sender is None:
            await self.reply(b"503 5.5.1 MAIL first\r\n")
            return
        if not self.recipients:
            await self.reply(b"554 5.5.1 no valid recipients\r\n")
            return
        fault = self.server.roll("data")
        if fault == "451":
            self.sender, self.recipients = None, 0
            await self.reply(b"451 4.3.0 not now\r\n")
            return
        await self.misbehave(fault)
        await self.reply(b"354 go ahead\r\n")
        content = await self.reader.readuntil(b"\r\n.\r\n")
        self.sender, self.recipients = None, 0
        fault = self.server.roll("content")
        if fault == "451":
            await self.reply(b"451 4.3.0 local error in processing\r\n")
            return
        if fault == "drop_before_storing":
            raise _Close
        match = _TAG.search(content.partition(b"\r\n\r\n")[0])
        if match is not None:
            self.server.accepted[match.group(1).decode()] += 1
        if fault == "drop_after_storing":
            raise _Close
        if fault == "rst_after_storing":
            self.reset()
        if fault == "stall_after_storing":
            await self.stall()
        await self.reply(b"250 2.0.0 queued\r\n")

    # -- faults -------------------------------------------------------------------------

    async def misbehave(self, fault: str | None) -> None:
        if fault == "drop":
            raise _Close
        if fault == "rst":
            self.reset()
        if fault == "stall":
            await self.stall()

    def reset(self) -> None:
        """Abort the connection with a TCP RST."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raise _Close

    async def stall(self) -> None:
        """Never answer: read (and ignore) until the client goes away."""
        while await self.reader.read(65536):
            pass
        raise _Close

    async def reply(self, data: bytes) -> None:
        if not self.trickle:
            self.writer.write(data)
            await self.writer.drain()
            return
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await self.writer.drain()
            await asyncio.sleep(TRICKLE_DELAY)
