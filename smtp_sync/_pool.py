"""A thread-safe pool of smtp_sync connections for threaded programs (web applications).

Its decisions are :class:`smtp_core._pool_policy.PoolPolicy`'s, the same as the event
loops' pools: connections capped and reused (the most recently used first), checked
with NOOP after they idled, retired after a number of messages or an age, and retries
only of what is safe: a message never sent (``Outcome.NEVER_SENT``: a dropped
connection before its content, a 421 or a 4xx before DATA), on a fresh connection,
with backoff, within one deadline per call; and the rate limit. This module carries
them out with blocking sockets: the policy is asked under one lock, threads wait on
its condition, and connections are opened, checked and closed outside it.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from smtp_core._pool_policy import (
    Close,
    Delivery,
    Failure,
    Open,
    PooledConnection,
    PoolLimits,
    PoolPolicy,
    Ticket,
    Wait,
    housekeeping_timeout,
    limit,
)
from smtp_core.flows import TransactionResult

from ._exceptions import (
    SMTPConnectError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
    as_bytes,
)
from ._session import Message, Refused
from ._smtp import SMTP
from ._turns import call_deadline

__all__ = ["SMTPPool"]

_PoolT = TypeVar("_PoolT", bound="SMTPPool")


class SMTPPool:
    """Connections to one server, shared by threads; ``sendmail``/``send_message`` as SMTP's.

    ``host``, ``port`` and ``smtp_options`` (``local_hostname``, ``context``,
    ``timeouts``...) make each connection, of ``client_class`` (``SMTP``, ``SMTP_SSL``
    or ``LMTP``). Then ``starttls=True`` upgrades it and ``username``/``password`` log
    in; ``setup(client)`` may do anything else.

    * ``timeout`` (60 s): bounds each call as a whole: waiting for a free connection,
      connecting, the message, retries and their backoff (a client's
      ``Timeouts(total=)``, when shorter, bounds it too); ``SMTPTimeoutError`` after.
      It is also each connection's socket timeout (smtplib's ``timeout``).
    * ``max_connections`` (10): open at once; callers wait for a free one within
      ``wait_timeout`` seconds (60 s; and within ``timeout``).
    * ``max_messages_per_connection`` (1000), ``max_connection_age`` (600 s): then QUIT.
    * ``idle_timeout`` (60 s): idle connections older than this are closed when the
      pool is next used (or by :meth:`expire_idle`); ``check_after_idle`` (10 s): NOOP
      before reusing one idle this long.
    * ``rate_limit`` (None): ``(messages, seconds)``: at most that many messages start
      in any window of that many seconds, across all connections, enforced before
      sending.
    * ``max_attempts`` (3), ``retry_backoff`` (0.5 s, doubling): retries of a message
      that was never sent, and of a connection that could not be opened for a
      transient reason (refused or reset, a 4xx greeting). A message whose content
      may have reached the server is never sent again; a 5xx is returned (raised),
      never retried.
    * ``max_in_flight`` (8): threads one connection serves at once once every
      connection is open and busy; its client pipelines their messages back to back.
    * ``clock`` (``time.monotonic``) and ``sleep`` (``time.sleep``): the pool's time,
      for its limits, its backoff and its rate limit.
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
        host: str,
        port: int = 0,
        *,
        client_class: type[SMTP] = SMTP,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        setup: Callable[[SMTP], Any] | None = None,
        max_connections: int = 10,
        max_messages_per_connection: int = 1000,
        max_connection_age: float = 600.0,
        idle_timeout: float = 60.0,
        check_after_idle: float = 10.0,
        rate_limit: tuple[int, float] | None = None,
        max_attempts: int = 3,
        retry_backoff: float = 0.5,
        timeout: float | None = 60.0,
        wait_timeout: float | None = 60.0,
        max_in_flight: int = 8,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Any] | None = None,
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
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None)")
        self._policy: PoolPolicy[SMTP] = PoolPolicy(limits)
        self.host = host
        self.port = port
        self.client_class = client_class
        self.starttls = starttls
        self.username = username
        self._password = password
        self.setup = setup
        self.smtp_options = smtp_options
        self.timeout = timeout
        self.wait_timeout = wait_timeout
        self._now = clock or time.monotonic
        self._sleep = sleep or time.sleep
        self._cond = threading.Condition()
        self._rate_lock = threading.Lock()  # callers pace one at a time, in their order
        #: Counters, for monitoring: connections opened, retired, messages sent, retries.
        self.stats = self._policy.stats

    def __repr__(self) -> str:
        return f"SMTPPool({self.host!r}, {self.port!r}, username={self.username!r})"

    def __enter__(self: _PoolT) -> _PoolT:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connections(self) -> int:
        """Connections open now (idle, busy or being opened)."""
        return self._policy.open_count

    def close(self) -> None:
        """QUIT every idle connection; busy ones are closed when their message is done."""
        with self._deciding() as policy:
            policy.close(self._now())

    def expire_idle(self) -> None:
        """Close (QUIT) connections idle longer than ``idle_timeout`` or past their age,
        and those the server closed."""
        with self._deciding() as policy:
            closed = [c for c in policy.connections if not c.in_flight and c.client.sock is None]
            policy.expire_idle(self._now(), closed)

    # -- sending ----------

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: str | bytes,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> Refused:
        """``SMTP.sendmail`` on a pooled connection, with the pool's retries.

        ``msg`` must be ``str`` or ``bytes``: a message that may be sent again is kept whole.
        """
        result = self.sendmail_detailed(from_addr, to_addrs, msg, mail_options, rcpt_options)
        if result.error is not None:
            raise result.error
        return {r: (reply.code, as_bytes(reply.message)) for r, reply in result.refused.items()}

    def sendmail_detailed(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: str | bytes,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> TransactionResult:
        """The typed result of one message (refusals in ``result.error``)."""
        if not isinstance(msg, (str, bytes, bytearray, memoryview)):
            raise TypeError("the pool may send a message again, so it must be str or bytes")
        return self._deliver(
            lambda client: client.sendmail_detailed(
                from_addr, to_addrs, msg, mail_options, rcpt_options
            )
        )

    def send_message(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> Refused:
        """``SMTP.send_message`` on a pooled connection, with the pool's retries."""

        def send(client: SMTP) -> TransactionResult:
            client.ehlo_or_helo_if_needed()
            prepared = client._prepare(msg, from_addr, to_addrs, mail_options)
            return client.sendmail_detailed(
                prepared.sender, prepared.recipients, prepared.content,
                prepared.mail_options, rcpt_options,
            )

        result = self._deliver(send)
        if result.error is not None:
            raise result.error
        return {r: (reply.code, as_bytes(reply.message)) for r, reply in result.refused.items()}

    # -- carrying out the policy's decisions ----------

    def _call_timeout(self) -> float | None:
        """The seconds one call may take: ``timeout``, or the clients' total if shorter."""
        timeouts = self.smtp_options.get("timeouts")
        total = None if timeouts is None else timeouts.total
        if self.timeout is None or (total is not None and total < self.timeout):
            return total
        return self.timeout

    @contextlib.contextmanager
    def _within(self, seconds: float | None) -> Iterator[None]:
        """The client's calls made inside end within ``seconds`` (None: no bound)."""
        if seconds is None:
            yield
            return
        token = call_deadline.set(time.monotonic() + seconds)
        try:
            yield
        finally:
            call_deadline.reset(token)

    def _deliver(self, operation: Callable[[SMTP], TransactionResult]) -> TransactionResult:
        now = self._now
        delivery = self._policy.delivery(now(), self._call_timeout())
        while True:
            try:
                pooled = self._acquire(delivery)
            except _OpenFailed as failure:
                exc = failure.error
                transient = _transient(exc) and not (
                    isinstance(exc, TimeoutError) and delivery.left(now()) == 0
                )
                with self._deciding(delivery) as policy:
                    then = policy.connect_failed(delivery, now(), transient=transient)
                if then is None:
                    raise exc from None
                if isinstance(then, Failure):
                    raise SMTPTimeoutError(then.value) from exc
                self._sleep(then.delay)
                continue
            try:
                self._respect_rate_limit(delivery)
            except BaseException:
                self._release(pooled, delivery)
                raise
            try:
                # Each client call inside ends by what is left of this call's deadline.
                with self._within(delivery.left(now())):
                    result = operation(pooled.client)
            except (SMTPServerDisconnected, SMTPResponseException) as exc:
                broken = (
                    pooled.client.sock is None
                    or isinstance(exc, SMTPServerDisconnected)
                    or exc.smtp_code in (-1, 421)
                )
                if not broken:
                    # Refused before anything was sent (SIZE, HELO): the connection is fine.
                    self._release(pooled, delivery)
                    raise
                # Exceptions that concern no message (connecting, EHLO) came before any
                # byte of it; the others tell whether its content may have been written.
                with self._deciding(delivery) as policy:
                    then = policy.failed(
                        delivery,
                        pooled,
                        now(),
                        outcome=exc.outcome,
                        timed_out=isinstance(exc, SMTPTimeoutError),
                    )
                if then is None:
                    raise
            except BaseException:
                connected = pooled.client.sock is not None
                with self._deciding(delivery) as policy:
                    policy.abandon(pooled, now(), connected=connected)
                raise
            else:
                connected = pooled.client.sock is not None
                with self._deciding(delivery) as policy:
                    then = policy.finished(delivery, pooled, now(), result, connected=connected)
                if then is None:
                    return result
            if isinstance(then, Failure):
                raise SMTPTimeoutError(then.value)
            self._sleep(then.delay)

    def _respect_rate_limit(self, delivery: Delivery) -> None:
        if self._policy.limits.rate_limit is None:
            return
        left = delivery.left(self._now())
        if not self._rate_lock.acquire(timeout=-1 if left is None else left):
            raise SMTPTimeoutError(Failure.RATE_TIMEOUT.value)
        try:
            while True:
                with self._cond:
                    wait = self._policy.pace(delivery, self._now())
                if wait is None:
                    return
                if isinstance(wait, Failure):
                    raise SMTPTimeoutError(wait.value)
                self._sleep(wait)
        finally:
            self._rate_lock.release()

    def _acquire(self, delivery: Delivery) -> PooledConnection[SMTP]:
        now = self._now
        ticket: Ticket[SMTP] | None = None
        held: PooledConnection[SMTP] | None = None
        try:
            while True:
                with self._deciding(delivery) as policy:  # retires the expired ones first
                    if ticket is None:
                        deadline = delivery.deadline
                        if self.wait_timeout is not None:
                            waited = now() + self.wait_timeout
                            deadline = waited if deadline is None else min(deadline, waited)
                        ticket = policy.request(now(), deadline)
                    action = policy.poll(ticket, now())
                    while isinstance(action, Wait):
                        left = None if action.until is None else action.until - now()
                        if not self._cond.wait(left):
                            action = policy.give_up(ticket, now())
                        else:
                            action = policy.poll(ticket, now())
                if isinstance(action, Failure):
                    if action.is_timeout:
                        raise SMTPTimeoutError(action.value)
                    raise SMTPException(action.value)
                if isinstance(action, Open):
                    return self._connect(delivery)
                held = action.connection
                if held.client.sock is None:
                    with self._deciding(delivery) as policy:
                        policy.found_closed(ticket, held, now())
                elif action.check and not self._check(held, delivery):
                    with self._deciding(delivery) as policy:
                        policy.check_failed(ticket, held, now())
                else:
                    return held
                held = None
        except BaseException:
            with self._deciding(delivery) as policy:
                if held is not None:
                    policy.abandon(held, now(), connected=held.client.sock is not None)
                elif ticket is not None:
                    policy.withdraw(ticket, now())
            raise

    def _connect(self, delivery: Delivery) -> PooledConnection[SMTP]:
        """A new connection, within the call's deadline; ``_OpenFailed`` if it cannot be."""
        client: SMTP | None = None
        try:
            with self._within(delivery.left(self._now())):
                client = self.client_class(timeout=self.timeout, **self.smtp_options)
                code, message = client.connect(self.host, self.port)
                if code != 220:
                    raise SMTPConnectError(code, message)  # as smtplib's constructor
                if self.starttls:
                    client.starttls()
                if self.username is not None:
                    client.login(self.username, self._password or "")
                if self.setup is not None:
                    self.setup(client)
        except BaseException as exc:
            with self._deciding(delivery) as policy:
                policy.open_failed(self._now())
            if client is not None:
                client.close()
            if isinstance(exc, (SMTPException, OSError)):
                raise _OpenFailed(exc) from exc
            raise
        with self._deciding(delivery) as policy:
            return policy.opened(client, self._now())

    def _check(self, pooled: PooledConnection[SMTP], delivery: Delivery) -> bool:
        try:
            with self._within(housekeeping_timeout(delivery.left(self._now()))):
                code, _ = pooled.client.noop()
        except (SMTPException, OSError):
            return False
        return code == 250

    def _release(self, pooled: PooledConnection[SMTP], delivery: Delivery | None = None) -> None:
        with self._deciding(delivery) as policy:
            policy.release(pooled, self._now())

    @contextlib.contextmanager
    def _deciding(self, delivery: Delivery | None = None) -> Iterator[PoolPolicy[SMTP]]:
        """Tell the policy under the lock; then wake the threads it served, and close
        (outside the lock) the connections it is done with: a QUIT within what is left
        of ``delivery``'s deadline, and at most ``HOUSEKEEPING_TIMEOUT``."""
        policy = self._policy
        closing: list[Close[SMTP]] = []
        try:
            with self._cond:
                try:
                    yield policy
                finally:
                    if policy.take_wakes():
                        self._cond.notify_all()
                    closing = policy.take_closing()
        finally:
            for close in closing:
                client = close.connection.client
                try:
                    left = None if delivery is None else delivery.left(self._now())
                    seconds = housekeeping_timeout(left)
                    if close.quit and client.sock is not None and seconds > 0:
                        with contextlib.suppress(SMTPException, OSError), self._within(seconds):
                            client.quit()
                finally:
                    client.close()


class _OpenFailed(Exception):
    """Opening a connection failed with ``error`` (nothing of the message was sent)."""

    def __init__(self, error: SMTPException | OSError) -> None:
        super().__init__(error)
        self.error = error


def _transient(exc: BaseException) -> bool:
    """A failure to open a connection that a fresh one may not meet: the connection
    refused, reset or dropped, a timeout, a 4xx greeting (or EHLO, STARTTLS, AUTH
    reply); not a certificate refused, a 5xx or a missing extension."""
    if isinstance(exc, SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, (SMTPServerDisconnected, ssl.SSLEOFError)):
        return True  # SSLEOFError: dropped during the handshake
    return isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError)
