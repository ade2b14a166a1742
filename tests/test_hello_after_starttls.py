"""A message queued behind a STARTTLS is sent on a session that has said EHLO again.

STARTTLS makes the client forget what it knew of the server (RFC 3207, 4.2): EHLO
must come again before MAIL. A ``sendmail`` that starts while another caller's turn
is still upgrading the connection (``connect(start_tls=True)``, or ``starttls()``)
finds EHLO already done and is queued behind that turn; when its turn comes, the
session needs EHLO again. The client says it before the message's MAIL, on every
adapter and in smtp_sync, instead of raising ``LocalProtocolError: cannot send MAIL
in state HELLO``.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import smtp_sync

from .conftest import Adapter, Certs
from .servers import Expect, ExpectContent, Send, Signal, StartTLS, WaitFor

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"
WAIT = 10.0  # seconds: the most a test waits for the loopback server to reach a step


def ehlo_reply(*capabilities: str) -> bytes:
    lines = ["smtp.test", *capabilities]
    return b"".join(
        f"250{'-' if i < len(lines) - 1 else ' '}{line}\r\n".encode() for i, line in enumerate(lines)
    )


def script(context: ssl.SSLContext, starttls_read: threading.Event, go: threading.Event) -> list[Any]:
    """EHLO, STARTTLS held until the test says go; then TLS, EHLO again and one message."""
    return [
        Send(b"220 scripted ESMTP\r\n"),
        Expect(b"EHLO"), Send(ehlo_reply("PIPELINING", "STARTTLS")),
        Expect(b"STARTTLS"), Signal(starttls_read), WaitFor(go),
        Send(b"220 go ahead\r\n"),
        StartTLS(context),
        Expect(b"EHLO"), Send(ehlo_reply("PIPELINING")),
        Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
        Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ExpectContent(), Send(b"250 queued\r\n"),
    ]


def check_transcript(server: Any) -> None:
    assert not server.errors
    *commands, content = server.lines
    assert [line.split()[0] for line in commands] == [b"EHLO", b"STARTTLS", b"EHLO", b"MAIL", b"RCPT", b"DATA"]
    assert content == MESSAGE + b".\r\n"


async def wait_for_server(event: threading.Event) -> None:
    reached = await anyio.to_thread.run_sync(event.wait, WAIT)
    assert reached, "the server never reached the step the test waits for"


async def started(tg: Any, call: Callable[[], Awaitable[Any]], results: list[Any]) -> None:
    """Start ``call`` in ``tg``; it has reached the client's queue when this returns
    (``started()`` does not yield, so the call runs until it first waits)."""

    async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            results.append(await call())
        except Exception as exc:
            results.append(exc)

    await tg.start(run)


@pytest.mark.parametrize("how", ["connect-start-tls", "starttls"])
def test_message_queued_behind_starttls_says_ehlo_first(adapter: Adapter, scripted: Any, certs: Certs, how: str) -> None:
    starttls_read, go = threading.Event(), threading.Event()
    server = scripted(script(certs.server_context(), starttls_read, go))

    async def main() -> list[Any]:
        smtp = adapter.module.SMTP(
            hostname="127.0.0.1", port=server.port, timeout=5, tls_context=certs.client_context(),
            start_tls=how == "connect-start-tls",
        )
        upgrades: list[Any] = []
        sends: list[Any] = []
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                if how == "connect-start-tls":
                    await started(tg, smtp.connect, upgrades)
                else:
                    await smtp.connect()
                    await started(tg, smtp.starttls, upgrades)
                await wait_for_server(starttls_read)  # EHLO done; STARTTLS unanswered
                await started(tg, lambda: smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE), sends)
                go.set()
        smtp.close()
        return [*upgrades, *sends]

    upgrade, sent = adapter.run(main)
    assert not isinstance(upgrade, Exception), upgrade
    assert sent == ({}, "queued")
    check_transcript(server)


def test_sync_message_queued_behind_starttls_says_ehlo_first(scripted: Any, certs: Certs) -> None:
    starttls_read, go = threading.Event(), threading.Event()
    server = scripted(script(certs.server_context(), starttls_read, go))
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, timeout=5)
    results: dict[str, Any] = {}

    def upgrade() -> None:
        try:
            results["starttls"] = smtp.starttls(context=certs.client_context())
        except Exception as exc:
            results["starttls"] = exc

    def send() -> None:
        try:
            results["sendmail"] = smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        except Exception as exc:
            results["sendmail"] = exc

    threads = [threading.Thread(target=upgrade), threading.Thread(target=send)]
    try:
        threads[0].start()
        assert starttls_read.wait(WAIT)  # EHLO done; STARTTLS unanswered
        threads[1].start()
        with smtp._cv:  # the message is queued behind the STARTTLS turn
            assert smtp._cv.wait_for(lambda: len(smtp._queue) == 1, WAIT)
        go.set()
        for thread in threads:
            thread.join(WAIT)
    finally:
        go.set()
        smtp.close()
    assert results["starttls"][0] == 220
    assert results["sendmail"] == {}
    check_transcript(server)
