"""aiosmtplib 5.x behaviour that programs rely on, checked on every adapter.

Each test runs on smtp_asyncio (asyncio and uvloop) and smtp_anyio (asyncio and trio),
against real servers on loopback: aiosmtpd, or a scripted server that records what it
read. Where smtp-sansio differs from aiosmtplib on purpose, the test says so.
"""

from __future__ import annotations

import asyncio
import email.charset
import email.message
import threading
from collections.abc import Awaitable, Callable
from email.mime.text import MIMEText
from typing import Any

import anyio
import pytest

import smtp_core

from .conftest import Adapter, Certs
from .servers import (
    Close,
    Expect,
    ExpectBdat,
    ExpectBuffered,
    ExpectContent,
    Handler,
    Send,
    Signal,
    WaitFor,
    session_prefix,
)

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"
WAIT = 10.0  # seconds: the most a test waits for a loopback server to reach a step


async def wait_for_server(event: threading.Event) -> None:
    """Wait, from any adapter's event loop, until a scripted server sets ``event``."""
    reached = await anyio.to_thread.run_sync(event.wait, WAIT)
    assert reached, "the server never reached the step the test waits for"


async def gather_in_order(adapter: Adapter, *calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run ``calls`` concurrently, each started (so queued on the client) in the order
    given; return each one's result or exception.

    asyncio: ``asyncio.gather``, as aiosmtplib programs write it. anyio: a task group,
    each task started with ``start()`` so that its call is queued before the next one
    starts (trio runs newly started tasks in no fixed order).
    """
    if adapter.module.__name__ == "smtp_asyncio":
        return list(await asyncio.gather(*(call() for call in calls), return_exceptions=True))
    results: list[Any] = [None] * len(calls)

    async def one(index: int, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        # started() does not yield: the call below is queued before the next task starts.
        task_status.started()
        try:
            results[index] = await calls[index]()
        except Exception as exc:
            results[index] = exc

    async with anyio.create_task_group() as tg:
        for index in range(len(calls)):
            await tg.start(one, index)
    return results


class Tasks:
    """Concurrent calls started in order, any of which can be cancelled on its own."""

    def __init__(self, tg: Any) -> None:
        self._tg = tg
        self.scopes: list[anyio.CancelScope] = []
        self.outcomes: list[Any] = []
        self.finished: list[anyio.Event] = []

    async def start(self, call: Callable[[], Awaitable[Any]]) -> int:
        index = len(self.scopes)
        self.outcomes.append(None)
        self.finished.append(anyio.Event())

        async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            with anyio.CancelScope() as scope:
                self.scopes.append(scope)
                task_status.started()
                try:
                    self.outcomes[index] = await call()
                except BaseException as exc:
                    self.outcomes[index] = exc
                    self.finished[index].set()
                    raise
            self.finished[index].set()

        await self._tg.start(run)
        return index

    async def cancel(self, index: int) -> None:
        """Cancel one call and wait until it has unwound."""
        self.scopes[index].cancel()
        with anyio.fail_after(WAIT):
            await self.finished[index].wait()

    async def result(self, index: int) -> Any:
        with anyio.fail_after(WAIT):
            await self.finished[index].wait()
        return self.outcomes[index]


def client(adapter: Adapter, port: int, **options: Any) -> Any:
    options.setdefault("timeout", 5)
    options.setdefault("start_tls", False)
    return adapter.module.SMTP(hostname="127.0.0.1", port=port, **options)


# -- 1. concurrent plain commands on one connection ---------------------------------------


class DistinctReplies(Handler):
    """aiosmtpd handler whose replies name the command they answer."""

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        return "250 noop-reply"

    async def handle_VRFY(self, server: Any, session: Any, envelope: Any, address: str) -> str:
        return f"252 vrfy-reply {address}"

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        envelope.mail_from = address
        return f"250 mail-reply {address}"


@pytest.mark.not_on_sync(
    "smtplib's commands return an error reply as (code, message) instead of raising it (EXPN's 502 here)"
)
def test_gather_plain_commands_on_aiosmtpd(adapter: Adapter, smtpd: Any) -> None:
    """No PIPELINING: every command waits for its own reply; each caller gets its own."""
    server = smtpd(handler=DistinctReplies())
    mod = adapter.module

    async def main() -> list[Any]:
        smtp = client(adapter, server.port)
        await smtp.connect()
        results = await gather_in_order(
            adapter,
            lambda: smtp.ehlo(),
            lambda: smtp.helo(),
            lambda: smtp.noop(),
            lambda: smtp.vrfy("someone@example.org"),
            lambda: smtp.expn("list@example.org"),
            lambda: smtp.mail("sender@example.org"),
            lambda: smtp.help(),
        )
        assert smtp.is_connected
        assert (await smtp.noop()).message == "noop-reply"
        await smtp.quit()
        return results

    ehlo, helo, noop, vrfy, expn, mail, help_text = adapter.run(main)
    assert ehlo.code == 250 and ehlo.message.splitlines()[0] == "smtp.test" and "SIZE 33554432" in ehlo.message
    assert (helo.code, helo.message) == (250, "smtp.test")
    assert (noop.code, noop.message) == (250, "noop-reply")
    assert (vrfy.code, vrfy.message) == (252, "vrfy-reply someone@example.org")
    # aiosmtpd never implements EXPN: the refusal goes to the EXPN caller, as in aiosmtplib.
    assert isinstance(expn, mod.SMTPResponseException) and (expn.code, expn.message) == (502, "EXPN not implemented")
    assert (mail.code, mail.message) == (250, "mail-reply sender@example.org")
    assert isinstance(help_text, str) and help_text.startswith("Supported commands:")


def test_gather_plain_commands_go_out_in_call_order_one_at_a_time(adapter: Adapter, scripted: Any) -> None:
    """The server answers each command only once it has read it, and records whether
    the next command had already arrived: without PIPELINING it never has."""
    server = scripted(
        [
            *session_prefix("8BITMIME"),
            ExpectBuffered(b"HELO"), Send(b"250 helo-reply\r\n"),
            ExpectBuffered(b"NOOP"), Send(b"250 noop-reply\r\n"),
            ExpectBuffered(b"VRFY"), Send(b"250 vrfy-reply\r\n"),
            ExpectBuffered(b"EXPN"), Send(b"250-expn-reply 1\r\n250 expn-reply 2\r\n"),
            ExpectBuffered(b"MAIL"), Send(b"250 mail-reply\r\n"),
            ExpectBuffered(b"HELP"), Send(b"214 help-reply\r\n"),
            ExpectBuffered(b"NOOP"), Send(b"250 last-noop\r\n"),
        ]
    )

    async def main() -> list[Any]:
        smtp = client(adapter, server.port)
        await smtp.connect()
        results = await gather_in_order(
            adapter,
            lambda: smtp.ehlo(),
            lambda: smtp.helo(),
            lambda: smtp.noop(),
            lambda: smtp.vrfy("a@example.org"),
            lambda: smtp.expn("list@example.org"),
            lambda: smtp.mail("b@example.org"),
            lambda: smtp.help(),
        )
        results.append(await smtp.noop())
        smtp.close()
        return results

    ehlo, helo, noop, vrfy, expn, mail, help_text, last = adapter.run(main)
    assert not server.errors
    assert [line.split(b" ", 1)[0].rstrip(b"\r\n") for line in server.lines] == [
        b"EHLO", b"HELO", b"NOOP", b"VRFY", b"EXPN", b"MAIL", b"HELP", b"NOOP"
    ]
    assert server.lines[3:6] == [b"VRFY a@example.org\r\n", b"EXPN list@example.org\r\n", b"MAIL FROM:<b@example.org>\r\n"]
    assert server.buffered == [False] * 7
    assert ehlo.message == "smtp.test\n8BITMIME"
    assert [r.message for r in (helo, noop, vrfy, expn, mail)] == [
        "helo-reply", "noop-reply", "vrfy-reply", "expn-reply 1\nexpn-reply 2", "mail-reply"
    ]
    assert help_text == "help-reply"
    assert last.message == "last-noop"


# -- 2. one session shared by concurrent ``async with`` blocks ----------------------------


class SessionRecorder(Handler):
    """aiosmtpd handler that records EHLO, DATA and QUIT with the connection they came on."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, Any]] = []

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        self.events.append(("EHLO", session.peer))
        session.host_name = hostname  # aiosmtpd leaves this to a handler with an EHLO hook
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.events.append(("DATA", session.peer))
        return await super().handle_DATA(server, session, envelope)

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.events.append(("QUIT", session.peer))
        return "221 Bye"


def assert_one_session(handler: SessionRecorder, messages: int) -> None:
    kinds = [kind for kind, _ in handler.events]
    assert kinds == ["EHLO"] + ["DATA"] * messages + ["QUIT"], kinds
    assert len({peer for _, peer in handler.events}) == 1  # one connection


@pytest.mark.parametrize("tasks", [3, 10])
@pytest.mark.not_on_sync(
    "aiosmtplib's re-entrant async with (shared, the last one out quits) and its transport attribute; smtplib's with block quits at its end"
)
def test_concurrent_async_with_blocks_share_one_session(adapter: Adapter, smtpd: Any, tasks: int) -> None:
    handler = SessionRecorder()
    server = smtpd(handler=handler)
    smtp = client(adapter, server.port)

    async def one(index: int) -> Any:
        async with smtp:
            return await smtp.sendmail("a@example.org", [f"r{index}@example.org"], MESSAGE)

    async def main() -> list[Any]:
        results = await gather_in_order(adapter, *[lambda i=i: one(i) for i in range(tasks)])
        assert not smtp.is_connected  # the last one out quit and closed
        assert smtp.transport is None
        return results

    results = adapter.run(main)
    assert results == [({}, "Message accepted")] * tasks
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(f"r{i}@example.org" for i in range(tasks))
    assert_one_session(handler, tasks)


@pytest.mark.not_on_sync(
    "aiosmtplib's re-entrant async with (shared, the last one out quits); smtplib's with block quits at its end"
)
def test_nested_async_with_blocks_share_one_session(adapter: Adapter, smtpd: Any) -> None:
    handler = SessionRecorder()
    server = smtpd(handler=handler)
    smtp = client(adapter, server.port)

    async def main() -> None:
        async with smtp:
            await smtp.sendmail("a@example.org", ["one@example.org"], MESSAGE)
            async with smtp:
                await smtp.sendmail("a@example.org", ["two@example.org"], MESSAGE)
            assert smtp.is_connected  # the inner block did not quit
            await smtp.sendmail("a@example.org", ["three@example.org"], MESSAGE)
        assert not smtp.is_connected
        assert smtp.transport is None and smtp.protocol is None

    adapter.run(main)
    assert [m.rcpt_tos for m in server.messages] == [["one@example.org"], ["two@example.org"], ["three@example.org"]]
    assert_one_session(handler, 3)


# -- 3. SIZE= is the number of octets transmitted ------------------------------------------

SIZE_CONTENTS = {
    "bare LF, UTF-8, no final newline": b"From: a@example.com\nTo: b@example.com\n\nH\xc3\xa9llo\n.dot",
    "CRLF already": b"Subject: x\r\n\r\nalready CRLF\r\nsecond line\r\n",
    "bare CR": b"Subject: x\r\rbare\rcr\rlines\r",
    "mixed endings": b"a\r\nb\nc\rd\n\re",
    "empty": b"",
    "ending with a newline": b"Subject: x\n\nends with newline\n",
    "lines starting with a dot": b".first\n..second\n.\n.\r\n...\nlast .",
    "only a dot": b".",
}


def size_parameter(mail_line: bytes) -> int:
    [size] = [word for word in mail_line.split() if word.upper().startswith(b"SIZE=")]
    return int(size.split(b"=", 1)[1])


def send_one(adapter: Adapter, port: int, content: Any) -> Any:
    async def main() -> Any:
        smtp = client(adapter, port)
        await smtp.connect()
        try:
            return await smtp.sendmail("a@example.org", ["b@example.org"], content)
        finally:
            smtp.close()

    return adapter.run(main)


def test_size_of_the_example_message(adapter: Adapter, scripted: Any) -> None:
    """RFC 1870: bare LFs count as CRLF and the final CRLF is added; neither the
    terminating dot nor dot-stuffing counts (aiosmtplib sends SIZE=56 here too)."""
    server = scripted(
        [
            *session_prefix("SIZE 100000"),
            Expect(b"MAIL"), Send(b"250 ok\r\n"),
            Expect(b"RCPT"), Send(b"250 ok\r\n"),
            Expect(b"DATA"), Send(b"354 go\r\n"),
            ExpectContent(), Send(b"250 queued\r\n"),
        ]
    )
    content = b"From: a@example.com\nTo: b@example.com\n\nH\xc3\xa9llo\n.dot"

    assert send_one(adapter, server.port, content) == ({}, "queued")
    assert server.lines[1] == b"MAIL FROM:<a@example.org> SIZE=56\r\n"
    assert server.lines[4] == b"From: a@example.com\r\nTo: b@example.com\r\n\r\nH\xc3\xa9llo\r\n..dot\r\n.\r\n"


def send_each(adapter: Adapter, port: int, contents: list[Any]) -> list[Any]:
    """Send each content in its own transaction, one after another, on one connection."""

    async def main() -> list[Any]:
        smtp = client(adapter, port)
        await smtp.connect()
        try:
            return [await smtp.sendmail("a@example.org", ["b@example.org"], content) for content in contents]
        finally:
            smtp.close()

    return list(adapter.run(main))


def test_size_equals_the_data_octets(adapter: Adapter, scripted: Any) -> None:
    names = sorted(SIZE_CONTENTS)
    exchange = [
        Expect(b"MAIL"), Send(b"250 ok\r\n"),
        Expect(b"RCPT"), Send(b"250 ok\r\n"),
        Expect(b"DATA"), Send(b"354 go\r\n"),
        ExpectContent(), Send(b"250 queued\r\n"),
    ]
    server = scripted([*session_prefix("SIZE 100000", "8BITMIME"), *exchange * len(names)])

    assert send_each(adapter, server.port, [SIZE_CONTENTS[name] for name in names]) == [({}, "queued")] * len(names)
    assert not server.errors
    for index, name in enumerate(names):
        mail, _, _, wire = server.lines[1 + 4 * index : 5 + 4 * index]
        transmitted = smtp_core.unstuff(wire)
        assert size_parameter(mail) == len(transmitted), name
        assert b"\r" not in transmitted.replace(b"\r\n", b"") and b"\n" not in transmitted.replace(b"\r\n", b""), name


def test_size_of_str_content(adapter: Adapter, scripted: Any) -> None:
    server = scripted(
        [
            *session_prefix("SIZE"),
            Expect(b"MAIL"), Send(b"250 ok\r\n"),
            Expect(b"RCPT"), Send(b"250 ok\r\n"),
            Expect(b"DATA"), Send(b"354 go\r\n"),
            ExpectContent(), Send(b"250 queued\r\n"),
        ]
    )

    assert send_one(adapter, server.port, "Subject: s\n\n.str content\nno newline") == ({}, "queued")
    assert size_parameter(server.lines[1]) == len(smtp_core.unstuff(server.lines[4])) == 40


def test_size_equals_the_bdat_octets(adapter: Adapter, scripted: Any) -> None:
    names = sorted(SIZE_CONTENTS)
    exchange = [Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(), Send(b"250 ok\r\n250 ok\r\n250 queued\r\n")]
    server = scripted([*session_prefix("PIPELINING", "CHUNKING", "SIZE 100000"), *exchange * len(names)])

    assert send_each(adapter, server.port, [SIZE_CONTENTS[name] for name in names]) == [({}, "queued")] * len(names)
    assert not server.errors
    for index, name in enumerate(names):
        mail, _, bdat = server.lines[1 + 3 * index : 4 + 3 * index]
        command, _, payload = bdat.partition(b"\r\n")
        assert command.startswith(b"BDAT ") and command.endswith(b" LAST"), name
        assert size_parameter(mail) == len(payload) == int(command.split()[1]), name


# -- 4. timeouts ----------------------------------------------------------------------------


@pytest.mark.not_on_sync(
    "per-call timeout= on connect() is aiosmtplib's"
)
def test_connect_timeout_applies_to_that_connect_only(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()

    async def main() -> None:
        smtp = adapter.module.SMTP(hostname=server.host, port=server.port, timeout=0.66)
        await smtp.connect(timeout=0.99)
        assert smtp.timeout == 0.66
        await smtp.quit()
        assert smtp.timeout == 0.66

    adapter.run(main)


@pytest.mark.not_on_sync(
    "timeout=0 is refused with ValueError (a non-blocking socket), as smtplib does; per-call timeout= is aiosmtplib's"
)
def test_zero_timeout_expires_at_once(adapter: Adapter, smtpd: Any) -> None:
    """aiosmtpd answers at once, yet a zero timeout always expires: never a race."""
    server = smtpd()
    mod = adapter.module

    async def main() -> None:
        for _ in range(5):
            smtp = adapter.module.SMTP(hostname=server.host, port=server.port, timeout=0)
            with pytest.raises(mod.SMTPConnectTimeoutError):
                await smtp.connect()
            assert not smtp.is_connected and smtp.transport is None
            smtp = adapter.module.SMTP(hostname=server.host, port=server.port, timeout=5)
            with pytest.raises(mod.SMTPConnectTimeoutError):
                await smtp.connect(timeout=0)
            assert not smtp.is_connected
            await smtp.connect()  # the client is still usable
            await smtp.ehlo()
            with pytest.raises(mod.SMTPTimeoutError):
                await smtp.noop(timeout=0)
            # As in aiosmtplib, a timed-out command leaves the session out of step: closed.
            assert not smtp.is_connected
            zero = adapter.module.SMTP(hostname=server.host, port=server.port, timeout=0)
            await zero.connect(timeout=5)
            with pytest.raises(mod.SMTPTimeoutError):
                await zero.ehlo()  # the client's own timeout of zero
            assert not zero.is_connected

    adapter.run(main)


# -- 5. non-ASCII addresses ---------------------------------------------------------------


@pytest.mark.not_on_sync(
    "aiosmtplib's encoding= argument and its EHLO before mail(); smtplib's mail() sends no EHLO first"
)
def test_mail_with_a_non_ascii_sender(adapter: Adapter, scripted: Any) -> None:
    """``encoding="ascii"`` (the default) refuses it as aiosmtplib does; with UTF-8 the
    server must offer SMTPUTF8 (aiosmtplib would send it anyway). Nothing is sent."""
    server = scripted([*session_prefix("8BITMIME"), Expect(b"NOOP"), Send(b"250 noop-reply\r\n")])
    mod = adapter.module

    async def main() -> None:
        smtp = client(adapter, server.port)
        await smtp.connect()
        with pytest.raises(UnicodeEncodeError):
            await smtp.mail("é@example.org")
        with pytest.raises(mod.SMTPNotSupported):
            await smtp.mail("é@example.org", encoding="utf-8")
        with pytest.raises(UnicodeEncodeError):
            await smtp.rcpt("é@example.org")
        assert smtp.is_connected
        assert (await smtp.noop()).message == "noop-reply"
        smtp.close()

    adapter.run(main)
    assert server.lines[1:] == [b"NOOP\r\n"]


@pytest.mark.parametrize("who", ["sender", "recipient"])
@pytest.mark.not_on_sync(
    "UnicodeEncodeError is aiosmtplib's exception here; smtp_sync raises smtplib's SMTPNotSupportedError (also smtp_core.SMTPNotSupported)"
)
def test_sendmail_non_ascii_address_without_smtputf8(adapter: Adapter, scripted: Any, who: str) -> None:
    server = scripted([*session_prefix("8BITMIME", "PIPELINING"), Expect(b"NOOP"), Send(b"250 noop-reply\r\n")])
    mod = adapter.module
    sender, recipient = ("josé@example.org", "b@example.org") if who == "sender" else ("a@example.org", "用户@例子.广告")

    async def main() -> None:
        smtp = client(adapter, server.port)
        await smtp.connect()
        with pytest.raises(mod.SMTPNotSupported) as info:
            await smtp.sendmail(sender, [recipient], MESSAGE)
        assert isinstance(info.value, UnicodeEncodeError)  # what aiosmtplib raises here
        assert isinstance(info.value, smtp_core.SMTPUTF8NotSupported)
        assert smtp.is_connected
        assert (await smtp.noop()).message == "noop-reply"
        smtp.close()

    adapter.run(main)
    assert server.lines[1:] == [b"NOOP\r\n"]


@pytest.mark.parametrize("who", ["sender", "recipient"])
def test_sendmail_non_ascii_address_with_smtputf8(adapter: Adapter, scripted: Any, who: str) -> None:
    """SMTPUTF8 is added when an address needs it. A deliberate difference: aiosmtplib
    raises ``UnicodeEncodeError`` unless the caller wrote SMTPUTF8 in ``mail_options``."""
    server = scripted(
        [
            *session_prefix("SMTPUTF8", "8BITMIME"),
            Expect(b"MAIL"), Send(b"250 ok\r\n"),
            Expect(b"RCPT"), Send(b"250 ok\r\n"),
            Expect(b"DATA"), Send(b"354 go\r\n"),
            ExpectContent(), Send(b"250 queued\r\n"),
        ]
    )
    sender, recipient = ("josé@example.org", "b@example.org") if who == "sender" else ("a@example.org", "用户@例子.广告")

    async def main() -> Any:
        smtp = client(adapter, server.port)
        await smtp.connect()
        try:
            return await smtp.sendmail(sender, [recipient], MESSAGE)
        finally:
            smtp.close()

    assert adapter.run(main) == ({}, "queued")
    assert server.lines[1] == f"MAIL FROM:<{sender}> SMTPUTF8\r\n".encode()
    assert server.lines[2] == f"RCPT TO:<{recipient}>\r\n".encode()


# -- 6. options the caller wrote, and typed extension options -------------------------------


@pytest.mark.not_on_sync(
    "smtplib's commands return an error reply as (code, message) instead of raising it (MAIL's and RCPT's 555 here)"
)
def test_raw_options_go_to_a_server_that_did_not_advertise_them(adapter: Adapter, scripted: Any) -> None:
    """As in aiosmtplib, options written by the caller are sent as they are; the server
    (which offers neither DSN nor 8BITMIME) answers them."""
    server = scripted(
        [
            *session_prefix("PIPELINING"),
            Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            ExpectContent(), Send(b"250 queued\r\n"),
            Expect(b"MAIL"), Send(b"555 5.5.4 BODY not recognised\r\n"),
            Expect(b"MAIL"), Send(b"250 mail ok\r\n"),
            Expect(b"RCPT"), Send(b"555 5.5.4 NOTIFY not recognised\r\n"),
        ]
    )
    mod = adapter.module

    async def main() -> None:
        smtp = client(adapter, server.port)
        await smtp.connect()
        assert await smtp.sendmail(
            "a@example.org", ["b@example.org"], MESSAGE,
            mail_options=["BODY=8BITMIME"], rcpt_options=["NOTIFY=FAILURE,DELAY"],
        ) == ({}, "queued")
        with pytest.raises(mod.SMTPSenderRefused) as sender_refused:
            await smtp.mail("a@example.org", options=["BODY=8BITMIME"])
        assert sender_refused.value.code == 555
        assert (await smtp.mail("a@example.org", options=["X-CUSTOM", "RET=HDRS"])).message == "mail ok"
        with pytest.raises(mod.SMTPRecipientRefused) as rcpt_refused:
            await smtp.rcpt("b@example.org", options=["NOTIFY=NEVER"])
        assert rcpt_refused.value.code == 555
        smtp.close()

    adapter.run(main)
    assert not server.errors
    assert server.lines[1:4] == [
        b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n",
        b"RCPT TO:<b@example.org> NOTIFY=FAILURE,DELAY\r\n",
        b"DATA\r\n",
    ]
    assert server.lines[5:] == [
        b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n",
        b"MAIL FROM:<a@example.org> X-CUSTOM RET=HDRS\r\n",
        b"RCPT TO:<b@example.org> NOTIFY=NEVER\r\n",
    ]


BAD_OPTIONS = {
    "CR LF": "BODY=8BITMIME\r\nRSET",
    "LF": "X=1\nNOOP",
    "CR": "X=1\rNOOP",
    "NUL": "X=\0",
    "space in a value": "NOTIFY=FAILURE DELAY",
    "empty keyword": "=value",
    "keyword starting with a hyphen": "-X=1",
    "= in a value": "X=a=b",
    "non-string": 5,
}


def test_bad_raw_options_are_refused_before_anything_is_sent(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix("PIPELINING", "DSN", "8BITMIME"), Expect(b"NOOP"), Send(b"250 noop-reply\r\n")])

    async def main() -> None:
        smtp = client(adapter, server.port)
        await smtp.connect()
        await smtp.ehlo()
        for name, option in BAD_OPTIONS.items():
            with pytest.raises(ValueError):
                await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE, mail_options=[option])
            with pytest.raises(ValueError):
                await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE, rcpt_options=[option])
            with pytest.raises(ValueError):
                await smtp.mail("a@example.org", options=[option])
            with pytest.raises(ValueError):
                await smtp.rcpt("b@example.org", options=[option])
            assert smtp.is_connected, name
        assert (await smtp.noop()).message == "noop-reply"
        smtp.close()

    adapter.run(main)
    assert server.lines[1:] == [b"NOOP\r\n"]


@pytest.mark.not_on_sync(
    "typed extensions (dsn=, require_tls=) are aiosmtplib-side; smtplib's API takes option strings"
)
def test_typed_options_need_the_extension(adapter: Adapter, scripted: Any) -> None:
    """``dsn`` and ``require_tls`` are checked against what the server offers."""
    server = scripted([*session_prefix("PIPELINING", "8BITMIME"), Expect(b"NOOP"), Send(b"250 noop-reply\r\n")])
    mod = adapter.module

    async def main() -> None:
        smtp = client(adapter, server.port)
        await smtp.connect()
        with pytest.raises(mod.SMTPNotSupported, match="DSN"):
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE, dsn=smtp_core.DSN(notify=["FAILURE"]))
        with pytest.raises(mod.SMTPNotSupported, match="REQUIRETLS"):
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE, require_tls=True)
        assert (await smtp.noop()).message == "noop-reply"
        smtp.close()

    adapter.run(main)
    assert server.lines[1:] == [b"NOOP\r\n"]


# -- 7. VRFY and EXPN arguments -------------------------------------------------------------

INJECTED_QUERIES = {
    "parameter": ("vrfy", "a@b.com SIZE=1"),
    "command": ("expn", "list@b.com\r\nRCPT TO:<x@y>"),
    "angle brackets": ("vrfy", "<a@b.com>"),
    "closing bracket": ("expn", "a@b.com>"),
    "tab": ("vrfy", "a@b.com\tX"),
    "bare LF": ("vrfy", "a@b.com\nNOOP"),
    "NUL": ("expn", "a@b.com\0"),
    "double quote": ('vrfy', 'a"@b.com'),
}


@pytest.mark.not_on_sync(
    "aiosmtplib's vrfy()/expn() send EHLO first; smtplib's do not (the scripted server expects EHLO)"
)
def test_vrfy_expn_refuse_injection_before_sending(adapter: Adapter, scripted: Any) -> None:
    """``ValueError`` before any byte (even EHLO). A deliberate difference: aiosmtplib
    "repairs" some of these with ``email.utils.parseaddr`` (``a@b.comSIZE=1``,
    ``list@b.com``, ``a@b.com``) and sends the result."""
    server = scripted(
        [
            *session_prefix(),
            Expect(b"VRFY"), Send(b"252 cannot verify, will try\r\n"),
            Expect(b"EXPN"), Send(b"250 list-reply\r\n"),
        ]
    )

    async def main() -> None:
        smtp = client(adapter, server.port)
        await smtp.connect()
        for name, (verb, argument) in INJECTED_QUERIES.items():
            with pytest.raises(ValueError):
                await getattr(smtp, verb)(argument)
            assert smtp.is_connected, name
        assert (await smtp.vrfy("foo@bar.com")).code == 252
        assert (await smtp.expn('"quoted list"@bar.com')).message == "list-reply"
        smtp.close()

    adapter.run(main)
    assert not server.errors
    assert server.lines[0].startswith(b"EHLO ")  # sent by the vrfy() that worked
    assert server.lines[1:] == [b"VRFY foo@bar.com\r\n", b'EXPN "quoted list"@bar.com\r\n']



# -- 8. send_message: SMTPUTF8 and BODY=8BITMIME -------------------------------------------


def make_message(kind: str, sender: str, body: str) -> email.message.Message:
    """A message of ``kind``; a non-ASCII ``body`` goes as 8bit UTF-8 text."""
    msg: email.message.Message
    eight_bit = email.charset.Charset("utf-8")
    eight_bit.body_encoding = None  # Content-Transfer-Encoding: 8bit
    if kind == "EmailMessage":
        msg = email.message.EmailMessage()
        msg.set_content(body, cte="8bit" if not body.isascii() else None)
    elif kind == "Message":
        msg = email.message.Message()
        msg.set_payload(body, eight_bit if not body.isascii() else None)
    else:
        msg = MIMEText(body, "plain", eight_bit if not body.isascii() else "us-ascii")  # type: ignore[arg-type]
    msg["From"] = sender
    msg["To"] = "to@example.org"
    msg["Subject"] = "hello"
    return msg


def mail_script(*capabilities: str) -> list[Any]:
    return [
        *session_prefix(*capabilities),
        Expect(b"MAIL"), Send(b"250 ok\r\n"),
        Expect(b"RCPT"), Send(b"250 ok\r\n"),
        Expect(b"DATA"), Send(b"354 go\r\n"),
        ExpectContent(), Send(b"250 queued\r\n"),
    ]


def send_message_mail_line(adapter: Adapter, server: Any, msg: email.message.Message) -> bytes:
    async def main() -> Any:
        smtp = client(adapter, server.port)
        await smtp.connect()
        try:
            return await smtp.send_message(msg)
        finally:
            smtp.close()

    assert adapter.run(main) == ({}, "queued")
    assert not server.errors
    line: bytes = server.lines[1]
    return line


KINDS = ["EmailMessage", "Message", "MIMEText"]
SENDERS = {"ascii": "a@example.org", "non-ascii": "josé@example.org"}
BODIES = {"ascii": "plain ascii body\n", "8bit": "h\u00e9llo w\u00f6rld\n"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sender", sorted(SENDERS))
@pytest.mark.parametrize("body", sorted(BODIES))
def test_send_message_body_8bitmime_when_offered(adapter: Adapter, scripted: Any, kind: str, sender: str, body: str) -> None:
    """aiosmtplib's send_message adds BODY=8BITMIME whenever the server offers 8BITMIME
    (whatever the content), after SMTPUTF8 when an address needs it."""
    server = scripted(mail_script("SMTPUTF8", "8BITMIME"))
    address = SENDERS[sender]
    line = send_message_mail_line(adapter, server, make_message(kind, address, BODIES[body]))
    utf8 = " SMTPUTF8" if sender == "non-ascii" else ""
    assert line == f"MAIL FROM:<{address}>{utf8} BODY=8BITMIME\r\n".encode()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sender", ["ascii", "non-ascii"])
def test_send_message_without_8bitmime_sends_a_7bit_body(adapter: Adapter, scripted: Any, kind: str, sender: str) -> None:
    server = scripted(mail_script("SMTPUTF8"))
    address = SENDERS[sender]
    line = send_message_mail_line(adapter, server, make_message(kind, address, BODIES["8bit"]))
    utf8 = " SMTPUTF8" if sender == "non-ascii" else ""
    assert line == f"MAIL FROM:<{address}>{utf8}\r\n".encode()
    headers, _, body = smtp_core.unstuff(server.lines[4]).partition(b"\r\n\r\n")
    assert body.isascii(), body
    assert b"Content-Transfer-Encoding: 8bit" not in headers


# -- 9. smtp.transport and smtp.protocol ----------------------------------------------------


def assert_disconnected(smtp: Any) -> None:
    assert smtp.transport is None
    assert smtp.protocol is None
    assert not smtp.is_connected


def assert_transport(smtp: Any, port: int, *, tls: bool) -> None:
    transport = smtp.transport
    assert transport is not None and smtp.protocol is not None
    peer = transport.get_extra_info("peername")
    assert (peer[0], peer[1]) == ("127.0.0.1", port)
    assert ("SSL" in type(transport).__name__) is tls, type(transport).__name__
    assert (transport.get_extra_info("sslcontext") is not None) is tls
    assert not transport.is_closing()
    if smtp.__module__.startswith("smtp_asyncio"):
        # The event loop's own transport (uvloop's classes do not derive from asyncio's).
        assert transport.get_protocol() is not None


@pytest.mark.not_on_sync(
    "aiosmtplib's transport and protocol attributes; smtplib's is sock"
)
def test_transport_on_plaintext(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()

    async def main() -> None:
        smtp = client(adapter, server.port)
        assert_disconnected(smtp)
        await smtp.connect()
        assert_transport(smtp, server.port, tls=False)
        await smtp.noop()
        assert_transport(smtp, server.port, tls=False)
        await smtp.quit()
        assert_disconnected(smtp)
        await smtp.connect()
        assert_transport(smtp, server.port, tls=False)
        smtp.close()
        assert_disconnected(smtp)
        async with smtp:
            assert_transport(smtp, server.port, tls=False)
        assert_disconnected(smtp)

    adapter.run(main)


@pytest.mark.not_on_sync(
    "aiosmtplib's transport and protocol attributes; smtplib's is sock"
)
def test_transport_with_implicit_tls(adapter: Adapter, smtpd: Any, certs: Certs) -> None:
    server = smtpd(tls="implicit")

    async def main() -> None:
        smtp = adapter.module.SMTP(
            hostname="127.0.0.1", port=server.port, use_tls=True, cert_bundle=certs.ca_path, timeout=5
        )
        assert_disconnected(smtp)
        async with smtp:
            assert_transport(smtp, server.port, tls=True)
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
            assert_transport(smtp, server.port, tls=True)
        assert_disconnected(smtp)

    adapter.run(main)
    assert len(server.messages) == 1


@pytest.mark.not_on_sync(
    "aiosmtplib's transport and protocol attributes; smtplib's is sock"
)
def test_transport_after_starttls(adapter: Adapter, smtpd: Any, certs: Certs) -> None:
    server = smtpd(tls="starttls")

    async def main() -> None:
        smtp = adapter.module.SMTP(
            hostname="127.0.0.1", port=server.port, start_tls=False, cert_bundle=certs.ca_path, timeout=5
        )
        await smtp.connect()
        assert_transport(smtp, server.port, tls=False)
        await smtp.starttls()
        assert_transport(smtp, server.port, tls=True)
        await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        await smtp.quit()
        assert_disconnected(smtp)
        # start_tls=None (the default): upgraded on connect, since the server offers it.
        async with adapter.module.SMTP(hostname="127.0.0.1", port=server.port, cert_bundle=certs.ca_path, timeout=5) as other:
            assert_transport(other, server.port, tls=True)
        assert_disconnected(other)

    adapter.run(main)


@pytest.mark.not_on_sync(
    "aiosmtplib's transport and protocol attributes; smtplib's is sock"
)
def test_transport_after_a_failure(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix(), Expect(b"NOOP"), Close()])
    mod = adapter.module

    async def main() -> None:
        smtp = client(adapter, server.port)
        await smtp.connect()
        await smtp.ehlo()
        assert_transport(smtp, server.port, tls=False)
        with pytest.raises(mod.SMTPServerDisconnected):
            await smtp.noop()
        assert_disconnected(smtp)

    adapter.run(main)


@pytest.mark.not_on_sync(
    "a refused connection raises ConnectionRefusedError (OSError), as smtplib does; and aiosmtplib's transport attribute"
)
def test_transport_after_a_refused_connection(adapter: Adapter) -> None:
    from .servers import free_port

    mod = adapter.module

    async def main() -> None:
        smtp = client(adapter, free_port())
        with pytest.raises(mod.SMTPConnectError):
            await smtp.connect()
        assert_disconnected(smtp)

    adapter.run(main)


# -- 10. cancelling one caller never desynchronises the others ------------------------------


def sendmail_call(smtp: Any, sender: str) -> Callable[[], Awaitable[Any]]:
    return lambda: smtp.sendmail(sender, ["rcpt@example.org"], MESSAGE)


def cancel_in_flight_script(chunking: bool, queued: threading.Event, read_both: threading.Event, go: threading.Event) -> list[Any]:
    if chunking:
        # A NOOP holds the connection until both messages are queued; then both whole
        # messages go out back to back before any reply. (A message queued while the
        # pipeline waits for a reply goes out once that reply has come.)
        exchange: list[Any] = [
            Expect(b"NOOP"), WaitFor(queued), Send(b"250 first-noop\r\n"),
            Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(),
            Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(),
            Signal(read_both), WaitFor(go),
            Send(b"250 ok\r\n250 ok\r\n250 queued-1\r\n250 ok\r\n250 ok\r\n250 queued-2\r\n"),
        ]
    else:
        # The second envelope goes with the first message's content.
        exchange = [
            Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
            WaitFor(queued),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            ExpectContent(), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
            Signal(read_both), WaitFor(go),
            Send(b"250 queued-1\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            ExpectContent(), Send(b"250 queued-2\r\n"),
        ]
    capabilities = ("PIPELINING", "CHUNKING") if chunking else ("PIPELINING",)
    return [*session_prefix(*capabilities), *exchange, Expect(b"NOOP"), Send(b"250 noop-reply\r\n")]


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
@pytest.mark.not_on_sync(
    "a blocking call cannot be cancelled; smtp_sync bounds calls with its time limits"
)
def test_cancelling_a_caller_waiting_for_its_reply(adapter: Adapter, scripted: Any, chunking: bool) -> None:
    """Both messages are on the wire; the first caller is cancelled before any final
    reply comes. The second still gets its own reply, and the next command its own."""
    queued, read_both, go = threading.Event(), threading.Event(), threading.Event()
    server = scripted(cancel_in_flight_script(chunking, queued, read_both, go))

    async def main() -> tuple[Any, Any, Any]:
        smtp = client(adapter, server.port)
        await smtp.connect()
        await smtp.ehlo()
        async with anyio.create_task_group() as tg:
            tasks = Tasks(tg)
            if chunking:
                hold = await tasks.start(smtp.noop)
            first = await tasks.start(sendmail_call(smtp, "one@example.org"))
            second = await tasks.start(sendmail_call(smtp, "two@example.org"))
            queued.set()
            await wait_for_server(read_both)
            await tasks.cancel(first)
            go.set()
            second_result = await tasks.result(second)
            if chunking:
                assert (await tasks.result(hold)).message == "first-noop"
        noop = await smtp.noop()
        assert smtp.is_connected
        smtp.close()
        return tasks.outcomes[first], second_result, noop

    first, second, noop = adapter.run(main)
    assert not server.errors
    assert isinstance(first, adapter.cancelled)
    assert second == ({}, "queued-2")
    assert [line[:15] for line in server.lines if line.startswith(b"MAIL")] == [b"MAIL FROM:<one@", b"MAIL FROM:<two@"]
    assert (noop.code, noop.message) == (250, "noop-reply")
    assert server.lines[-1] == b"NOOP\r\n"


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-at-a-time", "PIPELINING"])
@pytest.mark.not_on_sync(
    "a blocking call cannot be cancelled; smtp_sync bounds calls with its time limits"
)
def test_cancelling_a_queued_caller_never_sends_its_message(adapter: Adapter, scripted: Any, pipelining: bool) -> None:
    """The first message is on the wire (its MAIL unanswered), the second and third are
    queued; the second caller is cancelled: its message never leaves the client."""
    mail_read, go = threading.Event(), threading.Event()
    if pipelining:
        exchange: list[Any] = [
            Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
            Signal(mail_read), WaitFor(go),
            Send(b"250 ok\r\n250 ok\r\n354 go\r\n"),
            ExpectContent(), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
            Send(b"250 queued-1\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            ExpectContent(), Send(b"250 queued-3\r\n"),
        ]
    else:
        exchange = [
            Expect(b"MAIL"), Signal(mail_read), WaitFor(go), Send(b"250 ok\r\n"),
            Expect(b"RCPT"), Send(b"250 ok\r\n"),
            Expect(b"DATA"), Send(b"354 go\r\n"),
            ExpectContent(), Send(b"250 queued-1\r\n"),
            Expect(b"MAIL"), Send(b"250 ok\r\n"),
            Expect(b"RCPT"), Send(b"250 ok\r\n"),
            Expect(b"DATA"), Send(b"354 go\r\n"),
            ExpectContent(), Send(b"250 queued-3\r\n"),
        ]
    capabilities = ("PIPELINING",) if pipelining else ()
    server = scripted([*session_prefix(*capabilities), *exchange, Expect(b"NOOP"), Send(b"250 noop-reply\r\n")])

    async def main() -> tuple[list[Any], Any]:
        smtp = client(adapter, server.port)
        await smtp.connect()
        await smtp.ehlo()
        async with anyio.create_task_group() as tg:
            tasks = Tasks(tg)
            for sender in ("one@example.org", "two@example.org", "three@example.org"):
                await tasks.start(sendmail_call(smtp, sender))
            await wait_for_server(mail_read)
            await tasks.cancel(1)
            go.set()
            results = [await tasks.result(index) for index in range(3)]
        noop = await smtp.noop()
        smtp.close()
        return results, noop

    (first, second, third), noop = adapter.run(main)
    assert not server.errors
    assert first == ({}, "queued-1")
    assert isinstance(second, adapter.cancelled)
    assert third == ({}, "queued-3")
    assert noop.message == "noop-reply"
    mails = [line for line in server.lines if line.startswith(b"MAIL")]
    assert mails == [b"MAIL FROM:<one@example.org>\r\n", b"MAIL FROM:<three@example.org>\r\n"]
    assert b"two@example.org" not in server.received
