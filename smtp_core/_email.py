"""``email.message`` helpers behind ``send_message``: envelope from headers, flattening."""

from __future__ import annotations

import copy
import email.generator
import email.header
import email.headerregistry
import email.message
import email.policy
import email.utils
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._exceptions import SMTPNotSupported
from ._headers import checking_policy

__all__ = [
    "PreparedMessage",
    "extract_addresses",
    "extract_sender",
    "extract_recipients",
    "flatten_message",
    "prepare_message",
    "needs_smtputf8",
]

AnyMessage = email.message.Message | email.message.EmailMessage


def extract_addresses(header: object) -> list[str]:
    """The bare addresses (``local@domain``) of an address header's value."""
    if isinstance(header, email.headerregistry.AddressHeader):
        # A header assigned a sequence of strings keeps them as strings.
        return [
            address.addr_spec
            if isinstance(address, email.headerregistry.Address)
            else email.utils.parseaddr(str(address))[1]
            for address in header.addresses
        ]
    if isinstance(header, email.header.Header):
        text = str(email.header.make_header(email.header.decode_header(header)))
    else:
        text = str(header)
    return [addr for _, addr in email.utils.getaddresses([text]) if addr]


def _resent(message: AnyMessage) -> bool:
    dates = message.get_all("Resent-Date")
    if dates is not None and len(dates) > 1:
        raise ValueError("Message has more than one 'Resent-' header block")
    return bool(dates)


def extract_sender(message: AnyMessage) -> str | None:
    """Sender (or From), or their Resent- forms when the message was resent."""
    prefix = "Resent-" if _resent(message) else ""
    header = message.get(f"{prefix}Sender")
    if header is None:
        header = message[f"{prefix}From"]
    if header is None:
        return None
    addresses = extract_addresses(header)
    return addresses[0] if addresses else None


def extract_recipients(message: AnyMessage) -> list[str]:
    """To, Cc and Bcc (or Resent-To, Resent-Cc and Resent-Bcc) addresses."""
    prefix = "Resent-" if _resent(message) else ""
    recipients: list[str] = []
    for name in ("To", "Cc", "Bcc"):
        for header in message.get_all(f"{prefix}{name}", failobj=[]):
            recipients.extend(extract_addresses(header))
    return recipients


def flatten_message(message: AnyMessage, *, utf8: bool = False, cte_type: str = "8bit") -> bytes:
    """The message as bytes with CRLF line endings, without Bcc and Resent-Bcc.

    The caller's message object is not modified.
    """
    message_copy = copy.copy(message)
    # copy.copy shares the header list; give the copy its own before deleting.
    message_copy._headers = list(message._headers)  # type: ignore[union-attr]
    del message_copy["Bcc"]
    del message_copy["Resent-Bcc"]
    policy: email.policy.Policy
    if isinstance(message_copy, email.message.EmailMessage):
        policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
    else:
        policy = email.policy.compat32.clone(linesep="\r\n")
    if cte_type != "8bit":
        policy = policy.clone(cte_type=cte_type)
    policy = checking_policy(policy)  # ValueError on a header that is not one folded line
    with io.BytesIO() as buffer:
        email.generator.BytesGenerator(buffer, policy=policy).flatten(message_copy)
        return buffer.getvalue()


def needs_smtputf8(addresses: Iterable[str]) -> bool:
    """True if any address has non-ASCII characters."""
    return not all(address.isascii() for address in addresses)


@dataclass(frozen=True)
class PreparedMessage:
    """The envelope and content ``send_message`` sends."""

    sender: str
    recipients: list[str]
    content: bytes
    mail_options: list[str]
    requires_smtputf8: bool


def prepare_message(
    message: AnyMessage,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    mail_options: Sequence[str] = (),
    smtputf8_supported: bool,
    eightbitmime_supported: bool,
) -> PreparedMessage:
    """Work out what ``send_message`` sends, given what the server supports.

    SMTPUTF8 is added for non-ASCII addresses (``SMTPNotSupported`` if the server
    lacks it) and BODY=8BITMIME whenever the server offers 8BITMIME (as aiosmtplib
    does); without it, 8-bit parts are re-encoded to 7-bit transfer encodings.
    """
    options = list(mail_options)
    if sender is None:
        sender = extract_sender(message)
    if sender is None:
        raise ValueError("No From header provided in message")
    if isinstance(recipients, str):
        recipient_list = [recipients]
    elif recipients is None:
        recipient_list = extract_recipients(message)
    else:
        recipient_list = list(recipients)
    if not recipient_list:
        raise ValueError("No recipient headers provided in message")
    utf8 = needs_smtputf8([sender, *recipient_list])
    lowered = [option.lower() for option in options]
    if utf8:
        if not smtputf8_supported:
            raise SMTPNotSupported(
                "An address containing non-ASCII characters was provided, but "
                "SMTPUTF8 is not supported by this server"
            )
        if "smtputf8" not in lowered:
            options.append("SMTPUTF8")
    content = flatten_message(message, utf8=utf8, cte_type="8bit")
    if eightbitmime_supported:
        # As aiosmtplib: declared whenever the server offers it (SMTPUTF8 headers and
        # 8-bit parts need it; 7-bit content loses nothing by it).
        if not any(option.startswith("body=") for option in lowered):
            options.append("BODY=8BITMIME")
    elif not content.isascii():
        # No 8BITMIME: 8-bit parts are re-encoded (SMTPUTF8 headers stay as they are).
        content = flatten_message(message, utf8=utf8, cte_type="7bit")
    return PreparedMessage(sender, recipient_list, content, options, utf8)
