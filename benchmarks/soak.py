"""Soak: nothing leaks, hangs or is lost while a server misbehaves for minutes on end.

    python benchmarks/soak.py                  # 10 minutes (--minutes N, or --seconds N)
    python benchmarks/soak.py --seconds 20     # a smoke run (.ci/run)

A chaos server (``benchmarks/soak_server.py``) runs in this process on 127.0.0.1, with
a plain listener and one that offers STARTTLS (trustme certificates; the clients trust
that CA). At points drawn from ``--seed`` it drops connections, resets them (TCP RST),
answers 421 and 4xx, stalls past the timeouts, closes or stalls during the TLS
handshake and trickles replies a byte at a time; it records each message it accepted
by the unique tag the message carries. Every adapter runs at the same time, each in
its own process (``benchmarks/soak_client.py``): smtp_asyncio, smtp_anyio on asyncio
and on trio, and smtp_asyncio on uvloop when it is installed. In each, twelve callers
send continuously: eight through two ``SMTPPool`` s (plain and STARTTLS; deadline: the
pool's ``timeout``, 1 s) and four sharing two ``SMTP`` clients (``Timeouts(total=1)``,
reconnecting when a session ends); 5 % of calls are cancelled at a random point.
smtp_sync runs the same callers as threads (``benchmarks/soak_sync.py``: its pool has
no whole-call deadline, so its calls are held to the longest one can take by
construction; no call is cancelled). ``--adapter`` runs only the adapters named.

Every minute (``--report-every``) it prints the figures; at the end it checks them:

* ``delivered``: accepted by the server == reported delivered, once messages whose
  fate the caller could not know (outcome unknown, caller cancelled) are set apart;
* ``twice``: no message delivered twice;
* ``failed-delivered``: none reported failed (never sent, or refused) but delivered;
  outcome unknown is counted apart, with how many of those the server accepted;
* ``exceptions``: no exception other than the library's own;
* ``rss``: RSS of each client process grows less than 5 MiB from the end of the
  warm-up (minute 2, or a third of a shorter run) to the end; beside it, where the
  growth is: Python's live blocks, glibc's heap in use, and glibc's free-but-kept heap
  (a leak raises the first two; memory the allocator keeps after a peak, the third);
* ``fds``: each client process's open descriptors are back to the start count once
  every client and pool is closed (what still holds an open transport is printed);
* ``tasks``: no task alive once the pools and clients are closed;
* ``late-pool``, ``late-client``: no call returns ``--late-limit-ms`` (100) or more past
  its deadline (calls their caller cancelled aside);
* ``exit``: each client process exits cleanly within a minute of the end.

Exits 1 if any check fails, except those named with ``--known-issue`` (printed as
KNOWN). Every loop stops by itself at the end of the duration. With ``SOAK_STDERR_DIR``
set, each client process's stderr (the first traceback of each unexpected exception)
is written there. With ``SOAK_TRACEMALLOC_DIR`` set, each client process traces its
allocations and writes what grew since the warm-up there; with ``SOAK_GC_DIR`` set, what
each full collection after the warm-up finds in reference cycles (``soak_client.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import json
import logging
import os
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak_server import ChaosServer

HERE = Path(__file__).resolve().parent
ADAPTERS = ["smtp_asyncio", "smtp_anyio-asyncio", "smtp_anyio-trio"]
if importlib.util.find_spec("uvloop") is not None:
    ADAPTERS.append("smtp_asyncio-uvloop")
ADAPTERS.append("smtp_sync")

RSS_GROWTH_LIMIT_KIB = 5 * 1024
LATE_LIMIT_MS = 100.0


@dataclass
class Child:
    adapter: str
    process: Any = None
    results: dict[str, tuple[str, str, float, str, str]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    reported_twice: list[str] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)

    async def read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode().rstrip("\n")
            kind, _, rest = line.partition(" ")
            if kind == "R":
                tag, result, outcome, late, exc, text = rest.split(" ", 5)
                if tag in self.results:
                    self.reported_twice.append(tag)
                self.results[tag] = (result, outcome, float(late), exc, text)
            elif kind == "S":
                self.samples.append(json.loads(rest))
            elif kind == "F":
                self.final = json.loads(rest)

    async def read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            if len(self.stderr) < 20_000:
                self.stderr += raw


def overruns(child: Child, limit_ms: float) -> dict[str, tuple[float, int, int]]:
    """Per kind of caller (pool, plain client): the longest overrun, how many calls ran
    past the limit, and how many calls there were (calls their caller cancelled aside)."""
    figures = {}
    for kind, prefix in (("pool", "p"), ("client", "c")):
        lates = [
            late
            for tag, (result, _, late, _, _) in child.results.items()
            if tag.split("/")[1].startswith(prefix) and result != "cancel"
        ]
        over = sum(late >= limit_ms for late in lates)
        figures[kind] = (max(lates, default=0.0), over, len(lates))
    return figures


def heap_growth(base: dict[str, Any], last: dict[str, Any]) -> str:
    """Where an RSS growth is: Python's live blocks, glibc's heap in use, its free part."""
    if "py_blocks" not in base or "py_blocks" not in last:
        return ""
    text = f"; Python blocks {last['py_blocks'] - base['py_blocks']:+d}"
    if "malloc_used_kib" in base and "malloc_used_kib" in last:
        used = (last["malloc_used_kib"] - base["malloc_used_kib"]) / 1024
        free = (last["malloc_free_kib"] - base["malloc_free_kib"]) / 1024
        text += f", malloc in use {used:+.2f} MiB, malloc free {free:+.2f} MiB"
    return text


def load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


CHECKS = {
    "delivered": "accepted by the server == reported delivered",
    "twice": "no message delivered twice",
    "failed-delivered": "no message reported failed (never sent, refused) but delivered",
    "exceptions": "no exception other than SMTPException",
    "reported-twice": "each call reported once",
    "rss": "RSS growth after the warm-up under 5 MiB",
    "late-pool": "pool calls return by their deadline (plus the limit)",
    "late-client": "plain client calls return by their deadline (plus the limit)",
    "fds": "open descriptors back to the start count once idle",
    "tasks": "no task alive once the pools and clients are closed",
    "exit": "every client process exits cleanly, in time",
}


class Report:
    """The figures and checks, from the server's record and what the callers were told.

    A check named in ``known`` (a known issue, with its xfail test) is printed as
    KNOWN when it fails and does not fail the run.
    """

    def __init__(
        self,
        server: ChaosServer,
        children: list[Child],
        warmup: float,
        late_limit_ms: float = LATE_LIMIT_MS,
        known: frozenset[str] = frozenset(),
    ) -> None:
        self.server = server
        self.children = children
        self.warmup = warmup
        self.late_limit_ms = late_limit_ms
        self.known = known
        self.failures: list[str] = []
        self.known_failures: list[str] = []
        self.final = False
        self.stderr_dir = os.environ.get("SOAK_STDERR_DIR")

    def check(self, name: str, ok: bool, text: str) -> str:
        if ok:
            return ("ok   " if self.final else "     ") + text
        if not self.final:
            return "!!!! " + text
        if name in self.known:
            self.known_failures.append(name)
            return f"KNOWN [{name}] " + text
        self.failures.append(name)
        return f"FAIL [{name}] " + text

    def figures(self, final: bool) -> list[str]:
        self.final = final
        check = self.check
        accepted = dict(self.server.accepted)
        results: dict[str, tuple[str, str, float, str, str]] = {}
        for child in self.children:
            results.update(child.results)
        by: dict[str, set[str]] = collections.defaultdict(set)
        for tag, (result, *_) in results.items():
            by[result].add(tag)
        n = {kind: len(tags) for kind, tags in by.items()}
        accepted_tags = set(accepted)
        delivered = by["ok"]
        twice = sorted(tag for tag, count in accepted.items() if count > 1)
        ok_not_accepted = sorted(delivered - accepted_tags)
        failed_but_accepted = sorted(by["fail"] & accepted_tags)
        unknown_accepted = by["unknown"] & accepted_tags
        cancel_accepted = by["cancel"] & accepted_tags
        unreported = sorted(accepted_tags - set(results))
        # In flight at an interim report: accepted, the caller not told yet.
        # (A message reported failed but accepted is counted by its own check.)
        accounted = (
            len(accepted_tags)
            - len(unknown_accepted)
            - len(cancel_accepted)
            - len(failed_but_accepted)
        )
        pending = 0 if final else len(unreported)
        lines = [
            f"messages reported: {len(results)} (delivered {len(delivered)}, "
            f"failed {n.get('fail', 0)}, outcome unknown {n.get('unknown', 0)}, "
            f"cancelled by caller {n.get('cancel', 0)}, other errors {n.get('error', 0)}); "
            f"load average {load()}",
            f"accepted by the server: {len(accepted_tags)} messages "
            f"({sum(accepted.values())} acceptances), of which outcome unknown "
            f"{len(unknown_accepted)}, caller cancelled {len(cancel_accepted)}, "
            f"not yet reported {len(unreported)}",
            check(
                "delivered",
                accounted - pending == len(delivered) and not ok_not_accepted,
                f"accepted (less unknown, cancelled, failed) {accounted - pending} == "
                f"reported delivered {len(delivered)}; reported delivered but not accepted: "
                f"{len(ok_not_accepted)} {ok_not_accepted[:3]}",
            ),
            check("twice", not twice, f"delivered twice: {len(twice)} {twice[:3]}"),
            check(
                "failed-delivered",
                not failed_but_accepted,
                f"reported failed but delivered: {len(failed_but_accepted)} "
                f"{failed_but_accepted[:3]} (outcome unknown: {n.get('unknown', 0)}, "
                f"of which delivered {len(unknown_accepted)})",
            ),
            check(
                "exceptions",
                not by["error"],
                f"exceptions other than SMTPException: {n.get('error', 0)}",
            ),
        ]
        twice_reported = [tag for child in self.children for tag in child.reported_twice]
        lines.append(
            check(
                "reported-twice", not twice_reported, f"calls reported twice: {len(twice_reported)}"
            )
        )
        if final:
            lines.extend(self.details(results, failed_but_accepted))
        for child in self.children:
            lines.extend(self.child_figures(child))
        return lines

    def details(
        self, results: dict[str, tuple[str, str, float, str, str]], failed_but_accepted: list[str]
    ) -> list[str]:
        lines = []
        worst = sorted(results.items(), key=lambda item: -item[1][2])[:8]
        lines.append("longest past their deadline:")
        lines.extend(
            f"    {tag} {late:.0f} ms: {result} {exc} {text}"
            for tag, (result, _, late, exc, text) in worst
            if late > 0
        )
        for tag in failed_but_accepted[:5]:
            lines.append(f"reported failed but delivered: {tag} {results[tag]}")
        errors = collections.Counter(
            f"{exc}: {text}" for result, _, _, exc, text in results.values() if result == "error"
        )
        for error, count in errors.most_common(5):
            lines.append(f"unexpected exception ({count}x): {error}")
        outcomes = collections.Counter(
            f"{result}/{outcome}/{exc}"
            for result, outcome, _, exc, _ in results.values()
            if result in ("fail", "unknown", "error")
        )
        lines.append(
            "failures by kind: " + ", ".join(f"{k} {c}" for k, c in outcomes.most_common())
        )
        return lines

    def child_figures(self, child: Child) -> list[str]:
        check = self.check
        name = child.adapter
        if not child.samples:
            return [f"  {name}: no sample yet"]
        last = child.samples[-1]
        lines = [
            f"  {name} (at {last['when']} s): rss {last['rss_kib'] / 1024:.1f} MiB, "
            f"fds {last['fds']}, tasks {last['tasks']}, objects {last.get('objects')}, "
            f"TLS sessions alive {last.get('tls_objects')}, "
            f"calls {sum(last['counts'].values())} "
            f"{last['counts']}, longest connect() {last['longest_connect_ms']:.0f} ms, "
            f"event loop late by up to {last.get('max_loop_lag_ms', 0):.0f} ms"
        ]
        timed = [s for s in child.samples if s["when"] != "final"]
        after_warmup = [s for s in timed if float(s["when"]) >= self.warmup]
        if after_warmup:
            base = after_warmup[0]
            growth = last["rss_kib"] - base["rss_kib"]
            before, after = base["rss_kib"] / 1024, last["rss_kib"] / 1024
            lines.append(
                check(
                    "rss",
                    growth < RSS_GROWTH_LIMIT_KIB,
                    f"  {name}: RSS growth since {base['when']} s: "
                    f"{growth / 1024:+.2f} MiB ({before:.1f} -> {after:.1f} MiB; limit 5 MiB)"
                    + heap_growth(base, last),
                )
            )
        elif self.final:
            lines.append(check("rss", False, f"  {name}: no RSS sample after the warm-up"))
        limit = self.late_limit_ms
        for kind, (longest, over, calls) in overruns(child, limit).items():
            lines.append(
                check(
                    f"late-{kind}",
                    over == 0,
                    f"  {name}: {kind} calls past their deadline: longest {longest:.0f} ms, "
                    f"{over} of {calls} by {limit:g} ms or more",
                )
            )
        if self.final:
            lines.extend(self.final_figures(child))
        return lines

    def final_figures(self, child: Child) -> list[str]:
        check = self.check
        name = child.adapter
        f = child.final
        code = child.process.returncode
        stderr = child.stderr.decode(errors="replace")
        if f is None:
            return [
                check(
                    "exit",
                    False,
                    f"  {name}: no final figures (exit code {code}): {stderr[-2000:]}",
                )
            ]
        lines = [
            check(
                "fds",
                f["fds_end"] == f["fds_start"],
                f"  {name}: open fds once idle {f['fds_end']} (start {f['fds_start']}; "
                f"{f['fds_after_gc']} after gc.collect())"
                + (f"; left open: {f['fds_left']}" if f["fds_left"] else ""),
            ),
            check(
                "tasks",
                f["tasks_end"] == f["tasks_start"],
                f"  {name}: tasks alive once closed: {f['tasks_end'] - f['tasks_start']} "
                f"(pool connections left {f['connections']})",
            ),
            f"  {name}: pools {f['pool_stats']}",
            *(
                [
                    f"  {name}: RSS once idle {child.samples[-1]['rss_kib'] / 1024:.1f} MiB, "
                    f"{f['rss_after_trim_kib'] / 1024:.1f} MiB once glibc gave back the free "
                    "memory it kept (malloc_trim)"
                ]
                if f.get("rss_after_trim_kib") and child.samples
                else []
            ),
            *(f"  {name}: still open: {line}" for line in f.get("open_transports", [])[:5]),
            f"  {name}: live objects grown most since the warm-up: {f.get('objects_grown')}",
            check("exit", code == 0, f"  {name}: exit code {code}"),
        ]
        if stderr:
            lines.append(f"  {name} stderr (last lines): " + " | ".join(stderr.splitlines()[-3:]))
            if self.stderr_dir is not None:
                path = Path(self.stderr_dir) / f"{name}.stderr"
                path.write_text(stderr)
                lines.append(f"  {name} stderr (first tracebacks of each kind): {path}")
        return lines


async def soak(
    seconds: float,
    seed: int,
    report_every: float,
    warmup: float,
    chaos: float,
    late_limit_ms: float,
    known: frozenset[str],
    adapters: list[str] = ADAPTERS,
) -> int:
    logging.getLogger("asyncio").setLevel(logging.ERROR)  # the server's TLS EOF notices
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    server = ChaosServer(seed, server_context, chaos=chaos)
    await server.start()
    with tempfile.TemporaryDirectory() as tmp:
        ca_path = os.path.join(tmp, "ca.pem")
        ca.cert_pem.write_to_path(ca_path)
        children = [Child(adapter) for adapter in adapters]
        print(
            f"soak: {seconds:g} s, seed {seed}, adapters {', '.join(adapters)} "
            f"(each in its own process, all at once); {os.cpu_count()} CPUs, load {load()}",
            flush=True,
        )
        readers = []
        for child in children:
            if child.adapter == "smtp_sync":
                program = [str(HERE / "soak_sync.py")]
            else:
                program = [str(HERE / "soak_client.py"), child.adapter]
            child.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *program,
                str(server.port),
                str(server.tls_port),
                ca_path,
                str(seed),
                str(seconds),
                str(report_every),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=1 << 20,
            )
            readers += [
                asyncio.ensure_future(child.read()),
                asyncio.ensure_future(child.read_stderr()),
            ]
        report = Report(server, children, warmup, late_limit_ms, known)
        started = time.monotonic()
        waiting = asyncio.ensure_future(asyncio.gather(*(c.process.wait() for c in children)))
        n = 1
        while True:
            wake = started + n * report_every + 5.0  # after the children's samples
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiting), max(0.0, wake - time.monotonic()))
            if waiting.done():
                break
            print(f"--- {n * report_every:g} s", flush=True)
            print("\n".join(report.figures(final=False)), flush=True)
            n += 1
            if time.monotonic() > started + seconds + 60:
                for child in children:
                    if child.process.returncode is None:
                        child.process.kill()
                print(
                    "FAIL [exit] a client process did not stop within 60 s of the end", flush=True
                )
        await asyncio.gather(*readers)
        await asyncio.sleep(0.5)  # a message the server was still reading
        await server.stop()
        print(
            f"=== end after {time.monotonic() - started:.1f} s; server: {server.connections} "
            f"connections; faults injected: {sum(server.faults.values())} "
            f"{dict(sorted(server.faults.items()))}"
        )
        print("\n".join(report.figures(final=True)))
        if report.known_failures:
            print(f"known issues seen: {', '.join(sorted(set(report.known_failures)))}")
        if report.failures:
            print(f"soak FAILED: {', '.join(sorted(set(report.failures)))}")
            return 1
        print("soak passed")
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--seconds", type=float, help="the duration in seconds (overrides --minutes)"
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--report-every", type=float, help="seconds between reports (60; less for short runs)"
    )
    parser.add_argument("--chaos", type=float, default=1.0, help="scale every fault probability")
    parser.add_argument(
        "--late-limit-ms",
        type=float,
        default=LATE_LIMIT_MS,
        help="how far past its deadline a call may return (100 ms)",
    )
    parser.add_argument(
        "--known-issue",
        action="append",
        default=[],
        choices=sorted(CHECKS),
        help="a check that fails for a known reason: reported, not failing the run",
    )
    parser.add_argument(
        "--adapter",
        action="append",
        choices=ADAPTERS,
        help="run only this adapter (repeatable; default: every adapter)",
    )
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    report_every = args.report_every or (60.0 if seconds >= 300 else max(1.0, seconds / 10))
    warmup = 120.0 if seconds >= 360 else seconds / 3
    known = frozenset(args.known_issue)
    sys.exit(
        asyncio.run(
            soak(
                seconds,
                args.seed,
                report_every,
                warmup,
                args.chaos,
                args.late_limit_ms,
                known,
                args.adapter or ADAPTERS,
            )
        )
    )


if __name__ == "__main__":
    main()
