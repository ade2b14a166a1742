"""One message's way through ``sendmail``: its envelope checked and prepared, the
call's deadline, the mail pipeline, and its outcome as smtplib's return value.

The client's methods (``_sending``) only call these functions: this module is
compiled in the compiled build, while the classes users subclass (and whose class
attributes ``LMTP`` overrides) stay Python.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import smtp_core
from smtp_core import ClientConnection, Mail, Rcpt
from smtp_core._client_send import _command, prepare_envelope
from smtp_core._native import caused_by
from smtp_core.flows import Envelope, TransactionResult

from ._exceptions import SMTPRecipientsRefused, SMTPTimeoutError, _carry, as_bytes, convert
from ._turns import call_deadline

__all__ = ["envelope", "send_detailed", "refused_or_raise"]


def envelope(
    conn: ClientConnection,
    sender: str,
    recipients: list[str],
    content: Any,
    mail_options: Sequence[str],
    rcpt_options: Sequence[str],
) -> Envelope:
    """The message's commands built (so validated) and its envelope prepared exactly
    as the asyncio and anyio clients prepare it: SIZE checked and added, SMTPUTF8 and
    BODY=BINARYMIME when needed."""
    if not recipients:
        raise SMTPRecipientsRefused({})
    # Built and validated once per sender or recipient and options: a program sending
    # many messages repeats the same few (the asyncio and anyio clients share the cache).
    mail: Mail = _command(Mail, sender, tuple(mail_options))
    options = tuple(rcpt_options)
    rcpts: list[Rcpt] = []
    for recipient in recipients:
        rcpts.append(_command(Rcpt, recipient, options))
    try:
        return prepare_envelope(conn, mail, rcpts, content, None)
    except smtp_core.SMTPException as exc:
        raise caused_by(convert(exc), None)  # noqa: B904 - mypyc ignores ``from``


def send_detailed(
    client: Any,
    from_addr: str,
    to_addrs: str | Sequence[str],
    msg: Any,
    mail_options: Sequence[str],
    rcpt_options: Sequence[str],
    progress: Callable[[int, int | None], None] | None,
) -> TransactionResult:
    """``client.sendmail_detailed``: one message through the client's pipeline."""
    recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
    content: Any = msg.encode("ascii") if isinstance(msg, str) else msg
    total = client.timeouts.total
    deadline = None if total is None else time.monotonic() + total
    outer = call_deadline.get()  # the deadline of a call this one is part of (a pool's)
    if outer is not None and (deadline is None or outer < deadline):
        deadline, total = outer, None
    # The total bounds the whole call: EHLO first, and waiting for other threads.
    token = call_deadline.set(deadline)
    try:
        client.ehlo_or_helo_if_needed()
        channel = client._channel
        if channel is None or channel.closed:
            channel = client._require()  # raises: not connected
        if not client.does_esmtp:
            mail_options, rcpt_options = (), ()  # as smtplib: HELO takes none
        prepared = envelope(
            channel.conn, from_addr, recipients, content, mail_options, rcpt_options
        )
        prepared.progress = progress
        [outcome] = client._submit([prepared], deadline)
    finally:
        call_deadline.reset(token)
    if isinstance(outcome, TransactionResult):
        return outcome
    exc = convert(outcome)
    late = deadline is not None and time.monotonic() >= deadline
    if isinstance(exc, SMTPTimeoutError) and late:
        # Say which limit it was: the whole call's, not one reply's.
        within = "the call's deadline" if total is None else f"its total deadline ({total} s)"
        exc = _carry(
            SMTPTimeoutError(f"Timed out: the message was not sent within {within}"), exc
        )
    result = getattr(exc, "result", None)
    if isinstance(result, TransactionResult) and isinstance(exc, Exception):
        result.error = exc  # a refusal: the typed result tells it
        return result
    raise exc


def refused_or_raise(result: TransactionResult) -> dict[str, tuple[int, bytes]]:
    """smtplib's return value for one message: its refusal raised, else the refused dict."""
    error = result.error
    if error is not None:
        raise error
    refused = result.refused
    if not refused:
        return {}
    return {rcpt: (reply.code, as_bytes(reply.message)) for rcpt, reply in refused.items()}
