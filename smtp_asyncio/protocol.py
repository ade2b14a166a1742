"""The names of aiosmtplib's ``protocol`` module.

smtp-sansio's architecture differs from aiosmtplib's: aiosmtplib parses replies
inside an ``asyncio.Protocol`` (``SMTPProtocol``), while here the protocol machine
is :class:`smtp_core.ClientConnection` (sans-I/O: bytes in, events out) and the
adapter only moves bytes. What each name is here:

* ``SMTPProtocol``: the adapter's byte transport, :class:`smtp_asyncio._transport.StreamProtocol`
  (an ``asyncio.Protocol`` with a bounded receive queue, write back-pressure and
  STARTTLS). It reads and writes bytes; it has no ``execute_command``.
* ``FlowControlMixin``: a working ``asyncio.Protocol`` mixin for write flow control
  (``pause_writing``/``resume_writing``, awaited through ``_drain_helper()``), for
  protocols written on top of it.
* ``MAX_LINE_LENGTH``, ``MAX_RESPONSE_LENGTH``, ``LINE_ENDINGS_REGEX``,
  ``PERIOD_REGEX``, ``COMMAND_INJECTION_REGEX`` and ``normalize_message_line_endings``:
  aiosmtplib's values and behaviour (:mod:`smtp_core._compat_protocol`).
* The exception classes, ``SMTPResponse`` and ``SMTPStatus``: the library's own.
"""

from __future__ import annotations

import asyncio
import collections

from smtp_core._compat_protocol import (
    COMMAND_INJECTION_REGEX,
    LINE_ENDINGS_REGEX,
    MAX_LINE_LENGTH,
    MAX_RESPONSE_LENGTH,
    PERIOD_REGEX,
    normalize_message_line_endings,
)
from smtp_core._exceptions import (
    SMTPDataError,
    SMTPReadTimeoutError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from smtp_core._response import SMTPResponse, SMTPStatus

from ._transport import StreamProtocol

__all__ = (
    "COMMAND_INJECTION_REGEX",
    "FlowControlMixin",
    "LINE_ENDINGS_REGEX",
    "MAX_LINE_LENGTH",
    "MAX_RESPONSE_LENGTH",
    "PERIOD_REGEX",
    "SMTPDataError",
    "SMTPProtocol",
    "SMTPReadTimeoutError",
    "SMTPResponse",
    "SMTPResponseException",
    "SMTPServerDisconnected",
    "SMTPStatus",
    "SMTPTimeoutError",
    "normalize_message_line_endings",
)

SMTPProtocol = StreamProtocol


class FlowControlMixin(asyncio.Protocol):
    """Write flow control for an ``asyncio.Protocol``.

    The transport calls :meth:`pause_writing` and :meth:`resume_writing`; a writer
    awaits :meth:`_drain_helper`, which returns at once unless writing is paused and
    raises ``ConnectionResetError`` once the connection is lost. A subclass that
    overrides these methods or :meth:`connection_lost` calls the base ones.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop if loop is not None else asyncio.get_event_loop()
        self._paused = False
        self._connection_lost = False
        self._drain_waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def _release_writers(self, exc: BaseException | None = None) -> None:
        for waiter in self._drain_waiters:
            if waiter.done():
                continue
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._release_writers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connection_lost = True
        if self._paused:  # writers wait only while paused
            self._release_writers(exc)

    async def _drain_helper(self) -> None:
        if self._connection_lost:
            raise ConnectionResetError("Connection lost")
        if not self._paused:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            self._drain_waiters.remove(waiter)

    def _get_close_waiter(self, stream: asyncio.StreamWriter) -> asyncio.Future[None]:
        """The future a ``StreamWriter`` waits on when closing; a subclass provides it."""
        raise NotImplementedError
