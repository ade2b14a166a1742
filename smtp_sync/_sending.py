"""The client's sending: ``sendmail``, ``send_message`` and ``send_messages``, each
message checked whole before any byte of it is sent, then through the mail pipeline."""

from __future__ import annotations

import email.message
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import smtp_core
from smtp_core import ClientConnection
from smtp_core._email import prepare_message
from smtp_core.flows import TransactionResult

from ._auth import AuthMixin
from ._exceptions import SMTPException, convert
from ._send import envelope, refused_or_raise, send_detailed
from ._session import Message, Refused, _reply
from ._turns import call_deadline

__all__ = ["SendingMixin"]


class SendingMixin(AuthMixin):
    """smtplib's sending methods, plus typed results, streaming and batches."""

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: str | bytes | Any,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        *,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Refused:
        """Send one message; returns the refused recipients ``{address: (code, message)}``.

        ``msg`` is ``str`` (ASCII), ``bytes``, a binary file or an iterable of ``bytes``;
        it is streamed chunk by chunk. With PIPELINING, MAIL, every RCPT and DATA go in
        one write (with CHUNKING, BDAT replaces DATA). Raises ``SMTPSenderRefused``,
        ``SMTPRecipientsRefused`` (every recipient refused, or on LMTP not delivered) or
        ``SMTPDataError``, each after RSET; the connection stays usable.
        """
        return refused_or_raise(
            send_detailed(self, from_addr, to_addrs, msg, mail_options, rcpt_options, progress)
        )

    def sendmail_detailed(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: str | bytes | Any,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        *,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> TransactionResult:
        """Like :meth:`sendmail`, returning the typed :class:`smtp_core.flows.TransactionResult`
        (per-recipient replies, LMTP delivery replies); refusals in ``result.error``."""
        return send_detailed(
            self, from_addr, to_addrs, msg, mail_options, rcpt_options, progress
        )

    def _envelope(
        self,
        conn: ClientConnection,
        sender: str,
        recipients: list[str],
        content: Any,
        mail_options: Sequence[str],
        rcpt_options: Sequence[str],
    ) -> Any:
        return envelope(conn, sender, recipients, content, mail_options, rcpt_options)

    def send_message(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> Refused:
        """Send an ``email.message.Message``; sender and recipients default to its headers.

        Bcc and Resent-Bcc are not transmitted; SMTPUTF8 is used for non-ASCII addresses
        (``SMTPNotSupportedError`` if the server lacks it) and BODY=8BITMIME for 8-bit
        content when offered.
        """
        return refused_or_raise(
            self.send_message_detailed(msg, from_addr, to_addrs, mail_options, rcpt_options)
        )

    def send_message_detailed(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> TransactionResult:
        """Like :meth:`send_message`, returning the typed
        :class:`smtp_core.flows.TransactionResult` (refusals in ``result.error``)."""
        self.ehlo_or_helo_if_needed()
        prepared = self._prepare(msg, from_addr, to_addrs, mail_options)
        return self.sendmail_detailed(
            prepared.sender, prepared.recipients, prepared.content,
            prepared.mail_options, rcpt_options,
        )

    def _prepare(
        self,
        msg: Message,
        from_addr: str | None,
        to_addrs: str | Sequence[str] | None,
        mail_options: Sequence[str] = (),
    ) -> Any:
        try:
            return prepare_message(
                msg,
                sender=from_addr,
                recipients=to_addrs,
                mail_options=list(mail_options),
                smtputf8_supported=self.has_extn("smtputf8"),
                eightbitmime_supported=self.has_extn("8bitmime"),
            )
        except smtp_core.SMTPException as exc:
            raise convert(exc) from None

    def send_messages(
        self, messages: Iterable[Message | tuple[str, str | Sequence[str], Any]]
    ) -> list[Refused | SMTPException]:
        """Send many messages pipelined back to back on this connection.

        Each item is an ``email.message.Message`` or a ``(from_addr, to_addrs, msg)``
        tuple. Returns one result per message, in order: the refused-recipients dict, or
        the exception that message met (a refusal does not stop the others; after a
        broken connection each unanswered message's ``outcome`` says whether it was
        never sent or its fate is unknown).
        """
        return [
            outcome
            if isinstance(outcome, SMTPException)
            else {r: _reply(reply) for r, reply in outcome.refused.items()}
            for outcome in self.send_messages_detailed(messages)
        ]

    def send_messages_detailed(
        self, messages: Iterable[Message | tuple[str, str | Sequence[str], Any]]
    ) -> list[TransactionResult | SMTPException]:
        """Like :meth:`send_messages`, with each accepted message's typed
        :class:`smtp_core.flows.TransactionResult` (its final reply, the queue id a
        server gives, in ``data_reply``) instead of the refused dict."""
        self.ehlo_or_helo_if_needed()
        channel = self._require()
        envelopes = []
        for item in messages:
            if isinstance(item, email.message.Message):
                prepared = self._prepare(item, None, None)
                sender, recipients = prepared.sender, prepared.recipients
                content, options = prepared.content, prepared.mail_options
            else:
                sender, recipients, content = item
                options = []
            recipients = [recipients] if isinstance(recipients, str) else list(recipients)
            if isinstance(content, str):
                content = content.encode("ascii")
            envelopes.append(
                self._envelope(channel.conn, sender, recipients, content, options, ())
            )
        results: list[TransactionResult | SMTPException] = []
        for outcome in self._submit(envelopes, call_deadline.get()):
            if isinstance(outcome, TransactionResult):
                results.append(outcome)
            else:
                converted = convert(outcome)
                assert isinstance(converted, SMTPException)
                results.append(converted)
        return results

