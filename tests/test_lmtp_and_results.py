"""LMTP (RFC 2033) and typed per-recipient results, on every adapter."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Adapter
from .sync_facade import refusals

MESSAGE = b"Subject: lmtp\r\n\r\nhello\r\n"


@pytest.mark.parametrize("over", ["tcp", "unix"])
def test_lmtp_one_reply_per_recipient(adapter: Adapter, smtpd: Any, tmp_path: Any, over: str) -> None:
    options: dict[str, Any] = {"lmtp": True, "lmtp_refuse": {"full@example.org": "452 4.2.2 mailbox full"}}
    if over == "unix":
        options["unix_socket"] = str(tmp_path / "lmtp.sock")
    server = smtpd(**options)
    mod = adapter.module
    where: dict[str, Any] = {"socket_path": server.socket_path} if over == "unix" else {"hostname": server.host, "port": server.port}

    async def main() -> Any:
        async with mod.LMTP(**where, timeout=5) as lmtp:
            refused, text = await lmtp.sendmail(
                "a@example.org", ["ok@example.org", "full@example.org", "also@example.org"], MESSAGE
            )
            result = await lmtp.sendmail_detailed("a@example.org", ["ok@example.org", "full@example.org"], MESSAGE)
            with pytest.raises(mod.SMTPRecipientsRefused) as info:
                await lmtp.sendmail("a@example.org", ["full@example.org"], MESSAGE)
            assert [code for code, _ in refusals(info.value)] == [452]
            assert lmtp.is_connected
            return refused, text, result

    refused, text, result = adapter.run(main)
    assert set(refused) == {"full@example.org"}
    assert refused["full@example.org"].code == 452
    assert text == "2.1.5 delivered to also@example.org"
    assert result.delivered == ["ok@example.org"]
    ok, full = result.recipients
    assert ok.accepted and ok.rcpt_reply.code == 250 and ok.delivery_reply.code == 250
    assert not full.accepted and full.code == 452 and full.message == "4.2.2 mailbox full"
    assert full.enhanced_status is None  # aiosmtpd does not advertise ENHANCEDSTATUSCODES
    assert full.rcpt_reply.code == 250  # accepted at RCPT, refused at delivery
    assert len(server.messages) == 3


def test_lmtp_uses_lhlo_not_ehlo(adapter: Adapter, scripted: Any) -> None:
    from .servers import Expect, Hang, Send

    server = scripted([Send(b"220 lmtp\r\n"), Expect(b"LHLO"), Send(b"250-lmtp.test\r\n250 PIPELINING\r\n"), Expect(b"NOOP"), Send(b"250 ok\r\n"), Hang()])

    async def main() -> None:
        lmtp = adapter.module.LMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await lmtp.connect()
        await lmtp.noop()
        lmtp.close()

    adapter.run(main)
    assert server.lines[0].startswith(b"LHLO ")


def test_typed_results_from_smtp(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(refuse_recipients={"bad@example.org": "550 5.1.1 no such user"})
    mod = adapter.module

    async def main() -> Any:
        async with mod.SMTP(hostname=server.host, port=server.port) as smtp:
            good = await smtp.sendmail_detailed("a@example.org", ["ok@example.org", "bad@example.org"], MESSAGE)
            bad = await smtp.sendmail_detailed("a@example.org", ["bad@example.org"], MESSAGE)
            return good, bad

    good, bad = adapter.run(main)
    assert good.error is None and good.delivered == ["ok@example.org"]
    ok, refused = good.recipients
    assert ok.accepted and ok.code == 250
    assert not refused.accepted and refused.code == 550 and refused.message == "5.1.1 no such user"
    assert good.data_reply.code == 250
    assert isinstance(bad.error, mod.SMTPRecipientsRefused)
    assert bad.delivered == [] and bad.recipients[0].code == 550
