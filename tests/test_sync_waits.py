"""Every blocking wait in smtp_sync ends by its call's limits: a real loopback server
holds its reply (or its TLS handshake) on each path."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import smtp_core
import smtp_sync

from .conftest import Certs
from .servers import Expect, Hang, Send, greet_pipelining, session_prefix

MESSAGE = b"Subject: held\r\n\r\nhello\r\n"
SLACK = 2.0  # scheduling on a loaded machine (and the exchanges before the stall); far below the 30 s socket timeouts a missing limit would take


def timed(call: Callable[..., object], *args: object) -> tuple[BaseException | None, float]:
    """The timeout ``call(*args)`` raised (None if it raised none) and the seconds it took."""
    started = time.monotonic()
    try:
        call(*args)
    except smtp_sync.SMTPTimeoutError as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def test_a_pipeline_left_by_a_caller_that_gave_up_drains_within_its_stage_limit() -> None:
    """Thread B's message joins A's pipeline, and B gives up at its total deadline. The
    server answers A's message and never B's. A's next command must first drain the
    pipeline: the limit of the stage it is in (Timeouts.data) goes on with it, rather
    than starting afresh with the 30 s socket timeout."""
    data_limit = 1.5
    listener = socket.create_server(("127.0.0.1", 0))
    envelope_read, b_queued, b_gave_up = threading.Event(), threading.Event(), threading.Event()
    b_sent = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            greet_pipelining(conn, lines)
            for _ in range(3):  # A's MAIL, RCPT, DATA
                lines.readline()
            envelope_read.set()
            b_queued.wait(5)
            conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
            while lines.readline() != b".\r\n":  # A's content...
                pass
            for _ in range(3):  # ...and B's envelope in the same write
                lines.readline()
            b_sent.set()
            b_gave_up.wait(5)
            conn.sendall(b"250 A queued\r\n")
            while lines.readline():  # B's replies never come
                pass

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    smtp = smtp_sync.SMTP(
        "127.0.0.1", listener.getsockname()[1], timeout=30,
        timeouts=smtp_sync.Timeouts(data=data_limit, total=0.3),
    )
    results: dict[str, Any] = {}

    def a() -> None:  # send_messages has no total deadline
        results["a"] = smtp.send_messages([("a@example.org", ["a@example.org"], MESSAGE)])

    def b() -> None:
        try:
            smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        except smtp_sync.SMTPTimeoutError as exc:
            results["b"] = exc

    try:
        first = threading.Thread(target=a)
        first.start()
        assert envelope_read.wait(5)
        second = threading.Thread(target=b)
        second.start()
        with smtp._cv:
            assert smtp._cv.wait_for(lambda: len(smtp._queue) == 1, 5)
        b_queued.set()
        second.join(5)
        assert b_sent.is_set()  # B's envelope went out with A's content, then B gave up
        b_gave_up.set()
        first.join(5)
        assert results["a"] == [{}]
        assert isinstance(results["b"], smtp_sync.SMTPTimeoutError)
        assert results["b"].outcome is smtp_core.Outcome.UNKNOWN
        error, took = timed(smtp.noop)
        assert isinstance(error, smtp_sync.SMTPTimeoutError)
        assert took < data_limit + SLACK
        assert smtp.sock is None  # the session was out of step: closed
    finally:
        smtp.close()
        b_queued.set()
        b_gave_up.set()
        server.join(5)
        listener.close()


def test_a_stalled_starttls_handshake_ends_within_the_command_limit(scripted: Any) -> None:
    server = scripted([*session_prefix("STARTTLS"), Expect(b"STARTTLS"), Send(b"220 go ahead\r\n"), Hang()])
    smtp = smtp_sync.SMTP(
        "127.0.0.1", server.port, local_hostname="client.test", timeout=30,
        timeouts=smtp_sync.Timeouts(command=0.5),
    )
    error, took = timed(smtp.starttls)
    smtp.close()
    assert isinstance(error, smtp_sync.SMTPTimeoutError)
    assert took < 0.5 + SLACK, took


def test_a_pools_stalled_handshakes_end_at_its_deadline(scripted: Any, certs: Certs) -> None:
    """Implicit TLS whose handshake never comes, and STARTTLS whose handshake never
    comes: a pool call with Timeouts(total=) ends by it (the socket timeout is 30 s)."""
    deadline = 0.5
    implicit = scripted([Hang()])
    upgraded = scripted([*session_prefix("STARTTLS"), Expect(b"STARTTLS"), Send(b"220 go ahead\r\n"), Hang()])
    for port, options in (
        (implicit.port, {"client_class": smtp_sync.SMTP_SSL}),
        (upgraded.port, {"starttls": True}),
    ):
        pool = smtp_sync.SMTPPool(
            "127.0.0.1", port, local_hostname="client.test", timeout=30, context=certs.client_context(),
            timeouts=smtp_sync.Timeouts(total=deadline), **options,
        )
        error, took = timed(pool.sendmail, "a@example.org", ["b@example.org"], MESSAGE)
        pool.close()
        assert isinstance(error, smtp_core.SMTPTimeoutError), (options, error)
        assert took < deadline + SLACK, options


def test_content_a_server_stops_reading_ends_within_the_data_limit() -> None:
    """A message larger than the sockets' buffers, to a server that stops reading after
    its 354: the write that no longer fits waits, and that wait ends by Timeouts.data
    (the socket timeout is 30 s). The message's fate is unknown: content went out."""
    data_limit = 0.5
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            greet_pipelining(conn, lines)
            for _ in range(3):  # MAIL, RCPT, DATA
                lines.readline()
            conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
            done.wait(10)  # and read nothing more

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    smtp = smtp_sync.SMTP(
        "127.0.0.1", listener.getsockname()[1], timeout=30,
        timeouts=smtp_sync.Timeouts(data=data_limit),
    )
    content = b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * (16 * 1024 * 1024 // 80)
    error, took = timed(smtp.sendmail, "a@example.org", ["b@example.org"], content)
    try:
        assert isinstance(error, smtp_sync.SMTPTimeoutError)
        assert getattr(error, "outcome", None) is smtp_core.Outcome.UNKNOWN
        assert took < data_limit + SLACK
        assert smtp.sock is None
    finally:
        smtp.close()
        done.set()
        server.join(5)
        listener.close()


def test_a_held_reply_on_a_plain_socket_ends_within_the_command_limit(scripted: Any) -> None:
    """A plain socket stays blocking, each wait bounded by the kernel (SO_RCVTIMEO):
    ``timeout`` between calls, and a limit nearer than it (Timeouts.command) while a
    command waits for its reply."""
    server = scripted([Send(b"220 scripted ESMTP\r\n"), Expect(b"NOOP"), Hang()])
    smtp = smtp_sync.SMTP(
        "127.0.0.1", server.port, local_hostname="client.test", timeout=30,
        timeouts=smtp_sync.Timeouts(command=0.5),
    )
    sock = smtp.sock
    assert sock is not None and sock.getblocking()
    limit = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    assert struct.unpack("ll", limit) == (30, 0)
    error, took = timed(smtp.noop)
    smtp.close()
    assert isinstance(error, smtp_sync.SMTPTimeoutError)
    assert 0.5 - 0.05 <= took < 0.5 + SLACK
