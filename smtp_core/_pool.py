"""A pool of SMTP connections, written once for every adapter.

:class:`SMTPPoolBase` keeps up to ``max_connections`` clients open and reuses them;
checks a connection with NOOP after it idled; retires it after a number of messages
or an age; closes idle connections with QUIT; enforces a rate limit before each
message; and retries what is safe to retry: a dropped connection, a 421 or a 4xx
refusal before DATA, on a fresh connection, with backoff, a bounded number of times.
A 5xx refusal is returned at once, and a message whose content may have reached the
server is never sent again.
"""

from __future__ import annotations

import abc
import contextlib
import email.message
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from ._client import SMTPClientBase
from ._client_send import call_deadline
from ._exceptions import (
    SMTPConnectResponseError,
    SMTPConnectTimeoutError,
    SMTPException,
    SMTPReadTimeoutError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from ._pool_policy import (
    Delivery,
    Failure,
    Open,
    PooledConnection,
    PoolLimits,
    PoolPolicy,
    Wait,
    housekeeping_timeout,
    limit,
)
from ._response import SMTPResponse
from ._transaction import TransactionResult

__all__ = ["SMTPPoolBase"]

_PoolT = TypeVar("_PoolT", bound="SMTPPoolBase")


class SMTPPoolBase(abc.ABC):
    """A connection pool with the ``sendmail``/``send_message`` API of the SMTP client.

    Keyword arguments (besides every ``SMTP`` option, used for each connection):

    * ``max_connections`` (10): connections open at once; callers wait for a free one,
      within their ``timeout``.
    * ``max_messages_per_connection`` (1000) and ``max_connection_age`` (600 s): a
      connection is retired (QUIT) after that many messages or seconds.
    * ``idle_timeout`` (60 s): an idle connection is closed with QUIT after this long.
    * ``check_after_idle`` (10 s): a connection idle this long is checked with NOOP
      before it is used again.
    * ``rate_limit`` (None): ``(messages, seconds)``: at most that many messages start
      in any window of that many seconds, across all connections, enforced before
      sending.
    * ``max_attempts`` (3) and ``retry_backoff`` (0.5 s, doubling): retries of a message
      after a dropped connection, a 421 or a 4xx refusal before its content was sent.
    * ``max_in_flight`` (8): messages one connection carries at once; the client
      pipelines them back to back (RFC 2920) when the server offers PIPELINING. New
      connections are opened, up to ``max_connections``, before connections are shared.
    """

    max_connections = limit[int]()
    max_messages_per_connection = limit[int]()
    max_connection_age = limit[float]()
    idle_timeout = limit[float]()
    check_after_idle = limit[float]()
    rate_limit = limit["tuple[int, float] | None"]()
    max_attempts = limit[int]()
    retry_backoff = limit[float]()
    max_in_flight = limit[int]()

    def __init__(
        self,
        hostname: str | None = None,
        port: int | None = None,
        *,
        max_connections: int = 10,
        max_messages_per_connection: int = 1000,
        max_connection_age: float = 600.0,
        idle_timeout: float = 60.0,
        check_after_idle: float = 10.0,
        rate_limit: tuple[int, float] | None = None,
        max_attempts: int = 3,
        retry_backoff: float = 0.5,
        max_in_flight: int = 8,
        timeout: float | None = 60.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        **smtp_options: Any,
    ) -> None:
        limits = PoolLimits(
            max_connections=max_connections,
            max_messages_per_connection=max_messages_per_connection,
            max_connection_age=max_connection_age,
            idle_timeout=idle_timeout,
            check_after_idle=check_after_idle,
            rate_limit=rate_limit,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            max_in_flight=max_in_flight,
        )
        smtp_options.setdefault("pipeline_window", max_in_flight)
        self._options = {"hostname": hostname, "port": port, "timeout": timeout, **smtp_options}
        self._client_class()(**self._options)  # check the options now, not at first use
        self._policy: PoolPolicy[SMTPClientBase] = PoolPolicy(limits)
        self.timeout = timeout
        self._now = clock or self._monotonic
        self._sleep = sleep or self._real_sleep
        self._rate_lock: Any = None
        #: Counters, for monitoring: connections opened, retired, messages sent, retries.
        self.stats = self._policy.stats

    # -- what an adapter provides --------------------------------------------------

    @abc.abstractmethod
    def _client_class(self) -> type[SMTPClientBase]:
        """The adapter's SMTP client class."""

    @abc.abstractmethod
    def _monotonic(self) -> float:
        """The event loop's clock."""

    @abc.abstractmethod
    async def _real_sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""

    @abc.abstractmethod
    def _new_event(self) -> Any:
        """An event with ``set()`` for waking one waiter."""

    @abc.abstractmethod
    async def _wait_event(self, event: Any, timeout: float | None) -> bool:
        """Wait for ``event``; False if ``timeout`` passed first."""

    @abc.abstractmethod
    def _new_lock(self) -> Any:
        """A lock usable with ``async with``."""

    # -- public API -------------------------------------------------------------------

    async def __aenter__(self: _PoolT) -> _PoolT:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        """Connections open now (idle, busy or being opened)."""
        return self._policy.open_count

    async def close(self) -> None:
        """Close every idle connection with QUIT; busy ones close when their work ends."""
        self._policy.close(self._now())
        await self._carry_out(None)

    async def expire_idle(self, deadline: float | None = None) -> None:
        """Close (QUIT) connections idle longer than ``idle_timeout`` or past their age.

        ``deadline`` (the event loop's clock) bounds the QUITs of a caller's call."""
        policy = self._policy
        closed = [c for c in policy.connections if not c.in_flight and not c.client.is_connected]
        policy.expire_idle(self._now(), closed)
        await self._carry_out(deadline)

    async def sendmail(
        self,
        sender: str,
        recipients: str | Sequence[str],
        message: Any,
        /,
        *,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: float | Any | None = ...,
    ) -> tuple[dict[str, SMTPResponse], str]:
        """``SMTP.sendmail`` on a pooled connection, with the pool's retries."""
        result = await self.sendmail_detailed(
            sender,
            recipients,
            message,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
            timeout=timeout,
        )
        return _compatible(result)

    async def sendmail_detailed(
        self,
        sender: str,
        recipients: str | Sequence[str],
        message: Any,
        /,
        *,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: float | Any | None = ...,
    ) -> TransactionResult:
        """The typed result (``TransactionResult``) of sending one message; refusals in
        ``result.error`` rather than raised."""
        if isinstance(message, (bytes, bytearray, memoryview, str)):
            content: Any = message
        else:
            raise TypeError("the pool retries messages, so content must be str or bytes")
        mail_opts = list(mail_options or ())
        rcpt_opts = list(rcpt_options or ())

        def operation(client: SMTPClientBase, left: float | None) -> Awaitable[TransactionResult]:
            return client.sendmail_detailed(
                sender,
                recipients,
                content,
                mail_options=mail_opts,
                rcpt_options=rcpt_opts,
                timeout=left,
            )

        return await self._deliver(operation, self._timeout(timeout))

    async def send_message(
        self,
        message: email.message.Message,
        /,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: float | Any | None = ...,
    ) -> tuple[dict[str, SMTPResponse], str]:
        """``SMTP.send_message`` on a pooled connection, with the pool's retries."""
        result = await self.send_message_detailed(
            message,
            sender=sender,
            recipients=recipients,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
            timeout=timeout,
        )
        return _compatible(result)

    async def send_message_detailed(
        self,
        message: email.message.Message,
        /,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: float | Any | None = ...,
    ) -> TransactionResult:
        """The typed result of sending an ``email.message.Message``."""

        def operation(client: SMTPClientBase, left: float | None) -> Awaitable[TransactionResult]:
            return client.send_message_detailed(
                message,
                sender=sender,
                recipients=recipients,
                mail_options=mail_options,
                rcpt_options=rcpt_options,
                timeout=left,
            )

        return await self._deliver(operation, self._timeout(timeout))

    # -- carrying out the policy's decisions --------------------------------------------

    def _timeout(self, timeout: Any) -> float | None:
        return self.timeout if timeout is ... else timeout

    async def _deliver(
        self,
        operation: Callable[[SMTPClientBase, float | None], Awaitable[TransactionResult]],
        timeout: float | None,
    ) -> TransactionResult:
        policy = self._policy
        delivery = policy.delivery(self._now(), timeout)
        while True:
            try:
                pooled = await self._acquire(delivery)
            except (SMTPConnectResponseError, SMTPServerDisconnected) as exc:
                then = policy.connect_failed(delivery, self._now(), transient=_transient(exc))
                if then is None:
                    raise
                if isinstance(then, Failure):
                    raise _failure(then) from exc
                await self._sleep(then.delay)
                continue
            try:
                await self._respect_rate_limit(delivery)
                left = delivery.left(self._now())
                # The message's total deadline is what is left of the call's, so that
                # waiting behind other messages on a shared connection counts too.
                token = call_deadline.set(left)
                try:
                    result = await operation(pooled.client, left)
                finally:
                    call_deadline.reset(token)
            except (SMTPServerDisconnected, SMTPTimeoutError, SMTPResponseException) as exc:
                # The connection broke (or a -1 protocol error closed it). An exception
                # that concerns no message (connecting, EHLO) came before it was sent.
                then = policy.failed(
                    delivery,
                    pooled,
                    self._now(),
                    outcome=getattr(exc, "outcome", None),
                    timed_out=isinstance(exc, SMTPTimeoutError),
                )
                await self._carry_out(delivery.deadline)
                if then is None:
                    raise
            except BaseException:
                policy.abandon(pooled, self._now(), connected=pooled.client.is_connected)
                await self._carry_out(delivery.deadline)
                raise
            else:
                then = policy.finished(
                    delivery, pooled, self._now(), result, connected=pooled.client.is_connected
                )
                await self._carry_out(delivery.deadline)
                if then is None:
                    return result
            if isinstance(then, Failure):
                raise _failure(then)
            await self._sleep(then.delay)

    async def _respect_rate_limit(self, delivery: Delivery) -> None:
        if self._policy.limits.rate_limit is None:
            return
        if self._rate_lock is None:
            self._rate_lock = self._new_lock()
        async with self._rate_lock:  # one caller at a time, in their order
            while (wait := self._policy.pace(delivery, self._now())) is not None:
                if isinstance(wait, Failure):
                    raise _failure(wait)
                await self._sleep(wait)

    async def _acquire(self, delivery: Delivery) -> PooledConnection[SMTPClientBase]:
        policy = self._policy
        ticket = policy.request(self._now(), delivery.deadline)
        held: PooledConnection[SMTPClientBase] | None = None
        try:
            while True:
                action = policy.poll(ticket, self._now())
                if isinstance(action, Wait):  # ready before anything can wake it
                    ticket.waker = event = self._new_event()
                await self._carry_out(delivery.deadline)  # retire the expired ones first
                if isinstance(action, Failure):
                    raise _failure(action)
                if isinstance(action, Wait):
                    left = None if action.until is None else max(0.0, action.until - self._now())
                    if not await self._wait_event(event, left):
                        raise _failure(policy.give_up(ticket, self._now()))
                    continue
                if isinstance(action, Open):
                    return await self._open(delivery)
                held = action.connection
                if not held.client.is_connected:
                    policy.found_closed(ticket, held, self._now())
                elif action.check and not await self._check(held, delivery):
                    policy.check_failed(ticket, held, self._now())
                else:
                    return held
                held = None
        except BaseException:
            if held is None:
                policy.withdraw(ticket, self._now())
            else:
                policy.abandon(held, self._now(), connected=held.client.is_connected)
            self._wake()
            raise

    async def _open(self, delivery: Delivery) -> PooledConnection[SMTPClientBase]:
        try:
            options = dict(self._options)
            left = delivery.left(self._now())
            if left is not None:
                options["timeout"] = min(left, options["timeout"] or left)
            client = self._client_class()(**options)

            async def connect(restart: Callable[[float | None], None]) -> None:
                await client.connect()

            # Each stage of connecting has the time left; all of them together too.
            try:
                await client._within(left, connect)
            except SMTPReadTimeoutError as exc:
                await client.aclose_quietly()
                raise SMTPConnectTimeoutError(
                    "Timed out connecting within the call's deadline"
                ) from exc
        except BaseException:
            self._policy.open_failed(self._now())
            self._wake()
            raise
        pooled = self._policy.opened(client, self._now())
        self._wake()
        return pooled

    async def _check(self, pooled: PooledConnection[SMTPClientBase], delivery: Delivery) -> bool:
        left = delivery.left(self._now())
        try:
            await pooled.client.noop(timeout=housekeeping_timeout(left))
        except (SMTPException, OSError):
            return False
        return True

    def _wake(self) -> None:
        for ticket in self._policy.take_wakes():
            if ticket.waker is not None:
                ticket.waker.set()

    async def _carry_out(self, deadline: float | None) -> None:
        """Wake the callers the policy served; close the connections it is done with."""
        self._wake()
        for close in self._policy.take_closing():
            client = close.connection.client
            left = None if deadline is None else max(0.0, deadline - self._now())
            quit_timeout = housekeeping_timeout(left)
            try:
                if close.quit and client.is_connected and quit_timeout > 0:
                    with contextlib.suppress(SMTPException, OSError):
                        await client.quit(timeout=quit_timeout)
            finally:
                await client.aclose_quietly()


def _failure(failure: Failure) -> SMTPException:
    return SMTPTimeoutError(failure.value) if failure.is_timeout else SMTPException(failure.value)


def _compatible(result: TransactionResult) -> tuple[dict[str, SMTPResponse], str]:
    if result.error is not None:
        raise result.error
    assert result.data_reply is not None
    refused = {r: SMTPResponse(reply.code, reply.message) for r, reply in result.refused.items()}
    return refused, result.data_reply.message


def _transient(exc: SMTPException) -> bool:
    """A failure to open a connection that a fresh one may not meet."""
    if isinstance(exc, SMTPResponseException):
        return 400 <= exc.code < 500
    return isinstance(exc, SMTPServerDisconnected)
