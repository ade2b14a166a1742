"""smtp_sync.SMTPPool's guarantees, against real loopback servers: one deadline for a
whole call (waiting, connecting, checking, the message, retries, QUIT), the rate limit
on the pool's clock, and retries of a connection that could not be opened."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import smtp_core
import smtp_sync

from .servers import (
    Close,
    Expect,
    ExpectData,
    Hang,
    Reset,
    ScriptedServer,
    Send,
    free_port,
    session_prefix,
)

MESSAGE = b"Subject: pooled\r\n\r\nhello\r\n"
DEADLINE = 0.5
SLACK = 0.5  # scheduling on a loaded machine; far below any socket timeout used here
ACCEPTED = [
    *session_prefix("PIPELINING"),
    Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
    Send(b"250 ok\r\n250 ok\r\n354 go\r\n"), ExpectData(), Send(b"250 queued\r\n"),
]
SERVED = [*ACCEPTED, Expect(b"QUIT"), Send(b"221 bye\r\n")]
HANG_AFTER_MAIL = [*session_prefix("PIPELINING"), Expect(b"MAIL"), Hang()]


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """What ``call`` returned or raised, and how long it took."""
    started = time.monotonic()
    try:
        outcome = call()
    except Exception as exc:
        outcome = exc
    return outcome, time.monotonic() - started


def send(pool: smtp_sync.SMTPPool) -> Any:
    return pool.sendmail("a@example.org", ["b@example.org"], MESSAGE)


# -- one deadline for the whole call -------------------------------------------------------


@pytest.mark.parametrize("limit", ["timeout", "total"])
def test_a_stalled_greeting_ends_at_the_deadline(scripted: Any, limit: str) -> None:
    """The server accepts and never greets: the pool's timeout (or the clients'
    Timeouts.total, with no socket timeout at all) ends the call."""
    server = scripted([Hang()])
    options: dict[str, Any] = (
        {"timeout": DEADLINE} if limit == "timeout"
        else {"timeout": None, "timeouts": smtp_sync.Timeouts(total=DEADLINE)}
    )
    with smtp_sync.SMTPPool("127.0.0.1", server.port, local_hostname="client.test", **options) as pool:
        error, took = timed(lambda: send(pool))
    assert isinstance(error, smtp_sync.SMTPTimeoutError), error
    assert DEADLINE - 0.05 <= took < DEADLINE + SLACK
    assert pool.stats["retries"] == 0  # nothing is left of the deadline to retry in


def test_the_wait_for_a_free_connection_ends_at_the_deadline(smtpd: Any) -> None:
    """The only connection is busy: the call's timeout ends the wait (wait_timeout is
    longer), and the connection serves the next call once it is free."""
    server = smtpd()
    with smtp_sync.SMTPPool(
        server.host, server.port, local_hostname="client.test", max_connections=1, max_in_flight=1,
        timeout=DEADLINE, wait_timeout=60,
    ) as pool:
        held = pool._acquire(pool._policy.delivery(time.monotonic(), None))
        error, took = timed(lambda: send(pool))
        assert isinstance(error, smtp_sync.SMTPTimeoutError) and "free connection" in str(error)
        assert DEADLINE - 0.05 <= took < DEADLINE + SLACK
        pool._release(held)
        assert send(pool) == {}
    assert len(server.messages) == 1


def test_a_stalled_message_ends_at_the_deadline(scripted: Any) -> None:
    """The server stops answering after MAIL: the message was never sent (its content
    was not), and there is no time left to retry it."""
    server = scripted(HANG_AFTER_MAIL)
    with smtp_sync.SMTPPool(
        "127.0.0.1", server.port, local_hostname="client.test", timeout=30, max_attempts=3,
        timeouts=smtp_sync.Timeouts(total=DEADLINE),
    ) as pool:
        error, took = timed(lambda: send(pool))
    assert isinstance(error, smtp_sync.SMTPTimeoutError)
    assert error.outcome is smtp_core.Outcome.NEVER_SENT
    assert DEADLINE - 0.05 <= took < DEADLINE + SLACK
    assert pool.stats["retries"] == 0


def test_retries_and_their_backoff_share_the_deadline(scripted: Any) -> None:
    """The first connection drops before the content (retried after 0.2 s); the second
    stalls: the second attempt has what is left of the deadline, not a new one."""
    dropped = [*session_prefix("PIPELINING"), Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"), Close()]
    server = scripted(dropped, more=[HANG_AFTER_MAIL])
    with smtp_sync.SMTPPool(
        "127.0.0.1", server.port, local_hostname="client.test", timeout=30, retry_backoff=0.2, max_attempts=5,
        timeouts=smtp_sync.Timeouts(total=DEADLINE),
    ) as pool:
        error, took = timed(lambda: send(pool))
    assert isinstance(error, smtp_sync.SMTPTimeoutError), error
    assert pool.stats["retries"] == 1 and pool.stats["connections"] == 2
    assert 0.2 <= took < DEADLINE + SLACK


def test_a_stalled_noop_check_ends_at_the_deadline(scripted: Any) -> None:
    """check_after_idle=0: the connection is checked before its second message, and the
    server never answers the NOOP."""
    server = scripted([*ACCEPTED, Expect(b"NOOP"), Hang()])
    with smtp_sync.SMTPPool(
        "127.0.0.1", server.port, local_hostname="client.test", timeout=30, check_after_idle=0,
        timeouts=smtp_sync.Timeouts(total=DEADLINE),
    ) as pool:
        assert send(pool) == {}
        error, took = timed(lambda: send(pool))
    assert isinstance(error, smtp_sync.SMTPTimeoutError), error
    assert took < DEADLINE + SLACK
    assert server.lines[-1].startswith(b"NOOP")


def test_a_stalled_quit_when_retiring_ends_at_the_deadline(scripted: Any) -> None:
    """max_messages_per_connection=1: the caller's call QUITs the connection it retires,
    and the server never answers; the message's result comes back by the deadline."""
    server = scripted([*ACCEPTED, Expect(b"QUIT"), Hang()])
    with smtp_sync.SMTPPool(
        "127.0.0.1", server.port, local_hostname="client.test", timeout=30, max_messages_per_connection=1,
        timeouts=smtp_sync.Timeouts(total=DEADLINE),
    ) as pool:
        result, took = timed(lambda: send(pool))
        assert pool.connections == 0
    assert result == {}
    assert took < DEADLINE + SLACK
    assert server.lines[-1].startswith(b"QUIT")


# -- the rate limit, on the pool's clock ---------------------------------------------------


class FakeTime:
    """A clock that only the pool's sleep moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rate_limit": (0, 1.0)}, "rate_limit must be"),
        ({"rate_limit": (1, 0.0)}, "rate_limit must be"),
        ({"max_connections": 0}, "max_connections must be at least 1"),
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"timeout": 0}, "timeout must be positive"),
    ],
)
def test_limits_are_checked_when_the_pool_is_made(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        smtp_sync.SMTPPool("127.0.0.1", 1, **options)


def test_rate_limit_across_threads(smtpd: Any) -> None:
    """Four threads, three messages each, at most 2 per 10 s of the pool's clock: the
    clock moves only by the pool's sleeps, and the starts fit the windows."""
    server = smtpd()
    fake = FakeTime()
    starts: list[float] = []

    class Counting(smtp_sync.SMTP):
        def sendmail_detailed(self, *args: Any, **kwargs: Any) -> Any:
            starts.append(fake.clock())  # after the pool paced it
            return super().sendmail_detailed(*args, **kwargs)

    with smtp_sync.SMTPPool(
        server.host, server.port, client_class=Counting, local_hostname="client.test", max_connections=2,
        rate_limit=(2, 10.0), clock=fake.clock, sleep=fake.sleep,
    ) as pool:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(3):
                    assert send(pool) == {}
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert len(server.messages) == 12 and len(starts) == 12
    assert sum(fake.sleeps) >= 50  # 12 messages, 2 per 10 s: the last starts 50 s in
    for start in starts:
        assert len([t for t in starts if start - 10.0 < t <= start]) <= 2, starts


def test_rate_limit_past_the_deadline_fails_at_once_and_keeps_the_connection(smtpd: Any) -> None:
    server = smtpd()
    with smtp_sync.SMTPPool(server.host, server.port, rate_limit=(1, 100.0), timeout=5) as pool:
        assert send(pool) == {}
        error, took = timed(lambda: send(pool))
        assert isinstance(error, smtp_sync.SMTPTimeoutError) and "rate limit" in str(error)
        assert took < SLACK
        assert pool.connections == 1 and pool.stats["retries"] == 0  # released, not discarded
    assert len(server.messages) == 1


# -- a connection that could not be opened ---------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        pytest.param([Reset()], id="reset"),
        pytest.param([Close()], id="dropped"),
        pytest.param([Send(b"421 4.7.0 too many connections\r\n"), Close()], id="421-greeting"),
    ],
)
def test_a_transient_failure_to_connect_is_retried(scripted: Any, first: list[Any]) -> None:
    server = scripted(first, more=[SERVED])
    fake = FakeTime()
    with smtp_sync.SMTPPool("127.0.0.1", server.port, local_hostname="client.test", sleep=fake.sleep) as pool:
        assert send(pool) == {}
        assert pool.stats["retries"] == 1 and fake.sleeps == [0.5]


def test_a_refused_connection_is_retried_on_a_fresh_one(scripted: Any) -> None:
    """Nothing listens at first (connection refused, a raw OSError); the server is up by
    the time the backoff is over."""
    port = free_port()
    servers: list[ScriptedServer] = []

    def sleep(seconds: float) -> None:  # the pool's backoff: the server comes up meanwhile
        servers.append(scripted(SERVED, bind_port=port))

    with smtp_sync.SMTPPool("127.0.0.1", port, local_hostname="client.test", sleep=sleep) as pool:
        assert send(pool) == {}
        assert pool.stats["retries"] == 1
    assert len(servers) == 1 and servers[0].lines[-1].startswith(b"QUIT")


def test_refused_every_time_raises_what_smtplib_raises(scripted: Any) -> None:
    fake = FakeTime()
    with smtp_sync.SMTPPool("127.0.0.1", free_port(), max_attempts=3, sleep=fake.sleep) as pool:
        with pytest.raises(ConnectionRefusedError):
            send(pool)
        assert pool.stats["retries"] == 2 and fake.sleeps == [0.5, 1.0]
        assert pool.connections == 0


def test_a_permanent_refusal_to_connect_is_not_retried(scripted: Any) -> None:
    server = scripted([Send(b"554 5.7.1 go away\r\n"), Close()], more=[SERVED])
    with smtp_sync.SMTPPool("127.0.0.1", server.port, local_hostname="client.test") as pool:
        with pytest.raises(smtp_sync.SMTPConnectError) as info:
            send(pool)
        assert info.value.smtp_code == 554 and pool.stats["retries"] == 0
