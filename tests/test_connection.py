"""ClientConnection: the state table, pipelining rules, STARTTLS handoff, errors."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    LocalProtocolError,
    Mail,
    Noop,
    ProtocolError,
    Quit,
    Rcpt,
    RemoteProtocolError,
    Rset,
    Sendable,
    StartTLS,
    State,
    Vrfy,
)
from smtp_core._state import SEND_TRIGGERS, TRANSITIONS

EHLO_REPLY = b"250-smtp.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000\r\n250-CHUNKING\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN\r\n"


def events(conn: ClientConnection, data: bytes = b"") -> list[Event]:
    if data:
        conn.receive_data(data)
    out = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert isinstance(event, Event)
        out.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return out


def ready(ehlo_reply: bytes = EHLO_REPLY) -> ClientConnection:
    conn = ClientConnection(local_hostname="client.test")
    [greeting] = events(conn, b"220 smtp.test ESMTP\r\n")
    assert isinstance(greeting, Greeting) and greeting.code == 220
    assert conn.state is State.HELLO
    conn.send(Ehlo("client.test"))
    [reply] = events(conn, ehlo_reply)
    assert isinstance(reply, CommandReply) and reply.code == 250
    assert conn.state is State.READY
    return conn


def test_greeting_refused_and_421() -> None:
    conn = ClientConnection()
    [event] = events(conn, b"554 5.3.2 go away\r\n")
    assert isinstance(event, Greeting) and event.code == 554
    assert conn.state is State.REJECTED
    with pytest.raises(LocalProtocolError):
        ClientConnection().send(Ehlo("x.org"))
    conn.send(Quit())
    conn = ClientConnection()
    events(conn, b"421 busy\r\n")
    assert conn.state is State.CLOSED


def test_capabilities_and_enhanced_codes() -> None:
    conn = ready()
    caps = conn.capabilities
    assert caps.pipelining and caps.size == 1000 and caps.auth_mechanisms == ("PLAIN", "LOGIN")
    assert conn.extended
    conn.send(Noop())
    [reply] = events(conn, b"250 2.0.0 ok\r\n")
    assert isinstance(reply, CommandReply)
    assert str(reply.reply.enhanced_status) == "2.0.0"


def test_helo_fallback() -> None:
    conn = ClientConnection()
    events(conn, b"220 old server\r\n")
    conn.send(Ehlo("c.test"))
    events(conn, b"502 what\r\n")
    assert conn.state is State.HELLO
    conn.send(Helo("c.test"))
    events(conn, b"250 hi\r\n")
    assert conn.state is State.READY
    assert not conn.extended and len(conn.capabilities) == 0
    with pytest.raises(LocalProtocolError, match="did not advertise SIZE"):
        conn.send(Mail("a@b.org", ("SIZE=10",)))
    assert conn.state is State.ERROR


def test_pipelined_transaction() -> None:
    conn = ready()
    data = b"".join(conn.send(c) for c in (Mail("a@b.org"), Rcpt("b@c.org"), Rcpt("x@c.org"), Data()))
    assert data == b"MAIL FROM:<a@b.org>\r\nRCPT TO:<b@c.org>\r\nRCPT TO:<x@c.org>\r\nDATA\r\n"
    assert conn.state is State.DATA
    assert conn.awaiting_replies == len(conn.pending) == 4
    replies = events(conn, b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n")
    assert conn.awaiting_replies == 0
    assert [type(r.command).__name__ for r in replies if isinstance(r, CommandReply)] == ["Mail", "Rcpt", "Rcpt", "Data"]
    assert conn.state is State.CONTENT
    assert conn.send(Content(b".x\n")) == b"..x\r\n"
    assert conn.send(EndOfData()) == b".\r\n"
    assert conn.state is State.READY
    # The next transaction may follow the end of data at once (RFC 2920).
    conn.send(Mail("a@b.org"))
    [final, mail] = events(conn, b"250 queued\r\n250 ok\r\n")
    assert isinstance(final, CommandReply) and isinstance(final.command, EndOfData)
    assert isinstance(mail, CommandReply) and isinstance(mail.command, Mail)


@pytest.mark.parametrize("mail_code", [b"250", b"451"])
def test_next_reply_moves_the_machine_as_next_event_does(mail_code: bytes) -> None:
    """The same session read with next_reply() and next_event(): same replies, same states."""
    incoming = [
        b"220 smtp.test ESMTP\r\n",
        EHLO_REPLY,
        mail_code + b" 2.1.0 sender\r\n250 2.1.5 ok\r\n550 5.1.1 no\r\n354 go\r\n",
        b"250 2.0.0 queued\r\n",
        b"221 bye\r\n",
        b"",
    ]
    sends: list[list[Sendable]] = [
        [Ehlo("client.test")],
        [Mail("a@b.org"), Rcpt("b@c.org"), Rcpt("x@c.org"), Data()],
        [Content(b"hi\r\n"), EndOfData()],
        [Quit()],
        [],
        [],
    ]
    traces = []
    for use_next_reply in (False, True):
        conn = ClientConnection(local_hostname="client.test")
        trace: list[object] = []
        for data, items in zip(incoming, sends, strict=True):
            conn.receive_data(data)
            while True:
                if use_next_reply:
                    item = conn.next_reply()
                else:
                    event = conn.next_event()
                    item = event.reply if isinstance(event, (Greeting, CommandReply)) else event
                if item is NEED_DATA:
                    break
                trace.append((item, conn.state, conn.awaiting_replies))
                if isinstance(item, ConnectionClosed):
                    break
            for sendable in items:
                conn.send(sendable)
        traces.append(trace)
    assert traces[0] == traces[1]
    assert traces[0][-1] == (ConnectionClosed(expected=True), State.CLOSED, 0)


def test_without_pipelining_one_command_at_a_time() -> None:
    conn = ready(b"250-smtp.test\r\n250 8BITMIME\r\n")
    conn.send(Mail("a@b.org"))
    with pytest.raises(LocalProtocolError, match="did not advertise PIPELINING"):
        conn.send(Rcpt("b@c.org"))
    assert conn.state is State.ERROR


@pytest.mark.parametrize("first", [Noop(), Vrfy("x"), Ehlo("c.test")])
def test_group_last_commands_block_even_with_pipelining(first: Sendable) -> None:
    conn = ready()
    conn.send(first)
    with pytest.raises(LocalProtocolError, match="must end a PIPELINING group"):
        conn.send(Rset())


def test_mail_failure_returns_to_ready() -> None:
    conn = ready()
    conn.send(Mail("a@b.org"))
    events(conn, b"550 no\r\n")
    assert conn.state is State.READY
    with pytest.raises(LocalProtocolError, match="cannot send RCPT in state READY"):
        conn.send(Rcpt("b@c.org"))


def test_pipelined_mail_failure_waits_for_data_reply() -> None:
    conn = ready()
    for c in (Mail("a@b.org"), Rcpt("b@c.org"), Data()):
        conn.send(c)
    events(conn, b"550 no\r\n554 no valid recipients\r\n503 bad sequence\r\n")
    assert conn.state is State.READY


def test_bdat() -> None:
    conn = ready()
    conn.send(Mail("a@b.org"))
    conn.send(Rcpt("b@c.org"))
    assert conn.send(Bdat(b"line\r")) == b"BDAT 4\r\nline"
    assert conn.state is State.BDAT
    assert conn.send(Bdat(b"\nnext\n", last=True)) == b"BDAT 8 LAST\r\n\r\nnext\r\n"
    assert conn.state is State.READY
    events(conn, b"250 ok\r\n250 ok\r\n250 chunk\r\n250 done\r\n")
    conn = ready(b"250-smtp.test\r\n250 PIPELINING\r\n")
    conn.send(Mail("a@b.org"))
    events(conn, b"250 ok\r\n")
    conn.send(Rcpt("a@b.org"))
    events(conn, b"250 ok\r\n")
    with pytest.raises(LocalProtocolError, match="CHUNKING"):
        conn.send(Bdat(b"x", last=True))


def test_auth_challenges_and_limit() -> None:
    conn = ready()
    conn.send(Auth("LOGIN", b"alice"))
    events(conn, b"334 UGFzc3dvcmQ6\r\n")
    assert conn.state is State.AUTH_CHALLENGE
    conn.send(AuthResponse(b"pw"))
    events(conn, b"235 ok\r\n")
    assert conn.state is State.READY

    conn = ClientConnection(max_auth_rounds=2)
    events(conn, b"220 hi\r\n")
    conn.send(Ehlo("c.test"))
    events(conn, EHLO_REPLY)
    conn.send(Auth("PLAIN"))
    for _ in range(2):
        events(conn, b"334 \r\n")
        conn.send(AuthResponse(b""))
    with pytest.raises(RemoteProtocolError, match="max_auth_rounds"):
        events(conn, b"334 \r\n")
    assert conn.state is State.ERROR


def test_starttls_handoff() -> None:
    conn = ready()
    conn.send(StartTLS())
    events(conn, b"220 go ahead\r\n")
    assert conn.state is State.TLS_HANDSHAKE
    conn.tls_established()
    assert conn.state is State.HELLO and conn.tls_active
    assert len(conn.capabilities) == 0
    with pytest.raises(LocalProtocolError):
        conn.send(Mail("a@b.org"))
    conn = ready()
    conn.send(StartTLS())
    events(conn, b"220 go ahead\r\n")
    conn.tls_established()
    conn.send(Ehlo("c.test"))
    events(conn, b"250-smtp.test\r\n250 AUTH XOAUTH2\r\n")
    assert conn.capabilities.auth_mechanisms == ("XOAUTH2",) and not conn.capabilities.starttls
    with pytest.raises(LocalProtocolError, match="already active"):
        conn.send(StartTLS())


def test_starttls_response_injection_same_chunk() -> None:
    conn = ready()
    conn.send(StartTLS())
    with pytest.raises(RemoteProtocolError, match="injection"):
        events(conn, b"220 go ahead\r\n250-injected\r\n")
    assert conn.state is State.ERROR


def test_starttls_response_injection_later_chunk() -> None:
    conn = ready()
    conn.send(StartTLS())
    events(conn, b"220 go ahead\r\n")
    with pytest.raises(RemoteProtocolError, match="injection"):
        conn.receive_data(b"250 injected\r\n")


def test_starttls_refused() -> None:
    conn = ready()
    conn.send(StartTLS())
    events(conn, b"454 not now\r\n")
    assert conn.state is State.READY and not conn.tls_active


@pytest.mark.parametrize("early", [b"250 early\r\n", b"250-part of a reply\r\n", b"2"])
def test_reply_before_the_end_of_data_is_refused(early: bytes) -> None:
    """No reply is due while the content goes out: one that came before its end would
    be taken as the message's final reply, before the server has seen the message."""
    conn = ready()
    for c in (Mail("a@b.org"), Rcpt("b@c.org"), Data()):
        conn.send(c)
    events(conn, b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert conn.state is State.CONTENT
    conn.receive_data(early)  # not read yet: the client reads nothing while it sends
    conn.send(Content(b"hi\r\n"))
    with pytest.raises(RemoteProtocolError, match="before the end of the message data"):
        conn.send(EndOfData())


def test_unsolicited_replies() -> None:
    conn = ready()
    with pytest.raises(RemoteProtocolError, match="unsolicited"):
        events(conn, b"250 surprise\r\n")
    conn = ready()
    [event] = events(conn, b"421 shutting down\r\n")
    assert isinstance(event, CommandReply) and event.command is None and event.code == 421
    assert conn.state is State.CLOSED


def test_421_to_pipelined_command() -> None:
    conn = ready()
    for c in (Mail("a@b.org"), Rcpt("b@c.org"), Data()):
        conn.send(c)
    [event] = events(conn, b"421 bye\r\n")
    assert isinstance(event, CommandReply) and isinstance(event.command, Mail)
    assert conn.state is State.CLOSED and conn.pending == ()


def test_eof() -> None:
    conn = ready()
    conn.receive_data(b"")
    [event] = events(conn)
    assert event == ConnectionClosed(expected=False)
    assert conn.state is State.CLOSED
    conn = ready()
    conn.send(Quit())
    [bye] = events(conn, b"221 bye\r\n")
    conn.receive_data(b"")
    [closed] = events(conn)
    assert isinstance(bye, CommandReply) and closed == ConnectionClosed(expected=True)


def test_error_state_is_final() -> None:
    conn = ready()
    with pytest.raises(RemoteProtocolError):
        events(conn, b"999 nonsense\r\n")
    assert conn.state is State.ERROR
    for call in (lambda: conn.send(Noop()), lambda: conn.next_event(), lambda: conn.receive_data(b"x"), conn.tls_established):
        with pytest.raises(ProtocolError):
            call()


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(State)
    for row in TRANSITIONS.values():
        assert all(isinstance(target, State) for target in row.values())
    assert SEND_TRIGGERS


# -- every (state, command) pair: a legal transition or LocalProtocolError --------------

PATHS: dict[State, Callable[[], ClientConnection]] = {}


def _path(state: State) -> Callable[[Callable[[], ClientConnection]], Callable[[], ClientConnection]]:
    def register(fn: Callable[[], ClientConnection]) -> Callable[[], ClientConnection]:
        PATHS[state] = fn
        return fn

    return register


@_path(State.GREETING)
def _greeting() -> ClientConnection:
    return ClientConnection()


@_path(State.REJECTED)
def _rejected() -> ClientConnection:
    conn = ClientConnection()
    events(conn, b"554 no\r\n")
    return conn


@_path(State.HELLO)
def _hello() -> ClientConnection:
    conn = ClientConnection()
    events(conn, b"220 hi\r\n")
    return conn


PATHS[State.READY] = ready


@_path(State.MAIL)
def _mail() -> ClientConnection:
    conn = ready()
    conn.send(Mail("a@b.org"))
    events(conn, b"250 ok\r\n")
    return conn


@_path(State.RCPT)
def _rcpt() -> ClientConnection:
    conn = _mail()
    conn.send(Rcpt("b@c.org"))
    events(conn, b"250 ok\r\n")
    return conn


@_path(State.DATA)
def _data() -> ClientConnection:
    conn = _rcpt()
    conn.send(Data())
    return conn


@_path(State.CONTENT)
def _content() -> ClientConnection:
    conn = _data()
    events(conn, b"354 go\r\n")
    return conn


@_path(State.BDAT)
def _bdat() -> ClientConnection:
    conn = _rcpt()
    conn.send(Bdat(b"x"))
    events(conn, b"250 ok\r\n")
    return conn


@_path(State.AUTH)
def _auth() -> ClientConnection:
    conn = ready()
    conn.send(Auth("PLAIN"))
    return conn


@_path(State.AUTH_CHALLENGE)
def _auth_challenge() -> ClientConnection:
    conn = _auth()
    events(conn, b"334 \r\n")
    return conn


@_path(State.STARTTLS)
def _starttls() -> ClientConnection:
    conn = ready()
    conn.send(StartTLS())
    return conn


@_path(State.TLS_HANDSHAKE)
def _tls_handshake() -> ClientConnection:
    conn = _starttls()
    events(conn, b"220 go\r\n")
    return conn


@_path(State.QUIT)
def _quit() -> ClientConnection:
    conn = ready()
    conn.send(Quit())
    return conn


@_path(State.CLOSED)
def _closed() -> ClientConnection:
    conn = _quit()
    events(conn, b"221 bye\r\n")
    return conn


@_path(State.ERROR)
def _error() -> ClientConnection:
    conn = ready()
    with pytest.raises(RemoteProtocolError):
        events(conn, b"xyz\r\n")
    return conn


ITEMS: list[Sendable] = [
    Ehlo("c.test"),
    Helo("c.test"),
    Mail("a@b.org"),
    Rcpt("b@c.org"),
    Data(),
    Content(b"x"),
    EndOfData(),
    Bdat(b"x"),
    Bdat(b"x", last=True),
    Rset(),
    Noop(),
    Vrfy("x"),
    Auth("PLAIN", b"\0u\0p"),
    AuthResponse(b"x"),
    StartTLS(),
    Quit(),
]


def test_every_state_is_reachable() -> None:
    for state, path in PATHS.items():
        assert path().state is state
    assert set(PATHS) == set(State)


@settings(max_examples=400)
@given(st.sampled_from(sorted(PATHS, key=lambda s: s.name)), st.sampled_from(range(len(ITEMS))))
def test_every_state_command_pair(state: State, index: int) -> None:
    conn = PATHS[state]()
    item = ITEMS[index]
    try:
        data = conn.send(item)
    except LocalProtocolError:
        assert conn.state is State.ERROR
        return
    assert isinstance(data, bytes) and data
    assert conn.state is not State.ERROR


@settings(max_examples=300)
@given(st.binary(max_size=200), st.lists(st.integers(1, 40), max_size=10), st.booleans())
def test_any_bytes_give_events_or_remote_error(data: bytes, sizes: list[int], pipelined: bool) -> None:
    conn = ready()
    if pipelined:
        for c in (Mail("a@b.org"), Rcpt("b@c.org"), Data()):
            conn.send(c)
    else:
        conn.send(Noop())
    chunks, start = [], 0
    for size in sizes:
        chunks.append(data[start : start + size])
        start += size
    chunks.append(data[start:])
    try:
        for chunk in chunks:
            if chunk:
                conn.receive_data(chunk)
            for event in events(conn):
                assert isinstance(event, (Greeting, CommandReply, ConnectionClosed))
        conn.receive_data(b"")
        events(conn)
    except RemoteProtocolError:
        assert conn.state is State.ERROR


FORBIDDEN = {"asyncio", "anyio", "trio", "socket", "ssl", "selectors"}


def test_core_imports_no_io() -> None:
    core = Path(__file__).resolve().parent.parent / "smtp_core"
    for module in core.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"
    code = f"import sys, smtp_core, smtp_core.flows; print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_has_unparsed_input_says_whether_next_event_has_anything() -> None:
    conn = ready()
    assert not conn.has_unparsed_input  # every byte parsed: next_event() needs data
    conn.receive_data(b"42")  # part of a line the server sent unasked
    assert conn.has_unparsed_input
    conn = ready()
    conn.receive_data(b"")  # the server closed
    assert conn.has_unparsed_input
    [closed] = events(conn)
    assert isinstance(closed, ConnectionClosed)
