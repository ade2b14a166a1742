"""aiosmtplib's ``email`` module: address parsing and message helpers, same results.

These are the functions of ``aiosmtplib.email`` with the same signatures, return
values and exceptions, for code that calls them directly. The client's own
``send_message`` decides its envelope in :mod:`smtp_core._email` and validates each
address strictly (:func:`smtp_core.validate_address`) when the command is built.

``parse_address`` is lenient like aiosmtplib's (a display name is dropped, a
string that does not parse is kept as it is), but it refuses, with ``ValueError``,
any result holding whitespace, ``<``, ``>`` or ``"`` outside a quoted local part:
such a string would end the address on the command line and smuggle in ESMTP
parameters or a further command.
"""

from __future__ import annotations

import copy
import email.charset
import email.generator
import email.header
import email.headerregistry
import email.message
import email.policy
import email.utils
import io
import re
from collections.abc import Iterable
from typing import cast

from . import _email

__all__ = [
    "ADDRESS_INJECTION_REGEX",
    "ESCAPES_REGEX",
    "QUOTED_LOCAL_PART_REGEX",
    "SPECIALS_REGEX",
    "UTF8_CHARSET",
    "extract_addresses",
    "extract_recipients",
    "extract_sender",
    "flatten_message",
    "parse_address",
    "quote_address",
]

AnyMessage = email.message.Message | email.message.EmailMessage

#: RFC 5322 specials (a local part holding one must be quoted).
SPECIALS_REGEX = re.compile(r'[][\\()<>@,:;".]')
#: Characters escaped with a backslash inside a quoted string.
ESCAPES_REGEX = re.compile(r'[\\"]')
UTF8_CHARSET = email.charset.Charset("utf-8")
#: What may not appear in an address outside a quoted local part: whitespace
#: (CR and LF included) and the characters that end an address on a command line.
ADDRESS_INJECTION_REGEX = re.compile(r'[\s<>"]')
#: A leading quoted-string local part, where those characters are allowed.
QUOTED_LOCAL_PART_REGEX = re.compile(r'^"(?:[^"\\\r\n]|\\.)*"')


def _validate_address(address: str) -> None:
    """Raise ``ValueError`` if ``address`` cannot be put on an SMTP command line as is."""
    unquoted = QUOTED_LOCAL_PART_REGEX.sub("", address, count=1)
    if ADDRESS_INJECTION_REGEX.search(unquoted):
        raise ValueError(
            f"Address {address!r} contains characters not permitted in an SMTP mailbox"
        )


def parse_address(address: str) -> str:
    """The bare address of ``address`` (a display name is dropped).

    A string that does not parse as an address is returned stripped of surrounding
    whitespace.

    :raises ValueError: if the result holds characters that cannot be sent safely
        on an SMTP command line.
    """
    _, parsed = email.utils.parseaddr(address)
    parsed = parsed or address.strip()
    _validate_address(parsed)
    return parsed


def quote_address(address: str) -> str:
    """``<address>``, with ``address`` parsed by :func:`parse_address`."""
    return f"<{parse_address(address)}>"


def flatten_message(
    message: AnyMessage,
    /,
    *,
    utf8: bool = False,
    cte_type: str = "8bit",
) -> bytes:
    """The message as bytes, without its Bcc and Resent-Bcc headers.

    An ``EmailMessage`` is written with the SMTP policy (SMTPUTF8 with ``utf8``),
    so with CRLF line endings. A compat32 ``Message`` keeps compat32's ``\\n``
    line endings, as in aiosmtplib; they become CRLF when sent. ``cte_type``
    other than ``"8bit"`` re-encodes 8-bit parts. The caller's message is not
    modified.
    """
    if isinstance(message, email.message.EmailMessage):
        return _email.flatten_message(message, utf8=utf8, cte_type=cte_type)
    message_copy = copy.copy(message)
    del message_copy["Bcc"]  # rebinds the copy's header list: the original keeps it
    del message_copy["Resent-Bcc"]
    policy = email.policy.compat32
    if cte_type != "8bit":
        policy = policy.clone(cte_type=cte_type)
    with io.BytesIO() as buffer:
        email.generator.BytesGenerator(buffer, policy=policy).flatten(message_copy)
        return buffer.getvalue()


def extract_addresses(
    header: str | email.headerregistry.AddressHeader | email.header.Header,
    /,
) -> list[str]:
    """The raw addresses in an address header, for use in SMTP commands.

    An ``AddressHeader`` gives its addresses' ``addr_spec`` (a plain string
    assigned in a sequence is parsed with :func:`parse_address`); a compat32
    ``Header`` is decoded and each part parsed; a plain string is split with
    :func:`email.utils.getaddresses`.
    """
    addresses: list[str] = []
    if isinstance(header, email.headerregistry.AddressHeader):
        # A header assigned a sequence of strings holds those strings.
        members = cast(Iterable[str | email.headerregistry.Address], header.addresses)
        for member in members:
            if isinstance(member, email.headerregistry.Address):
                addresses.append(member.addr_spec)
            else:
                addresses.append(parse_address(member))
    elif isinstance(header, email.header.Header):
        for data, charset in email.header.decode_header(header):
            text = str(data, encoding=charset or "ascii")
            addresses.append(parse_address(text))
    else:
        addresses.extend(addr for _, addr in email.utils.getaddresses([header]))
    return addresses


def _resent(message: AnyMessage) -> bool:
    dates = message.get_all("Resent-Date")
    if dates is not None and len(dates) > 1:
        raise ValueError("Message has more than one 'Resent-' header block")
    return bool(dates)


def extract_sender(message: AnyMessage, /) -> str | None:
    """The message's sender: Sender, else From (their Resent- forms if resent).

    None when the header is missing or holds no address.

    :raises ValueError: if the message has more than one Resent- block.
    """
    prefix = "Resent-" if _resent(message) else ""
    name = f"{prefix}Sender" if f"{prefix}Sender" in message else f"{prefix}From"
    header = message[name]
    if header is None:
        return None
    addresses = extract_addresses(header)
    return addresses[0] if addresses else None


def extract_recipients(message: AnyMessage, /) -> list[str]:
    """Addresses in To, Cc and Bcc (Resent-To, Resent-Cc and Resent-Bcc if resent).

    :raises ValueError: if the message has more than one Resent- block.
    """
    prefix = "Resent-" if _resent(message) else ""
    recipients: list[str] = []
    for name in ("To", "Cc", "Bcc"):
        for header in message.get_all(f"{prefix}{name}", failobj=[]):
            recipients.extend(extract_addresses(header))
    return recipients
