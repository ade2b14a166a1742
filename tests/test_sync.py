"""smtp_sync: smtplib's API on smtp_core over blocking sockets, against loopback servers."""

from __future__ import annotations

import email.message
import logging
import select
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import smtp_core
import smtp_sync

from .conftest import Certs
from .servers import (
    Close,
    Expect,
    ExpectBdat,
    ExpectBuffered,
    ExpectData,
    Hang,
    Send,
    SendSlowly,
    greet_pipelining,
    session_prefix,
)

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n.a line with a dot\r\n"


def message(**headers: str) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    for name, value in headers.items():
        msg[name] = value
    msg.set_content("hello from smtp_sync\n")
    return msg


# -- the exceptions ----------------------------------------------------------------------

PAIRS = [
    ("SMTPException", smtplib.SMTPException, smtp_core.SMTPException),
    ("SMTPNotSupportedError", smtplib.SMTPNotSupportedError, smtp_core.SMTPNotSupported),
    ("SMTPServerDisconnected", smtplib.SMTPServerDisconnected, smtp_core.SMTPServerDisconnected),
    ("SMTPResponseException", smtplib.SMTPResponseException, smtp_core.SMTPResponseException),
    ("SMTPSenderRefused", smtplib.SMTPSenderRefused, smtp_core.SMTPSenderRefused),
    ("SMTPRecipientsRefused", smtplib.SMTPRecipientsRefused, smtp_core.SMTPRecipientsRefused),
    ("SMTPDataError", smtplib.SMTPDataError, smtp_core.SMTPDataError),
    ("SMTPConnectError", smtplib.SMTPConnectError, smtp_core.SMTPConnectError),
    ("SMTPHeloError", smtplib.SMTPHeloError, smtp_core.SMTPHeloError),
    ("SMTPAuthenticationError", smtplib.SMTPAuthenticationError, smtp_core.SMTPAuthenticationError),
]


@pytest.mark.parametrize(("name", "stdlib", "core"), PAIRS, ids=[p[0] for p in PAIRS])
def test_exceptions_are_smtplibs_and_ours(name: str, stdlib: type, core: type) -> None:
    cls = getattr(smtp_sync, name)
    assert issubclass(cls, stdlib) and issubclass(cls, core)
    assert issubclass(cls, smtplib.SMTPException) and issubclass(cls, OSError)


def test_exception_constructors_and_attributes_match_smtplib() -> None:
    pairs: list[tuple[Any, Any]] = [
        (smtp_sync.SMTPResponseException(550, b"no"), smtplib.SMTPResponseException(550, b"no")),
        (smtp_sync.SMTPSenderRefused(553, b"bad", "a@x.org"), smtplib.SMTPSenderRefused(553, b"bad", "a@x.org")),
        (smtp_sync.SMTPRecipientsRefused({"b@x.org": (550, b"no")}), smtplib.SMTPRecipientsRefused({"b@x.org": (550, b"no")})),
        (smtp_sync.SMTPDataError(554, b"spam"), smtplib.SMTPDataError(554, b"spam")),
        (smtp_sync.SMTPServerDisconnected("gone"), smtplib.SMTPServerDisconnected("gone")),
    ]
    for ours, theirs in pairs:
        assert ours.args == theirs.args
        assert str(ours) == str(theirs)
        for attribute in ("smtp_code", "smtp_error", "sender", "recipients"):
            assert getattr(ours, attribute, None) == getattr(theirs, attribute, None)
    refused = pairs[1][0]
    assert (refused.code, refused.message, refused.sender) == (553, "bad", "a@x.org")  # ours too
    timeout = smtp_sync.SMTPTimeoutError("slow")
    assert isinstance(timeout, TimeoutError) and isinstance(timeout, smtplib.SMTPServerDisconnected)


# -- sending ---------------------------------------------------------------------------------


def test_sendmail_returns_refused_recipients(smtpd: Any) -> None:
    server = smtpd(refuse_recipients={"c@example.org": "550 5.1.1 no such user"})
    with smtp_sync.SMTP(server.host, server.port) as smtp:
        refused = smtp.sendmail("a@example.org", ["b@example.org", "c@example.org"], MESSAGE)
        assert refused == {"c@example.org": (550, b"5.1.1 no such user")}
        assert smtp.does_esmtp and smtp.has_extn("SIZE") and smtp.has_extn("8bitmime")
        assert isinstance(smtp.ehlo_resp, bytes) and smtp.ehlo_resp.startswith(b"smtp.test")
        assert smtp.noop() == (250, b"OK")
    [got] = server.messages
    assert got.rcpt_tos == ["b@example.org"]
    assert got.content == MESSAGE  # dot-stuffed on the wire, unstuffed by the server
    assert got.mail_options == [f"SIZE={len(MESSAGE)}"]
    assert server.handler.commands[-1][1] == "QUIT"  # the context manager sent QUIT


def test_refusals_raise_smtplibs_exceptions_and_leave_the_client_usable(smtpd: Any) -> None:
    server = smtpd(
        refuse_senders={"bad@example.org": "553 5.1.8 sender refused"},
        refuse_recipients={"x@example.org": "550 no", "y@example.org": "551 not here"},
    )
    smtp = smtp_sync.SMTP(server.host, server.port)
    try:
        smtp.sendmail("bad@example.org", ["b@example.org"], MESSAGE)
    except smtplib.SMTPSenderRefused as exc:  # the stdlib's class catches it
        assert (exc.smtp_code, exc.smtp_error, exc.sender) == (553, b"5.1.8 sender refused", "bad@example.org")
        assert isinstance(exc, smtp_core.SMTPSenderRefused)
    else:
        pytest.fail("no exception")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        smtp.sendmail("a@example.org", ["x@example.org", "y@example.org"], MESSAGE)
    assert info.value.recipients == {"x@example.org": (550, b"no"), "y@example.org": (551, b"not here")}
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        smtp.sendmail("a@example.org", [], MESSAGE)  # as smtplib: nothing to send to
    assert info.value.recipients == {}
    assert smtp.sendmail("a@example.org", "b@example.org", MESSAGE) == {}
    smtp.quit()
    assert smtp.sock is None
    assert len(server.messages) == 1


def test_data_error(smtpd: Any) -> None:
    server = smtpd(data_reply="554 5.7.1 looks like spam")
    with smtp_sync.SMTP(server.host, server.port) as smtp:
        try:
            smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        except smtplib.SMTPException as exc:  # the broadest stdlib handler
            assert isinstance(exc, smtplib.SMTPDataError)
            assert (exc.smtp_code, exc.smtp_error) == (554, b"5.7.1 looks like spam")
        assert smtp.noop()[0] == 250


def test_send_message_uses_headers_and_drops_bcc(smtpd: Any) -> None:
    server = smtpd()
    msg = message(From="Alice <a@example.org>", To="b@example.org", Cc="c@example.org", Bcc="d@example.org", Subject="x")
    with smtp_sync.SMTP(server.host, server.port) as smtp:
        assert smtp.send_message(msg) == {}
    [got] = server.messages
    assert got.mail_from == "a@example.org"
    assert got.rcpt_tos == ["b@example.org", "c@example.org", "d@example.org"]
    assert b"Bcc" not in got.content and b"hello from smtp_sync" in got.content


def test_addresses_are_validated_never_repaired(scripted: Any) -> None:
    server = scripted([*session_prefix("PIPELINING")])
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5)
    # smtplib would send MAIL FROM:<a@example.org> for this, silently.
    with pytest.raises(ValueError, match="display name"):
        smtp.sendmail("Alice <a@example.org>", ["b@example.org"], MESSAGE)
    with pytest.raises(ValueError):
        smtp.sendmail("a@example.org", ["b@example.org>\r\nRCPT TO:<c@example.org"], MESSAGE)
    smtp.close()
    server.stop()
    assert [line.split()[0] for line in server.lines] == [b"EHLO"]  # nothing else was sent


def test_size_is_checked_before_any_content(scripted: Any, tmp_path: Path) -> None:
    server = scripted([*session_prefix("SIZE 1000", "PIPELINING")])
    big = tmp_path / "big.eml"
    big.write_bytes(b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n")
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5)
    with pytest.raises(smtplib.SMTPSenderRefused) as info:
        smtp.sendmail("a@example.org", ["b@example.org"], b"y" * 5000)
    assert info.value.smtp_code == 552
    with big.open("rb") as fp, pytest.raises(smtplib.SMTPSenderRefused, match="at least"):
        smtp.sendmail("a@example.org", ["b@example.org"], fp)  # its size on disk, unread
    smtp.close()
    server.stop()
    assert [line.split()[0] for line in server.lines] == [b"EHLO"]


def test_pipelining_sends_the_envelope_in_one_write(scripted: Any) -> None:
    server = scripted(
        [
            *session_prefix("PIPELINING"),
            Expect(b"MAIL"),
            ExpectBuffered(b"RCPT"),
            ExpectBuffered(b"RCPT"),
            ExpectBuffered(b"DATA"),
            Send(b"250 sender ok\r\n250 rcpt ok\r\n550 no such user\r\n354 go\r\n"),
            ExpectData(),
            Send(b"250 queued\r\n"),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
        ]
    )
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5)
    refused = smtp.sendmail("a@example.org", ["b@example.org", "c@example.org"], MESSAGE)
    assert refused == {"c@example.org": (550, b"no such user")}
    assert smtp.quit() == (221, b"bye")
    assert server.buffered == [True, True, True]  # RCPT, RCPT, DATA came with MAIL
    assert server.lines[1:5] == [b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.org>\r\n", b"RCPT TO:<c@example.org>\r\n", b"DATA\r\n"]


def test_bdat_with_the_envelope_when_chunking_is_offered(scripted: Any) -> None:
    server = scripted(
        [
            *session_prefix("PIPELINING", "CHUNKING"),
            Expect(b"MAIL"),
            ExpectBuffered(b"RCPT"),
            ExpectBdat(),
            Send(b"250 ok\r\n250 ok\r\n250 queued\r\n"),
        ]
    )
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5)
    assert smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE) == {}
    smtp.close()
    assert server.buffered == [True]
    assert server.lines[3] == b"BDAT %d LAST\r\n" % len(MESSAGE) + MESSAGE  # no dot-stuffing


def test_send_messages_pipelines_a_batch(scripted: Any) -> None:
    replies = b"250 ok\r\n250 ok\r\n354 go\r\n"
    server = scripted(
        [
            *session_prefix("PIPELINING"),
            Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), Send(replies),
            ExpectData(), ExpectBuffered(b"MAIL"), ExpectBuffered(b"RCPT"), ExpectBuffered(b"DATA"),
            Send(b"250 first\r\n250 ok\r\n550 nobody\r\n503 no valid recipients\r\n"),
            Expect(b"RSET"), ExpectBuffered(b"MAIL"), ExpectBuffered(b"RCPT"), ExpectBuffered(b"DATA"),
            Send(b"250 reset\r\n" + replies),
            ExpectData(),
            Send(b"250 third\r\n"),
        ]
    )
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5)
    results = smtp.send_messages(
        [
            ("a@example.org", "b@example.org", MESSAGE),
            ("a@example.org", ["nobody@example.org"], MESSAGE),
            message(From="a@example.org", To="c@example.org", Subject="third"),
        ]
    )
    smtp.close()
    assert results[0] == {} and results[2] == {}
    assert isinstance(results[1], smtplib.SMTPRecipientsRefused)
    assert results[1].recipients == {"nobody@example.org": (550, b"nobody")}
    assert server.buffered == [True] * 6  # each envelope rode with the previous content (or RSET)


def test_streams_a_file(smtpd: Any, tmp_path: Path) -> None:
    server = smtpd()
    path = tmp_path / "message.eml"
    body = b"".join(b".line %d with a leading dot\r\n" % i for i in range(60_000))
    path.write_bytes(b"Subject: big\r\n\r\n" + body)
    seen: list[tuple[int, int | None]] = []
    with smtp_sync.SMTP(server.host, server.port) as smtp, path.open("rb") as fp:
        assert smtp.sendmail("a@example.org", ["b@example.org"], fp, progress=lambda s, t: seen.append((s, t))) == {}
    [got] = server.messages
    assert got.content == path.read_bytes()
    assert seen[-1] == (path.stat().st_size, path.stat().st_size) and len(seen) > 2


# -- LMTP ---------------------------------------------------------------------------------------


def test_lmtp_reads_one_reply_per_recipient(smtpd: Any) -> None:
    server = smtpd(lmtp=True, lmtp_refuse={"y@example.org": "552 5.2.2 mailbox full"})
    with smtp_sync.LMTP(server.host, server.port) as lmtp:
        refused = lmtp.sendmail("a@example.org", ["x@example.org", "y@example.org"], MESSAGE)
        assert refused == {"y@example.org": (552, b"5.2.2 mailbox full")}  # smtplib: {}
        result = lmtp.sendmail_detailed("a@example.org", ["x@example.org", "y@example.org"], MESSAGE)
        assert [r.code for r in result.recipients] == [250, 552]
        with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
            lmtp.sendmail("a@example.org", ["y@example.org"], MESSAGE)
        assert info.value.recipients == {"y@example.org": (552, b"5.2.2 mailbox full")}
        assert lmtp.noop()[0] == 250


def test_lmtp_over_a_unix_socket(smtpd: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "lmtp.sock")
    server = smtpd(lmtp=True, unix_socket=path, lmtp_refuse={})
    with smtp_sync.LMTP(path) as lmtp:
        assert lmtp.sendmail("a@example.org", ["x@example.org"], MESSAGE) == {}
    assert server.messages[0].rcpt_tos == ["x@example.org"]


# -- TLS ------------------------------------------------------------------------------------------


def test_starttls_verifies_the_certificate_by_default(smtpd: Any, certs: Certs) -> None:
    server = smtpd(tls="starttls")
    smtp = smtp_sync.SMTP("localhost", server.port)
    with pytest.raises(ssl.SSLCertVerificationError):  # smtplib would accept any certificate
        smtp.starttls()
    assert smtp.sock is None


def test_starttls_with_a_context_then_login(smtpd: Any, certs: Certs) -> None:
    server = smtpd(tls="starttls-required", auth={"alice": "pw"}, auth_require_tls=True)
    with smtp_sync.SMTP("localhost", server.port) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")
        code, _ = smtp.starttls(context=certs.client_context())
        assert code == 220 and isinstance(smtp.sock, ssl.SSLSocket)
        assert smtp.esmtp_features == {} and smtp.ehlo_resp is None  # forgotten
        assert smtp.login("alice", "pw")[0] == 235
        assert smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE) == {}
    [got] = server.messages
    assert got.authenticated_as == b"alice"


def test_smtp_ssl(smtpd: Any, certs: Certs) -> None:
    server = smtpd(tls="implicit")
    with pytest.raises(ssl.SSLCertVerificationError):
        smtp_sync.SMTP_SSL("localhost", server.port)
    with smtp_sync.SMTP_SSL("localhost", server.port, context=certs.client_context()) as smtp:
        assert isinstance(smtp.sock, ssl.SSLSocket)
        assert smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE) == {}
    assert len(server.messages) == 1


def test_starttls_refuses_injected_plaintext(scripted: Any) -> None:
    server = scripted([*session_prefix("STARTTLS"), Expect(b"STARTTLS"), Send(b"220 go ahead\r\n250 injected\r\n"), Hang()])
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5)
    with pytest.raises(smtplib.SMTPResponseException, match="injection") as info:
        smtp.starttls()
    assert info.value.smtp_code == -1
    assert smtp.sock is None


# -- AUTH -------------------------------------------------------------------------------------------


def test_login_prefers_scram_and_refusal_raises(smtpd: Any) -> None:
    server = smtpd(auth={"alice": "pw"})
    with smtp_sync.SMTP(server.host, server.port) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            smtp.login("alice", "wrong")
        assert info.value.smtp_code == 535
        assert smtp.login("alice", "pw")[0] == 235
        smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    assert server.messages[0].authenticated_as == b"alice"


def test_auth_with_smtplib_authobjects(smtpd: Any) -> None:
    server = smtpd(auth={"alice": "pw"})
    smtp = smtp_sync.SMTP(server.host, server.port)
    smtp.ehlo()
    smtp.user, smtp.password = "alice", "pw"
    assert smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)[0] == 235
    smtp.quit()
    smtp = smtp_sync.SMTP(server.host, server.port)
    smtp.ehlo()
    smtp.user, smtp.password = "alice", "pw"
    assert smtp.auth("PLAIN", smtp.auth_plain)[0] == 235
    smtp.quit()


def test_extensions_the_server_lacks_are_not_supported(scripted: Any) -> None:
    server = scripted([*session_prefix("PIPELINING")])
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5)
    with pytest.raises(smtplib.SMTPNotSupportedError, match="STARTTLS"):
        smtp.starttls()
    with pytest.raises(smtplib.SMTPNotSupportedError, match="AUTH"):
        smtp.login("alice", "pw")
    smtp.close()
    server.stop()
    assert [line.split()[0] for line in server.lines] == [b"EHLO"]  # nothing was sent


# -- commands -------------------------------------------------------------------------------------


def test_commands(smtpd: Any) -> None:
    server = smtpd()
    smtp = smtp_sync.SMTP()
    assert smtp.sock is None
    with pytest.raises(smtplib.SMTPServerDisconnected, match="connect"):
        smtp.noop()
    code, greeting = smtp.connect(f"{server.host}:{server.port}")
    assert code == 220 and isinstance(greeting, bytes)
    smtp.ehlo_or_helo_if_needed()
    assert smtp.verify("b@example.org")[0] == 252
    assert smtp.docmd("NOOP") == (250, b"OK")
    assert smtp.rset() == (250, b"OK")
    assert smtp.mail("a@example.org") == (250, b"OK")
    assert smtp.rcpt("b@example.org") == (250, b"OK")
    assert smtp.data(b"Subject: by hand\r\n\r\nhi\r\n")[0] == 250
    with pytest.raises(ValueError, match="newline"):
        smtp.docmd("NOOP\r\nQUIT")
    assert smtp.quit()[0] == 221
    assert server.messages[0].content == b"Subject: by hand\r\n\r\nhi\r\n"


def test_helo_fallback(scripted: Any) -> None:
    server = scripted([Send(b"220 old\r\n"), Expect(b"EHLO"), Send(b"502 what\r\n"), Expect(b"HELO"), Send(b"250 hello\r\n")])
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5, local_hostname="client.example.org")
    smtp.ehlo_or_helo_if_needed()
    assert (smtp.does_esmtp, smtp.helo_resp, smtp.ehlo_resp) == (False, b"hello", b"what")
    smtp.close()
    assert server.lines == [b"EHLO client.example.org\r\n", b"HELO client.example.org\r\n"]


def test_connect_error_on_a_refusing_greeting(scripted: Any) -> None:
    server = scripted([Send(b"554 go away\r\n")])
    with pytest.raises(smtplib.SMTPConnectError) as info:
        smtp_sync.SMTP("127.0.0.1", server.port, timeout=5)
    assert (info.value.smtp_code, info.value.smtp_error) == (554, b"go away")


def test_set_debuglevel_logs_the_trace(smtpd: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = smtpd(auth={"alice": "pw"})
    with caplog.at_level(logging.DEBUG, logger="smtp_sansio.protocol"), smtp_sync.SMTP(server.host, server.port) as smtp:
        smtp.set_debuglevel(1)
        smtp.login("alice", "pw")
        smtp.noop()
        smtp.set_debuglevel(0)
    lines = [r.getMessage() for r in caplog.records if r.name == "smtp_sansio.protocol"]
    assert "C: NOOP" in lines and "S: 250 OK" in lines
    assert not any("pw" in line for line in lines if line.startswith("C:"))


# -- misbehaving servers ----------------------------------------------------------------------


def _idle_then(sent_while_idle: bytes, step: Callable[[smtp_sync.SMTP], None]) -> list[bytes]:
    """The server sends ``sent_while_idle`` once the client is idle after EHLO, then
    ``step(smtp)`` runs. Returns what the server read afterwards (``[b""]``: nothing)."""
    listener = socket.create_server(("127.0.0.1", 0))
    go, sent = threading.Event(), threading.Event()
    after: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            greet_pipelining(conn, lines)
            go.wait(5)
            conn.sendall(sent_while_idle)
            sent.set()
            try:
                after.append(lines.readline())
            except OSError:
                after.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        smtp = smtp_sync.SMTP("127.0.0.1", listener.getsockname()[1], timeout=5)
        smtp.ehlo()
        go.set()
        assert sent.wait(5)
        assert smtp.sock is not None
        assert select.select([smtp.sock], [], [], 5)[0]  # the bytes have reached the client
        step(smtp)
        assert smtp.sock is None
    finally:
        go.set()
        thread.join(5)
        listener.close()
    return after


def test_unsolicited_reply_while_idle_is_refused() -> None:
    def noop(smtp: smtp_sync.SMTP) -> None:
        with pytest.raises(smtplib.SMTPResponseException, match="unsolicited"):
            smtp.noop()

    assert _idle_then(b"250 spoofed reply for the next command\r\n", noop) == [b""]


def test_421_while_idle_is_a_disconnect_and_nothing_is_sent() -> None:
    def send(smtp: smtp_sync.SMTP) -> None:
        with pytest.raises(smtplib.SMTPServerDisconnected, match=r"421 4\.4\.2 timeout"):
            smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)

    assert _idle_then(b"421 4.4.2 timeout exceeded\r\n", send) == [b""]


def test_timeout_closes_and_is_smtplibs_disconnect(scripted: Any) -> None:
    server = scripted([*session_prefix(), Expect(b"NOOP"), Hang()])
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=0.3)
    smtp.ehlo()
    started = time.monotonic()
    with pytest.raises(smtplib.SMTPServerDisconnected) as info:
        smtp.noop()
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, smtp_core.SMTPTimeoutError)
    assert time.monotonic() - started < 3
    assert smtp.sock is None


def test_total_deadline_bounds_a_slow_server(scripted: Any) -> None:
    # Each byte comes well within the per-operation timeout; the whole send does not.
    server = scripted([*session_prefix("PIPELINING"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), SendSlowly(b"250 ok\r\n250 ok\r\n354 go\r\n", 0.05)])
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5, timeouts=smtp_sync.Timeouts(total=0.4))
    started = time.monotonic()
    with pytest.raises(smtp_sync.SMTPTimeoutError) as info:
        smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    assert 0.3 < time.monotonic() - started < 2
    assert info.value.outcome is smtp_core.Outcome.NEVER_SENT  # no content was written
    assert smtp.sock is None


def test_disconnect_after_content_is_unknown(scripted: Any) -> None:
    server = scripted([*session_prefix("PIPELINING"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), Send(b"250 ok\r\n250 ok\r\n354 go\r\n"), ExpectData(), Close()])
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5)
    with pytest.raises(smtplib.SMTPServerDisconnected) as info:
        smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    assert info.value.outcome is smtp_core.Outcome.UNKNOWN


# -- threads -----------------------------------------------------------------------------------


def test_threads_share_one_client(smtpd: Any) -> None:
    server = smtpd()
    smtp = smtp_sync.SMTP(server.host, server.port)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                body = b"Subject: %d-%d\r\n\r\nfrom thread %d\r\n" % (n, i, n)
                assert smtp.sendmail("a@example.org", [f"t{n}@example.org"], body) == {}
                assert smtp.noop()[0] == 250
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    smtp.quit()
    assert errors == []
    assert len(server.messages) == 80
    for got in server.messages:  # each message arrived whole, with its own envelope
        n = int(got.content.split(b"Subject: ")[1].split(b"-")[0])
        assert got.rcpt_tos == [f"t{n}@example.org"]
        assert got.content.endswith(b"from thread %d\r\n" % n)


def test_pool_with_threads(smtpd: Any) -> None:
    server = smtpd()
    errors: list[BaseException] = []
    with smtp_sync.SMTPPool(server.host, server.port, max_connections=3) as pool:

        def work(n: int) -> None:
            try:
                for i in range(5):
                    assert pool.sendmail("a@example.org", [f"t{n}@example.org"], b"Subject: %d\r\n\r\nx\r\n" % i) == {}
                pool.send_message(message(From="a@example.org", To=f"m{n}@example.org", Subject="m"))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert pool.stats["connections"] <= 3 and pool.stats["messages"] == 48
    assert len(server.messages) == 48
    assert len({got.peer for got in server.messages}) <= 3
    assert pool.connections == 0


def test_pool_shares_a_busy_connection_between_threads(smtpd: Any) -> None:
    server = smtpd()
    errors: list[BaseException] = []
    with smtp_sync.SMTPPool(server.host, server.port, max_connections=1, max_in_flight=4) as pool:

        def work(n: int) -> None:
            try:
                for i in range(5):
                    pool.sendmail("a@example.org", [f"t{n}@example.org"], b"Subject: %d\r\n\r\nx\r\n" % i)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert pool.stats["connections"] == 1 and pool.stats["messages"] == 20
    assert len(server.messages) == 20
    assert len({got.peer for got in server.messages}) == 1


def test_pool_retries_only_what_was_never_sent(scripted: Any) -> None:
    dropped_before_content = [*session_prefix("PIPELINING"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), Close()]
    accepted = [*session_prefix("PIPELINING"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), Send(b"250 ok\r\n250 ok\r\n354 go\r\n"), ExpectData(), Send(b"250 queued\r\n"), Expect(b"QUIT"), Send(b"221 bye\r\n")]
    server = scripted(dropped_before_content, more=[accepted])
    with smtp_sync.SMTPPool("127.0.0.1", server.port, retry_backoff=0.01, timeout=5) as pool:
        assert pool.sendmail("a@example.org", ["b@example.org"], MESSAGE) == {}
        assert pool.stats["retries"] == 1

    dropped_after_content = [*session_prefix("PIPELINING"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), Send(b"250 ok\r\n250 ok\r\n354 go\r\n"), ExpectData(), Close()]
    server = scripted(dropped_after_content, more=[accepted])
    with smtp_sync.SMTPPool("127.0.0.1", server.port, retry_backoff=0.01, timeout=5) as pool:
        with pytest.raises(smtplib.SMTPServerDisconnected) as info:
            pool.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        assert info.value.outcome is smtp_core.Outcome.UNKNOWN  # it may have been delivered
        assert pool.stats["retries"] == 0


def test_pool_waits_for_a_free_connection_within_its_limit(smtpd: Any) -> None:
    server = smtpd()
    with smtp_sync.SMTPPool(server.host, server.port, max_connections=1, max_in_flight=1, wait_timeout=0.2) as pool:
        held = pool._acquire(pool._policy.delivery(0.0, None))
        with pytest.raises(smtp_sync.SMTPTimeoutError, match="free connection"):
            pool.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        pool._release(held)
        assert pool.sendmail("a@example.org", ["b@example.org"], MESSAGE) == {}


def test_threads_sharing_a_client_share_round_trips() -> None:
    """Messages that threads send while another is in flight go out back to back: each
    one's envelope rides in the same write as the previous content (PIPELINING)."""
    listener = socket.create_server(("127.0.0.1", 0))
    release, in_flight = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:

            def content() -> None:
                while lines.readline() != b".\r\n":
                    pass

            greet_pipelining(conn, lines)
            seen["first"] = [lines.readline() for _ in range(3)]  # MAIL, RCPT, DATA
            in_flight.set()
            release.wait(5)  # two more messages are queued by now
            conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
            content()
            conn.sendall(b"250 first queued\r\n")
            seen["second"] = [lines.readline() for _ in range(3)]
            conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
            content()
            seen["buffered"] = bool(lines.peek(1))  # the next envelope came with the content
            seen["third"] = [lines.readline() for _ in range(3)]
            conn.sendall(b"250 second queued\r\n250 ok\r\n250 ok\r\n354 go\r\n")
            content()
            conn.sendall(b"250 third queued\r\n")
            lines.readline()
            conn.sendall(b"221 bye\r\n")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    smtp = smtp_sync.SMTP("127.0.0.1", listener.getsockname()[1], timeout=5)
    results: dict[str, Any] = {}

    def send(name: str) -> None:
        results[name] = smtp.sendmail("a@example.org", [f"{name}@example.org"], MESSAGE)

    try:
        threads = [threading.Thread(target=send, args=(name,)) for name in ("first", "second", "third")]
        threads[0].start()
        assert in_flight.wait(5)  # the first message is in flight...
        threads[1].start()
        with smtp._cv:  # ...then the second is queued behind it...
            assert smtp._cv.wait_for(lambda: len(smtp._queue) == 1, 5)
        threads[2].start()
        with smtp._cv:  # ...and the third
            assert smtp._cv.wait_for(lambda: len(smtp._queue) == 2, 5)
        release.set()
        for thread in threads:
            thread.join(5)
        assert results == {"first": {}, "second": {}, "third": {}}
        assert smtp.quit()[0] == 221
    finally:
        release.set()
        server.join(5)
        listener.close()
    assert seen["second"][1] == b"RCPT TO:<second@example.org>\r\n"
    assert seen["buffered"] is True
    assert seen["third"] == [b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<third@example.org>\r\n", b"DATA\r\n"]


def test_smtplib_surface() -> None:
    """Every name smtplib exports, and every public method of its classes with its
    parameters, exists in smtp_sync."""
    import inspect

    for name in smtplib.__all__:
        assert hasattr(smtp_sync, name), name
    for cls_name in ("SMTP", "SMTP_SSL", "LMTP"):
        theirs, ours = getattr(smtplib, cls_name), getattr(smtp_sync, cls_name)
        for name, member in inspect.getmembers(theirs, inspect.isfunction):
            if name.startswith("_") and name not in ("__init__", "__enter__", "__exit__"):
                continue
            assert hasattr(ours, name), f"{cls_name}.{name}"
            wanted = [p for p in inspect.signature(member).parameters if p not in ("args", "kwargs")]
            have = inspect.signature(getattr(ours, name)).parameters
            assert all(p in have for p in wanted), f"{cls_name}.{name}{inspect.signature(member)}"
        for attribute in ("debuglevel", "helo_resp", "ehlo_resp", "does_esmtp", "ehlo_msg", "default_port"):
            assert getattr(ours, attribute) == getattr(theirs, attribute), attribute


def test_a_shared_clients_pipeline_is_woken_for_a_message_that_comes_while_it_waits() -> None:
    """A message sent while the pipeline waits for a reply goes out at once (the wait is
    woken), not after that reply: here the server holds the second message's final reply
    until it has the third's envelope (the reads before it found their replies there)."""
    listener = socket.create_server(("127.0.0.1", 0))
    release, in_flight, holding = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:

            def content() -> None:
                while lines.readline() != b".\r\n":
                    pass

            greet_pipelining(conn, lines)
            for _ in range(3):  # the first message's MAIL, RCPT, DATA
                lines.readline()
            in_flight.set()
            release.wait(5)  # the second is queued by now: the client is shared
            conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
            content()
            seen["second"] = [lines.readline() for _ in range(3)]  # with the first's content
            conn.sendall(b"250 first queued\r\n250 ok\r\n250 ok\r\n354 go\r\n")
            content()
            holding.set()  # the second's final reply is held until the third's envelope
            # comes, which it does before that reply only if the wait is woken
            seen["woken"] = bool(select.select([conn], [], [], 3)[0])
            conn.sendall(b"250 second queued\r\n")
            seen["third"] = [lines.readline() for _ in range(3)]
            conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
            content()
            conn.sendall(b"250 third queued\r\n")
            lines.readline()
            conn.sendall(b"221 bye\r\n")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    smtp = smtp_sync.SMTP("127.0.0.1", listener.getsockname()[1], timeout=10)
    results: dict[str, Any] = {}

    def send(name: str) -> None:
        results[name] = smtp.sendmail("a@example.org", [f"{name}@example.org"], MESSAGE)

    try:
        threads = {name: threading.Thread(target=send, args=(name,)) for name in ("first", "second", "third")}
        threads["first"].start()
        assert in_flight.wait(5)
        threads["second"].start()
        with smtp._cv:
            assert smtp._cv.wait_for(lambda: len(smtp._queue) == 1, 5)
        release.set()
        assert holding.wait(5)
        threads["third"].start()
        for thread in threads.values():
            thread.join(10)
        assert results == {"first": {}, "second": {}, "third": {}}
        assert smtp.quit()[0] == 221
    finally:
        release.set()
        server.join(10)
        listener.close()
    assert seen["second"][1] == b"RCPT TO:<second@example.org>\r\n"
    assert seen["third"] == [b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<third@example.org>\r\n", b"DATA\r\n"]
    assert seen["woken"] is True  # the third's envelope came before the second's reply
