"""The soak's own machinery (``benchmarks/soak.py``), and what its runs found.

The soak itself runs for minutes (``python benchmarks/soak.py``; ``.ci/run`` runs it for
20 s). Here: its chaos server records exactly what it accepted, each of its faults
lands where it says, and its report fails on each kind of loss it must catch; then the
failures soak runs found, each reproduced on one deterministic script.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Adapter, Certs
from .servers import (
    Close,
    Expect,
    ExpectData,
    Hang,
    ReadUntilClosed,
    Send,
    SendSlowly,
    Signal,
    StartTLS,
    session_prefix,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from soak import Child, Report
from soak_server import ChaosServer

MESSAGE = "X-Soak-Tag: {tag}\r\nSubject: soak\r\n\r\n.a line with a dot\r\nhello\r\n"


@contextlib.contextmanager
def chaos_server(certs: Certs, faults: dict[str, dict[str, float]] | None) -> Iterator[ChaosServer]:
    """The soak's chaos server (an asyncio server) on a loop of its own, in a thread."""
    server = ChaosServer(1, certs.server_context(), faults=faults)
    ready = threading.Event()
    control: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            await server.start()
            control["loop"], control["stop"] = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await control["stop"].wait()
            await server.stop()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield server
    finally:
        control["loop"].call_soon_threadsafe(control["stop"].set)
        thread.join(10)


def run_against_chaos(adapter: Adapter, certs: Certs, faults: dict[str, dict[str, float]] | None, tags: list[str], *, tls: bool = False) -> tuple[ChaosServer, dict[str, Any]]:
    """Send one message per tag to a chaos server, reconnecting when the session ends."""
    mod = adapter.module
    outcomes: dict[str, Any] = {}
    with chaos_server(certs, faults) as server:

        async def main() -> None:
            smtp = mod.SMTP(
                hostname="127.0.0.1",
                port=server.tls_port if tls else server.port,
                start_tls=tls,
                tls_context=certs.client_context() if tls else None,
                local_hostname="client.test",
                timeout=5,
            )
            for tag in tags:
                try:
                    if not smtp.is_connected:
                        await smtp.connect()
                    outcomes[tag] = await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE.format(tag=tag))
                except mod.SMTPException as exc:
                    outcomes[tag] = exc
            smtp.close()

        adapter.run(main)
    return server, outcomes


def test_chaos_server_without_faults_accepts_each_message_once(adapter: Adapter, certs: Certs) -> None:
    tags = [f"m{i}" for i in range(5)]
    server, outcomes = run_against_chaos(adapter, certs, {}, tags, tls=True)
    assert all(isinstance(o, tuple) for o in outcomes.values()), outcomes
    assert dict(server.accepted) == dict.fromkeys(tags, 1)


@pytest.mark.parametrize(
    "where,fault,accepted,outcome",
    [
        ("content", "drop_after_storing", True, "UNKNOWN"),
        ("content", "rst_after_storing", True, "UNKNOWN"),
        ("content", "drop_before_storing", False, "UNKNOWN"),
        ("content", "451", False, "DONE"),
        ("mail", "421", False, "DONE"),
        ("mail", "rst", False, "NEVER_SENT"),
        ("data", "drop", False, "NEVER_SENT"),
    ],
)
def test_each_fault_lands_where_it_says(adapter: Adapter, certs: Certs, where: str, fault: str, accepted: bool, outcome: str) -> None:
    server, outcomes = run_against_chaos(adapter, certs, {where: {fault: 1.0}}, ["only"])
    exc = outcomes["only"]
    assert isinstance(exc, adapter.module.SMTPException), exc
    assert exc.outcome is getattr(adapter.module.Outcome, outcome)
    assert ("only" in server.accepted) is accepted
    assert server.faults == {f"{where}:{fault}": 1}


class FakeServer:
    def __init__(self, accepted: dict[str, int]) -> None:
        self.accepted = accepted


def report_of(accepted: dict[str, int], results: dict[str, tuple[str, str]]) -> list[str]:
    child = Child("smtp_asyncio")
    child.results = {tag: (result, outcome, 0.0, "-", "") for tag, (result, outcome) in results.items()}
    report = Report(FakeServer(accepted), [child], warmup=0.0)  # type: ignore[arg-type]
    report.figures(final=True)
    return report.failures


def test_report_passes_a_clean_record() -> None:
    assert report_of(
        {"a/p0/1": 1, "a/p0/3": 1, "a/p0/4": 1},
        {"a/p0/1": ("ok", "done"), "a/p0/2": ("fail", "never_sent"), "a/p0/3": ("unknown", "unknown"), "a/p0/4": ("cancel", "-")},
    ) == []


@pytest.mark.parametrize(
    "accepted,results,failure",
    [
        ({}, {"a/p0/1": ("ok", "done")}, "delivered"),  # reported delivered, never accepted
        ({"a/p0/1": 1}, {}, "delivered"),  # accepted, the caller never told
        ({"a/p0/1": 2}, {"a/p0/1": ("ok", "done")}, "twice"),
        ({"a/p0/1": 1}, {"a/p0/1": ("fail", "never_sent")}, "failed-delivered"),
        ({}, {"a/p0/1": ("error", "done")}, "exceptions"),
    ],
)
def test_report_fails_each_kind_of_loss(accepted: dict[str, int], results: dict[str, tuple[str, str]], failure: str) -> None:
    assert failure in report_of(accepted, results)


# -- found by soak runs ----------------------------------------------------------------------------


def test_reconnect_after_the_server_closed_mid_pipeline(adapter: Adapter, scripted: Any) -> None:
    good = [*session_prefix("PIPELINING"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), Send(b"250 ok\r\n250 ok\r\n354 go\r\n"), ExpectData(), Send(b"250 queued\r\n")]
    server = scripted([*session_prefix("PIPELINING"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), Close()], more=[good])
    mod = adapter.module
    seen: dict[str, Any] = {}

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5, local_hostname="client.test")
        await smtp.connect()
        with pytest.raises(mod.SMTPServerDisconnected) as info:
            await smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: 1\r\n\r\none\r\n")
        seen["first"] = info.value.outcome
        seen["transport left open"] = smtp.protocol is not None
        seen["ehlo kept"] = smtp.last_ehlo_response is not None
        await smtp.connect()
        try:
            seen["second"] = await smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: 2\r\n\r\ntwo\r\n")
        except Exception as exc:
            seen["second"] = exc
        smtp.close()

    adapter.run(main)
    assert seen["first"] is mod.Outcome.NEVER_SENT
    assert seen["second"] == ({}, "queued"), seen
    assert not seen["transport left open"] and not seen["ehlo kept"], seen


def test_a_broken_tls_session_releases_its_socket(adapter: Adapter, scripted: Any, certs: Certs) -> None:
    """A session that timed out over TLS is closed at once, socket included, whatever the
    server does next (here: nothing; it never answers the TLS close either)."""
    server = scripted(
        [
            *session_prefix("STARTTLS"),
            Expect(b"STARTTLS"),
            Send(b"220 go ahead\r\n"),
            StartTLS(certs.server_context()),
            Expect(b"EHLO"),
            Send(b"250-smtp.test\r\n250 PIPELINING\r\n"),
            Expect(b"MAIL"),
            Hang(),
        ]
    )
    mod = adapter.module

    async def main() -> list[bool]:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5, start_tls=True, tls_context=certs.client_context(), local_hostname="client.test")
        await smtp.connect()
        fd = smtp.get_transport_info("socket").fileno()
        identity = os.readlink(f"/proc/self/fd/{fd}")
        with pytest.raises(mod.SMTPTimeoutError):
            await smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: t\r\n\r\nhi\r\n", timeout=0.2)

        def still_open() -> bool:
            try:
                return os.readlink(f"/proc/self/fd/{fd}") == identity
            except OSError:
                return False

        for _ in range(20):  # up to a second
            if not still_open():
                break
            await adapter.sleep(0.05)
        return [still_open()]

    [left_open] = adapter.run(main)
    assert not left_open, "the socket of the broken TLS session is still open a second later"


# -- found by soak runs of smtp_sync --------------------------------------------------------------


def test_sync_session_a_421_ended_under_the_pipeline_is_closed(scripted: Any) -> None:
    """A 421 to a pipelined MAIL ends the session: the next message is told the server
    disconnected (it used to reach the machine, which refused MAIL in state CLOSED)."""
    import smtp_sync

    server = scripted([*session_prefix("PIPELINING"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), Send(b"421 4.3.2 shutting down\r\n"), Close()])
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=5)
    try:
        first, second = smtp.send_messages([("a@example.org", ["b@example.org"], b"Subject: 1\r\n\r\none\r\n"), ("a@example.org", ["b@example.org"], b"Subject: 2\r\n\r\ntwo\r\n")])
        with pytest.raises(smtp_sync.SMTPServerDisconnected):
            smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: 3\r\n\r\nthree\r\n")
    finally:
        smtp.close()
    assert isinstance(first, smtp_sync.SMTPSenderRefused) and first.smtp_code == 421
    assert isinstance(second, smtp_sync.SMTPException) and second.outcome is second.outcome.NEVER_SENT
    assert smtp.sock is None
    assert not server.errors


def test_sync_pool_retries_recipients_refused_for_now(scripted: Any) -> None:
    """Every recipient refused with a 4xx is worth a retry, as on the async pools (the
    sync pool used to fail on smtplib's ``recipients`` dict with AttributeError, and
    leave the connection counted busy)."""
    import smtp_sync

    refused = [*session_prefix(), Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"450 4.2.1 busy\r\n"), ReadUntilClosed()]  # RSET, or closed before it
    good = [*session_prefix(), Expect(b"MAIL"), Send(b"250 ok\r\n"), Expect(b"RCPT"), Send(b"250 ok\r\n"), Expect(b"DATA"), Send(b"354 go\r\n"), ExpectData(), Send(b"250 queued\r\n"), Expect(b"QUIT"), Send(b"221 bye\r\n")]
    server = scripted(refused, more=[good])
    pool = smtp_sync.SMTPPool("127.0.0.1", server.port, local_hostname="client.test", timeout=5, retry_backoff=0.01)
    try:
        assert pool.sendmail("a@example.org", ["b@example.org"], b"Subject: s\r\n\r\nhi\r\n") == {}
        assert pool.stats["retries"] == 1
    finally:
        pool.close()
    assert pool.connections == 0
    assert not server.errors




def test_pool_deadline_bounds_a_message_riding_behind_another(adapter: Adapter, scripted: Any) -> None:
    """Two pool calls share the only connection; the server never answers the first,
    whose deadline is later. The second is told at its own deadline (it used to wait
    for the first caller's, as long as the client had no total deadline of its own)."""
    import time

    import anyio

    deadline = 0.4
    mail_read = threading.Event()
    server = scripted([*session_prefix("PIPELINING"), Expect(b"MAIL"), Signal(mail_read), Hang()])
    mod = adapter.module
    errors: dict[str, tuple[BaseException, float]] = {}

    async def main() -> None:
        pool = mod.SMTPPool(hostname="127.0.0.1", port=server.port, local_hostname="client.test", max_connections=1, max_in_flight=2, timeout=10 * deadline, max_attempts=1)
        second_done = anyio.Event()

        async def one(tag: str, timeout: float, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            started = time.monotonic()
            try:
                await pool.sendmail("a@example.org", [f"{tag}@example.org"], b"Subject: s\r\n\r\nhi\r\n", timeout=timeout)
            except mod.SMTPException as exc:
                errors[tag] = (exc, time.monotonic() - started)
            if tag == "second":
                second_done.set()

        async with anyio.create_task_group() as tg:
            await tg.start(one, "first", 10 * deadline)
            assert await anyio.to_thread.run_sync(mail_read.wait, 10), "the first message never reached the server"
            await tg.start(one, "second", deadline)
            with anyio.move_on_after(5 * deadline):
                await second_done.wait()
            tg.cancel_scope.cancel()  # the first caller: its deadline is not the point
        await pool.close()

    adapter.run(main)
    assert "second" in errors, "the second call was still waiting well past its deadline"
    second, took = errors["second"]
    assert type(second) is mod.SMTPReadTimeoutError, repr(second)
    assert second.outcome in (mod.Outcome.NEVER_SENT, mod.Outcome.UNKNOWN)
    assert took < deadline + 0.3, f"the second call, with a {deadline} s deadline, took {took:.2f} s"


def test_sync_total_deadline_bounds_waiting_behind_another_threads_turn(scripted: Any) -> None:
    """A thread's NOOP holds the shared client while the server trickles its reply (each
    byte well within the per-read timeout); another thread's message, with a total
    deadline far shorter, is told at that deadline that it was never sent (it used to
    wait for the NOOP, then time out with the session broken)."""
    import time

    import smtp_sync

    noop_read = threading.Event()
    server = scripted([*session_prefix(), Expect(b"NOOP"), Signal(noop_read), SendSlowly(b"250 slow noop\r\n", 0.1), ReadUntilClosed()])
    total = 0.3
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=5, timeouts=smtp_sync.Timeouts(total=total))
    results: dict[str, Any] = {}

    def noop() -> None:
        results["noop"] = smtp.noop()

    def send() -> None:
        started = time.monotonic()
        try:
            results["sendmail"] = smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: s\r\n\r\nhi\r\n")
        except smtp_sync.SMTPException as exc:
            results["sendmail"] = exc
        results["took"] = time.monotonic() - started

    try:
        smtp.ehlo()
        threads = [threading.Thread(target=noop), threading.Thread(target=send)]
        threads[0].start()
        assert noop_read.wait(10)
        threads[1].start()
        for thread in threads:
            thread.join(10)
    finally:
        smtp.close()
    assert results["noop"] == (250, b"slow noop")
    exc = results["sendmail"]
    assert isinstance(exc, smtp_sync.SMTPTimeoutError), repr(exc)
    assert exc.outcome is exc.outcome.NEVER_SENT
    assert results["took"] < total + 0.3, f"told after {results['took']:.2f} s for a {total} s deadline"
    assert b"MAIL" not in server.received


def test_sync_total_deadline_bounds_the_ehlo_before_the_message(scripted: Any) -> None:
    """The first message on a session says EHLO first; the server trickles its reply,
    each byte within the per-read timeout. The total deadline ends the call (it used
    to bound only the message's own commands, after EHLO)."""
    import time

    import smtp_sync

    server = scripted([Send(b"220 scripted ESMTP\r\n"), Expect(b"EHLO"), SendSlowly(b"250-smtp.test\r\n250 PIPELINING\r\n", 0.05), ReadUntilClosed()])
    total = 0.3
    smtp = smtp_sync.SMTP("127.0.0.1", server.port, local_hostname="client.test", timeout=5, timeouts=smtp_sync.Timeouts(total=total))
    started = time.monotonic()
    try:
        with pytest.raises(smtp_sync.SMTPTimeoutError):
            smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: s\r\n\r\nhi\r\n")
        took = time.monotonic() - started
    finally:
        smtp.close()
    assert took < total + 0.3, f"told after {took:.2f} s for a {total} s deadline"
    assert b"MAIL" not in server.received
