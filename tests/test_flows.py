"""The I/O-free flows, driven by a scripted transcript instead of a network."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from smtp_core import (
    ClientConnection,
    Plain,
    RemoteProtocolError,
    SMTPDataError,
    SMTPHeloError,
    SMTPRecipientsRefused,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    State,
)
from smtp_core.flows import (
    Flow,
    Read,
    UpgradeTLS,
    Write,
    authenticate,
    greeting,
    hello,
    mail_transaction,
    starttls,
)


class Script:
    """Answers each Read with the next scripted server chunk; records every Write."""

    def __init__(self, *server_chunks: bytes) -> None:
        self.chunks = list(server_chunks)
        self.writes: list[bytes] = []
        self.tls_upgrades: list[str | None] = []

    def run(self, flow: Flow[Any]) -> Any:
        value: Any = None
        while True:
            try:
                request = flow.send(value)
            except StopIteration as stop:
                return stop.value
            if isinstance(request, Write):
                self.writes.append(request.data)
                value = None
            elif isinstance(request, Read):
                value = self.chunks.pop(0) if self.chunks else b""
            elif isinstance(request, UpgradeTLS):
                self.tls_upgrades.append(request.server_hostname)
                value = None


def session(capabilities: bytes = b"250-smtp.test\r\n250 PIPELINING\r\n") -> tuple[ClientConnection, Script]:
    conn = ClientConnection(local_hostname="client.test")
    script = Script(b"220 hi\r\n", capabilities)
    script.run(greeting(conn))
    script.run(hello(conn))
    script.writes.clear()
    return conn, script


def test_pipelined_transaction_one_write() -> None:
    conn, script = session()
    script.chunks = [b"250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n", b"250 queued\r\n"]
    result = script.run(mail_transaction(conn, "a@b.org", ["x@b.org", "y@b.org"], b"hi\n"))
    assert script.writes == [
        b"MAIL FROM:<a@b.org>\r\nRCPT TO:<x@b.org>\r\nRCPT TO:<y@b.org>\r\nDATA\r\n",
        b"hi\r\n.\r\n",
    ]
    assert result.accepted == ["x@b.org"]
    assert list(result.refused) == ["y@b.org"]
    assert result.data_reply.message == "queued"


def test_unpipelined_transaction_waits_for_each_reply() -> None:
    conn, script = session(b"250 smtp.test\r\n")
    script.chunks = [b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n", b"250 queued\r\n"]
    script.run(mail_transaction(conn, "a@b.org", ["x@b.org"], b"hi"))
    assert script.writes == [b"MAIL FROM:<a@b.org>\r\n", b"RCPT TO:<x@b.org>\r\n", b"DATA\r\n", b"hi\r\n.\r\n"]


def test_sender_refused_resets() -> None:
    conn, script = session()
    script.chunks = [b"553 no\r\n503 no\r\n503 no\r\n", b"250 reset\r\n"]
    with pytest.raises(SMTPSenderRefused) as info:
        script.run(mail_transaction(conn, "a@b.org", ["x@b.org"], b"hi"))
    assert info.value.args == (553, "no", "a@b.org")
    assert script.writes[-1] == b"RSET\r\n"
    assert conn.state is State.READY


def test_all_refused_but_data_accepted_sends_empty_end() -> None:
    conn, script = session()
    script.chunks = [b"250 ok\r\n550 no\r\n354 go anyway\r\n", b"554 no valid recipients\r\n", b"250 reset\r\n"]
    with pytest.raises(SMTPRecipientsRefused) as info:
        script.run(mail_transaction(conn, "a@b.org", ["x@b.org"], b"secret content"))
    assert [e.recipient for e in info.value.recipients] == ["x@b.org"]
    assert script.writes[1:] == [b".\r\n", b"RSET\r\n"]
    assert not any(b"secret" in w for w in script.writes)


def test_data_refused() -> None:
    conn, script = session()
    script.chunks = [b"250 ok\r\n250 ok\r\n354 go\r\n", b"552 too big\r\n", b"250 reset\r\n"]
    with pytest.raises(SMTPDataError):
        script.run(mail_transaction(conn, "a@b.org", ["x@b.org"], b"hi"))


def test_421_in_pipelined_group() -> None:
    conn, script = session()
    script.chunks = [b"421 closing\r\n"]
    with pytest.raises(SMTPSenderRefused) as info:
        script.run(mail_transaction(conn, "a@b.org", ["x@b.org"], b"hi"))
    assert info.value.code == 421
    assert conn.state is State.CLOSED


def test_disconnect() -> None:
    conn, script = session()
    script.chunks = [b"250 ok\r\n"]
    with pytest.raises(SMTPServerDisconnected):
        script.run(mail_transaction(conn, "a@b.org", ["x@b.org"], b"hi"))


def test_hello_falls_back_to_helo() -> None:
    conn = ClientConnection(local_hostname="client.test")
    script = Script(b"220 hi\r\n", b"502 no ehlo\r\n", b"250 hello\r\n")
    script.run(greeting(conn))
    script.run(hello(conn))
    assert script.writes == [b"EHLO client.test\r\n", b"HELO client.test\r\n"]
    assert not conn.extended


def test_hello_421_is_not_retried() -> None:
    conn = ClientConnection(local_hostname="client.test")
    script = Script(b"220 hi\r\n", b"421 bye\r\n")
    script.run(greeting(conn))
    with pytest.raises(SMTPHeloError):
        script.run(hello(conn))
    assert script.writes == [b"EHLO client.test\r\n"]


def test_starttls_yields_upgrade() -> None:
    conn, script = session(b"250-smtp.test\r\n250 STARTTLS\r\n")
    script.chunks = [b"220 ready\r\n"]
    script.run(starttls(conn, "smtp.test"))
    assert script.tls_upgrades == ["smtp.test"]
    assert conn.state is State.HELLO and conn.tls_active


def test_auth_invalid_challenge_cancels() -> None:
    conn, script = session(b"250-smtp.test\r\n250 AUTH PLAIN\r\n")
    script.chunks = [b"334 !!!notbase64\r\n", b"501 cancelled\r\n"]
    with pytest.raises(RemoteProtocolError, match="invalid base64"):
        script.run(authenticate(conn, Plain("u", "p")))
    assert script.writes[-1] == b"*\r\n"


def test_trace_redacts_credentials(caplog: pytest.LogCaptureFixture) -> None:
    conn, script = session(b"250-smtp.test\r\n250 AUTH PLAIN\r\n")
    script.chunks = [b"235 ok\r\n"]
    with caplog.at_level(logging.DEBUG, logger="smtp_sansio.protocol"):
        script.run(authenticate(conn, Plain("alice", "hunter2")))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "C: AUTH PLAIN <redacted>" in text and "S: 235 ok" in text
    assert "hunter2" not in text and "aHVudGVyMg" not in text and "AGFsaWNl" not in text


def test_trace_is_asked_once_per_write_and_shows_every_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the trace is on is asked at each write, not at each line: the lines of
    that write and of the replies it brings back follow that answer, so turning the
    trace on between transactions shows every line of the next one, and off, none."""
    conn, script = session()
    trace = logging.getLogger("smtp_sansio.protocol")
    on = True
    asked: list[int] = []
    lines: list[str] = []

    def is_enabled_for(level: int) -> bool:
        asked.append(level)
        return on

    monkeypatch.setattr(trace, "isEnabledFor", is_enabled_for)
    monkeypatch.setattr(trace, "debug", lambda msg, *args: lines.append(msg % args))

    def transaction() -> None:
        script.chunks = [b"250 ok\r\n250 ok\r\n354 go\r\n", b"250 queued\r\n"]
        script.run(mail_transaction(conn, "a@b.org", ["x@b.org"], b"hi\n"))

    transaction()
    assert lines == [
        "C: MAIL FROM:<a@b.org>",
        "C: RCPT TO:<x@b.org>",
        "C: DATA",
        "S: 250 ok",
        "S: 250 ok",
        "S: 354 go",
        "C: <3 bytes of message content>",
        "C: .",
        "S: 250 queued",
    ]
    assert asked == [logging.DEBUG, logging.DEBUG]  # the envelope's write and the content's
    on = False
    lines.clear()
    transaction()
    assert lines == [] and len(asked) == 4
