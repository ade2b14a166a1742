"""smtplib's exceptions that are also smtp_core's.

Each class subclasses both its :mod:`smtplib` namesake (so ``except smtplib.SMTPException``
and friends still catch it) and the matching :mod:`smtp_core` class (so code written
for smtp-sansio's adapters catches it too). Constructors, ``args`` and attributes are
smtplib's: ``smtp_code``, ``smtp_error`` (bytes), ``sender``, and ``recipients`` (a
dict of recipient to ``(code, bytes)``). smtp_core's ``code``, ``message`` (str),
``outcome`` and ``content_started`` are set as well.
"""

from __future__ import annotations

import smtplib
from typing import Any

import smtp_core

__all__ = [
    "SMTPException",
    "SMTPNotSupportedError",
    "SMTPServerDisconnected",
    "SMTPTimeoutError",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPRecipientsRefused",
    "SMTPDataError",
    "SMTPConnectError",
    "SMTPHeloError",
    "SMTPAuthenticationError",
    "convert",
    "as_bytes",
]


def as_bytes(text: str | bytes) -> bytes:
    """Reply text as smtplib reports it (bytes)."""
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class SMTPException(smtp_core.SMTPException, smtplib.SMTPException):
    """Base class of every exception smtp_sync raises for SMTP reasons."""

    def __init__(self, *args: Any) -> None:
        smtplib.SMTPException.__init__(self, *args)
        self.args = args
        self.message = _text(args[0]) if args else ""


class SMTPNotSupportedError(
    SMTPException, smtp_core.SMTPNotSupported, smtplib.SMTPNotSupportedError
):
    """The command or option is not supported by the server."""


class SMTPServerDisconnected(
    smtp_core.SMTPServerDisconnected, SMTPException, smtplib.SMTPServerDisconnected
):
    """The connection was closed unexpectedly, or a command needed a connection."""


class SMTPTimeoutError(smtp_core.SMTPReadTimeoutError, SMTPServerDisconnected):
    """A time limit passed; the connection is closed.

    Also ``TimeoutError`` (as smtplib's socket timeouts are) and
    ``SMTPServerDisconnected`` (which smtplib raises for a timeout while reading).
    """


class SMTPResponseException(
    smtp_core.SMTPResponseException, SMTPException, smtplib.SMTPResponseException
):
    """The server answered with an error code: ``smtp_code`` and ``smtp_error`` (bytes)."""

    def __init__(self, code: int, msg: bytes | str) -> None:
        smtplib.SMTPResponseException.__init__(self, code, msg)
        self.code = code
        self.message = _text(msg)


class SMTPSenderRefused(
    smtp_core.SMTPSenderRefused, SMTPResponseException, smtplib.SMTPSenderRefused
):
    """The server refused the sender (``sender``)."""

    def __init__(self, code: int, msg: bytes | str, sender: str) -> None:
        smtplib.SMTPSenderRefused.__init__(self, code, msg, sender)  # type: ignore[arg-type]
        self.code = code
        self.message = _text(msg)


class SMTPRecipientsRefused(
    smtp_core.SMTPRecipientsRefused, SMTPException, smtplib.SMTPRecipientsRefused
):
    """Every recipient was refused: ``recipients`` maps each to ``(code, bytes)``."""

    recipients: dict[str, tuple[int, bytes]]  # type: ignore[assignment]  # smtplib's

    def __init__(self, recipients: dict[str, tuple[int, bytes]]) -> None:
        smtplib.SMTPRecipientsRefused.__init__(self, recipients)
        self.message = str(recipients)


class SMTPDataError(smtp_core.SMTPDataError, SMTPResponseException, smtplib.SMTPDataError):
    """The server refused DATA or the message content."""


class SMTPConnectError(
    smtp_core.SMTPConnectResponseError, SMTPResponseException, smtplib.SMTPConnectError
):
    """The server's greeting was not 220."""


class SMTPHeloError(smtp_core.SMTPHeloError, SMTPResponseException, smtplib.SMTPHeloError):
    """The server refused HELO/EHLO."""


class SMTPAuthenticationError(
    smtp_core.SMTPAuthenticationError, SMTPResponseException, smtplib.SMTPAuthenticationError
):
    """The server refused the AUTH exchange."""


_RESPONSE_CLASSES: tuple[tuple[type[Exception], type[SMTPResponseException]], ...] = (
    (smtp_core.SMTPConnectResponseError, SMTPConnectError),
    (smtp_core.SMTPHeloError, SMTPHeloError),
    (smtp_core.SMTPDataError, SMTPDataError),
    (smtp_core.SMTPAuthenticationError, SMTPAuthenticationError),
)


def _carry(new: BaseException, old: BaseException) -> BaseException:
    """Keep what smtp_core told about the message (outcome, typed result)."""
    for name in ("outcome", "content_started", "result"):
        value = getattr(old, name, None)
        if value is not None:
            setattr(new, name, value)
    new.__cause__ = old.__cause__
    return new


def convert(exc: BaseException) -> BaseException:
    """smtp_sync's exception for one raised by smtp_core's flows (others unchanged)."""
    if isinstance(exc, SMTPException) or not isinstance(exc, smtp_core.SMTPException):
        if isinstance(exc, smtp_core.RemoteProtocolError):
            return SMTPResponseException(-1, f"Malformed SMTP response: {exc}".encode())
        return exc
    new: BaseException
    if isinstance(exc, smtp_core.SMTPSenderRefused):
        new = SMTPSenderRefused(exc.code, as_bytes(exc.message), exc.sender)
    elif isinstance(exc, smtp_core.SMTPRecipientsRefused):
        new = SMTPRecipientsRefused(
            {r.recipient: (r.code, as_bytes(r.message)) for r in exc.recipients}
        )
    elif isinstance(exc, smtp_core.SMTPTimeoutError):
        new = SMTPTimeoutError(exc.message)
    elif isinstance(exc, smtp_core.SMTPServerDisconnected):
        new = SMTPServerDisconnected(exc.message)
    elif isinstance(exc, smtp_core.SMTPResponseException):
        cls = next((c for core, c in _RESPONSE_CLASSES if isinstance(exc, core)), None)
        new = (cls or SMTPResponseException)(exc.code, as_bytes(exc.message))
    elif isinstance(exc, smtp_core.SMTPNotSupported):
        new = SMTPNotSupportedError(exc.message)
    else:
        new = SMTPException(exc.message)
    return _carry(new, exc)
