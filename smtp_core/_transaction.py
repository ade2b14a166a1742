"""Mail transactions as I/O-free flows: one at a time, or pipelined back to back.

:func:`mail_transaction` sends one message. :func:`mail_pipeline` sends a stream of
messages on one connection as fast as the server's extensions allow, and tells each
message's outcome the moment its final reply arrives:

* with PIPELINING (RFC 2920) and DATA, one round trip per message: a message's
  content, its end of data and the next message's MAIL, RCPTs and DATA share a write;
* with PIPELINING and CHUNKING (RFC 3030), whole transactions (MAIL, RCPTs,
  ``BDAT ... LAST``) go out back to back, up to a window of them before any reply is
  read, so many messages share one round trip;
* otherwise (no PIPELINING, or LMTP) one command at a time.

Every outcome is a fact about the server. When the session ends under a message whose
final reply has not come, the message is told :attr:`Outcome.NEVER_SENT` (none of its
content was written, so the server cannot have accepted it) or
:attr:`Outcome.UNKNOWN` (its content may have reached the server).
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from ._commands import Bdat, Command, Data, Mail, Quit, Rcpt, Rset
from ._connection import ClientConnection
from ._content import line_ending_counts
from ._events import NEED_DATA, Content, EndOfData
from ._exceptions import (
    SMTPDataError,
    SMTPException,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from ._flows import (
    DATA_STAGE,
    PROGRESS,
    READ_OR_WAKE,
    Flow,
    NextChunk,
    Write,
    _buffered_reply,
    _reply_of,
    _trace_sent,
    _tracing,
    command,
    read_reply,
    send,
)
from ._outcome import Outcome
from ._replies import EnhancedStatusCode, Reply
from ._state import State

__all__ = [
    "Outcome",
    "TransactionResult",
    "RecipientResult",
    "Envelope",
    "MessageSource",
    "ProgressCallback",
    "DEFAULT_WINDOW",
    "CONTENT_WRITE_SIZE",
    "content_size",
    "content_total",
    "mail_transaction",
    "mail_pipeline",
    "mail_batch",
    "data_flow",
    "lost",
]

CONTENT_WRITE_SIZE = 256 * 1024
"""Message content is written in pieces of about this many bytes."""

_DATA: Final = Data()  # commands are immutable: one DATA serves every message
_END: Final = EndOfData()

DEFAULT_WINDOW = 16
"""Most whole transactions :func:`mail_pipeline` has on the wire at once (CHUNKING)."""


def content_size(data: bytes, *, bdat: bool = False) -> int:
    """The octets the content takes on the wire once line endings are CRLF (RFC 1870 SIZE).

    With DATA a final CRLF is added when the content lacks one; neither the terminating
    dot nor dot-stuffing counts. With BDAT (``bdat=True``) nothing is added.
    """
    crlf, cr, lf = line_ending_counts(data)
    size = len(data) + lf + cr - 2 * crlf
    if not bdat and data and not data.endswith((b"\n", b"\r")):
        size += 2
    return size


# The results and the envelope are dataclasses whose ``__init__`` is written out: every
# message builds one of each, and the generated one would run interpreted in the
# compiled build.


@dataclass(init=False)
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
    outcome: Outcome = Outcome.DONE
    """:attr:`Outcome.DONE` once the server answered; see :class:`Outcome`."""

    def __init__(
        self,
        sender: str,
        mail_reply: Reply,
        recipient_replies: dict[str, Reply] | None = None,
        data_reply: Reply | None = None,
        delivery_replies: dict[str, Reply] | None = None,
        error: Exception | None = None,
        outcome: Outcome = Outcome.DONE,
    ) -> None:
        self.sender = sender
        self.mail_reply = mail_reply
        self.recipient_replies = {} if recipient_replies is None else recipient_replies
        self.data_reply = data_reply
        self.delivery_replies = {} if delivery_replies is None else delivery_replies
        self.error = error
        self.outcome = outcome

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


@dataclass(frozen=True, slots=True, init=False)
class RecipientResult:
    """What happened to one recipient: its RCPT reply and, for LMTP, its delivery reply."""

    recipient: str
    rcpt_reply: Reply
    delivery_reply: Reply | None = None

    def __init__(
        self, recipient: str, rcpt_reply: Reply, delivery_reply: Reply | None = None
    ) -> None:
        object.__setattr__(self, "recipient", recipient)
        object.__setattr__(self, "rcpt_reply", rcpt_reply)
        object.__setattr__(self, "delivery_reply", delivery_reply)

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


MessageSource = Any
"""Message content: bytes, a binary file object, an iterable or an async iterable of bytes."""

ProgressCallback = Callable[[int, "int | None"], None]
"""Called as ``progress(bytes_sent, total_bytes_or_None)`` while content is sent."""


@dataclass(eq=False, init=False)
class Envelope:
    """One message for :func:`mail_pipeline`: sender, recipients, content and options.

    ``commands`` (the MAIL and RCPT commands, already built and so validated) is what
    is sent; without it they are built from the sender, recipients and options. The
    flow sets ``content_sent`` just before the first byte of the content is written.
    """

    sender: str
    recipients: Sequence[str]
    content: MessageSource
    mail_options: Sequence[str] = ()
    rcpt_options: Sequence[str] = ()
    commands: Sequence[Command] | None = None
    """MAIL and RCPT commands already built (and validated) for this envelope."""
    progress: ProgressCallback | None = None
    """Told of the bytes of content sent so far (and the total, when known)."""
    content_sent: bool = False
    """Whether any of the content was written (so the server may have the message)."""
    context: Any = None
    """For the caller's own bookkeeping; the flows never look at it."""

    def __init__(
        self,
        sender: str,
        recipients: Sequence[str],
        content: MessageSource,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        commands: Sequence[Command] | None = None,
        progress: ProgressCallback | None = None,
        content_sent: bool = False,
        context: Any = None,
    ) -> None:
        if commands is None:
            commands = [
                Mail(sender, tuple(mail_options)),
                *(Rcpt(r, tuple(rcpt_options)) for r in recipients),
            ]
        if len(commands) < 2:
            raise ValueError("at least one recipient is required")
        self.sender = sender
        self.recipients = recipients
        self.content = content
        self.mail_options = mail_options
        self.rcpt_options = rcpt_options
        self.commands = commands
        self.progress = progress
        self.content_sent = content_sent
        self.context = context

    @property
    def mail(self) -> Mail:
        """The MAIL command."""
        mail = self.commands[0]  # type: ignore[index]
        assert isinstance(mail, Mail)
        return mail

    @property
    def rcpts(self) -> list[Rcpt]:
        """The RCPT commands, one per recipient, in order."""
        return list(self.commands[1:])  # type: ignore[arg-type, index]


def lost(envelope: Envelope, reason: BaseException | str) -> SMTPException:
    """The exception for a message whose final reply never came (the session ended).

    A copy of ``reason`` (when it is an ``SMTPException``; else ``SMTPServerDisconnected``)
    with ``outcome`` set to :attr:`Outcome.UNKNOWN` when the message's content was
    written and :attr:`Outcome.NEVER_SENT` when not, and ``content_started`` to match.
    """
    if isinstance(reason, SMTPException):
        exc: SMTPException = type(reason)(*reason.args)
    elif isinstance(reason, str):
        exc = SMTPServerDisconnected(reason)
    else:
        exc = SMTPServerDisconnected(f"Connection lost: {type(reason).__name__}")
    exc.outcome = Outcome.UNKNOWN if envelope.content_sent else Outcome.NEVER_SENT
    exc.content_started = envelope.content_sent
    return exc


Finished = Callable[[Envelope, "TransactionResult | SMTPException"], None]
"""Told each message's outcome: its result, or the exception it met."""


# -- content ----------------------------------------------------------------------------


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


_PLAIN_FILES: Final = (io.BufferedReader, io.BufferedRandom, io.FileIO)


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
    envelope: Envelope | None,
    content: MessageSource,
    then: Sequence[Command] = (),
) -> Flow[None]:
    """Send the content and its end, followed in the same write by ``then`` (pipelining).

    Content is encoded chunk by chunk, so memory stays bounded by the chunk size. The
    envelope (None for empty content ending a refused envelope) hears of its progress.
    """
    progress = envelope.progress if envelope is not None else None
    _tracing()  # once for the content, its end and what follows it
    yield DATA_STAGE
    pending: list[bytes] = []
    sent = 0
    if type(content) is bytes and len(content) < CONTENT_WRITE_SIZE:
        # The usual message: one piece, so no chunk source.
        size = len(content)
        total: int | None = size
        if content:
            item = Content(content)
            pending.append(conn.send(item))
            _trace_sent(item)
    else:
        source = _ChunkSource(content)
        total = content_total(content) if progress is not None else None
        size = 0
        while (chunk := (yield from source.next())) is not None:
            item = Content(chunk)
            pending.append(conn.send(item))
            _trace_sent(item)
            size += len(chunk)
            if size >= CONTENT_WRITE_SIZE:
                if envelope is not None:
                    envelope.content_sent = True
                yield Write(b"".join(pending))
                _tracing()  # asked again for each write
                sent += size
                pending, size = [], 0
                if progress is not None:
                    progress(sent, total)
    pending.append(conn.send(_END))
    _trace_sent(_END)
    for cmd in then:
        pending.append(conn.send(cmd))
        _trace_sent(cmd)
    if envelope is not None:
        envelope.content_sent = True
    yield Write(b"".join(pending))
    if progress is not None:
        progress(sent + size, total)


# -- outcomes -----------------------------------------------------------------------------

_E = TypeVar("_E", bound=Exception)


def _with_result(exc: _E, result: TransactionResult) -> _E:
    """Attach the transaction's typed result to the refusal (``exc.result``)."""
    result.error = exc
    exc.result = result  # type: ignore[attr-defined]
    exc.outcome = Outcome.DONE  # type: ignore[attr-defined]
    exc.content_started = result.data_reply is not None  # type: ignore[attr-defined]
    return exc


def _recipients_refused(result: TransactionResult) -> SMTPRecipientsRefused:
    return SMTPRecipientsRefused(
        [
            SMTPRecipientRefused(reply.code, reply.message, rcpt)
            for rcpt, reply in result.refused.items()
        ]
    )


def _envelope_error(result: TransactionResult) -> SMTPException:
    """The refusal of an envelope whose MAIL or every RCPT failed."""
    if not result.mail_reply.is_success:
        reply = result.mail_reply
        return _with_result(SMTPSenderRefused(reply.code, reply.message, result.sender), result)
    return _with_result(_recipients_refused(result), result)


def _final(result: TransactionResult, final: Reply) -> TransactionResult | SMTPException:
    """The outcome once the content's final reply came."""
    result.data_reply = final
    if final.code != 250:
        return _with_result(SMTPDataError(final.code, final.message), result)
    return result


def _envelope_ok(result: TransactionResult) -> bool:
    return result.mail_reply.is_success and bool(result.accepted)


_CLOSED: Final = State.CLOSED  # a module constant: cheaper than the class attribute


def _closed(conn: ClientConnection) -> bool:
    return conn.state is _CLOSED


def _reset_quietly(conn: ClientConnection) -> Flow[None]:
    """RSET after a failed transaction; its own failure is not reported (as aiosmtplib)."""
    if conn.state in (State.CLOSED, State.ERROR):
        return
    try:
        yield from command(conn, Rset())
    except SMTPServerDisconnected:
        return


# -- one transaction -------------------------------------------------------------------------


def mail_transaction(
    conn: ClientConnection,
    sender: str | Envelope,
    recipients: Sequence[str] = (),
    content: MessageSource = b"",
    *,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[str] = (),
    progress: ProgressCallback | None = None,
) -> Flow[TransactionResult]:
    """One whole transaction: MAIL, each RCPT, then DATA and the content, or BDAT chunks.

    ``sender`` may be an :class:`Envelope` (its commands are sent as built). With
    PIPELINING, MAIL, every RCPT and DATA (or the first BDAT chunk) go out in one write
    (RFC 2920, RFC 3030). Refused recipients are reported in the result; a refused
    sender raises ``SMTPSenderRefused``, all recipients refused ``SMTPRecipientsRefused``,
    a refused DATA or content ``SMTPDataError``; each after an RSET, as aiosmtplib does.
    """
    if isinstance(sender, Envelope):
        envelope = sender
    else:
        envelope = Envelope(
            sender, recipients, content, mail_options, rcpt_options, progress=progress
        )
    outcome = yield from _transaction(conn, envelope)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _transaction(
    conn: ClientConnection, envelope: Envelope, *, reset: bool = True
) -> Flow[TransactionResult | SMTPException]:
    """One transaction; refusals are returned (after an RSET, unless not ``reset``)."""
    if conn.capabilities.chunking and not conn.lmtp:
        outcome = yield from _bdat_transaction(conn, envelope)
    else:
        outcome = yield from _data_transaction(conn, envelope)
    if reset and isinstance(outcome, SMTPException) and not _closed(conn):
        yield from _reset_quietly(conn)
    return outcome


def _read_envelope(
    conn: ClientConnection, envelope: Envelope, mail_reply: Reply | None = None
) -> Flow[TransactionResult]:
    """Read the MAIL reply (unless given) and one reply per RCPT, stopping on a 421."""
    if mail_reply is None:
        mail_reply = yield from read_reply(conn)
    result = TransactionResult(envelope.sender, mail_reply)
    if mail_reply.code == 421:
        return result
    for rcpt in envelope.rcpts:
        reply = _buffered_reply(conn) or (yield from read_reply(conn))
        result.recipient_replies[rcpt.recipient] = reply
        if reply.code == 421:
            break
    return result


def _data_transaction(
    conn: ClientConnection, envelope: Envelope
) -> Flow[TransactionResult | SMTPException]:
    if conn.capabilities.pipelining:
        yield from send(conn, *envelope.commands, _DATA)  # type: ignore[misc]
        result = yield from _read_envelope(conn, envelope)
        if _closed(conn):
            return _envelope_error(result)
        data_reply = _buffered_reply(conn) or (yield from read_reply(conn))
        if data_reply.code == 354 and not _envelope_ok(result):
            # The server accepted DATA although the envelope failed: end it empty.
            yield from send(conn, _END)
            yield from read_reply(conn)
    else:
        mail_reply = yield from command(conn, envelope.mail)
        result = TransactionResult(envelope.sender, mail_reply)
        if mail_reply.is_success:
            for rcpt in envelope.rcpts:
                result.recipient_replies[rcpt.recipient] = yield from command(conn, rcpt)
        data_reply = None
        if _envelope_ok(result):
            data_reply = yield from command(conn, _DATA)
    if not _envelope_ok(result):
        return _envelope_error(result)
    assert data_reply is not None
    if data_reply.code != 354:
        return _with_result(SMTPDataError(data_reply.code, data_reply.message), result)
    yield from _send_content(conn, envelope, envelope.content)
    if conn.lmtp:
        return (yield from _lmtp_deliveries(conn, result))
    final = yield from read_reply(conn)
    return _final(result, final)


def _lmtp_deliveries(
    conn: ClientConnection, result: TransactionResult
) -> Flow[TransactionResult | SMTPException]:
    """Read LMTP's reply for each accepted recipient (RFC 2033 section 4.2)."""
    for rcpt in result.accepted:
        reply = yield from read_reply(conn)
        result.delivery_replies[rcpt] = reply
        result.data_reply = reply
        if _closed(conn):
            break
    if not result.delivered:
        return _with_result(_recipients_refused(result), result)
    return result


def _bdat_transaction(
    conn: ClientConnection, envelope: Envelope
) -> Flow[TransactionResult | SMTPException]:
    """MAIL, RCPTs and the content in BDAT chunks: no 354 round trip (RFC 3030).

    With PIPELINING, MAIL, every RCPT and the first chunk go out in one write (RFC 3030
    section 4.2), so a message that fits in one chunk costs one round trip.
    """
    if conn.capabilities.pipelining:
        txn = _BdatTxn(envelope)
        yield from send(conn, *(yield from txn.start()))
        try:
            while not txn.done:
                yield from txn.take(conn, (yield from read_reply(conn)))
                if _closed(conn):
                    return txn.outcome_after_close()
        except SMTPServerDisconnected as exc:
            return lost(envelope, exc)
        return txn.outcome()
    mail_reply = yield from command(conn, envelope.mail)
    result = TransactionResult(envelope.sender, mail_reply)
    if mail_reply.is_success:
        for rcpt in envelope.rcpts:
            result.recipient_replies[rcpt.recipient] = yield from command(conn, rcpt)
    if not _envelope_ok(result):
        return _envelope_error(result)
    source = _ChunkSource(envelope.content)
    total = content_total(envelope.content) if envelope.progress is not None else None
    yield DATA_STAGE
    sent = 0
    chunk = yield from source.next()
    final: Reply | None = None
    while True:
        following = (yield from source.next()) if chunk is not None else None
        envelope.content_sent = True
        final = yield from command(conn, Bdat(chunk or b"", last=following is None))
        sent += len(chunk or b"")
        if envelope.progress is not None:
            envelope.progress(sent, total)
        if not final.is_success or following is None:
            break
        chunk = following
    return _final(result, final)


class _BdatTxn:
    """One transaction sent with BDAT and PIPELINING: what was sent, the replies still due."""

    __slots__ = (
        "due",
        "envelope",
        "failure",
        "final",
        "next_chunk",
        "replies",
        "sent",
        "source",
        "total",
    )

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.source = _ChunkSource(envelope.content)
        self.next_chunk: bytes | None = None  # content still to send after the envelope's replies
        self.replies: list[Reply] = []  # MAIL's, then each RCPT's
        self.due = 0  # replies still to read
        self.failure: Reply | None = None  # the first refused chunk
        self.final: Reply | None = None  # the last chunk's reply
        self.sent = 0
        self.total = content_total(envelope.content) if envelope.progress is not None else None

    def start(self) -> Flow[list[Command]]:
        """MAIL, the RCPTs and the first chunk (LAST if it is the only one)."""
        first = yield from self.source.next()
        self.next_chunk = (yield from self.source.next()) if first is not None else None
        commands = [*self.envelope.commands, Bdat(first or b"", last=self.next_chunk is None)]  # type: ignore[misc]
        self.due = len(commands)
        self.envelope.content_sent = True
        self._progress(len(first or b""))
        return commands

    @property
    def streaming(self) -> bool:
        """More of the content must follow before another transaction may start."""
        return self.next_chunk is not None

    @property
    def done(self) -> bool:
        return self.due == 0 and self.next_chunk is None

    def _progress(self, size: int) -> None:
        self.sent += size
        if self.envelope.progress is not None:
            self.envelope.progress(self.sent, self.total)

    def take(self, conn: ClientConnection, reply: Reply) -> Flow[None]:
        """Take this transaction's next reply, sending the rest of the content (or an RSET)
        once the envelope's replies show whether it is wanted."""
        self.due -= 1
        envelope_size = len(self.envelope.commands)  # type: ignore[arg-type]
        if len(self.replies) < envelope_size:
            self.replies.append(reply)
            if len(self.replies) == envelope_size and self.next_chunk is not None:
                yield from self._rest(conn)
            return
        if self.failure is None and not reply.is_success:
            self.failure = reply
        self.final = reply

    def _rest(self, conn: ClientConnection) -> Flow[None]:
        chunk, self.next_chunk = self.next_chunk, None
        if _closed(conn):
            return
        if not _envelope_accepted(self.replies):
            # Nothing more of a refused message; its chunked transaction is still open.
            self.due += 1
            yield from send(conn, Rset())
            return
        yield DATA_STAGE
        while chunk is not None:
            following = yield from self.source.next()
            item = Bdat(chunk, last=following is None)
            data = conn.send(item)
            if _tracing():
                _trace_sent(item)
            self.due += 1
            yield Write(data)
            self._progress(len(chunk))
            chunk = following

    def _result(self) -> TransactionResult:
        result = TransactionResult(self.envelope.sender, self.replies[0])
        for rcpt, reply in zip(self.envelope.rcpts, self.replies[1:], strict=False):
            result.recipient_replies[rcpt.recipient] = reply
        return result

    def outcome(self) -> TransactionResult | SMTPException:
        result = self._result()
        if not _envelope_ok(result):
            return _envelope_error(result)
        final = self.failure or self.final
        assert final is not None
        return _final(result, final)

    def outcome_after_close(self) -> SMTPException:
        """The session closed (421) before every reply came."""
        if self.replies and any(reply.code == 421 for reply in self.replies):
            return _envelope_error(self._result())  # refused in the envelope
        if self.failure is not None:
            return _with_result(
                SMTPDataError(self.failure.code, self.failure.message), self._result()
            )
        return lost(self.envelope, "Connection lost before the server answered this message")


def _envelope_accepted(replies: list[Reply]) -> bool:
    """MAIL accepted and at least one RCPT accepted."""
    return (
        len(replies) > 1
        and replies[0].is_success
        and any(reply.is_success for reply in replies[1:])
    )


def data_flow(conn: ClientConnection, content: bytes | Iterable[bytes]) -> Flow[Reply]:
    """DATA and the content, for a transaction whose MAIL and RCPT were sent separately.

    Raises ``SMTPDataError`` when DATA is not answered 354 or the content not 250.
    """
    reply = yield from command(conn, _DATA)
    if reply.code != 354:
        raise SMTPDataError(reply.code, reply.message)
    yield from _send_content(conn, None, content)
    reply = yield from read_reply(conn)
    if reply.code != 250:
        raise SMTPDataError(reply.code, reply.message)
    return reply


# -- many transactions ---------------------------------------------------------------------

Take = Callable[[], "Envelope | None"]
"""Returns the next message to send, or None when there is none (yet)."""


def mail_pipeline(
    conn: ClientConnection,
    take: Take,
    finished: Finished,
    *,
    window: int = DEFAULT_WINDOW,
    quit_after: bool = False,
) -> Flow[None]:
    """Send messages back to back on one connection, each outcome told as it happens.

    ``take()`` is asked for the next message at the last moment before each write
    (None: nothing more now), so messages that come while others are in flight join
    them. ``finished(envelope, outcome)`` is called the moment a message's fate is
    known: its :class:`TransactionResult`, or the exception it met
    (``SMTPSenderRefused``, ``SMTPRecipientsRefused``, ``SMTPDataError``, each with
    ``outcome`` :attr:`Outcome.DONE`; after the session ends, ``SMTPServerDisconnected``
    with :attr:`Outcome.NEVER_SENT` or :attr:`Outcome.UNKNOWN`). The flow returns when
    no message is in flight and ``take()`` has nothing.

    With PIPELINING and CHUNKING up to ``window`` whole transactions are on the wire
    at once. With ``quit_after``, QUIT goes in the same write as the last message,
    saving a round trip; its reply is left for :func:`~smtp_core.flows.quit` to read.
    Protocol errors and transport failures propagate: the caller then tells every
    message still in flight its fate with :func:`lost`.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    if conn.lmtp or not conn.capabilities.pipelining:
        yield from _one_by_one(conn, take, finished)
    elif conn.capabilities.chunking:
        yield from _bdat_pipeline(conn, take, finished, window, quit_after)
    else:
        yield from _data_pipeline(conn, take, finished, quit_after)


def _one_by_one(conn: ClientConnection, take: Take, finished: Finished) -> Flow[None]:
    while (envelope := take()) is not None:
        try:
            outcome = yield from _transaction(conn, envelope, reset=False)
        except SMTPServerDisconnected as exc:
            finished(envelope, lost(envelope, exc))
            return
        finished(envelope, outcome)  # told before the RSET: its reply cannot change it
        if isinstance(outcome, SMTPException) and not _closed(conn):
            yield from _reset_quietly(conn)
        if _closed(conn):
            return
        yield PROGRESS


def _data_pipeline(
    conn: ClientConnection, take: Take, finished: Finished, quit_after: bool
) -> Flow[None]:
    """DATA with PIPELINING: each message's content, its end and the next message's
    envelope in one write (RFC 2920 lets content start a group): one round trip each."""
    envelope = take()
    if envelope is None:
        return
    inflight = [envelope]  # written, fate not yet told
    yield from send(conn, *envelope.commands, _DATA)  # type: ignore[misc]
    try:
        while envelope is not None:
            result = yield from _read_envelope(conn, envelope)
            if _closed(conn):
                inflight.remove(envelope)
                finished(envelope, _envelope_error(result))
                break
            data_reply = _buffered_reply(conn) or (yield from read_reply(conn))
            ok = _envelope_ok(result)
            outcome: TransactionResult | SMTPException | None = None
            if not ok:
                outcome = _envelope_error(result)
            elif data_reply.code != 354:
                outcome = _with_result(SMTPDataError(data_reply.code, data_reply.message), result)
            if _closed(conn):  # 421 to DATA
                assert outcome is not None
                inflight.remove(envelope)
                finished(envelope, outcome)
                break
            following = take()
            then: list[Command] = [*following.commands, _DATA] if following is not None else []  # type: ignore[misc]
            quitting = following is None and quit_after
            if quitting:
                then = [Quit()]  # the last message: QUIT rides with its end (RFC 2920)
            if data_reply.code == 354:
                # A refused envelope whose DATA was accepted all the same ends empty.
                yield from _send_content(
                    conn, envelope if ok else None, envelope.content if ok else b"", then
                )
            else:
                if outcome is not None:
                    inflight.remove(envelope)
                    finished(envelope, outcome)
                # The envelope may have left a transaction open: reset it, in the same
                # write as the next message's envelope.
                yield from send(conn, Rset(), *then)
            if following is not None:
                inflight.append(following)
            if data_reply.code == 354:
                late: list[Envelope] = []

                def join_late(
                    room: bool = following is None and not quitting, late: list[Envelope] = late
                ) -> Flow[None]:
                    # A message that came while the final reply is awaited goes at once:
                    # MAIL may follow the end of data without waiting (RFC 2920).
                    if room and not late and (joining := take()) is not None:
                        late.append(joining)
                        inflight.append(joining)
                        yield from send(conn, *joining.commands, _DATA)  # type: ignore[misc]

                final = yield from _reply_or_wait(conn, join_late)
                if following is None and late:
                    following = late[0]
                inflight.remove(envelope)
                finished(envelope, _final(result, final) if ok else outcome)  # type: ignore[arg-type]
            else:
                yield from read_reply(conn)  # the RSET's
            if quitting:
                return  # QUIT's reply is left for quit(), so that it cannot change an outcome
            if _closed(conn):
                break
            yield PROGRESS
            envelope = following
            if envelope is None and (envelope := take()) is not None:
                inflight.append(envelope)
                yield from send(conn, *envelope.commands, _DATA)  # type: ignore[misc]
    except SMTPServerDisconnected as exc:
        for left in inflight:
            finished(left, lost(left, exc))
        return
    for left in inflight:  # the session closed (421) under them
        finished(left, lost(left, "Connection lost before the server answered this message"))


def _bdat_pipeline(
    conn: ClientConnection, take: Take, finished: Finished, window: int, quit_after: bool
) -> Flow[None]:
    """BDAT with PIPELINING: whole transactions (MAIL, RCPTs, BDAT ... LAST) back to
    back, up to ``window`` of them on the wire; replies are matched in order."""
    inflight: deque[_BdatTxn] = deque()
    more = True  # take() may still have messages (False once QUIT went out)

    def top_up() -> Flow[None]:
        # Called just before the flow would wait for the server: fill the window.
        nonlocal more
        commands: list[Command] = []
        while more and len(inflight) < window and not (inflight and inflight[-1].streaming):
            envelope = take()
            if envelope is None:
                if quit_after:
                    commands.append(Quit())  # QUIT rides with the last message
                    more = False
                break
            txn = _BdatTxn(envelope)
            commands += yield from txn.start()
            inflight.append(txn)
        if commands:
            yield from send(conn, *commands)

    try:
        yield from top_up()
        while inflight:
            txn = inflight[0]
            reply = yield from _reply_or_wait(conn, top_up)
            yield from txn.take(conn, reply)
            if _closed(conn):
                inflight.popleft()
                finished(txn.envelope, txn.outcome_after_close())
                break
            if txn.done:
                inflight.popleft()
                finished(txn.envelope, txn.outcome())
                yield PROGRESS
                if not inflight:
                    yield from top_up()
    except SMTPServerDisconnected as exc:
        for left in inflight:
            finished(left.envelope, lost(left.envelope, exc))
        return
    for left in inflight:  # the session closed (421) under them
        finished(
            left.envelope,
            lost(left.envelope, "Connection lost before the server answered this message"),
        )


def _reply_or_wait(conn: ClientConnection, before_wait: Callable[[], Flow[None]]) -> Flow[Reply]:
    """The next reply; ``before_wait()`` runs whenever the flow is about to wait for bytes."""
    while True:
        reply = conn.next_reply()
        if reply is NEED_DATA:
            yield from before_wait()
            data = yield READ_OR_WAKE
            if data is not None:  # None: woken, new work may have come
                conn.receive_data(data)
            continue
        return _reply_of(reply)


BatchOutcome = TransactionResult | Exception


def mail_batch(
    conn: ClientConnection,
    envelopes: Sequence[Envelope] | Take,
    *,
    quit_after: bool = False,
    window: int = DEFAULT_WINDOW,
) -> Flow[list[BatchOutcome]]:
    """:func:`mail_pipeline` for a known list of messages: one outcome per message, in order.

    ``envelopes`` may also be a callable, as ``take`` for :func:`mail_pipeline`.
    """
    if callable(envelopes):
        take = envelopes
        taken: list[Envelope] = []

        def take_and_note() -> Envelope | None:
            envelope = take()
            if envelope is not None:
                taken.append(envelope)
            return envelope

        source: Take = take_and_note
    else:
        taken = list(envelopes)
        remaining = deque(taken)

        def source() -> Envelope | None:
            return remaining.popleft() if remaining else None

    outcomes: dict[int, BatchOutcome] = {}

    def finished(envelope: Envelope, outcome: TransactionResult | SMTPException) -> None:
        outcomes[id(envelope)] = outcome

    yield from mail_pipeline(conn, source, finished, window=window, quit_after=quit_after)
    results: list[BatchOutcome] = []
    for envelope in taken:
        outcome = outcomes.get(id(envelope))
        if outcome is None:  # never taken: the session ended first
            outcome = lost(envelope, "Connection lost before this message was sent")
        results.append(outcome)
    return results
