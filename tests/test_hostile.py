"""Hostile and broken servers, through the public API of every adapter.

Each server is a real loopback server that sends the bad bytes on purpose. The client
must fail with a clear error, within its timeout, with bounded memory, and be left
closed (``is_connected`` false; the next call raises ``SMTPServerDisconnected``).
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Adapter, Certs
from .servers import (
    Close,
    Expect,
    ExpectData,
    Hang,
    Reset,
    Send,
    StartTLS,
    greet_pipelining,
    session_prefix,
)
from .sync_facade import refusals

MESSAGE = "Subject: hi\r\n\r\nhello\r\n"


def assert_closed(adapter: Adapter, smtp: Any) -> None:
    assert not smtp.is_connected


async def expect_failure(adapter: Adapter, port: int, exc: Any, *, during: str = "send", match: str | None = None, **options: Any) -> Any:
    mod = adapter.module
    smtp = mod.SMTP(hostname="127.0.0.1", port=port, timeout=5, start_tls=False, **options)
    if during == "connect":
        with pytest.raises(exc, match=match) as info:
            await smtp.connect()
    else:
        await smtp.connect()
        with pytest.raises(exc, match=match) as info:
            await smtp.sendmail("a@example.org", ["b@example.org", "c@example.org"], MESSAGE)
    assert not smtp.is_connected
    with pytest.raises(mod.SMTPServerDisconnected):
        await smtp.noop()
    return info.value


BAD_REPLIES = {
    "over-long line": b"250 " + b"x" * 20_000 + b"\r\n",
    "endless multi-line": b"250-x\r\n" * 500,
    "continuation with another code": b"250-first\r\n550 second\r\n",
    "two-digit code": b"25 ok\r\n",
    "four-digit code": b"2500 ok\r\n",
    "code 600": b"600 ok\r\n",
    "code 199": b"199 ok\r\n",
    "letters": b"OK.\r\n",
    "huge line without end": b"250 " + b"y" * 2_000_000,
}


@pytest.mark.parametrize("name", sorted(BAD_REPLIES))
def test_malformed_replies(adapter: Adapter, scripted: Any, name: str) -> None:
    server = scripted([*session_prefix("PIPELINING"), Expect(b"MAIL"), Send(BAD_REPLIES[name]), Hang()])

    async def main() -> None:
        exc = await expect_failure(adapter, server.port, adapter.module.SMTPResponseException)
        assert exc.code == -1

    adapter.run(main)


def test_huge_ehlo_reply(adapter: Adapter, scripted: Any) -> None:
    lines = [f"X-EXT{i} {'v' * 100}" for i in range(1000)]
    server = scripted([*session_prefix(*lines), Hang()])

    async def main() -> None:
        exc = await expect_failure(adapter, server.port, adapter.module.SMTPResponseException)
        assert exc.code == -1 and "max_reply_lines" in exc.message

    adapter.run(main)


def test_nul_and_invalid_utf8_are_just_text(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix(), Expect(b"NOOP"), Send(b"250 caf\xe9 \x00 \xff ok\r\n"), Hang()])

    async def main() -> None:
        smtp = adapter.module.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        response = await smtp.noop()
        assert response.code == 250 and "\ufffd" in response.message and "\x00" in response.message
        smtp.close()

    adapter.run(main)


STEP_FAILURES = {
    "after greeting": [Send(b"220 hi\r\n")],
    "inside EHLO": [Send(b"220 hi\r\n"), Expect(b"EHLO"), Send(b"250-smtp.test\r\n250-PIPE")],
    "between RCPTs": [*session_prefix(), Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"), Expect(b"RCPT")],
    "inside DATA": [*session_prefix(), Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"), Expect(b"DATA"), Send(b"354 go\r\n"), Expect(b"Subject")],
    "after DATA": [*session_prefix(), Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"), Expect(b"DATA"), Send(b"354 go\r\n"), ExpectData()],
}


STEP_CASES = [
    pytest.param(
        step,
        how,
        marks=pytest.mark.not_on_sync(
            "a reset right after the greeting may come while connect() is still completing: "
            "smtp_sync then raises the socket's ConnectionResetError (OSError), as smtplib does "
            "for a failed connect"
        ),
    )
    if (step, how) == ("after greeting", "reset")
    else (step, how)
    for step in sorted(STEP_FAILURES)
    for how in ("close", "reset")
]


@pytest.mark.parametrize("step,how", STEP_CASES)
def test_disconnect_at_every_step(adapter: Adapter, scripted: Any, step: str, how: str) -> None:
    server = scripted([*STEP_FAILURES[step], Close() if how == "close" else Reset()])
    mod = adapter.module
    during = "connect" if step in ("after greeting", "inside EHLO") else "send"

    async def main() -> None:
        if during == "connect":
            # EHLO happens during connect() when STARTTLS is considered (start_tls=None).
            smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
            with pytest.raises((mod.SMTPServerDisconnected, mod.SMTPConnectError)):
                await smtp.connect()
            assert not smtp.is_connected
        else:
            await expect_failure(adapter, server.port, mod.SMTPServerDisconnected)

    adapter.run(main)


@pytest.mark.parametrize(
    "script,during",
    [
        ([Send(b"421 4.3.2 not now\r\n"), Hang()], "connect"),
        ([Send(b"220 hi\r\n"), Expect(b"EHLO"), Send(b"421 bye\r\n"), Hang()], "connect"),
        ([*session_prefix("PIPELINING"), Expect(b"MAIL"), Send(b"421 bye\r\n"), Hang()], "send"),
        ([*session_prefix("PIPELINING"), Expect(b"MAIL"), Send(b"250 ok\r\n421 bye\r\n"), Hang()], "send"),
        ([*session_prefix(), Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"), Expect(b"DATA"), Send(b"421 bye\r\n"), Hang()], "send"),
        ([*session_prefix(), Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"), Expect(b"DATA"), Send(b"354 go\r\n"), ExpectData(), Send(b"421 bye\r\n"), Hang()], "send"),
    ],
    ids=["greeting", "ehlo", "mail", "rcpt", "data", "after-content"],
)
def test_421_at_any_point(adapter: Adapter, scripted: Any, script: list[Any], during: str) -> None:
    server = scripted(script)
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        if during == "connect":
            with pytest.raises((mod.SMTPConnectError, mod.SMTPResponseException)) as info:
                await smtp.connect()
        else:
            await smtp.connect()
            with pytest.raises((mod.SMTPResponseException, mod.SMTPRecipientsRefused)) as info:
                await smtp.sendmail("a@example.org", ["b@example.org", "c@example.org"], MESSAGE)
        exc = info.value
        codes = [exc.code] if hasattr(exc, "code") else [code for code, _ in refusals(exc)]
        assert 421 in codes
        assert not smtp.is_connected

    adapter.run(main)


def test_unsolicited_reply_before_pipelined_group(adapter: Adapter, scripted: Any) -> None:
    server = scripted(
        [Send(b"220 hi\r\n"), Expect(b"EHLO"), Send(b"250-smtp.test\r\n250 PIPELINING\r\n250 extra\r\n"), Hang()]
    )

    async def main() -> None:
        exc = await expect_failure(adapter, server.port, adapter.module.SMTPResponseException, match="unsolicited")
        assert exc.code == -1

    adapter.run(main)


def test_unsolicited_reply_after_pipelined_group(adapter: Adapter, scripted: Any) -> None:
    server = scripted(
        [
            *session_prefix("PIPELINING"),
            Expect(b"MAIL"),
            Send(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            ExpectData(),
            Send(b"250 queued\r\n250 spoofed reply for the next command\r\n"),
            Hang(),
        ]
    )
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        await smtp.sendmail("a@example.org", ["b@example.org", "c@example.org"], MESSAGE)
        with pytest.raises(mod.SMTPResponseException, match="unsolicited"):
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        assert not smtp.is_connected

    adapter.run(main)


def _idle_then(
    adapter: Adapter, sent_while_idle: bytes, next_step: Any, message_first: bool = False
) -> list[bytes]:
    """Over a socketpair, the server sends ``sent_while_idle`` once the client is idle
    after EHLO (with ``message_first``: after one message, pipelined, was delivered);
    ``next_step(smtp)`` runs then. Returns what the server read afterwards (``[b""]``:
    nothing, the client closed)."""
    import socket
    import threading

    client_side, server_side = socket.socketpair()
    go, sent = threading.Event(), threading.Event()
    after: list[bytes] = []

    def server() -> None:
        with server_side, server_side.makefile("rb") as lines:
            greet_pipelining(server_side, lines)
            if message_first:
                for _ in range(3):  # MAIL, RCPT, DATA
                    lines.readline()
                server_side.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
                while lines.readline() not in (b".\r\n", b""):
                    pass
                server_side.sendall(b"250 queued\r\n")
            go.wait(5)
            server_side.sendall(sent_while_idle)
            sent.set()
            try:
                after.append(lines.readline())
            except OSError:
                after.append(b"")

    thread = threading.Thread(target=server, daemon=True)
    thread.start()
    mod = adapter.module

    async def wait_until_sent() -> None:
        if mod.__name__ == "smtp_asyncio":
            import asyncio

            await asyncio.to_thread(sent.wait, 5)
        else:
            import anyio

            await anyio.to_thread.run_sync(sent.wait, 5)

    async def main() -> None:
        smtp = mod.SMTP(sock=client_side, hostname="localhost", start_tls=False, timeout=5)
        await smtp.connect()
        await smtp.ehlo()
        if message_first:
            assert await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE) == ({}, "queued")
        go.set()
        await wait_until_sent()
        await next_step(smtp)
        assert not smtp.is_connected

    try:
        adapter.run(main)
    finally:
        go.set()
        client_side.close()
        thread.join(5)
    return after


def test_unsolicited_reply_while_the_client_is_idle(adapter: Adapter) -> None:
    """A reply sent while no command awaits one is refused before the next command,
    whether the transport reads all the time (asyncio) or only when asked (anyio)."""
    mod = adapter.module

    async def noop(smtp: Any) -> None:
        with pytest.raises(mod.SMTPResponseException, match="unsolicited"):
            await smtp.noop()

    assert _idle_then(adapter, b"250 spoofed reply for the next command\r\n", noop) == [b""]


def test_unsolicited_reply_while_idle_between_two_messages(adapter: Adapter) -> None:
    """A reply sent while the client is idle after a message (its mail pipeline parked
    between two messages) is refused before the next message's commands go out: it
    can never pass for the reply to the next MAIL (and shift every reply after it)."""
    mod = adapter.module

    async def send(smtp: Any) -> None:
        with pytest.raises(mod.SMTPException, match="unsolicited") as info:
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        assert getattr(info.value, "outcome", None) in (None, mod.Outcome.NEVER_SENT)

    after = _idle_then(adapter, b"250 spoofed reply for the next MAIL\r\n", send, message_first=True)
    assert after == [b""]  # no MAIL followed


def test_reply_before_the_end_of_data_is_never_taken_as_the_final_one(
    adapter: Adapter, scripted: Any
) -> None:
    """A 250 sent with the 354, before the content: the message is refused as never
    sent, not reported delivered (the server's real answer, after the content, was 554)."""
    server = scripted(
        [
            *session_prefix("PIPELINING"),
            Expect(b"MAIL"),
            Send(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 early lie\r\n"),
            Hang(),
        ]
    )
    mod = adapter.module

    async def main() -> None:
        exc = await expect_failure(
            adapter, server.port, mod.SMTPException, match="before the end of the message data"
        )
        if hasattr(exc, "outcome"):
            assert exc.outcome is mod.Outcome.NEVER_SENT
            assert exc.content_started is False

    adapter.run(main)


def test_malformed_final_reply_leaves_the_outcome_unknown(adapter: Adapter, scripted: Any) -> None:
    """The content went out whole and the final reply is garbage: the caller is told
    the message's fate is unknown (a retry may deliver it twice), not left without one."""
    server = scripted(
        [
            *session_prefix("PIPELINING"),
            Expect(b"MAIL"),
            Send(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            ExpectData(),
            Send(b"xx not a reply\r\n"),
            Hang(),
        ]
    )
    mod = adapter.module

    async def main() -> None:
        exc = await expect_failure(adapter, server.port, mod.SMTPException, match="3-digit code")
        if hasattr(exc, "outcome"):
            assert exc.outcome is mod.Outcome.UNKNOWN
            assert exc.content_started is True

    adapter.run(main)


def test_421_while_idle_is_a_disconnect_before_anything_is_sent(adapter: Adapter) -> None:
    """A server ending an idle session (421, as Postfix does on its idle timeout): the
    next send raises SMTPServerDisconnected with the server's words, and sends nothing."""
    mod = adapter.module

    async def send(smtp: Any) -> None:
        with pytest.raises(mod.SMTPServerDisconnected, match=r"421 4\.4\.2 timeout exceeded") as info:
            await smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
        assert info.value.content_started is False  # safe to send again elsewhere

    assert _idle_then(adapter, b"421 4.4.2 timeout exceeded\r\n", send) == [b""]


def test_starttls_injection_in_a_later_packet(adapter: Adapter, scripted: Any, certs: Certs) -> None:
    """Plaintext sent after the 220 is never read as TLS-protected, however it arrives."""
    server = scripted(
        [*session_prefix("STARTTLS"), Expect(b"STARTTLS"), Send(b"220 go\r\n"), Send(b"250-AUTH PLAIN\r\n250 injected\r\n"), StartTLS(certs.server_context()), Hang()]
    )
    mod = adapter.module

    async def main() -> None:
        import ssl

        smtp = mod.SMTP(hostname="localhost", port=server.port, start_tls=True, cert_bundle=certs.ca_path, timeout=5)
        with pytest.raises((mod.SMTPResponseException, mod.SMTPServerDisconnected, ssl.SSLError, OSError)):
            await smtp.connect()
        assert not smtp.is_connected

    adapter.run(main)


def test_starttls_disconnect_during_handshake(adapter: Adapter, scripted: Any, certs: Certs) -> None:
    server = scripted([*session_prefix("STARTTLS"), Expect(b"STARTTLS"), Send(b"220 go\r\n"), Close()])
    mod = adapter.module

    async def main() -> None:
        import ssl

        smtp = mod.SMTP(hostname="localhost", port=server.port, start_tls=True, cert_bundle=certs.ca_path, timeout=5)
        with pytest.raises((mod.SMTPServerDisconnected, ssl.SSLError, OSError)):
            await smtp.connect()
        assert not smtp.is_connected

    adapter.run(main)


def test_capabilities_after_starttls_are_the_new_ones(adapter: Adapter, scripted: Any, certs: Certs) -> None:
    server = scripted(
        [
            *session_prefix("STARTTLS", "SIZE 10"),
            Expect(b"STARTTLS"),
            Send(b"220 go\r\n"),
            StartTLS(certs.server_context()),
            Expect(b"EHLO"),
            Send(b"250-smtp.test\r\n250-SIZE 100000\r\n250 AUTH PLAIN\r\n"),
            Expect(b"AUTH"),
            Send(b"235 ok\r\n"),
            Expect(b"MAIL"),
            Send(b"250 ok\r\n"),
            Expect(b"RCPT"),
            Send(b"250 ok\r\n"),
            Expect(b"DATA"),
            Send(b"354 go\r\n"),
            ExpectData(),
            Send(b"250 queued\r\n"),
        ]
    )

    async def main() -> None:
        smtp = adapter.module.SMTP(hostname="localhost", port=server.port, cert_bundle=certs.ca_path, timeout=5)
        await smtp.connect()
        assert smtp.esmtp_extensions == {}  # forgotten at STARTTLS
        await smtp.login("u", "p")  # AUTH was only offered over TLS
        assert smtp.esmtp_extensions == {"size": "100000", "auth": "PLAIN"}
        await smtp.sendmail("a@example.org", ["b@example.org"], "x" * 50)  # over the old SIZE 10
        smtp.close()

    adapter.run(main)
    assert any(line.startswith(b"MAIL FROM:<a@example.org> SIZE=52") for line in server.lines)


def test_auth_challenge_loop_is_bounded(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix("AUTH LOGIN"), Expect(b"AUTH"), *[x for _ in range(20) for x in (Send(b"334 UGFzc3dvcmQ6\r\n"), Expect(b""))], Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPResponseException) as info:
            await smtp.auth_login("u", "p")
        assert info.value.code == -1
        assert not smtp.is_connected

    adapter.run(main)


def test_auth_invalid_base64_challenge(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix("AUTH CRAM-MD5"), Expect(b"AUTH"), Send(b"334 $$$not-base64$$$\r\n"), Expect(b"*"), Send(b"501 cancelled\r\n"), Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPResponseException, match="invalid base64"):
            await smtp.auth_crammd5("u", "p")
        assert not smtp.is_connected

    adapter.run(main)
    assert server.lines[-1] == b"*\r\n"


@pytest.mark.parametrize(
    "content",
    [b"a\n.\nb", b"a\r.\r\nb", b"a\n.\r\nb", b"a\r\n.\r\nMAIL FROM:<x@evil.org>\r\n", b"bare\rcr and bare\nlf", b".\r\n"],
)
def test_content_cannot_end_data_early(adapter: Adapter, smtpd: Any, content: bytes) -> None:
    server = smtpd()

    async def main() -> None:
        async with adapter.module.SMTP(hostname=server.host, port=server.port) as smtp:
            await smtp.sendmail("a@example.org", ["b@example.org"], content)
            await smtp.noop()

    adapter.run(main)
    [got] = server.messages  # exactly one message, nothing smuggled after it
    normalised = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    assert got.content == (normalised if normalised.endswith(b"\r\n") else normalised + b"\r\n")


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.ehlo(hostname="evil\r\nRSET"),
        lambda s: s.helo(hostname="a b"),
        lambda s: s.mail("a@b.org", options=["SIZE=1\r\nRSET"]),
        lambda s: s.rcpt("a@b.org", options=["NOTIFY=NEVER\nX"]),
        lambda s: s.vrfy("a\rb"),
        lambda s: s.execute_command(b"NOOP", b"x\x00y"),
        lambda s: s.auth_plain("user\0", "pw"),
        lambda s: s.auth_xoauth2("user", "tok\x01en"),
        lambda s: s.sendmail("a@b.org", ["c@d.org\r\nRCPT TO:<e@f.org>"], "x"),
    ],
)
def test_injection_in_arguments_raises_before_sending(adapter: Adapter, scripted: Any, call: Any) -> None:
    server = scripted([*session_prefix("PIPELINING", "AUTH PLAIN XOAUTH2"), Hang()])

    async def main() -> None:
        smtp = adapter.module.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        before = bytes(server.received)
        with pytest.raises(ValueError):
            await call(smtp)
        assert bytes(server.received) == before
        assert smtp.is_connected
        smtp.close()

    adapter.run(main)


def test_bad_sasl_mechanism_name_raises_before_sending(adapter: Adapter, scripted: Any) -> None:
    from smtp_core import RemoteProtocolError, SASLMechanism

    class Evil(SASLMechanism):
        name = "PLAIN\r\nMAIL"

        def initial_response(self) -> bytes | None:
            return None

        def respond(self, challenge: bytes) -> bytes:
            raise RemoteProtocolError("no")

    server = scripted([*session_prefix("AUTH PLAIN"), Hang()])

    async def main() -> None:
        smtp = adapter.module.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        before = bytes(server.received)
        with pytest.raises(ValueError, match="mechanism"):
            await smtp.auth(Evil())
        assert bytes(server.received) == before and smtp.is_connected
        smtp.close()

    adapter.run(main)
