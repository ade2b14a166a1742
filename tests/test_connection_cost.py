"""What a new connection costs on asyncio, and that the savings keep every guarantee.

A connection's stages (connect, greeting, EHLO, the message, QUIT) each run under a
deadline; the deadlines of one event loop share their timers (an idle deadline keeps
its timer for the next operation), and the connections of one loop share the buffer
the loop reads into. These tests check that a shared timer still ends the right
operation at the right time, and never one it no longer serves, and that a shared
buffer never mixes two connections' bytes. They run on asyncio and on uvloop (whose
timer handles and transports are not asyncio's); smtp_anyio on asyncio uses the same
deadline and transport.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

import smtp_anyio
import smtp_asyncio
from smtp_asyncio import _deadline
from smtp_asyncio._deadline import with_deadline
from smtp_asyncio._transport import StreamProtocol
from smtp_core import SMTPReadTimeoutError

from .conftest import uvloop

T = TypeVar("T")
SHORT = 0.05
HANG = 5.0  # seconds past SHORT that only a deadline that never fired would take

LOOPS = ["asyncio"] + (["uvloop"] if uvloop is not None else [])


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[T]]], T]:
    def run(main: Callable[[], Awaitable[T]]) -> T:
        if request.param == "uvloop":
            result: T = uvloop.run(main())
            return result
        return asyncio.run(main())  # type: ignore[arg-type]

    return run


async def _quick(restart: Callable[[float | None], None]) -> str:
    return "done"


async def _forever(restart: Callable[[float | None], None]) -> None:
    await asyncio.get_running_loop().create_future()


def test_a_short_limit_after_a_long_one_still_ends_its_operation(run: Any) -> None:
    """The idle deadline's timer was set 60 s ahead: the next operation's 50 ms limit
    sets it earlier."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert await with_deadline(60, _quick) == "done"
        started = loop.time()
        with pytest.raises(SMTPReadTimeoutError):
            await with_deadline(SHORT, _forever)
        return loop.time() - started

    elapsed = run(main)
    assert SHORT * 0.9 <= elapsed < SHORT + HANG


def test_a_timer_that_fires_while_its_deadline_is_idle_cancels_nothing(run: Any) -> None:
    """An operation under a 50 ms limit ends at once; its timer, left running, fires
    while the task waits for something else with no deadline: the task goes on."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert await with_deadline(SHORT, _quick) == "done"
        started = loop.time()
        later: asyncio.Future[None] = loop.create_future()
        loop.call_later(SHORT * 4, later.set_result, None)
        await later  # not cancelled by the timer that fires meanwhile
        return loop.time() - started

    assert run(main) >= SHORT * 4 * 0.9


def test_a_deadline_taken_by_another_task_ends_that_task_only(run: Any) -> None:
    """Task A's operation ends; task B's takes the idle deadline and passes it: B times
    out, A (waiting for something else) is not cancelled."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        a_may_end: asyncio.Future[None] = loop.create_future()

        async def a() -> None:
            assert await with_deadline(SHORT, _quick) == "done"
            await a_may_end
            seen.append("a ended")

        async def b() -> None:
            with pytest.raises(SMTPReadTimeoutError):
                await with_deadline(SHORT, _forever)
            seen.append("b timed out")
            a_may_end.set_result(None)

        first = asyncio.ensure_future(a())
        await asyncio.sleep(0)  # a's operation runs and ends first
        await asyncio.gather(first, b())
        return seen

    assert run(main) == ["b timed out", "a ended"]


def test_a_deadline_that_moved_later_is_kept_by_a_timer_that_fires_early(run: Any) -> None:
    """The shared timer fires for an earlier, longer-gone limit: the deadline in use is
    later, so the timer waits again, and the operation ends by its own limit."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert await with_deadline(SHORT, _quick) == "done"  # timer left at +SHORT
        started = loop.time()
        with pytest.raises(SMTPReadTimeoutError):
            await with_deadline(SHORT * 4, _forever)
        return loop.time() - started

    elapsed = run(main)
    assert SHORT * 4 * 0.9 <= elapsed < SHORT * 4 + HANG


def test_idle_deadlines_are_bounded() -> None:
    """A burst of concurrent operations leaves at most a few idle deadlines (and
    timers) behind."""

    async def main() -> int:
        await asyncio.gather(*(with_deadline(60, _quick) for _ in range(200)))
        return len(_deadline._pool.idle)

    assert asyncio.run(main()) <= _deadline._POOLED


@pytest.fixture
def deadline_timers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The times for which a deadline's timer was scheduled."""
    scheduled: list[float] = []
    arm = _deadline._Deadline._arm

    def counting_arm(self: Any, when: float) -> None:
        scheduled.append(when)
        arm(self, when)

    monkeypatch.setattr(_deadline._Deadline, "_arm", counting_arm)
    yield scheduled


@pytest.mark.parametrize("module", [smtp_asyncio, smtp_anyio], ids=["asyncio", "anyio-asyncio"])
def test_new_connections_share_one_timer(
    module: Any, smtpd: Any, deadline_timers: list[float]
) -> None:
    """Five connections in turn, each with a message: every stage of every connection
    is under its deadline, and one timer serves them all."""
    server = smtpd()

    async def main() -> None:
        for _ in range(5):
            async with module.SMTP(
                hostname=server.host, port=server.port, start_tls=False, local_hostname="client.test"
            ) as smtp:
                await smtp.sendmail("a@example.org", ["b@example.org"], "Subject: hi\n\nhello\n")

    asyncio.run(main())
    assert len(server.messages) == 5
    assert len(deadline_timers) == 1


def test_connections_of_one_loop_never_mix_their_bytes(run: Any) -> None:
    """The loop reads every connection into one buffer: each read is copied out before
    the next, so bytes read for one connection stay its own."""

    async def main() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        first, second = StreamProtocol(loop), StreamProtocol(loop)
        for protocol, data in ((first, b"220 first\r\n"), (second, b"220 second\r\n")):
            buffer = protocol.get_buffer(-1)
            buffer[: len(data)] = data
            protocol.buffer_updated(len(data))
        return await first.read(), await second.read()

    assert run(main) == (b"220 first\r\n", b"220 second\r\n")


def test_each_thread_s_loop_has_its_own_read_buffer() -> None:
    async def buffer_of_this_loop() -> memoryview:
        return StreamProtocol(asyncio.get_running_loop()).get_buffer(-1)

    buffers: list[memoryview] = []

    def in_thread() -> None:
        buffers.append(asyncio.run(buffer_of_this_loop()))

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    here = asyncio.run(buffer_of_this_loop())
    assert len(buffers) == 1 and buffers[0].obj is not here.obj
    assert asyncio.run(buffer_of_this_loop()).obj is here.obj  # kept for the thread's life
