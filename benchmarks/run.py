"""Benchmark smtp-sansio against aiosmtplib and smtplib on Postfix's smtp-sink.

Each client runs each scenario in a fresh process; clients alternate across rounds;
figures are medians, and each client's ratio to aiosmtplib is computed within each
round (then the median of those ratios is printed).

    python benchmarks/run.py               # full run (about 25 minutes; --uvloop adds uvloop)
    python benchmarks/run.py --smoke       # a few messages per scenario, for CI

Needs /usr/sbin/smtp-sink (Debian package postfix) and, for the comparison,
aiosmtplib (pip install aiosmtplib).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"

SCENARIOS = {
    # name: (messages in a full run, messages in a smoke run, description)
    "sequential": (20_000, 50, "1 KiB, one connection, each sendmail awaited in turn"),
    "batch": (20_000, 50, "1 KiB, one connection, batch / concurrent calls"),
    "conns8": (20_000, 50, "1 KiB over 8 connections"),
    "conns64": (20_000, 128, "1 KiB over 64 connections"),
    "newconn": (5_000, 10, "1 KiB, a new connection per message"),
    "send": (5_000, 10, "1 KiB, the module-level send() per message (smtplib: newconn)"),
    "pool": (20_000, 400, "1 KiB, 200 concurrent senders over 8 connections (SMTPPool)"),
    "big": (1, 1, "one 20 MiB message, most lines start with a dot (bytes)"),
    "bigfile": (1, 1, "the same 20 MiB message streamed from a file"),
}
CLIENTS = ["smtp_asyncio", "smtp_anyio-asyncio", "smtp_anyio-trio", "aiosmtplib", "smtplib"]
FLOOR = "asyncio-floor"
FLOOR_SCENARIOS = {"sequential", "conns8", "conns64", "newconn"}
"""Scenarios where benchmarks/floor.py (no parsing, no checks: the least an asyncio
program can do per message) runs as a reference point beside the clients."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    # -c: count, -m 1024: max concurrent sessions, 1024: backlog
    process = subprocess.Popen(
        [SINK, "-c", "-m", "1024", "-u", "nobody", f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("smtp-sink did not start")


def run_client(client: str, scenario: str, port: int, count: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(HERE / "client.py"), client, scenario, str(port), str(count)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{client} {scenario} failed:\n{result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def run_smtp_source(port: int, count: int) -> dict[str, Any]:
    """Postfix's own C client, one session, no disconnect between messages (-d)."""
    started = time.perf_counter()
    subprocess.run(
        [
            SOURCE,
            "-d",
            "-s",
            "1",
            "-m",
            str(count),
            "-l",
            "1024",
            "-f",
            "bench@example.org",
            "-t",
            "sink@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    return {"client": "smtp-source -d", "messages": count, "seconds": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (CI)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    parser.add_argument("--client", action="append", choices=[*CLIENTS, FLOOR])
    parser.add_argument(
        "--no-floor", action="store_true", help="leave out the asyncio floor reference point"
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="also run smtp_asyncio (and the floor) on uvloop (pip install uvloop)",
    )
    args = parser.parse_args()
    if not os.path.exists(SINK):
        print(f"error: {SINK} not found (Debian package postfix)", file=sys.stderr)
        return 2
    available = set(CLIENTS)
    try:
        import aiosmtplib  # noqa: F401
    except ImportError:
        print("note: aiosmtplib is not installed; ratios are left out", file=sys.stderr)
        available.discard("aiosmtplib")
    rounds = 1 if args.smoke else args.rounds
    port = free_port()
    sink = start_sink(port)
    try:
        for scenario in args.scenario or list(SCENARIOS):
            full, smoke, description = SCENARIOS[scenario]
            count = smoke if args.smoke else full
            clients = list(args.client or CLIENTS)
            if "aiosmtplib" not in available:
                clients = [c for c in clients if c != "aiosmtplib"]
            if scenario in FLOOR_SCENARIOS and not args.no_floor and FLOOR not in clients:
                clients.append(FLOOR)
            clients = [c for c in clients if c != FLOOR or scenario in FLOOR_SCENARIOS]
            if args.uvloop:
                clients += [f"{c}-uvloop" for c in ("smtp_asyncio", FLOOR) if c in clients]
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
            ratios: dict[str, list[float]] = {c: [] for c in clients}
            for round_index in range(rounds):
                order = (
                    clients[round_index % len(clients) :] + clients[: round_index % len(clients)]
                )
                this_round = {client: run_client(client, scenario, port, count) for client in order}
                for client, run in this_round.items():
                    runs[client].append(run)
                    if "aiosmtplib" in this_round:
                        base = this_round["aiosmtplib"]["seconds"]
                        ratios[client].append(base / run["seconds"])
            print(f"\n== {scenario}: {description} ({count} messages, {rounds} round(s))")
            header = ("client", "msgs/s", "MB/s", "CPU s/1k", "RSS+ MiB", "vs aiosmtplib")
            columns = "".join(f"{h:>10}" for h in header[1:5])
            print(f"{header[0]:<20}{columns}{header[5]:>15}")
            for client in clients:
                rs = runs[client]
                msgs = statistics.median(r["messages"] / r["seconds"] for r in rs)
                mbs = statistics.median(r["bytes"] / r["seconds"] / 1e6 for r in rs)
                cpu = statistics.median(r["cpu_seconds"] / r["messages"] * 1000 for r in rs)
                rss = statistics.median(r["rss_growth_kib"] / 1024 for r in rs)
                ratio = f"{statistics.median(ratios[client]):.2f}x" if ratios[client] else "-"
                label = client.replace(FLOOR, "floor (ref)")
                print(f"{label:<20}{msgs:>10.0f}{mbs:>10.1f}{cpu:>10.3f}{rss:>10.1f}{ratio:>15}")
            if scenario == "batch" and os.path.exists(SOURCE):
                source = run_smtp_source(port, count)
                print(f"{'smtp-source -d (C)':<20}{count / source['seconds']:>10.0f}")
            sys.stdout.flush()
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
