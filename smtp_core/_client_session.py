"""The client's session room: configuration, connecting, turns on the connection, the trampoline.

One connection serves every task that calls into the client. Who drives it is decided
here, written once for every adapter:

* Every caller's work is an *operation*, queued in call order: a plain command (or a
  run of them: EHLO then AUTH...) takes the connection for itself; a message joins the
  mail pipeline (:func:`~smtp_core.flows.mail_pipeline`), which sends messages back to
  back while earlier ones are in flight.
* The *baton* (the right to drive the connection) belongs to the caller of the oldest
  unfinished operation. It drives with its own deadline until its own operations are
  done, then hands the baton on, together with the pipeline parked between two I/O
  requests. Each caller is told its message's fate the moment the pipeline knows it.
* A caller cancelled while waiting for a reply hands the pipeline on untouched: the
  others go on. Anything that leaves the session out of step (a timeout, a protocol
  error, a broken connection, a cancellation mid-write) closes it, and every message
  still in flight is told whether it was never sent or its fate is unknown.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar

from ._commands import Ehlo
from ._connection import ClientConnection
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import CommandReply
from ._exceptions import (
    SMTPConnectError,
    SMTPConnectTimeoutError,
    SMTPException,
    SMTPReadTimeoutError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from ._flows import (
    Flow,
    NextChunk,
    Progress,
    Read,
    Stage,
    UpgradeTLS,
    Write,
    greeting,
    hello,
)
from ._replies import Reply
from ._response import Default, SMTPResponse, SMTPTokenGenerator, _default
from ._state import State
from ._transaction import (
    DEFAULT_WINDOW,
    Envelope,
    Outcome,
    TransactionResult,
    lost,
    mail_pipeline,
)

__all__ = [
    "SessionBase",
    "Transport",
    "ConnectOptions",
    "Timeouts",
    "SMTP_PORT",
    "SMTP_TLS_PORT",
    "SMTP_STARTTLS_PORT",
    "DEFAULT_TIMEOUT",
    "validate_local_hostname",
    "response",
]

SMTP_PORT = 25
SMTP_TLS_PORT = 465
SMTP_STARTTLS_PORT = 587
DEFAULT_TIMEOUT = 60.0

T = TypeVar("T")
Timeout = float | Literal[Default.token] | None
_SelfT = TypeVar("_SelfT", bound="SessionBase")

# States in which, with no command awaiting a reply, the server has nothing to say.
_OWED_NOTHING = frozenset(
    {State.HELLO, State.READY, State.MAIL, State.RCPT, State.BDAT, State.AUTH_CHALLENGE}
)
_CLEAN = frozenset({State.HELLO, State.READY, State.MAIL, State.RCPT, State.BDAT})

# The clients whose connection the current task holds (so that a public method called
# by another, inside one turn, does not wait for itself).
_holding: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "smtp_sansio_holding", default=frozenset()
)


def response(reply: Reply) -> SMTPResponse:
    """aiosmtplib's ``SMTPResponse`` for a reply."""
    return SMTPResponse(reply.code, reply.message)


def validate_local_hostname(hostname: str) -> str:
    """Strip whitespace around a local host name and refuse control characters inside."""
    hostname = hostname.strip()
    if hostname == "":
        raise ValueError("The local_hostname param must not be empty")
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in hostname):
        raise ValueError(
            "The local_hostname param contains prohibited whitespace or control characters"
        )
    return hostname


def _closed_while_idle(conn: ClientConnection) -> None:
    """Bytes came while no reply was due: a 421 means the server ended the session
    (an idle timeout, typically); anything else is refused by the machine."""
    event = conn.next_event()
    if isinstance(event, CommandReply) and event.command is None:
        reply = event.reply
        raise SMTPServerDisconnected(
            f"Server closed the connection while idle: {reply.code} {reply.message}"
        )


class Transport(Protocol):
    """What an adapter's byte stream offers the shared client."""

    async def write(self, data: bytes) -> None:
        """Write all of ``data``; raise ``SMTPServerDisconnected`` if the connection broke."""

    async def read(self) -> bytes:
        """Read some bytes; ``b""`` when the server closed the connection.

        Cancelling a read loses no bytes: the next read returns them.
        """

    def take_unread(self) -> bytes:
        """Remove and return bytes received but not yet returned by :meth:`read`."""

    def peek_unsolicited(self) -> bytes:
        """Bytes waiting to be read (left in place), asked only when no reply is due.

        A transport that reads only when asked (so bytes sent while the client was
        idle wait in the socket) shows them here, so that they can be refused instead
        of passing for the next command's reply; one that reads all the time returns
        them from :meth:`take_unread` and ``b""`` here.
        """

    async def start_tls(self, tls_context: Any, server_hostname: str | None) -> None:
        """Replace the stream with a TLS one over it (STARTTLS)."""

    def get_extra_info(self, key: str) -> Any:
        """asyncio-style transport information (peername, sslcontext, ...)."""

    @property
    def transport(self) -> Any:
        """The object aiosmtplib programs know as ``SMTP.transport``."""

    def close(self) -> None:
        """Close at once, without waiting."""

    async def aclose(self) -> None:
        """Close and release everything; must not raise, even when the caller is cancelled."""


@dataclass(frozen=True)
class Timeouts:
    """Time limits per stage, in seconds; None falls back to the client's ``timeout``.

    * ``connect``: opening the connection (and the implicit-TLS handshake);
    * ``greeting``: waiting for the server's greeting;
    * ``command``: each command's reply, from when the command is written;
    * ``data``: message content, from its first byte to the server's final reply;
    * ``total``: a whole ``sendmail``/``send_message`` call, queueing included, however
      many stages it takes.
    """

    connect: float | None = None
    greeting: float | None = None
    command: float | None = None
    data: float | None = None
    total: float | None = None


@dataclass
class ConnectOptions:
    """Everything :meth:`SessionBase._open_transport` needs to open a transport."""

    hostname: str
    port: int | None
    use_tls: bool
    tls_context: Any
    server_hostname: str | None
    socket_path: Any
    sock: Any
    source_address: tuple[str, int] | None
    timeout: float | None


class _Op:
    """One caller's piece of work on the connection: a message, or a turn of commands."""

    __slots__ = ("done", "envelope", "event", "gone", "outcome")

    def __init__(self, envelope: Envelope | None = None) -> None:
        self.envelope = envelope  # None: a turn of plain commands
        self.event: Any = None  # made when its caller waits
        self.done = False
        self.gone = False  # its caller stopped waiting (cancelled, past its total deadline)
        self.outcome: Any = None

    def finish(self, outcome: Any) -> None:
        self.outcome = outcome
        self.done = True
        self.wake()

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()


class _Pipe:
    """A running mail pipeline, parked between two I/O requests when nobody drives it."""

    __slots__ = ("flow", "inflight", "request")

    def __init__(self, flow: Flow[None]) -> None:
        self.flow = flow
        self.inflight: deque[_Op] = deque()  # messages taken, fate not yet known
        self.request: Any = None  # the next request to perform (None: start the flow)


class SessionBase(abc.ABC):
    """Configuration, connection and turns; the commands and sending build on it."""

    #: True for LMTP (RFC 2033): LHLO, and one reply per recipient after the content.
    _lmtp: bool = False

    def __init__(
        self,
        hostname: str | None = None,
        port: int | None = None,
        *,
        username: str | bytes | None = None,
        password: str | bytes | None = None,
        oauth_token_generator: SMTPTokenGenerator | None = None,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        use_tls: bool = False,
        start_tls: bool | None = None,
        validate_certs: bool = True,
        client_cert: str | None = None,
        client_key: str | None = None,
        tls_context: Any = None,
        cert_bundle: str | None = None,
        socket_path: Any = None,
        sock: Any = None,
        loop: Any = None,
        timeouts: Timeouts | None = None,
        pipeline_window: int = DEFAULT_WINDOW,
    ) -> None:
        if loop is not None:
            warnings.warn(
                "the loop argument is deprecated and ignored", DeprecationWarning, stacklevel=2
            )
        if pipeline_window < 1:
            raise ValueError("pipeline_window must be at least 1")
        self.hostname = hostname
        self.port = port
        self._login_username = username
        self._login_password = password
        self._oauth_token_generator = oauth_token_generator
        self.local_hostname = local_hostname
        self.source_address = source_address
        self.timeout = timeout
        self.use_tls = use_tls
        self._start_tls_on_connect = start_tls
        self.validate_certs = validate_certs
        self.client_cert = client_cert
        self.client_key = client_key
        self.tls_context = tls_context
        self.cert_bundle = cert_bundle
        self.socket_path = socket_path
        self.sock = sock
        self.timeouts = timeouts or Timeouts()
        #: Most whole transactions on the wire at once (servers with PIPELINING and CHUNKING).
        self.pipeline_window = pipeline_window

        self._transport: Transport | None = None
        self._conn: ClientConnection | None = None
        self._queue: deque[_Op] = deque()  # operations waiting, in call order
        self._pipe: _Pipe | None = None
        self._holder: _Op | None = None  # whose caller drives the connection now
        self._users = 0  # callers inside ``async with client``
        # Set by send_with(): QUIT goes out with the end of the next (and only) message.
        self._quit_after_next = False
        self.last_helo_response: SMTPResponse | None = None
        self._last_ehlo_response: SMTPResponse | None = None
        self.esmtp_extensions: dict[str, str] = {}
        self.supports_esmtp = False
        self.server_auth_methods: list[str] = []
        self._validate_config()

    # -- what an adapter provides ----------

    @abc.abstractmethod
    async def _open_transport(self, options: ConnectOptions) -> Transport:
        """Connect (and for implicit TLS, handshake); map failures to SMTPConnectError."""

    @abc.abstractmethod
    async def _with_deadline(
        self,
        timeout: float | None,
        operation: Callable[[Callable[[float | None], None]], Awaitable[T]],
    ) -> T:
        """Await ``operation(restart)``; past the deadline raise ``SMTPReadTimeoutError``.

        The deadline is ``timeout`` seconds from the start, or from the last call of
        ``restart(seconds)``: ``seconds`` from then (``timeout`` when None). A batch
        restarts it after each message; a stage with its own limit at its start.
        """

    @abc.abstractmethod
    def _build_tls_context(self) -> Any:
        """Make an ``ssl.SSLContext`` from the TLS options (or return ``tls_context``)."""

    @abc.abstractmethod
    def _new_event(self) -> Any:
        """An event (``set()``, ``await wait()``) on the adapter's event loop."""

    @abc.abstractmethod
    async def _default_local_hostname(self) -> str:
        """The local machine's fully qualified name, without blocking the loop."""

    # -- configuration ----------

    def _update_settings_from_kwargs(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            if key in ("use_tls", "validate_certs"):
                if value is not None:
                    setattr(self, key, value)
                continue
            if value is _default:
                continue
            if key == "username":
                self._login_username = value
            elif key == "password":
                self._login_password = value
            elif key == "oauth_token_generator":
                self._oauth_token_generator = value
            elif key == "start_tls":
                self._start_tls_on_connect = value
            else:
                setattr(self, key, value)

    def _validate_config(self) -> None:
        if self._login_password is not None and self._oauth_token_generator is not None:
            raise ValueError("password and oauth_token_generator are mutually exclusive")
        if self._start_tls_on_connect and self.use_tls:
            raise ValueError("The start_tls and use_tls options are not compatible.")
        if self.tls_context is not None and self.client_cert is not None:
            raise ValueError("Either a TLS context or a certificate/key must be provided")
        if self.sock is not None and self.socket_path is not None:
            raise ValueError("Either a socket or a socket path must be provided, not both")
        if (self.sock or self.socket_path) and self.port is not None:
            raise ValueError("If using a socket, port is not required")
        if (self.sock or self.socket_path) and self.use_tls and self.hostname is None:
            raise ValueError("If using a socket with TLS, hostname is required")
        if self.local_hostname is not None:
            self.local_hostname = validate_local_hostname(self.local_hostname)
        if self.hostname is not None and any(c in self.hostname for c in "\r\n\0"):
            raise ValueError("The hostname param contains prohibited newline characters")

    def _get_default_port(self) -> int:
        if self.use_tls:
            return SMTP_TLS_PORT
        if self._start_tls_on_connect:
            return SMTP_STARTTLS_PORT
        return SMTP_PORT

    def _timeout(self, timeout: Timeout) -> float | None:
        return self.timeout if timeout is _default else timeout

    # -- state ----------

    @property
    def is_connected(self) -> bool:
        """True while a connection is open and usable."""
        return (
            self._transport is not None
            and self._conn is not None
            and self._conn.state not in (State.CLOSED, State.ERROR)
        )

    @property
    def transport(self) -> Any:
        """The underlying transport (as in aiosmtplib), or None when not connected.

        On asyncio, the event loop's transport (an SSL transport once TLS is active),
        with ``get_extra_info()``; on anyio, an object with the same methods.
        """
        return self._transport.transport if self._transport is not None else None

    @property
    def protocol(self) -> Any:
        """The adapter's stream object under the client, or None when not connected.

        smtp-sansio's protocol machine is :attr:`protocol_connection`; this is the byte
        stream it runs over (aiosmtplib programs read ``smtp.protocol`` to check for a
        connection).
        """
        return self._transport

    @property
    def protocol_connection(self) -> ClientConnection | None:
        """The underlying :class:`smtp_core.ClientConnection` (None when disconnected)."""
        return self._conn

    @property
    def last_ehlo_response(self) -> SMTPResponse | None:
        """The last successful EHLO reply."""
        return self._last_ehlo_response

    @last_ehlo_response.setter
    def last_ehlo_response(self, response: SMTPResponse | None) -> None:
        self._last_ehlo_response = response

    @property
    def is_ehlo_or_helo_needed(self) -> bool:
        """True until an EHLO or HELO succeeded on this connection."""
        return self.last_ehlo_response is None and self.last_helo_response is None

    def supports_extension(self, extension: str, /) -> bool:
        """Whether the server advertised ``extension`` in its EHLO reply."""
        return extension.lower() in self.esmtp_extensions

    def get_transport_info(self, key: str) -> Any:
        """Transport information: peername, sockname, socket, sslcontext, peercert, cipher..."""
        if not self.is_connected or self._transport is None:
            raise SMTPServerDisconnected("Server not connected")
        return self._transport.get_extra_info(key)

    def _reset_server_state(self) -> None:
        self.last_helo_response = None
        self._last_ehlo_response = None
        self.esmtp_extensions = {}
        self.supports_esmtp = False
        self.server_auth_methods = []

    def _sync_capabilities(self) -> None:
        conn = self._conn
        if conn is None:
            return
        caps = conn.capabilities
        self.esmtp_extensions = caps.as_esmtp_extensions()
        self.server_auth_methods = [mech.lower() for mech in caps.auth_mechanisms]
        self.supports_esmtp = conn.extended

    def _require_connection(self, message: str = "Server not connected") -> ClientConnection:
        if not self.is_connected or self._conn is None:
            raise SMTPServerDisconnected(message)
        return self._conn

    # -- turns ----------

    def _holds_turn(self) -> bool:
        return id(self) in _holding.get()

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Hold the connection for a run of plain commands, in call order.

        Re-entrant: a public method called by another inside one turn goes straight on.
        A parked mail pipeline is finished first (its messages keep their order).
        """
        if self._holds_turn():
            yield
            return
        op = _Op()
        self._queue.append(op)
        try:
            await self._wait_for_baton(op)
            if self._pipe is not None:
                await self._drive([op], _default)
            self._queue.remove(op)
            token = _holding.set(_holding.get() | {id(self)})
            try:
                yield
            finally:
                _holding.reset(token)
        finally:
            op.done = True
            if op in self._queue:
                self._queue.remove(op)
            self._release(op)

    async def _wait_for_baton(self, op: _Op) -> None:
        """Wait until ``op``'s caller may drive the connection (or ``op`` is done)."""
        while not op.done:
            if self._holder is None and self._next_owner() is op:
                self._holder = op
            if self._holder is op:
                return
            op.event = self._new_event()
            try:
                await op.event.wait()
            except BaseException:
                op.gone = True
                self._release(op)
                raise
            finally:
                op.event = None

    def _next_owner(self) -> _Op | None:
        """The oldest unfinished operation whose caller still waits for it."""
        if self._pipe is not None:
            for op in self._pipe.inflight:
                if not op.gone and not op.done:
                    return op
        for op in self._queue:
            if not op.gone and not op.done:
                return op
        return None

    def _release(self, op: _Op) -> None:
        """``op``'s caller stops driving (if it did): the baton goes to the next caller."""
        if self._holder is not op:
            return
        self._holder = self._next_owner()
        if self._holder is not None:
            self._holder.wake()

    async def _drive(self, mine: list[_Op], timeout: Timeout) -> None:
        """Drive the connection for the baton holder until its operations are done.

        Messages at the head of the queue go into the mail pipeline; a turn of plain
        commands at the head waits until the pipeline has drained.
        """
        while not all(op.done for op in mine):
            if self._pipe is None:
                head = next((op for op in self._queue if not op.gone), None)
                if head is None or head.envelope is None:
                    return  # a turn of commands comes first (maybe ``mine``)
                self._start_pipe()
            await self._run_pipe(mine, timeout)
            if self._pipe is None and not self.is_connected:
                self._fail_queued(SMTPServerDisconnected("Connection lost"))
                return

    def _start_pipe(self) -> None:
        conn = self._require_connection()
        pipe: _Pipe

        def take() -> Envelope | None:
            queue = self._queue
            while queue and queue[0].gone and queue[0].envelope is not None:
                queue.popleft()  # its caller left before it was sent
            if not queue or queue[0].envelope is None:
                return None
            op = queue.popleft()
            pipe.inflight.append(op)
            envelope = op.envelope
            assert envelope is not None
            envelope.context = op
            return envelope

        def finished(envelope: Envelope, outcome: Any) -> None:
            op = envelope.context
            assert isinstance(op, _Op)
            pipe.inflight.remove(op)
            op.finish(outcome)

        quit_after, self._quit_after_next = self._quit_after_next, False
        pipe = _Pipe(
            mail_pipeline(conn, take, finished, window=self.pipeline_window, quit_after=quit_after)
        )
        self._pipe = pipe

    async def _run_pipe(self, mine: list[_Op], timeout: Timeout) -> None:
        pipe = self._pipe
        assert pipe is not None
        try:
            await self._drive_flow(pipe, mine, timeout)
        except BaseException as exc:
            others = [op for op in pipe.inflight if not op.gone and op not in mine]
            mapped = _mapped(exc)
            if (
                not isinstance(exc, Exception)
                and type(pipe.request) is Read
                and (others or any(not op.gone for op in self._queue))
            ):
                # Cancelled while waiting for a reply: nothing is out of step; the
                # pipeline is handed on as it stands.
                for op in mine:
                    op.gone = True
                raise
            await self._break(mapped)
            if mapped is not exc:
                raise mapped from exc
            raise

    async def _drive_flow(self, pipe: _Pipe, mine: list[_Op], timeout: Timeout) -> None:
        """The trampoline: perform the pipeline's requests until ``mine`` are done."""
        flow = pipe.flow
        transport = self._transport
        if transport is None:
            raise SMTPServerDisconnected("Connection lost")
        only = mine[0] if len(mine) == 1 else None

        async def trampoline(restart: Callable[[float | None], None]) -> None:
            request = pipe.request
            while True:
                # The requests of every message first, without a call each.
                kind = type(request)
                if kind is Read:
                    value = await transport.read()
                elif kind is Write:
                    await transport.write(request.data)
                    value = None
                    self._feed_unsolicited(request)
                elif request is None:
                    value = None
                    self._feed_unsolicited(request)
                elif kind is Progress:
                    restart(None)  # the timeout applies to each message of a batch
                    value = None
                else:
                    value = await self._perform(request, restart)
                    self._feed_unsolicited(request)
                try:
                    request = pipe.request = flow.send(value)
                except StopIteration:
                    self._pipe = None
                    return
                except BaseException:
                    self._pipe = None
                    raise
                if only is not None:
                    if only.done:
                        return
                elif all(op.done for op in mine):
                    return

        await self._within(self._timeout(timeout), trampoline)

    def _feed_unsolicited(self, request: Any) -> None:
        """Bytes that arrived unasked go to the machine before the flow sends its next
        command, so they can never pass for that command's reply. They can only arrive
        while the client waited for something other than a read (which takes all)."""
        if type(request) is Read or type(request) in _NO_WAIT:
            return
        transport = self._transport
        conn = self._conn
        if transport is None or conn is None:
            return
        early = transport.take_unread()
        idle = not conn.awaiting_replies and conn.state in _OWED_NOTHING
        if not early and idle:
            early = transport.peek_unsolicited()
        if early:
            conn.receive_data(early)
            if idle:
                _closed_while_idle(conn)

    async def _perform(self, request: Any, restart: Callable[[float | None], None]) -> Any:
        """Carry out one I/O request of a flow and return what the flow is sent back."""
        transport = self._transport
        if transport is None:
            raise SMTPServerDisconnected("Connection lost")
        kind = type(request)
        if kind is Write:
            await transport.write(request.data)
            return None
        if kind is Read:
            return await transport.read()
        if kind is Stage:
            limit = self._stage_limit(request.name)
            if limit is not None:
                restart(limit)
            return None
        if kind is Progress:
            restart(None)  # the timeout applies to each message of a batch
            return None
        if kind is NextChunk:
            try:
                return await request.source.__anext__()
            except StopAsyncIteration:
                return None
        if kind is UpgradeTLS:
            # Bytes the transport read past the 220 reply go to the machine, which
            # refuses them (STARTTLS response injection) before any TLS starts.
            early = transport.take_unread()
            if early and self._conn is not None:
                self._conn.receive_data(early)
            await transport.start_tls(self._build_tls_context(), request.server_hostname)
            return None
        raise AssertionError(f"unknown request {request!r}")  # pragma: no cover

    def _stage_limit(self, name: str) -> float | None:
        if name == "command":
            return self.timeouts.command
        if name == "data":
            return self.timeouts.data
        return None

    async def _break(self, exc: BaseException) -> None:
        """The session is out of step: close it, and tell every waiting message its fate."""
        reason = _mapped(exc)
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            for op in list(pipe.inflight):
                assert op.envelope is not None
                op.finish(lost(op.envelope, reason))
            pipe.flow.close()
        self._fail_queued(SMTPServerDisconnected(_message(reason)))
        await self._abort()

    def _fail_queued(self, reason: SMTPException) -> None:
        """Messages still queued were never sent; turns waiting are woken to find the
        connection gone."""
        for op in list(self._queue):
            if op.envelope is not None:
                self._queue.remove(op)
                op.finish(lost(op.envelope, reason))
            else:
                op.wake()

    async def _submit(self, envelopes: list[Envelope], timeout: Timeout) -> list[Any]:
        """Send ``envelopes`` through the mail pipeline, with whatever else is being sent.

        Returns one outcome per envelope: a ``TransactionResult`` or the exception the
        message met (each telling whether it was never sent or its fate is unknown).
        """
        if self._holds_turn():
            raise LocalProtocolError("cannot send a message inside a turn of commands")
        ops = [_Op(envelope) for envelope in envelopes]
        self._queue.extend(ops)
        try:
            while not all(op.done for op in ops):
                waiting = next(op for op in ops if not op.done)
                await self._wait_for_baton(waiting)
                if waiting.done:
                    continue
                if not self.is_connected and self._pipe is None:
                    self._fail_queued(SMTPServerDisconnected("Connection lost"))
                    continue
                await self._drive(ops, timeout)
                if not all(op.done for op in ops):
                    # A turn of commands was queued before the rest of these messages.
                    self._release(waiting)
        except Exception as exc:
            if isinstance(exc, SMTPException) and all(op.done for op in ops):
                return [op.outcome for op in ops]  # each told its own fate
            for op in ops:
                op.gone = True
                if op in self._queue:
                    self._queue.remove(op)
            raise
        except BaseException:
            for op in ops:
                op.gone = True
                if op in self._queue:
                    self._queue.remove(op)  # never sent
            raise
        finally:
            for op in ops:
                self._release(op)
        return [op.outcome for op in ops]

    async def _run(self, flow: Flow[T], timeout: Timeout = _default) -> T:
        """Run a flow of plain commands (inside a turn); close the session when it breaks."""
        conn = self._require_connection()
        transport = self._transport
        assert transport is not None

        async def trampoline(restart: Callable[[float | None], None]) -> T:
            value: Any = None
            request: Any = None
            while True:
                self._feed_unsolicited(request)
                try:
                    request = flow.send(value)
                except StopIteration as stop:
                    result: T = stop.value
                    return result
                value = await self._perform(request, restart)

        try:
            result = await self._within(self._timeout(timeout), trampoline)
        except RemoteProtocolError as exc:
            await self._abort()
            raise SMTPResponseException(-1, f"Malformed SMTP response: {exc}") from exc
        except (SMTPResponseException, SMTPRecipientsRefused, LocalProtocolError):
            if not self._is_clean(conn):
                await self._abort()
            raise
        except BaseException:
            # Timeouts, disconnects, cancellation: the session is out of step; never reuse it.
            await self._abort()
            raise
        finally:
            flow.close()
        if not self._is_clean(conn):
            await self._abort()
        return result

    async def _within(
        self,
        timeout: float | None,
        operation: Callable[[Callable[[float | None], None]], Awaitable[T]],
    ) -> T:
        """The adapter's deadline; a timeout of zero (or less) expires at once."""
        if timeout is not None and timeout <= 0:
            raise SMTPReadTimeoutError("Timed out waiting for server response")
        return await self._with_deadline(timeout, operation)

    def _is_clean(self, conn: ClientConnection) -> bool:
        if conn is not self._conn:
            return False
        if conn.state is State.QUIT:
            return conn.awaiting_replies == 1  # QUIT sent with the last message; see quit()
        return not conn.awaiting_replies and conn.state in _CLEAN

    # -- connection ----------

    async def __aenter__(self: _SelfT) -> _SelfT:
        self._users += 1
        try:
            async with self._turn():
                if not self.is_connected:
                    await self.connect()
        except BaseException:
            self._users -= 1
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._users = max(0, self._users - 1)
        if self._users:
            return  # another caller still uses the session
        if isinstance(exc, (ConnectionError, TimeoutError)):
            await self._abort()
            return
        try:
            if self.is_connected:
                await self.quit()
        except (SMTPServerDisconnected, SMTPResponseException, SMTPTimeoutError):
            pass
        finally:
            await self._abort()

    async def connect(
        self,
        *,
        hostname: str | Literal[Default.token] | None = _default,
        port: int | Literal[Default.token] | None = _default,
        username: str | bytes | Literal[Default.token] | None = _default,
        password: str | bytes | Literal[Default.token] | None = _default,
        oauth_token_generator: SMTPTokenGenerator | Literal[Default.token] | None = _default,
        local_hostname: str | Literal[Default.token] | None = _default,
        source_address: tuple[str, int] | Literal[Default.token] | None = _default,
        timeout: Timeout = _default,
        use_tls: bool | None = None,
        start_tls: bool | Literal[Default.token] | None = _default,
        validate_certs: bool | None = None,
        client_cert: str | Literal[Default.token] | None = _default,
        client_key: str | Literal[Default.token] | None = _default,
        tls_context: Any = _default,
        cert_bundle: str | Literal[Default.token] | None = _default,
        socket_path: Any = _default,
        sock: Any = _default,
    ) -> SMTPResponse:
        """Connect, read the greeting, then STARTTLS and log in as configured.

        Options given here override those given to the constructor and are kept for
        later connections, except ``timeout``, which applies to this connect only.
        With ``start_tls=None`` the connection is upgraded when the server offers
        STARTTLS; ``True`` requires it (``SMTPException`` when not offered); ``False``
        never.
        """
        self._update_settings_from_kwargs(
            hostname=hostname,
            port=port,
            username=username,
            password=password,
            oauth_token_generator=oauth_token_generator,
            local_hostname=local_hostname,
            source_address=source_address,
            use_tls=use_tls,
            start_tls=start_tls,
            validate_certs=validate_certs,
            client_cert=client_cert,
            client_key=client_key,
            tls_context=tls_context,
            cert_bundle=cert_bundle,
            socket_path=socket_path,
            sock=sock,
        )
        self._validate_config()
        async with self._turn():
            if self.is_connected:
                raise SMTPException("SMTP instance is already connected")
            if self.local_hostname is None:
                self.local_hostname = validate_local_hostname(await self._default_local_hostname())
            try:
                response = await self._create_connection(self._timeout(timeout))
                await self._maybe_start_tls_on_connect(timeout)
                await self._maybe_login_on_connect(timeout)
            except BaseException:
                await self._abort()
                raise
        return response

    async def _create_connection(self, timeout: float | None) -> SMTPResponse:
        hostname = self.hostname or "localhost"
        port = self.port
        if self.sock is None and self.socket_path is None and port is None:
            port = self._get_default_port()
        connect_timeout = self.timeouts.connect if self.timeouts.connect is not None else timeout
        if connect_timeout is not None and connect_timeout <= 0:
            raise SMTPConnectTimeoutError(f"Timed out connecting to {hostname} on port {port}")
        options = ConnectOptions(
            hostname=hostname,
            port=port,
            use_tls=self.use_tls,
            tls_context=self._build_tls_context() if self.use_tls else None,
            server_hostname=self.hostname if self.use_tls else None,
            socket_path=self.socket_path,
            sock=self.sock,
            source_address=self.source_address,
            timeout=connect_timeout,
        )
        self._transport = await self._open_transport(options)
        self._conn = ClientConnection(local_hostname=self._ehlo_name(), lmtp=self._lmtp)
        if self.use_tls:
            self._conn.mark_tls()
        try:
            greeting_timeout = self.timeouts.greeting
            reply = await self._run(
                greeting(self._conn), timeout if greeting_timeout is None else greeting_timeout
            )
        except SMTPServerDisconnected as exc:
            raise SMTPConnectError(f"Error connecting to {hostname} on port {port}: {exc}") from exc
        except SMTPTimeoutError as exc:
            raise SMTPConnectTimeoutError("Timed out waiting for server ready message") from exc
        return response(reply)

    def _ehlo_name(self) -> str | None:
        """The name for EHLO: ``local_hostname``, or an address literal if it is not a domain."""
        name = self.local_hostname
        if name is None:
            return None
        try:
            Ehlo(name)
        except LocalProtocolError:
            return "[127.0.0.1]"
        return name

    @abc.abstractmethod
    async def quit(self, *, timeout: Timeout = _default) -> SMTPResponse:
        """QUIT, then close (see the commands)."""

    @abc.abstractmethod
    async def _maybe_start_tls_on_connect(self, timeout: Timeout) -> None:
        """STARTTLS after the greeting, as configured (see the commands)."""

    @abc.abstractmethod
    async def _maybe_login_on_connect(self, timeout: Timeout) -> None:
        """Log in after connecting, as configured (see AUTH)."""

    async def _ehlo_or_helo_if_needed(self, timeout: Timeout = _default) -> None:
        if self.is_ehlo_or_helo_needed:
            conn = self._require_connection()
            reply = await self._run(hello(conn, self.local_hostname), timeout)
            self._record_hello(reply)

    def _record_hello(self, reply: Reply) -> None:
        conn = self._conn
        if conn is not None and conn.extended:
            self._last_ehlo_response = response(reply)
        else:
            self.last_helo_response = response(reply)
        self._sync_capabilities()

    def close(self) -> None:
        """Close the connection at once (no QUIT) and forget the server's state."""
        transport, self._transport = self._transport, None
        self._conn = None
        self._forget_pipe()
        if transport is not None:
            transport.close()
        self._reset_server_state()

    async def aclose_quietly(self) -> None:
        """Close the connection (no QUIT) and release the transport; never raises."""
        await self._abort()

    async def _abort(self) -> None:
        """Close from async code: also releases the transport's resources (even when cancelled)."""
        transport, self._transport = self._transport, None
        self._conn = None
        self._forget_pipe()
        self._reset_server_state()
        if transport is not None:
            await transport.aclose()

    def _forget_pipe(self) -> None:
        """Whatever was in flight ends with the connection."""
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            for op in list(pipe.inflight):
                assert op.envelope is not None
                op.finish(lost(op.envelope, "Connection closed"))
            pipe.flow.close()
        for op in list(self._queue):
            if op.envelope is not None and op is not self._holder:
                self._queue.remove(op)
                op.finish(lost(op.envelope, "Connection closed"))
            else:
                op.wake()


_NO_WAIT = frozenset({Stage, Progress})


def _mapped(exc: BaseException) -> BaseException:
    """The exception callers are told for a session that broke under them."""
    if isinstance(exc, RemoteProtocolError):
        return SMTPResponseException(-1, f"Malformed SMTP response: {exc}")
    return exc


def _message(exc: BaseException) -> str:
    if isinstance(exc, SMTPServerDisconnected) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, SMTPException):
        return f"Connection lost: {exc}"
    return f"Connection lost: {type(exc).__name__}"


__all__ += ["Outcome", "TransactionResult"]
