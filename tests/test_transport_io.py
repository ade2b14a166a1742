"""The adapters' byte transports at their edges: a peer that stops reading, a read that
finds its reply already there, a connection closed under a waiting read.

Each runs on every async adapter and backend (the anyio adapter reads and writes
sockets with the backend's own primitives, so these are the places where it differs
from a stream library's guarantees if it is wrong).
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from .conftest import Adapter
from .servers import Close, Expect, ExpectData, Send, Signal, WaitFor, session_prefix

ENVELOPE_OK = b"250 ok\r\n250 ok\r\n354 go\r\n"
DEADLINE = 0.3
HANG = 2.0  # seconds past the deadline that only a hang would take
CHUNK = b"x" * 65534 + b"\r\n"
MOST_CHUNKS = 4096  # 256 MiB: far more than any socket buffers hold


@pytest.mark.not_on_sync("per-call timeout= and streamed async content are aiosmtplib's API")
def test_a_peer_that_stops_reading_blocks_the_write_until_the_deadline(
    adapter: Adapter, scripted: Any
) -> None:
    """The server takes the envelope, answers 354, and reads no more: the content's
    writes block once the socket buffers are full, and the call's deadline ends them."""
    release = threading.Event()
    server = scripted(
        [
            *session_prefix("PIPELINING"),
            Expect(b"MAIL"),
            Send(ENVELOPE_OK),
            WaitFor(release, timeout=30),
        ]
    )
    mod = adapter.module
    produced = 0

    async def content() -> AsyncIterator[bytes]:
        nonlocal produced
        yield b"Subject: big\r\n\r\n"
        for _ in range(MOST_CHUNKS):
            produced += 1
            yield CHUNK

    async def main() -> Any:
        smtp = mod.SMTP(
            hostname="127.0.0.1", port=server.port, timeout=60, local_hostname="client.test"
        )
        await smtp.connect()
        started = time.monotonic()
        with pytest.raises(mod.SMTPTimeoutError) as info:
            await smtp.sendmail("a@example.org", ["b@example.org"], content(), timeout=DEADLINE)
        elapsed = time.monotonic() - started
        assert elapsed < DEADLINE + HANG, elapsed
        assert not smtp.is_connected
        return info.value

    try:
        exc = adapter.run(main)
    finally:
        release.set()
    assert exc.outcome is mod.Outcome.UNKNOWN  # some content went out
    assert 0 < produced < MOST_CHUNKS  # the writes blocked: not all of it was made


def test_concurrent_calls_share_the_pipeline_when_replies_come_back_at_once(
    adapter: Adapter, scripted: Any
) -> None:
    """Five messages started together go back to back (each envelope in the write that
    ends the previous content), even though the server answers each write before the
    client could possibly wait for it: a read that finds its reply already there lets
    the other callers join first."""
    script: list[Any] = [
        *session_prefix("PIPELINING"),
        Expect(b"MAIL"),
        Expect(b"RCPT"),
        Expect(b"DATA"),
        Send(ENVELOPE_OK),
    ]
    for index in range(5):
        script.append(ExpectData())
        script.append(Send(b"250 queued\r\n" + (ENVELOPE_OK if index < 4 else b"")))
        if index < 4:
            script += [Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA")]
    server = scripted(script)
    mod = adapter.module
    message = b"Subject: hi\r\n\r\nhello\r\n"

    async def main() -> list[Any]:
        smtp = mod.SMTP(
            hostname="127.0.0.1", port=server.port, timeout=5, local_hostname="client.test"
        )
        await smtp.connect()
        writes: list[bytes] = []
        transport = smtp._transport
        write = transport.write
        sock = transport.get_extra_info("socket").fileno()

        async def recording_write(data: bytes) -> None:
            writes.append(bytes(data))
            await write(data)
            # Every write here is answered: wait (blocking the event loop) until the
            # answer is in the socket, so that the read that follows finds it there.
            readable, _, _ = select.select([sock], [], [], 5)
            assert readable, "the server did not answer"

        transport.write = recording_write
        results: list[Any] = [None] * 5

        async def one(i: int) -> None:
            results[i] = await smtp.sendmail("a@example.org", ["b@example.org"], message)

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(one, i)
        smtp.close()
        envelopes_after_content = sum(1 for w in writes if b".\r\nMAIL FROM:" in w)
        assert envelopes_after_content == 4, writes
        return results

    assert adapter.run(main) == [({}, "queued")] * 5


@pytest.mark.not_on_sync(
    "closing from another task while a call waits is the async adapters' concern"
)
def test_aclose_under_a_waiting_read_ends_the_call_as_disconnected(
    adapter: Adapter, scripted: Any
) -> None:
    """``aclose()`` (smtp_asyncio: ``close()``) from another task while a sendmail waits
    for its reply: the call ends with ``SMTPServerDisconnected``, not with the backend's
    resource errors."""
    waiting = threading.Event()
    release = threading.Event()
    server = scripted(
        [
            *session_prefix("PIPELINING"),
            Expect(b"MAIL"),
            Signal(waiting),
            WaitFor(release, timeout=30),
        ]
    )
    mod = adapter.module

    async def main() -> Any:
        smtp = mod.SMTP(
            hostname="127.0.0.1", port=server.port, timeout=60, local_hostname="client.test"
        )
        await smtp.connect()
        caught: list[BaseException] = []

        async def send() -> None:
            try:
                await smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nx\r\n")
            except Exception as exc:
                caught.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            while not waiting.is_set():  # the server has the envelope: the client reads
                await anyio.sleep(0.01)
            await anyio.sleep(0.05)
            if hasattr(smtp, "aclose"):  # smtp_anyio: releases the stream at once
                await smtp.aclose()
            else:
                smtp.close()
        assert not smtp.is_connected
        return caught

    try:
        caught = adapter.run(main)
    finally:
        release.set()
    assert len(caught) == 1 and type(caught[0]) is mod.SMTPServerDisconnected, caught
    assert caught[0].outcome is mod.Outcome.NEVER_SENT


def test_a_connection_the_server_closed_while_idle_is_not_connected(
    adapter: Adapter, scripted: Any
) -> None:
    """``is_connected`` looks at the socket without reading it: True while the server
    keeps the idle connection open, False once it has closed it, with no call between."""
    release = threading.Event()
    server = scripted([*session_prefix("PIPELINING"), WaitFor(release, timeout=30), Close()])
    mod = adapter.module

    async def main() -> bool:
        smtp = mod.SMTP(
            hostname="127.0.0.1", port=server.port, timeout=60, local_hostname="client.test"
        )
        await smtp.connect()
        assert smtp.is_connected and smtp.is_connected  # looking twice reads nothing
        release.set()
        limit = time.monotonic() + HANG
        while smtp.is_connected and time.monotonic() < limit:
            await anyio.sleep(0.01)  # the server's close reaches the socket
        closed = not smtp.is_connected
        smtp.close()
        return closed

    try:
        assert adapter.run(main)
    finally:
        release.set()


def test_a_write_on_trio_is_a_checkpoint(scripted: Any) -> None:
    """As with trio's own sockets, a write lets the other tasks run: over many
    connections the server's reply is then usually there when it is read."""
    import trio
    import trio.testing

    import smtp_anyio
    from smtp_anyio._trio import TrioTransport

    server = scripted([*session_prefix("PIPELINING"), Expect(b"NOOP"), Close()])

    async def main() -> None:
        smtp = smtp_anyio.SMTP(
            hostname="127.0.0.1", port=server.port, timeout=60, local_hostname="client.test"
        )
        await smtp.connect()
        transport = smtp._transport
        assert isinstance(transport, TrioTransport) and transport._sock is not None
        with trio.testing.assert_checkpoints():
            await transport.write(b"NOOP\r\n")
        smtp.close()

    trio.run(main)
