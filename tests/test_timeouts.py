"""Per-stage time limits and the total deadline, on every adapter.

The client's own ``timeout`` is set far above the stage limit under test, so the
error can only come from that stage's limit (a generous bound on the elapsed time
guards against a hang if it did not).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import Adapter
from .servers import Expect, ExpectData, Hang, Send, SendSlowly, session_prefix

MESSAGE = b"Subject: t\r\n\r\nhi\r\n"
SLOW = 30.0


def run_expecting_timeout(adapter: Adapter, port: int, timeouts: Any, match: str | None = None) -> None:
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=port, timeout=SLOW, timeouts=timeouts)
        started = time.monotonic()
        with pytest.raises(mod.SMTPTimeoutError, match=match):
            await smtp.connect()
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        assert time.monotonic() - started < SLOW / 3
        assert not smtp.is_connected

    adapter.run(main)


def test_greeting_limit(adapter: Adapter, scripted: Any) -> None:
    server = scripted([Hang()])
    run_expecting_timeout(adapter, server.port, adapter.module.Timeouts(greeting=0.3), "ready message")


def test_command_limit(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix("PIPELINING"), Expect(b"MAIL"), Hang()])
    run_expecting_timeout(adapter, server.port, adapter.module.Timeouts(command=0.3))


def test_data_limit(adapter: Adapter, scripted: Any) -> None:
    server = scripted(
        [*session_prefix("PIPELINING"), Expect(b"MAIL"), Send(b"250 ok\r\n250 ok\r\n354 go\r\n"), ExpectData(), Hang()]
    )
    run_expecting_timeout(adapter, server.port, adapter.module.Timeouts(data=0.3))


def test_total_deadline_bounds_a_slow_server(adapter: Adapter, scripted: Any) -> None:
    # Every reply arrives well within the per-command limit, but the whole send cannot.
    server = scripted(
        [
            *session_prefix("PIPELINING"),
            Expect(b"MAIL"),
            SendSlowly(b"250 ok\r\n250 ok\r\n354 go\r\n", 0.05),
            ExpectData(),
            SendSlowly(b"250 " + b"x" * 100 + b"\r\n", 0.05),
        ]
    )
    timeouts = adapter.module.Timeouts(command=2.0, data=2.0, total=1.0)
    run_expecting_timeout(adapter, server.port, timeouts, "total deadline")


def test_connect_limit(adapter: Adapter) -> None:
    """A listener whose accept queue is full never completes new handshakes."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (never accepted)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        mod = adapter.module

        async def main() -> None:
            smtp = mod.SMTP(hostname="127.0.0.1", port=port, timeout=SLOW, timeouts=mod.Timeouts(connect=0.3))
            started = time.monotonic()
            with pytest.raises(mod.SMTPConnectTimeoutError):
                await smtp.connect()
            assert time.monotonic() - started < SLOW / 3

        adapter.run(main)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_host_name_with_several_addresses(adapter: Adapter, smtpd: Any) -> None:
    """'localhost' names ::1 and 127.0.0.1; the server listens on one: the other is tried."""
    server = smtpd()

    async def main() -> None:
        async with adapter.module.SMTP(hostname="localhost", port=server.port, timeout=10) as smtp:
            await smtp.noop()

    adapter.run(main)


def test_each_stage_gets_its_own_limit(adapter: Adapter, scripted: Any) -> None:
    """The command and data stages each take 0.6 s: more than the 1 s limit together, so
    the send succeeds only if the deadline really moves at each stage."""
    mod = adapter.module
    envelope_replies = b"250 ok\r\n250 ok\r\n354 go\r\n"
    final_reply = b"250 queued as " + b"x" * 16 + b"\r\n"
    server = scripted(
        [
            *session_prefix("PIPELINING"),
            Expect(b"MAIL"),
            SendSlowly(envelope_replies, 0.6 / len(envelope_replies)),
            ExpectData(),
            SendSlowly(final_reply, 0.6 / len(final_reply)),
            Expect(b"QUIT"),
            Send(b"221 bye\r\n"),
        ]
    )

    async def main() -> None:
        timeouts = mod.Timeouts(command=1.0, data=1.0)
        async with mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=1.0, timeouts=timeouts) as smtp:
            started = time.monotonic()
            refused, text = await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
            assert time.monotonic() - started > 1.0  # longer than any one limit
        assert refused == {}
        assert text.startswith("queued as")

    adapter.run(main)
