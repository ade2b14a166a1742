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
import collections
import contextlib
import email.message
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from ._client import SMTPClientBase
from ._client_send import call_deadline
from ._exceptions import (
    SMTPConnectTimeoutError,
    SMTPException,
    SMTPReadTimeoutError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from ._outcome import Outcome
from ._response import SMTPResponse
from ._transaction import TransactionResult

__all__ = ["SMTPPoolBase"]

_PoolT = TypeVar("_PoolT", bound="SMTPPoolBase")


@dataclass(eq=False)
class _Pooled:
    client: SMTPClientBase
    created: float
    last_used: float
    messages: int = 0
    in_flight: int = 0
    dead: bool = False


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
        for name, value in (
            ("max_connections", max_connections),
            ("max_messages_per_connection", max_messages_per_connection),
            ("max_attempts", max_attempts),
            ("max_in_flight", max_in_flight),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if rate_limit is not None and (rate_limit[0] < 1 or rate_limit[1] <= 0):
            raise ValueError("rate_limit must be (messages >= 1, seconds > 0)")
        smtp_options.setdefault("pipeline_window", max_in_flight)
        self._options = {"hostname": hostname, "port": port, "timeout": timeout, **smtp_options}
        self._client_class()(**self._options)  # check the options now, not at first use
        self.max_connections = max_connections
        self.max_messages_per_connection = max_messages_per_connection
        self.max_connection_age = max_connection_age
        self.idle_timeout = idle_timeout
        self.check_after_idle = check_after_idle
        self.rate_limit = rate_limit
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self._now = clock or self._monotonic
        self._sleep = sleep or self._real_sleep
        self._conns: list[_Pooled] = []
        self._connecting = 0
        self._waiters: collections.deque[Any] = collections.deque()
        self._sent_times: collections.deque[float] = collections.deque()
        self._rate_lock: Any = None
        self._closed = False
        #: Counters, for monitoring: connections opened, retired, messages sent, retries.
        self.stats = {"connections": 0, "retired": 0, "messages": 0, "retries": 0}

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
        return len(self._conns) + self._connecting

    async def close(self) -> None:
        """Close every idle connection with QUIT; busy ones close when their work ends."""
        self._closed = True
        for pooled in [p for p in self._conns if p.in_flight == 0]:
            await self._retire(pooled)
        while self._waiters:
            self._waiters.popleft().set()

    async def expire_idle(self, deadline: float | None = None) -> None:
        """Close (QUIT) connections idle longer than ``idle_timeout`` or past their age.

        ``deadline`` (the event loop's clock) bounds the QUITs of a caller's call."""
        now = self._now()
        for pooled in [p for p in self._conns if p.in_flight == 0]:
            if now - pooled.last_used > self.idle_timeout or self._expired(pooled, now):
                await self._retire(pooled, deadline)

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

    # -- delivery with retries ------------------------------------------------------------

    def _timeout(self, timeout: Any) -> float | None:
        return self.timeout if timeout is ... else timeout

    async def _deliver(
        self,
        operation: Callable[[SMTPClientBase, float | None], Awaitable[TransactionResult]],
        timeout: float | None,
    ) -> TransactionResult:
        deadline = None if timeout is None else self._now() + timeout
        attempt = 0
        while True:
            attempt += 1
            pooled = await self._acquire(deadline)
            try:
                await self._respect_rate_limit(deadline)
                left = self._left(deadline)
                # The message's total deadline is what is left of the call's, so that
                # waiting behind other messages on a shared connection counts too.
                token = call_deadline.set(left)
                try:
                    result = await operation(pooled.client, left)
                finally:
                    call_deadline.reset(token)
            except (SMTPServerDisconnected, SMTPTimeoutError, SMTPResponseException) as exc:
                # The connection broke (or a -1 protocol error closed it). A message is
                # sent again only if none of its content was written; an exception that
                # concerns no message (connecting, EHLO) came before it was sent at all.
                outcome = getattr(exc, "outcome", None)
                await self._discard(pooled)
                if outcome is Outcome.UNKNOWN or attempt >= self.max_attempts:
                    raise
                if isinstance(exc, SMTPTimeoutError) and self._left(deadline) == 0:
                    raise
                await self._backoff(attempt, deadline)
                continue
            except BaseException:
                if pooled.client.is_connected:
                    await self._release(pooled, deadline)
                else:
                    await self._discard(pooled)
                raise
            pooled.messages += 1
            self.stats["messages"] += 1
            retry = (
                result.error is not None
                and _transient(result.error)
                and result.data_reply is None  # refused before its content was sent
                and attempt < self.max_attempts
            )
            if pooled.client.is_connected and not retry:
                await self._release(pooled, deadline)
            else:
                # Retry on a fresh connection (the server may be in trouble on this one).
                await self._discard(pooled)
            if not retry:
                return result
            await self._backoff(attempt, deadline)

    async def _backoff(self, attempt: int, deadline: float | None) -> None:
        self.stats["retries"] += 1
        delay = self.retry_backoff * 2 ** (attempt - 1)
        left = self._left(deadline)
        if left is not None and delay >= left:
            raise SMTPTimeoutError("Timed out before the message could be retried")
        await self._sleep(delay)

    def _left(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - self._now())

    async def _respect_rate_limit(self, deadline: float | None) -> None:
        if self.rate_limit is None:
            return
        limit, window = self.rate_limit
        if self._rate_lock is None:
            self._rate_lock = self._new_lock()
        async with self._rate_lock:
            while True:
                now = self._now()
                while self._sent_times and now - self._sent_times[0] >= window:
                    self._sent_times.popleft()
                if len(self._sent_times) < limit:
                    self._sent_times.append(now)
                    return
                wait = self._sent_times[0] + window - now
                left = self._left(deadline)
                if left is not None and wait > left:
                    raise SMTPTimeoutError("Timed out waiting for the rate limit")
                await self._sleep(wait)

    # -- connections ------------------------------------------------------------------------

    def _expired(self, pooled: _Pooled, now: float) -> bool:
        return (
            pooled.dead
            or pooled.messages + pooled.in_flight >= self.max_messages_per_connection
            or now - pooled.created >= self.max_connection_age
            or not pooled.client.is_connected
        )

    async def _acquire(self, deadline: float | None) -> _Pooled:
        while True:
            if self._closed:
                raise SMTPException("The connection pool is closed")
            await self.expire_idle(deadline)
            now = self._now()
            usable = [
                p
                for p in self._conns
                if not self._expired(p, now) and p.in_flight < self.max_in_flight
            ]
            idle = [p for p in usable if p.in_flight == 0]
            if idle:
                pooled = max(idle, key=lambda p: p.last_used)  # the most recently used
                pooled.in_flight += 1
                if now - pooled.last_used >= self.check_after_idle and not await self._check(
                    pooled, deadline
                ):
                    await self._discard(pooled)
                    continue
                return pooled
            if self.connections < self.max_connections:
                return await self._open(deadline)
            if usable:
                pooled = min(usable, key=lambda p: p.in_flight)  # share the least loaded
                pooled.in_flight += 1
                return pooled
            event = self._new_event()
            self._waiters.append(event)
            if not await self._wait_event(event, self._left(deadline)):
                if event in self._waiters:
                    self._waiters.remove(event)
                raise SMTPTimeoutError("Timed out waiting for a free connection in the pool")

    async def _open(self, deadline: float | None) -> _Pooled:
        self._connecting += 1
        try:
            options = dict(self._options)
            left = self._left(deadline)
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
        finally:
            self._connecting -= 1
            self._wake()
        now = self._now()
        pooled = _Pooled(client, now, now, in_flight=1)
        self._conns.append(pooled)
        self.stats["connections"] += 1
        return pooled

    async def _check(self, pooled: _Pooled, deadline: float | None) -> bool:
        try:
            await pooled.client.noop(timeout=self._housekeeping_timeout(deadline))
        except (SMTPException, OSError):
            return False
        return True

    async def _release(self, pooled: _Pooled, deadline: float | None = None) -> None:
        pooled.in_flight -= 1
        pooled.last_used = self._now()
        if pooled.in_flight == 0 and (self._closed or self._expired(pooled, pooled.last_used)):
            await self._retire(pooled, deadline)
        self._wake()

    async def _discard(self, pooled: _Pooled) -> None:
        """The connection broke: no new work for it; closed once its other work ends."""
        pooled.dead = True
        pooled.in_flight -= 1
        if pooled.in_flight == 0 and pooled in self._conns:
            self._conns.remove(pooled)
            await pooled.client.aclose_quietly()
        self._wake()

    async def _retire(self, pooled: _Pooled, deadline: float | None = None) -> None:
        if pooled not in self._conns:
            return
        self._conns.remove(pooled)
        self.stats["retired"] += 1
        client = pooled.client
        quit_timeout = self._housekeeping_timeout(deadline)
        if client.is_connected and not pooled.dead and quit_timeout > 0:
            with contextlib.suppress(SMTPException, OSError):
                await client.quit(timeout=quit_timeout)
        await client.aclose_quietly()

    def _housekeeping_timeout(self, deadline: float | None) -> float:
        """A NOOP or QUIT made inside a caller's call: 5 s, or what is left of its deadline."""
        left = self._left(deadline)
        return 5.0 if left is None else min(5.0, left)

    def _wake(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()


def _transient(error: Exception) -> bool:
    """A refusal worth retrying: 421 or any 4xx (for all recipients)."""
    if isinstance(error, SMTPRecipientsRefused):
        return bool(error.recipients) and all(400 <= r.code < 500 for r in error.recipients)
    code = getattr(error, "code", 0)
    return isinstance(code, int) and 400 <= code < 500


def _compatible(result: TransactionResult) -> tuple[dict[str, SMTPResponse], str]:
    if result.error is not None:
        raise result.error
    assert result.data_reply is not None
    refused = {r: SMTPResponse(reply.code, reply.message) for r, reply in result.refused.items()}
    return refused, result.data_reply.message
