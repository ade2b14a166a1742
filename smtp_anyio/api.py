"""The module-level :func:`send`, as in aiosmtplib."""

from __future__ import annotations

import email.message
from collections.abc import Iterable, Sequence
from typing import Any

from smtp_core import SMTPResponse
from smtp_core._client import send_with

from ._smtp import SMTP

__all__ = ["send"]


async def send(
    message: email.message.Message | email.message.EmailMessage | str | bytes,
    /,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    mail_options: Iterable[str] | None = None,
    rcpt_options: Iterable[str] | None = None,
    **client_options: Any,
) -> tuple[dict[str, SMTPResponse], str]:
    """Connect, send one message, and QUIT.

    ``message`` is an ``email.message.Message`` (sender and recipients default to its
    headers) or raw ``str``/``bytes`` (``sender`` and ``recipients`` required).
    ``client_options`` are :class:`SMTP`'s keyword arguments (``hostname``, ``port``,
    ``username``, ``password``, ``use_tls``, ``start_tls``, ``timeout``, ...).
    Returns ``(refused recipients, final reply text)``.
    """
    client_options.setdefault("hostname", "localhost")
    return await send_with(
        SMTP(**client_options),
        message,
        sender=sender,
        recipients=recipients,
        mail_options=mail_options,
        rcpt_options=rcpt_options,
    )
