"""The anyio transport: a byte stream (TCP, Unix, TLS) for asyncio and trio alike."""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream

from smtp_core import SMTPServerDisconnected

__all__ = ["AnyioTransport", "SocketStreamTransport", "SSLStreamTransport"]

_READ_SIZE = 65536
_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class SocketStreamTransport:
    """What aiosmtplib programs read as ``SMTP.transport``, over an anyio stream:
    ``get_extra_info()``, ``is_closing()``, ``close()`` and ``abort()``."""

    def __init__(self, owner: AnyioTransport) -> None:
        self._owner = owner

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        value = self._owner.get_extra_info(key)
        return default if value is None else value

    def is_closing(self) -> bool:
        return self._owner.closed

    def close(self) -> None:
        self._owner.close()

    def abort(self) -> None:
        self._owner.close()


class SSLStreamTransport(SocketStreamTransport):
    """``SMTP.transport`` once TLS is active (its name says SSL, as asyncio's does)."""


class AnyioTransport:
    """Reads, writes, STARTTLS and close over any anyio byte stream."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._raw_socket: Any = None  # looked up once, for peek_unsolicited()
        self.closed = False
        self._woken = False
        self._wake_scope: anyio.CancelScope | None = None

    @property
    def is_connected(self) -> bool:
        """True until the stream is closed."""
        return not self.closed

    @property
    def transport(self) -> SocketStreamTransport:
        """The asyncio-like transport view of the stream."""
        if isinstance(self._stream, TLSStream):
            return SSLStreamTransport(self)
        return SocketStreamTransport(self)

    async def read(self) -> bytes:
        try:
            return await self._stream.receive(_READ_SIZE)
        except anyio.EndOfStream:
            return b""
        except ssl.SSLError as exc:
            raise SMTPServerDisconnected(f"Connection lost: {exc}") from exc
        except _BROKEN as exc:
            raise SMTPServerDisconnected(f"Connection lost: {exc}") from exc

    async def read_wakeable(self) -> bytes | None:
        # A receive cancelled before it returned loses nothing (the bytes stay in the
        # stream for the next one), so waking is cancelling this scope.
        if self._woken:
            self._woken = False
            return None
        with anyio.CancelScope() as scope:
            self._wake_scope = scope
            try:
                return await self.read()
            finally:
                self._wake_scope = None
                self._woken = False
        return None

    def wake(self) -> None:
        self._woken = True
        if self._wake_scope is not None:
            self._wake_scope.cancel()

    async def write(self, data: bytes) -> None:
        try:
            await self._stream.send(data)
        except _BROKEN as exc:
            raise SMTPServerDisconnected(f"Connection lost: {exc}") from exc

    # anyio streams hand over everything they have on each receive, and read only when
    # asked: what the server sent meanwhile waits in the socket (peek_unsolicited).
    unread: None = None

    def take_unread(self) -> bytes:
        return b""

    def peer_closed(self) -> bool:
        # A plain socket the server closed reads as empty at once (peeked, left in
        # place); a TLS stream's socket holds records, so it is not looked at.
        peeker = self._peeker()
        if peeker is None:
            return False
        try:
            return bool(peeker.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")
        except OSError:  # BlockingIOError: open, nothing there
            return False
        finally:
            if peeker is not self._raw_socket:
                peeker.detach()

    def _peeker(self) -> Any:
        """A socket object to peek through (None for TLS streams)."""
        if isinstance(self._stream, TLSStream):
            return None
        raw = self._raw_socket
        if raw is None:
            raw = self._raw_socket = self._stream.extra(SocketAttribute.raw_socket, False)
        if raw is False:
            return None
        # On asyncio the raw socket is a restricted view without recv(): peek through a
        # temporary socket object on the same descriptor, detached so it closes nothing.
        if hasattr(raw, "recv"):
            return raw
        fileno = raw.fileno()
        if fileno < 0:  # closed
            return None
        return socket.socket(raw.family, raw.type, raw.proto, fileno=fileno)

    def peek_unsolicited(self) -> bytes:
        # anyio reads only when asked: bytes the server sent while the client was idle
        # wait in the socket. Peek at them there, left in place.
        peeker = self._peeker()
        if peeker is None:
            return b""
        try:
            return bytes(peeker.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:  # BlockingIOError: nothing there
            return b""
        finally:
            if peeker is not self._raw_socket:
                peeker.detach()

    async def start_tls(self, tls_context: Any, server_hostname: str | None) -> None:
        try:
            self._stream = await TLSStream.wrap(
                self._stream,
                hostname=server_hostname,
                ssl_context=tls_context,
                standard_compatible=False,
            )
        except ssl.SSLError:
            raise
        except (anyio.BrokenResourceError, anyio.EndOfStream, ConnectionError) as exc:
            raise SMTPServerDisconnected(
                f"Connection reset while upgrading transport: {exc}"
            ) from exc

    def get_extra_info(self, key: str) -> Any:
        stream = self._stream
        if key == "peername":
            return stream.extra(SocketAttribute.remote_address, None)
        if key == "sockname":
            return stream.extra(SocketAttribute.local_address, None)
        if key == "socket":
            return stream.extra(SocketAttribute.raw_socket, None)
        ssl_object = stream.extra(TLSAttribute.ssl_object, None)
        if key in ("sslobject", "ssl_object"):
            return ssl_object
        if key == "sslcontext":
            return ssl_object.context if ssl_object is not None else None
        if key == "peercert":
            return stream.extra(TLSAttribute.peer_certificate, None)
        if key == "cipher":
            return stream.extra(TLSAttribute.cipher, None)
        if key == "compression":
            return ssl_object.compression() if ssl_object is not None else None
        return None

    def close(self) -> None:
        self.closed = True
        # anyio streams close asynchronously; shut the socket down now so the server
        # sees the connection end at once. aclose() releases the stream itself.
        raw = self._stream.extra(SocketAttribute.raw_socket, None)
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)

    async def aclose(self) -> None:
        self.closed = True
        # The session is over or broken: close the socket now, without TLS's
        # close_notify exchange (a peer that does not answer it would hold the close).
        stream: Any = self._stream
        while isinstance(stream, TLSStream):
            stream = stream.transport_stream
        # Nothing of TLS is kept past the close (OpenSSL's state and buffers): an error
        # that ended the session may keep this object alive for a while.
        self._stream = stream
        # Closing must not mask the error that made the client close.
        with contextlib.suppress(BaseException):
            await stream.aclose()
