"""The asyncio adapter: transport, deadlines and exception mapping around the shared client."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from smtp_core import SMTPConnectError, SMTPConnectTimeoutError, SMTPReadTimeoutError
from smtp_core._client import ConnectOptions, SMTPClientBase, Transport
from smtp_core._pool import SMTPPoolBase

from ._deadline import with_deadline
from ._tls import build_tls_context
from ._transport import StreamProtocol

__all__ = ["SMTP", "LMTP", "SMTPPool"]

T = TypeVar("T")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class SMTP(SMTPClientBase):
    """An asyncio SMTP client with aiosmtplib's API.

    >>> async def main():
    ...     async with SMTP(hostname="127.0.0.1", port=1025) as smtp:
    ...         await smtp.sendmail("a@example.org", ["b@example.org"], "Subject: hi\\n\\nhello")
    """

    async def _open_transport(self, options: ConnectOptions) -> Transport:
        loop = asyncio.get_running_loop()
        protocol = StreamProtocol(loop)
        ssl_args: dict[str, Any] = {}
        if options.use_tls:
            ssl_args = {
                "ssl": options.tls_context,
                "server_hostname": options.server_hostname or options.hostname,
                "ssl_handshake_timeout": options.timeout,
            }
        if options.sock is not None:
            if options.use_tls and not options.server_hostname:
                ssl_args["server_hostname"] = options.hostname
            coro = loop.create_connection(lambda: protocol, sock=options.sock, **ssl_args)
        elif options.socket_path is not None:
            coro = loop.create_unix_connection(
                lambda: protocol, path=options.socket_path, **ssl_args
            )
        else:
            # Happy Eyeballs (RFC 8305) for host names: their addresses are tried in
            # turn, the next started 250 ms after the previous, IPv6 and IPv4
            # interleaved. An address literal needs no race.
            eyeballs: dict[str, Any] = {}
            # Other event loops (uvloop) may not take these arguments; they try a
            # host's addresses one after another instead.
            if isinstance(loop, asyncio.BaseEventLoop) and not _is_ip_literal(options.hostname):
                eyeballs = {"happy_eyeballs_delay": 0.25, "interleave": 1}
            coro = loop.create_connection(
                lambda: protocol,
                host=options.hostname,
                port=options.port or 25,
                local_addr=options.source_address,
                **eyeballs,
                **ssl_args,
            )
        where = f"{options.hostname} on port {options.port}"

        async def connected(restart: Callable[[float | None], None]) -> None:
            await coro

        try:
            await self._with_deadline(options.timeout, connected)
        except SMTPReadTimeoutError as exc:
            raise SMTPConnectTimeoutError(f"Timed out connecting to {where}") from exc
        except OSError as exc:
            raise SMTPConnectError(f"Error connecting to {where}: {exc}") from exc
        return protocol

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
