"""Connections and deadlines on the trio backend, with trio's own primitives.

anyio's socket stream on trio is a thin layer over a trio socket, which checkpoints
in every operation (a yield to the scheduler even when the socket was ready) and
wraps every call in anyio's resource guards and error conversion. A plain socket is
read and written here directly: a non-blocking ``recv``/``send`` first, and
``wait_readable``/``wait_writable`` only when the socket is not ready. Every
operation still notices a cancellation (``checkpoint_if_cancelled``) and every wait is
cancellable, so deadlines, wakeable reads and cancelled callers behave as before.
Every read lets the other tasks run before it returns; a write that the socket takes
at once returns without a yield (as asyncio's transports do). Once TLS is on, reads
and writes go through anyio's TLS stream. An IP address is connected to directly;
host names go through ``anyio.connect_tcp`` (Happy Eyeballs).
"""

from __future__ import annotations

import errno
import math
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import trio
from anyio.abc import ByteStream, SocketAttribute, SocketStream, UNIXSocketStream
from anyio.streams.tls import TLSStream
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    wait_readable,
    wait_writable,
)

from smtp_asyncio._transport import is_ip_literal
from smtp_core import (
    SMTPConnectError,
    SMTPConnectTimeoutError,
    SMTPReadTimeoutError,
    SMTPServerDisconnected,
)
from smtp_core._client import ConnectOptions

from ._transport import _READ_SIZE, AnyioTransport

__all__ = ["TrioTransport", "current_time", "open_trio_transport", "trio_deadline", "wait_event"]

T = TypeVar("T")

_DEADLINE_SLACK = 0.005  # seconds
_PEEK_NOW = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)  # a plain int: no flag arithmetic per call
current_time = trio.current_time


class TrioTransport(AnyioTransport):
    """An :class:`AnyioTransport` that reads and writes a plain socket itself."""

    def __init__(self, stream: ByteStream) -> None:
        super().__init__(stream)
        self._sock: socket.socket | None = None
        if not isinstance(stream, TLSStream):
            self._sock = stream.extra(SocketAttribute.raw_socket, None)
        self._trio_wake_scope: trio.CancelScope | None = None

    async def read(self) -> bytes:
        sock = self._sock
        if sock is None:
            return await super().read()
        await checkpoint_if_cancelled()
        data = _recv_now(sock)
        if data is not None:
            # A reply that was already there: the other tasks still get their turn
            # first (a message submitted meanwhile joins the pipeline), as they do
            # when the read waits.
            await cancel_shielded_checkpoint()
            return data
        return await _wait_and_recv(sock)

    async def read_wakeable(self) -> bytes | None:
        if self._woken:
            self._woken = False
            return None
        sock = self._sock
        if sock is not None:
            await checkpoint_if_cancelled()
            data = _recv_now(sock)
            if data is not None:  # no wait to wake from
                await cancel_shielded_checkpoint()
                self._woken = False
                return data
        # A read cancelled before it returned loses nothing (the bytes stay in the
        # socket for the next one), so waking is cancelling this scope.
        with trio.CancelScope() as scope:
            self._trio_wake_scope = scope
            try:
                return await (super().read() if sock is None else _wait_and_recv(sock))
            finally:
                self._trio_wake_scope = None
                self._woken = False
        return None

    def wake(self) -> None:
        self._woken = True
        if self._trio_wake_scope is not None:
            self._trio_wake_scope.cancel()

    async def write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            return await super().write(data)
        await checkpoint_if_cancelled()
        view = memoryview(data)
        waited = False
        while view:
            try:
                view = view[sock.send(view) :]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                raise SMTPServerDisconnected(f"Connection lost: {exc}") from exc
            try:
                await wait_writable(sock)
                waited = True
            except (trio.ClosedResourceError, trio.BusyResourceError) as exc:
                raise SMTPServerDisconnected(f"Connection lost: {exc!r}") from exc
        if not waited:
            # A write is a checkpoint, as trio's own sockets make it: the other tasks
            # run first, and the server's reply is usually there by the time this task
            # reads it (no wait for readability, a system call and a wake-up fewer).
            await cancel_shielded_checkpoint()

    def peer_closed(self) -> bool:
        sock = self._sock
        if sock is None:
            return super().peer_closed()
        # Peeked, left in place: a socket the server closed reads as empty at once.
        try:
            return sock.recv(1, _PEEK_NOW) == b""
        except OSError:  # BlockingIOError: open, nothing there
            return False

    def peek_unsolicited(self) -> bytes:
        sock = self._sock
        if sock is None:
            return super().peek_unsolicited()
        try:
            return sock.recv(64, _PEEK_NOW)
        except OSError:  # BlockingIOError: nothing there
            return b""

    async def start_tls(self, tls_context: Any, server_hostname: str | None) -> None:
        self._sock = None  # from here on, through the TLS stream
        await super().start_tls(tls_context, server_hostname)


def _recv_now(sock: socket.socket) -> bytes | None:
    """What the socket holds (b"" at the end of the stream), or None if nothing yet."""
    try:
        return sock.recv(_READ_SIZE)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise SMTPServerDisconnected(f"Connection lost: {exc}") from exc


async def _wait_and_recv(sock: socket.socket) -> bytes:
    while True:
        try:
            await wait_readable(sock)
        except (trio.ClosedResourceError, trio.BusyResourceError) as exc:
            raise SMTPServerDisconnected(f"Connection lost: {exc!r}") from exc
        data = _recv_now(sock)
        if data is not None:
            return data


async def trio_deadline(
    timeout: float | None,
    operation: Callable[[Callable[[float | None], None]], Awaitable[T]],
) -> T:
    """``operation(restart)`` within trio's cancel scope; past it, ``SMTPReadTimeoutError``."""
    now = trio.current_time
    with trio.CancelScope(deadline=math.inf if timeout is None else now() + timeout) as scope:

        def restart(seconds: float | None) -> None:
            limit = timeout if seconds is None else seconds
            deadline = math.inf if limit is None else now() + limit
            # The deadline moves at every stage of a flow; moving it by less than
            # 5 ms would only reschedule trio's deadline for nothing.
            if abs(deadline - scope.deadline) > _DEADLINE_SLACK:
                scope.deadline = deadline

        return await operation(restart)
    assert scope.cancelled_caught
    raise SMTPReadTimeoutError("Timed out waiting for server response")


async def wait_event(event: trio.Event, timeout: float | None) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds (None: for ever); False if it timed out."""
    if timeout is None:
        await event.wait()
        return True
    with trio.CancelScope(deadline=trio.current_time() + timeout):
        await event.wait()
        return True
    return False


async def open_trio_transport(options: ConnectOptions) -> TrioTransport:
    """Connect as ``options`` say (TCP, Unix socket or a given socket; TLS at once or not)."""
    where = f"{options.hostname} on port {options.port}"
    with trio.move_on_after(math.inf if options.timeout is None else options.timeout) as scope:
        try:
            stream = await _connect_stream(options)
        except OSError as exc:
            # anyio gathers the attempts in an OSError without errno, the last
            # attempt's error as its cause: chain to the one that says what failed.
            cause = exc.__cause__ if exc.errno is None else None
            if not isinstance(cause, OSError):
                cause = exc
            raise SMTPConnectError(f"Error connecting to {where}: {exc}") from cause
        except anyio.BrokenResourceError as exc:
            raise SMTPConnectError(f"Error connecting to {where}: {exc}") from exc
        return TrioTransport(stream)
    assert scope.cancelled_caught
    raise SMTPConnectTimeoutError(f"Timed out connecting to {where}")


async def _connect_stream(options: ConnectOptions) -> Any:
    if options.sock is not None:
        if options.sock.family == socket.AF_UNIX:
            stream: Any = await UNIXSocketStream.from_socket(options.sock)
        else:
            stream = await SocketStream.from_socket(options.sock)
    elif options.socket_path is not None:
        stream = await anyio.connect_unix(options.socket_path)
    else:
        assert options.port is not None
        if options.source_address is None and is_ip_literal(options.hostname):
            # One address: no Happy Eyeballs race (a task group, a task and an
            # event per connection in anyio.connect_tcp) to run.
            sock = await _connect_to_address(options.hostname, options.port)
            stream = await SocketStream.from_socket(sock)
        else:
            local_host, local_port = options.source_address or ("", 0)
            # anyio.connect_tcp implements Happy Eyeballs (RFC 8305) itself.
            stream = await anyio.connect_tcp(
                options.hostname,
                options.port,
                local_host=local_host or None,
                local_port=local_port or None if local_host else None,
            )
    if options.use_tls:
        stream = await TLSStream.wrap(
            stream,
            hostname=options.server_hostname or options.hostname,
            ssl_context=options.tls_context,
            standard_compatible=False,
        )
    return stream


async def _connect_to_address(host: str, port: int) -> socket.socket:
    """A TCP connection to an IP address (TCP_NODELAY, as anyio's)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        error = sock.connect_ex((host, port))
        if error == errno.EINPROGRESS:
            await wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
    except BaseException:
        sock.close()
        raise
    return sock
