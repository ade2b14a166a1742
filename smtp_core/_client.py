"""The caller-facing SMTP client API, written once for every adapter.

:class:`SMTPClientBase` implements aiosmtplib's ``SMTP`` class (arguments, checks,
results, exceptions and their messages) on top of the I/O-free flows. Its rooms:

* :mod:`._client_session`: configuration, connecting, turns on the connection, the
  trampoline that drives flows (aiosmtplib's ``smtp`` and ``protocol`` modules);
* :mod:`._client_commands`: the plain commands (EHLO, NOOP, VRFY, MAIL, ...);
* :mod:`._client_auth`: ``login()`` and the SASL mechanisms (aiosmtplib's ``auth``);
* :mod:`._client_send`: ``sendmail``, ``send_message``, batches;
* here: the blocking wrappers and the module-level ``send()``.

An adapter subclasses it and supplies only I/O: opening a transport, a deadline, TLS,
an event. No SMTP verb or reply code is needed in an adapter.
"""

from __future__ import annotations

import abc
import email.message
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from ._client_send import SendingMixin
from ._client_session import (
    DEFAULT_TIMEOUT,
    SMTP_PORT,
    SMTP_STARTTLS_PORT,
    SMTP_TLS_PORT,
    ConnectOptions,
    Timeouts,
    Transport,
    validate_local_hostname,
)
from ._native import mypyc_attr
from ._response import SMTPResponse

__all__ = [
    "SMTPClientBase",
    "Transport",
    "ConnectOptions",
    "Timeouts",
    "SMTP_PORT",
    "SMTP_TLS_PORT",
    "SMTP_STARTTLS_PORT",
    "DEFAULT_TIMEOUT",
    "validate_local_hostname",
    "send_with",
    "make_send",
]

T = TypeVar("T")


@mypyc_attr(allow_interpreted_subclasses=True)
class SMTPClientBase(SendingMixin):
    """An SMTP client with aiosmtplib's API. Adapters provide the I/O.

    Arguments are aiosmtplib's: connection options given here are defaults that
    :meth:`connect` may override. ``hostname`` and ``port`` may also be given
    positionally, as in aiosmtplib 1.0. ``loop`` is accepted for aiosmtplib 1.0
    programs, ignored, and warns ``DeprecationWarning``. Besides: ``timeouts``
    (:class:`Timeouts`, limits per stage and per message) and ``pipeline_window`` (most
    whole transactions on the wire at once with PIPELINING and CHUNKING, 16).

    Every method may be called by many tasks at once: commands take turns in call
    order, messages are pipelined, and nested or concurrent ``async with client``
    blocks share one session (the last one out sends QUIT).
    """

    @abc.abstractmethod
    def _run_blocking(self, main: Callable[[], Awaitable[T]]) -> T:
        """Run ``main()`` to completion in a fresh event loop of the adapter's kind."""

    def sendmail_sync(self, *args: Any, **kwargs: Any) -> tuple[dict[str, SMTPResponse], str]:
        """Blocking :meth:`sendmail`: connect, send, QUIT, in a fresh event loop."""

        async def main() -> tuple[dict[str, SMTPResponse], str]:
            return await in_session(self, lambda: self.sendmail(*args, **kwargs))

        return self._run_blocking(main)

    def send_message_sync(self, *args: Any, **kwargs: Any) -> tuple[dict[str, SMTPResponse], str]:
        """Blocking :meth:`send_message`: connect, send, QUIT, in a fresh event loop."""

        async def main() -> tuple[dict[str, SMTPResponse], str]:
            return await in_session(self, lambda: self.send_message(*args, **kwargs))

        return self._run_blocking(main)


def make_send(
    client_class: Callable[..., SMTPClientBase],
) -> Callable[..., Awaitable[tuple[dict[str, SMTPResponse], str]]]:
    """The module-level ``send()`` of an adapter, for its client class."""

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

        ``message`` is an ``email.message.Message`` (sender and recipients default to
        its headers) or raw ``str``/``bytes`` (``sender`` and ``recipients`` required).
        ``client_options`` are the client's keyword arguments (``hostname``, ``port``,
        ``username``, ``password``, ``use_tls``, ``start_tls``, ``timeout``, ...).
        Returns ``(refused recipients, final reply text)``.
        """
        client_options.setdefault("hostname", "localhost")
        return await send_with(
            client_class(**client_options),
            message,
            sender=sender,
            recipients=recipients,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
        )

    return send


async def send_with(
    client: SMTPClientBase,
    message: email.message.Message | email.message.EmailMessage | str | bytes,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    mail_options: Iterable[str] | None = None,
    rcpt_options: Iterable[str] | None = None,
) -> tuple[dict[str, SMTPResponse], str]:
    """The body of the module-level ``send()``: connect, send one message, QUIT."""
    if isinstance(message, (str, bytes)):
        if not recipients:
            raise ValueError("Recipients must be provided with raw messages.")
        if not sender:
            raise ValueError("Sender must be provided with raw messages.")

    async def one() -> tuple[dict[str, SMTPResponse], str]:
        # One message, then QUIT: with PIPELINING, QUIT rides with the end of data.
        client._quit_after_next = True
        if isinstance(message, (str, bytes)):
            assert sender is not None and recipients is not None
            return await client.sendmail(
                sender, recipients, message, mail_options=mail_options, rcpt_options=rcpt_options
            )
        return await client.send_message(
            message,
            sender=sender,
            recipients=recipients,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
        )

    return await in_session(client, one)


async def in_session(client: SMTPClientBase, call: Callable[[], Awaitable[T]]) -> T:
    """``async with client: return await call()``, written out so that the session's
    exit (QUIT, closing) is not awaited inside an exception handler (see
    :mod:`smtp_core._native`)."""
    await client.__aenter__()
    try:
        result = await call()
    except BaseException as exc:
        failure = exc
    else:
        await client.__aexit__(None, None, None)
        return result
    await client.__aexit__(type(failure), failure, failure.__traceback__)  # never suppresses
    raise failure
