"""The fuzz harnesses: plain functions, shared by the atheris targets and the test suite.

Each takes one input (a corpus file's bytes) and raises only on a bug: any exception that
is not the protocol error the invariant allows, or a failed assertion. Inputs are text
files a person can read and write: a first line that steers the harness, then the bytes
the server sends.

``check_replies``, for ``fuzz_replies.py``: the first line holds options, the rest is fed
to a :class:`ReplyParser` whole and in chunks of 1 to 64 bytes (and, in the test suite, one
byte at a time). Invariant: replies or ``RemoteProtocolError``, nothing else, and the same
replies and outcome however the bytes are split.

* ``e`` anywhere in the first line: parse enhanced status codes (ENHANCEDSTATUSCODES).
* the chunk sizes: a sequence seeded by the sum of the first line's bytes.

``check_header``, for ``fuzz_headers.py``: the first line picks the message (``c``
compat32 ``Message``, the default; ``m`` ``MIMEText``; ``h`` an ``email.header.Header``
value; ``e`` ``EmailMessage``; ``r`` ``EmailMessage.set_raw``) and how it is flattened
(``u`` SMTPUTF8, ``7`` 7-bit); the rest, decoded from UTF-8 (surrogateescape), is the
Subject. Invariant: ``flatten_message`` refuses it with ``ValueError`` or writes a header
block that parses back into the same header names; it refuses nothing the email package
writes correctly, and what it does not refuse is byte for byte what the email package
writes.

``check_connection``, for ``fuzz_connection.py``: the first line is the client's script,
one action per byte (see ``ACTIONS``), the rest is what the server sends. A
:class:`ClientConnection` plays the script; server bytes still unread when it ends are
fed whole, then the end of the connection. Invariant: only ``ProtocolError`` escapes;
after one the state is ``ERROR`` for good. An ``L`` anywhere in the script makes it an
LMTP connection.
"""

from __future__ import annotations

import email.generator
import email.header
import email.message
import email.parser
import email.policy
import io
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from email.mime.text import MIMEText

from smtp_core import (
    NEED_DATA,
    Auth,
    AuthResponse,
    Bdat,
    ClientConnection,
    CommandReply,
    ConnectionClosed,
    Content,
    Data,
    Ehlo,
    EndOfData,
    Event,
    Greeting,
    Helo,
    Help,
    Lhlo,
    Mail,
    Noop,
    ProtocolError,
    Quit,
    Rcpt,
    RemoteProtocolError,
    Reply,
    ReplyParser,
    Rset,
    Sendable,
    StartTLS,
    State,
    Vrfy,
)
from smtp_core._email import flatten_message

__all__ = ["ACTIONS", "check_connection", "check_header", "check_replies"]

MAX_LINE_LENGTH = 256
MAX_REPLY_LINES = 16
MAX_BUFFER_SIZE = 1 << 16  # inputs are shorter: the parser's buffer never fills


# -- the reply parser -------------------------------------------------------------------

Outcome = tuple[list[Reply], type[BaseException] | None]


def _chunk_sizes(seed: int) -> Iterator[int]:
    """Chunk sizes from 1 to 64, a different sequence for each seed (a tiny LCG)."""
    state = seed * 2654435761 % 2**31
    while True:
        state = (state * 1103515245 + 12345) % 2**31
        yield 1 + (state >> 16) % 64


def _parse(transcript: bytes, enhanced: bool, sizes: Iterable[int]) -> Outcome:
    parser = ReplyParser(
        max_line_length=MAX_LINE_LENGTH,
        max_reply_lines=MAX_REPLY_LINES,
        max_buffer_size=MAX_BUFFER_SIZE,
    )
    parser.parse_enhanced_codes = enhanced
    replies: list[Reply] = []
    start = 0
    try:
        for size in sizes:
            if start >= len(transcript):
                break
            parser.feed(transcript[start : start + size])
            start += size
            while (reply := parser.next_reply()) is not None:
                replies.append(reply)
    except RemoteProtocolError as exc:
        return replies, type(exc)
    return replies, None


def _check_reply(reply: Reply, enhanced: bool) -> None:
    assert 200 <= reply.code < 600, reply
    assert 1 <= len(reply.lines) <= MAX_REPLY_LINES, reply
    assert all(len(line) <= MAX_LINE_LENGTH and "\n" not in line for line in reply.lines), reply
    if enhanced:
        assert len(reply.enhanced_codes) == len(reply.lines), reply
        for code in reply.enhanced_codes:
            assert code is None or code.klass == reply.code // 100, reply
    else:
        assert reply.enhanced_codes == (), reply


def check_replies(data: bytes, *, byte_at_a_time: bool = False) -> Outcome:
    """Feed the transcript whole and in chunks (and byte by byte): the same replies each time.

    Returns the replies and the class of the protocol error that ended them (or None).
    Byte by byte is thorough but slow; the test suite asks for it, the fuzzer does not.
    """
    options, _, transcript = data.partition(b"\n")
    enhanced = b"e" in options
    whole = _parse(transcript, enhanced, [len(transcript)])
    for reply in whole[0]:
        _check_reply(reply, enhanced)
    split = _parse(transcript, enhanced, _chunk_sizes(sum(options)))
    assert split == whole, ("chunked", split, whole)
    if byte_at_a_time:
        split = _parse(transcript, enhanced, itertools.repeat(1))
        assert split == whole, ("byte at a time", split, whole)
    return whole


# -- the whole connection ---------------------------------------------------------------

COMMANDS: dict[bytes, Sendable] = {
    b"E": Ehlo("client.test"),
    b"H": Helo("client.test"),
    b"L": Lhlo("client.test"),
    b"M": Mail("a@example.org"),
    b"m": Mail("a@example.org", ("SIZE=1000", "BODY=8BITMIME")),
    b"u": Mail("\u00e4@example.org", ("SMTPUTF8",)),
    b"R": Rcpt("b@example.org"),
    b"W": Rcpt("c@example.org"),
    b"n": Rcpt("c@example.org", ("NOTIFY=SUCCESS,FAILURE",)),
    b"D": Data(),
    b"C": Content(b"Subject: x\r\n\r\n.line\r\nx\r"),
    b"c": Content(b"\n.\n"),
    b".": EndOfData(),
    b"B": Bdat(b"x\r\n"),
    b"b": Bdat(b"y", last=True),
    b"r": Rset(),
    b"N": Noop(),
    b"h": Help(),
    b"V": Vrfy("user"),
    b"A": Auth("PLAIN", b"\0u\0p"),
    b"l": Auth("LOGIN"),
    b"a": AuthResponse(b"x"),
    b"*": AuthResponse(cancel=True),
    b"S": StartTLS(),
    b"Q": Quit(),
}

Action = Callable[[ClientConnection, "_Server"], None]


class _Server:
    """The server's bytes, handed out as the script asks for them."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.events: list[Event] = []

    def take(self, size: int | None = None, *, line: bool = False) -> bytes:
        end = len(self.data) if size is None else self.pos + size
        if line:
            newline = self.data.find(b"\n", self.pos)
            end = len(self.data) if newline < 0 else newline + 1
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk


def _drain(conn: ClientConnection, server: _Server) -> int:
    events = 0
    while (event := conn.next_event()) is not NEED_DATA:
        assert isinstance(event, Event), event
        server.events.append(event)
        events += 1
        if isinstance(event, CommandReply | Greeting):
            assert 200 <= event.reply.code < 600, event
        if isinstance(event, ConnectionClosed):
            assert not conn.pending, conn.pending
            break
    return events


def _feed(chunk: bytes, conn: ClientConnection, server: _Server) -> int:
    if chunk:  # b"" would mean the end of the connection
        conn.receive_data(chunk)
    return _drain(conn, server)


def _send(item: Sendable) -> Action:
    def action(conn: ClientConnection, server: _Server) -> None:
        data = conn.send(item)
        assert isinstance(data, bytes)
        if isinstance(item, Content):
            assert b"\r\n.\r\n" not in data, data  # content cannot end DATA early
        elif not isinstance(item, EndOfData | Bdat):
            assert data.endswith(b"\r\n") and data.count(b"\n") == 1, data  # one line

    return action


def _feed_line(conn: ClientConnection, server: _Server) -> None:
    _feed(server.take(line=True), conn, server)


def _feed_reply(conn: ClientConnection, server: _Server) -> None:
    while (chunk := server.take(line=True)) and not _feed(chunk, conn, server):
        pass


def _feed_byte(conn: ClientConnection, server: _Server) -> None:
    _feed(server.take(1), conn, server)


def _feed_rest(conn: ClientConnection, server: _Server) -> None:
    _feed(server.take(), conn, server)


def _close(conn: ClientConnection, server: _Server) -> None:
    conn.receive_data(b"")
    _drain(conn, server)


def _tls(conn: ClientConnection, server: _Server) -> None:
    conn.tls_established()


def _build_actions() -> list[Action]:
    named: dict[bytes, Action] = {key: _send(item) for key, item in COMMANDS.items()}
    named.update(
        {
            b">": _feed_reply,
            b"<": _feed_line,
            b"{": _feed_byte,
            b"}": _feed_rest,
            b"$": _close,
            b"T": _tls,
        }
    )
    others = list(named.values())
    table = [named.get(bytes([value])) for value in range(256)]
    return [
        others[value % len(others)] if action is None else action
        for value, action in enumerate(table)
    ]


ACTIONS: list[Action] = _build_actions()
"""The script's actions, by byte value. Named ones: a command letter sends that command
(``COMMANDS``); ``>`` feeds the server's lines up to the end of the next reply, ``<`` its
next line, ``{`` its next byte, ``}`` all the rest; ``$`` is the end of the connection;
``T`` reports the TLS handshake done. Any other byte value stands for one of these, by
its value modulo their number."""


def check_connection(data: bytes) -> tuple[list[Event], ProtocolError | None]:
    """Play the script against the server's bytes: only ``ProtocolError`` may escape.

    Returns the events in order and the protocol error that ended the run (or None).
    """
    script, _, transcript = data.partition(b"\n")
    conn = ClientConnection(
        max_line_length=MAX_LINE_LENGTH,
        max_reply_lines=MAX_REPLY_LINES,
        max_buffer_size=MAX_BUFFER_SIZE,
        lmtp=b"L" in script,
    )
    server = _Server(transcript)
    try:
        for value in script:
            ACTIONS[value](conn, server)
        _feed_rest(conn, server)
        _close(conn, server)
    except ProtocolError as exc:
        assert conn.state is State.ERROR, conn.state
        try:
            conn.send(Noop())
        except ProtocolError:
            pass
        else:
            raise AssertionError("a command was accepted after a protocol error") from None
        return server.events, exc
    assert conn.state is not State.ERROR, conn.state
    return server.events, None


# -- header injection -------------------------------------------------------------------

_FOLDED_LINE = re.compile(rb"[!-9;-~]+:[^\r\n]*|[ \t][^\r\n]*")  # a header line, or folded


def _build(options: bytes, value: str) -> email.message.Message | None:
    msg: email.message.Message
    if b"e" in options or b"r" in options:
        msg = email.message.EmailMessage()
        msg["From"] = "a@example.org"
        msg["To"] = "b@example.org"
        try:
            if b"r" in options:
                msg.set_raw("Subject", value)
            else:
                msg["Subject"] = value
            msg.set_content("body\n")
        except (ValueError, TypeError, IndexError, email.errors.MessageError):
            return None  # refused by the email package itself, when set
        return msg
    msg = MIMEText("body\n") if b"m" in options else email.message.Message()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.org"
    subject: object = value
    if b"h" in options:
        try:
            subject = email.header.Header(value, charset="utf-8", header_name="Subject")
        except (ValueError, UnicodeError, email.errors.MessageError):
            return None
    msg["Subject"] = subject  # type: ignore[assignment]
    if b"m" not in options:
        msg.set_payload("body\n")
    return msg


def _value_folds(value: str) -> bool:
    """Every line break in the value (CRLF, CR or LF) is followed by SP or HTAB."""
    return all(piece[:1] in (" ", "\t") for piece in re.split(r"\r\n|\r|\n", value)[1:])


def _header_block_is_sound(written: bytes, names: list[str]) -> bool:
    head, separator, _ = written.partition(b"\r\n\r\n")
    if not separator:
        return False
    lines = head.split(b"\r\n")
    if not all(_FOLDED_LINE.fullmatch(line) for line in lines) or lines[0][:1] in (b" ", b"\t"):
        return False
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(written)
    return [name.lower() for name in parsed] == [name.lower() for name in names]


def check_header(data: bytes) -> bytes | None:
    """Flatten a message with this Subject: refused (None) or a sound header block (bytes)."""
    options, _, raw = data.partition(b"\n")
    value = raw.decode("utf-8", "surrogateescape")
    msg = _build(options, value)
    if msg is None:
        return None
    utf8 = b"u" in options
    cte_type = "7bit" if b"7" in options else "8bit"
    names = [name for name in msg if name.lower() not in ("bcc", "resent-bcc")]
    if isinstance(msg, email.message.EmailMessage):
        policy: email.policy.Policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
    else:
        policy = email.policy.compat32.clone(linesep="\r\n")
    if cte_type != "8bit":
        policy = policy.clone(cte_type=cte_type)
    try:
        with io.BytesIO() as buffer:
            email.generator.BytesGenerator(buffer, policy=policy).flatten(msg)
            unchecked: bytes | None = buffer.getvalue()
    except Exception as exc:  # the email package cannot write it, with or without the check
        unchecked = None
        expected_error: type[BaseException] = type(exc)
    try:
        written = flatten_message(msg, utf8=utf8, cte_type=cte_type)
    except ValueError as exc:
        assert "header 'Subject'" in str(exc) or unchecked is None, exc
        # Never a false alarm: what is refused has a line break that does not fold it in
        # the value as set, or the email package writes it unsoundly.
        assert (
            not _value_folds(value)
            or unchecked is None
            or not _header_block_is_sound(unchecked, names)
        ), unchecked
        return None
    except Exception as exc:
        assert unchecked is None and isinstance(exc, expected_error), exc
        return None
    assert unchecked is not None
    assert written == unchecked  # byte for byte what the email package writes
    assert _header_block_is_sound(written, names), written
    return written
