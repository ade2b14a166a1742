"""A loopback TCP proxy that adds a round-trip time and counts round trips.

Every chunk read from one side is forwarded to the other side at its read time plus
half the round-trip time, in order and with one ``send`` per chunk, so the client and
the server see a network ``rtt_ms`` long instead of loopback. (The TCP handshake itself
is not delayed: the proxy is on loopback with the client, and the client's ``connect``
returns at once. Connection set-up therefore costs one round trip less than on a real
network; the counts below leave it out.)

Round trips are counted per connection as the length of the longest chain of chunks
that could have caused one another:

* a chunk from the client is at depth ``1 +`` the depth of the last server chunk the
  proxy had written to the client before the client's chunk arrived (by the kernel's
  receive timestamp), and never below the client's previous chunk;
* a chunk from the server is at the depth of the last client chunk the proxy had
  written to the server before it arrived, and never below the server's previous
  chunk; the greeting is at depth 0.

The connection's **turns** are the depth of its last server chunk: each turn is a
client burst followed by server bytes back. A client that sends without waiting for
replies (pipelining, a sliding window) adds no depth, and a client that waits for
every reply adds one turn per wait, so turns times the RTT is the time that the
network alone costs that connection. The count assumes a cause wherever the timing
allows one, so it is an upper bound on the turns the client truly needed.

Turns opened by a client chunk that starts with ``EHLO``, ``HELO``, ``LHLO`` or
``QUIT`` are connection **set-up** turns (greeting and EHLO, and QUIT); ``turns -
setup`` are the **message** turns, which the benchmark divides by the messages sent.
A QUIT pipelined behind a message's last command opens no turn of its own and costs
nothing, which is what it costs on the network.

Library use (the proxy runs in its own thread with its own ``select`` loop)::

    proxy = DelayProxy(("127.0.0.1", server_port), rtt_ms=10)
    host, port = proxy.start()
    ...  # connect clients to (host, port)
    proxy.stop()
    print(proxy.totals())

Command line::

    python benchmarks/delay_proxy.py --listen 127.0.0.1:0 --target 127.0.0.1:PORT --rtt 10
    python benchmarks/delay_proxy.py --self-test --rtt 10    # ping-pong through the proxy
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import ctypes.util
import heapq
import os
import selectors
import signal
import socket
import statistics
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

CHUNK = 65536
MAX_QUEUED = 8 * 1024 * 1024
"""Bytes queued in one direction before the proxy stops reading that side (as a TCP
window would), so a fast sender cannot make the proxy buffer without bound."""

SETUP_COMMANDS = (b"EHLO", b"HELO", b"LHLO", b"QUIT")
SO_TIMESTAMPNS = 35  # Linux (SO_TIMESTAMPNS_OLD): the kernel stamps each read
TIMESPEC = struct.Struct("@qq")
CAUSE_SLACK = 0.00002
"""A chunk that arrived up to this long before a write in the other direction may still
be counted as its reaction: clocks and timestamps are not that exact, and the count
should err towards more round trips, never fewer."""
SPIN = 0.0005
"""The loop wakes this long (plus 2% of the wait) before a chunk is due and polls until
then: a sleeping thread wakes up to 0.12 ms late on these machines, even with real-time
priority and no timer slack, and more for longer sleeps."""


def _timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp what arrives on ``sock`` with its arrival time."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def _arrival(ancdata: list[tuple[int, int, bytes]], now: float) -> float:
    """When the bytes just read arrived, on the monotonic clock (``now`` if unknown).

    The proxy may read a chunk a little after it arrived (a thread waking up takes
    0.05-0.2 ms); the kernel's stamp takes that out of the delay.
    """
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            arrived = seconds + nanoseconds * 1e-9 - (time.time() - time.monotonic())
            if now - 1.0 < arrived <= now:
                return arrived
    return now


def _punctual() -> None:
    """Ask Linux to run this thread on time: no timer slack (50 us by default) and, when
    allowed (root), real-time scheduling, so that other work on the machine delays the
    proxy's chunks as little as possible. Best effort: either may be refused."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        pr_set_timerslack = 29
        libc.prctl(pr_set_timerslack, 1, 0, 0, 0)
    with contextlib.suppress(Exception):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))  # this thread only


@dataclass
class Lateness:
    """How late the proxy wrote chunks, against their arrival time plus RTT/2 (seconds)."""

    count: int = 0
    total: float = 0.0
    worst: float = 0.0

    def add(self, late: float) -> None:
        self.count += 1
        self.total += late
        self.worst = max(self.worst, late)

    def __str__(self) -> str:
        mean = self.total / self.count if self.count else 0.0
        return f"writes late by {mean * 1e6:.0f} us on average, {self.worst * 1e6:.0f} us at worst"


@dataclass
class ConnectionStats:
    """What the proxy saw on one connection."""

    number: int
    client_bytes: int = 0
    server_bytes: int = 0
    client_chunks: int = 0
    server_chunks: int = 0
    turns: int = 0
    """Depth of the last server chunk: round trips on this connection."""
    setup_levels: set[int] = field(default_factory=set)
    """Depths opened by EHLO/HELO/LHLO/QUIT."""
    closed: bool = False

    @property
    def setup_turns(self) -> int:
        return sum(1 for level in self.setup_levels if level <= self.turns)

    @property
    def message_turns(self) -> int:
        return self.turns - self.setup_turns

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection": self.number,
            "turns": self.turns,
            "setup_turns": self.setup_turns,
            "message_turns": self.message_turns,
            "client_bytes": self.client_bytes,
            "server_bytes": self.server_bytes,
            "client_chunks": self.client_chunks,
            "server_chunks": self.server_chunks,
            "closed": self.closed,
        }


class _Direction:
    """Bytes read from ``src`` waiting to be written to ``dst`` at their due time."""

    def __init__(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        self.src, self.dst, self.from_client = src, dst, from_client
        self.queue: collections.deque[tuple[float, bytes, int]] = collections.deque()
        self.queued = 0
        self.eof_due: float | None = None  # src said EOF: shut dst down at this time
        self.shut = False
        self.reading = True
        self.waiting_writable = False


class _Connection:
    def __init__(self, number: int, client: socket.socket, server: socket.socket) -> None:
        self.stats = ConnectionStats(number)
        self.client, self.server = client, server
        self.up = _Direction(client, server, from_client=True)
        self.down = _Direction(server, client, from_client=False)
        self.client_depth = 0  # depth of the client's last chunk
        self.server_depth = 0  # depth of the server's last chunk
        # (time just before the write, depth) of recent writes to the client, the server
        self.to_client: collections.deque[tuple[float, int]] = collections.deque(maxlen=512)
        self.to_server: collections.deque[tuple[float, int]] = collections.deque(maxlen=512)
        self.closed = False

    @staticmethod
    def _cause(writes: collections.deque[tuple[float, int]], arrival: float) -> int:
        """Depth of the last chunk written to this chunk's sender before it arrived."""
        for written, depth in reversed(writes):
            if written <= arrival + CAUSE_SLACK:
                return depth
        return 0

    def depth_of_read(self, from_client: bool, data: bytes, arrival: float) -> int:
        if from_client:
            depth = max(self.client_depth, self._cause(self.to_client, arrival) + 1)
            if depth > self.client_depth and data[:4].upper() in SETUP_COMMANDS:
                self.stats.setup_levels.add(depth)
            self.client_depth = depth
            self.stats.client_bytes += len(data)
            self.stats.client_chunks += 1
        else:
            depth = max(self.server_depth, self._cause(self.to_server, arrival))
            self.server_depth = depth
            self.stats.turns = depth
            self.stats.server_bytes += len(data)
            self.stats.server_chunks += 1
        return depth

    def delivered(self, from_client: bool, depth: int, written: float) -> None:
        writes = self.to_server if from_client else self.to_client
        if not writes or writes[-1][1] < depth:
            writes.append((written, depth))


class DelayProxy:
    """Forward ``listen`` to ``target``, delaying each direction by ``rtt_ms / 2``."""

    def __init__(
        self,
        target: tuple[str, int],
        rtt_ms: float,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        trace: bool = False,
    ) -> None:
        if rtt_ms < 0:
            raise ValueError("rtt_ms must not be negative")
        self.target = target
        self.half = rtt_ms / 2000.0
        self._listener = socket.create_server(listen, backlog=1024)
        self._listener.setblocking(False)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._selector = selectors.SelectSelector()  # select(): microsecond timeouts
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._connections: list[_Connection] = []
        self._timers: list[tuple[float, int, _Direction, _Connection]] = []
        self._timer_seq = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._ancillary = socket.CMSG_SPACE(TIMESPEC.size)
        self.late = Lateness()
        """How long after their due time chunks were written."""
        self.trace: list[tuple[float, int, str, int, int, bytes]] | None = [] if trace else None
        """With ``trace=True``: (time, connection, event, depth, size, first bytes) for
        every chunk read ("C>" from the client, "S>" from the server) and written
        ("C<" to the client, "S<" to the server)."""

    # -- control ------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Serve in a daemon thread; returns the address clients connect to."""
        self._thread = threading.Thread(target=self.serve_forever, name="delay-proxy", daemon=True)
        self._thread.start()
        return self.address

    def stop(self, drain: float = 2.0) -> None:
        """Wait up to ``drain`` seconds for open connections to finish, then stop."""
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline and any(not c.closed for c in self._snapshot()):
            time.sleep(0.005)
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(5)

    def connections(self) -> list[ConnectionStats]:
        """Per-connection counts, in the order connections were accepted."""
        return [c.stats for c in self._snapshot()]

    def totals(self) -> dict[str, int]:
        stats = self.connections()
        return {
            "connections": len(stats),
            "turns": sum(s.turns for s in stats),
            "setup_turns": sum(s.setup_turns for s in stats),
            "message_turns": sum(s.message_turns for s in stats),
            "client_bytes": sum(s.client_bytes for s in stats),
            "server_bytes": sum(s.server_bytes for s in stats),
        }

    def _snapshot(self) -> list[_Connection]:
        with self._lock:
            return list(self._connections)

    # -- the loop -------------------------------------------------------------------------

    def serve_forever(self) -> None:
        _punctual()
        sel = self._selector
        sel.register(self._listener, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stopping:
                timeout = None
                if self._timers:
                    remaining = self._timers[0][0] - time.monotonic()
                    spin = SPIN + remaining / 50  # longer sleeps wake later
                    timeout = remaining - spin if remaining > spin else 0.0
                for key, mask in sel.select(timeout):
                    sock = key.fileobj
                    if sock is self._listener:
                        self._accept()
                    elif sock is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    else:
                        self._ready(key.data, sock, mask)  # type: ignore[arg-type]
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, direction, conn = heapq.heappop(self._timers)
                    self._flush(conn, direction)
        finally:
            for conn in self._snapshot():
                self._close(conn)
            sel.close()
            self._listener.close()
            self._wake_r.close()
            self._wake_w.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                _timestamps(sock)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                conn = _Connection(len(self._connections), client, server)
                self._connections.append(conn)
            self._selector.register(client, selectors.EVENT_READ, conn)
            self._selector.register(server, selectors.EVENT_READ, conn)

    def _events(self, conn: _Connection, sock: socket.socket) -> int:
        """The events the proxy needs on one socket now."""
        up, down = conn.up, conn.down
        reading = up if sock is conn.client else down
        writing = down if sock is conn.client else up
        mask = 0
        if reading.reading and reading.eof_due is None and reading.queued < MAX_QUEUED:
            mask |= selectors.EVENT_READ
        if writing.waiting_writable:
            mask |= selectors.EVENT_WRITE
        return mask

    def _update(self, conn: _Connection) -> None:
        if conn.closed:
            return
        for sock in (conn.client, conn.server):
            mask = self._events(conn, sock)
            registered = sock in self._selector.get_map()
            if mask and registered:
                self._selector.modify(sock, mask, conn)
            elif mask:
                self._selector.register(sock, mask, conn)
            elif registered:
                self._selector.unregister(sock)

    def _ready(self, conn: _Connection, sock: socket.socket, mask: int) -> None:
        if conn.closed:
            return
        # Reads first: bytes already waiting were sent before anything written now.
        if mask & selectors.EVENT_READ:
            self._read(conn, conn.up if sock is conn.client else conn.down)
        if mask & selectors.EVENT_WRITE and not conn.closed:
            self._flush(conn, conn.down if sock is conn.client else conn.up)

    def _read(self, conn: _Connection, direction: _Direction) -> None:
        try:
            data, ancdata, _, _ = direction.src.recvmsg(CHUNK, self._ancillary)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        arrival = _arrival(ancdata, time.monotonic())
        due = arrival + self.half
        if data:
            depth = conn.depth_of_read(direction.from_client, data, arrival)
            if self.trace is not None:
                event = "C>" if direction.from_client else "S>"
                self.trace.append(
                    (due - self.half, conn.stats.number, event, depth, len(data), data[:24])
                )
            direction.queue.append((due, data, depth))
            direction.queued += len(data)
        else:
            direction.eof_due = due
        self._schedule(due, direction, conn)
        self._update(conn)

    def _schedule(self, due: float, direction: _Direction, conn: _Connection) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (due, self._timer_seq, direction, conn))

    def _flush(self, conn: _Connection, direction: _Direction) -> None:
        """Write every chunk that is due, one ``send`` each, in order."""
        if conn.closed:
            return
        now = time.monotonic()
        direction.waiting_writable = False
        while direction.queue and direction.queue[0][0] <= now:
            due, data, depth = direction.queue[0]
            written = time.monotonic()
            self.late.add(written - due)
            try:
                sent = direction.dst.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(conn)
                return
            if sent:
                conn.delivered(direction.from_client, depth, written)
                if self.trace is not None:
                    event = "S<" if direction.from_client else "C<"
                    self.trace.append(
                        (time.monotonic(), conn.stats.number, event, depth, sent, data[:24])
                    )
            direction.queued -= sent
            if sent < len(data):
                direction.queue[0] = (due, data[sent:], depth)
                direction.waiting_writable = True
                break
            direction.queue.popleft()
        if (
            not direction.queue
            and direction.eof_due is not None
            and direction.eof_due <= now
            and not direction.shut
        ):
            direction.shut = True
            with contextlib.suppress(OSError):
                direction.dst.shutdown(socket.SHUT_WR)
        if conn.up.shut and conn.down.shut:
            self._close(conn)
            return
        self._update(conn)

    def _close(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        conn.stats.closed = True
        for sock in (conn.client, conn.server):
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(sock)
            sock.close()


# -- command line -------------------------------------------------------------------------


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _harness(count: int, rtt_ms: float) -> int:
    """The self-test's far ends: an echo server and a pinger, in one thread.

    Prints the echo server's port, reads the proxy's port from stdin, pings through the
    proxy ``count`` times (after one warm-up) and prints the round-trip times (ms), one
    per line. Each end sleeps until shortly before the proxy can deliver (half the RTT
    after the other end wrote) and then polls its socket, so the figures hold the
    proxy's delay and not the time a thread takes to wake from a long sleep (0.05-0.15
    ms here, as on any machine).
    """
    _punctual()
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    port = int(sys.stdin.readline())
    ping = socket.create_connection(("127.0.0.1", port))
    echo, _ = listener.accept()
    listener.close()
    for sock in (ping, echo):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
    half = rtt_ms / 2000

    def receive(sock: socket.socket, sent: float) -> bytes:
        nap = sent + half - SPIN - half / 50 - time.perf_counter()
        if nap > 0:
            time.sleep(nap)
        while True:
            with contextlib.suppress(BlockingIOError):
                return sock.recv(1)

    samples = []
    for _ in range(count + 1):  # the first is a warm-up
        started = time.perf_counter()
        ping.send(b"x")
        if receive(echo, started) != b"x":
            return 1
        echoed = time.perf_counter()
        echo.send(b"x")
        if receive(ping, echoed) != b"x":
            return 1
        samples.append((time.perf_counter() - started) * 1000)
    ping.close()
    echo.close()
    print("\n".join(f"{sample:.6f}" for sample in samples[1:]), flush=True)
    return 0


def ping_pong(rtt_ms: float, count: int) -> tuple[list[float], int, str]:
    """Ping-pong one byte ``count`` times through a proxy to an echo server.

    Returns the round-trip times (ms), the turns the proxy counted (one more than
    ``count``: a first ping-pong warms up and is not timed) and how late it wrote.
    """
    import subprocess

    harness = subprocess.Popen(
        [sys.executable, __file__, "--harness", str(count), "--rtt", str(rtt_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert harness.stdin is not None and harness.stdout is not None
    echo_port = int(harness.stdout.readline())
    proxy = DelayProxy(("127.0.0.1", echo_port), rtt_ms)
    proxy.start()
    harness.stdin.write(f"{proxy.address[1]}\n")
    harness.stdin.close()
    samples = [float(line) for line in harness.stdout]
    harness.wait(10)
    proxy.stop()
    if len(samples) != count:
        raise RuntimeError("the ping-pong harness failed")
    return samples, proxy.totals()["turns"], str(proxy.late)


def self_test(rtt_ms: float, count: int) -> int:
    """The ping-pong through the proxy: the mean must be the RTT +- 0.3 ms."""
    samples, turns, late = ping_pong(rtt_ms, count)
    mean, median = statistics.fmean(samples), statistics.median(samples)
    print(
        f"configured RTT {rtt_ms:.3f} ms; measured over {count} ping-pongs: mean {mean:.3f} ms, "
        f"median {median:.3f} ms, min {min(samples):.3f}, max {max(samples):.3f}; "
        f"turns counted {turns - 1} (+1 warm-up); the proxy's {late}"
    )
    ok = abs(mean - rtt_ms) <= 0.3 and turns == count + 1
    print(
        "self-test "
        + ("passed" if ok else "FAILED (want mean within 0.3 ms, a turn per ping-pong)")
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 0))
    parser.add_argument("--target", type=_address, help="HOST:PORT of the server")
    parser.add_argument("--rtt", type=float, default=10.0, help="round-trip time, ms")
    parser.add_argument("--self-test", action="store_true", help="ping-pong through the proxy")
    parser.add_argument("--count", type=int, default=200, help="ping-pongs for --self-test")
    parser.add_argument("--harness", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.harness is not None:
        return _harness(args.harness, args.rtt)
    if args.self_test:
        return self_test(args.rtt, args.count)
    if args.target is None:
        parser.error("--target is required (or --self-test)")
    proxy = DelayProxy(args.target, args.rtt, args.listen)
    host, port = proxy.address
    print(
        f"listening on {host}:{port}, forwarding to {args.target[0]}:{args.target[1]}, "
        f"RTT {args.rtt} ms (Ctrl-C or SIGTERM prints the counts)",
        flush=True,
    )

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        proxy.serve_forever()
    for stats in proxy.connections():
        print(stats.as_dict())
    print(proxy.totals())
    return 0


if __name__ == "__main__":
    sys.exit(main())
