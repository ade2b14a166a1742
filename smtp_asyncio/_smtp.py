"""The asyncio adapter: transport, deadlines and exception mapping around the shared client."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from smtp_core._client import ConnectOptions, SMTPClientBase, Transport
from smtp_core._pool import SMTPPoolBase

from ._deadline import with_deadline
from ._tls import build_tls_context
from ._transport import open_stream_protocol

__all__ = ["SMTP", "LMTP", "SMTPPool"]

T = TypeVar("T")


class SMTP(SMTPClientBase):
    """An asyncio SMTP client with aiosmtplib's API.

    >>> async def main():
    ...     async with SMTP(hostname="127.0.0.1", port=1025) as smtp:
    ...         await smtp.sendmail("a@example.org", ["b@example.org"], "Subject: hi\\n\\nhello")
    """

    async def _open_transport(self, options: ConnectOptions) -> Transport:
        return await open_stream_protocol(options, self._with_deadline)

    # The deadline itself, not a coroutine around it (one frame fewer per operation).
    _with_deadline = staticmethod(with_deadline)

    def _build_tls_context(self) -> Any:
        return build_tls_context(
            tls_context=self.tls_context,
            validate_certs=self.validate_certs,
            cert_bundle=self.cert_bundle,
            client_cert=self.client_cert,
            client_key=self.client_key,
        )

    def _new_event(self) -> Any:
        return asyncio.Event()

    async def _default_local_hostname(self) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, socket.getfqdn)

    def _run_blocking(self, main: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await main()

        return asyncio.run(run())


class LMTP(SMTP):
    """An LMTP client (RFC 2033): the same API, with LHLO and one reply per recipient.

    After the content the server answers once for each accepted recipient;
    ``sendmail`` reports the recipients refused at that point among the refused ones,
    and ``sendmail_detailed`` gives each recipient's delivery reply. LMTP has no
    standard port: give ``port`` (commonly 24) or ``socket_path``.
    """

    _lmtp = True


class SMTPPool(SMTPPoolBase):
    """A pool of :class:`SMTP` connections (the shared logic is ``smtp_core._pool.SMTPPoolBase``).

    >>> async with SMTPPool(hostname="127.0.0.1", port=1025, max_connections=4) as pool:
    ...     await pool.send_message(message)
    """

    def _client_class(self) -> type[SMTPClientBase]:
        return SMTP

    def _monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    async def _real_sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def _new_event(self) -> Any:
        return asyncio.Event()

    async def _wait_event(self, event: Any, timeout: float | None) -> bool:
        if event.is_set():
            return True
        try:
            if sys.version_info >= (3, 11):  # no task of its own, unlike wait_for
                async with asyncio.timeout(timeout):
                    await event.wait()
            else:  # pragma: no cover
                await asyncio.wait_for(event.wait(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return False
        return True

    def _new_lock(self) -> Any:
        return asyncio.Lock()
