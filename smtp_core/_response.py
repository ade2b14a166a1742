"""``SMTPResponse``, ``SMTPStatus`` and the typing names of aiosmtplib's API."""

from __future__ import annotations

import enum
import os
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Union

__all__ = (
    "Default",
    "SMTPResponse",
    "SMTPStatus",
    "SMTPTokenGenerator",
    "SocketPathType",
    "_default",
)

SMTPTokenGenerator = Callable[[], Awaitable[str]]
"""An async callable returning an OAuth 2.0 access token (for XOAUTH2)."""

SocketPathType = Union[str, bytes, "os.PathLike[str]"]


class Default(enum.Enum):
    """Marks a keyword argument that was not given (``None`` is a real value)."""

    token = 0


_default = Default.token


class SMTPResponse(NamedTuple):
    """A server reply: ``code`` and ``message`` (lines joined with newlines)."""

    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


@enum.unique
class SMTPStatus(enum.IntEnum):
    """Reply codes by name, for readability."""

    invalid_response = -1
    system_status_ok = 211
    help_message = 214
    ready = 220
    closing = 221
    auth_successful = 235
    completed = 250
    will_forward = 251
    cannot_vrfy = 252
    auth_continue = 334
    start_input = 354
    domain_unavailable = 421
    mailbox_unavailable = 450
    error_processing = 451
    insufficient_storage = 452
    tls_not_available = 454
    unrecognized_command = 500
    unrecognized_parameters = 501
    command_not_implemented = 502
    bad_command_sequence = 503
    parameter_not_implemented = 504
    domain_does_not_accept_mail = 521
    access_denied = 530
    auth_failed = 535
    mailbox_does_not_exist = 550
    user_not_local = 551
    storage_exceeded = 552
    mailbox_name_invalid = 553
    transaction_failed = 554
    syntax_error = 555
