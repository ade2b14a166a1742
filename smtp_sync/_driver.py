"""The blocking driver: smtp_core's flows performed with ``socket`` and ``ssl``.

Everything here is transport: connecting, TLS, time limits (within a monotonic
deadline) and turning ``OSError`` into smtplib's exceptions. What to send and how to
read replies comes from the flows.

A plain TCP (or Unix) socket is driven non-blocking: a write that fits the socket's
buffer is one ``send``, and a read is one ``poll`` (on the socket and, for a read the
pipeline may cut short, the wake-up socket) and one ``recv``; ``poll`` is where every
wait is bounded. (A socket with a timeout would poll before each ``send`` and ``recv``
as well.) A TLS socket keeps a socket timeout, which ``ssl`` needs for its handshake and
records.
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import ssl
import time
from typing import Any, Protocol, TypeVar

import smtp_core
from smtp_core import ClientConnection, CommandReply, ConnectionClosed, RemoteProtocolError, State
from smtp_core._native import caused_by
from smtp_core.flows import Flow, NextChunk, Progress, Read, Stage, UpgradeTLS, Write

from ._exceptions import SMTPServerDisconnected, SMTPTimeoutError, convert

__all__ = ["Channel", "Parked", "open_socket", "READ_SIZE"]

T = TypeVar("T")
READ_SIZE = 65536

# States in which, with no command awaiting a reply, the server has nothing to say.
_OWED_NOTHING = frozenset(
    {State.HELLO, State.READY, State.MAIL, State.RCPT, State.BDAT, State.AUTH_CHALLENGE}
)


def open_socket(
    host: str,
    port: int,
    timeout: float | None,
    source_address: tuple[str, int] | None,
) -> socket.socket:
    """A connected TCP socket, or a Unix one for a ``host`` that is an absolute path."""
    if host.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(host)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((host, port), timeout, source_address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Until(Protocol):
    """What :meth:`Channel.pump` drives a parked flow until: ``done`` becomes true."""

    @property
    def done(self) -> bool: ...


class Parked:
    """A flow between two requests: the next request to perform (None: not started),
    and when the stage it is in must end (``Timeouts.command``/``data``; monotonic)."""

    __slots__ = ("flow", "request", "result", "stage_ends")

    def __init__(self, flow: Flow[Any]) -> None:
        self.flow = flow
        self.request: Any = None
        self.result: Any = None
        self.stage_ends: float | None = None


_POLL = hasattr(select, "poll")

# A reply usually arrives while the flow is still busy with what it wrote: a read tries
# ``recv`` first (one system call). When that finds nothing (other threads hold the
# CPU, the network has a round trip), the next reads poll first, as this many.
_POLL_FIRST = 8


def _milliseconds(timeout: float | None) -> int | None:
    """A socket timeout as poll() takes it (None: no limit)."""
    return None if timeout is None else math.ceil(timeout * 1000)


def _earlier(limit: float, deadline: float | None) -> float:
    return limit if deadline is None or limit < deadline else deadline


class Channel:
    """One connection: a blocking socket, the protocol machine, and its time limits.

    ``timeout`` bounds each socket operation (smtplib's meaning); ``command`` and
    ``data`` bound a command's reply and a message's content (its first byte to its
    final reply); the ``deadline`` given to :meth:`run` (monotonic seconds) bounds
    the whole run.
    """

    def __init__(
        self,
        sock: socket.socket,
        conn: ClientConnection,
        *,
        timeout: float | None,
        command: float | None = None,
        data: float | None = None,
    ) -> None:
        self.sock = sock
        self.conn = conn
        self.timeout = timeout
        self.command_limit = command
        self.data_limit = data
        self.tls_context: ssl.SSLContext | None = None
        self._armed = False  # the wait limit is not ``timeout`` just now
        self._limit = timeout  # the limit of each wait (seconds; None: none)
        self._poll_ms = _milliseconds(timeout)  # the same, for poll()
        self._tls = isinstance(sock, ssl.SSLSocket)
        # Non-blocking: this driver polls, and only when a send or recv would block.
        self._plain = _POLL and not self._tls
        self._poll_first = 0  # reads left that poll before recv (see _POLL_FIRST)
        if self._plain:
            sock.setblocking(False)
        else:
            sock.settimeout(timeout)
        # Another thread ends a wakeable read early by writing a byte here (wake()).
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sock_fd = sock.fileno()  # the same once TLS wraps it
        self._poller: Any = None  # the socket and the wake-up
        self._sock_poller: Any = None  # the socket alone
        self._sock_events = 0  # what the socket is registered for there
        if _POLL:
            self._poller = select.poll()
            self._poller.register(self._sock_fd, select.POLLIN)
            self._poller.register(self._wake_r.fileno(), select.POLLIN)
            self._sock_poller = select.poll()

    # -- the trampoline ----------

    def run(self, flow: Flow[T], deadline: float | None = None) -> T:
        """Perform ``flow``'s requests until it returns; map failures to smtplib's
        exceptions (a broken transport closes the channel)."""
        parked = Parked(flow)
        try:
            self.pump(parked, None, deadline)
        finally:
            flow.close()
        result: T = parked.result
        return result

    def pump(self, parked: Parked, until: Until | None, deadline: float | None) -> bool:
        """Drive a parked flow until ``until.done`` holds (between two requests) or the flow
        returns (True; its value in ``parked.result``). ``deadline`` (monotonic) bounds
        this run; the flow stays parked, its next request not yet performed, and the
        limit of the stage it is in goes on with it (another thread may drive it on)."""
        flow = parked.flow
        request = parked.request
        stage_ends = parked.stage_ends
        limit = deadline if stage_ends is None else _earlier(stage_ends, deadline)
        try:
            while True:
                kind = type(request)
                if kind is Write:
                    if limit is not None:
                        self._arm(limit)
                    data = request.data
                    if not self._plain:
                        self.sock.sendall(data)
                    else:
                        try:
                            sent = self.sock.send(data)
                        except BlockingIOError:
                            sent = 0
                        if sent != len(data):
                            self._send_rest(data, sent)
                    value: Any = None
                elif kind is Read:
                    if limit is not None:
                        self._arm(limit)
                    if not self._plain:
                        value = (
                            self._read_or_wake() if request.wakeable else self.sock.recv(READ_SIZE)
                        )
                    elif self._poll_first:
                        self._poll_first -= 1
                        value = self._poll_and_read(request.wakeable)
                    else:
                        try:
                            value = self.sock.recv(READ_SIZE)  # the reply is there already
                        except BlockingIOError:
                            self._poll_first = _POLL_FIRST
                            value = self._poll_and_read(request.wakeable)
                elif kind is Stage:
                    seconds = (
                        self.command_limit
                        if request.name == "command"
                        else self.data_limit
                    )
                    if seconds is None:
                        stage_ends, limit = None, deadline
                    else:
                        stage_ends = time.monotonic() + seconds
                        limit = _earlier(stage_ends, deadline)
                    value = None
                elif kind is UpgradeTLS:
                    if limit is not None:
                        self._arm(limit)  # the handshake too
                    self._upgrade(request.server_hostname)
                    value = None
                elif request is None or kind is Progress:
                    value = None
                elif kind is NextChunk:
                    raise TypeError("message content must be bytes, a file or an iterable of bytes")
                else:  # pragma: no cover
                    raise AssertionError(f"unknown request {request!r}")
                try:
                    request = flow.send(value)
                except StopIteration as stop:
                    parked.request = None
                    parked.result = stop.value
                    return True
                if until is not None and until.done:
                    parked.request = request
                    parked.stage_ends = stage_ends
                    return False
        except smtp_core.SMTPException as exc:
            if isinstance(exc, smtp_core.SMTPServerDisconnected):
                self.close()
            raise caused_by(convert(exc), exc)  # noqa: B904 - mypyc ignores ``from``
        except RemoteProtocolError as exc:
            self.close()
            raise caused_by(convert(exc), exc)  # noqa: B904 - mypyc ignores ``from``
        except ssl.SSLCertVerificationError:
            self.close()
            raise  # as smtplib: the certificate was refused
        except TimeoutError as exc:
            self.close()
            raise caused_by(  # noqa: B904 - mypyc ignores ``from``
                SMTPTimeoutError("Timed out waiting for the server"), exc
            )
        except OSError as exc:
            self.close()
            raise caused_by(  # noqa: B904 - mypyc ignores ``from``
                SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}"), exc
            )
        finally:
            if self._armed:
                self._disarm()

    def _arm(self, limit: float) -> None:
        left = limit - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        if self.timeout is not None and self.timeout < left:
            left = self.timeout
        if not self._plain:
            self.sock.settimeout(left)
        self._poll_ms = _milliseconds(left)
        self._limit = left
        self._armed = True

    # -- a plain socket, non-blocking ----------

    def _wait(self, events: int) -> None:
        """Wait until the socket is ready for ``events``, within the limit."""
        poller = self._sock_poller
        if self._sock_events != events:
            poller.register(self._sock_fd, events)
            self._sock_events = events
        if not poller.poll(self._poll_ms):
            raise TimeoutError("timed out")

    def _send_rest(self, data: bytes, sent: int) -> None:
        """The rest of ``data`` after ``sent`` bytes, as the socket's buffer drains."""
        sock = self.sock
        view = memoryview(data)[sent:]
        while view:
            self._wait(select.POLLOUT)
            with contextlib.suppress(BlockingIOError):
                view = view[sock.send(view) :]

    def _poll_and_read(self, wakeable: bool) -> bytes | None:
        """Bytes from the server once they come; with ``wakeable``, None when
        :meth:`wake` was called first."""
        if wakeable:
            events = self._poller.poll(self._poll_ms)
            if not events:
                raise TimeoutError("timed out")
            if len(events) > 1 or events[0][0] != self._sock_fd:  # woken
                self._drain_wakes()
                if len(events) == 1:
                    return None
        else:
            self._wait(select.POLLIN)
        while True:
            try:
                return self.sock.recv(READ_SIZE)
            except BlockingIOError:  # pragma: no cover - a spurious readiness
                self._wait(select.POLLIN)

    # -- either socket ----------

    def wake(self) -> None:
        """End a wakeable read under way (or the next one) early: a message came that
        the pipeline may send at once. Safe from any thread."""
        with contextlib.suppress(OSError):  # BlockingIOError: a wake is pending already
            self._wake_w.send(b"\0")

    def _drain_wakes(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(64):
                pass

    def _read_or_wake(self) -> bytes | None:
        """A TLS socket's (or one without poll()'s) bytes from the server, or None when
        :meth:`wake` was called first.

        Waits for the socket or the wake-up within the socket's timeout, then reads.
        """
        sock = self.sock
        if self._tls and sock.pending():  # type: ignore[attr-defined]
            return sock.recv(READ_SIZE)
        poller = self._poller
        if poller is not None:
            events = poller.poll(self._poll_ms)
            if len(events) == 1 and events[0][0] == self._sock_fd:
                return sock.recv(READ_SIZE)  # the usual case: the reply, and only it
            fds = [fd for fd, _ in events]
            sock_ready, woken = self._sock_fd in fds, self._wake_r.fileno() in fds
        else:  # pragma: no cover - Windows
            readable = select.select([sock, self._wake_r], [], [], sock.gettimeout())[0]
            sock_ready, woken = sock in readable, self._wake_r in readable
        if woken:
            self._drain_wakes()
            if not sock_ready:
                return None
        elif not sock_ready:
            raise TimeoutError("timed out")
        return sock.recv(READ_SIZE)

    def _disarm(self) -> None:
        self._armed = False
        self._poll_ms = _milliseconds(self.timeout)
        self._limit = self.timeout
        if not self._plain:
            with contextlib.suppress(OSError):
                self.sock.settimeout(self.timeout)

    def _upgrade(self, server_hostname: str | None) -> None:
        # TLS clients speak first: any byte already waiting is plaintext the server
        # (or someone on the path) sent after its 220. The machine refuses it.
        early = self._take_waiting()
        if early:
            self.conn.receive_data(early)
        context = self.tls_context or ssl.create_default_context()
        # ssl's handshake and records need a socket timeout: the armed limit, if any.
        self.sock.settimeout(self._limit)
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self._tls = True
        self._plain = False

    # -- between operations ----------

    def _take_waiting(self) -> bytes:
        """Bytes the server sent that nobody asked for yet, without waiting (b"": none).

        Raises ``SMTPServerDisconnected`` when the server has closed the connection.
        """
        sock = self.sock
        if self._tls:
            assert isinstance(sock, ssl.SSLSocket)
            if not sock.pending() and not self._readable_now():
                return b""
            sock.setblocking(False)
            try:
                data = sock.recv(READ_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return b""  # a TLS record without data (a session ticket)
            finally:
                sock.settimeout(self.timeout)
        else:
            if not self._readable_now():
                return b""
            try:
                data = sock.recv(READ_SIZE)
            except BlockingIOError:  # pragma: no cover - a spurious readiness
                return b""
        if not data:
            raise SMTPServerDisconnected("Server closed the connection")
        return data

    def _readable_now(self) -> bool:
        """Whether the socket has something to read (bytes, or the server's close)."""
        poller = self._poller
        if poller is None:  # pragma: no cover - Windows
            return bool(select.select([self.sock], [], [], 0)[0])
        sock_fd = self._sock_fd
        return any(fd == sock_fd for fd, _ in poller.poll(0))

    def check_idle(self) -> None:
        """Before a new operation: refuse bytes sent while no reply was due.

        A 421 means the server ended the session (an idle timeout); anything else would
        pass for the next command's reply, so the machine refuses it. Either closes.
        """
        conn = self.conn
        if conn.awaiting_replies or conn.state not in _OWED_NOTHING:
            return
        try:
            poller = self._sock_poller  # the socket alone: a wake-up left pending is no news
            if poller is not None and self._sock_events != select.POLLIN:
                poller.register(self._sock_fd, select.POLLIN)
                self._sock_events = select.POLLIN
            if self._tls or poller is None or poller.poll(0):  # something may be waiting
                early = self._take_waiting()
                if early:
                    conn.receive_data(early)
            # Bytes read with the last reply are in the machine already: look at them too.
            if not conn.has_unparsed_input:
                return
            event = conn.next_event()
        except (OSError, SMTPServerDisconnected) as exc:
            self.close()
            if isinstance(exc, SMTPServerDisconnected):
                raise
            raise caused_by(  # noqa: B904 - mypyc ignores ``from``
                SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}"), exc
            )
        except RemoteProtocolError as exc:
            self.close()
            raise caused_by(convert(exc), exc)  # noqa: B904 - mypyc ignores ``from``
        if isinstance(event, CommandReply) and event.command is None:
            self.close()
            reply = event.reply
            raise SMTPServerDisconnected(
                f"Server closed the connection while idle: {reply.code} {reply.message}"
            )
        if isinstance(event, ConnectionClosed):
            self.close()
            raise SMTPServerDisconnected("Server closed the connection")

    @property
    def closed(self) -> bool:
        return self.sock.fileno() < 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        # The pollers stay: a thread waiting in one sees the closed socket (POLLNVAL),
        # and its read then fails as a lost connection.
        self._wake_r.close()
        self._wake_w.close()
