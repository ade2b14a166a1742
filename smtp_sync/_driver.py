"""The blocking driver: smtp_core's flows performed with ``socket`` and ``ssl``.

Everything here is transport: connecting, TLS, time limits (within a monotonic
deadline) and turning ``OSError`` into smtplib's exceptions. What to send and how to
read replies comes from the flows.

A plain TCP (or Unix) socket stays blocking, its waits bounded by the kernel
(``SO_RCVTIMEO``, ``SO_SNDTIMEO``): a write is one ``send`` and a read one ``recv``,
which sleeps in the kernel until the reply comes. (A socket with a timeout would poll
before each ``send`` and ``recv``: two system calls, and in a threaded program two
releases of the GIL, for each.) A read the pipeline may cut short (another thread's
message may come meanwhile) must wait for the wake-up socket too: it tries ``recv``
without waiting first, and polls both when that finds nothing. A TLS socket keeps a
socket timeout, which ``ssl`` needs for its handshake and records.
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import ssl
import struct
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
# A recv that must not wait on the blocking socket (it finds bytes there, or none).
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)

# A reply often arrives while the flow is still busy with what it wrote: a read the
# pipeline may cut short tries ``recv`` first (one system call). When that finds
# nothing (the server is not that quick), the next such reads poll first, as this many.
_POLL_FIRST = 8


def _timeval(seconds: float | None) -> bytes:
    """``seconds`` as SO_RCVTIMEO and SO_SNDTIMEO take it (0: no limit)."""
    if seconds is None:
        return struct.pack("ll", 0, 0)
    whole, micro = divmod(max(1, math.ceil(seconds * 1_000_000)), 1_000_000)
    return struct.pack("ll", whole, micro)


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
        # Blocking, the kernel bounding each wait (where poll() exists, for the wake-up).
        self._plain = _POLL and not self._tls
        self._poll_first = 0  # wakeable reads left that poll before recv (_POLL_FIRST)
        # What SO_RCVTIMEO and SO_SNDTIMEO are set to (plain sockets; None: no limit).
        self._recv_limit = self._send_limit = timeout
        if self._plain:
            sock.setblocking(True)
            limit = _timeval(timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        else:
            sock.settimeout(timeout)
        # Another thread ends a wakeable read early by writing a byte here (wake()).
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sock_fd = sock.fileno()  # the same once TLS wraps it
        self._poller: Any = None  # the socket and the wake-up
        self._sock_poller: Any = None  # the socket alone
        if _POLL:
            self._poller = select.poll()
            self._poller.register(self._sock_fd, select.POLLIN)
            self._poller.register(self._wake_r.fileno(), select.POLLIN)
            self._sock_poller = select.poll()
            self._sock_poller.register(self._sock_fd, select.POLLIN)

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
                        if self._send_limit != self._limit:
                            self._set_send_limit()
                        try:
                            sent = self.sock.send(data)  # all of it, unless the limit passes
                        except BlockingIOError:  # SO_SNDTIMEO: the limit passed
                            raise TimeoutError("timed out")  # noqa: B904 - the limit, not EAGAIN
                        if sent != len(data):
                            self._send_rest(data, sent, limit)
                    value: Any = None
                elif kind is Read:
                    if limit is not None:
                        self._arm(limit)
                    if not self._plain:
                        value = (
                            self._read_or_wake() if request.wakeable else self.sock.recv(READ_SIZE)
                        )
                    elif request.wakeable:
                        value = self._read_or_wake_plain()
                    else:
                        if self._recv_limit != self._limit:
                            self._set_recv_limit()
                        try:
                            value = self.sock.recv(READ_SIZE)
                        except BlockingIOError:  # SO_RCVTIMEO: the limit passed
                            raise TimeoutError("timed out")  # noqa: B904 - the limit, not EAGAIN
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

    # -- a plain socket, blocking within kernel limits ----------

    def _set_recv_limit(self) -> None:
        """Each recv waits the current limit at most, then fails with EAGAIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(self._limit))
        self._recv_limit = self._limit

    def _set_send_limit(self) -> None:
        """Each send waits the current limit at most (for room in the socket's buffer),
        then returns what it sent, or fails with EAGAIN having sent nothing."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self._limit))
        self._send_limit = self._limit

    def _send_rest(self, data: bytes, sent: int, limit: float | None) -> None:
        """The rest of ``data`` after ``sent`` bytes (a send cut short by a signal, or
        by SO_SNDTIMEO having sent some), each send within what is left of ``limit``."""
        sock = self.sock
        view = memoryview(data)[sent:]
        while view:
            if limit is not None:
                self._arm(limit)
            if self._send_limit != self._limit:
                self._set_send_limit()
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:  # SO_SNDTIMEO: the limit passed
                raise TimeoutError("timed out")  # noqa: B904 - the limit, not EAGAIN

    def _read_or_wake_plain(self) -> bytes | None:
        """Bytes from the server once they come, or None when :meth:`wake` was called
        first (a read the pipeline may cut short)."""
        if self._poll_first:
            self._poll_first -= 1
        elif _DONTWAIT:
            try:
                return self.sock.recv(READ_SIZE, _DONTWAIT)  # the reply is there already
            except BlockingIOError:
                self._poll_first = _POLL_FIRST
        events = self._poller.poll(self._poll_ms)
        if not events:
            raise TimeoutError("timed out")
        if len(events) > 1 or events[0][0] != self._sock_fd:  # woken
            self._drain_wakes()
            if len(events) == 1:
                return None
        try:
            return self.sock.recv(READ_SIZE, _DONTWAIT)
        except BlockingIOError:  # pragma: no cover - a spurious readiness
            return None  # the flow asks again

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
                data = sock.recv(READ_SIZE, _DONTWAIT)
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
