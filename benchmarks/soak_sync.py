"""smtp_sync's share of the soak (``benchmarks/soak.py``), in a process of its own: threads.

Usage: python benchmarks/soak_sync.py PORT TLS_PORT CA_PATH SEED SECONDS REPORT_EVERY

The same callers as ``soak_client.py``, as threads: eight through two
``smtp_sync.SMTPPool`` s (plain and STARTTLS) and four sharing two ``smtp_sync.SMTP``
clients (``Timeouts(total=1)``, reconnecting, and saying STARTTLS, when a session
ended). A thread cannot be cancelled, so no call is. The same lines on stdout (``R``,
``S``, ``F``); "tasks" are threads. As smtplib's, connecting raises ``OSError`` when
the server resets the connection at once (the pool's too): a failure, not a bug.

A plain client's deadline is its total (1 s). The pool has no deadline for a whole call
(each stage has its own time limit, and a call may be tried three times), so its calls
are measured against the longest a call can take by construction: per attempt, the
wait for a connection (``wait_timeout``, 1 s), a NOOP, connecting (five stages of at
most 0.5 s: connect, greeting, EHLO, STARTTLS with its handshake, EHLO) and the
message's total (1 s). A call two seconds past its deadline has every thread's stack
written to stderr (the first three such calls), to show what it waits for.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import random
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak_client import (
    CLIENT_DEADLINE,
    POOL_DEADLINE,
    REPLY_TIMEOUT,
    fd_targets,
    heap,
    message,
    open_fds,
    rss_after_trim_kib,
    rss_kib,
    tls_sessions,
)

import smtp_sync
from smtp_core import Outcome, SMTPException

MAX_ATTEMPTS = 3
# The longest a pool call can take by construction (see the module's docstring).
POOL_BOUND = MAX_ATTEMPTS * (POOL_DEADLINE + 6 * REPLY_TIMEOUT + CLIENT_DEADLINE) + 0.1
ADAPTER = "smtp_sync"


class SyncSoak:
    def __init__(
        self, port: int, tls_port: int, ca_path: str, seed: int, seconds: float, report_every: float
    ) -> None:
        self.port = port
        self.tls_port = tls_port
        self.random = random.Random(f"{seed}-{ADAPTER}")
        self.seconds = seconds
        self.report_every = report_every
        self.tls_context = ssl.create_default_context(cafile=ca_path)
        self.lock = threading.Lock()  # stdout and the figures
        self.counts: dict[str, int] = {}
        self.tracebacks: set[str] = set()
        self.max_late = 0.0
        self.longest_connect = 0.0
        self.warmup = 120.0 if seconds >= 360 else seconds / 3
        self.warm_types: collections.Counter[str] | None = None
        self.end = 0.0
        self.stop = threading.Event()
        self.current: dict[str, tuple[float, int]] = {}
        self.dumped = 0

    def emit(self, line: str) -> None:
        with self.lock:
            sys.stdout.write(line + "\n")

    def pool(self, tls: bool) -> smtp_sync.SMTPPool:
        return smtp_sync.SMTPPool(
            "127.0.0.1",
            self.tls_port if tls else self.port,
            starttls=tls,
            context=self.tls_context if tls else None,
            local_hostname="soak.test",
            timeout=REPLY_TIMEOUT,
            timeouts=smtp_sync.Timeouts(total=CLIENT_DEADLINE),
            max_connections=3,
            max_in_flight=4,
            max_attempts=MAX_ATTEMPTS,
            retry_backoff=0.01,
            max_messages_per_connection=40,
            wait_timeout=POOL_DEADLINE,
        )

    def client(self, tls: bool) -> tuple[smtp_sync.SMTP, Callable[[], None]]:
        client = smtp_sync.SMTP(
            local_hostname="soak.test",
            timeout=REPLY_TIMEOUT,
            context=self.tls_context if tls else None,
            timeouts=smtp_sync.Timeouts(total=CLIENT_DEADLINE),
        )
        lock = threading.Lock()
        port = self.tls_port if tls else self.port

        def connect() -> None:
            """Connect (and STARTTLS) if the session ended; the threads sharing it take turns."""
            with lock:
                if client.sock is not None:
                    return
                started = time.monotonic()
                try:
                    client.connect("127.0.0.1", port)
                    if tls:
                        client.starttls()
                except BaseException:
                    client.close()
                    raise
                finally:
                    self.longest_connect = max(self.longest_connect, time.monotonic() - started)

        return client, connect

    def main(self) -> None:
        gc.collect()
        fds_start, threads_start, targets_start = open_fds(), threading.active_count(), fd_targets()
        self.end = time.monotonic() + self.seconds
        pools = [self.pool(tls) for tls in (False, True)]
        clients = [self.client(tls) for tls in (False, True)]
        monitor = threading.Thread(target=self.monitor, daemon=True)
        monitor.start()
        callers = [
            threading.Thread(
                target=self.caller, args=(f"p{i}", pools[i % 2].sendmail, POOL_BOUND, None)
            )
            for i in range(8)
        ]
        callers += [
            threading.Thread(
                target=self.caller,
                args=(f"c{i}", clients[i % 2][0].sendmail, CLIENT_DEADLINE, clients[i % 2][1]),
            )
            for i in range(4)
        ]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join()
        for client, _ in clients:
            if client.sock is not None:
                with contextlib.suppress(SMTPException, OSError):
                    client.quit()
            client.close()
        for pool in pools:
            pool.close()
        self.stop.set()
        monitor.join()
        time.sleep(0.2)
        self.stats("final")
        fds_before_gc = open_fds()
        gc.collect()
        self.emit(
            "F "
            + json.dumps(
                {
                    "fds_start": fds_start,
                    "fds_end": fds_before_gc,
                    "fds_after_gc": open_fds(),
                    "open_transports": [],
                    "objects_grown": self.objects_grown(),
                    "fds_left": sorted(
                        (
                            collections.Counter(fd_targets()) - collections.Counter(targets_start)
                        ).elements()
                    ),
                    "tasks_start": threads_start,
                    "tasks_end": threading.active_count(),
                    "connections": [pool.connections for pool in pools],
                    "pool_stats": [pool.stats for pool in pools],
                    "rss_after_trim_kib": rss_after_trim_kib(),
                }
            )
        )
        sys.stdout.flush()

    def stats(self, when: str) -> None:
        objects = gc.get_objects()
        if self.warm_types is None and (when == "final" or float(when) >= self.warmup):
            self.warm_types = collections.Counter(type(o).__name__ for o in objects)
        self.emit(
            "S "
            + json.dumps(
                {
                    "when": when,
                    "rss_kib": rss_kib(),
                    "fds": open_fds(),
                    "tasks": threading.active_count(),
                    "max_late_ms": round(self.max_late * 1000, 1),
                    "longest_connect_ms": round(self.longest_connect * 1000, 1),
                    "counts": dict(self.counts),
                    "objects": len(objects),
                    "tls_objects": tls_sessions(objects),
                    **heap(),
                }
            )
        )
        sys.stdout.flush()

    def objects_grown(self) -> list[tuple[str, int]]:
        if self.warm_types is None:
            return []
        now = collections.Counter(type(o).__name__ for o in gc.get_objects())
        now.subtract(self.warm_types)
        return [(name, n) for name, n in now.most_common(6) if n > 0]

    def watchdog(self) -> None:
        """A call 2 s past its deadline: every thread's stack to stderr (the first three)."""
        while not self.stop.wait(0.2):
            now = time.monotonic()
            for name, (deadline, ident) in list(self.current.items()):
                if now - deadline < 2.0 or self.dumped >= 3:
                    continue
                self.dumped += 1
                self.current.pop(name, None)
                lines = [f"=== {name}: {now - deadline:.1f} s past its deadline; every thread:\n"]
                for tid, frame in sys._current_frames().items():
                    lines.append(f"--- thread {tid}{' (this caller)' if tid == ident else ''}\n")
                    lines.extend(traceback.format_stack(frame)[-12:])
                sys.stderr.write("".join(lines))
                sys.stderr.flush()

    def monitor(self) -> None:
        threading.Thread(target=self.watchdog, daemon=True).start()
        started = time.monotonic()
        n = 1
        while not self.stop.wait(max(0.0, started + n * self.report_every - time.monotonic())):
            self.stats(f"{n * self.report_every:g}")
            n += 1

    def caller(
        self,
        name: str,
        send: Callable[..., Any],
        deadline: float,
        connect: Callable[[], None] | None,
    ) -> None:
        with self.lock:
            rng = random.Random(f"{self.random.random()}-{name}")
        seq = 0
        while time.monotonic() < self.end:
            seq += 1
            tag = f"{ADAPTER}/{name}/{seq}"
            recipients = [f"r{k}@example.org" for k in range(rng.choice((1, 1, 2)))]
            result, outcome, exc_name, text = "ok", "done", "-", ""
            started: float | None = None
            try:
                if connect is not None:
                    connect()
                started = time.monotonic()
                self.current[name] = (started + deadline, threading.get_ident())
                send("soak@example.org", recipients, message(tag, rng))
            except (SMTPException, OSError) as exc:
                # smtplib's API: connecting raises OSError (a reset during the handshake).
                fate = getattr(exc, "outcome", None)
                outcome = fate.value if isinstance(fate, Outcome) else "none"
                result = "unknown" if fate is Outcome.UNKNOWN else "fail"
                exc_name, text = type(exc).__name__, str(exc)
            except Exception as exc:  # not an SMTP error: a bug; the soak reports it
                result, exc_name, text = "error", type(exc).__name__, str(exc)
                with self.lock:
                    first = exc_name not in self.tracebacks
                    self.tracebacks.add(exc_name)
                if first:
                    traceback.print_exc(file=sys.stderr)
            self.current.pop(name, None)
            late = 0.0
            if started is not None:
                late = max(0.0, time.monotonic() - started - deadline)
            with self.lock:
                self.max_late = max(self.max_late, late)
                self.counts[result] = self.counts.get(result, 0) + 1
            text = " ".join(text.split())[:120]
            self.emit(f"R {tag} {result} {outcome} {late * 1000:.1f} {exc_name} {text}")


def main() -> None:
    port, tls_port, ca_path, seed, seconds, report_every = sys.argv[1:7]
    SyncSoak(
        int(port), int(tls_port), ca_path, int(seed), float(seconds), float(report_every)
    ).main()


if __name__ == "__main__":
    main()
