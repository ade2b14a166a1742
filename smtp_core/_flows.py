"""The multi-step SMTP flows, written once and free of I/O.

Each flow is a plain generator: it yields I/O requests and returns its result.

* :class:`Write` - write ``data`` to the transport; the adapter sends back None.
* :data:`READ` (a :class:`Read`) - read some bytes; the adapter sends back the bytes,
  or ``b""`` when the server closed the connection.
* :class:`UpgradeTLS` - start TLS on the transport (STARTTLS); the adapter sends back
  None once the handshake is complete.
* :class:`NextChunk` - only for content given as an async iterable: the adapter awaits
  the next chunk and sends it back (None at the end).
* :class:`Stage` - the flow enters the ``"command"`` or ``"data"`` stage, which may
  have its own time limit; the adapter sends back None (or ignores it).
* :data:`PROGRESS` - a message of a batch is done (a per-message deadline may restart);
  the adapter sends back None. Drivers that have no deadline can ignore it.

An adapter drives a flow with a small trampoline::

    def drive(flow):
        value = None
        while True:
            try:
                request = flow.send(value)
            except StopIteration as stop:
                return stop.value
            if isinstance(request, Write):
                sock.sendall(request.data); value = None
            elif isinstance(request, Read):
                value = sock.recv(65536)
            else:  # UpgradeTLS
                sock = context.wrap_socket(sock, server_hostname=request.server_hostname)
                value = None

Flows raise the aiosmtplib-compatible exceptions of :mod:`smtp_core` for refusals
(``SMTPSenderRefused``, ``SMTPRecipientsRefused``, ``SMTPDataError``, ...),
``SMTPServerDisconnected`` when the server closes the connection, and
:class:`ProtocolError` for protocol violations. Every line sent and received is
logged at DEBUG level on the ``smtp_sansio.protocol`` logger as ``C: ...`` and
``S: ...``, with credentials redacted.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._commands import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    Ehlo,
    Helo,
    Lhlo,
    Mail,
    Quit,
    Rcpt,
    Rset,
    StartTLS,
)
from ._connection import ClientConnection
from ._events import NEED_DATA, CommandReply, ConnectionClosed, Content, EndOfData, Greeting
from ._exceptions import (
    SMTPConnectResponseError,
    SMTPDataError,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from ._replies import EnhancedStatusCode, Reply
from ._sasl import SASLMechanism, decode_challenge
from ._state import State

__all__ = [
    "Write",
    "Read",
    "READ",
    "UpgradeTLS",
    "NextChunk",
    "Stage",
    "COMMAND_STAGE",
    "DATA_STAGE",
    "Progress",
    "PROGRESS",
    "Request",
    "Envelope",
    "mail_batch",
    "Flow",
    "TransactionResult",
    "RecipientResult",
    "lhlo",
    "trace_logger",
    "read_reply",
    "send",
    "command",
    "greeting",
    "ehlo",
    "helo",
    "hello",
    "starttls",
    "authenticate",
    "mail_transaction",
    "data_flow",
    "quit",
    "content_size",
]

trace_logger = logging.getLogger("smtp_sansio.protocol")
"""The protocol trace: DEBUG records ``C: <line>`` and ``S: <line>``."""

CONTENT_WRITE_SIZE = 256 * 1024
"""Message content is written in pieces of about this many bytes."""


@dataclass(frozen=True, slots=True)
class Write:
    """Request: write these bytes."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Read:
    """Request: read some bytes (``b""`` at end of stream)."""


READ = Read()


@dataclass(frozen=True, slots=True)
class UpgradeTLS:
    """Request: start TLS on the transport, checking ``server_hostname``."""

    server_hostname: str | None


@dataclass(frozen=True, slots=True)
class NextChunk:
    """Request: the next chunk of an async iterable of message content (None at its end)."""

    source: Any


@dataclass(frozen=True, slots=True)
class Progress:
    """Request: one message of a batch is done; a per-message deadline may start again."""


PROGRESS = Progress()


@dataclass(frozen=True, slots=True)
class Stage:
    """Request: the flow enters a stage (``"command"`` or ``"data"``) that may have its
    own time limit; the adapter sends back None. Drivers without limits can ignore it."""

    name: str


COMMAND_STAGE = Stage("command")
DATA_STAGE = Stage("data")

Request = Write | Read | UpgradeTLS | NextChunk | Progress | Stage
T = TypeVar("T")
Flow = Generator[Request, Any, T]
"""A flow yields requests, receives their outcomes, and returns a ``T``."""


def _trace_reply(reply: Reply) -> None:
    if not trace_logger.isEnabledFor(logging.DEBUG):
        return
    last = len(reply.lines) - 1
    for index, line in enumerate(reply.lines):
        sep = " " if index == last else "-"
        trace_logger.debug("S: %d%s%s", reply.code, sep, line)


def _trace_sent(item: Command | Content | EndOfData) -> None:
    if not trace_logger.isEnabledFor(logging.DEBUG):
        return
    if isinstance(item, Content):
        trace_logger.debug("C: <%d bytes of message content>", len(item.data))
    else:
        trace_logger.debug("C: %s", item.trace())


def send(conn: ClientConnection, *items: Command | Content | EndOfData) -> Flow[None]:
    """Send ``items`` in one write."""
    data = [conn.send(item) for item in items]
    if trace_logger.isEnabledFor(logging.DEBUG):
        for item in items:
            _trace_sent(item)
    yield COMMAND_STAGE
    yield Write(b"".join(data))


def read_reply(conn: ClientConnection) -> Flow[Reply]:
    """Read the next reply (the greeting, or the reply to the oldest pending command).

    Raises ``SMTPServerDisconnected`` if the server closes the connection first.
    """
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            data = yield READ
            conn.receive_data(data)
            continue
        if isinstance(event, (Greeting, CommandReply)):
            _trace_reply(event.reply)
            return event.reply
        if isinstance(event, ConnectionClosed):
            trace_logger.debug("S: <connection closed>")
            raise SMTPServerDisconnected("Unexpected EOF received")
        raise AssertionError(f"unexpected event {event!r}")  # pragma: no cover


def command(conn: ClientConnection, cmd: Command) -> Flow[Reply]:
    """Send one command and return its reply."""
    yield from send(conn, cmd)
    return (yield from read_reply(conn))


def greeting(conn: ClientConnection) -> Flow[Reply]:
    """Read the greeting; a refusal raises ``SMTPConnectResponseError``."""
    reply = yield from read_reply(conn)
    if reply.code != 220:
        raise SMTPConnectResponseError(reply.code, reply.message)
    return reply


def ehlo(conn: ClientConnection, hostname: str | None = None) -> Flow[Reply]:
    """EHLO; a refusal raises ``SMTPHeloError``."""
    reply = yield from command(conn, Ehlo(hostname or conn.local_hostname))
    if reply.code != 250:
        raise SMTPHeloError(reply.code, reply.message)
    return reply


def helo(conn: ClientConnection, hostname: str | None = None) -> Flow[Reply]:
    """HELO; a refusal raises ``SMTPHeloError``."""
    reply = yield from command(conn, Helo(hostname or conn.local_hostname))
    if reply.code != 250:
        raise SMTPHeloError(reply.code, reply.message)
    return reply


def lhlo(conn: ClientConnection, hostname: str | None = None) -> Flow[Reply]:
    """LHLO (LMTP, RFC 2033); a refusal raises ``SMTPHeloError``."""
    reply = yield from command(conn, Lhlo(hostname or conn.local_hostname))
    if reply.code != 250:
        raise SMTPHeloError(reply.code, reply.message)
    return reply


def hello(conn: ClientConnection, hostname: str | None = None) -> Flow[Reply]:
    """EHLO, falling back to HELO when the server refuses EHLO (but not on 421).

    On an LMTP connection, LHLO (which has no fallback).
    """
    if conn.lmtp:
        return (yield from lhlo(conn, hostname))
    try:
        return (yield from ehlo(conn, hostname))
    except SMTPHeloError as exc:
        if exc.code == 421:
            raise
        return (yield from helo(conn, hostname))


def starttls(conn: ClientConnection, server_hostname: str | None) -> Flow[Reply]:
    """STARTTLS, then the TLS handshake; EHLO must follow (capabilities are cleared).

    A refusal raises ``SMTPResponseException``. Bytes the server sends after its 220
    and before the handshake raise ``RemoteProtocolError`` (response injection).
    """
    reply = yield from command(conn, StartTLS())
    if reply.code != 220:
        raise SMTPResponseException(reply.code, reply.message)
    yield UpgradeTLS(server_hostname)
    conn.tls_established()
    return reply


def authenticate(conn: ClientConnection, mechanism: SASLMechanism) -> Flow[Reply]:
    """Run one SASL exchange; return the final reply (success or failure: the caller decides).

    Challenges are answered by ``mechanism``; a challenge it cannot answer (or invalid
    base64) cancels the exchange with ``*`` and raises ``RemoteProtocolError``.
    """
    reply = yield from command(conn, Auth(mechanism.name, mechanism.initial_response()))
    while reply.code == 334:
        try:
            response = mechanism.respond(decode_challenge(reply.message))
        except Exception:
            # Cancel the exchange (RFC 4954 section 4) so the session stays in step.
            yield from command(conn, AuthResponse(cancel=True))
            raise
        reply = yield from command(conn, AuthResponse(response))
    if reply.code == 235:
        mechanism.check_success()
    return reply


def content_size(data: bytes) -> int:
    """Size of ``data`` once its line endings are normalised to CRLF (for SIZE=)."""
    crlf = data.count(b"\r\n")
    return len(data) + data.count(b"\n") + data.count(b"\r") - 2 * crlf


@dataclass
class TransactionResult:
    """What happened to one mail transaction."""

    sender: str
    mail_reply: Reply
    recipient_replies: dict[str, Reply] = field(default_factory=dict)
    data_reply: Reply | None = None
    delivery_replies: dict[str, Reply] = field(default_factory=dict)
    """LMTP: the reply for each accepted recipient after the content (RFC 2033)."""
    error: Exception | None = None
    """The refusal this transaction ended with, if any (also raised by ``sendmail``)."""

    @property
    def refused(self) -> dict[str, Reply]:
        """Recipients refused at RCPT or (LMTP) at delivery, with the refusing reply."""
        refused = {r: reply for r, reply in self.recipient_replies.items() if not reply.is_success}
        for rcpt, reply in self.delivery_replies.items():
            if not reply.is_success:
                refused[rcpt] = reply
        return refused

    @property
    def accepted(self) -> list[str]:
        """Recipients the server accepted at RCPT."""
        return [rcpt for rcpt, reply in self.recipient_replies.items() if reply.is_success]

    @property
    def delivered(self) -> list[str]:
        """Recipients the message was accepted for (after DATA, per recipient in LMTP)."""
        if self.delivery_replies:
            return [r for r, reply in self.delivery_replies.items() if reply.is_success]
        if self.data_reply is not None and self.data_reply.is_success:
            return self.accepted
        return []

    @property
    def recipients(self) -> list[RecipientResult]:
        """One typed result per recipient, in the order given."""
        return [
            RecipientResult(rcpt, reply, self.delivery_replies.get(rcpt))
            for rcpt, reply in self.recipient_replies.items()
        ]


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What happened to one recipient: its RCPT reply and, for LMTP, its delivery reply."""

    recipient: str
    rcpt_reply: Reply
    delivery_reply: Reply | None = None

    @property
    def reply(self) -> Reply:
        """The deciding reply: the refusal, else the delivery reply, else the RCPT reply."""
        if not self.rcpt_reply.is_success or self.delivery_reply is None:
            return self.rcpt_reply
        return self.delivery_reply

    @property
    def accepted(self) -> bool:
        """Accepted at RCPT and, if there was one, by its delivery reply."""
        return self.rcpt_reply.is_success and (
            self.delivery_reply is None or self.delivery_reply.is_success
        )

    @property
    def code(self) -> int:
        """The deciding reply's code."""
        return self.reply.code

    @property
    def enhanced_status(self) -> EnhancedStatusCode | None:
        """The deciding reply's RFC 3463 enhanced status code, if any."""
        return self.reply.enhanced_status

    @property
    def message(self) -> str:
        """The deciding reply's text."""
        return self.reply.message


def _closed(conn: ClientConnection) -> bool:
    return conn.state is State.CLOSED


def _reset_quietly(conn: ClientConnection) -> Flow[None]:
    """RSET after a failed transaction; its own failure is not reported (as aiosmtplib)."""
    if conn.state in (State.CLOSED, State.ERROR):
        return
    with contextlib.suppress(SMTPServerDisconnected):
        yield from command(conn, Rset())


MessageSource = Any
"""Message content: bytes, a binary file object, an iterable or an async iterable of bytes."""


class _ChunkSource:
    """Message content as a sequence of non-empty chunks, pulled one at a time."""

    def __init__(self, content: MessageSource) -> None:
        self.chunks: Iterator[Any] | None = None
        self.async_source: Any = None
        if isinstance(content, (bytes, bytearray, memoryview)):
            data = bytes(content)
            step = CONTENT_WRITE_SIZE
            self.chunks = iter([data[i : i + step] for i in range(0, len(data), step)])
        elif hasattr(content, "read"):
            self.chunks = iter(lambda: content.read(CONTENT_WRITE_SIZE), b"")
        elif hasattr(content, "__aiter__"):
            self.async_source = content.__aiter__()
        else:
            self.chunks = iter(content)

    def next(self) -> Flow[bytes | None]:
        """The next non-empty chunk, or None at the end."""
        while True:
            if self.chunks is None:
                chunk = yield NextChunk(self.async_source)
            else:
                chunk = next(self.chunks, None)
            if chunk is None:
                return None
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(f"message content chunks must be bytes, not {type(chunk).__name__}")
            if chunk:
                return bytes(chunk)


_PLAIN_FILES = (io.BufferedReader, io.BufferedRandom, io.FileIO)

ProgressCallback = Callable[[int, "int | None"], None]
"""Called as ``progress(bytes_sent, total_bytes_or_None)`` while content is sent."""


def content_total(content: MessageSource) -> int | None:
    """The content's size when it can be known without reading it.

    For a file, only a plain binary file counts: the size on disk of a wrapper (a
    gzip file, a spooled temporary file) says nothing of the bytes it yields.
    """
    if isinstance(content, (bytes, bytearray, memoryview)):
        return len(content)
    if type(content) in _PLAIN_FILES:
        try:
            return int(os.fstat(content.fileno()).st_size - content.tell())
        except (OSError, ValueError, AttributeError):
            return None
    return None


def _send_content(
    conn: ClientConnection,
    content: MessageSource,
    then: Sequence[Command] = (),
    progress: ProgressCallback | None = None,
) -> Flow[None]:
    """Send the content and its end, followed in the same write by ``then`` (pipelining).

    Content is encoded chunk by chunk, so memory stays bounded by the chunk size.
    ``progress`` hears how many bytes of the content were written so far.
    """
    source = _ChunkSource(content)
    total = content_total(content) if progress is not None else None
    yield DATA_STAGE
    pending: list[bytes] = []
    size = 0
    sent = 0
    while (chunk := (yield from source.next())) is not None:
        item = Content(chunk)
        pending.append(conn.send(item))
        _trace_sent(item)
        size += len(chunk)
        if size >= CONTENT_WRITE_SIZE:
            yield Write(b"".join(pending))
            sent += size
            pending, size = [], 0
            if progress is not None:
                progress(sent, total)
    pending.append(conn.send(EndOfData()))
    _trace_sent(EndOfData())
    for command in then:
        pending.append(conn.send(command))
        _trace_sent(command)
    yield Write(b"".join(pending))
    if progress is not None:
        progress(sent + size, total)


def _send_bdat(
    conn: ClientConnection,
    content: MessageSource,
    progress: ProgressCallback | None = None,
    envelope: Sequence[Command] = (),
) -> Flow[tuple[list[Reply], Reply]]:
    """Send the content as BDAT chunks (RFC 3030), preceded in the first write by
    ``envelope`` (MAIL and RCPTs, with PIPELINING).

    Returns the envelope's replies and the content's result: the final reply, or the
    first failure. With PIPELINING the chunks go out without waiting for each reply;
    without it, each reply is awaited and a refusal stops the transfer. A refused
    envelope stops the transfer after the first chunk (the server reads and rejects
    that chunk: BDAT framing keeps it from being taken for commands).
    """
    source = _ChunkSource(content)
    total = content_total(content) if progress is not None else None
    yield DATA_STAGE
    sent = 0
    pipelining = conn.capabilities.pipelining
    unanswered = 0
    failure: Reply | None = None
    final: Reply | None = None
    envelope_replies: list[Reply] = []
    current = yield from source.next()
    while True:
        following = (yield from source.next()) if current is not None else None
        last = following is None
        yield from send(conn, *envelope, Bdat(current or b"", last=last))
        unanswered += 1
        sent += len(current or b"")
        if progress is not None:
            progress(sent, total)
        if envelope:
            envelope_replies = yield from _read_envelope_replies(conn, envelope)
            envelope = ()
            if conn.state is State.CLOSED or not _envelope_accepted(envelope_replies):
                break  # the chunk's reply (if any) is read below; nothing more is sent
        if not pipelining:
            reply = yield from read_reply(conn)
            unanswered -= 1
            final = reply
            if not reply.is_success:
                failure = reply
                break
        if last:
            break
        current = following
    for _ in range(unanswered):
        if conn.state is State.CLOSED:
            break  # 421: the server answers nothing more
        reply = yield from read_reply(conn)
        final = reply
        if failure is None and not reply.is_success:
            failure = reply
    if final is None:  # the session closed during the envelope
        final = envelope_replies[-1]
    return envelope_replies, failure or final


def _read_envelope_replies(
    conn: ClientConnection, envelope: Sequence[Command]
) -> Flow[list[Reply]]:
    """One reply per envelope command (fewer if the session closes)."""
    replies = []
    for _ in envelope:
        replies.append((yield from read_reply(conn)))
        if conn.state is State.CLOSED:
            break
    return replies


def _envelope_accepted(replies: list[Reply]) -> bool:
    """MAIL accepted and at least one RCPT accepted."""
    return (
        len(replies) > 1
        and replies[0].is_success
        and any(reply.is_success for reply in replies[1:])
    )


def _bdat_transaction(
    conn: ClientConnection,
    mail: Mail,
    rcpts: list[Rcpt],
    content: MessageSource,
    progress: ProgressCallback | None = None,
) -> Flow[TransactionResult]:
    """MAIL, RCPTs and the content in BDAT chunks: no 354 round trip (RFC 3030).

    With PIPELINING, MAIL, every RCPT and the first chunk go out in one write
    (RFC 3030 section 4.2), so a message that fits in one chunk costs one round trip.
    """
    sender = mail.sender
    final: Reply | None = None
    if conn.capabilities.pipelining:
        replies, final = yield from _send_bdat(conn, content, progress, envelope=[mail, *rcpts])
        mail_reply = replies[0]
        result = TransactionResult(sender, mail_reply)
        for rcpt, reply in zip(rcpts, replies[1:], strict=False):
            result.recipient_replies[rcpt.recipient] = reply
        if mail_reply.is_success and any(reply.code == 421 for reply in replies[1:]):
            # The session closed during the envelope (as the DATA path reports it).
            raise _with_result(_recipients_refused(result), result)
    else:
        mail_reply = yield from command(conn, mail)
        result = TransactionResult(sender, mail_reply)
        if mail_reply.is_success:
            for rcpt in rcpts:
                result.recipient_replies[rcpt.recipient] = yield from command(conn, rcpt)
    if not mail_reply.is_success:
        if conn.state is not State.CLOSED:
            yield from _reset_quietly(conn)
        raise _with_result(SMTPSenderRefused(mail_reply.code, mail_reply.message, sender), result)
    if not result.accepted:
        yield from _reset_quietly(conn)
        raise _with_result(_recipients_refused(result), result)
    if final is None:
        _, final = yield from _send_bdat(conn, content, progress)
    result.data_reply = final
    if final.code != 250:
        yield from _reset_quietly(conn)
        raise _with_result(SMTPDataError(final.code, final.message), result)
    return result


def mail_transaction(
    conn: ClientConnection,
    sender: str,
    recipients: Sequence[str],
    content: MessageSource,
    *,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[str] = (),
    progress: ProgressCallback | None = None,
) -> Flow[TransactionResult]:
    """One whole transaction: MAIL, each RCPT, DATA, the content and its end.

    With PIPELINING, MAIL, every RCPT and DATA go out in one write (RFC 2920). When
    the server offers CHUNKING, the content goes in BDAT chunks instead (RFC 3030). Refused
    recipients are reported in the result; a refused sender raises
    ``SMTPSenderRefused``, all recipients refused ``SMTPRecipientsRefused``, a refused
    DATA or content ``SMTPDataError``; each after an RSET, as aiosmtplib does.
    """
    mail = Mail(sender, tuple(mail_options))
    rcpts = [Rcpt(rcpt, tuple(rcpt_options)) for rcpt in recipients]
    if not rcpts:
        raise ValueError("at least one recipient is required")
    if conn.capabilities.chunking and not conn.lmtp:
        return (yield from _bdat_transaction(conn, mail, rcpts, content, progress))
    if conn.capabilities.pipelining:
        yield from send(conn, mail, *rcpts, Data())
        mail_reply = yield from read_reply(conn)
        result = TransactionResult(sender, mail_reply)
        if mail_reply.code == 421:
            refusal = SMTPSenderRefused(mail_reply.code, mail_reply.message, sender)
            raise _with_result(refusal, result)
        for rcpt in rcpts:
            reply = yield from read_reply(conn)
            result.recipient_replies[rcpt.recipient] = reply
            if reply.code == 421:
                raise _with_result(_recipients_refused(result), result)
        data_reply = yield from read_reply(conn)
        if data_reply.code == 354 and (not mail_reply.is_success or not result.accepted):
            # The server accepted DATA although the envelope failed: end it empty.
            yield from send(conn, EndOfData())
            yield from read_reply(conn)
    else:
        mail_reply = yield from command(conn, mail)
        result = TransactionResult(sender, mail_reply)
        if mail_reply.is_success:
            for rcpt in rcpts:
                result.recipient_replies[rcpt.recipient] = yield from command(conn, rcpt)
        data_reply = None
        if mail_reply.is_success and result.accepted:
            data_reply = yield from command(conn, Data())

    if not mail_reply.is_success:
        yield from _reset_quietly(conn)
        raise _with_result(SMTPSenderRefused(mail_reply.code, mail_reply.message, sender), result)
    if not result.accepted:
        yield from _reset_quietly(conn)
        raise _with_result(_recipients_refused(result), result)
    assert data_reply is not None
    if data_reply.code != 354:
        yield from _reset_quietly(conn)
        raise _with_result(SMTPDataError(data_reply.code, data_reply.message), result)
    yield from _send_content(conn, content, progress=progress)
    if conn.lmtp:
        return (yield from _lmtp_deliveries(conn, result))
    final = yield from read_reply(conn)
    result.data_reply = final
    if final.code != 250:
        yield from _reset_quietly(conn)
        raise _with_result(SMTPDataError(final.code, final.message), result)
    return result


def _lmtp_deliveries(conn: ClientConnection, result: TransactionResult) -> Flow[TransactionResult]:
    """Read LMTP's reply for each accepted recipient (RFC 2033 section 4.2)."""
    for rcpt in result.accepted:
        reply = yield from read_reply(conn)
        result.delivery_replies[rcpt] = reply
        result.data_reply = reply
        if conn.state is State.CLOSED:
            break
    if not result.delivered:
        raise _with_result(_recipients_refused(result), result)
    return result


def _recipients_refused(result: TransactionResult) -> SMTPRecipientsRefused:
    return SMTPRecipientsRefused(
        [
            SMTPRecipientRefused(reply.code, reply.message, rcpt)
            for rcpt, reply in result.refused.items()
        ]
    )


def data_flow(conn: ClientConnection, content: bytes | Iterable[bytes]) -> Flow[Reply]:
    """DATA and the content, for a transaction whose MAIL and RCPT were sent separately.

    Raises ``SMTPDataError`` when DATA is not answered 354 or the content not 250.
    """
    reply = yield from command(conn, Data())
    if reply.code != 354:
        raise SMTPDataError(reply.code, reply.message)
    yield from _send_content(conn, content)
    reply = yield from read_reply(conn)
    if reply.code != 250:
        raise SMTPDataError(reply.code, reply.message)
    return reply


def quit(conn: ClientConnection) -> Flow[Reply]:
    """QUIT; raises ``SMTPResponseException`` unless the server answers 221.

    If QUIT was already sent (``mail_batch(..., quit_after=True)``), only its reply is
    read.
    """
    if conn.state is State.QUIT:
        reply = yield from read_reply(conn)
    else:
        reply = yield from command(conn, Quit())
    if reply.code != 221:
        raise SMTPResponseException(reply.code, reply.message)
    return reply


@dataclass
class Envelope:
    """One message for :func:`mail_batch`: sender, recipients, content and options."""

    sender: str
    recipients: Sequence[str]
    content: MessageSource
    mail_options: Sequence[str] = ()
    rcpt_options: Sequence[str] = ()
    commands: Sequence[Command] | None = None
    """MAIL and RCPT commands already built (and validated) for this envelope."""
    progress: ProgressCallback | None = None
    """Told of the bytes of content sent so far (and the total, when known)."""


BatchOutcome = TransactionResult | Exception


def _group(envelope: Envelope) -> list[Command]:
    if envelope.commands is not None:
        return [*envelope.commands, Data()]
    mail = Mail(envelope.sender, tuple(envelope.mail_options))
    rcpts = [Rcpt(r, tuple(envelope.rcpt_options)) for r in envelope.recipients]
    if not rcpts:
        raise ValueError("at least one recipient is required")
    return [mail, *rcpts, Data()]


def mail_batch(
    conn: ClientConnection,
    envelopes: Sequence[Envelope] | Callable[[], Envelope | None],
    *,
    quit_after: bool = False,
) -> Flow[list[BatchOutcome]]:
    """Send several messages back to back, one outcome per message, in order.

    ``envelopes`` is a sequence, or a callable returning the next envelope (None when
    there is none yet): it is asked at the last moment, so messages queued while the
    batch is running join it. With PIPELINING each message costs about one round trip:
    its content, the end of data and the next message's MAIL, RCPTs and DATA go out in
    one write (RFC 2920 allows content to start a group). An outcome is a
    :class:`TransactionResult` or the exception that message met
    (``SMTPSenderRefused``, ``SMTPRecipientsRefused``, ``SMTPDataError``); after the
    session ends (421 or a disconnect) the remaining messages get
    ``SMTPServerDisconnected``. Protocol errors propagate.

    With ``quit_after``, QUIT goes in the same write as the last message's end of data
    (when the server answers DATA with 354), saving the round trip of a separate QUIT;
    the flow returns without reading its reply: :func:`quit` then reads it.
    """
    total: int | None = None
    if callable(envelopes):
        take = envelopes
    else:
        remaining = list(envelopes)
        total = len(remaining)

        def take() -> Envelope | None:
            return remaining.pop(0) if remaining else None

    outcomes: list[BatchOutcome] = []
    taken = 0
    if not conn.capabilities.pipelining or conn.capabilities.chunking or conn.lmtp:
        # One transaction at a time (BDAT needs no 354 round trip anyway).
        while (envelope := take()) is not None:
            taken += 1
            try:
                result = yield from mail_transaction(
                    conn,
                    envelope.sender,
                    envelope.recipients,
                    envelope.content,
                    mail_options=envelope.mail_options,
                    rcpt_options=envelope.rcpt_options,
                    progress=envelope.progress,
                )
                outcomes.append(result)
            except (SMTPResponseException, SMTPRecipientsRefused) as exc:
                outcomes.append(exc)
                if conn.state in (State.CLOSED, State.ERROR):
                    break
            except SMTPServerDisconnected as exc:
                exc.content_started = conn.content_started  # type: ignore[attr-defined]
                outcomes.append(exc)
                break
            yield PROGRESS
        return _fill(outcomes, total if total is not None else taken)

    envelope = take()
    if envelope is None:
        return outcomes
    taken = 1
    yield from send(conn, *_group(envelope))
    need_reset = False
    content_sent = False  # whether the current message's content went out
    try:
        while envelope is not None:
            content_sent = False
            mail_reply = yield from read_reply(conn)
            result = TransactionResult(envelope.sender, mail_reply)
            if mail_reply.code == 421:
                outcomes.append(
                    _with_result(
                        SMTPSenderRefused(421, mail_reply.message, envelope.sender), result
                    )
                )
                break
            for rcpt in envelope.recipients:
                reply = yield from read_reply(conn)
                result.recipient_replies[rcpt] = reply
                if reply.code == 421:
                    break
            if conn.state is State.CLOSED:
                outcomes.append(_recipients_refused(result))
                break
            data_reply = yield from read_reply(conn)
            envelope_ok = mail_reply.is_success and bool(result.accepted)
            if data_reply.code == 421:
                outcomes.append(
                    _with_result(SMTPDataError(data_reply.code, data_reply.message), result)
                )
                break
            following = take()
            group: list[Command] = _group(following) if following is not None else []
            taken += following is not None
            quitting = following is None and quit_after
            if quitting:
                group = [Quit()]  # the last message: QUIT rides with its end (RFC 2920)
            if data_reply.code == 354:
                content_sent = envelope_ok
                yield from _send_content(
                    conn, envelope.content if envelope_ok else b"", group, envelope.progress
                )
                final = yield from read_reply(conn)
                result.data_reply = final
                if not envelope_ok:
                    outcomes.append(_envelope_error(result))
                elif final.code != 250:
                    outcomes.append(_with_result(SMTPDataError(final.code, final.message), result))
                else:
                    outcomes.append(result)
                need_reset = not envelope_ok or final.code != 250
            else:
                outcomes.append(
                    _envelope_error(result)
                    if not envelope_ok
                    else SMTPDataError(data_reply.code, data_reply.message)
                )
                # The envelope may have left a transaction open: reset it, in the same
                # write as the next message's envelope.
                yield from send(conn, Rset(), *group)
                yield from read_reply(conn)
                need_reset = False
            if quitting:
                # The reply to QUIT is left for quit() to read, so that a server slow
                # to answer it cannot change this message's outcome.
                return _fill(outcomes, total if total is not None else taken)
            if _closed(conn):  # the state moves as replies are read
                break
            yield PROGRESS
            envelope = following
    except SMTPServerDisconnected as exc:
        exc.content_started = content_sent  # type: ignore[attr-defined]
        outcomes.append(exc)
        return _fill(outcomes, total if total is not None else taken)
    if need_reset:
        yield from _reset_quietly(conn)
    return _fill(outcomes, total if total is not None else taken)


def _envelope_error(result: TransactionResult) -> Exception:
    if not result.mail_reply.is_success:
        reply = result.mail_reply
        return _with_result(SMTPSenderRefused(reply.code, reply.message, result.sender), result)
    return _with_result(_recipients_refused(result), result)


_E = TypeVar("_E", bound=Exception)


def _with_result(exc: _E, result: TransactionResult) -> _E:
    """Attach the transaction's typed result to the refusal (``exc.result``)."""
    result.error = exc
    exc.result = result  # type: ignore[attr-defined]
    return exc


def _fill(outcomes: list[BatchOutcome], count: int) -> list[BatchOutcome]:
    """Messages not finished because the session ended get SMTPServerDisconnected."""
    while len(outcomes) < count:
        lost = SMTPServerDisconnected("Connection lost before this message was sent")
        lost.content_started = False  # type: ignore[attr-defined]
        outcomes.append(lost)
    return outcomes
