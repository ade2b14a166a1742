"""aiosmtplib's exception hierarchy: the same classes, attributes and messages.

Programs that catch aiosmtplib's exceptions catch these the same way, whichever
smtp-sansio adapter raised them.
"""

from __future__ import annotations

from typing import Any

__all__ = (
    "SMTPAuthenticationError",
    "SMTPConnectError",
    "SMTPDataError",
    "SMTPException",
    "SMTPHeloError",
    "SMTPNotSupported",
    "SMTPRecipientRefused",
    "SMTPRecipientsRefused",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "SMTPTimeoutError",
    "SMTPConnectTimeoutError",
    "SMTPReadTimeoutError",
    "SMTPConnectResponseError",
    "SMTPUTF8NotSupported",
)


class SMTPException(Exception):
    """Base class for all SMTP exceptions.

    An exception a message met while being sent also tells the message's fate:
    ``outcome`` (:class:`~smtp_core.Outcome`: the server answered, the message was never
    sent, or its fate is unknown) and ``content_started`` (whether any of its content
    was written). Both are None on exceptions that concern no message.
    """

    outcome: Any = None
    content_started: bool | None = None

    def __init__(self, message: str, /) -> None:
        self.message = message
        self.args = (message,)


class SMTPServerDisconnected(SMTPException, ConnectionError):
    """The connection was lost unexpectedly, or a command needed a connection."""


class SMTPConnectError(SMTPException, ConnectionError):
    """An error occurred while connecting to the SMTP server."""


class SMTPTimeoutError(SMTPException, TimeoutError):
    """A network operation took longer than its timeout."""


class SMTPConnectTimeoutError(SMTPTimeoutError, SMTPConnectError):
    """Connecting to the SMTP server took longer than the timeout."""


class SMTPReadTimeoutError(SMTPTimeoutError):
    """Waiting for the server's reply took longer than the timeout."""


class SMTPNotSupported(SMTPException):
    """A command or argument is not supported by the server."""


class SMTPResponseException(SMTPException):
    """Base class for server replies with error codes (``code``, ``message``)."""

    def __init__(self, code: int, message: str, /) -> None:
        self.code = code
        self.message = message
        self.args = (code, message)


class SMTPConnectResponseError(SMTPResponseException, SMTPConnectError):
    """The server's greeting was not 220."""


class SMTPHeloError(SMTPResponseException):
    """The server refused HELO or EHLO."""


class SMTPDataError(SMTPResponseException):
    """The server refused DATA or the message content."""


class SMTPAuthenticationError(SMTPResponseException):
    """The server refused our AUTH exchange; the credentials may be wrong."""


class SMTPSenderRefused(SMTPResponseException):
    """The server refused the sender (``sender``)."""

    def __init__(self, code: int, message: str, sender: str, /) -> None:
        self.code = code
        self.message = message
        self.sender = sender
        self.args = (code, message, sender)


class SMTPRecipientRefused(SMTPResponseException):
    """The server refused a recipient (``recipient``)."""

    def __init__(self, code: int, message: str, recipient: str, /) -> None:
        self.code = code
        self.message = message
        self.recipient = recipient
        self.args = (code, message, recipient)


class SMTPRecipientsRefused(SMTPException):
    """The server refused every recipient; ``recipients`` lists each refusal."""

    def __init__(self, recipients: list[SMTPRecipientRefused], /) -> None:
        self.recipients = recipients
        self.args = (recipients,)


class SMTPUTF8NotSupported(SMTPNotSupported, UnicodeEncodeError):
    """An address is not ASCII, and the server lacks SMTPUTF8 (RFC 6531).

    Also a ``UnicodeEncodeError``, which aiosmtplib raises in this case.
    """

    def __init__(self, address: str, message: str, /) -> None:
        UnicodeEncodeError.__init__(self, "ascii", address, 0, len(address), "not ASCII")
        SMTPNotSupported.__init__(self, message)

    def __str__(self) -> str:
        return self.message
