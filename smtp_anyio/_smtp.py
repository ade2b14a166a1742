"""The anyio adapter: the shared client on asyncio or trio.

Each backend's connections use its cheapest primitives that keep anyio's guarantees:
on asyncio, smtp_asyncio's protocol transport and deadline (:mod:`._asyncio`); on
trio, anyio's streams with plain sockets read and written directly, and trio's own
cancel scopes (:mod:`._trio`). Callers' cancel scopes work the same on both.
"""

from __future__ import annotations

import asyncio
import math
import socket
import sys
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, TypeVar

import anyio

from smtp_asyncio._deadline import with_deadline
from smtp_asyncio._tls import build_tls_context
from smtp_core import SMTPReadTimeoutError
from smtp_core._client import ConnectOptions, SMTPClientBase, Transport
from smtp_core._pool import SMTPPoolBase

from ._asyncio import on_asyncio, open_stream_protocol

__all__ = ["SMTP", "LMTP", "SMTPPool"]

T = TypeVar("T")

_DEADLINE_SLACK = 0.005  # seconds


_ON_ASYNCIO = sys.version_info >= (3, 11)  # Task.uncancel()


async def _anyio_deadline(
    timeout: float | None,
    operation: Callable[[Callable[[float | None], None]], Awaitable[T]],
) -> T:
    with anyio.move_on_after(timeout) as scope:

        def restart(seconds: float | None) -> None:
            limit = timeout if seconds is None else seconds
            deadline = math.inf if limit is None else anyio.current_time() + limit
            # The deadline moves at every stage of a flow; moving it by less than
            # 5 ms would only reschedule the backend's timer for nothing.
            if abs(deadline - scope.deadline) > _DEADLINE_SLACK:
                scope.deadline = deadline

        return await operation(restart)
    assert scope.cancelled_caught
    raise SMTPReadTimeoutError("Timed out waiting for server response")


def _trio() -> ModuleType:
    """The trio backend's module, imported when first needed (trio is optional)."""
    global _trio_module
    if _trio_module is None:
        from . import _trio as module

        _trio_module = module
    return _trio_module


_trio_module: ModuleType | None = None


def _new_event() -> Any:
    """An event of the running backend (anyio's Event is a wrapper around one)."""
    if on_asyncio():
        return asyncio.Event()
    return _trio().trio.Event()


class SMTP(SMTPClientBase):
    """An SMTP client with aiosmtplib's API that runs on asyncio and on trio (via anyio).

    ``close()`` ends the connection at once; in async code prefer ``await
    smtp.aclose()``, which also releases the stream.
    """

    async def _open_transport(self, options: ConnectOptions) -> Transport:
        if on_asyncio():
            return await open_stream_protocol(options, self._with_deadline)
        transport: Transport = await _trio().open_trio_transport(options)
        return transport

    async def _with_deadline(
        self,
        timeout: float | None,
        operation: Callable[[Callable[[float | None], None]], Awaitable[T]],
    ) -> T:
        # On asyncio, one timer that cancels the task: anyio's cancel scope costs
        # several times more, for each operation of each message. On trio, trio's own
        # cancel scope, without anyio's wrapper around it.
        if not on_asyncio():
            result: T = await _trio().trio_deadline(timeout, operation)
            return result
        if _ON_ASYNCIO:
            return await with_deadline(timeout, operation)
        return await _anyio_deadline(timeout, operation)  # pragma: no cover - Python 3.10

    def _build_tls_context(self) -> Any:
        return build_tls_context(
            tls_context=self.tls_context,
            validate_certs=self.validate_certs,
            cert_bundle=self.cert_bundle,
            client_cert=self.client_cert,
            client_key=self.client_key,
        )

    def _new_event(self) -> Any:
        return _new_event()

    async def _default_local_hostname(self) -> str:
        return await anyio.to_thread.run_sync(socket.getfqdn)

    async def aclose(self) -> None:
        """Close the connection (no QUIT) and release the stream."""
        await self._abort()

    def _run_blocking(self, main: Callable[[], Awaitable[T]]) -> T:
        return anyio.run(main)


class LMTP(SMTP):
    """An LMTP client (RFC 2033): the same API, with LHLO and one reply per recipient.

    After the content the server answers once for each accepted recipient;
    ``sendmail`` reports the recipients refused at that point among the refused ones,
    and ``sendmail_detailed`` gives each recipient's delivery reply. LMTP has no
    standard port: give ``port`` (commonly 24) or ``socket_path``.
    """

    _lmtp = True


class SMTPPool(SMTPPoolBase):
    """A pool of :class:`SMTP` connections on anyio (shared logic: ``smtp_core._pool``)."""

    def _client_class(self) -> type[SMTPClientBase]:
        return SMTP

    def _monotonic(self) -> float:
        loop = asyncio._get_running_loop()
        if loop is not None:
            return loop.time()
        now: float = _trio_module.current_time() if _trio_module else _trio().current_time()
        return now

    async def _real_sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def _new_event(self) -> Any:
        return _new_event()

    async def _wait_event(self, event: Any, timeout: float | None) -> bool:
        if event.is_set():
            return True
        if not on_asyncio():
            # trio's own cancel scope, without anyio's wrapper around it.
            woken: bool = await _trio().wait_event(event, timeout)
            return woken
        if sys.version_info >= (3, 11):
            try:
                async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for
                    await event.wait()
            except TimeoutError:
                return False
            return True
        with anyio.move_on_after(timeout):  # pragma: no cover - Python 3.10
            await event.wait()
            return True
        return False  # pragma: no cover - Python 3.10

    def _new_lock(self) -> Any:
        if on_asyncio():
            return asyncio.Lock()  # takes an uncontended lock without a yield
        return anyio.Lock(fast_acquire=True)  # trio's Lock would yield each time
