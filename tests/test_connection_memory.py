"""A connection that ended is freed at once, not when the cyclic garbage collector runs.

A TLS connection holds hundreds of KiB (asyncio's SSL protocol reads into a 256 KiB
buffer; OpenSSL keeps its own state and buffers). If the objects of a dead connection
refer to each other in a cycle, they wait for a full collection, which under steady
traffic comes every few seconds or less often; connections that end meanwhile pile up
to a peak the allocator keeps once they are freed. These tests run with the collector
off: what a closed connection leaves must go by reference counting alone.

Each runs on every async adapter and backend, for the ways a session ends: the client
quits, the client closes at once, the server closes the connection instead of answering.
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import Adapter, Certs
from .servers import Close, Expect, Send, StartTLS, session_prefix

pytestmark = pytest.mark.not_on_sync("the async adapters' transports and event loops")

MESSAGE = "Subject: hello\r\n\r\nHello world\r\n"
GIVE_UP = 5.0  # seconds; a connection that ended is freed within milliseconds


@pytest.fixture
def no_gc() -> Iterator[None]:
    """The cyclic collector off (garbage from before collected first)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def freed(adapter: Adapter, refs: list[weakref.ref[Any]]) -> list[str]:
    """What of ``refs`` is still alive once the connection's end has run its course.

    Polled: the transport's end runs in event loop callbacks after the close, and a TLS
    close waits for the peer's close_notify; given up after ``GIVE_UP`` seconds."""
    give_up = time.monotonic() + GIVE_UP
    while any(ref() is not None for ref in refs) and time.monotonic() < give_up:
        await adapter.sleep(0.001)
    return [type(ref()).__name__ for ref in refs if ref() is not None]


def connection_refs(smtp: Any) -> list[weakref.ref[Any]]:
    """Weak references to the connection's stream and, under TLS, its SSL object."""
    refs = [weakref.ref(smtp.protocol)]
    ssl_object = smtp.get_transport_info("ssl_object")
    if ssl_object is not None:
        refs.append(weakref.ref(ssl_object))
    return refs


@pytest.mark.parametrize("ending", ["quit", "close"])
@pytest.mark.usefixtures("no_gc")
def test_a_tls_connection_the_client_ends_is_freed_without_the_collector(
    adapter: Adapter, smtpd: Any, certs: Certs, ending: str
) -> None:
    server = smtpd(tls="starttls")

    async def main() -> list[str]:
        smtp = adapter.module.SMTP(
            hostname="localhost", port=server.port, cert_bundle=certs.ca_path, timeout=10
        )
        await smtp.connect()
        await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        refs = connection_refs(smtp)
        assert len(refs) == 2  # the stream and its SSL object
        if ending == "quit":
            await smtp.quit()
        elif hasattr(smtp, "aclose"):  # smtp_anyio: ends the connection, releases the stream
            await smtp.aclose()
        else:
            smtp.close()
        return await freed(adapter, refs)

    assert adapter.run(main) == []
    assert len(server.messages) == 1


@pytest.mark.usefixtures("no_gc")
def test_a_plain_connection_the_client_quits_is_freed_without_the_collector(
    adapter: Adapter, smtpd: Any
) -> None:
    server = smtpd()

    async def main() -> list[str]:
        smtp = adapter.module.SMTP(hostname=server.host, port=server.port, timeout=10)
        await smtp.connect()
        await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        refs = connection_refs(smtp)
        await smtp.quit()
        return await freed(adapter, refs)

    assert adapter.run(main) == []


def dropped_session(adapter: Adapter, server: Any, certs: Certs) -> tuple[list[str], list[str]]:
    """A TLS session whose server closes the connection instead of answering a NOOP:
    what is left of its TLS state once the end ran its course, then of its stream."""
    mod = adapter.module

    async def main() -> tuple[list[str], list[str]]:
        smtp = mod.SMTP(
            hostname="127.0.0.1", port=server.port, cert_bundle=certs.ca_path, timeout=10
        )
        await smtp.connect()
        stream, tls = connection_refs(smtp)
        try:  # not pytest.raises: its record of the exception would keep the frames alive
            await smtp.noop()
        except mod.SMTPServerDisconnected:
            pass
        else:
            raise AssertionError("the command succeeded on a closed connection")
        assert not smtp.is_connected
        return await freed(adapter, [tls]), [type(o).__name__ for o in [stream()] if o is not None]

    result: tuple[list[str], list[str]] = adapter.run(main)
    return result


def drop_script(certs: Certs) -> list[Any]:
    return [
        *session_prefix("STARTTLS"),
        Expect(b"STARTTLS"),
        Send(b"220 go ahead\r\n"),
        StartTLS(certs.server_context()),
        *session_prefix()[1:],
        Expect(b"NOOP"),
        Close(),
    ]


@pytest.mark.usefixtures("no_gc")
def test_a_tls_connection_the_server_drops_frees_its_tls_state_without_the_collector(
    adapter: Adapter, scripted: Any, certs: Certs
) -> None:
    """The TLS state (OpenSSL's, and asyncio's 256 KiB buffer) goes at once."""
    tls_left, _ = dropped_session(adapter, scripted(drop_script(certs)), certs)
    assert tls_left == []


@pytest.mark.usefixtures("no_gc")
def test_a_failed_command_leaves_no_cycle_that_holds_the_stream(
    adapter: Adapter, scripted: Any, certs: Certs
) -> None:
    _, stream_left = dropped_session(adapter, scripted(drop_script(certs)), certs)
    assert stream_left == []
