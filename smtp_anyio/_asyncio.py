"""Connections on the asyncio backend: asyncio's own protocol transport.

anyio's socket streams on asyncio pause and resume the transport's reading around
every ``receive()`` (two selector changes per read) and yield to the event loop after
every ``send()``. smtp_asyncio's :class:`StreamProtocol` reads all the time into a
bounded queue and yields only when it must wait, and anyio's cancel scopes reach it
as they reach any asyncio future: reads, writes, STARTTLS and close are the same
operations, with the same guarantees, at a fraction of the cost.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from smtp_asyncio._transport import StreamProtocol
from smtp_core import SMTPConnectError, SMTPConnectTimeoutError, SMTPReadTimeoutError
from smtp_core._client import ConnectOptions

__all__ = ["on_asyncio", "open_stream_protocol"]

T = TypeVar("T")

Deadline = Callable[
    [float | None, Callable[[Callable[[float | None], None]], Awaitable[None]]], Awaitable[None]
]


def on_asyncio() -> bool:
    """True when the running event loop is asyncio's (anyio's asyncio backend)."""
    return asyncio._get_running_loop() is not None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def open_stream_protocol(options: ConnectOptions, with_deadline: Deadline) -> StreamProtocol:
    """Connect as ``options`` say (TCP, Unix socket or a given socket; TLS at once or not)."""
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
        coro = loop.create_connection(lambda: protocol, sock=options.sock, **ssl_args)
    elif options.socket_path is not None:
        coro = loop.create_unix_connection(lambda: protocol, path=options.socket_path, **ssl_args)
    else:
        # Happy Eyeballs (RFC 8305) for host names, as anyio.connect_tcp does it: the
        # addresses in turn, the next 250 ms after the previous, IPv6 and IPv4
        # interleaved. Other event loops (uvloop) may not take these arguments.
        eyeballs: dict[str, Any] = {}
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
        await with_deadline(options.timeout, connected)
    except SMTPReadTimeoutError as exc:
        raise SMTPConnectTimeoutError(f"Timed out connecting to {where}") from exc
    except OSError as exc:
        raise SMTPConnectError(f"Error connecting to {where}: {exc}") from exc
    return protocol
