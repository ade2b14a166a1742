"""The benchmarks' delay proxy: bytes arrive whole and in order, and round trips are counted.

Timing (that the configured RTT is what a ping-pong sees) is checked by
``python benchmarks/delay_proxy.py --self-test``, not here.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "delay_proxy.py"
_spec = importlib.util.spec_from_file_location("delay_proxy", _PATH)
assert _spec is not None and _spec.loader is not None
delay_proxy: Any = importlib.util.module_from_spec(_spec)
sys.modules["delay_proxy"] = delay_proxy
_spec.loader.exec_module(delay_proxy)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


class ScriptedServer:
    """Sends ``greeting``, then for each (expected, reply): reads all of expected, replies."""

    def __init__(self, greeting: bytes, script: list[tuple[bytes, bytes]]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, args=(greeting, script), daemon=True)
        self.thread.start()

    def _serve(self, greeting: bytes, script: list[tuple[bytes, bytes]]) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.sendall(greeting)
                for expected, reply in script:
                    got = _recv_exactly(conn, len(expected))
                    self.received += got
                    assert got == expected, (got, expected)
                    conn.sendall(reply)
                while data := conn.recv(65536):  # echo whatever else comes, until EOF
                    self.received += data
                    conn.sendall(data)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.listener.close()


@pytest.fixture
def run_proxy() -> Iterator[Any]:
    proxies: list[Any] = []

    def start(port: int, rtt_ms: float = 0.0) -> Any:
        proxy = delay_proxy.DelayProxy(("127.0.0.1", port), rtt_ms)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop(drain=0)


def test_each_awaited_exchange_is_one_turn_and_setup_is_told_apart(run_proxy: Any) -> None:
    envelope = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    content = b"Subject: x\r\n\r\nhi\r\n.\r\n"
    script = [
        (b"EHLO c\r\n", b"250-s\r\n250 PIPELINING\r\n"),
        (envelope, b"250 ok\r\n250 ok\r\n354 go\r\n"),
        (content, b"250 queued\r\n"),
        (b"QUIT\r\n", b"221 bye\r\n"),
    ]
    server = ScriptedServer(b"220 s\r\n", script)
    proxy = run_proxy(server.port)
    with socket.create_connection(proxy.address) as sock:
        assert _recv_exactly(sock, 7) == b"220 s\r\n"
        for sent, reply in script:
            sock.sendall(sent)
            assert _recv_exactly(sock, len(reply)) == reply
    proxy.stop()
    assert server.error is None
    [stats] = proxy.connections()
    assert stats.closed
    assert (stats.turns, stats.setup_turns, stats.message_turns) == (4, 2, 2)
    assert proxy.totals()["message_turns"] == 2


def test_bytes_sent_before_any_reply_arrives_add_no_turn(run_proxy: Any) -> None:
    # The server answers only once it holds both bursts, so the proxy reads both before
    # it has anything to deliver: one turn, however the bursts were chunked.
    first = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nBDAT 4 LAST\r\nhi\r\n"
    second = (
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.org>\r\nBDAT 4 LAST\r\nho\r\nQUIT\r\n"
    )
    replies = b"250 ok\r\n250 ok\r\n250 queued\r\n" * 2 + b"221 bye\r\n"
    server = ScriptedServer(
        b"220 s\r\n", [(b"EHLO c\r\n", b"250 s\r\n"), (first + second, replies)]
    )
    proxy = run_proxy(server.port)
    with socket.create_connection(proxy.address) as sock:
        _recv_exactly(sock, 7)
        sock.sendall(b"EHLO c\r\n")
        _recv_exactly(sock, 7)
        sock.sendall(first)
        sock.sendall(second)
        assert _recv_exactly(sock, len(replies)) == replies
    proxy.stop()
    assert server.error is None
    [stats] = proxy.connections()
    # EHLO is set-up; the pipelined QUIT rides in the message turn and costs nothing.
    assert (stats.turns, stats.setup_turns, stats.message_turns) == (2, 1, 1)


def test_bytes_arrive_whole_and_in_order_and_eof_is_passed_on(run_proxy: Any) -> None:
    server = ScriptedServer(b"", [])  # an echo server
    proxy = run_proxy(server.port, rtt_ms=1.0)
    pieces = [f"{i:05d}|".encode() * (1 + i % 7) for i in range(300)]
    with socket.create_connection(proxy.address) as sock:
        for piece in pieces:
            sock.sendall(piece)
        sock.shutdown(socket.SHUT_WR)
        echoed = b""
        while data := sock.recv(65536):
            echoed += data
    proxy.stop()
    assert server.error is None
    assert echoed == server.received == b"".join(pieces)
    [stats] = proxy.connections()
    assert stats.closed
    assert stats.client_bytes == stats.server_bytes == len(echoed)


def test_several_connections_are_counted_apart(run_proxy: Any) -> None:
    servers = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            servers.append(conn)
            conn.sendall(b"220 s\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    proxy = run_proxy(port)
    clients = [socket.create_connection(proxy.address) for _ in range(3)]
    for client in clients:
        assert _recv_exactly(client, 7) == b"220 s\r\n"
    thread.join(5)
    listener.close()
    for turns, (client, server) in enumerate(zip(clients, servers, strict=True), start=1):
        for _ in range(turns):
            client.sendall(b"NOOP\r\n")
            assert _recv_exactly(server, 6) == b"NOOP\r\n"
            server.sendall(b"250 ok\r\n")
            assert _recv_exactly(client, 8) == b"250 ok\r\n"
    for sock in clients + servers:
        sock.close()
    proxy.stop()
    assert [s.turns for s in proxy.connections()] == [1, 2, 3]
    assert [s.message_turns for s in proxy.connections()] == [1, 2, 3]
    assert proxy.totals()["turns"] == 6


def test_a_chunk_is_a_reaction_only_to_what_was_written_before_it_arrived() -> None:
    a, b = socket.socketpair()
    with a, b:
        conn = delay_proxy._Connection(0, a, b)
        assert conn.depth_of_read(False, b"220 s\r\n", arrival=0.0) == 0  # the greeting
        conn.delivered(False, 0, written=1.0)
        assert conn.depth_of_read(True, b"EHLO c\r\n", arrival=2.0) == 1
        conn.delivered(True, 1, written=3.0)
        assert conn.depth_of_read(False, b"250 s\r\n", arrival=3.1) == 1
        conn.delivered(False, 1, written=4.0)
        # Sent before the reply reached the client (pipelined): the same turn.
        assert conn.depth_of_read(True, b"MAIL FROM:<a@example.org>\r\n", arrival=3.9) == 1
        # Sent after it: a new turn, and never shallower afterwards.
        assert conn.depth_of_read(True, b"RCPT TO:<b@example.org>\r\n", arrival=4.1) == 2
        assert conn.depth_of_read(True, b"DATA\r\n", arrival=4.2) == 2
        # The server's answer to MAIL, sent before RCPT reached it, is still turn 1 ...
        assert conn.depth_of_read(False, b"250 ok\r\n", arrival=4.5) == 1
        conn.delivered(True, 2, written=5.0)
        # ... and what it sends once RCPT has reached it is turn 2.
        assert conn.depth_of_read(False, b"250 ok\r\n354 go\r\n", arrival=5.1) == 2
        assert (conn.stats.turns, conn.stats.setup_turns, conn.stats.message_turns) == (2, 1, 1)
