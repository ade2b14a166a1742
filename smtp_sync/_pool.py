"""A thread-safe pool of smtp_sync connections for threaded programs (web applications).

Its decisions are :class:`smtp_core._pool_policy.PoolPolicy`'s, the same as the event
loops' pools: connections capped and reused (the most recently used first), checked
with NOOP after they idled, retired after a number of messages or an age, and retries
only of what is safe: a message never sent (``Outcome.NEVER_SENT``: a dropped
connection before its content, a 421 or a 4xx before DATA), on a fresh connection,
with backoff. This module carries them out with blocking sockets: the policy is
asked under one lock, threads wait on its condition, and connections are opened,
checked and closed outside it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from smtp_core._pool_policy import (
    Close,
    Failure,
    Open,
    PooledConnection,
    PoolLimits,
    PoolPolicy,
    Ticket,
    Wait,
    limit,
)
from smtp_core.flows import TransactionResult

from ._exceptions import (
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
    as_bytes,
)
from ._session import Message, Refused
from ._smtp import SMTP

__all__ = ["SMTPPool"]

_PoolT = TypeVar("_PoolT", bound="SMTPPool")


class SMTPPool:
    """Connections to one server, shared by threads; ``sendmail``/``send_message`` as SMTP's.

    ``host``, ``port`` and ``smtp_options`` (``local_hostname``, ``timeout``,
    ``context``, ``timeouts``...) make each connection, of ``client_class``
    (``SMTP``, ``SMTP_SSL`` or ``LMTP``). Then ``starttls=True`` upgrades it and
    ``username``/``password`` log in; ``setup(client)`` may do anything else.

    * ``max_connections`` (10): open at once; callers wait for a free one within
      ``wait_timeout`` seconds (``SMTPTimeoutError`` after).
    * ``max_messages_per_connection`` (1000), ``max_connection_age`` (600 s): then QUIT.
    * ``idle_timeout`` (60 s): idle connections older than this are closed when the
      pool is next used; ``check_after_idle`` (10 s): NOOP before reusing one idle this long.
    * ``max_attempts`` (3), ``retry_backoff`` (0.5 s, doubling): retries of a message
      that was never sent. A message whose content may have reached the server is
      never sent again; a 5xx is returned (raised), never retried.
    * ``max_in_flight`` (8): threads one connection serves at once once every
      connection is open and busy; its client pipelines their messages back to back.
    """

    max_connections = limit[int]()
    max_messages_per_connection = limit[int]()
    max_connection_age = limit[float]()
    idle_timeout = limit[float]()
    check_after_idle = limit[float]()
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
        max_attempts: int = 3,
        retry_backoff: float = 0.5,
        wait_timeout: float | None = 60.0,
        max_in_flight: int = 8,
        **smtp_options: Any,
    ) -> None:
        limits = PoolLimits(
            max_connections=max_connections,
            max_messages_per_connection=max_messages_per_connection,
            max_connection_age=max_connection_age,
            idle_timeout=idle_timeout,
            check_after_idle=check_after_idle,
            max_attempts=max_attempts,
            retry_backoff=retry_backoff,
            max_in_flight=max_in_flight,
        )
        self._policy: PoolPolicy[SMTP] = PoolPolicy(limits)
        self.host = host
        self.port = port
        self.client_class = client_class
        self.starttls = starttls
        self.username = username
        self._password = password
        self.setup = setup
        self.smtp_options = smtp_options
        self.wait_timeout = wait_timeout
        self._cond = threading.Condition()
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
            policy.close(time.monotonic())

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

    def _deliver(self, operation: Callable[[SMTP], TransactionResult]) -> TransactionResult:
        delivery = self._policy.delivery(time.monotonic(), None)
        while True:
            pooled = self._acquire()
            try:
                result = operation(pooled.client)
            except (SMTPServerDisconnected, SMTPResponseException) as exc:
                broken = (
                    pooled.client.sock is None
                    or isinstance(exc, SMTPServerDisconnected)
                    or exc.smtp_code in (-1, 421)
                )
                if not broken:
                    # Refused before anything was sent (SIZE, HELO): the connection is fine.
                    self._release(pooled)
                    raise
                # Exceptions that concern no message (connecting, EHLO) came before any
                # byte of it; the others tell whether its content may have been written.
                with self._deciding() as policy:
                    then = policy.failed(
                        delivery,
                        pooled,
                        time.monotonic(),
                        outcome=exc.outcome,
                        timed_out=isinstance(exc, SMTPTimeoutError),
                    )
                if then is None:
                    raise
            except BaseException:
                connected = pooled.client.sock is not None
                with self._deciding() as policy:
                    policy.abandon(pooled, time.monotonic(), connected=connected)
                raise
            else:
                connected = pooled.client.sock is not None
                with self._deciding() as policy:
                    then = policy.finished(
                        delivery, pooled, time.monotonic(), result, connected=connected
                    )
                if then is None:
                    return result
            if isinstance(then, Failure):
                raise SMTPTimeoutError(then.value)
            time.sleep(then.delay)

    def _acquire(self) -> PooledConnection[SMTP]:
        wait_timeout = self.wait_timeout
        ticket: Ticket[SMTP] | None = None
        held: PooledConnection[SMTP] | None = None
        try:
            while True:
                with self._deciding() as policy:  # retires the expired ones first
                    now = time.monotonic()
                    if ticket is None:
                        deadline = None if wait_timeout is None else now + wait_timeout
                        ticket = policy.request(now, deadline)
                    action = policy.poll(ticket, now)
                    while isinstance(action, Wait):
                        left = None if action.until is None else action.until - time.monotonic()
                        if not self._cond.wait(left):
                            action = policy.give_up(ticket, time.monotonic())
                        else:
                            action = policy.poll(ticket, time.monotonic())
                if isinstance(action, Failure):
                    if action.is_timeout:
                        raise SMTPTimeoutError(action.value)
                    raise SMTPException(action.value)
                if isinstance(action, Open):
                    return self._connect()
                held = action.connection
                if held.client.sock is None:
                    with self._deciding() as policy:
                        policy.found_closed(ticket, held, time.monotonic())
                elif action.check and not self._check(held):
                    with self._deciding() as policy:
                        policy.check_failed(ticket, held, time.monotonic())
                else:
                    return held
                held = None
        except BaseException:
            with self._deciding() as policy:
                if held is not None:
                    policy.abandon(held, time.monotonic(), connected=held.client.sock is not None)
                elif ticket is not None:
                    policy.withdraw(ticket, time.monotonic())
            raise

    def _connect(self) -> PooledConnection[SMTP]:
        client: SMTP | None = None
        try:
            client = self.client_class(**self.smtp_options)
            client.connect(self.host, self.port)
            if self.starttls:
                client.starttls()
            if self.username is not None:
                client.login(self.username, self._password or "")
            if self.setup is not None:
                self.setup(client)
        except BaseException:
            with self._deciding() as policy:
                policy.open_failed(time.monotonic())
            if client is not None:
                client.close()
            raise
        with self._deciding() as policy:
            return policy.opened(client, time.monotonic())

    def _check(self, pooled: PooledConnection[SMTP]) -> bool:
        try:
            code, _ = pooled.client.noop()
        except (SMTPException, OSError):
            return False
        return code == 250

    def _release(self, pooled: PooledConnection[SMTP]) -> None:
        with self._deciding() as policy:
            policy.release(pooled, time.monotonic())

    @contextlib.contextmanager
    def _deciding(self) -> Iterator[PoolPolicy[SMTP]]:
        """Tell the policy under the lock; then wake the threads it served, and close
        (outside the lock) the connections it is done with."""
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
                    if close.quit and client.sock is not None:
                        with contextlib.suppress(SMTPException, OSError):
                            client.quit()
                finally:
                    client.close()
