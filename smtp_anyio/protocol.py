"""The names of aiosmtplib's ``protocol`` module.

smtp-sansio's architecture differs from aiosmtplib's: aiosmtplib parses replies
inside an ``asyncio.Protocol`` (``SMTPProtocol``), while here the protocol machine
is :class:`smtp_core.ClientConnection` (sans-I/O: bytes in, events out) and the
adapter only moves bytes. What each name is here:

* ``SMTPProtocol``: the adapter's byte transport, :class:`smtp_anyio._transport.AnyioTransport`
  (reads, writes, STARTTLS and close over an anyio byte stream; on trio its subclass
  reads and writes plain sockets directly, and on asyncio connections use
  smtp_asyncio's ``StreamProtocol``). It reads and writes bytes; it has no
  ``execute_command``.
* ``FlowControlMixin``: the ``asyncio.Protocol`` write flow-control mixin of
  :mod:`smtp_asyncio.protocol`, for protocols written on top of it (asyncio only:
  anyio streams apply back-pressure themselves).
* ``MAX_LINE_LENGTH``, ``MAX_RESPONSE_LENGTH``, ``LINE_ENDINGS_REGEX``,
  ``PERIOD_REGEX``, ``COMMAND_INJECTION_REGEX`` and ``normalize_message_line_endings``:
  aiosmtplib's values and behaviour (:mod:`smtp_core._compat_protocol`).
* The exception classes, ``SMTPResponse`` and ``SMTPStatus``: the library's own.
"""

from smtp_asyncio.protocol import FlowControlMixin
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

from ._transport import AnyioTransport

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

SMTPProtocol = AnyioTransport
