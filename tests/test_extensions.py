"""DSN, REQUIRETLS and MT-PRIORITY as typed options, on every adapter."""

from __future__ import annotations

from typing import Any

import pytest

from smtp_core import DSN, LocalProtocolError

from .conftest import Adapter
from .servers import Expect, ExpectBdat, ExpectData, Hang, Send, session_prefix

MESSAGE = b"Subject: dsn\r\n\r\nhi\r\n"


def test_dsn_parameters() -> None:
    dsn = DSN(ret="hdrs", envid="QQ 314+159", notify=("failure", "delay"), orcpt=True)
    assert dsn.mail_parameters() == ["RET=HDRS", "ENVID=QQ+20314+2B159"]
    assert dsn.rcpt_parameters("a@b.org") == ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;a@b.org"]
    per = DSN(notify={"a@b.org": ("NEVER",)}, orcpt={"a@b.org": "josé@old.example"})
    assert per.rcpt_parameters("a@b.org") == ["NOTIFY=NEVER", "ORCPT=utf-8;jos\\x{E9}@old.example"]
    assert per.rcpt_parameters("other@b.org") == []


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"ret": "BODY"}, "FULL or HDRS"),
        ({"notify": ("NEVER", "FAILURE")}, "NEVER cannot"),
        ({"notify": ("SOMETIMES",)}, "unknown"),
        ({"notify": "FAILURE"}, "sequence"),
        ({"envid": "a\r\nb"}, "printable"),
        ({"envid": "x" * 101}, "1 to 100"),
    ],
)
def test_dsn_validation(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(LocalProtocolError, match=fragment):
        DSN(**kwargs)


def test_dsn_priority_sent_when_offered(adapter: Adapter, scripted: Any) -> None:
    server = scripted(
        [
            *session_prefix("PIPELINING", "DSN", "MT-PRIORITY MIXER"),
            Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"RCPT"), Expect(b"DATA"),
            Send(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            ExpectData(), Send(b"250 queued\r\n"), Hang(),
        ]
    )

    async def main() -> None:
        smtp = adapter.module.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        await smtp.sendmail(
            "a@example.org",
            ["b@example.org", "c@example.org"],
            MESSAGE,
            dsn=DSN(ret="FULL", envid="msg-1", notify={"b@example.org": ("SUCCESS", "FAILURE")}, orcpt=True),
            priority=3,
        )
        smtp.close()

    adapter.run(main)
    assert server.lines[1] == b"MAIL FROM:<a@example.org> MT-PRIORITY=3 RET=FULL ENVID=msg-1\r\n"
    assert server.lines[2] == b"RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org\r\n"
    assert server.lines[3] == b"RCPT TO:<c@example.org> ORCPT=rfc822;c@example.org\r\n"


def test_dsn_not_offered_and_priority_skipped(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            with pytest.raises(mod.SMTPNotSupported, match="DSN"):
                await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE, dsn=DSN(ret="HDRS"))
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE, priority=-2)

    adapter.run(main)
    [got] = server.messages
    assert not any(opt.startswith("MT-PRIORITY") for opt in got.mail_options)


def test_requiretls_needs_the_extension_over_tls(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix("REQUIRETLS"), Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5, start_tls=False)
        await smtp.connect()
        await smtp.ehlo()
        before = bytes(server.received)
        with pytest.raises(mod.SMTPNotSupported, match="REQUIRETLS"):
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE, require_tls=True)
        assert bytes(server.received) == before
        with pytest.raises(LocalProtocolError, match="MT-PRIORITY"):
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE, priority=12)
        smtp.close()

    adapter.run(main)


def test_binarymime_with_bdat_sends_content_unaltered(adapter: Adapter, scripted: Any) -> None:
    from .servers import ExpectBdat

    content = b"Subject: binary\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01bare\nlf\rcr" + b"z" * 1200
    server = scripted(
        [
            *session_prefix("PIPELINING", "CHUNKING", "BINARYMIME", "8BITMIME"),
            Expect(b"MAIL"), Expect(b"RCPT"),
            Send(b"250 ok\r\n250 ok\r\n"),
            ExpectBdat(),
            Send(b"250 stored\r\n"),
            Hang(),
        ]
    )

    async def main() -> None:
        smtp = adapter.module.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        await smtp.sendmail("a@example.org", ["b@example.org"], content)
        smtp.close()

    adapter.run(main)
    assert server.lines[1] == b"MAIL FROM:<a@example.org> BODY=BINARYMIME\r\n"
    header, payload = server.lines[3].split(b"\r\n", 1)
    assert header == f"BDAT {len(content)} LAST".encode()
    assert payload == content


DSN_PATHS = {
    "pipelining-data": (("PIPELINING", "DSN"), False),
    "data": (("DSN",), False),
    "pipelining-bdat": (("PIPELINING", "CHUNKING", "DSN"), False),
    "bdat": (("CHUNKING", "DSN"), False),
    "lmtp": (("PIPELINING", "DSN"), True),
}


@pytest.mark.parametrize("path", list(DSN_PATHS))
def test_dsn_per_recipient_on_every_path(adapter: Adapter, scripted: Any, path: str) -> None:
    """Each RCPT carries its own recipient's NOTIFY and ORCPT, whatever the path."""
    capabilities, lmtp = DSN_PATHS[path]
    recipients = ["a@example.org", "b@example.org", "c@example.org"]
    notify = {"a@example.org": ("NEVER",), "b@example.org": ("SUCCESS",), "c@example.org": ("FAILURE", "DELAY")}
    orcpt = {"a@example.org": "old-a@example.net", "b@example.org": "old-b@example.net", "c@example.org": "old-c@example.net"}
    bdat = "CHUNKING" in capabilities and not lmtp
    script: list[Any] = [*session_prefix(*capabilities), Expect(b"MAIL"), Send(b"250 ok\r\n")]
    for _ in recipients:
        script += [Expect(b"RCPT"), Send(b"250 ok\r\n")]
    if bdat:
        script += [ExpectBdat(), Send(b"250 queued\r\n")]
    else:
        script += [Expect(b"DATA"), Send(b"354 go\r\n"), ExpectData()]
        script.append(Send(b"250 delivered\r\n" * (3 if lmtp else 1)))
    server = scripted(script)
    mod = adapter.module

    async def main() -> None:
        client = mod.LMTP if lmtp else mod.SMTP
        smtp = client(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        await smtp.sendmail("s@example.org", recipients, MESSAGE, dsn=DSN(notify=notify, orcpt=orcpt))
        smtp.close()

    adapter.run(main)
    rcpt_lines = [line.decode() for line in server.lines if line.startswith(b"RCPT")]
    assert rcpt_lines == [
        "RCPT TO:<a@example.org> NOTIFY=NEVER ORCPT=rfc822;old-a@example.net\r\n",
        "RCPT TO:<b@example.org> NOTIFY=SUCCESS ORCPT=rfc822;old-b@example.net\r\n",
        "RCPT TO:<c@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;old-c@example.net\r\n",
    ]
