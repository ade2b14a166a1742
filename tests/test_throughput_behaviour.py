"""Pipelining across messages, batches, concurrent calls and streamed content, on every adapter."""

from __future__ import annotations

import io
import tracemalloc
from typing import Any

import pytest

from .conftest import Adapter
from .servers import Close, Expect, ExpectBuffered, ExpectData, Hang, Send, session_prefix
from .sync_facade import refusals

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


def envelope_replies(n_rcpt: int = 1) -> bytes:
    return b"250 ok\r\n" + b"250 ok\r\n" * n_rcpt + b"354 go\r\n"


def back_to_back_script(count: int) -> list[Any]:
    script: list[Any] = [*session_prefix("PIPELINING"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), Send(envelope_replies())]
    for index in range(count):
        script.append(ExpectData())
        if index + 1 < count:
            # The next envelope came in the same write as the end of data: no round trip.
            script += [ExpectBuffered(b"MAIL"), ExpectBuffered(b"RCPT"), ExpectBuffered(b"DATA")]
            script.append(Send(b"250 queued\r\n" + envelope_replies()))
        else:
            script.append(Send(b"250 queued\r\n"))
    return script


@pytest.mark.not_on_sync(
    "threads start one after another, not all before the first write as tasks do: a message whose thread comes after the previous content went out is written at once in its own write (the waiting reader woken), so which envelope shares a write with the previous end of data is timing"
)
def test_gather_on_one_connection_is_pipelined(adapter: Adapter, scripted: Any) -> None:
    server = scripted(back_to_back_script(5))
    mod = adapter.module

    async def main() -> list[Any]:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        if adapter.name == "asyncio":
            import asyncio

            results = await asyncio.gather(
                *[smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE) for _ in range(5)]
            )
        else:
            import anyio

            results = [None] * 5

            async def one(i: int) -> None:
                results[i] = await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)

            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(one, i)
        smtp.close()
        return list(results)

    results = adapter.run(main)
    assert results == [({}, "queued")] * 5
    assert server.buffered and all(server.buffered), server.buffered


def test_send_messages_batch_with_refusals(adapter: Adapter, scripted: Any) -> None:
    script = [
        *session_prefix("PIPELINING"),
        Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
        Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ExpectData(), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
        Send(b"250 queued 1\r\n250 ok\r\n550 no such user\r\n503 no valid recipients\r\n"),
        Expect(b"RSET"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
        Send(b"250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
        ExpectData(),
        Send(b"250 queued 3\r\n"),
    ]
    server = scripted(script)
    mod = adapter.module

    async def main() -> list[Any]:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        results = await smtp.send_messages(
            [
                ("a@example.org", ["b@example.org"], MESSAGE),
                ("a@example.org", "nobody@example.org", MESSAGE),
                ("a@example.org", ["c@example.org"], MESSAGE),
            ]
        )
        smtp.close()
        return results

    first, second, third = adapter.run(main)
    assert first == ({}, "queued 1")
    assert isinstance(second, mod.SMTPRecipientsRefused)
    assert [code for code, _ in refusals(second)] == [550]
    assert third == ({}, "queued 3")


def test_send_messages_against_aiosmtpd(adapter: Adapter, smtpd: Any) -> None:
    """Without PIPELINING the batch goes one message at a time, with the same results."""
    from email.message import EmailMessage

    server = smtpd(refuse_recipients={"bad@example.org": "550 no"})
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.org", "m@example.org", "x"
    msg.set_content("hi")

    async def main() -> list[Any]:
        async with adapter.module.SMTP(hostname=server.host, port=server.port) as smtp:
            return await smtp.send_messages([msg, ("a@example.org", ["bad@example.org"], MESSAGE), ("a@example.org", ["ok@example.org"], MESSAGE)])

    results = adapter.run(main)
    assert results[0][0] == {} and results[2][0] == {}
    assert isinstance(results[1], adapter.module.SMTPRecipientsRefused)
    assert [m.rcpt_tos for m in server.messages] == [["m@example.org"], ["ok@example.org"]]


@pytest.mark.not_on_sync(
    "async iterables of content are aiosmtplib-side; smtp_sync streams files and iterables of bytes (tests/test_sync.py)"
)
def test_streamed_content_file_iterable_async_iterable(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    body = b"Subject: stream\r\n\r\n" + b"".join(b".line %d\n" % i for i in range(2000))

    async def chunks() -> Any:
        for i in range(0, len(body), 777):
            yield body[i : i + 777]

    async def main() -> None:
        async with adapter.module.SMTP(hostname=server.host, port=server.port) as smtp:
            await smtp.sendmail("a@example.org", ["b@example.org"], io.BytesIO(body))
            await smtp.sendmail("a@example.org", ["b@example.org"], (body[i : i + 1000] for i in range(0, len(body), 1000)))
            await smtp.sendmail("a@example.org", ["b@example.org"], chunks())

    adapter.run(main)
    expected = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert [m.content for m in server.messages] == [expected] * 3


# A sink in its own process, so that tracemalloc sees the client's allocations only
# (and is not slowed by the server's): it answers the content with its size.
_SINK = r"""
import asyncio, sys

async def session(reader, writer):
    writer.write(b"220 sink ESMTP\r\n")
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go\r\n")
            size = 0
            while (chunk := await reader.readline()) not in (b".\r\n", b""):
                size += len(chunk)
            writer.write(b"250 received %d\r\n" % size)
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            break
        else:
            writer.write(b"250 ok\r\n")
        await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(session, "127.0.0.1", 0, limit=1 << 20)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def test_large_streamed_message_memory_is_bounded(tmp_path: Any) -> None:
    """20 MiB streamed from a file: the client's own allocations stay far below the size."""
    import asyncio
    import subprocess
    import sys

    import smtp_asyncio

    path = tmp_path / "big.eml"
    line = b".a line that starts with a dot and needs stuffing\n"
    with open(path, "wb") as file:
        file.write(b"Subject: big\n\n")
        for _ in range((20 * 1024 * 1024) // len(line)):
            file.write(line)

    sink = subprocess.Popen([sys.executable, "-c", _SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())

        async def main() -> tuple[str, int]:
            async with smtp_asyncio.SMTP(hostname="127.0.0.1", port=port, timeout=60) as smtp:
                tracemalloc.start()
                with open(path, "rb") as file:
                    _, message = await smtp.sendmail("a@example.org", ["b@example.org"], file)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                return message, peak

        message, peak = asyncio.run(main())
    finally:
        sink.kill()
        sink.wait()
    assert int(message.split()[-1]) > 20 * 1024 * 1024  # all of it, dot-stuffed
    assert peak < 4 * 1024 * 1024, peak  # a few 256 KiB chunks, never the message


def test_bdat_used_when_chunking_is_offered(adapter: Adapter, scripted: Any) -> None:
    from .servers import ExpectBdat

    body = b"Subject: bdat\n\n.dot line\n" + b"x" * 300_000 + b"\n"
    server = scripted(
        [
            *session_prefix("PIPELINING", "CHUNKING"),
            Expect(b"MAIL"), Expect(b"RCPT"),
            Send(b"250 ok\r\n250 ok\r\n"),
            ExpectBdat(), ExpectBdat(),
            Send(b"250 chunk ok\r\n250 message accepted\r\n"),
        ]
    )

    async def main() -> Any:
        smtp = adapter.module.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        result = await smtp.sendmail("a@example.org", ["b@example.org"], body)
        smtp.close()
        return result

    assert adapter.run(main) == ({}, "message accepted")
    first, second = server.lines[3], server.lines[4]
    assert first.startswith(b"BDAT ") and b"LAST" not in first.split(b"\r\n", 1)[0]
    assert second.startswith(b"BDAT ") and b" LAST\r\n" in second
    wire = first.split(b"\r\n", 1)[1] + second.split(b"\r\n", 1)[1]
    # Line endings normalised, no dot-stuffing, no terminator with BDAT.
    assert wire == body.replace(b"\n", b"\r\n")


def test_bdat_refused(adapter: Adapter, scripted: Any) -> None:
    from .servers import ExpectBdat

    server = scripted(
        [
            *session_prefix("CHUNKING"),
            Expect(b"MAIL"), Send(b"250 ok\r\n"),
            Expect(b"RCPT"), Send(b"250 ok\r\n"),
            ExpectBdat(), Send(b"554 5.6.0 rejected\r\n"),
            Expect(b"RSET"), Send(b"250 reset\r\n"),
        ]
    )
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPDataError) as info:
            await smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
        assert info.value.code == 554
        assert smtp.is_connected
        smtp.close()

    adapter.run(main)


@pytest.mark.not_on_sync(
    "its streamed part is an async iterable; smtp_sync's progress= on files and iterables is in tests/test_sync.py"
)
def test_progress_callback_for_large_messages(adapter: Adapter, smtpd: Any, tmp_path: Any) -> None:
    server = smtpd(data_size_limit=None)
    path = tmp_path / "big.eml"
    path.write_bytes(b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 10_000)
    size = path.stat().st_size
    seen: list[tuple[int, Any]] = []
    streamed: list[tuple[int, Any]] = []

    async def chunks() -> Any:
        for _ in range(10):
            yield (b"y" * 98 + b"\r\n") * 1000

    async def main() -> None:
        async with adapter.module.SMTP(hostname=server.host, port=server.port) as smtp:
            with open(path, "rb") as file:
                await smtp.sendmail("a@example.org", ["b@example.org"], file, progress=lambda s, t: seen.append((s, t)))
            await smtp.sendmail("a@example.org", ["b@example.org"], chunks(), progress=lambda s, t: streamed.append((s, t)))

    adapter.run(main)
    assert len(seen) >= 3
    assert all(total == size for _, total in seen)
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert seen[-1][0] == size
    assert streamed[-1] == (1_000_000, None)


def test_bdat_pipelined_with_the_envelope_costs_one_round_trip(adapter: Adapter, scripted: Any) -> None:
    """With PIPELINING and CHUNKING, MAIL, RCPT and BDAT LAST arrive before any reply:
    the server below answers nothing until it has read all three."""
    from .servers import ExpectBdat

    body = b"Subject: one trip\r\n\r\nhello\r\n"
    server = scripted(
        [
            *session_prefix("PIPELINING", "CHUNKING"),
            Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(),
            Send(b"250 ok\r\n250 ok\r\n250 2.0.0 accepted\r\n"),
            Expect(b"QUIT"), Send(b"221 bye\r\n"),
        ]
    )

    async def main() -> Any:
        async with adapter.module.SMTP(hostname="127.0.0.1", port=server.port, timeout=5) as smtp:
            return await smtp.sendmail("a@example.org", ["b@example.org"], body)

    assert adapter.run(main) == ({}, "2.0.0 accepted")
    assert server.lines[3] == f"BDAT {len(body)} LAST\r\n".encode() + body


def test_pipelined_bdat_after_refused_recipients_sends_nothing_more(adapter: Adapter, scripted: Any) -> None:
    """A two-chunk message: the first chunk went with the envelope; once every recipient
    is refused, the second chunk is never sent, and the transaction is reset."""
    from .servers import ExpectBdat

    body = b"Subject: big\r\n\r\n" + b"x" * 400_000 + b"\r\n"
    server = scripted(
        [
            *session_prefix("PIPELINING", "CHUNKING"),
            Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(),
            Send(b"250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"),
            Expect(b"RSET"), Send(b"250 reset\r\n"),
            Expect(b"NOOP"), Send(b"250 still here\r\n"),
        ]
    )
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPRecipientsRefused) as info:
            await smtp.sendmail("a@example.org", ["b@example.org"], body)
        assert [code for code, _ in refusals(info.value)] == [550]
        assert (await smtp.noop()).message == "still here"
        smtp.close()

    adapter.run(main)
    first_chunk = server.lines[3]
    assert first_chunk.startswith(b"BDAT ") and b"LAST" not in first_chunk.split(b"\r\n", 1)[0]
    assert server.lines[4] == b"RSET\r\n"


def test_pipelined_bdat_when_the_server_closes_on_mail(adapter: Adapter, scripted: Any) -> None:
    from .servers import ExpectBdat

    server = scripted(
        [
            *session_prefix("PIPELINING", "CHUNKING"),
            Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(),
            Send(b"421 4.3.2 shutting down\r\n"),
            Close(),
        ]
    )
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPSenderRefused) as info:
            await smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
        assert info.value.code == 421
        assert not smtp.is_connected

    adapter.run(main)


def test_pipelined_bdat_when_the_server_closes_on_a_later_recipient(adapter: Adapter, scripted: Any) -> None:
    """One recipient accepted, then 421: no further chunk, and the refusal as with DATA."""
    from .servers import ExpectBdat

    body = b"Subject: big\r\n\r\n" + b"x" * 400_000 + b"\r\n"
    server = scripted(
        [
            *session_prefix("PIPELINING", "CHUNKING"),
            Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"RCPT"), ExpectBdat(),
            Send(b"250 ok\r\n250 ok\r\n421 4.3.2 shutting down\r\n"),
            Close(),
        ]
    )
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPRecipientsRefused) as info:
            await smtp.sendmail("a@example.org", ["b@example.org", "c@example.org"], body)
        assert refusals(info.value) == [(421, "c@example.org")]
        assert not smtp.is_connected

    adapter.run(main)


def _one_message_script(after_content: list[Any]) -> list[Any]:
    return [
        *session_prefix("PIPELINING"),
        Expect(b"MAIL"),
        Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
        ExpectData(),
        *after_content,
    ]


def _send_one(adapter: Adapter, port: int, *, timeout: float) -> Any:
    """One raw message through the module-level send()."""

    async def main() -> Any:
        return await adapter.module.send(
            b"Subject: x\r\n\r\nhi\r\n",
            sender="a@example.org",
            recipients=["b@example.org"],
            hostname="127.0.0.1",
            port=port,
            start_tls=False,
            timeout=timeout,
        )

    return adapter.run(main)


@pytest.mark.not_on_sync(
    "aiosmtplib's module-level send(); smtplib has none"
)
def test_send_puts_quit_in_the_same_write_as_the_end_of_data(adapter: Adapter, scripted: Any) -> None:
    """The server answers the content only once it has read QUIT too: send() must not
    wait for that answer before sending QUIT."""
    server = scripted(_one_message_script([Expect(b"QUIT"), Send(b"250 2.0.0 queued\r\n221 bye\r\n")]))

    assert _send_one(adapter, server.port, timeout=5) == ({}, "2.0.0 queued")
    assert server.lines[-1] == b"QUIT\r\n"


@pytest.mark.parametrize("after_reply", ["hang", "close"])
@pytest.mark.not_on_sync(
    "aiosmtplib's module-level send(); smtplib has none"
)
def test_send_succeeds_whatever_follows_the_final_reply(adapter: Adapter, scripted: Any, after_reply: str) -> None:
    """A server that never answers the pipelined QUIT (or closes at once) cannot turn an
    accepted message into a failure."""
    ending = [Hang()] if after_reply == "hang" else [Close()]
    server = scripted(_one_message_script([Send(b"250 2.0.0 queued\r\n"), *ending]))

    assert _send_one(adapter, server.port, timeout=0.5) == ({}, "2.0.0 queued")
