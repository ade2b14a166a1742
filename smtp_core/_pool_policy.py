"""A connection pool's decisions, without I/O, for every pool that drives one.

:class:`PoolPolicy` is told what happened: a caller asks for a connection at time
``t``, a connection opened (or failed to), a message finished with a result or failed
with an outcome, a connection was released or found closed. It answers with what to
do: use this connection (checked with NOOP first, or not), open a new one, wait until
``t`` or a wake-up, retry after ``d`` seconds, give up. Connections it no longer wants
come out of :meth:`PoolPolicy.take_closing` (QUIT them, or just close them), and the
waiting callers it served out of :meth:`PoolPolicy.take_wakes`.

Time comes in as numbers, and the policy never touches a connection: the pools that
drive it (:class:`smtp_core._pool.SMTPPoolBase` on an event loop, ``smtp_sync``'s for
threads) own the clients, the clock, the sleeping and the waiting.

What the policy decides:

* **Choosing**: callers are served in the order they asked. A caller gets the most
  recently used idle connection; else a new one, while fewer than ``max_connections``
  are open or opening; else a share of the least loaded one, while it carries fewer
  than ``max_in_flight`` messages; else it waits, until its deadline.
* **Expiry**: a connection takes no new work once it is broken, has carried
  ``max_messages_per_connection`` messages (counting those in flight) or is
  ``max_connection_age`` old; idle, it is retired (QUIT) then, or after
  ``idle_timeout``. One idle ``check_after_idle`` or longer is checked before use.
* **Retries**: only of a message none of whose content was sent (a failure with
  :attr:`Outcome.NEVER_SENT`, or one that concerned no message, such as connecting;
  or a 4xx refusal before DATA), on a fresh connection, ``max_attempts`` in all, after
  ``retry_backoff`` seconds doubling each time, and not past the caller's deadline.
* **Rate limit**: at most ``rate_limit[0]`` messages start in any ``rate_limit[1]``
  seconds.
"""

from __future__ import annotations

import collections
import enum
import itertools
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from ._exceptions import SMTPRecipientsRefused
from ._outcome import Outcome
from ._transaction import TransactionResult

__all__ = [
    "HOUSEKEEPING_TIMEOUT",
    "Close",
    "Delivery",
    "Failure",
    "OPEN",
    "Open",
    "PoolLimits",
    "PoolPolicy",
    "PooledConnection",
    "Retry",
    "Ticket",
    "Use",
    "Wait",
    "housekeeping_timeout",
    "limit",
    "refused_for_now",
]

H = TypeVar("H")

#: The longest a NOOP check or a QUIT made inside a caller's call may take, in seconds.
HOUSEKEEPING_TIMEOUT = 5.0


@dataclass(slots=True)
class PoolLimits:
    """The pool's limits (documented on the pools), checked when built."""

    max_connections: int = 10
    max_messages_per_connection: int = 1000
    max_connection_age: float = 600.0
    idle_timeout: float = 60.0
    check_after_idle: float = 10.0
    rate_limit: tuple[int, float] | None = None
    max_attempts: int = 3
    retry_backoff: float = 0.5
    max_in_flight: int = 8

    def __post_init__(self) -> None:
        for name in (
            "max_connections",
            "max_messages_per_connection",
            "max_attempts",
            "max_in_flight",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        rate = self.rate_limit
        if rate is not None and (rate[0] < 1 or rate[1] <= 0):
            raise ValueError("rate_limit must be (messages >= 1, seconds > 0)")


@dataclass(eq=False, slots=True)
class PooledConnection(Generic[H]):
    """One connection of the pool: its client (the driver's) and what the policy counts."""

    client: H
    created: float
    last_used: float
    messages: int = 0
    """Messages finished on it."""
    in_flight: int = 0
    """Callers it is handed to now."""
    broken: bool = False
    """No new work for it; closed without QUIT once its callers are done."""


# -- what the policy answers -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Use(Generic[H]):
    """The connection is the caller's: check it first (NOOP) if ``check``."""

    connection: PooledConnection[H]
    check: bool = False


@dataclass(frozen=True, slots=True)
class Open:
    """Open a new connection, then tell :meth:`PoolPolicy.opened` or ``open_failed``."""


OPEN = Open()


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for a wake-up (:meth:`PoolPolicy.take_wakes`), until ``until`` at most
    (None: no limit); then poll again, or :meth:`PoolPolicy.give_up` if it passed."""

    until: float | None


class Failure(enum.Enum):
    """Why the caller gets no connection or no retry; the value is the message."""

    CLOSED = "The connection pool is closed"
    WAIT_TIMEOUT = "Timed out waiting for a free connection in the pool"
    RETRY_TIMEOUT = "Timed out before the message could be retried"
    RATE_TIMEOUT = "Timed out waiting for the rate limit"

    @property
    def is_timeout(self) -> bool:
        """Raised as the driver's ``SMTPTimeoutError`` (else its ``SMTPException``)."""
        return self is not Failure.CLOSED


@dataclass(frozen=True, slots=True)
class Retry:
    """Send the message again, on another connection, after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Close(Generic[H]):
    """The pool is done with this connection: QUIT it first if ``quit`` (and it is
    still connected), then close it."""

    connection: PooledConnection[H]
    quit: bool


# -- what a caller holds -------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Ticket(Generic[H]):
    """One caller's request for a connection, served in the order of ``serial``."""

    serial: int
    deadline: float | None
    grant: Use[H] | Open | None = None
    """What the policy handed it, until the caller polls."""
    done: bool = False
    """Handed out, given up or withdrawn."""
    waker: Any = None
    """The driver's, for waking the caller (an event); the policy only keeps it."""


@dataclass(eq=False, slots=True)
class Delivery:
    """One message's way through the pool: its deadline and its attempt."""

    deadline: float | None
    attempt: int = 1

    def left(self, now: float) -> float | None:
        """Seconds left before the deadline (never negative), or None."""
        return None if self.deadline is None else max(0.0, self.deadline - now)


def housekeeping_timeout(left: float | None) -> float:
    """A NOOP or QUIT made inside a caller's call: 5 s, or what is left of its deadline."""
    return HOUSEKEEPING_TIMEOUT if left is None else min(HOUSEKEEPING_TIMEOUT, left)


def refused_for_now(result: TransactionResult) -> bool:
    """The message was refused for now (421, or 4xx: for every recipient if by them)
    before its content was sent: sending it again later may succeed."""
    error = result.error
    if error is None or result.data_reply is not None:
        return False
    if isinstance(error, SMTPRecipientsRefused):
        codes = [reply.code for reply in result.recipient_replies.values()]
    else:
        codes = [getattr(error, "code", 0)]
    return bool(codes) and all(isinstance(code, int) and 400 <= code < 500 for code in codes)


class PoolPolicy(Generic[H]):
    """The state of one pool and every decision it makes; see the module's docstring.

    Each method is one event, told with the time it happened (``now``, the driver's
    clock). Methods never block, sleep or call back.
    """

    def __init__(self, limits: PoolLimits) -> None:
        self.limits = limits
        #: Open connections: idle, busy, or broken and still busy.
        self.connections: list[PooledConnection[H]] = []
        #: Connections being opened.
        self.connecting = 0
        self.closed = False
        #: Connections opened, retired, messages finished, retries.
        self.stats = {"connections": 0, "retired": 0, "messages": 0, "retries": 0}
        self._queue: collections.deque[Ticket[H]] = collections.deque()
        self._serials = itertools.count()
        self._closing: list[Close[H]] = []
        self._wakes: list[Ticket[H]] = []
        self._starts: collections.deque[float] = collections.deque()

    @property
    def open_count(self) -> int:
        """Connections open or being opened."""
        return len(self.connections) + self.connecting

    @property
    def waiting(self) -> int:
        """Callers waiting for a connection."""
        return len(self._queue)

    def take_closing(self) -> list[Close[H]]:
        """The connections to close (QUIT first where it says so), each told once."""
        closing, self._closing = self._closing, []
        return closing

    def take_wakes(self) -> list[Ticket[H]]:
        """The waiting callers that have something to poll for now, each told once."""
        wakes, self._wakes = self._wakes, []
        return wakes

    # -- asking for a connection -------------------------------------------------------------

    def request(self, now: float, deadline: float | None) -> Ticket[H]:
        """A caller asks for a connection, and waits for one until ``deadline``."""
        ticket: Ticket[H] = Ticket(next(self._serials), deadline)
        self._queue.append(ticket)
        self._sweep(now)
        self._assign(now)
        return ticket

    def poll(self, ticket: Ticket[H], now: float) -> Use[H] | Open | Wait | Failure:
        """What the caller holding ``ticket`` does now."""
        if ticket.done:
            raise RuntimeError("this request was already answered")
        if self.closed:
            self.withdraw(ticket, now)
            return Failure.CLOSED
        grant = ticket.grant
        if isinstance(grant, Use) and grant.connection.broken:
            # It broke under its other callers since it was handed over: another one.
            ticket.grant = None
            self._requeue(ticket)
            self._hand_back(grant.connection, now)
        if ticket.grant is None:
            self._sweep(now)
            self._assign(now)
        grant = ticket.grant
        if grant is not None:
            ticket.done = True
            ticket.grant = None
            return grant
        if ticket.deadline is not None and now >= ticket.deadline:
            return self.give_up(ticket, now)
        return Wait(ticket.deadline)

    def give_up(self, ticket: Ticket[H], now: float) -> Failure:
        """The caller's wait ended at its deadline: what it was handed meanwhile goes
        to the next caller."""
        self.withdraw(ticket, now)
        return Failure.WAIT_TIMEOUT

    def withdraw(self, ticket: Ticket[H], now: float) -> None:
        """The caller no longer wants a connection (it gave up, or was cancelled)."""
        if ticket.done:
            return
        ticket.done = True
        if ticket in self._queue:
            self._queue.remove(ticket)
        grant, ticket.grant = ticket.grant, None
        if isinstance(grant, Use):
            self._hand_back(grant.connection, now)
        elif grant is not None:
            self.connecting -= 1
        self._assign(now)

    def check_failed(self, ticket: Ticket[H], connection: PooledConnection[H], now: float) -> None:
        """The NOOP check of the connection handed to ``ticket`` failed: it is discarded,
        and the caller, first in line again, polls for another."""
        self._requeue(ticket)
        self.discard(connection, now)

    def found_closed(self, ticket: Ticket[H], connection: PooledConnection[H], now: float) -> None:
        """The connection handed to ``ticket`` was closed by the server: it is retired,
        and the caller, first in line again, polls for another."""
        self._requeue(ticket)
        connection.broken = True
        self._hand_back(connection, now)
        self._assign(now)

    def opened(self, client: H, now: float) -> PooledConnection[H]:
        """The connection the caller was told to open is open, and the caller's."""
        self.connecting -= 1
        connection = PooledConnection(client, now, now, in_flight=1)
        self.connections.append(connection)
        self.stats["connections"] += 1
        self._assign(now)  # another caller may share it
        return connection

    def open_failed(self, now: float) -> None:
        """The connection the caller was told to open could not be opened."""
        self.connecting -= 1
        self._assign(now)

    # -- giving a connection back ---------------------------------------------------------------

    def release(self, connection: PooledConnection[H], now: float) -> None:
        """The caller is done with the connection, which is fine."""
        connection.in_flight -= 1
        connection.last_used = now
        if connection.in_flight == 0 and (self.closed or self._expired(connection, now)):
            self._retire(connection)
        self._assign(now)

    def discard(self, connection: PooledConnection[H], now: float) -> None:
        """The caller is done with the connection, which broke or is suspect: it takes no
        new work, and is closed (no QUIT) once its other callers are done."""
        connection.broken = True
        connection.in_flight -= 1
        if connection.in_flight == 0 and connection in self.connections:
            self.connections.remove(connection)
            self._closing.append(Close(connection, quit=False))
        self._assign(now)

    def abandon(self, connection: PooledConnection[H], now: float, *, connected: bool) -> None:
        """The caller stopped for a reason of its own (an exception that is no SMTP
        failure, a cancellation): the connection is released, or discarded if closed."""
        if connected:
            self.release(connection, now)
        else:
            self.discard(connection, now)

    def expire_idle(self, now: float, closed: list[PooledConnection[H]] | None = None) -> None:
        """Retire the idle connections past their time, and those in ``closed`` (which
        the driver found closed by the server)."""
        for connection in closed or ():
            if connection.in_flight == 0:
                self._retire(connection)
        self._sweep(now)
        self._assign(now)

    def close(self, now: float) -> None:
        """No new work: idle connections are retired now, busy ones when released, and
        the waiting callers are told."""
        self.closed = True
        for connection in [c for c in self.connections if c.in_flight == 0]:
            self._retire(connection)
        self._wakes.extend(self._queue)

    # -- one message ------------------------------------------------------------------------------

    def delivery(self, now: float, timeout: float | None) -> Delivery:
        """A message starts its way through the pool, with ``timeout`` seconds for all of it."""
        return Delivery(None if timeout is None else now + timeout)

    def pace(self, delivery: Delivery, now: float) -> float | Failure | None:
        """The rate limit, just before the message starts: None when it may start now
        (it is counted), else seconds to sleep before asking again, or a failure when
        that is past its deadline. Callers ask one at a time, in their order."""
        if self.limits.rate_limit is None:
            return None
        limit, window = self.limits.rate_limit
        starts = self._starts
        while starts and now - starts[0] >= window:
            starts.popleft()
        if len(starts) < limit:
            starts.append(now)
            return None
        wait = starts[0] + window - now
        left = delivery.left(now)
        if left is not None and wait > left:
            return Failure.RATE_TIMEOUT
        return wait

    def finished(
        self,
        delivery: Delivery,
        connection: PooledConnection[H],
        now: float,
        result: TransactionResult,
        *,
        connected: bool,
    ) -> Retry | Failure | None:
        """The message got its result (accepted, or refused by the server): None when that
        is the caller's answer, else when to send it again (or why it will not be)."""
        connection.messages += 1
        self.stats["messages"] += 1
        retry = refused_for_now(result) and delivery.attempt < self.limits.max_attempts
        if connected and not retry:
            self.release(connection, now)
        else:
            self.discard(connection, now)  # the server may be in trouble on this one
        return self._retry(delivery, now) if retry else None

    def failed(
        self,
        delivery: Delivery,
        connection: PooledConnection[H],
        now: float,
        *,
        outcome: Outcome | None,
        timed_out: bool,
    ) -> Retry | Failure | None:
        """The connection broke under the message (``outcome`` of the exception: None if
        it concerned no message, as when connecting): None when the exception is the
        caller's answer, else when to send the message again (or why it will not be)."""
        self.discard(connection, now)
        if outcome not in (Outcome.NEVER_SENT, None):
            return None  # done, or its content may have arrived: never sent twice
        if delivery.attempt >= self.limits.max_attempts:
            return None
        if timed_out and delivery.left(now) == 0:
            return None
        return self._retry(delivery, now)

    def connect_failed(
        self, delivery: Delivery, now: float, *, transient: bool
    ) -> Retry | Failure | None:
        """Opening a connection for the message failed, so nothing of it was sent: when
        to try a fresh connection (``transient``: a 4xx greeting or EHLO reply, as an
        MTA over its connection limit sends, or a connection dropped while opening), or
        None: the exception is the caller's answer."""
        if not transient or delivery.attempt >= self.limits.max_attempts:
            return None
        return self._retry(delivery, now)

    # -- inside ---------------------------------------------------------------------------

    def _retry(self, delivery: Delivery, now: float) -> Retry | Failure:
        self.stats["retries"] += 1
        delay = self.limits.retry_backoff * 2 ** (delivery.attempt - 1)
        left = delivery.left(now)
        if left is not None and delay >= left:
            return Failure.RETRY_TIMEOUT
        delivery.attempt += 1
        return Retry(delay)

    def _expired(self, connection: PooledConnection[H], now: float) -> bool:
        """No new work for it: broken, or retired by message count or age."""
        return (
            connection.broken
            or connection.messages + connection.in_flight
            >= self.limits.max_messages_per_connection
            or now - connection.created >= self.limits.max_connection_age
        )

    def _stale(self, connection: PooledConnection[H], now: float) -> bool:
        """Idle, and to be retired."""
        return connection.in_flight == 0 and (
            now - connection.last_used > self.limits.idle_timeout
            or self._expired(connection, now)
        )

    def _sweep(self, now: float) -> None:
        """Retire the stale connections (see _stale; written out: it runs per request)."""
        limits = self.limits
        max_messages, max_age = limits.max_messages_per_connection, limits.max_connection_age
        idle_timeout = limits.idle_timeout
        stale = [
            c
            for c in self.connections
            if c.in_flight == 0
            and (
                now - c.last_used > idle_timeout
                or c.broken
                or c.messages >= max_messages
                or now - c.created >= max_age
            )
        ]
        for connection in stale:
            self._retire(connection)

    def _retire(self, connection: PooledConnection[H]) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
            self.stats["retired"] += 1
            self._closing.append(Close(connection, quit=not connection.broken))

    def _hand_back(self, connection: PooledConnection[H], now: float) -> None:
        """A connection handed out and not used goes back as it was."""
        connection.in_flight -= 1
        if connection.in_flight == 0 and (self.closed or self._expired(connection, now)):
            self._retire(connection)

    def _requeue(self, ticket: Ticket[H]) -> None:
        """Back in line, in the place its serial gives it (before those who asked later)."""
        ticket.done = False
        queue = self._queue
        index = next((i for i, t in enumerate(queue) if t.serial > ticket.serial), len(queue))
        queue.insert(index, ticket)

    def _choose(self, now: float) -> Use[H] | Open | None:
        limits = self.limits
        max_in_flight, max_messages = limits.max_in_flight, limits.max_messages_per_connection
        max_age, idle_timeout = limits.max_connection_age, limits.idle_timeout
        idle: PooledConnection[H] | None = None  # the most recently used
        shared: PooledConnection[H] | None = None  # the least loaded busy one
        for c in self.connections:  # those not expired (see _expired), with room
            in_flight = c.in_flight
            if (
                in_flight >= max_in_flight
                or c.broken
                or c.messages + in_flight >= max_messages
                or now - c.created >= max_age
            ):
                continue
            if in_flight == 0:
                if now - c.last_used <= idle_timeout and (
                    idle is None or c.last_used > idle.last_used
                ):
                    idle = c
            elif shared is None or in_flight < shared.in_flight:
                shared = c
        if idle is not None:
            idle.in_flight += 1
            return Use(idle, check=now - idle.last_used >= limits.check_after_idle)
        if self.open_count < limits.max_connections:
            self.connecting += 1
            return OPEN
        if shared is not None:
            # Every connection is open and busy: share the least loaded one (its client
            # pipelines the messages of the callers using it).
            shared.in_flight += 1
            return Use(shared)
        return None

    def _assign(self, now: float) -> None:
        """Serve the waiting callers, first come first served, while there is something
        to hand out."""
        if self.closed:
            return
        queue = self._queue
        while queue:
            grant = self._choose(now)
            if grant is None:
                return
            ticket = queue.popleft()
            ticket.grant = grant
            self._wakes.append(ticket)


T = TypeVar("T")


class limit(Generic[T]):
    """A pool's attribute that reads and sets one of its policy's limits
    (``pool.max_connections`` is ``pool._policy.limits.max_connections``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, pool: None, owner: type | None = None) -> limit[T]: ...

    @overload
    def __get__(self, pool: object, owner: type | None = None) -> T: ...

    def __get__(self, pool: object, owner: type | None = None) -> T | limit[T]:
        if pool is None:
            return self
        value: T = getattr(pool._policy.limits, self._name)  # type: ignore[attr-defined]
        return value

    def __set__(self, pool: object, value: T) -> None:
        setattr(pool._policy.limits, self._name, value)  # type: ignore[attr-defined]
