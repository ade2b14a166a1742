"""One adapter's share of the soak (``benchmarks/soak.py``), in a process of its own.

Usage: python benchmarks/soak_client.py ADAPTER PORT TLS_PORT CA_PATH SEED SECONDS REPORT_EVERY
ADAPTER: smtp_asyncio, smtp_asyncio-uvloop, smtp_anyio-asyncio, smtp_anyio-trio

Callers send continuously until SECONDS have passed: some through an ``SMTPPool`` (plain
and STARTTLS), some sharing plain ``SMTP`` clients (plain and STARTTLS); a few calls are
cancelled at a random point. Every message carries a unique tag. One line per message
on stdout::

    R <tag> <ok|fail|unknown|cancel|error> <outcome> <ms past its deadline> <exception>

then, every REPORT_EVERY seconds, ``S <json>`` (RSS, open descriptors, tasks, the
longest overrun), and at the end ``F <json>`` with the descriptors and tasks left once
every client and pool is closed.

With ``SOAK_TRACEMALLOC_DIR`` set, Python's allocations are traced (``tracemalloc``,
``SOAK_TRACEMALLOC_FRAMES`` frames, default 8): at the end of the warm-up a snapshot
is taken, and at every later report ``<dir>/<ADAPTER>.tracemalloc.txt`` gets the
traced total and the allocation sites that grew most since (and the live objects by
type that grew most), so a memory creep can be told apart from allocator
fragmentation and pinned to the line that allocates it.

With ``SOAK_GC_DIR`` set, each report after the warm-up first runs a full garbage
collection that keeps what it finds (``gc.DEBUG_SAVEALL``) and writes to
``<dir>/<ADAPTER>.gc.txt`` what was there by type and the shapes of the reference
cycles that held a connection's objects (its stream, asyncio's transports and SSL
protocol, the SSL object), or what held them if they were in no cycle of their own,
then frees it. Objects in a cycle wait for a collection of their generation, and the
oldest is collected only once the objects promoted into it have grown by a quarter
(none may come in a short run); a dead TLS connection that waits for it keeps hundreds
of KiB meanwhile. (The forced collections and the search stop the event loop: the RSS
and lateness figures of such a run are not comparable with others'.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import gc
import itertools
import json
import linecache
import os
import random
import ssl
import sys
import time
import traceback
import tracemalloc
import types
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import sniffio

import smtp_anyio
import smtp_asyncio
from smtp_core import Outcome, SMTPException

CLIENT_DEADLINE = 1.0  # Timeouts(total=...) of a plain client's sendmail
REPLY_TIMEOUT = 0.5  # timeout=: each reply (and each connect stage)
POOL_DEADLINE = 1.0  # the pool's timeout: a whole pool call, retries and waiting included
CANCEL_CHANCE = 0.05  # calls cancelled at a random point
CANCEL_WITHIN = 0.4  # ... within this many seconds of their start


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# glibc's struct mallinfo2, every field a size_t.
_MALLINFO2_FIELDS = (
    *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
    *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]


def _libc_mallinfo2() -> Any:
    with contextlib.suppress(OSError, AttributeError):
        function = ctypes.CDLL(None).mallinfo2
        function.restype = _Mallinfo2
        return function
    return None


_mallinfo2 = _libc_mallinfo2()


def heap() -> dict[str, int]:
    """What the allocators hold, apart from RSS: Python's live small blocks, and glibc's
    heap in use and free-but-kept (KiB; glibc only). Python objects that leak raise the
    blocks; C allocations that leak (OpenSSL's, say) raise ``malloc_used_kib``; memory
    kept by the allocator after a peak shows as ``malloc_free_kib``."""
    figures = {"py_blocks": sys.getallocatedblocks()}
    if _mallinfo2 is not None:
        info = _mallinfo2()
        figures["malloc_used_kib"] = (info.uordblks + info.hblkhd) // 1024
        figures["malloc_free_kib"] = info.fordblks // 1024
    return figures


def rss_after_trim_kib() -> int | None:
    """RSS once glibc has given back the free memory it keeps (``malloc_trim(0)``):
    what of an RSS growth was the allocator's, not live memory. None off glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
        return rss_kib()
    return None


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_targets() -> list[str]:
    targets = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            targets.append(os.readlink(f"/proc/self/fd/{name}").split("[")[0])
    return sorted(targets)


def open_transports() -> list[str]:
    """What holds the transports still open (after ``gc.collect()``): a leak's trail."""
    found = []
    for obj in gc.get_objects():
        if not isinstance(obj, asyncio.BaseTransport):
            continue
        with contextlib.suppress(Exception):
            if obj.is_closing():
                continue
            protocol = obj.get_protocol()
            state = {
                key: value
                for key, value in vars(protocol).items()
                if key in ("_closed", "_eof", "_tls", "_lost")
            }
            owners = sorted(
                {
                    type(owner).__name__
                    for holder in gc.get_referrers(protocol)
                    for owner in (
                        gc.get_referrers(holder) if isinstance(holder, dict) else [holder]
                    )
                    if not isinstance(owner, (list, dict, type(sys)))
                }
            )
            found.append(f"{type(obj).__name__}/{type(protocol).__name__} {state} held by {owners}")
    return found


def live_tasks() -> int:
    if sniffio.current_async_library() == "trio":
        import trio

        count, stack = 0, [trio.lowlevel.current_root_task()]
        while stack:
            task = stack.pop()
            count += 1
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        return count
    return len(asyncio.all_tasks())


def tls_sessions(objects: list[Any]) -> int:
    """TLS sessions alive, open or ended but not freed yet (an SSL object each)."""
    return sum(isinstance(o, (ssl.SSLObject, ssl.SSLSocket)) for o in objects)


# What a connection is made of: a cycle that holds one of these keeps the connection.
CONNECTION_TYPES = frozenset(
    {
        "StreamProtocol",
        "TrioTransport",
        "SSLProtocol",
        "_SSLProtocolTransport",
        "_SelectorSocketTransport",
        "SSLObject",
        "TLSStream",
    }
)


def _describe(obj: Any) -> str:
    """A short name for one object on a reference path."""
    if isinstance(obj, types.FrameType):
        code = obj.f_code
        return f"frame {code.co_name} ({os.path.basename(code.co_filename)}:{obj.f_lineno})"
    if isinstance(obj, types.TracebackType):
        return f"traceback {obj.tb_frame.f_code.co_name}"
    if isinstance(obj, types.MethodType):
        return f"method {obj.__func__.__qualname__}"
    if isinstance(obj, types.FunctionType):
        return f"function {obj.__qualname__}"
    return type(obj).__qualname__


def _edge(holder: Any, held: Any) -> str:
    """How ``holder`` refers to ``held`` (an attribute, a key, a local), where it says."""
    names: dict[str, Any] = {}
    if isinstance(holder, types.FrameType):
        names = holder.f_locals
    elif isinstance(holder, dict):
        names = {str(key): value for key, value in holder.items()}
    else:
        with contextlib.suppress(TypeError):
            names = vars(holder)
    for name, value in names.items():
        if value is held:
            return f".{name}"
    return ""


def cycle_through(root: Any, garbage: dict[int, Any]) -> str | None:
    """The shortest reference cycle from ``root`` back to it within ``garbage``, as text
    (instance dictionaries folded into the attribute names)."""
    parents: dict[int, Any] = {id(root): None}
    queue = collections.deque([root])
    while queue:
        holder = queue.popleft()
        for held in gc.get_referents(holder):
            if held is root:
                path = [holder]
                while parents[id(path[-1])] is not None:
                    path.append(parents[id(path[-1])])
                path.reverse()
                path.append(root)
                text = _describe(path[0])
                for before, after in itertools.pairwise(path):
                    if isinstance(after, dict) and not isinstance(before, types.FrameType):
                        continue  # an instance's __dict__: the next edge names the attribute
                    text += f" {_edge(before, after) or '->'} {_describe(after)}"
                return text
            if id(held) in garbage and id(held) not in parents:
                parents[id(held)] = holder
                queue.append(held)
    return None


def held_by(obj: Any, garbage: dict[int, Any], steps: int = 10) -> str:
    """What holds ``obj`` within ``garbage``, referrer by referrer (instance dictionaries
    folded into the attribute names), up to ``steps`` of them."""
    text = _describe(obj)
    seen = {id(obj)}
    for _ in range(steps):
        holders = [
            holder
            for holder in gc.get_referrers(obj)
            if id(holder) in garbage and id(holder) not in seen
        ]
        if not holders:
            break
        holder = holders[0]
        seen.add(id(holder))
        if isinstance(holder, dict):  # an instance's __dict__: name its owner instead
            owners = [o for o in gc.get_referrers(holder) if id(o) in garbage and id(o) not in seen]
            if owners:
                seen.add(id(owners[0]))
                text += f" <-{_edge(holder, obj) or ''} {_describe(owners[0])}"
                obj = owners[0]
                continue
        text += f" <-{_edge(holder, obj) or ''} {_describe(holder)}"
        obj = holder
    return text


def garbage_report() -> list[str]:
    """A full collection that keeps what it finds: by type, and the cycles that held a
    connection's objects; then the garbage is freed."""
    flags = gc.get_debug()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(flags)
    garbage = {id(obj): obj for obj in found}
    by_type = collections.Counter(type(obj).__qualname__ for obj in found)
    shapes: collections.Counter[str] = collections.Counter()
    for obj in found:
        if type(obj).__qualname__ in CONNECTION_TYPES:
            shape = cycle_through(obj, garbage)
            shapes[shape or f"in no cycle of its own: {held_by(obj, garbage)}"] += 1
    lines = [f"garbage: {len(found)} objects; by type: {by_type.most_common(16)}"]
    lines.extend(f"    {count}x {shape}" for shape, count in shapes.most_common(12))
    del found, garbage
    gc.collect()
    return lines


def message(tag: str, rng: random.Random) -> bytes:
    lines = [
        f"X-Soak-Tag: {tag}",
        "From: soak@example.org",
        "To: sink@example.org",
        f"Subject: soak {tag}",
        "",
    ]
    for i in range(rng.randrange(1, 40)):
        lines.append(("." if i % 7 == 0 else "") + "x" * rng.randrange(0, 120))
    return ("\r\n".join(lines) + "\r\n").encode()


class Soak:
    def __init__(
        self,
        adapter: str,
        port: int,
        tls_port: int,
        ca_path: str,
        seed: int,
        seconds: float,
        report_every: float,
    ) -> None:
        self.adapter = adapter
        self.module: Any = smtp_asyncio if adapter.startswith("smtp_asyncio") else smtp_anyio
        self.port = port
        self.tls_port = tls_port
        self.ca_path = ca_path
        self.random = random.Random(f"{seed}-{adapter}")
        self.seconds = seconds
        self.report_every = report_every
        self.out = sys.stdout
        self.max_late = 0.0
        self.longest_connect = 0.0
        self.tracebacks: set[str] = set()
        self.max_lag = 0.0
        # Object counts by type at the end of the warm-up: what grew since, at the end.
        self.warmup = 120.0 if seconds >= 360 else seconds / 3
        self.warm_types: collections.Counter[str] | None = None
        self.counts: dict[str, int] = {}
        self.end = 0.0
        self.tls_context = ssl.create_default_context(cafile=ca_path)
        self.trace_dir = os.environ.get("SOAK_TRACEMALLOC_DIR")
        self.trace_base: tracemalloc.Snapshot | None = None
        if self.trace_dir is not None:
            tracemalloc.start(int(os.environ.get("SOAK_TRACEMALLOC_FRAMES", "8")))
        self.gc_dir = os.environ.get("SOAK_GC_DIR")

    def emit(self, line: str) -> None:
        self.out.write(line + "\n")

    def options(self, tls: bool) -> dict[str, Any]:
        return {
            "hostname": "127.0.0.1",
            "port": self.tls_port if tls else self.port,
            "start_tls": tls,
            # One context for every connection (trusting only the soak's CA): a context
            # built per connection would load the system trust store each time.
            "tls_context": self.tls_context if tls else None,
            "local_hostname": "soak.test",
        }

    async def main(self) -> None:
        # The event loop's own lazily opened descriptors (uvloop opens one at its first
        # connection) are not the client's: one bare connection first, then the count.
        with contextlib.suppress(OSError):
            stream = await anyio.connect_tcp("127.0.0.1", self.port)
            await stream.aclose()
        await anyio.sleep(0.05)
        fds_start, tasks_start, targets_start = open_fds(), live_tasks(), fd_targets()
        self.end = time.monotonic() + self.seconds
        mod = self.module
        pools = [
            mod.SMTPPool(
                **self.options(tls),
                max_connections=3,
                max_in_flight=4,
                timeout=POOL_DEADLINE,
                retry_backoff=0.01,
                max_messages_per_connection=40,
                timeouts=mod.Timeouts(total=POOL_DEADLINE),
            )
            for tls in (False, True)
        ]
        clients = [
            mod.SMTP(
                **self.options(tls),
                timeout=REPLY_TIMEOUT,
                timeouts=mod.Timeouts(total=CLIENT_DEADLINE),
            )
            for tls in (False, True)
        ]
        async with anyio.create_task_group() as outer:
            outer.start_soon(self.monitor)
            outer.start_soon(self.lag)
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(self.caller, f"p{i}", pools[i % 2].sendmail, POOL_DEADLINE)
                for i in range(4):
                    client = clients[i % 2]
                    tg.start_soon(
                        self.caller,
                        f"c{i}",
                        client.sendmail,
                        CLIENT_DEADLINE,
                        self.connector(client),
                    )
            for client in clients:
                if client.is_connected:
                    with contextlib.suppress(SMTPException, OSError):
                        await client.quit(timeout=REPLY_TIMEOUT)
                await client.aclose_quietly()
            for pool in pools:
                await pool.close()
            outer.cancel_scope.cancel()
        await anyio.sleep(0.2)  # let closed transports release their sockets
        self.stats("final")
        fds_before_gc = open_fds()
        gc.collect()  # a socket only garbage refers to is closed here: counted apart
        self.emit(
            "F "
            + json.dumps(
                {
                    "fds_start": fds_start,
                    "fds_end": fds_before_gc,
                    "fds_after_gc": open_fds(),
                    "open_transports": open_transports(),
                    "objects_grown": self.objects_grown(),
                    "fds_left": sorted(
                        (
                            collections.Counter(fd_targets()) - collections.Counter(targets_start)
                        ).elements()
                    ),
                    "tasks_start": tasks_start,
                    "tasks_end": live_tasks(),
                    "connections": [pool.connections for pool in pools],
                    "pool_stats": [pool.stats for pool in pools],
                    "rss_after_trim_kib": rss_after_trim_kib(),
                }
            )
        )
        self.out.flush()

    def stats(self, when: str) -> None:
        warm = when == "final" or float(when) >= self.warmup
        if self.trace_dir is not None and warm:
            self.trace(when)  # first: its snapshots are not counted among the objects
        if self.gc_dir is not None and warm:
            path = os.path.join(self.gc_dir, f"{self.adapter}.gc.txt")
            with open(path, "a" if self.warm_types is not None else "w") as out:
                out.write("\n".join([f"=== at {when} s", *garbage_report()]) + "\n")
        objects = gc.get_objects()
        if self.warm_types is None and warm:
            self.warm_types = collections.Counter(type(o).__name__ for o in objects)
        self.emit(
            "S "
            + json.dumps(
                {
                    "when": when,
                    "rss_kib": rss_kib(),
                    "fds": open_fds(),
                    "tasks": live_tasks(),
                    "max_late_ms": round(self.max_late * 1000, 1),
                    "longest_connect_ms": round(self.longest_connect * 1000, 1),
                    "max_loop_lag_ms": round(self.max_lag * 1000, 1),
                    "counts": self.counts,
                    "objects": len(objects),
                    "tls_objects": tls_sessions(objects),
                    **heap(),
                }
            )
        )
        self.out.flush()

    def trace(self, when: str) -> None:
        """The warm-up snapshot, or what grew since it (``SOAK_TRACEMALLOC_DIR``)."""
        assert self.trace_dir is not None
        traced, peak = tracemalloc.get_traced_memory()
        lines = [
            f"=== at {when} s: traced {traced / 1024:.0f} KiB (peak {peak / 1024:.0f} KiB), "
            f"rss {rss_kib()} KiB, {heap()}"
        ]
        if self.trace_base is not None:
            lines.append(f"objects grown most since the warm-up: {self.objects_grown(12)}")
        # The report's own allocations (linecache's copies of source files) left out.
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, linecache.__file__),
            ]
        )
        if self.trace_base is None:
            self.trace_base = snapshot
            mode = "w"
        else:
            mode = "a"
            for stat in snapshot.compare_to(self.trace_base, "traceback")[:12]:
                lines.append(f"{stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks")
                lines.extend("    " + line for line in stat.traceback.format(limit=8))
        path = os.path.join(self.trace_dir, f"{self.adapter}.tracemalloc.txt")
        with open(path, mode) as out:
            out.write("\n".join(lines) + "\n")

    def objects_grown(self, most: int = 6) -> list[tuple[str, int]]:
        """The types whose live objects grew most since the warm-up (a leak's suspects)."""
        if self.warm_types is None:
            return []
        now = collections.Counter(type(o).__name__ for o in gc.get_objects())
        now.subtract(self.warm_types)
        return [(name, n) for name, n in now.most_common(most) if n > 0]

    async def lag(self) -> None:
        """How late the event loop wakes a 10 ms sleep: the machine's share of any overrun."""
        while True:
            before = time.monotonic()
            await anyio.sleep(0.01)
            self.max_lag = max(self.max_lag, time.monotonic() - before - 0.01)

    async def monitor(self) -> None:
        started = time.monotonic()
        n = 1
        while True:
            await anyio.sleep(max(0.0, started + n * self.report_every - time.monotonic()))
            self.stats(f"{n * self.report_every:g}")
            n += 1

    def connector(self, client: Any) -> Callable[[], Awaitable[None]]:
        """Connect ``client`` if its session ended (the callers sharing it take turns)."""
        lock = anyio.Lock()

        async def connect() -> None:
            async with lock:
                if client.is_connected:
                    return
                started = time.monotonic()
                try:
                    await client.connect(timeout=REPLY_TIMEOUT)
                finally:
                    self.longest_connect = max(self.longest_connect, time.monotonic() - started)

        return connect

    async def caller(
        self,
        name: str,
        send: Callable[..., Awaitable[Any]],
        deadline: float,
        connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        rng = random.Random(f"{self.random.random()}-{name}")
        seq = 0
        while time.monotonic() < self.end:
            seq += 1
            tag = f"{self.adapter}/{name}/{seq}"
            recipients = [f"r{k}@example.org" for k in range(rng.choice((1, 1, 2)))]
            cancel_after = rng.uniform(0, CANCEL_WITHIN) if rng.random() < CANCEL_CHANCE else None
            result, outcome, exc_name, text = "ok", "done", "-", ""
            started: float | None = None  # connect() has no deadline of its own to measure
            with anyio.CancelScope() as scope:
                if cancel_after is not None:
                    scope.deadline = anyio.current_time() + cancel_after
                try:
                    if connect is not None:
                        await connect()
                    started = time.monotonic()
                    await send("soak@example.org", recipients, message(tag, rng))
                except SMTPException as exc:
                    fate = getattr(exc, "outcome", None)
                    outcome = fate.value if isinstance(fate, Outcome) else "none"
                    result = "unknown" if fate is Outcome.UNKNOWN else "fail"
                    exc_name, text = type(exc).__name__, str(exc)
                except Exception as exc:  # not an SMTP error: a bug; the soak reports it
                    result, exc_name, text = "error", type(exc).__name__, str(exc)
                    if exc_name not in self.tracebacks:  # the first of each kind
                        self.tracebacks.add(exc_name)
                        traceback.print_exc(file=sys.stderr)
            if scope.cancelled_caught:
                result, outcome = "cancel", "-"
            late = 0.0
            if started is not None and not scope.cancelled_caught:
                late = max(0.0, time.monotonic() - started - deadline)
                self.max_late = max(self.max_late, late)
            self.counts[result] = self.counts.get(result, 0) + 1
            text = " ".join(text.split())[:120]
            self.emit(f"R {tag} {result} {outcome} {late * 1000:.1f} {exc_name} {text}")
            await anyio.sleep(0)


def main() -> None:
    adapter, port, tls_port, ca_path, seed, seconds, report_every = sys.argv[1:8]
    soak = Soak(
        adapter, int(port), int(tls_port), ca_path, int(seed), float(seconds), float(report_every)
    )
    if adapter == "smtp_anyio-trio":
        anyio.run(soak.main, backend="trio")
    elif adapter.endswith("-uvloop"):
        anyio.run(soak.main, backend="asyncio", backend_options={"use_uvloop": True})
    else:
        anyio.run(soak.main, backend="asyncio")


if __name__ == "__main__":
    main()
