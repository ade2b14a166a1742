"""The client's turns on its one connection, and the trampoline that drives flows.

Every task that calls into a client shares its connection. Who drives it is decided
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
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Sized
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeVar

from ._connection import ClientConnection
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import CommandReply
from ._exceptions import (
    SMTPException,
    SMTPReadTimeoutError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
)
from ._flows import Flow, NextChunk, Progress, Read, Stage, UpgradeTLS, Write
from ._native import caused_by, mypyc_attr
from ._response import Default, _default
from ._state import State
from ._transaction import Envelope, lost, mail_pipeline

__all__ = ["TurnsBase", "Transport", "Timeouts", "Timeout"]

T = TypeVar("T")
Timeout = float | Literal[Default.token] | None

# States in which, with no command awaiting a reply, the server has nothing to say.
_OWED_NOTHING: Final = frozenset(
    {State.HELLO, State.READY, State.MAIL, State.RCPT, State.BDAT, State.AUTH_CHALLENGE}
)
_CLEAN: Final = frozenset({State.HELLO, State.READY, State.MAIL, State.RCPT, State.BDAT})
# Module constants: an enum member read through its class costs a lookup each time.
_ENDED: Final = frozenset({State.CLOSED, State.ERROR})
_HELLO: Final = State.HELLO

# The clients whose connection the current task holds (so that a public method called
# by another, inside one turn, does not wait for itself).
_holding: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "smtp_sansio_holding", default=frozenset()
)


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

    async def read_wakeable(self) -> bytes | None:
        """:meth:`read`, or None as soon as :meth:`wake` is called (or was, since the
        last such read)."""

    def wake(self) -> None:
        """End a :meth:`read_wakeable` under way (or the next one) with None."""

    def take_unread(self) -> bytes:
        """Remove and return bytes received but not yet returned by :meth:`read`."""

    @property
    def unread(self) -> Sized | None:
        """Bytes received and not yet returned by :meth:`read`, as a sized collection
        (empty when there are none: looked at before :meth:`take_unread` is called);
        None for a transport that reads only when asked (whose :meth:`take_unread` has
        nothing, and whose :meth:`peek_unsolicited` shows what waits in the socket)."""

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

    def peer_closed(self) -> bool:
        """True once the server is known to have closed the connection (without waiting)."""

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


class _Turn:
    """``async with client._turn():`` (see :meth:`TurnsBase._turn`)."""

    __slots__ = ("client", "op", "token")

    def __init__(self, client: TurnsBase) -> None:
        self.client = client
        self.op: _Op | None = None
        self.token: contextvars.Token[frozenset[int]] | None = None

    async def __aenter__(self) -> None:
        client = self.client
        if _holds_turn(client):
            return  # re-entered: the outer turn goes on
        op = self.op = _Op()
        client._queue.append(op)
        try:
            await client._wait_for_baton(op)
            if client._pipe is not None and not await client._settle_pipe():
                await _drive(client, [op], _default)
            client._queue.remove(op)
            self.token = _holding.set(_holding.get() | {id(client)})
        except BaseException:
            self._end()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        if self.op is not None:
            if self.token is not None:
                _holding.reset(self.token)
            self._end()

    def _end(self) -> None:
        op = self.op
        assert op is not None
        client = self.client
        op.done = True
        if op in client._queue:
            client._queue.remove(op)
        _release(client, op)


@mypyc_attr(allow_interpreted_subclasses=True)
class TurnsBase(abc.ABC):
    """Turns on the connection and the trampoline; the session builds on it."""

    _transport: Transport | None
    _conn: ClientConnection | None
    _queue: deque[_Op]
    _pipe: _Pipe | None
    _holder: _Op | None
    _quit_after_next: bool
    timeout: float | None
    timeouts: Timeouts
    pipeline_window: int

    def _init_turns(self) -> None:
        self._transport = None
        self._conn = None
        self._queue = deque()  # operations waiting, in call order
        self._pipe = None
        self._holder = None  # whose caller drives the connection now
        # Set by send_with(): QUIT goes out with the end of the next (and only) message.
        self._quit_after_next = False

    # -- what an adapter provides ----------

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
    async def _abort(self) -> None:
        """Close at once and release the transport (see the session)."""

    @abc.abstractmethod
    async def _ehlo_or_helo_if_needed(self, timeout: Timeout = _default) -> None:
        """EHLO (or HELO) unless one succeeded on this connection (see the session)."""

    # -- state ----------

    @property
    def is_connected(self) -> bool:
        """True while a connection is open and usable: False as soon as the server has
        closed it, even while the client was idle."""
        return _is_open(self) and not self._transport.peer_closed()  # type: ignore[union-attr]

    def _open(self) -> bool:
        """The session is not over as far as the client has seen (no system call)."""
        return _is_open(self)

    def _require_connection(self, message: str = "Server not connected") -> ClientConnection:
        if not _is_open(self) or self._conn is None:
            raise SMTPServerDisconnected(message)
        return self._conn

    def _timeout(self, timeout: Timeout) -> float | None:
        return _timeout_of(self, timeout)

    # -- turns ----------

    def _holds_turn(self) -> bool:
        return _holds_turn(self)

    def _turn(self) -> _Turn:
        """Hold the connection for a run of plain commands, in call order.

        Re-entrant: a public method called by another inside one turn goes straight on.
        A parked mail pipeline is finished first (its messages keep their order).
        """
        return _Turn(self)

    async def _wait_for_baton(self, op: _Op) -> None:
        """Wait until ``op``'s caller may drive the connection (or ``op`` is done)."""
        while not op.done:
            if self._holder is None and _next_owner(self) is op:
                self._holder = op
            if self._holder is op:
                return
            op.event = self._new_event()
            try:
                await op.event.wait()
            except BaseException:
                op.gone = True
                _release(self, op)
                raise
            finally:
                op.event = None

    async def _settle_pipe(self) -> bool:
        """End a parked pipeline at once when ending it needs no I/O: nothing in flight,
        no message queued for it, parked between two messages. True when it ended."""
        pipe = self._pipe
        if pipe is None:
            return True
        if pipe.inflight or type(pipe.request) is not Progress:
            return False
        for op in self._queue:
            if op.envelope is None:
                break  # a turn of commands comes first: the pipeline takes nothing more
            if not op.gone:
                return False
        try:
            pipe.request = pipe.flow.send(None)
            return False
        except StopIteration:
            self._pipe = None
            return True
        except BaseException as exc:
            failure: BaseException | None = exc
        # Awaited after the handler, not in it (see smtp_core._native).
        try:
            assert failure is not None
            raise await self._broken(failure)
        finally:
            failure = None  # no reference cycle through this frame (see _run)

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
            limit = _stage_limit(self, request.name)
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

    async def _broken(self, failure: BaseException, pipe: _Pipe | None = None) -> BaseException:
        """:meth:`_break` the session under ``failure``; what callers are told (raised by
        the caller, whose frame then lets go of it: see :meth:`_run`)."""
        mapped = _mapped(failure)
        await self._break(mapped, pipe)
        return caused_by(mapped, failure) if mapped is not failure else failure

    async def _break(self, exc: BaseException, pipe: _Pipe | None = None) -> None:
        """The session is out of step: close it, and tell every waiting message its fate.

        ``pipe``: the pipeline that broke, when its flow raised (the trampoline has let
        go of it already); its messages in flight are told too.
        """
        reason = _mapped(exc)
        if pipe is None:
            pipe = self._pipe
        self._pipe = None
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

    def _submit(
        self, envelopes: list[Envelope], timeout: Timeout, covered: bool = False
    ) -> Awaitable[list[Any]]:
        """Send ``envelopes`` through the mail pipeline (see :func:`_submit`)."""
        return _submit(self, envelopes, timeout, covered)

    async def _run(self, flow: Flow[T], timeout: Timeout = _default) -> T:
        """Run a flow of plain commands (inside a turn); close the session when it breaks."""
        conn = self._require_connection()
        transport = self._transport
        assert transport is not None

        async def trampoline(restart: Callable[[float | None], None]) -> T:
            value: Any = None
            _feed_unsolicited(self, None)
            while True:
                try:
                    request: Any = flow.send(value)
                except StopIteration as stop:
                    result: T = stop.value
                    return result
                # Reads, writes and stages without a call each: a command is all three.
                kind = type(request)
                if kind is Read:
                    value = await transport.read()
                elif kind is Write:
                    await transport.write(request.data)
                    value = None
                    _feed_unsolicited(self, request)
                elif kind is Stage:
                    limit = _stage_limit(self, request.name)
                    if limit is not None:
                        restart(limit)
                    value = None
                else:
                    value = await self._perform(request, restart)
                    _feed_unsolicited(self, request)

        failure: BaseException | None = None
        try:
            result = await _within(self, _timeout_of(self, timeout), trampoline)
        except BaseException as exc:
            failure = exc
        finally:
            flow.close()
        # Awaited after the handler, not in it (see smtp_core._native).
        if failure is None:
            if not self._is_clean(conn):
                await self._abort()
            return result
        try:
            if isinstance(failure, RemoteProtocolError):
                await self._abort()
                raise caused_by(
                    SMTPResponseException(-1, f"Malformed SMTP response: {failure}"), failure
                )
            if isinstance(
                failure, (SMTPResponseException, SMTPRecipientsRefused, LocalProtocolError)
            ):
                if not self._is_clean(conn):
                    await self._abort()
                raise failure
            # Timeouts, disconnects, cancellation: the session is out of step; never
            # reuse it.
            await self._abort()
            raise failure
        finally:
            # The exception's traceback holds this frame: no reference cycle through it
            # (which would keep the connection's objects until a garbage collection).
            failure = None

    def _within(
        self,
        timeout: float | None,
        operation: Callable[[Callable[[float | None], None]], Awaitable[T]],
    ) -> Awaitable[T]:
        """The adapter's deadline; a timeout of zero (or less) expires at once.

        (A plain function returning the deadline's awaitable: one frame fewer.)
        """
        return _within(self, timeout, operation)

    def _is_clean(self, conn: ClientConnection) -> bool:
        if conn is not self._conn:
            return False
        if conn.state is State.QUIT:
            return conn.awaiting_replies == 1  # QUIT sent with the last message; see quit()
        return not conn.awaiting_replies and conn.state in _CLEAN

    # -- connection ----------

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


# -- the turns' per-message helpers: functions, not methods, so that the compiled
# build calls them directly (a method of a class that interpreted classes extend is
# looked up by name at each call).


async def _submit(
    client: TurnsBase, envelopes: list[Envelope], timeout: Timeout, covered: bool = False
) -> list[Any]:
    """Send ``envelopes`` through the mail pipeline, with whatever else is being sent.

    Returns one outcome per envelope: a ``TransactionResult`` or the exception the
    message met (each telling whether it was never sent or its fate is unknown).
    ``covered``: see :func:`_run_pipe`.
    """
    if _holds_turn(client):
        raise LocalProtocolError("cannot send a message inside a turn of commands")
    ops = [_Op(envelope) for envelope in envelopes]
    client._queue.extend(ops)
    if client._pipe is not None and client._holder is not None and client._transport is not None:
        # The pipeline may be waiting for a reply with room for these: wake it.
        client._transport.wake()
    try:
        while not _all_done(ops):
            waiting = _first_pending(ops)
            if client._holder is None and _next_owner(client) is waiting:
                client._holder = waiting  # nobody drives: no wait
            else:
                await client._wait_for_baton(waiting)
            if waiting.done:
                continue
            if not _is_open(client) and client._pipe is None:
                client._fail_queued(SMTPServerDisconnected("Connection lost"))
                await client._abort()
                continue
            await _drive(client, ops, timeout, covered)
            if not _all_done(ops):
                # A turn of commands was queued before the rest of these messages.
                _release(client, waiting)
    except Exception as exc:
        if isinstance(exc, SMTPException) and _all_done(ops):
            return [op.outcome for op in ops]  # each told its own fate
        for op in ops:
            op.gone = True
            if op in client._queue:
                client._queue.remove(op)
        raise
    except BaseException:
        for op in ops:
            op.gone = True
            if op in client._queue:
                client._queue.remove(op)  # never sent
        raise
    finally:
        for op in ops:
            _release(client, op)
    return [op.outcome for op in ops]


async def _drive(
    client: TurnsBase, mine: list[_Op], timeout: Timeout, covered: bool = False
) -> None:
    """Drive the connection for the baton holder until its operations are done.

    Messages at the head of the queue go into the mail pipeline; a turn of plain
    commands at the head waits until the pipeline has drained. ``covered``: the
    caller's own deadline passes before ``timeout`` could (see :func:`_run_pipe`).
    """
    while not _all_done(mine):
        if client._pipe is None:
            head = _first_waiting(client._queue)
            if head is None or head.envelope is None:
                return  # a turn of commands comes first (maybe ``mine``)
            if client._conn is not None and client._conn.state is _HELLO:
                # A turn the messages waited behind (STARTTLS) left the session
                # needing EHLO again: say it before their MAIL.
                await client._ehlo_or_helo_if_needed(timeout)
            client._start_pipe()
        await _run_pipe(client, mine, timeout, covered)
        if client._pipe is None and not _is_open(client):
            # The session ended under the pipeline (421, EOF): close it for good.
            client._fail_queued(SMTPServerDisconnected("Connection lost"))
            await client._abort()
            return


async def _run_pipe(
    client: TurnsBase, mine: list[_Op], timeout: Timeout, covered: bool = False
) -> None:
    """The trampoline: perform the pipeline's requests until ``mine`` are done.

    Within ``timeout`` (restarted for each message and stage), unless ``covered``:
    then the caller's total deadline, which runs out first, is the only one (a
    deadline costs a timer on asyncio and a cancel scope on trio).
    """
    pipe = client._pipe
    assert pipe is not None
    flow = pipe.flow
    transport = client._transport
    only = mine[0] if len(mine) == 1 else None

    async def trampoline(restart: Callable[[float | None], None]) -> None:
        if transport is None:
            raise SMTPServerDisconnected("Connection lost")
        request: Any = pipe.request
        # Starting, or parked between two messages for as long as its callers were
        # away: what the server sent meanwhile reaches the machine before the next
        # message's commands, so that it cannot pass for their replies. (The
        # deadline has just started: a parked PROGRESS need not restart it.)
        resumed = request is None or type(request) is Progress
        if resumed:
            _feed_early(client)
        while True:
            # The requests of every message first, without a call each.
            kind = type(request)
            if resumed:
                resumed = False
                value = None
            elif kind is Read:
                if request.wakeable:
                    value = await transport.read_wakeable()
                else:
                    value = await transport.read()
            elif kind is Write:
                await transport.write(request.data)
                value = None
                _feed_early(client)
            elif kind is Stage:
                limit = _stage_limit(client, request.name)
                if limit is not None:
                    restart(limit)
                value = None
            elif kind is Progress:
                restart(None)  # the timeout applies to each message of a batch
                value = None
            else:
                value = await client._perform(request, restart)
                _feed_unsolicited(client, request)
            try:
                request = pipe.request = flow.send(value)
            except StopIteration:
                client._pipe = None
                return
            except BaseException:
                client._pipe = None
                raise
            if only is not None:
                if only.done:
                    return
            elif _all_done(mine):
                return

    try:
        if covered:
            await trampoline(_no_restart)
        else:
            await _within(client, _timeout_of(client, timeout), trampoline)
        return
    except BaseException as exc:
        others = [op for op in pipe.inflight if not op.gone and op not in mine]
        if (
            not isinstance(exc, Exception)
            and client._pipe is pipe  # (None: the flow itself raised, it is over)
            and type(pipe.request) is Read
            and (others or any(not op.gone for op in client._queue))
        ):
            # Cancelled while waiting for a reply: nothing is out of step; the
            # pipeline is handed on as it stands.
            for op in mine:
                op.gone = True
            raise
        failure: BaseException | None = exc
    # Awaited after the handler, not in it (see smtp_core._native).
    try:
        assert failure is not None
        raise await client._broken(failure, pipe)
    finally:
        failure = None  # no reference cycle through this frame (see TurnsBase._run)


def _next_owner(client: TurnsBase) -> _Op | None:
    """The oldest unfinished operation whose caller still waits for it."""
    if client._pipe is not None:
        for op in client._pipe.inflight:
            if not op.gone and not op.done:
                return op
    for op in client._queue:
        if not op.gone and not op.done:
            return op
    return None


def _release(client: TurnsBase, op: _Op) -> None:
    """``op``'s caller stops driving (if it did): the baton goes to the next caller."""
    if client._holder is not op:
        return
    client._holder = _next_owner(client)
    if client._holder is not None:
        client._holder.wake()


def _feed_unsolicited(client: TurnsBase, request: Any) -> None:
    """Bytes that arrived unasked go to the machine before the flow sends its next
    command, so they can never pass for that command's reply. They can only arrive
    while the client waited for something other than a read (which takes all)."""
    if type(request) is Read or type(request) in _NO_WAIT:
        return
    _feed_early(client)


def _feed_early(client: TurnsBase) -> None:
    """Bytes the transport holds, or (while no reply is due) the socket has, go to
    the machine now; while idle, a 421 ends the session and anything else is refused."""
    transport = client._transport
    conn = client._conn
    if transport is None or conn is None:
        return
    idle = not conn.awaiting_replies and conn.state in _OWED_NOTHING
    unread = transport.unread  # (an attribute: no call when nothing came)
    if unread is None:
        early = transport.peek_unsolicited() if idle else b""
    else:
        early = transport.take_unread() if unread else b""
    if early:
        conn.receive_data(early)
        if idle:
            _closed_while_idle(conn)


def _stage_limit(client: TurnsBase, name: str) -> float | None:
    if name == "command":
        return client.timeouts.command
    if name == "data":
        return client.timeouts.data
    return None


def _within(
    client: TurnsBase,
    timeout: float | None,
    operation: Callable[[Callable[[float | None], None]], Awaitable[T]],
) -> Awaitable[T]:
    """:meth:`TurnsBase._within`."""
    if timeout is not None and timeout <= 0:
        raise SMTPReadTimeoutError("Timed out waiting for server response")
    return client._with_deadline(timeout, operation)


def _timeout_of(client: TurnsBase, timeout: Timeout) -> float | None:
    """:meth:`TurnsBase._timeout`."""
    return client.timeout if timeout is _default else timeout


def _holds_turn(client: TurnsBase) -> bool:
    """:meth:`TurnsBase._holds_turn`."""
    return id(client) in _holding.get()


def _is_open(client: TurnsBase) -> bool:
    """:meth:`TurnsBase._open`."""
    conn = client._conn
    return client._transport is not None and conn is not None and conn.state not in _ENDED


_NO_WAIT = frozenset({Stage, Progress})


def _all_done(ops: list[_Op]) -> bool:
    for op in ops:  # noqa: SIM110 - without a generator object (a few per message)
        if not op.done:
            return False
    return True


def _first_pending(ops: list[_Op]) -> _Op:
    """The first of ``ops`` not yet done (there is one)."""
    for op in ops:
        if not op.done:
            return op
    raise AssertionError("every operation is done")  # pragma: no cover


def _first_waiting(queue: deque[_Op]) -> _Op | None:
    """The first queued operation whose caller still waits for it."""
    for op in queue:
        if not op.gone:
            return op
    return None


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


def _no_restart(seconds: float | None) -> None:
    """The restart of a deadline that is not there (see ``_run_pipe``)."""
