"""The pool's decisions without I/O: events in, actions out (smtp_core._pool_policy)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import smtp_core
import smtp_sync
from smtp_core._pool_policy import (
    OPEN,
    Close,
    Failure,
    Open,
    PooledConnection,
    PoolLimits,
    PoolPolicy,
    Retry,
    Ticket,
    Use,
    Wait,
    refused_for_now,
)
from smtp_core._replies import Reply
from smtp_core.flows import TransactionResult

T0 = 1000.0


def policy(**limits: Any) -> PoolPolicy[str]:
    return PoolPolicy(PoolLimits(**limits))


def open_one(pool: PoolPolicy[str], name: str, now: float = T0) -> PooledConnection[str]:
    """A caller asks, is told to open, and opens ``name``."""
    ticket = pool.request(now, None)
    assert pool.poll(ticket, now) is OPEN
    pool.take_wakes()
    return pool.opened(name, now)


def reply(code: int) -> Reply:
    return Reply(code, ("text",))


def result(
    mail: int = 250, rcpts: tuple[int, ...] = (250,), data: int | None = 250, error: Exception | None = None
) -> TransactionResult:
    return TransactionResult(
        "a@example.org",
        reply(mail),
        {f"r{i}@example.org": reply(code) for i, code in enumerate(rcpts)},
        None if data is None else reply(data),
        error=error,
    )


# -- choosing a connection ------------------------------------------------------------------------


def test_a_first_caller_is_told_to_open_then_holds_the_connection() -> None:
    pool = policy()
    ticket = pool.request(T0, None)
    assert pool.open_count == 1 and pool.connecting == 1
    assert pool.poll(ticket, T0) is OPEN
    conn = pool.opened("c1", T0)
    assert (conn.client, conn.in_flight, pool.connecting, pool.open_count) == ("c1", 1, 0, 1)
    assert pool.stats["connections"] == 1


def test_the_most_recently_used_idle_connection_is_reused() -> None:
    pool = policy()
    first, second = open_one(pool, "c1"), open_one(pool, "c2")
    pool.release(first, T0 + 1)
    pool.release(second, T0 + 2)
    ticket = pool.request(T0 + 3, None)
    assert pool.poll(ticket, T0 + 3) == Use(second, check=False)


@pytest.mark.parametrize(("idle", "check"), [(9.9, False), (10.0, True), (30.0, True)])
def test_an_idle_connection_is_checked_after_check_after_idle(idle: float, check: bool) -> None:
    pool = policy(check_after_idle=10.0)
    conn = open_one(pool, "c1")
    pool.release(conn, T0)
    assert pool.poll(pool.request(T0 + idle, None), T0 + idle) == Use(conn, check=check)


def test_new_connections_are_opened_before_busy_ones_are_shared() -> None:
    pool = policy(max_connections=2, max_in_flight=2)
    c1, c2 = open_one(pool, "c1"), open_one(pool, "c2")
    third, fourth, fifth = (pool.request(T0, None) for _ in range(3))
    assert pool.poll(third, T0) == Use(c1)  # a share: no check, it is busy
    assert pool.poll(fourth, T0) == Use(c2)
    assert pool.poll(fifth, T0) == Wait(None)
    assert (c1.in_flight, c2.in_flight) == (2, 2)


def test_a_waiter_is_served_by_a_release_and_woken() -> None:
    pool = policy(max_connections=1, max_in_flight=1)
    conn = open_one(pool, "c1")
    waiter = pool.request(T0, T0 + 5)
    assert pool.poll(waiter, T0) == Wait(T0 + 5)
    assert pool.take_wakes() == []
    pool.release(conn, T0 + 1)
    assert pool.take_wakes() == [waiter]
    assert pool.poll(waiter, T0 + 1) == Use(conn)
    assert conn.in_flight == 1


def test_waiters_are_served_in_the_order_they_asked() -> None:
    pool = policy(max_connections=1, max_in_flight=1)
    conn = open_one(pool, "c1")
    waiters = [pool.request(T0, None) for _ in range(3)]
    served = []
    for step in range(3):
        pool.release(conn, T0 + step)
        [woken] = pool.take_wakes()
        assert pool.poll(woken, T0 + step) == Use(conn)
        served.append(woken)
    assert served == waiters


def test_a_newcomer_does_not_overtake_a_waiter() -> None:
    pool = policy(max_connections=1, max_in_flight=1)
    conn = open_one(pool, "c1")
    waiter = pool.request(T0, None)
    pool.release(conn, T0 + 1)  # handed to the waiter, which has not polled yet
    newcomer = pool.request(T0 + 1, None)
    assert pool.poll(newcomer, T0 + 1) == Wait(None)
    assert pool.poll(waiter, T0 + 1) == Use(conn)


def test_a_waiter_gives_up_at_its_deadline() -> None:
    pool = policy(max_connections=1, max_in_flight=1)
    open_one(pool, "c1")
    waiter = pool.request(T0, T0 + 5)
    assert pool.poll(waiter, T0 + 4.9) == Wait(T0 + 5)
    assert pool.poll(waiter, T0 + 5) is Failure.WAIT_TIMEOUT
    assert pool.waiting == 0


def test_what_a_waiter_was_handed_goes_to_the_next_when_it_gives_up() -> None:
    pool = policy(max_connections=1, max_in_flight=1)
    conn = open_one(pool, "c1")
    first, second = pool.request(T0, T0 + 5), pool.request(T0, T0 + 9)
    pool.release(conn, T0 + 5)  # handed to the first just as its wait ended
    assert pool.give_up(first, T0 + 5) is Failure.WAIT_TIMEOUT
    assert pool.take_wakes() == [first, second]
    assert pool.poll(second, T0 + 5) == Use(conn)


def test_a_cancelled_caller_told_to_open_gives_its_place_back() -> None:
    pool = policy(max_connections=1)
    first, second = pool.request(T0, None), pool.request(T0, None)
    pool.withdraw(first, T0)  # cancelled before it polled its Open
    assert pool.connecting == 1 and pool.take_wakes() == [first, second]
    assert pool.poll(second, T0) is OPEN


def test_a_connection_found_closed_is_retired_and_the_caller_asks_again_first() -> None:
    pool = policy(max_connections=1, max_in_flight=1)
    conn = open_one(pool, "c1")
    pool.release(conn, T0)
    caller = pool.request(T0 + 1, None)
    other = pool.request(T0 + 1, None)
    assert pool.poll(caller, T0 + 1) == Use(conn)
    pool.found_closed(caller, conn, T0 + 1)
    assert pool.take_closing() == [Close(conn, quit=False)]
    assert pool.stats["retired"] == 1
    assert pool.poll(caller, T0 + 1) is OPEN  # before `other`, which asked later
    assert pool.poll(other, T0 + 1) == Wait(None)


def test_a_failed_check_discards_the_connection() -> None:
    pool = policy()
    conn = open_one(pool, "c1")
    pool.release(conn, T0)
    caller = pool.request(T0 + 20, None)
    assert pool.poll(caller, T0 + 20) == Use(conn, check=True)
    pool.check_failed(caller, conn, T0 + 20)
    assert pool.take_closing() == [Close(conn, quit=False)]
    assert pool.stats["retired"] == 0 and pool.connections == []
    assert pool.poll(caller, T0 + 20) is OPEN


def test_a_failed_open_lets_the_next_caller_open() -> None:
    pool = policy(max_connections=1)
    first, second = pool.request(T0, None), pool.request(T0, None)
    assert pool.poll(first, T0) is OPEN and pool.poll(second, T0) == Wait(None)
    pool.open_failed(T0)
    assert pool.take_wakes()[-1] is second and pool.poll(second, T0) is OPEN


def test_a_new_connection_is_shared_with_a_waiter_once_open() -> None:
    pool = policy(max_connections=1, max_in_flight=2)
    first, second = pool.request(T0, None), pool.request(T0, None)
    assert pool.poll(first, T0) is OPEN and pool.poll(second, T0) == Wait(None)
    conn = pool.opened("c1", T0)
    assert pool.poll(second, T0) == Use(conn)


# -- expiry -----------------------------------------------------------------------------------------


def test_retired_after_max_messages_counting_those_in_flight() -> None:
    pool = policy(max_messages_per_connection=2, max_in_flight=4, max_connections=1)
    conn = open_one(pool, "c1")
    second = pool.request(T0, None)
    assert pool.poll(second, T0) == Use(conn)  # 0 done + 2 in flight: no more
    third = pool.request(T0, None)
    assert pool.poll(third, T0) == Wait(None)
    delivery = pool.delivery(T0, None)
    assert pool.finished(delivery, conn, T0, result(), connected=True) is None
    assert pool.take_closing() == []
    assert pool.finished(delivery, conn, T0, result(), connected=True) is None
    assert pool.take_closing() == [Close(conn, quit=True)]
    assert pool.stats == {"connections": 1, "retired": 1, "messages": 2, "retries": 0}
    assert pool.poll(third, T0) is OPEN


@pytest.mark.parametrize(
    ("age", "idle", "retired"),
    [(599, 59, False), (600, 0, True), (100, 60, False), (100, 60.5, True)],
)
def test_idle_connections_past_their_age_or_idle_timeout_are_retired(
    age: float, idle: float, retired: bool
) -> None:
    pool = policy(max_connection_age=600, idle_timeout=60)
    conn = open_one(pool, "c1")
    pool.release(conn, T0 + age - idle)
    pool.expire_idle(T0 + age)
    assert pool.take_closing() == ([Close(conn, quit=True)] if retired else [])
    assert pool.open_count == (0 if retired else 1)


def test_an_old_connection_is_not_handed_out_and_retired_when_asked() -> None:
    pool = policy(max_connection_age=100)
    conn = open_one(pool, "c1")
    pool.release(conn, T0 + 1)
    ticket = pool.request(T0 + 100, None)
    assert pool.take_closing() == [Close(conn, quit=True)]
    assert pool.poll(ticket, T0 + 100) is OPEN


def test_connections_the_driver_found_closed_are_retired_when_idle() -> None:
    pool = policy()
    idle, busy = open_one(pool, "idle"), open_one(pool, "busy")
    pool.release(idle, T0)
    pool.expire_idle(T0, [idle, busy])
    assert pool.take_closing() == [Close(idle, quit=True)]  # QUIT if still connected
    assert pool.connections == [busy]


def test_a_discarded_connection_waits_for_its_other_callers() -> None:
    pool = policy(max_connections=1, max_in_flight=2)
    conn = open_one(pool, "c1")
    other = pool.request(T0, None)
    assert pool.poll(other, T0) == Use(conn)
    pool.discard(conn, T0)
    assert pool.take_closing() == [] and conn.broken
    assert pool.poll(pool.request(T0, None), T0) == Wait(None)  # no new work for it
    pool.release(conn, T0)
    assert pool.take_closing() == [Close(conn, quit=False)]


def test_close_retires_idle_connections_and_tells_the_waiters() -> None:
    pool = policy(max_connections=2, max_in_flight=1)
    idle, busy = open_one(pool, "idle"), open_one(pool, "busy")
    pool.release(idle, T0)
    waiter = pool.request(T0, None)
    assert pool.poll(waiter, T0) == Use(idle)
    pool.release(idle, T0)
    late = pool.request(T0, None)
    assert pool.poll(late, T0) == Use(idle)
    waiting = pool.request(T0, None)
    pool.close(T0)
    assert pool.take_wakes()[-1] is waiting
    assert pool.poll(waiting, T0) is Failure.CLOSED
    assert pool.poll(pool.request(T0, None), T0) is Failure.CLOSED
    pool.release(busy, T0)
    pool.release(idle, T0)
    assert pool.take_closing() == [Close(busy, quit=True), Close(idle, quit=True)]
    assert pool.open_count == 0


# -- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "attempt", "timed_out", "left", "then"),
    [
        (smtp_core.Outcome.NEVER_SENT, 1, False, None, Retry(0.5)),
        (smtp_core.Outcome.NEVER_SENT, 2, False, None, Retry(1.0)),
        (None, 1, False, None, Retry(0.5)),  # concerned no message (connecting, EHLO)
        (smtp_core.Outcome.UNKNOWN, 1, False, None, None),  # it may have arrived
        (smtp_core.Outcome.DONE, 1, False, None, None),
        (smtp_core.Outcome.NEVER_SENT, 3, False, None, None),  # max_attempts
        (smtp_core.Outcome.NEVER_SENT, 1, True, 0.0, None),  # its time is up
        (smtp_core.Outcome.NEVER_SENT, 1, True, 2.0, Retry(0.5)),
        (smtp_core.Outcome.NEVER_SENT, 1, False, 0.5, Failure.RETRY_TIMEOUT),  # no time to wait
        (smtp_core.Outcome.NEVER_SENT, 1, False, 0.6, Retry(0.5)),
    ],
)
def test_a_failure_is_retried_only_if_nothing_of_the_message_was_sent(
    outcome: smtp_core.Outcome | None, attempt: int, timed_out: bool, left: float | None, then: Any
) -> None:
    pool = policy(max_attempts=3, retry_backoff=0.5)
    conn = open_one(pool, "c1")
    delivery = pool.delivery(T0, left)
    delivery.attempt = attempt
    assert pool.failed(delivery, conn, T0, outcome=outcome, timed_out=timed_out) == then
    assert pool.take_closing() == [Close(conn, quit=False)]  # the connection broke
    assert pool.stats["retries"] == (0 if then is None else 1)
    assert delivery.attempt == attempt + isinstance(then, Retry)


def sender_refused(code: int) -> Exception:
    return smtp_core.SMTPSenderRefused(code, "no", "a@example.org")


def recipients_refused(*codes: int) -> Exception:
    return smtp_core.SMTPRecipientsRefused(
        [smtp_core.SMTPRecipientRefused(code, "no", f"r{i}@example.org") for i, code in enumerate(codes)]
    )


@pytest.mark.parametrize(
    ("case", "refused"),
    [
        (result(), False),
        (result(451, (), None, sender_refused(451)), True),
        (result(421, (), None, sender_refused(421)), True),
        (result(550, (), None, sender_refused(550)), False),
        (result(250, (450, 451), None, recipients_refused(450, 451)), True),
        (result(250, (450, 550), None, recipients_refused(450, 550)), False),
        (
            result(250, (450,), None, smtp_sync.SMTPRecipientsRefused({"r0@example.org": (450, b"no")})),
            True,
        ),
        (result(250, (250,), 451, smtp_core.SMTPDataError(451, "later")), False),  # after DATA
        (result(250, (250,), None, smtp_core.SMTPDataError(451, "later")), True),
    ],
)
def test_refused_for_now(case: TransactionResult, refused: bool) -> None:
    assert refused_for_now(case) is refused


def test_a_result_refused_for_now_is_retried_on_another_connection() -> None:
    pool = policy(max_attempts=2)
    conn = open_one(pool, "c1")
    delivery = pool.delivery(T0, None)
    refused = result(451, (), None, sender_refused(451))
    assert pool.finished(delivery, conn, T0, refused, connected=True) == Retry(0.5)
    assert pool.take_closing() == [Close(conn, quit=False)]
    conn = open_one(pool, "c2")
    assert pool.finished(delivery, conn, T0, refused, connected=True) is None  # the last attempt
    assert pool.take_closing() == [] and conn.in_flight == 0
    assert pool.stats["messages"] == 2 and pool.stats["retries"] == 1


def test_a_result_on_a_connection_that_closed_discards_it() -> None:
    pool = policy()
    conn = open_one(pool, "c1")
    assert pool.finished(pool.delivery(T0, None), conn, T0, result(), connected=False) is None
    assert pool.take_closing() == [Close(conn, quit=False)]


# -- the rate limit -------------------------------------------------------------------------------


def test_rate_limit() -> None:
    pool = policy(rate_limit=(2, 10.0))
    delivery = pool.delivery(T0, None)
    assert [pool.pace(delivery, t) for t in (T0, T0 + 1, T0 + 2)] == [None, None, 8.0]
    assert pool.pace(delivery, T0 + 10) is None
    assert pool.pace(delivery, T0 + 10.5) == 0.5
    assert pool.pace(pool.delivery(T0 + 10.5, 0.4), T0 + 10.5) is Failure.RATE_TIMEOUT
    assert pool.pace(pool.delivery(T0 + 10.5, 0.5), T0 + 10.5) == 0.5
    assert policy().pace(delivery, T0) is None


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_connections": 0}, "max_connections"),
        ({"max_messages_per_connection": 0}, "max_messages_per_connection"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"rate_limit": (0, 1.0)}, "rate_limit"),
        ({"rate_limit": (1, 0.0)}, "rate_limit"),
    ],
)
def test_limits_are_checked(limits: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoolLimits(**limits)


def test_the_pools_limits_are_the_policys() -> None:
    pool = smtp_sync.SMTPPool("127.0.0.1", 1, max_connections=3)
    assert pool.max_connections == 3 and pool._policy.limits.max_connections == 3
    pool.max_connections = 5
    assert pool._policy.limits.max_connections == 5


def test_smtp_sync_retries_a_4xx_for_every_recipient(smtpd: Any) -> None:
    server = smtpd(refuse_recipients={"busy@example.org": "450 4.2.1 mailbox busy"})
    with smtp_sync.SMTPPool(server.host, server.port, max_attempts=2, retry_backoff=0.01) as pool:
        with pytest.raises(smtp_sync.SMTPRecipientsRefused):
            pool.sendmail("a@example.org", ["busy@example.org"], b"Subject: x\r\n\r\nx\r\n")
        assert pool.stats["retries"] == 1 and pool.stats["connections"] == 2


# -- any order of events ---------------------------------------------------------------------------


OPENING = st.sampled_from(["ok", "ok", "failed", "later"])  # when told to open


class PoolMachine(RuleBasedStateMachine):
    """Callers ask, poll, open, give up, finish or fail in any order, time moves on."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.pool: PoolPolicy[int] | None = None
        self.asking: list[Ticket[int]] = []  # asked, not answered yet
        self.opening: list[Ticket[int]] = []  # told to open
        self.holding: list[PooledConnection[int]] = []  # one entry per caller holding it
        self.handed: list[tuple[PooledConnection[int], Ticket[int]]] = []  # not checked yet
        self.woken: set[int] = set()
        self.served: set[int] = set()  # ids of the callers handed something, not polled yet
        self.names = 0

    @property
    def policy(self) -> PoolPolicy[int]:
        assert self.pool is not None
        return self.pool

    @initialize(
        max_connections=st.integers(1, 3),
        max_in_flight=st.integers(1, 3),
        max_messages=st.integers(1, 4),
        max_attempts=st.integers(1, 3),
    )
    def start(self, max_connections: int, max_in_flight: int, max_messages: int, max_attempts: int) -> None:
        self.pool = PoolPolicy(
            PoolLimits(
                max_connections=max_connections,
                max_in_flight=max_in_flight,
                max_messages_per_connection=max_messages,
                max_attempts=max_attempts,
                max_connection_age=50.0,
                idle_timeout=20.0,
                check_after_idle=5.0,
                retry_backoff=0.1,
            )
        )

    @precondition(lambda self: len(self.asking) < 6)
    @rule(patience=st.none() | st.floats(0, 30), opening=OPENING)
    def ask(self, patience: float | None, opening: str) -> None:
        """A caller asks, and polls at once (as the pools do)."""
        ticket = self.policy.request(self.now, None if patience is None else self.now + patience)
        self.asking.append(ticket)
        self._poll(ticket, opening)

    @precondition(lambda self: self.asking)
    @rule(data=st.data(), opening=OPENING)
    def poll(self, data: st.DataObject, opening: str) -> None:
        """A caller polls again (woken, or not): those handed something first."""
        self._poll(data.draw(st.sampled_from(sorted(self.asking, key=lambda t: t.grant is None))), opening)

    def _poll(self, ticket: Ticket[int], opening: str) -> None:
        waiting = ticket.grant is None
        action = self.policy.poll(ticket, self.now)
        if waiting and isinstance(action, (Use, Open)):  # served now: nobody older waits
            assert all(w.serial > ticket.serial for w in self.policy._queue)
        if isinstance(action, Wait):
            assert ticket.grant is None and (action.until is None or action.until > self.now)
            return
        self.asking.remove(ticket)
        if isinstance(action, Use):
            assert action.connection in self.policy.connections and not action.connection.broken
            self.holding.append(action.connection)
            self.handed.append((action.connection, ticket))
        elif action is OPEN:
            self.opening.append(ticket)
            if opening != "later":
                self._opened(len(self.opening) - 1, opening == "ok")
        else:
            assert action in (Failure.WAIT_TIMEOUT, Failure.CLOSED)
            assert action is Failure.CLOSED or (ticket.deadline is not None and self.now >= ticket.deadline)

    @precondition(lambda self: self.asking)
    @rule(data=st.data())
    def give_up(self, data: st.DataObject) -> None:
        ticket = data.draw(st.sampled_from(self.asking))
        self.asking.remove(ticket)
        self.policy.give_up(ticket, self.now)

    @precondition(lambda self: self.opening)
    @rule(data=st.data(), ok=st.booleans())
    def open_done(self, data: st.DataObject, ok: bool) -> None:
        self._opened(data.draw(st.integers(0, len(self.opening) - 1)), ok)

    def _opened(self, index: int, ok: bool) -> None:
        self.opening.pop(index)
        if ok:
            self.names += 1
            self.holding.append(self.policy.opened(self.names, self.now))
        else:
            self.policy.open_failed(self.now)

    def _held(self, data: st.DataObject) -> PooledConnection[int]:
        connection = self.holding.pop(data.draw(st.integers(0, len(self.holding) - 1)))
        for handed in self.handed:
            if handed[0] is connection:
                self.handed.remove(handed)
                break
        return connection

    @precondition(lambda self: self.holding)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self.policy.release(self._held(data), self.now)

    @precondition(lambda self: self.handed)
    @rule(data=st.data(), closed=st.booleans())
    def reject(self, data: st.DataObject, closed: bool) -> None:
        """The connection handed out was found closed, or its check failed: the caller
        asks again, first in line."""
        connection, ticket = self.handed.pop(data.draw(st.integers(0, len(self.handed) - 1)))
        self.holding.remove(connection)
        if closed:
            self.policy.found_closed(ticket, connection, self.now)
        else:
            self.policy.check_failed(ticket, connection, self.now)
        self.asking.append(ticket)

    @precondition(lambda self: self.holding)
    @rule(
        data=st.data(),
        outcome=st.sampled_from([None, *smtp_core.Outcome]),
        attempt=st.integers(1, 4),
        timed_out=st.booleans(),
    )
    def fail(self, data: st.DataObject, outcome: smtp_core.Outcome | None, attempt: int, timed_out: bool) -> None:
        delivery = self.policy.delivery(self.now, None)
        delivery.attempt = attempt
        then = self.policy.failed(delivery, self._held(data), self.now, outcome=outcome, timed_out=timed_out)
        if then is not None:
            assert outcome in (smtp_core.Outcome.NEVER_SENT, None)
            assert attempt < self.policy.limits.max_attempts

    @precondition(lambda self: self.holding)
    @rule(
        data=st.data(),
        code=st.sampled_from([250, 421, 451, 550]),
        data_sent=st.booleans(),
        connected=st.booleans(),
    )
    def finish(self, data: st.DataObject, code: int, data_sent: bool, connected: bool) -> None:
        error = None if code == 250 else sender_refused(code)
        done = result(code, (), 250 if data_sent else None, error)
        delivery = self.policy.delivery(self.now, None)
        then = self.policy.finished(delivery, self._held(data), self.now, done, connected=connected)
        if then is not None:
            assert not data_sent and 400 <= code < 500

    @rule(seconds=st.sampled_from([0.5, 5.0, 25.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def expire_idle(self) -> None:
        self.policy.expire_idle(self.now)

    @rule(chance=st.integers(0, 19))
    def close(self, chance: int) -> None:
        if chance == 0:  # rarely: nothing happens after it
            self.policy.close(self.now)

    @invariant()
    def holds(self) -> None:
        pool = self.policy
        limits = pool.limits
        assert pool.open_count <= limits.max_connections
        # Each connection is handed to as many callers as hold it, up to max_in_flight.
        granted = [t.grant for t in self.asking if t.grant is not None]
        for conn in pool.connections:
            holders = self.holding.count(conn) + sum(isinstance(g, Use) and g.connection is conn for g in granted)
            assert conn.in_flight == holders <= limits.max_in_flight
        assert all(conn in pool.connections for conn in self.holding)
        assert pool.connecting == len(self.opening) + sum(g is OPEN for g in granted)
        # Served in order: the waiting callers are those after every one served.
        queue = list(pool._queue)
        assert [t.serial for t in queue] == sorted(t.serial for t in queue)
        served = [t for t in self.asking if t.grant is not None]
        for ticket in served:
            if id(ticket) not in self.served:
                assert all(w.serial > ticket.serial for w in queue)
        self.served = {id(t) for t in served}
        # No wake-up lost: each caller handed something was told so.
        self.woken.update(id(t) for t in pool.take_wakes())
        assert all(id(t) in self.woken for t in served)
        # Nobody waits while something could be handed out.
        if queue and not pool.closed:
            assert pool._choose(self.now) is None
        for close in pool.take_closing():
            assert close.connection.in_flight == 0 and close.connection not in pool.connections


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=int(os.environ.get("POOL_EXAMPLES", "300")), stateful_step_count=40, deadline=None)


def test_a_transient_failure_to_connect_is_retried_on_a_fresh_connection() -> None:
    """A 4xx greeting (an MTA over its connection limit) or a connection dropped while
    opening: nothing was sent, so the caller tries again after the backoff, doubling,
    ``max_attempts`` in all; anything else is the caller's answer at once."""
    pool = policy(max_attempts=3, retry_backoff=0.5)
    delivery = pool.delivery(T0, None)
    assert pool.connect_failed(delivery, T0, transient=True) == Retry(0.5)
    assert pool.connect_failed(delivery, T0, transient=True) == Retry(1.0)
    assert pool.connect_failed(delivery, T0, transient=True) is None  # third attempt failed
    assert pool.connect_failed(pool.delivery(T0, None), T0, transient=False) is None
    # Never past the caller's deadline.
    assert pool.connect_failed(pool.delivery(T0, 0.4), T0, transient=True) is Failure.RETRY_TIMEOUT
