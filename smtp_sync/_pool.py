"""A thread-safe pool of smtp_sync connections for threaded programs (web applications).

The policy is :class:`smtp_core._pool.SMTPPoolBase`'s, for threads: connections capped
and reused (the most recently used first), checked with NOOP after they idled,
retired after a number of messages or an age, and retries only of what is safe: a
message never sent (``Outcome.NEVER_SENT``: a dropped connection before its content,
a 421 or a 4xx before DATA), on a fresh connection, with backoff.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from smtp_core import Outcome
from smtp_core._pool import _transient as _core_transient
from smtp_core.flows import TransactionResult

from ._exceptions import (
    SMTPException,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
    as_bytes,
)
from ._session import Message, Refused
from ._smtp import SMTP

__all__ = ["SMTPPool"]

_PoolT = TypeVar("_PoolT", bound="SMTPPool")


def _transient(error: Exception) -> bool:
    """A refusal worth retrying: 421 or any 4xx (for every recipient, whose refusals are
    smtplib's dict ``{recipient: (code, message)}`` here)."""
    if isinstance(error, SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    return _core_transient(error)


@dataclass(eq=False)
class _Pooled:
    client: SMTP
    created: float
    last_used: float
    in_flight: int = 0
    messages: int = 0
    dead: bool = False


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
        for name, value in (
            ("max_connections", max_connections),
            ("max_messages_per_connection", max_messages_per_connection),
            ("max_attempts", max_attempts),
            ("max_in_flight", max_in_flight),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        self.host = host
        self.port = port
        self.client_class = client_class
        self.starttls = starttls
        self.username = username
        self._password = password
        self.setup = setup
        self.smtp_options = smtp_options
        self.max_connections = max_connections
        self.max_messages_per_connection = max_messages_per_connection
        self.max_connection_age = max_connection_age
        self.idle_timeout = idle_timeout
        self.check_after_idle = check_after_idle
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.wait_timeout = wait_timeout
        self.max_in_flight = max_in_flight
        self._cond = threading.Condition()
        self._conns: list[_Pooled] = []  # open, idle or busy
        self._connecting = 0
        self._closed = False
        #: Counters, for monitoring: connections opened, retired, messages sent, retries.
        self.stats = {"connections": 0, "retired": 0, "messages": 0, "retries": 0}

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
        return len(self._conns) + self._connecting

    def close(self) -> None:
        """QUIT every idle connection; busy ones are closed when their message is done."""
        with self._cond:
            self._closed = True
            idle = [p for p in self._conns if p.in_flight == 0]
            for pooled in idle:
                self._conns.remove(pooled)
            self._cond.notify_all()
        for pooled in idle:
            self._retire(pooled)

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

    def _deliver(self, operation: Callable[[SMTP], TransactionResult]) -> TransactionResult:
        attempt = 0
        while True:
            attempt += 1
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
                self._discard(pooled)
                if exc.outcome is Outcome.UNKNOWN or attempt >= self.max_attempts:
                    raise
                self._backoff(attempt)
                continue
            except BaseException:
                if pooled.client.sock is not None:
                    self._release(pooled)
                else:
                    self._discard(pooled)
                raise
            pooled.messages += 1
            with self._cond:
                self.stats["messages"] += 1
            retry = (
                result.error is not None
                and _transient(result.error)
                and result.data_reply is None  # refused before its content was sent
                and attempt < self.max_attempts
            )
            if retry or pooled.client.sock is None:
                self._discard(pooled)  # the server may be in trouble on this one
            else:
                self._release(pooled)
            if not retry:
                return result
            self._backoff(attempt)

    def _backoff(self, attempt: int) -> None:
        with self._cond:
            self.stats["retries"] += 1
        time.sleep(self.retry_backoff * 2 ** (attempt - 1))

    # -- connections ----------

    def _expired(self, pooled: _Pooled, now: float) -> bool:
        """No new work for it: broken, retired by count or age, or closed."""
        return (
            pooled.dead
            or pooled.messages + pooled.in_flight >= self.max_messages_per_connection
            or now - pooled.created >= self.max_connection_age
            or pooled.client.sock is None
        )

    def _acquire(self) -> _Pooled:
        deadline = None if self.wait_timeout is None else time.monotonic() + self.wait_timeout
        while True:
            stale: list[_Pooled] = []
            chosen: _Pooled | None = None
            with self._cond:
                while True:
                    if self._closed:
                        raise SMTPException("The connection pool is closed")
                    now = time.monotonic()
                    for pooled in list(self._conns):
                        if pooled.in_flight == 0 and (
                            self._expired(pooled, now)
                            or now - pooled.last_used >= self.idle_timeout
                        ):
                            self._conns.remove(pooled)
                            stale.append(pooled)
                    if stale:
                        break
                    usable = [
                        p
                        for p in self._conns
                        if not self._expired(p, now) and p.in_flight < self.max_in_flight
                    ]
                    idle = [p for p in usable if p.in_flight == 0]
                    if idle:
                        chosen = max(idle, key=lambda p: p.last_used)  # the most recently used
                    elif self.connections < self.max_connections:
                        self._connecting += 1  # a new one, opened outside the lock
                        break
                    elif usable:
                        # Every connection is busy: share the least loaded one (its
                        # client pipelines the messages of the threads using it).
                        chosen = min(usable, key=lambda p: p.in_flight)
                    if chosen is not None:
                        chosen.in_flight += 1
                        break
                    left = None if deadline is None else deadline - now
                    if left is not None and left <= 0:
                        raise SMTPTimeoutError(
                            "Timed out waiting for a free connection in the pool"
                        )
                    self._cond.wait(left)
            for pooled in stale:
                self._retire(pooled)
            if stale:
                continue
            if chosen is None:
                return self._connect()
            if (
                chosen.in_flight == 1
                and time.monotonic() - chosen.last_used >= self.check_after_idle
                and not self._check(chosen)
            ):
                self._discard(chosen)
                continue
            return chosen

    def _connect(self) -> _Pooled:
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
            with self._cond:
                self._connecting -= 1
                self._cond.notify_all()
            if client is not None:
                client.close()
            raise
        now = time.monotonic()
        pooled = _Pooled(client, now, now, in_flight=1)
        with self._cond:
            self._connecting -= 1
            self._conns.append(pooled)
            self.stats["connections"] += 1
            self._cond.notify_all()  # threads waiting may share it (max_in_flight)
        return pooled

    def _check(self, pooled: _Pooled) -> bool:
        try:
            code, _ = pooled.client.noop()
        except (SMTPException, OSError):
            return False
        return code == 250

    def _release(self, pooled: _Pooled) -> None:
        with self._cond:
            pooled.in_flight -= 1
            pooled.last_used = now = time.monotonic()
            retire = pooled.in_flight == 0 and (self._closed or self._expired(pooled, now))
            if retire and pooled in self._conns:
                self._conns.remove(pooled)
            self._cond.notify_all()
        if retire:
            self._retire(pooled)

    def _discard(self, pooled: _Pooled) -> None:
        """Broken or suspect: no new work for it; closed (no QUIT) once its work ends."""
        with self._cond:
            pooled.dead = True
            pooled.in_flight -= 1
            last = pooled.in_flight == 0
            if last and pooled in self._conns:
                self._conns.remove(pooled)
            self._cond.notify_all()
        if last:
            pooled.client.close()

    def _retire(self, pooled: _Pooled) -> None:
        with self._cond:
            self.stats["retired"] += 1
        client = pooled.client
        if client.sock is not None:
            with contextlib.suppress(SMTPException, OSError):
                client.quit()
        client.close()
