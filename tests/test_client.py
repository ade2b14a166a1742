"""Behaviour of the aiosmtplib-compatible client, run on every adapter and backend.

Each test runs three times: smtp_asyncio, smtp_anyio on asyncio, smtp_anyio on trio,
against real aiosmtpd servers on loopback.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from typing import Any

import pytest

from .conftest import Adapter, Certs
from .servers import Expect, Hang, Send, session_prefix
from .sync_facade import refusals

MESSAGE = "Subject: hello\r\n\r\nHello world\r\n"


def message(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hello from smtp-sansio\n")
    return msg


def test_plain_sendmail(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    SMTP = adapter.module.SMTP

    async def main() -> Any:
        async with SMTP(hostname=server.host, port=server.port, start_tls=False) as smtp:
            assert smtp.is_connected
            assert not smtp.supports_esmtp  # EHLO is sent with the first command
            result = await smtp.sendmail("a@example.org", ["b@example.org", "c@example.org"], MESSAGE)
            assert smtp.supports_esmtp
            assert smtp.supports_extension("8bitmime")
        assert not smtp.is_connected
        return result

    refused, text = adapter.run(main)
    assert refused == {}
    assert text == "Message accepted"
    [got] = server.messages
    assert got.mail_from == "a@example.org"
    assert got.rcpt_tos == ["b@example.org", "c@example.org"]
    assert got.content.endswith(b"Hello world\r\n")


@pytest.mark.not_on_sync("aiosmtplib's positional (hostname, port) and deprecated loop= argument; smtplib's constructor connects")
def test_positional_hostname_port_and_loop_argument(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()

    async def main() -> Any:
        with pytest.warns(DeprecationWarning):
            smtp = adapter.module.SMTP(server.host, server.port, loop=object())
        await smtp.connect()
        try:
            return await smtp.sendmail("a@example.org", "b@example.org", MESSAGE)
        finally:
            await smtp.quit()

    assert adapter.run(main)[0] == {}
    assert server.messages[0].rcpt_tos == ["b@example.org"]


def test_dot_stuffing_and_line_endings(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    body = b"Subject: x\n\n.leading dot\r\n..two\rbare cr\nbare lf\n.\nafter\r\n.\r\nend"

    async def main() -> None:
        async with adapter.module.SMTP(hostname=server.host, port=server.port) as smtp:
            await smtp.sendmail("a@example.org", ["b@example.org"], body)

    adapter.run(main)
    [got] = server.messages
    expected = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n") + b"\r\n"
    assert got.content == expected


def test_send_message_headers_bcc_and_resent(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    msg = message(From="Sender <s@example.org>", To="t@example.org", Cc="c@example.org", Bcc="hidden@example.org", Subject="hi")
    resent = message(From="orig@example.org", To="orig-to@example.org", Subject="fwd")
    resent["Resent-Date"] = "Mon, 1 Jan 2024 00:00:00 +0000"
    resent["Resent-From"] = "resender@example.org"
    resent["Resent-To"] = "new@example.org"
    resent["Resent-Bcc"] = "secret@example.org"

    async def main() -> None:
        async with adapter.module.SMTP(hostname=server.host, port=server.port) as smtp:
            await smtp.send_message(msg)
            await smtp.send_message(resent)

    adapter.run(main)
    first, second = server.messages
    assert first.mail_from == "s@example.org"
    assert first.rcpt_tos == ["t@example.org", "c@example.org", "hidden@example.org"]
    assert b"hidden@example.org" not in first.content
    assert msg["Bcc"] == "hidden@example.org"  # the caller's message is untouched
    assert second.mail_from == "resender@example.org"
    assert second.rcpt_tos == ["new@example.org", "secret@example.org"]
    assert b"secret@example.org" not in second.content


def test_smtputf8_and_8bitmime(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(smtputf8=True)
    msg = message(From="José <josé@example.org>", To="用户@例子.广告", Subject="héllo")

    async def main() -> None:
        async with adapter.module.SMTP(hostname=server.host, port=server.port) as smtp:
            await smtp.send_message(msg)

    adapter.run(main)
    [got] = server.messages
    assert got.mail_from == "josé@example.org"
    assert got.rcpt_tos == ["用户@例子.广告"]
    assert "SMTPUTF8" in got.mail_options
    assert "BODY=8BITMIME" in got.mail_options
    assert got.smtp_utf8


def test_non_ascii_address_without_smtputf8_fails_before_sending(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(smtputf8=False)

    async def main() -> None:
        async with adapter.module.SMTP(hostname=server.host, port=server.port) as smtp:
            with pytest.raises(adapter.module.SMTPNotSupported, match="SMTPUTF8"):
                await smtp.sendmail("josé@example.org", ["b@example.org"], MESSAGE)
            assert smtp.is_connected  # nothing was sent; the connection is still good
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)

    adapter.run(main)
    assert len(server.messages) == 1


def test_refused_recipient_is_reported(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(refuse_recipients={"bad@example.org": "550 5.1.1 No such user"})

    async def main() -> Any:
        async with adapter.module.SMTP(hostname=server.host, port=server.port) as smtp:
            return await smtp.sendmail("a@example.org", ["good@example.org", "bad@example.org"], MESSAGE)

    refused, _ = adapter.run(main)
    assert refused == {"bad@example.org": (550, "5.1.1 No such user")}
    assert refused["bad@example.org"].code == 550
    assert server.messages[0].rcpt_tos == ["good@example.org"]


def test_all_recipients_refused(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(refuse_recipients={"x@example.org": "550 no", "y@example.org": "551 moved"})
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            with pytest.raises(mod.SMTPRecipientsRefused) as info:
                await smtp.sendmail("a@example.org", ["x@example.org", "y@example.org"], MESSAGE)
            assert refusals(info.value) == [
                (550, "x@example.org"),
                (551, "y@example.org"),
            ]
            # The transaction was reset; the connection is usable.
            await smtp.sendmail("a@example.org", ["z@example.org"], MESSAGE)

    adapter.run(main)
    assert [m.rcpt_tos for m in server.messages] == [["z@example.org"]]


def test_refused_sender(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(refuse_senders={"spam@example.org": "553 5.7.1 go away"})
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            with pytest.raises(mod.SMTPSenderRefused) as info:
                await smtp.sendmail("spam@example.org", ["b@example.org"], MESSAGE)
            assert (info.value.code, info.value.message, info.value.sender) == (
                553,
                "5.7.1 go away",
                "spam@example.org",
            )
            await smtp.noop()

    adapter.run(main)


def test_data_refused(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(data_reply="554 5.6.0 content rejected")
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            with pytest.raises(mod.SMTPDataError) as info:
                await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
            assert info.value.code == 554
            await smtp.noop()

    adapter.run(main)


def test_size_limit_checked_before_content(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(data_size_limit=1000)
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            assert smtp.esmtp_extensions["size"] == "1000"
            with pytest.raises(mod.SMTPSenderRefused) as info:
                await smtp.sendmail("a@example.org", ["b@example.org"], "x" * 2000)
            assert info.value.code == 552
            await smtp.sendmail("a@example.org", ["b@example.org"], "x" * 100)

    adapter.run(main)
    assert len(server.messages) == 1
    # RFC 1870: the octets sent, CRLF pairs included: the final CRLF added counts.
    assert "SIZE=102" in server.messages[0].mail_options


def test_size_limit_checked_before_streaming_a_file(adapter: Adapter, smtpd: Any, tmp_path: Any) -> None:
    server = smtpd(data_size_limit=1000)
    mod = adapter.module
    big, small = tmp_path / "big.eml", tmp_path / "small.eml"
    big.write_bytes(b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n")
    small.write_bytes(b"Subject: small\r\n\r\nhello\r\n")

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            with open(big, "rb") as file:
                with pytest.raises(mod.SMTPSenderRefused, match="at least 2018 bytes") as info:
                    await smtp.sendmail("a@example.org", ["b@example.org"], file)
                assert info.value.code == 552
                assert file.tell() == 0  # not a byte of it was read
            with open(small, "rb") as file:
                await smtp.sendmail("a@example.org", ["b@example.org"], file)

    adapter.run(main)
    assert [m.content for m in server.messages] == [small.read_bytes()]


def test_size_of_a_compressed_file_is_not_taken_from_the_disk(adapter: Adapter, smtpd: Any, tmp_path: Any) -> None:
    """A gzip file yields other bytes than its size on disk: no early refusal for it."""
    import gzip
    import os

    noise = os.urandom(12000).replace(b"\r", b"").replace(b"\n", b"")
    body = b"\r\n".join(noise[i : i + 76] for i in range(0, len(noise), 76))
    content = b"Subject: gz\r\n\r\n" + body + b"\r\n"
    path = tmp_path / "message.eml.gz"
    path.write_bytes(gzip.compress(content))
    assert path.stat().st_size > len(content)  # random data does not compress
    server = smtpd(data_size_limit=len(content) + 8)
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            with gzip.open(path, "rb") as file:
                await smtp.sendmail("a@example.org", ["b@example.org"], file)

    adapter.run(main)
    assert [m.content for m in server.messages] == [content]


def test_malformed_addresses_raise_before_any_byte(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix("PIPELINING"), Hang()])
    mod = adapter.module
    bad = ["a@b.org\r\nRCPT TO:<evil@x.org>", "Name <a@b.org>", "a b@c.org", "a@b.org> SIZE=1", "<a@b.org"]

    async def main() -> None:
        async with mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5) as smtp:
            sent_before = bytes(server.received)
            for address in bad:
                with pytest.raises(ValueError):
                    await smtp.sendmail(address, ["ok@example.org"], MESSAGE)
                with pytest.raises(ValueError):
                    await smtp.sendmail("ok@example.org", ["ok@example.org", address], MESSAGE)
            with pytest.raises(ValueError):
                await smtp.sendmail("ok@example.org", ["ok@example.org"], MESSAGE, mail_options=["SIZE=1\r\nQUIT"])
            with pytest.raises(ValueError):
                await smtp.execute_command(b"NOOP\r\nQUIT")
            assert bytes(server.received) == sent_before
            smtp.close()

    adapter.run(main)


def test_starttls_opportunistic(adapter: Adapter, smtpd: Any, certs: Certs) -> None:
    server = smtpd(tls="starttls")

    async def main() -> Any:
        async with adapter.module.SMTP(
            hostname="localhost", port=server.port, cert_bundle=certs.ca_path
        ) as smtp:
            assert smtp.get_transport_info("sslcontext") is not None
            assert not smtp.supports_extension("starttls")  # capabilities came again after TLS
            return await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)

    assert adapter.run(main)[0] == {}
    assert len(server.messages) == 1


def test_starttls_required_but_not_offered(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(tls="none")
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname=server.host, port=server.port, start_tls=True)
        with pytest.raises(mod.SMTPException, match="STARTTLS extension not supported"):
            await smtp.connect()
        assert not smtp.is_connected

    adapter.run(main)


def test_starttls_disabled(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(tls="starttls")

    async def main() -> None:
        async with adapter.module.SMTP(hostname=server.host, port=server.port, start_tls=False) as smtp:
            await smtp.ehlo()
            assert smtp.get_transport_info("sslcontext") is None
            assert smtp.supports_extension("starttls")

    adapter.run(main)


def test_starttls_refused_by_server_fails(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix("STARTTLS"), Expect(b"STARTTLS"), Send(b"454 4.7.0 TLS not available\r\n"), Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, start_tls=True, timeout=5)
        with pytest.raises(mod.SMTPResponseException) as info:
            await smtp.connect()
        assert info.value.code == 454
        assert not smtp.is_connected

    adapter.run(main)


def test_starttls_response_injection_refused(adapter: Adapter, scripted: Any) -> None:
    server = scripted(
        [*session_prefix("STARTTLS"), Expect(b"STARTTLS"), Send(b"220 go ahead\r\n250 injected\r\n"), Hang()]
    )
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, start_tls=True, timeout=5)
        with pytest.raises(mod.SMTPResponseException, match="injection"):
            await smtp.connect()
        assert not smtp.is_connected

    adapter.run(main)


def test_implicit_tls(adapter: Adapter, smtpd: Any, certs: Certs) -> None:
    server = smtpd(tls="implicit")

    async def main() -> Any:
        async with adapter.module.SMTP(
            hostname="localhost", port=server.port, use_tls=True, cert_bundle=certs.ca_path
        ) as smtp:
            assert smtp.get_transport_info("sslcontext") is not None
            return await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)

    assert adapter.run(main)[0] == {}


def test_implicit_tls_with_caller_context_and_client_cert(adapter: Adapter, smtpd: Any, certs: Certs) -> None:
    server = smtpd(tls="implicit")
    context = certs.client_context()
    context.load_cert_chain(certs.client_cert_path, certs.client_key_path)

    async def main() -> None:
        async with adapter.module.SMTP(hostname="localhost", port=server.port, use_tls=True, tls_context=context) as smtp:
            await smtp.noop()
        async with adapter.module.SMTP(
            hostname="localhost",
            port=server.port,
            use_tls=True,
            cert_bundle=certs.ca_path,
            client_cert=certs.client_cert_path,
            client_key=certs.client_key_path,
        ) as smtp:
            await smtp.noop()

    adapter.run(main)


@pytest.mark.parametrize("which", ["untrusted", "wrong_host", "expired"])
def test_certificate_validation(adapter: Adapter, certs: Certs, which: str) -> None:
    cert = {"untrusted": certs.untrusted_cert, "wrong_host": certs.wrong_host_cert, "expired": certs.expired_cert}[which]
    from .servers import start_smtpd

    # An implicit-TLS server presenting the bad certificate.
    class BadCerts:
        ca_path = certs.ca_path

        def server_context(self) -> ssl.SSLContext:
            return certs.server_context(cert)

    bad = start_smtpd(certs=BadCerts(), tls="implicit")
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="localhost", port=bad.port, use_tls=True, cert_bundle=certs.ca_path, timeout=5)
        with pytest.raises((mod.SMTPConnectError, ssl.SSLError)):
            await smtp.connect()
        assert not smtp.is_connected
        # Only when asked explicitly:
        async with mod.SMTP(hostname="localhost", port=bad.port, use_tls=True, validate_certs=False, timeout=5) as smtp:
            await smtp.noop()

    try:
        adapter.run(main)
    finally:
        bad.stop()


@pytest.mark.parametrize("method", ["login", "auth_plain", "auth_login", "auth_crammd5"])
def test_auth_mechanisms(adapter: Adapter, smtpd: Any, method: str) -> None:
    server = smtpd(auth={"alice": "s3cret"}, auth_required=True)
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            assert set(smtp.server_auth_methods) >= {"plain", "login", "cram-md5"}
            response = await getattr(smtp, method)("alice", "s3cret")
            assert response.code == 235
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            with pytest.raises(mod.SMTPAuthenticationError) as info:
                await getattr(smtp, method)("alice", "wrong")
            assert info.value.code == 535

    adapter.run(main)
    assert server.messages[0].authenticated_as == b"alice"


def test_login_on_connect(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(auth={"alice": "s3cret"}, auth_required=True)

    async def main() -> None:
        async with adapter.module.SMTP(
            hostname=server.host, port=server.port, username="alice", password="s3cret"
        ) as smtp:
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)

    adapter.run(main)
    assert len(server.messages) == 1


@pytest.mark.not_on_sync("oauth_token_generator (an async callable) is aiosmtplib's; smtp_sync takes any SASLMechanism in auth()")
def test_xoauth2(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(auth={"alice": "pw"}, xoauth2_tokens={"alice": "tok-123"})
    mod = adapter.module

    async def token() -> str:
        return "tok-123"

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port, username="alice", oauth_token_generator=token) as smtp:
            await smtp.noop()
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            with pytest.raises(mod.SMTPAuthenticationError):
                await smtp.auth_xoauth2("alice", "wrong-token")
            assert smtp.is_connected

    adapter.run(main)


@pytest.mark.not_on_sync("per-call timeout=; smtp_sync's are the client's timeout and Timeouts")
def test_read_timeout_closes_client(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix(), Expect(b"NOOP"), Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPTimeoutError):
            await smtp.noop(timeout=0.2)
        assert not smtp.is_connected
        with pytest.raises(mod.SMTPServerDisconnected):
            await smtp.noop()

    adapter.run(main)


@pytest.mark.not_on_sync("a refused connection raises ConnectionRefusedError (OSError), as smtplib does, not SMTPConnectError")
def test_connect_refused(adapter: Adapter) -> None:
    from .servers import free_port

    port = free_port()
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=port, timeout=5)
        with pytest.raises(mod.SMTPConnectError, match=f"Error connecting to 127.0.0.1 on port {port}"):
            await smtp.connect()

    adapter.run(main)


def test_greeting_refused(adapter: Adapter, scripted: Any) -> None:
    server = scripted([Send(b"554 5.3.2 no service for you\r\n"), Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        with pytest.raises(mod.SMTPConnectResponseError) as info:
            await smtp.connect()
        assert info.value.code == 554
        assert not smtp.is_connected

    adapter.run(main)


@pytest.mark.not_on_sync("smtplib's commands return a 421 as the reply (code, message) instead of raising; smtp_sync closes the connection")
def test_421_closes_connection(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix(), Expect(b"NOOP"), Send(b"421 4.3.2 shutting down\r\n"), Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPResponseException) as info:
            await smtp.noop()
        assert info.value.code == 421
        assert not smtp.is_connected

    adapter.run(main)


def test_disconnect_mid_transaction(adapter: Adapter, scripted: Any) -> None:
    from .servers import Close

    server = scripted([*session_prefix(), Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Close()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPServerDisconnected):
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        assert not smtp.is_connected

    adapter.run(main)


def test_pipelining_sends_envelope_in_one_write(adapter: Adapter, scripted: Any) -> None:
    from .servers import ExpectData

    server = scripted(
        [
            *session_prefix("PIPELINING", "8BITMIME"),
            Expect(b"MAIL"),
            Expect(b"RCPT"),
            Expect(b"RCPT"),
            Expect(b"DATA"),
            Send(b"250 sender ok\r\n250 rcpt ok\r\n550 no such user\r\n354 go\r\n"),
            ExpectData(),
            Send(b"250 queued\r\n"),
        ]
    )
    mod = adapter.module

    async def main() -> Any:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        result = await smtp.sendmail("a@example.org", ["b@example.org", "c@example.org"], MESSAGE)
        smtp.close()
        return result

    refused, text = adapter.run(main)
    assert text == "queued"
    assert refused == {"c@example.org": (550, "no such user")}
    assert server.lines[1:5] == [
        b"MAIL FROM:<a@example.org>\r\n",
        b"RCPT TO:<b@example.org>\r\n",
        b"RCPT TO:<c@example.org>\r\n",
        b"DATA\r\n",
    ]


@pytest.mark.not_on_sync("aiosmtplib's module-level send(); smtplib has none")
def test_module_level_send(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    mod = adapter.module

    async def main() -> None:
        await mod.send(message(From="a@example.org", To="b@example.org", Subject="x"), hostname=server.host, port=server.port)
        await mod.send(MESSAGE, sender="a@example.org", recipients=["c@example.org"], hostname=server.host, port=server.port)
        with pytest.raises(ValueError, match="Recipients must be provided"):
            await mod.send(MESSAGE, sender="a@example.org", hostname=server.host, port=server.port)

    adapter.run(main)
    assert [m.rcpt_tos for m in server.messages] == [["b@example.org"], ["c@example.org"]]


@pytest.mark.not_on_sync("last_ehlo_response/last_helo_response are aiosmtplib's; smtplib keeps ehlo_resp/helo_resp (bytes)")
def test_commands_and_attributes(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname=server.host, port=server.port, start_tls=False)
        with pytest.raises(mod.SMTPServerDisconnected):
            await smtp.noop()
        greeting = await smtp.connect()
        assert greeting.code == 220
        assert smtp.is_ehlo_or_helo_needed
        ehlo = await smtp.ehlo()
        assert ehlo.code == 250
        assert smtp.last_ehlo_response == ehlo
        assert not smtp.is_ehlo_or_helo_needed
        assert (await smtp.rset()).code == 250
        assert (await smtp.noop()).code == 250
        assert "Supported commands" in await smtp.help()
        assert (await smtp.vrfy("a@example.org")).code == 252
        assert (await smtp.execute_command(b"NOOP")).code == 250
        assert (await smtp.mail("a@example.org")).code == 250
        assert (await smtp.rcpt("b@example.org")).code == 250
        assert (await smtp.data(MESSAGE)).code == 250
        helo = await smtp.helo()
        assert helo.code == 250 and smtp.last_helo_response == helo
        assert smtp.get_transport_info("peername")[1] == server.port
        assert (await smtp.quit()).code == 221
        assert not smtp.is_connected

    adapter.run(main)
    assert len(server.messages) == 1


@pytest.mark.not_on_sync("sendmail_sync()/send_message_sync() are aiosmtplib's; smtp_sync's sendmail is the blocking call")
def test_sendmail_sync(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    smtp = adapter.module.SMTP(hostname=server.host, port=server.port)
    assert smtp.sendmail_sync("a@example.org", ["b@example.org"], MESSAGE)[0] == {}
    smtp2 = adapter.module.SMTP(hostname=server.host, port=server.port)
    assert smtp2.send_message_sync(message(From="a@example.org", To="c@example.org"))[0] == {}
    assert len(server.messages) == 2


def test_unix_socket(adapter: Adapter, smtpd: Any, tmp_path: Any) -> None:
    path = str(tmp_path / "smtp.sock")
    server = smtpd(unix_socket=path)

    async def main() -> None:
        async with adapter.module.SMTP(socket_path=path) as smtp:
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)

    adapter.run(main)
    assert len(server.messages) == 1


@pytest.mark.not_on_sync("a blocking call cannot be cancelled; smtp_sync's bound on a call is its time limits")
def test_cancellation_closes_client(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix(), Expect(b"MAIL"), Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=30)
        await smtp.connect()
        if adapter.name == "asyncio":
            import asyncio

            task = asyncio.ensure_future(smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE))
            while not server.lines[1:]:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            import anyio

            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:

                    async def send() -> None:
                        await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)

                    tg.start_soon(send)
                    while not server.lines[1:]:
                        await anyio.sleep(0.01)
                    scope.cancel()
            assert scope.cancelled_caught
        assert not smtp.is_connected
        with pytest.raises(mod.SMTPServerDisconnected):
            await smtp.noop()

    adapter.run(main)


def test_greeting_timeout(adapter: Adapter, scripted: Any) -> None:
    server = scripted([Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=0.3)
        with pytest.raises(mod.SMTPConnectTimeoutError, match="server ready message"):
            await smtp.connect()
        assert not smtp.is_connected

    adapter.run(main)


@pytest.mark.not_on_sync("per-call timeout=; smtp_sync bounds a whole reply with Timeouts(command=) (tests/test_timeouts.py)")
def test_slow_server_timeout_bounds_whole_operation(adapter: Adapter, scripted: Any) -> None:
    """A server that trickles bytes cannot stretch an operation past its timeout."""
    from .servers import SendSlowly

    server = scripted([*session_prefix(), Expect(b"NOOP"), SendSlowly(b"250 " + b"x" * 200 + b"\r\n", 0.05)])
    mod = adapter.module

    async def main() -> None:
        import time

        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        started = time.monotonic()
        with pytest.raises(mod.SMTPTimeoutError):
            await smtp.noop(timeout=0.5)
        # Each byte arrived well within 0.5 s, yet the whole reply was bounded.
        assert time.monotonic() - started < 5
        assert not smtp.is_connected

    adapter.run(main)


def test_source_address_and_existing_socket(adapter: Adapter, smtpd: Any) -> None:
    import socket

    server = smtpd()
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port, source_address=("127.0.0.1", 0)) as smtp:
            assert smtp.get_transport_info("sockname")[0] == "127.0.0.1"
            await smtp.noop()
        sock = socket.create_connection((server.host, server.port))
        sock.setblocking(False)
        async with mod.SMTP(sock=sock) as smtp:
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)

    adapter.run(main)
    assert len(server.messages) == 1


@pytest.mark.not_on_sync("aiosmtplib's connect() refuses a second connect and its constructor checks its own option combinations; smtplib's connect() reconnects")
def test_connect_overrides_and_errors(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="never-contacted.invalid", port=9)  # connect() overrides both
        await smtp.connect(hostname=server.host, port=server.port)
        with pytest.raises(mod.SMTPException, match="already connected"):
            await smtp.connect()
        await smtp.quit()
        with pytest.raises(ValueError, match="not compatible"):
            mod.SMTP(use_tls=True, start_tls=True)
        with pytest.raises(ValueError, match="mutually exclusive"):
            mod.SMTP(password="x", oauth_token_generator=lambda: None)
        with pytest.raises(ValueError, match="local_hostname"):
            mod.SMTP(local_hostname="bad name")

    adapter.run(main)


def test_trio_run_directly(smtpd: Any) -> None:
    import trio

    import smtp_anyio

    server = smtpd()

    async def main() -> None:
        async with smtp_anyio.SMTP(hostname=server.host, port=server.port) as smtp:
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)

    trio.run(main)
    assert len(server.messages) == 1


class _Tagged(str):
    """A str subclass that would format itself otherwise on the wire."""

    def __format__(self, spec: str) -> str:
        return "x@example.org>\r\nRCPT TO:<evil@example.org"


def test_repeated_envelopes_are_sent_and_checked_as_given(adapter: Adapter, smtpd: Any) -> None:
    """The client keeps the commands of recent envelopes: the same sender and recipients
    sent again go out the same, a str subclass is sent as its characters (never served
    as, or from, a kept command), and a malformed address is refused every time."""
    server = smtpd()
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port, start_tls=False) as smtp:
            for _ in range(3):
                await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
            await smtp.sendmail(_Tagged("a@example.org"), [_Tagged("b@example.org")], MESSAGE)
            for _ in range(2):
                with pytest.raises(ValueError):
                    await smtp.sendmail("a@example.org", ["not an address"], MESSAGE)

    adapter.run(main)
    assert [(m.mail_from, m.rcpt_tos) for m in server.messages] == [
        ("a@example.org", ["b@example.org"])
    ] * 4


def test_kept_envelope_commands_stay_bounded() -> None:
    from smtp_core import Mail, Rcpt, _client_send

    for index in range(3000):
        rcpt = _client_send._command(Rcpt, f"user{index}@example.org", ())
        assert rcpt.to_bytes() == f"RCPT TO:<user{index}@example.org>\r\n".encode()
    assert len(_client_send._COMMANDS) <= _client_send._COMMANDS_MAX
    mail = _client_send._command(Mail, "a@example.org", ("BODY=8BITMIME",))
    assert _client_send._command(Mail, "a@example.org", ("BODY=8BITMIME",)) is mail
