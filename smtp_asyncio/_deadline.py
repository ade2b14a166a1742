"""Deadlines on asyncio: one timer per operation that cancels the task when it passes."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from smtp_core import SMTPReadTimeoutError

__all__ = ["with_deadline"]

T = TypeVar("T")

_POOLED = 16  # idle deadlines kept per thread, their timers left running


class _Deadline:
    """One operation's deadline: a timer that cancels the task when it passes.

    The deadline moves at every stage of a flow (several times per message). Moving it
    later only records the new time; the timer checks the record when it fires and, if
    the deadline has moved on, waits again. Only a cancellation this timer made becomes
    a timeout (``Task.uncancel`` tells it from one that came from elsewhere).

    An operation takes far less time than its limit, so once it ends the deadline goes
    back to a pool with its timer still running, and the next operation on the same
    loop takes it: a timer that fires before the deadline it now serves only waits
    again (once per limit's length), so a new connection's stages (connect, greeting,
    EHLO, the message, QUIT) share one timer instead of scheduling and cancelling one
    each. A timer that fires while its deadline is idle does nothing.
    """

    __slots__ = ("armed_for", "fired", "loop", "target", "task", "timeout", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.task: asyncio.Task[Any] | None = None
        self.timeout: float | None = None
        self.fired = False
        self.timer: asyncio.TimerHandle | None = None
        self.armed_for = 0.0  # when the timer fires (uvloop's handles do not say)
        self.target: float | None = None

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._fire)
        self.armed_for = when

    def _fire(self) -> None:
        self.timer = None
        target = self.target
        if target is None or self.fired:
            return
        if target > self.loop.time():
            self._arm(target)
        else:
            self.fired = True
            assert self.task is not None
            self.task.cancel()

    def restart(self, seconds: float | None) -> None:
        limit = self.timeout if seconds is None else seconds
        target = self.target = None if limit is None else self.loop.time() + limit
        if target is not None and (self.timer is None or target < self.armed_for):
            self._arm(target)

    def disarm(self) -> None:
        self.target = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Pool(threading.local):
    """Idle deadlines of this thread's event loop (an event loop runs in one thread)."""

    def __init__(self) -> None:
        self.idle: list[_Deadline] = []


_pool = _Pool()


if sys.version_info >= (3, 11):
    _current_task = asyncio.current_task

    async def with_deadline(
        timeout: float | None,
        operation: Callable[[Callable[[float | None], None]], Awaitable[T]],
    ) -> T:
        """Await ``operation(restart)``; past the deadline raise ``SMTPReadTimeoutError``.

        The deadline is ``timeout`` seconds from now, or ``seconds`` from the last call of
        ``restart(seconds)`` (``timeout`` when None).
        """
        # Once per stage of every connection: taking and starting the deadline and
        # giving it back are written out here, without a call each.
        task = _current_task()
        assert task is not None
        loop = task.get_loop()
        idle = _pool.idle
        while idle:  # the last one given back, usually
            deadline = idle.pop()
            if deadline.loop is loop:
                break
            deadline.disarm()  # another loop's (a loop that ended, typically)
        else:
            deadline = _Deadline(loop)
        deadline.task = task
        deadline.timeout = timeout
        deadline.fired = False
        if timeout is None:
            deadline.target = None
        else:
            target = deadline.target = loop.time() + timeout
            if deadline.timer is None or target < deadline.armed_for:
                deadline._arm(target)
        try:
            result = await operation(deadline.restart)
        except asyncio.CancelledError as exc:
            if deadline.fired and task.uncancel() == 0:
                raise SMTPReadTimeoutError("Timed out waiting for server response") from exc
            raise
        finally:
            # Given back, its timer left running for the next operation (or disarmed
            # when the pool is full).
            fired = deadline.fired
            deadline.target = None
            deadline.task = None
            if len(idle) < _POOLED:
                idle.append(deadline)
            else:
                deadline.disarm()
        if fired:
            task.uncancel()  # it finished as the deadline passed: not a timeout
        return result

else:  # pragma: no cover - Python 3.10: one deadline for the whole operation

    async def with_deadline(
        timeout: float | None,
        operation: Callable[[Callable[[float | None], None]], Awaitable[T]],
    ) -> T:
        """Await ``operation(restart)``; past the deadline raise ``SMTPReadTimeoutError``."""
        try:
            return await asyncio.wait_for(operation(_no_restart), timeout)
        except asyncio.TimeoutError as exc:
            raise SMTPReadTimeoutError("Timed out waiting for server response") from exc


def _no_restart(seconds: float | None) -> None:
    pass
