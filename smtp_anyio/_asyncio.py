"""Connections on the asyncio backend: asyncio's own protocol transport.

anyio's socket streams on asyncio pause and resume the transport's reading around
every ``receive()`` (two selector changes per read) and yield to the event loop after
every ``send()``. smtp_asyncio's :class:`StreamProtocol` reads all the time into a
bounded queue and yields only when it must wait, and anyio's cancel scopes reach it
as they reach any asyncio future: reads, writes, STARTTLS and close are the same
operations, with the same guarantees, at a fraction of the cost. Connections are
opened as smtp_asyncio opens them (:func:`open_stream_protocol`).
"""

from __future__ import annotations

import asyncio

from smtp_asyncio._transport import open_stream_protocol

__all__ = ["on_asyncio", "open_stream_protocol"]


def on_asyncio() -> bool:
    """True when the running event loop is asyncio's (anyio's asyncio backend)."""
    return asyncio._get_running_loop() is not None
