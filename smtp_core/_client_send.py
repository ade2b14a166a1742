"""The client's sending: ``sendmail``, ``send_message``, ``send_messages`` and their typed
forms. Every message is checked whole before any byte of it is sent, then joins the
connection's mail pipeline, where concurrent calls share round trips."""

from __future__ import annotations

import contextvars
import email.message
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._client_auth import AuthMixin
from ._client_session import Timeout, response
from ._client_turns import _is_open, _submit
from ._commands import Mail, Rcpt
from ._connection import ClientConnection
from ._email import prepare_message
from ._exceptions import (
    SMTPException,
    SMTPNotSupported,
    SMTPReadTimeoutError,
    SMTPSenderRefused,
    SMTPTimeoutError,
    SMTPUTF8NotSupported,
)
from ._extensions import DSN, priority_parameter
from ._native import caused_by, mypyc_attr
from ._outcome import Outcome
from ._response import SMTPResponse, _default
from ._transaction import (
    Envelope,
    ProgressCallback,
    TransactionResult,
    content_size,
    content_total,
)

__all__ = ["SendingMixin", "prepare_envelope", "call_deadline"]

#: Seconds left of the deadline of a whole call this message is part of (a pool's
#: ``timeout``, set around each attempt): its total deadline is at most that.
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "smtp_sansio_call_deadline", default=None
)


@mypyc_attr(allow_interpreted_subclasses=True)
class SendingMixin(AuthMixin):
    """aiosmtplib's sending methods, plus typed results and batches."""

    async def sendmail(
        self,
        sender: object,
        recipients: str | Sequence[str],
        message: str | bytes | Any,
        /,
        *,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: Timeout = _default,
        dsn: DSN | None = None,
        require_tls: object = False,
        priority: object = None,
        progress: ProgressCallback | None = None,
    ) -> tuple[dict[str, SMTPResponse], str]:
        """Send ``message`` from ``sender`` to ``recipients`` in one mail transaction.

        ``message`` is ``str`` (ASCII), ``bytes``, a binary file object, or an iterable or
        async iterable of ``bytes`` chunks; content is streamed and encoded chunk by
        chunk, so memory stays bounded whatever its size.

        Returns ``(refused, text)``: the recipients the server refused, each with its
        reply, and the text of the server's final reply. Every address is validated
        before any byte is sent. With PIPELINING, MAIL, RCPT and DATA go in one write,
        and concurrent calls on one client are pipelined back to back; each returns
        when its own message's final reply arrives.

        Raises ``SMTPSenderRefused``, ``SMTPRecipientsRefused`` (all refused) or
        ``SMTPDataError``. When the connection fails under the message, the exception's
        ``outcome`` says whether it was never sent or its fate is unknown.

        ``mail_options`` and ``rcpt_options`` go to the server as written (checked for
        syntax, CR, LF and NUL); the server answers them. Extensions, as typed options
        checked against what the server offers: ``dsn`` (a :class:`~smtp_core.DSN`: RET,
        ENVID, and NOTIFY and ORCPT per recipient; ``SMTPNotSupported`` without the
        server's DSN), ``require_tls`` (RFC 8689 REQUIRETLS: fails unless the server
        offers it over TLS) and ``priority`` (RFC 6710 MT-PRIORITY, -9 to 9; sent only
        when offered). ``progress(sent, total)`` is called as the content goes out
        (``total`` is None when the size cannot be known in advance).
        """
        outcome = await _sendmail_outcome(
            self,
            sender,
            recipients,
            message,
            mail_options,
            rcpt_options,
            timeout,
            _Extensions(dsn, require_tls, priority)
            if dsn is not None or require_tls or priority is not None
            else None,
            progress,
        )
        return _sendmail_result(outcome)

    async def sendmail_detailed(
        self,
        sender: object,
        recipients: str | Sequence[str],
        message: str | bytes | Any,
        /,
        *,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: Timeout = _default,
        dsn: DSN | None = None,
        require_tls: object = False,
        priority: object = None,
        progress: ProgressCallback | None = None,
    ) -> TransactionResult:
        """Like :meth:`sendmail`, but return a typed result instead of raising on refusals.

        The :class:`~smtp_core.flows.TransactionResult` holds the MAIL reply, each
        recipient's RCPT reply (code, enhanced status code, text) and, on an LMTP
        client, each recipient's delivery reply (``result.recipients``), the final reply,
        and ``result.error``: the refusal ``sendmail`` would have raised, or None.
        Connection failures (timeouts, disconnects) still raise, with ``outcome``.
        """
        outcome = await _sendmail_outcome(
            self,
            sender,
            recipients,
            message,
            mail_options,
            rcpt_options,
            timeout,
            _Extensions(dsn, require_tls, priority),
            progress,
        )
        return _detailed(outcome)

    async def send_message(
        self,
        message: email.message.Message | email.message.EmailMessage,
        /,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: Timeout = _default,
    ) -> tuple[dict[str, SMTPResponse], str]:
        """Send an ``email.message.Message``; sender and recipients default to its headers.

        Bcc and Resent-Bcc headers are not transmitted. SMTPUTF8 and BODY=8BITMIME are
        added when the addresses or the content need them.
        """
        prepared = await self._prepare_message(message, sender, recipients, mail_options, timeout)
        return await self.sendmail(
            prepared.sender,
            prepared.recipients,
            prepared.content,
            mail_options=prepared.mail_options,
            rcpt_options=rcpt_options,
            timeout=timeout,
        )

    async def send_message_detailed(
        self,
        message: email.message.Message | email.message.EmailMessage,
        /,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: Timeout = _default,
    ) -> TransactionResult:
        """Like :meth:`send_message`, returning the typed result (see :meth:`sendmail_detailed`)."""
        prepared = await self._prepare_message(message, sender, recipients, mail_options, timeout)
        return await self.sendmail_detailed(
            prepared.sender,
            prepared.recipients,
            prepared.content,
            mail_options=prepared.mail_options,
            rcpt_options=rcpt_options,
            timeout=timeout,
        )

    async def _prepare_message(
        self,
        message: email.message.Message,
        sender: str | None,
        recipients: str | Sequence[str] | None,
        mail_options: Iterable[str] | None,
        timeout: Timeout,
    ) -> Any:
        conn = await self._ensure_session(timeout)
        return prepare_message(
            message,
            sender=sender,
            recipients=recipients,
            mail_options=list(mail_options or ()),
            smtputf8_supported=conn.capabilities.smtputf8,
            eightbitmime_supported=conn.capabilities.eightbitmime,
        )

    async def send_messages(
        self,
        messages: Iterable[Any],
        /,
        *,
        timeout: Timeout = _default,
    ) -> list[tuple[dict[str, SMTPResponse], str] | SMTPException]:
        """Send many messages on this connection, pipelined back to back.

        Each item is an ``email.message.Message`` (envelope from its headers) or a
        ``(sender, recipients, content)`` tuple, where content is anything ``sendmail``
        takes. Returns one result per message, in order: ``(refused, text)`` as
        ``sendmail`` returns it, or the exception that message met (a refusal does not
        stop the others; a broken connection tells each message still unanswered
        whether it was never sent or its fate is unknown). Arguments are all validated
        before anything is sent.
        """
        conn = await self._ensure_session(timeout)
        envelopes = []
        # As the caller gave them (compiled code would check the types of a message's).
        sender: Any
        recipients: Any
        content: Any
        mail_options: Any
        for item in messages:
            if isinstance(item, email.message.Message):
                prepared = prepare_message(
                    item,
                    smtputf8_supported=conn.capabilities.smtputf8,
                    eightbitmime_supported=conn.capabilities.eightbitmime,
                )
                sender, recipients, content = prepared.sender, prepared.recipients, prepared.content
                mail_options = prepared.mail_options
            else:
                sender, recipients, content = item
                mail_options = []
            recipients = [recipients] if isinstance(recipients, str) else list(recipients)
            if not recipients:
                raise ValueError("No recipients given")
            mail = Mail(sender, tuple(mail_options), advertised_only=False)
            rcpts = [Rcpt(rcpt, advertised_only=False) for rcpt in recipients]
            if isinstance(content, str):
                content = content.encode("ascii")
            envelopes.append(prepare_envelope(conn, mail, rcpts, content, None))
        outcomes = await self._submit(envelopes, timeout)
        results: list[tuple[dict[str, SMTPResponse], str] | SMTPException] = []
        for outcome in outcomes:
            try:
                results.append(_sendmail_result(outcome))
            except SMTPException as exc:
                results.append(exc)
        return results

    async def _ensure_session(self, timeout: Timeout) -> ClientConnection:
        """Connect on first use (as aiosmtplib 1.0 programs expect) and say EHLO once."""
        if self._transport is None or self.is_ehlo_or_helo_needed:
            async with self._turn():
                if not self._open() and self._transport is None and self._conn is None:
                    await self.connect()
                await self._ehlo_or_helo_if_needed(timeout)
        return self._require_connection()


async def _sendmail_outcome(
    client: SendingMixin,
    sender: object,
    recipients: str | Sequence[str],
    message: Any,
    mail_options: Iterable[str] | None,
    rcpt_options: Iterable[str] | None,
    timeout: Timeout,
    extensions: _Extensions | None = None,
    progress: ProgressCallback | None = None,
) -> Any:
    # Validate everything before any byte is sent (and before connecting).
    # Any: the commands refuse what is not a str (compiled code would check list[str]).
    recipients_list: list[Any] = (
        [recipients] if isinstance(recipients, str) else list(recipients)
    )
    mail: Mail = _command(Mail, sender, tuple(mail_options or ()))
    rcpt_opts = tuple(rcpt_options or ())
    rcpts: list[Rcpt] = [_command(Rcpt, rcpt, rcpt_opts) for rcpt in recipients_list]
    if not recipients_list:
        raise ValueError("No recipients given")
    content: Any = message.encode("ascii") if isinstance(message, str) else message

    total = client.timeouts.total
    left = call_deadline.get()
    if left is not None and (total is None or left < total):
        total = left
    if total is None:
        return await _send_one(
            client, mail, rcpts, content, extensions, progress, timeout, False, None
        )
    # The message's own deadline can only pass after the total one (it starts later,
    # and only stage limits shorten it): the total one alone bounds the pipeline.
    stage = client._timeout(timeout)
    covered = (
        (stage is None or stage >= total)
        and client.timeouts.command is None
        and client.timeouts.data is None
    )
    prepared: list[Envelope] = []

    def now(restart: Callable[[float | None], None]) -> Awaitable[Any]:
        return _send_one(
            client, mail, rcpts, content, extensions, progress, timeout, covered, prepared
        )

    try:
        return await client._within(total, now)
    except SMTPTimeoutError as exc:
        op = prepared[0].context if prepared else None
        fate = getattr(op.outcome, "outcome", None) if op is not None and op.done else None
        if fate is Outcome.DONE and op is not None:
            return op.outcome  # the server answered it as the deadline passed
        timed_out = SMTPReadTimeoutError(
            f"Timed out: the message was not sent within its total deadline ({total} s)"
        )
        # Once the pipeline took the message it goes on without this caller, and its
        # content may still go out, unless the session ended with it (fate known).
        if fate is None:
            fate = Outcome.UNKNOWN if op is not None else Outcome.NEVER_SENT
        timed_out.outcome = fate
        timed_out.content_started = bool(prepared) and prepared[0].content_sent
        raise caused_by(timed_out, exc)  # noqa: B904 - mypyc ignores ``from``


async def _send_one(
    client: SendingMixin,
    mail: Mail,
    rcpts: list[Rcpt],
    content: Any,
    extensions: _Extensions | None,
    progress: ProgressCallback | None,
    timeout: Timeout,
    covered: bool,
    prepared: list[Envelope] | None,
) -> Any:
    """Connect if needed, check the envelope against the session, send it: its
    outcome. ``prepared`` (when given) is told the envelope once it is built."""
    conn = client._conn
    if conn is None or not _is_open(client) or client.is_ehlo_or_helo_needed:
        conn = await client._ensure_session(timeout)
    envelope = prepare_envelope(conn, mail, rcpts, content, extensions)
    envelope.progress = progress
    if prepared is not None:
        prepared.append(envelope)
    [outcome] = await _submit(client, [envelope], timeout, covered)
    return outcome


# The commands of recent envelopes: a program sending many messages repeats the same
# few senders and recipients, and commands are immutable. Plain str arguments only (a
# str subclass is validated, and sent, as its characters each time).
_COMMANDS: dict[tuple[type, str, tuple[str, ...]], Any] = {}
_COMMANDS_MAX = 1024


def _command(cls: type[Mail | Rcpt], address: Any, options: tuple[Any, ...]) -> Any:
    """``cls(address, options)`` sent as given (``advertised_only=False``), validated once."""
    if type(address) is not str or (options and any(type(o) is not str for o in options)):
        return cls(address, options, advertised_only=False)
    key = (cls, address, options)
    command = _COMMANDS.get(key)
    if command is None:
        command = cls(address, options, advertised_only=False)
        if len(_COMMANDS) >= _COMMANDS_MAX:
            _COMMANDS.clear()
        _COMMANDS[key] = command
    return command


def prepare_envelope(
    conn: ClientConnection,
    mail: Mail,
    rcpts: list[Rcpt],
    content: Any,
    extensions: _Extensions | None,
) -> Envelope:
    """Everything checked before any byte of the message is sent.

    ``mail`` and ``rcpts`` were built (so validated) from the caller's arguments;
    typed extensions and the options the server needs (SMTPUTF8, SIZE, BODY) are
    added here. The commands built here are the ones sent, whatever the path.
    """
    caps = conn.capabilities
    sender = mail.sender
    if extensions is not None and extensions.used:
        mail_extra, per_rcpt = extensions.parameters(conn)
        mail = mail.with_parameters([*mail.parameters, *mail_extra])
        rcpts = [
            Rcpt(
                rcpt.recipient,
                (*rcpt.parameters, *per_rcpt(rcpt.recipient)),
                advertised_only=False,
            )
            for rcpt in rcpts
        ]
    recipients = [rcpt.recipient for rcpt in rcpts]
    if (
        not mail.parameters
        and sender.isascii()
        and all(r.isascii() for r in recipients)
        and "SIZE" not in caps
        and "BINARYMIME" not in caps
    ):
        # The usual case: nothing to add, nothing to check against the server.
        return Envelope(sender, recipients, content, commands=[mail, *rcpts])
    mail_options = list(mail.parameters)
    utf8 = any(opt.lower() == "smtputf8" for opt in mail_options)
    non_ascii = next((a for a in (sender, *recipients) if not a.isascii()), None)
    if utf8 and not caps.smtputf8:
        raise SMTPNotSupported("SMTPUTF8 is not supported by this server")
    if non_ascii is not None and not caps.smtputf8:
        raise SMTPUTF8NotSupported(
            non_ascii,
            f"address {non_ascii!r} contains non-ASCII characters, but SMTPUTF8 is not "
            "supported by this server",
        )
    if non_ascii is not None and not utf8:
        mail_options.append("SMTPUTF8")
    bdat = caps.chunking and not conn.lmtp
    if "SIZE" in caps and isinstance(content, (bytes, bytearray, memoryview)):
        size = content_size(bytes(content), bdat=bdat)
        limit = caps.size
        if limit is not None and size > limit:
            raise SMTPSenderRefused(
                552,
                f"Message size ({size} bytes) exceeds the server's limit of {limit} bytes (SIZE)",
                sender,
            )
        if not any(opt.lower().startswith("size=") for opt in mail_options):
            mail_options.insert(0, f"SIZE={size}")
    elif "SIZE" in caps and caps.size is not None:
        # A file: its length on disk is a lower bound of the size sent (line-ending
        # normalisation only adds bytes), enough to refuse before streaming it.
        at_least = content_total(content)
        if at_least is not None and at_least > caps.size:
            raise SMTPSenderRefused(
                552,
                f"Message size (at least {at_least} bytes) exceeds the server's limit "
                f"of {caps.size} bytes (SIZE)",
                sender,
            )
    if (
        "BINARYMIME" in caps
        and "CHUNKING" in caps
        and isinstance(content, (bytes, bytearray, memoryview))
        and not any(opt.lower().startswith("body=") for opt in mail_options)
        and _needs_binarymime(bytes(content))
    ):
        # Content that is not 7bit/8bit-safe goes as BINARYMIME with BDAT, unaltered.
        mail_options.append("BODY=BINARYMIME")
    if mail_options != list(mail.parameters):
        mail = mail.with_parameters(mail_options)
    return Envelope(sender, recipients, content, commands=[mail, *rcpts])


@dataclass
class _Extensions:
    """The typed extension options of one ``sendmail`` call."""

    dsn: DSN | None
    require_tls: Any  # as the caller gave them: checked here, as in pure Python
    priority: Any

    def __post_init__(self) -> None:
        if self.priority is not None:
            priority_parameter(self.priority)  # validates

    @property
    def used(self) -> bool:
        return self.dsn is not None or bool(self.require_tls) or self.priority is not None

    def parameters(self, conn: ClientConnection) -> tuple[list[str], Callable[[str], list[str]]]:
        """MAIL parameters and a per-recipient RCPT parameter function, for this server."""
        caps = conn.capabilities
        mail: list[str] = []
        if self.require_tls:
            if "REQUIRETLS" not in caps or not conn.tls_active:
                raise SMTPNotSupported(
                    "REQUIRETLS was requested, but the server does not offer it over TLS"
                )
            mail.append("REQUIRETLS")
        if self.priority is not None and "MT-PRIORITY" in caps:
            mail.append(priority_parameter(self.priority))
        dsn = self.dsn
        if dsn is None:
            return mail, lambda recipient: []
        if "DSN" not in caps:
            raise SMTPNotSupported("DSN is not supported by this server")
        return [*mail, *dsn.mail_parameters()], dsn.rcpt_parameters


def _needs_binarymime(data: bytes) -> bool:
    """True for content that 7bit/8bit SMTP cannot carry: NUL bytes or lines over 998 octets."""
    if data.find(b"\0") >= 0:
        return True
    return any(len(line) > 999 for line in data.split(b"\n"))


def _sendmail_result(outcome: Any) -> tuple[dict[str, SMTPResponse], str]:
    """aiosmtplib's ``sendmail`` result from a message's outcome (raising a failure)."""
    if isinstance(outcome, BaseException):
        raise outcome
    assert isinstance(outcome, TransactionResult) and outcome.data_reply is not None
    refused = {rcpt: response(reply) for rcpt, reply in outcome.refused.items()}
    return refused, outcome.data_reply.message


def _detailed(outcome: Any) -> TransactionResult:
    """The typed result: refusals come with one; connection failures raise."""
    if isinstance(outcome, TransactionResult):
        return outcome
    result = getattr(outcome, "result", None)
    if isinstance(result, TransactionResult):
        return result
    raise outcome
