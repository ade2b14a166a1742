"""The multi-step SMTP flows, written once and free of I/O.

Each flow is a plain generator: it yields I/O requests and returns its result.

* :class:`Write` - write ``data`` to the transport; the adapter sends back None.
* :data:`READ` (a :class:`Read`) - read some bytes; the adapter sends back the bytes,
  or ``b""`` when the server closed the connection. :data:`READ_OR_WAKE` is the same,
  but an adapter may also send back None to end the wait early when new work arrived.
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

import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from ._commands import (
    Auth,
    AuthResponse,
    Command,
    Helo,
    Lhlo,
    Quit,
    StartTLS,
)
from ._connection import ClientConnection, hello_command
from ._events import NEED_DATA, ConnectionClosed, Content, EndOfData
from ._exceptions import (
    SMTPConnectResponseError,
    SMTPHeloError,
    SMTPResponseException,
    SMTPServerDisconnected,
)
from ._replies import Reply
from ._sasl import SASLMechanism, decode_challenge
from ._state import State

__all__ = [
    "Write",
    "Read",
    "READ",
    "READ_OR_WAKE",
    "UpgradeTLS",
    "NextChunk",
    "Stage",
    "COMMAND_STAGE",
    "DATA_STAGE",
    "Progress",
    "PROGRESS",
    "Request",
    "Flow",
    "trace_logger",
    "read_reply",
    "send",
    "command",
    "greeting",
    "ehlo",
    "helo",
    "lhlo",
    "hello",
    "starttls",
    "authenticate",
    "quit",
]

trace_logger = logging.getLogger("smtp_sansio.protocol")
"""The protocol trace: DEBUG records ``C: <line>`` and ``S: <line>``."""


# The requests are frozen dataclasses whose ``__init__`` is written out: a flow builds
# a few for every message, and the generated one would run interpreted in the compiled
# build (where ``object.__setattr__`` on ``self`` in ``__init__`` is a plain store).


@dataclass(frozen=True, slots=True, init=False)
class Write:
    """Request: write these bytes."""

    data: bytes

    def __init__(self, data: bytes) -> None:
        object.__setattr__(self, "data", data)


@dataclass(frozen=True, slots=True, init=False)
class Read:
    """Request: read some bytes (``b""`` at end of stream).

    ``wakeable``: the flow could send more if new work came while it waits (the next
    message of a pipeline); an adapter able to end the wait early may send back None
    instead of bytes, and the flow asks again. Others just read.
    """

    wakeable: bool = False

    def __init__(self, wakeable: bool = False) -> None:
        object.__setattr__(self, "wakeable", wakeable)


READ: Final = Read()
READ_OR_WAKE: Final = Read(wakeable=True)


@dataclass(frozen=True, slots=True, init=False)
class UpgradeTLS:
    """Request: start TLS on the transport, checking ``server_hostname``."""

    server_hostname: str | None

    def __init__(self, server_hostname: str | None) -> None:
        object.__setattr__(self, "server_hostname", server_hostname)


@dataclass(frozen=True, slots=True, init=False)
class NextChunk:
    """Request: the next chunk of an async iterable of message content (None at its end)."""

    source: Any

    def __init__(self, source: Any) -> None:
        object.__setattr__(self, "source", source)


@dataclass(frozen=True, slots=True)
class Progress:
    """Request: one message of a batch is done; a per-message deadline may start again."""


PROGRESS: Final = Progress()


@dataclass(frozen=True, slots=True, init=False)
class Stage:
    """Request: the flow enters a stage (``"command"`` or ``"data"``) that may have its
    own time limit; the adapter sends back None. Drivers without limits can ignore it."""

    name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)


COMMAND_STAGE: Final = Stage("command")
DATA_STAGE: Final = Stage("data")

Request = Write | Read | UpgradeTLS | NextChunk | Progress | Stage
T = TypeVar("T")
Flow = Generator[Request, Any, T]
"""A flow yields requests, receives their outcomes, and returns a ``T``."""


# Whether the trace is on, as last asked. Asking the logger costs a call, and a message
# would ask for every line: it is asked once per write, and the replies that write
# brings back are traced by that answer (the greeting, which no write precedes, asks).
_TRACING: Final = [False]


def _tracing() -> bool:
    """Whether the protocol trace is on, asked now (and remembered for the replies)."""
    on = trace_logger.isEnabledFor(logging.DEBUG)
    _TRACING[0] = on
    return on


def _trace_reply(reply: Reply) -> None:
    if not _TRACING[0]:
        return
    last = len(reply.lines) - 1
    for index, line in enumerate(reply.lines):
        sep = " " if index == last else "-"
        trace_logger.debug("S: %d%s%s", reply.code, sep, line)


def _trace_sent(item: Command | Content | EndOfData) -> None:
    """Trace a line sent, when the trace is on (as :func:`_tracing` last found)."""
    if not _TRACING[0]:
        return
    if isinstance(item, Content):
        trace_logger.debug("C: <%d bytes of message content>", len(item.data))
    else:
        trace_logger.debug("C: %s", item.trace())


def send(conn: ClientConnection, *items: Command | Content | EndOfData) -> Flow[None]:
    """Send ``items`` in one write."""
    data = [conn.send(item) for item in items]
    if _tracing():
        for item in items:
            _trace_sent(item)
    yield COMMAND_STAGE
    yield Write(b"".join(data))


def read_reply(conn: ClientConnection) -> Flow[Reply]:
    """Read the next reply (the greeting, or the reply to the oldest pending command).

    Raises ``SMTPServerDisconnected`` if the server closes the connection first.
    """
    while True:
        reply = conn.next_reply()
        if reply is NEED_DATA:
            data = yield READ
            conn.receive_data(data)
            continue
        return _reply_of(reply)


def _buffered_reply(conn: ClientConnection) -> Reply | None:
    """The next reply if the bytes already received hold it, else None (read it with
    :func:`read_reply`): a pipelined command's reply usually came with an earlier one."""
    reply = conn.next_reply()
    return None if reply is NEED_DATA else _reply_of(reply)


def _reply_of(reply: Reply | ConnectionClosed | type[NEED_DATA]) -> Reply:
    """``reply``, traced, when it is one; the server's close raises."""
    if isinstance(reply, Reply):
        _trace_reply(reply)
        return reply
    if isinstance(reply, ConnectionClosed):
        trace_logger.debug("S: <connection closed>")
        raise SMTPServerDisconnected("Unexpected EOF received")
    raise AssertionError(f"unexpected event {reply!r}")  # pragma: no cover


def command(conn: ClientConnection, cmd: Command) -> Flow[Reply]:
    """Send one command and return its reply."""
    yield from send(conn, cmd)
    return (yield from read_reply(conn))


def greeting(conn: ClientConnection) -> Flow[Reply]:
    """Read the greeting; a refusal raises ``SMTPConnectResponseError``."""
    _tracing()
    reply = yield from read_reply(conn)
    if reply.code != 220:
        raise SMTPConnectResponseError(reply.code, reply.message)
    return reply


def ehlo(conn: ClientConnection, hostname: str | None = None) -> Flow[Reply]:
    """EHLO; a refusal raises ``SMTPHeloError``."""
    reply = yield from command(conn, hello_command(hostname or conn.local_hostname))
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
