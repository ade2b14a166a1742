"""The I/O-free names of aiosmtplib's ``protocol`` module.

aiosmtplib reads and writes SMTP inside an ``asyncio.Protocol`` (``SMTPProtocol``).
smtp-sansio has no such class: the protocol machine is
:class:`smtp_core.ClientConnection` (reply parsing, state, dot-stuffing, limits),
driven by each adapter's byte transport. This module keeps aiosmtplib's constants
and its line-ending helper, with aiosmtplib's values, for code that imports them;
the client does not read them (its limits are ``ClientConnection``'s arguments).
"""

from __future__ import annotations

import re

from ._content import normalize_line_endings

__all__ = [
    "COMMAND_INJECTION_REGEX",
    "LINE_ENDINGS_REGEX",
    "MAX_LINE_LENGTH",
    "MAX_RESPONSE_LENGTH",
    "PERIOD_REGEX",
    "normalize_message_line_endings",
]

#: Longest reply line accepted, in bytes: the default of ``ClientConnection``'s
#: ``max_line_length``.
MAX_LINE_LENGTH = 8192
#: aiosmtplib's bound on one whole reply. Here a reply is bounded by
#: ``ClientConnection``'s ``max_reply_lines`` and ``max_buffer_size`` instead.
MAX_RESPONSE_LENGTH = MAX_LINE_LENGTH * 4
#: A line ending: CRLF, LF, or a CR not followed by LF.
LINE_ENDINGS_REGEX = re.compile(rb"(?:\r\n|\n|\r(?!\n))")
#: A period at the start of a line (dot-stuffed in DATA).
PERIOD_REGEX = re.compile(rb"(?m)^\.")
#: C0 controls and DEL, refused in command arguments.
COMMAND_INJECTION_REGEX = re.compile(rb"[\x00-\x1f\x7f]")


def normalize_message_line_endings(message: bytes) -> bytes:
    """Turn bare CR and bare LF into CRLF, and end the message with CRLF.

    That is how DATA sends the message (before dot-stuffing).
    """
    message = normalize_line_endings(message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message
