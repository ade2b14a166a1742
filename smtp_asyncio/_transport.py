"""The asyncio transport: a ``Protocol`` with a bounded receive queue and flow control."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from smtp_core import (
    SMTPConnectError,
    SMTPConnectTimeoutError,
    SMTPReadTimeoutError,
    SMTPServerDisconnected,
)
from smtp_core._client import ConnectOptions

__all__ = ["StreamProtocol", "is_ip_literal", "open_stream_protocol"]

Deadline = Callable[
    [float | None, Callable[[Callable[[float | None], None]], Awaitable[None]]], Awaitable[None]
]

_HIGH_WATER = 256 * 1024  # stop reading from the socket past this many unread bytes
_READ_SIZE = 64 * 1024  # what one read from the socket takes at most


class _ReadBuffer(threading.local):
    """The buffer this thread's event loop reads into, shared by its connections."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_READ_SIZE))


_read_buffer = _ReadBuffer()


class StreamProtocol(asyncio.BufferedProtocol):
    """Bytes in a queue for :meth:`read`, :meth:`write` with back-pressure, STARTTLS.

    The event loop reads into a buffer kept for the thread's life (``BufferedProtocol``):
    otherwise asyncio allocates 256 KiB for every read, which the allocator maps and
    unmaps each time, several system calls per reply. Every read is copied out of it
    before the loop does anything else (``buffer_updated`` follows ``get_buffer`` at
    once, on the loop's thread), so the connections of one loop share it instead of
    zeroing 64 KiB each.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._read_buffer: memoryview | None = None
        self.transport: asyncio.Transport | None = None
        self._chunks: deque[bytes] = deque()
        self.unread = self._chunks  # (what take_unread() would return, unjoined)
        self._buffered = 0
        self._eof = False
        self._lost: BaseException | None = None
        self._closed = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_writing = False
        self._paused_reading = False
        self._tls = False
        self._woken = False

    # asyncio.Protocol callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: other event loops' transports (uvloop's) implement
        # the Transport interface without deriving from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self._read_buffer = _read_buffer.view
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        buffer = self._read_buffer
        assert buffer is not None
        self._chunks.append(bytes(buffer[:nbytes]))
        self._buffered += nbytes
        if self._buffered > _HIGH_WATER and not self._paused_reading and self.transport:
            self.transport.pause_reading()
            self._paused_reading = True
        waiter = self._read_waiter
        if waiter is not None:
            self._read_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        # (An event loop without buffered protocols: the same as a read into the buffer.)
        self._read_buffer = memoryview(data)
        self.buffer_updated(len(data))

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._eof = True
        if exc is not None:
            self._lost = exc
        # Let go of the transport: asyncio's SSL transport keeps this protocol's
        # get_buffer and buffer_updated past the connection's end, so holding it would
        # make a reference cycle, and the dead connection (its 256 KiB TLS buffer, its
        # OpenSSL state) would wait for a full garbage collection instead of being
        # freed now.
        self.transport = None
        self._wake_reader()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter, self._read_waiter = self._read_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # the Transport interface of smtp_core._client --------------------------------------

    async def read(self) -> bytes:
        while not self._chunks:
            if self._closed and not self._eof:
                raise SMTPServerDisconnected("Connection closed")
            if self._eof:
                if self._lost is not None:
                    raise SMTPServerDisconnected(f"Connection lost: {self._lost}") from self._lost
                return b""
            self._read_waiter = self._loop.create_future()
            await self._read_waiter
        data = self._take()
        if self._paused_reading and self.transport is not None and not self._closed:
            self._paused_reading = False
            self.transport.resume_reading()
        return data

    def _take(self) -> bytes:
        chunks = self._chunks
        data = b"".join(chunks) if len(chunks) > 1 else chunks[0]
        chunks.clear()
        self._buffered = 0
        return data

    async def read_wakeable(self) -> bytes | None:
        while not self._chunks and not self._eof and not self._closed:
            if self._woken:
                self._woken = False
                return None
            self._read_waiter = self._loop.create_future()
            await self._read_waiter
        self._woken = False
        if self._chunks and not self._paused_reading:
            return self._take()  # (read()'s usual case, without its coroutine)
        return await self.read()

    def wake(self) -> None:
        self._woken = True
        self._wake_reader()

    async def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self._closed or transport.is_closing():
            raise SMTPServerDisconnected("Connection lost")
        transport.write(data)
        if self._paused_writing:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter
            if self._closed:
                raise SMTPServerDisconnected("Connection lost")

    def take_unread(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return data

    def peek_unsolicited(self) -> bytes:
        return b""  # the protocol reads all the time: take_unread() has them

    async def start_tls(self, tls_context: Any, server_hostname: str | None) -> None:
        transport = self.transport
        if transport is None or self._closed:
            raise SMTPServerDisconnected("Connection lost")
        try:
            new_transport = await self._loop.start_tls(
                transport, self, tls_context, server_hostname=server_hostname
            )
        except ssl.SSLError:
            raise
        except ConnectionError as exc:
            raise SMTPServerDisconnected(
                f"Connection reset while upgrading transport: {exc}"
            ) from exc
        if new_transport is None:
            raise SMTPServerDisconnected("Connection lost while upgrading transport")
        self.transport = new_transport
        self._tls = True

    @property
    def is_connected(self) -> bool:
        """True while the transport is open (as aiosmtplib's protocol says)."""
        return self.transport is not None and not self._closed and not self.transport.is_closing()

    def peer_closed(self) -> bool:
        return self._eof

    def get_extra_info(self, key: str) -> Any:
        if self.transport is None:
            return None
        return self.transport.get_extra_info(key)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._closed = True
        self._wake_reader()

    async def aclose(self) -> None:
        # The session is over or broken: release the socket now (a TLS transport's
        # close() would wait for the peer's close_notify, up to 30 s).
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()
        self.close()


_LITERALS: dict[str, bool] = {}  # hosts already asked about (a client connects to a few)
_CACHED_HOSTS = 64


def is_ip_literal(host: str) -> bool:
    """True for an IPv4 or IPv6 address (which needs no resolution, nor a race)."""
    known = _LITERALS.get(host)
    if known is not None:
        return known
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    if len(_LITERALS) >= _CACHED_HOSTS:
        _LITERALS.clear()
    _LITERALS[host] = literal
    return literal


async def open_stream_protocol(options: ConnectOptions, with_deadline: Deadline) -> StreamProtocol:
    """Connect as ``options`` say (TCP, a Unix socket or a given socket; TLS at once or
    not), within ``with_deadline``; failures become ``SMTPConnectError`` and
    ``SMTPConnectTimeoutError``."""
    loop = asyncio.get_running_loop()
    protocol = StreamProtocol(loop)
    ssl_args: dict[str, Any] = {}
    if options.use_tls:
        ssl_args = {
            "ssl": options.tls_context,
            "server_hostname": options.server_hostname or options.hostname,
            "ssl_handshake_timeout": options.timeout,
        }
    if options.sock is not None:
        coro = loop.create_connection(lambda: protocol, sock=options.sock, **ssl_args)
    elif options.socket_path is not None:
        coro = loop.create_unix_connection(lambda: protocol, path=options.socket_path, **ssl_args)
    else:
        # Happy Eyeballs (RFC 8305) for host names: their addresses are tried in
        # turn, the next started 250 ms after the previous, IPv6 and IPv4
        # interleaved. An address literal needs no race.
        eyeballs: dict[str, Any] = {}
        # Other event loops (uvloop) may not take these arguments; they try a
        # host's addresses one after another instead.
        if isinstance(loop, asyncio.BaseEventLoop) and not is_ip_literal(options.hostname):
            eyeballs = {"happy_eyeballs_delay": 0.25, "interleave": 1}
        coro = loop.create_connection(
            lambda: protocol,
            host=options.hostname,
            port=options.port or 25,
            local_addr=options.source_address,
            **eyeballs,
            **ssl_args,
        )
    where = f"{options.hostname} on port {options.port}"

    async def connected(restart: Callable[[float | None], None]) -> None:
        await coro

    try:
        await with_deadline(options.timeout, connected)
    except SMTPReadTimeoutError as exc:
        raise SMTPConnectTimeoutError(f"Timed out connecting to {where}") from exc
    except OSError as exc:
        raise SMTPConnectError(f"Error connecting to {where}: {exc}") from exc
    return protocol
