"""Turns on one connection for the threads that share a client.

Every call is an *operation*, queued in call order: a plain command (or a run of
them) takes the connection for itself; a message joins the connection's mail
pipeline (:func:`smtp_core.flows.mail_pipeline`), which sends messages back to back
while earlier ones are in flight, so threads sharing a client share round trips.

The *baton* (the right to drive the connection) belongs to the thread of the oldest
unfinished operation. It drives until its own operations are done, then hands the
pipeline on, parked between two requests; each thread is told its message's fate the
moment the pipeline knows it. Anything that breaks the session (a timeout, a protocol
error, a lost connection) closes it, and every message in flight or queued is told
whether it was never sent or its fate is unknown.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections import deque
from typing import Any

from smtp_core import ClientConnection, Outcome, SMTPException, State
from smtp_core._native import caused_by, mypyc_attr
from smtp_core.flows import Envelope, lost, mail_pipeline

from ._driver import Channel, Parked
from ._exceptions import SMTPServerDisconnected, SMTPTimeoutError

__all__ = ["Turns", "call_deadline"]


#: The deadline (monotonic) of the call this thread is making (a ``sendmail`` with a
#: total): the commands it runs first (EHLO) and its waits for the connection end by it.
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "smtp_sync_call_deadline", default=None
)


class _PastDeadline(Exception):
    """A message's total deadline passed while its thread waited for the connection."""


class _Batch:
    """The messages one call sends: ``done`` once each has its outcome."""

    __slots__ = ("done", "left")

    def __init__(self, size: int) -> None:
        self.left = size
        self.done = size == 0


class _Op:
    """One thread's piece of work: a message, or (``envelope`` None) a turn of commands."""

    __slots__ = ("batch", "done", "envelope", "gone", "outcome", "thread")

    def __init__(self, envelope: Envelope | None, thread: int, batch: _Batch | None = None) -> None:
        self.envelope = envelope
        self.thread = thread
        self.batch = batch
        self.done = False
        self.gone = False  # its thread stopped waiting
        self.outcome: Any = None

    def finish(self, outcome: Any) -> None:
        """Its fate is known (under the client's lock)."""
        self.outcome = outcome
        self.done = True
        batch = self.batch
        if batch is not None:
            batch.left -= 1
            if batch.left <= 0:
                batch.done = True


class _Pipe:
    __slots__ = ("inflight", "parked")

    def __init__(self) -> None:
        self.inflight: deque[_Op] = deque()  # taken by the pipeline, fate not yet known
        self.parked: Parked


class _Turn:
    """One turn of plain commands (see :meth:`Turns._turn`)."""

    __slots__ = ("client", "op")

    def __init__(self, client: Turns) -> None:
        self.client = client
        self.op: _Op | None = None

    def __enter__(self) -> None:
        client = self.client
        me = threading.get_ident()
        with client._lock:
            if client._holder is None and not client._queue and client._pipe is None:
                client._holder = me  # nobody else: no need to queue
                return
            op = self.op = _Op(None, me)
            client._queue.append(op)
        try:
            client._wait_for_baton([op], me, call_deadline.get())
        except _PastDeadline:
            client._abandon([op])
            exc = SMTPTimeoutError("Timed out: the message was not sent within its total deadline")
            exc.outcome = Outcome.NEVER_SENT
            raise caused_by(exc, None)  # noqa: B904 - mypyc ignores ``from``
        except BaseException:
            client._abandon([op])
            raise
        try:
            if client._pipe is not None:
                client._drain()
        except BaseException:
            client._abandon([op])
            Turns._release(client)
            raise
        with client._lock:
            op.done = True
            client._queue.remove(op)

    def __exit__(self, *exc_info: object) -> None:
        Turns._release(self.client)


_NOTHING = contextlib.nullcontext()


@mypyc_attr(allow_interpreted_subclasses=True)
class Turns:
    """The queue, the baton and the mail pipeline of one client.

    The steps every message takes call each other as ``Turns._step(self, ...)``:
    compiled, that is a direct call, where ``self._step(...)`` on an instance of a
    Python subclass (every client is one) looks the method up by name each time.
    """

    _channel: Channel | None
    pipeline_window: int

    def ehlo_or_helo_if_needed(self) -> None:  # pragma: no cover - the session's
        raise NotImplementedError

    def _init_turns(self) -> None:
        # Sections that only look and change take the lock itself; waiting takes the
        # condition, and it is notified only when someone waits on it.
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        # CPython's Condition keeps the threads waiting on it in this deque (empty:
        # nobody to notify); elsewhere, a list that is never empty: always notify.
        waiters = getattr(self._cv, "_waiters", None)
        self._sleepers: deque[Any] | list[bool] = (
            waiters if isinstance(waiters, deque) else [True]
        )
        self._queue: deque[_Op] = deque()
        self._pipe: _Pipe | None = None
        self._holder: int | None = None  # the thread driving the connection

    # -- the baton ----------

    def _next_owner(self) -> _Op | None:
        pipe = self._pipe
        if pipe is not None:
            for op in pipe.inflight:
                if not op.gone and not op.done:
                    return op
        for op in self._queue:
            if not op.gone and not op.done:
                return op
        return None

    def _wait_for_baton(self, ops: list[_Op], me: int, deadline: float | None = None) -> bool:
        """Wait until this thread may drive (True) or all ``ops`` are done (False).

        Past ``deadline`` (monotonic) raises :class:`_PastDeadline`.
        """
        if ops[-1].done and all(op.done for op in ops):
            return False  # final once true: no need for the lock
        with self._cv:
            while True:
                if all(op.done for op in ops):
                    return False
                if self._holder is None:
                    owner = self._next_owner()
                    if owner is not None and owner.thread == me:
                        self._holder = me
                        return True
                if deadline is None:
                    self._cv.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _PastDeadline
                self._cv.wait(left)

    def _release(self) -> None:
        with self._lock:
            self._holder = None
            if self._sleepers:
                self._cv.notify_all()

    def _abandon(self, ops: list[_Op]) -> None:
        with self._lock:
            for op in ops:
                op.gone = True
                if op in self._queue:
                    self._queue.remove(op)
            if self._sleepers:
                self._cv.notify_all()

    def _turn(self) -> contextlib.AbstractContextManager[None]:
        """Hold the connection for a run of plain commands, in call order (re-entrant).

        A mail pipeline still running is finished first (its messages keep their order).
        """
        if self._holder == threading.get_ident():
            return _NOTHING
        return _Turn(self)

    # -- messages ----------

    def _submit(self, envelopes: list[Envelope], deadline: float | None) -> list[Any]:
        """Send ``envelopes`` through the pipeline with whatever other threads send.

        Returns one outcome per envelope: a ``TransactionResult`` or the exception the
        message met (its ``outcome`` telling whether it was never sent or is unknown).
        """
        me = threading.get_ident()
        if self._holder == me:  # pragma: no cover - the client never does this
            raise RuntimeError("cannot send a message inside a turn of commands")
        batch = _Batch(len(envelopes))
        if len(envelopes) == 1:  # sendmail's: no comprehension to build and run
            ops = [_Op(envelopes[0], me, batch)]
        else:
            ops = [_Op(envelope, me, batch) for envelope in envelopes]
        with self._lock:
            queue = self._queue
            # Nobody else in the client (the pipeline, if parked, carries nobody's
            # message): the baton is this thread's at once.
            pipe = self._pipe
            alone = self._holder is None and not queue and (pipe is None or not pipe.inflight)
            queue.extend(ops)
            if alone:
                self._holder = me
            else:
                driving = self._holder is not None and pipe is not None
                if self._sleepers:
                    self._cv.notify_all()
        if not alone:
            channel = self._channel
            if driving and channel is not None:
                # The pipeline may be waiting for a reply with room for these: wake it.
                channel.wake()
        try:
            if alone:
                try:
                    Turns._drive(self, ops, batch, deadline)
                finally:
                    Turns._release(self)
            while not batch.done and self._wait_for_baton(ops, me, deadline):
                try:
                    Turns._drive(self, ops, batch, deadline)
                finally:
                    Turns._release(self)
        except _PastDeadline:
            # Another thread's work held the connection past this call's deadline.
            return self._give_up(ops)
        except BaseException:
            self._abandon(ops)
            raise
        if len(ops) == 1:
            return [ops[0].outcome]
        return [op.outcome for op in ops]

    def _give_up(self, ops: list[_Op]) -> list[Any]:
        """The total deadline passed while waiting: a message still queued was never
        sent; one the pipeline took (another thread drives it) may still be."""
        outcomes = []
        with self._lock:
            for op in ops:
                if op.done:
                    outcomes.append(op.outcome)
                    continue
                op.gone = True
                queued = op in self._queue
                if queued:
                    self._queue.remove(op)
                exc = SMTPTimeoutError(
                    "Timed out: the message was not sent within its total deadline"
                )
                exc.outcome = Outcome.NEVER_SENT if queued else Outcome.UNKNOWN
                exc.content_started = bool(op.envelope is not None and op.envelope.content_sent)
                outcomes.append(exc)
            if self._sleepers:
                self._cv.notify_all()
        return outcomes

    def _drive(self, ops: list[_Op], batch: _Batch, deadline: float | None) -> None:
        """As the baton holder: drive the pipeline until ``ops`` (``batch``) are done (or
        a turn of commands is next in the queue)."""
        while not batch.done:
            channel = self._channel
            if channel is None or channel.closed:
                self._break(SMTPServerDisconnected("please run connect() first"))
                return
            try:
                channel.check_idle()
            except BaseException as exc:
                self._break(exc)
                if isinstance(exc, SMTPException):
                    return
                raise  # pragma: no cover
            if self._pipe is None:
                head = None
                with self._lock:
                    for op in self._queue:
                        if not op.gone:
                            head = op
                            break
                if head is None or head.envelope is None:
                    return  # a turn of commands comes first
                if channel.conn.state is State.HELLO:
                    # A turn the message waited behind (STARTTLS) left the session
                    # needing EHLO again.
                    self.ehlo_or_helo_if_needed()
                Turns._start_pipe(self, channel.conn)
            pipe = self._pipe
            assert pipe is not None
            try:
                ended = channel.pump(pipe.parked, batch, deadline)
            except BaseException as exc:
                self._break(exc)
                if isinstance(exc, SMTPException) and batch.done:
                    return  # each message was told its fate
                raise
            if ended:
                self._pipe = None
                if channel.conn.state in (State.CLOSED, State.ERROR):  # a 421 ended it
                    self._break(SMTPServerDisconnected("Server closed the connection"))

    def _start_pipe(self, conn: ClientConnection) -> None:
        pipe = _Pipe()
        lock, cv, sleepers, queue = self._lock, self._cv, self._sleepers, self._queue

        def take() -> Envelope | None:
            if not queue:
                # Nothing to take (a message queued just now waits for the next reply
                # or for the baton, as one queued a moment later would).
                return None
            with lock:
                while queue and queue[0].gone and queue[0].envelope is not None:
                    queue.popleft()  # its thread left before it was sent
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
            with lock:
                pipe.inflight.remove(op)
                op.finish(outcome)
                if sleepers:
                    cv.notify_all()

        pipe.parked = Parked(
            mail_pipeline(conn, take, finished, window=self.pipeline_window)
        )
        self._pipe = pipe

    def _drain(self) -> None:
        """As the baton holder: let the pipeline finish (nothing more will be taken),
        within this call's deadline and the limits of the stage the pipeline is in."""
        pipe = self._pipe
        assert pipe is not None
        channel = self._channel
        if channel is None or channel.closed:
            self._break(SMTPServerDisconnected("Connection lost"))
            return
        try:
            channel.pump(pipe.parked, None, call_deadline.get())
        except BaseException as exc:
            self._break(exc)
            raise
        self._pipe = None
        if channel.conn.state in (State.CLOSED, State.ERROR):  # a 421 ended it
            self._break(SMTPServerDisconnected("Server closed the connection"))

    def _break(self, exc: BaseException) -> None:
        """The session is out of step: close it; tell every waiting message its fate.

        The driving thread's messages are told ``exc``; other threads' messages, which
        were waiting behind them, that the connection was lost under them.
        """
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
        me = threading.get_ident()
        under = SMTPServerDisconnected(f"Connection lost while another call was running: {exc}")
        with self._lock:
            pipe, self._pipe = self._pipe, None
            victims = list(pipe.inflight) if pipe is not None else []
            victims += [op for op in self._queue if op.envelope is not None]
            for op in victims:
                if op in self._queue:
                    self._queue.remove(op)
                assert op.envelope is not None
                op.finish(lost(op.envelope, exc if op.thread == me else under))
            if self._sleepers:
                self._cv.notify_all()
        if pipe is not None:
            pipe.parked.flow.close()
