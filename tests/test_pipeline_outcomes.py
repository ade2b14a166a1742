"""Each pipelined message's outcome is its own: told when its reply comes, never rewritten.

Three failure shapes after the server accepted a first message: the server then hangs,
drops the connection, or refuses the second. The first caller is told of its success;
the second is told what really happened (fate unknown, or refused); nothing that was
accepted is reported failed, and nothing the server may have is sent again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from smtp_core import Outcome

from .conftest import Adapter
from .servers import Close, Expect, ExpectBdat, ExpectData, Hang, Send, Step, session_prefix

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"
FAULTS: dict[str, list[Step]] = {
    "hang": [Hang()],
    "drop": [Close()],
    "refuse": [Send(b"554 5.6.0 content refused\r\n")],
    "garbage": [Send(b"xx not a reply\r\n"), Hang()],
}


def two_messages(*capabilities: str, fault: str) -> list[Step]:
    """The first message is accepted; after the second's content comes the fault."""
    if "CHUNKING" in capabilities:
        return [
            *session_prefix(*capabilities),
            Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(),
            Send(b"250 ok\r\n250 ok\r\n250 queued 1\r\n"),
            Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(),
            Send(b"250 ok\r\n250 ok\r\n"),
            *FAULTS[fault],
        ]
    return [
        *session_prefix(*capabilities),
        Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
        Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ExpectData(),
        Send(b"250 queued 1\r\n"),
        Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
        Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ExpectData(),
        *FAULTS[fault],
    ]


def first_and_second(results: list[Any]) -> tuple[Any, Any]:
    """The accepted message's result, then the other one (trio starts tasks in any order)."""
    accepted = [r for r in results if r == ({}, "queued 1")]
    assert len(accepted) == 1, results  # accepted: never reported failed
    return accepted[0], next(r for r in results if r is not accepted[0])


async def together(adapter: Adapter, *calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the calls concurrently; each result or exception, in order."""
    results: list[Any] = [None] * len(calls)

    async def one(index: int) -> None:
        try:
            results[index] = await calls[index]()
        except Exception as exc:
            results[index] = exc

    if adapter.module.__name__ == "smtp_asyncio":
        import asyncio

        await asyncio.gather(*(one(i) for i in range(len(calls))))
    else:
        import anyio

        async with anyio.create_task_group() as tg:
            for i in range(len(calls)):
                tg.start_soon(one, i)
    return results


def check_second(mod: Any, fault: str, second: Any) -> None:
    if fault == "hang":
        assert isinstance(second, mod.SMTPReadTimeoutError), second
        assert second.outcome is Outcome.UNKNOWN and second.content_started is True
    elif fault == "drop":
        assert isinstance(second, mod.SMTPServerDisconnected), second
        assert second.outcome is Outcome.UNKNOWN
    elif fault == "garbage":
        # The session is out of step: the message's fate is unknown, and said so.
        assert isinstance(second, mod.SMTPResponseException), second
        assert second.code == -1 and "3-digit code" in second.message
        assert second.outcome is Outcome.UNKNOWN and second.content_started is True
    else:
        assert isinstance(second, mod.SMTPDataError), second
        assert second.code == 554 and second.outcome is Outcome.DONE


CAPABILITIES = [("PIPELINING",), ("PIPELINING", "CHUNKING")]


@pytest.mark.parametrize("capabilities", CAPABILITIES, ids=["data", "bdat"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_concurrent_sendmail_outcomes_are_their_own(
    adapter: Adapter, scripted: Any, fault: str, capabilities: tuple[str, ...]
) -> None:
    server = scripted(two_messages(*capabilities, fault=fault))
    mod = adapter.module

    async def main() -> list[Any]:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=0.5)
        await smtp.connect()
        try:
            return await together(
                adapter,
                lambda: smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE),
                lambda: smtp.sendmail("a@example.org", ["c@example.org"], MESSAGE),
            )
        finally:
            smtp.close()

    _, second = first_and_second(adapter.run(main))
    check_second(mod, fault, second)


@pytest.mark.parametrize("capabilities", CAPABILITIES, ids=["data", "bdat"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_send_messages_slots_are_their_own(
    adapter: Adapter, scripted: Any, fault: str, capabilities: tuple[str, ...]
) -> None:
    server = scripted(two_messages(*capabilities, fault=fault))
    mod = adapter.module

    async def main() -> list[Any]:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=0.5)
        await smtp.connect()
        try:
            return await smtp.send_messages(
                [("a@example.org", ["b@example.org"], MESSAGE), ("a@example.org", ["c@example.org"], MESSAGE)]
            )
        finally:
            smtp.close()

    first, second = adapter.run(main)
    assert first == ({}, "queued 1")
    check_second(mod, fault, second)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_pool_reports_the_accepted_message_and_never_resends_an_unknown_one(
    adapter: Adapter, scripted: Any, fault: str
) -> None:
    server = scripted(two_messages("PIPELINING", fault=fault))
    mod = adapter.module

    async def main() -> list[Any]:
        async with mod.SMTPPool(
            hostname="127.0.0.1", port=server.port, max_connections=1, max_in_flight=2,
            timeout=0.5, retry_backoff=0.001,
        ) as pool:
            return await together(
                adapter,
                lambda: pool.sendmail("a@example.org", ["b@example.org"], MESSAGE),
                lambda: pool.sendmail("a@example.org", ["c@example.org"], MESSAGE),
            )

    _, second = first_and_second(adapter.run(main))
    check_second(mod, fault, second)
    # The scripted server takes one connection: a retry would have failed to connect
    # and shown up as SMTPConnectError instead of the fault itself.


def test_a_message_never_sent_is_sent_again_by_the_pool(adapter: Adapter, scripted: Any) -> None:
    # The first connection drops right after the first message is accepted, when the
    # second's envelope is all that went out: the second is sent on a new connection.
    first_connection: list[Step] = [
        *session_prefix("PIPELINING"),
        Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
        Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ExpectData(),
        Send(b"250 queued 1\r\n"),
        Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
        Close(),
    ]
    second_connection: list[Step] = [
        *session_prefix("PIPELINING"),
        Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
        Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ExpectData(),
        Send(b"250 queued 2\r\n"),
    ]
    server = scripted(first_connection, more=[second_connection])
    mod = adapter.module

    async def main() -> list[Any]:
        async with mod.SMTPPool(
            hostname="127.0.0.1", port=server.port, max_connections=1, max_in_flight=2,
            timeout=2, retry_backoff=0.001,
        ) as pool:
            results = await together(
                adapter,
                lambda: pool.sendmail("a@example.org", ["b@example.org"], MESSAGE),
                lambda: pool.sendmail("a@example.org", ["c@example.org"], MESSAGE),
            )
            return [*results, pool.stats["retries"]]

    *results, retries = adapter.run(main)
    _, second = first_and_second(results)
    assert second == ({}, "queued 2")
    assert retries == 1


def test_close_from_another_task_ends_a_waiting_send_at_once(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix("PIPELINING"), Expect(b"MAIL"), Hang()])
    mod = adapter.module

    async def main() -> Any:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=30)
        await smtp.connect()  # EHLO included (to look for STARTTLS)
        results: list[Any] = []

        async def send() -> None:
            try:
                results.append(await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE))
            except Exception as exc:
                results.append(exc)

        async def close_when_waiting() -> None:
            conn = smtp.protocol_connection
            while not conn.awaiting_replies:  # the envelope is out, its replies awaited
                await adapter.sleep(0)
            smtp.close()

        async def both() -> None:
            if mod.__name__ == "smtp_asyncio":
                import asyncio

                await asyncio.gather(send(), close_when_waiting())
            else:
                import anyio

                async with anyio.create_task_group() as tg:
                    tg.start_soon(send)
                    tg.start_soon(close_when_waiting)

        await both()
        return results[0]

    outcome = adapter.run(main)
    # Not a 30-second read timeout: the close ends the wait.
    assert isinstance(outcome, mod.SMTPServerDisconnected), outcome
    assert outcome.outcome is Outcome.NEVER_SENT


@pytest.mark.parametrize("capabilities", CAPABILITIES, ids=["data", "bdat"])
def test_a_message_arriving_mid_wait_goes_out_at_once(
    adapter: Adapter, scripted: Any, capabilities: tuple[str, ...]
) -> None:
    """A second message that comes while the first waits for its reply is written at
    once (the waiting reader is woken), not a round trip later: the server here answers
    nothing until it has read both."""
    if "CHUNKING" in capabilities:
        script: list[Step] = [
            *session_prefix(*capabilities),
            Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(),
            Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(),
            Send(b"250 ok\r\n250 ok\r\n250 queued 1\r\n250 ok\r\n250 ok\r\n250 queued 2\r\n"),
        ]
        waiting = 3  # MAIL, RCPT and BDAT awaiting replies
    else:
        script = [
            *session_prefix(*capabilities),
            Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            ExpectData(),
            Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
            Send(b"250 queued 1\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            ExpectData(),
            Send(b"250 queued 2\r\n"),
        ]
        waiting = 1  # the end of data awaiting its reply
    server = scripted(script)
    mod = adapter.module

    async def main() -> list[Any]:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        conn = smtp.protocol_connection

        async def second() -> Any:
            while conn.awaiting_replies != waiting or (waiting == 1 and conn.state.name != "READY"):
                await adapter.sleep(0)  # until the first waits for its reply
            return await smtp.sendmail("a@example.org", ["c@example.org"], MESSAGE)

        try:
            return await together(
                adapter, lambda: smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE), second
            )
        finally:
            smtp.close()

    assert adapter.run(main) == [({}, "queued 1"), ({}, "queued 2")]


@pytest.mark.parametrize("capabilities", [(), ("PIPELINING",)], ids=["one-by-one", "data"])
def test_a_refusal_is_told_before_the_reset_is_answered(
    adapter: Adapter, scripted: Any, capabilities: tuple[str, ...]
) -> None:
    """A message refused at its content is reported as refused (the server's 554, done)
    even when the RSET that follows is never answered: its reply cannot change it."""
    if capabilities:
        envelope: list[Step] = [
            Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ]
    else:
        envelope = [
            Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"),
            Expect(b"DATA"), Send(b"354 go\r\n"),
        ]
    server = scripted(
        [*session_prefix(*capabilities), *envelope, ExpectData(), Send(b"554 5.7.1 no\r\n"), Hang()]
    )
    mod = adapter.module

    async def main() -> Any:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=0.5)
        await smtp.connect()
        try:
            return await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        except Exception as exc:
            return exc
        finally:
            smtp.close()

    outcome = adapter.run(main)
    assert isinstance(outcome, mod.SMTPDataError), outcome
    assert outcome.code == 554
    assert outcome.outcome is Outcome.DONE
