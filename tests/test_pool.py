"""SMTPPool on every adapter: reuse, cap, lifetime, idle expiry, rate limit, retries under chaos."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from .conftest import Adapter
from .servers import Handler, start_smtpd


def body(tag: str) -> bytes:
    return f"Subject: {tag}\r\nMessage-ID: <{tag}@pool.test>\r\n\r\nhello\r\n".encode()


class FakeTime:
    """A clock the test moves by hand; sleeping moves it too."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FlakyHandler(Handler):
    """Drops connections, answers 421 and 4xx at random points (seeded)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.faults: dict[str, int] = {}

    def roll(self, where: str, **chances: float) -> str | None:
        with self.lock:
            value = self.random.random()
        for fault, chance in chances.items():
            if value < chance:
                self.faults[f"{where}:{fault}"] = self.faults.get(f"{where}:{fault}", 0) + 1
                return fault
            value -= chance
        return None

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        fault = self.roll("MAIL", drop=0.04, shutdown=0.04, transient=0.04)
        if fault == "drop":
            server.transport.abort()
            return "250 OK"
        if fault == "shutdown":
            return "421 4.3.2 shutting down"
        if fault == "transient":
            return "451 4.3.0 try again later"
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        fault = self.roll("RCPT", drop=0.03, transient=0.04)
        if fault == "drop":
            server.transport.abort()
            return "250 OK"
        if fault == "transient":
            return "450 4.2.1 mailbox busy"
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        fault = self.roll("DATA", drop_after_storing=0.03, transient=0.03)
        if fault == "transient":
            return "451 4.3.0 local error in processing"
        status = await super().handle_DATA(server, session, envelope)
        if fault == "drop_after_storing":
            server.transport.abort()  # stored, but the client never hears so
        return status


@pytest.mark.parametrize("in_flight", [1, 8])
@pytest.mark.parametrize("seed", [1234, 7, 2026])
def test_chaos_every_message_once_or_reported(adapter: Adapter, seed: int, in_flight: int) -> None:
    handler = FlakyHandler(seed=seed)
    server = start_smtpd(handler=handler)
    mod = adapter.module
    count = 200
    outcomes: dict[str, Any] = {}

    async def send_one(pool: Any, index: int) -> None:
        tag = f"msg{index}"
        try:
            outcomes[tag] = await pool.sendmail("a@example.org", [f"r{index}@example.org"], body(tag))
        except mod.SMTPException as exc:
            outcomes[tag] = exc

    async def main() -> Any:
        async with mod.SMTPPool(
            hostname=server.host,
            port=server.port,
            max_connections=8,
            max_in_flight=in_flight,
            max_attempts=10,
            retry_backoff=0.001,
            timeout=20,
        ) as pool:
            if adapter.name == "asyncio":
                import asyncio

                await asyncio.gather(*[send_one(pool, i) for i in range(count)])
            else:
                import anyio

                async with anyio.create_task_group() as tg:
                    for i in range(count):
                        tg.start_soon(send_one, pool, i)
            return dict(pool.stats)

    try:
        stats = adapter.run(main)
    finally:
        server.stop()
    delivered: dict[str, int] = {}
    for message in server.messages:
        tag = message.content.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
        delivered[tag] = delivered.get(tag, 0) + 1
    assert len(outcomes) == count
    assert all(n == 1 for n in delivered.values()), "a message was delivered twice"
    for tag, outcome in outcomes.items():
        if isinstance(outcome, tuple):
            assert delivered.get(tag) == 1, f"{tag} reported sent but not delivered"
    successes = sum(isinstance(o, tuple) for o in outcomes.values())
    failures = [type(o).__name__ for o in outcomes.values() if not isinstance(o, tuple)]
    assert successes > count * 0.8, failures
    assert stats["retries"] > 0 and sum(handler.faults.values()) > 20
    assert stats["connections"] <= 8 + stats["retries"] + handler.faults.get("DATA:drop_after_storing", 0)


def test_connection_cap_and_reuse(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    mod = adapter.module
    seen: list[int] = []

    async def main() -> Any:
        async with mod.SMTPPool(hostname=server.host, port=server.port, max_connections=2, max_in_flight=1) as pool:

            async def one(i: int) -> None:
                await pool.sendmail("a@example.org", ["b@example.org"], body(f"m{i}"))
                seen.append(pool.connections)

            if adapter.name == "asyncio":
                import asyncio

                await asyncio.gather(*[one(i) for i in range(20)])
            else:
                import anyio

                async with anyio.create_task_group() as tg:
                    for i in range(20):
                        tg.start_soon(one, i)
            return dict(pool.stats)

    stats = adapter.run(main)
    assert len(server.messages) == 20
    assert max(seen) <= 2
    assert stats["connections"] == 2
    assert len({m.peer for m in server.messages}) == 2


def test_retired_after_message_count(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    mod = adapter.module

    async def main() -> None:
        async with mod.SMTPPool(hostname=server.host, port=server.port, max_messages_per_connection=3) as pool:
            for i in range(9):
                await pool.sendmail("a@example.org", ["b@example.org"], body(f"m{i}"))

    adapter.run(main)
    peers = [m.peer for m in server.messages]
    assert len(set(peers)) == 3 and peers[0] == peers[2] != peers[3]
    assert [verb for _, verb in server.handler.commands].count("QUIT") == 3


def test_connection_age_idle_check_and_idle_expiry(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    mod = adapter.module
    time = FakeTime()

    async def main() -> None:
        async with mod.SMTPPool(
            hostname=server.host,
            port=server.port,
            max_connection_age=100,
            check_after_idle=10,
            idle_timeout=50,
            clock=time.clock,
            sleep=time.sleep,
        ) as pool:
            await pool.sendmail("a@example.org", ["b@example.org"], body("first"))
            time.now += 20  # idle past check_after_idle: NOOP before reuse
            await pool.sendmail("a@example.org", ["b@example.org"], body("checked"))
            time.now += 90  # past max_connection_age: a new connection
            await pool.sendmail("a@example.org", ["b@example.org"], body("aged"))
            assert pool.connections == 1
            time.now += 60  # idle past idle_timeout: closed with QUIT
            await pool.expire_idle()
            assert pool.connections == 0

    adapter.run(main)
    first, checked, aged = (m.peer for m in server.messages)
    assert first == checked != aged
    commands = server.handler.commands
    assert (first, "NOOP") in commands
    assert (first, "QUIT") in commands and (aged, "QUIT") in commands


def test_rate_limit_enforced_before_sending(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    mod = adapter.module
    time = FakeTime()
    starts: list[float] = []

    async def main() -> None:
        async with mod.SMTPPool(
            hostname=server.host, port=server.port, rate_limit=(5, 10.0), clock=time.clock, sleep=time.sleep
        ) as pool:
            for i in range(12):
                await pool.sendmail("a@example.org", ["b@example.org"], body(f"m{i}"))
                starts.append(time.now)

    adapter.run(main)
    assert len(server.messages) == 12
    assert time.sleeps and sum(time.sleeps) >= 20
    for i, start in enumerate(starts):
        in_window = [t for t in starts if start - 10.0 < t <= start]
        assert len(in_window) <= 5, (i, starts)


def test_5xx_is_returned_not_retried(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(refuse_recipients={"gone@example.org": "550 5.1.1 no such user"})
    mod = adapter.module

    async def main() -> Any:
        async with mod.SMTPPool(hostname=server.host, port=server.port) as pool:
            with pytest.raises(mod.SMTPRecipientsRefused):
                await pool.sendmail("a@example.org", ["gone@example.org"], body("x"))
            result = await pool.sendmail_detailed("a@example.org", ["gone@example.org", "ok@example.org"], body("y"))
            return result, dict(pool.stats)

    result, stats = adapter.run(main)
    assert stats["retries"] == 0
    assert result.error is None and result.delivered == ["ok@example.org"]
    assert [r.code for r in result.recipients] == [550, 250]


def test_waiting_for_a_connection_times_out(adapter: Adapter, scripted: Any) -> None:
    from .servers import Expect, Hang, session_prefix

    server = scripted([*session_prefix(), Expect(b"MAIL"), Hang()])
    mod = adapter.module

    async def main() -> None:
        pool = mod.SMTPPool(
            hostname="127.0.0.1", port=server.port, max_connections=1, max_in_flight=1, timeout=0.5, max_attempts=1
        )
        errors: list[Any] = []

        async def one(tag: str) -> None:
            try:
                await pool.sendmail("a@example.org", ["b@example.org"], body(tag))
            except mod.SMTPTimeoutError as exc:
                errors.append(exc)

        if adapter.name == "asyncio":
            import asyncio

            await asyncio.gather(one("a"), one("b"))
        else:
            import anyio

            async with anyio.create_task_group() as tg:
                tg.start_soon(one, "a")
                tg.start_soon(one, "b")
        await pool.close()
        assert len(errors) == 2  # one timed out sending, the other waiting for the only connection

    adapter.run(main)


@pytest.mark.not_on_sync(
    "use_tls/start_tls are aiosmtplib's options; smtp_sync's pool takes client_class and starttls"
)
def test_pool_options_are_checked_at_once(adapter: Adapter) -> None:
    with pytest.raises(ValueError, match="not compatible"):
        adapter.module.SMTPPool(hostname="127.0.0.1", port=1, use_tls=True, start_tls=True)
    with pytest.raises(ValueError, match="max_connections"):
        adapter.module.SMTPPool(hostname="127.0.0.1", port=1, max_connections=0)
