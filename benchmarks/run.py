"""Benchmark smtp-sansio against aiosmtplib and smtplib on Postfix's smtp-sink or smtpd.

Each client runs each scenario in a fresh process; clients alternate across rounds;
figures are medians, and each client's ratio to aiosmtplib is computed within each
round (then the median of those ratios is printed).

    python benchmarks/run.py               # full run (about 25 minutes; --uvloop adds uvloop)
    python benchmarks/run.py --smoke       # a few messages per scenario, for CI

With ``--rtt MS`` every client connects through benchmarks/delay_proxy.py, which adds
that round-trip time and counts round trips; the scenarios are then the ones where
round trips decide throughput (see benchmarks/LATENCY.md):

    python benchmarks/run.py --rtt 2 --rtt 10 --server sink --server postfix

Needs /usr/sbin/smtp-sink (Debian package postfix), root for ``--server postfix`` (a
Postfix master process with its own configuration, discarding all mail) and, for the
comparison, aiosmtplib (pip install aiosmtplib).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from delay_proxy import DelayProxy, ping_pong  # noqa: E402
from servers import SINK, free_port, start_server  # noqa: E402

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
RTT_SCENARIOS = {
    # name: (messages in a full run, messages in a smoke run, description)
    "sequential": (50, 10, "1 KiB, one connection, each sendmail awaited in turn"),
    "batch": (
        200,
        20,
        "1 KiB, one connection, send_messages (aiosmtplib: gather; smtplib: in turn)",
    ),
    "gather": (200, 20, "1 KiB, one client, asyncio.gather of sendmail (smtplib: in turn)"),
    "pool4x8": (
        400,
        40,
        "1 KiB, 64 senders, SMTPPool(4 connections, max_in_flight 8); "
        "aiosmtplib: 4 connections in a queue; smtplib: 4 threads",
    ),
    "latency": (
        40,
        5,
        "median latency of a sendmail sent alone every 5 ms: on an open connection "
        "(lone) and through a pool of 4 (pooled)",
    ),
}
"""Scenarios run with --rtt, where round trips rather than CPU decide throughput."""
CLIENTS = ["smtp_asyncio", "smtp_anyio-asyncio", "smtp_anyio-trio", "aiosmtplib", "smtplib"]
FLOOR = "asyncio-floor"
FLOOR_SCENARIOS = {"sequential", "conns8", "conns64", "newconn"}
"""Scenarios where benchmarks/floor.py (no parsing, no checks: the least an asyncio
program can do per message) runs as a reference point beside the clients."""


def run_client(
    client: str, scenario: str, port: int, count: int, rtt: float | None = None
) -> dict[str, Any]:
    """One client process; with ``rtt``, through a fresh delay proxy whose counts it adds."""
    proxy = None
    if rtt is not None:
        proxy = DelayProxy(("127.0.0.1", port), rtt)
        port = proxy.start()[1]
    try:
        result = subprocess.run(
            [sys.executable, str(HERE / "client.py"), client, scenario, str(port), str(count)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        if proxy is not None:
            proxy.stop()
    if result.returncode != 0:
        raise RuntimeError(f"{client} {scenario} failed:\n{result.stderr[-2000:]}")
    run = dict(json.loads(result.stdout.strip().splitlines()[-1]))
    if proxy is not None:
        run["proxy"] = proxy.totals()
        run["rtt_ms"] = rtt
        late = proxy.late
        run["late_us"] = late.total / late.count * 1e6 if late.count else 0.0
    return run


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


def rounds_of(
    clients: list[str],
    rounds: int,
    scenario: str,
    port: int,
    count: int,
    rtt: float | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[float]]]:
    """Run every client ``rounds`` times, rotating the order; ratios to aiosmtplib per round."""
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
    ratios: dict[str, list[float]] = {c: [] for c in clients}
    for round_index in range(rounds):
        order = clients[round_index % len(clients) :] + clients[: round_index % len(clients)]
        this_round = {c: run_client(c, scenario, port, count, rtt) for c in order}
        for client, result in this_round.items():
            runs[client].append(result)
            if "aiosmtplib" in this_round:
                ratios[client].append(this_round["aiosmtplib"]["seconds"] / result["seconds"])
    return runs, ratios


def run_plain(args: argparse.Namespace, port: int, available: set[str], rounds: int) -> None:
    """The loopback scenarios: CPU per message, memory, many connections, big messages."""
    for scenario in args.scenario or list(SCENARIOS):
        if scenario not in SCENARIOS:
            continue
        full, smoke, description = SCENARIOS[scenario]
        count = smoke if args.smoke else full
        clients = [c for c in args.client or CLIENTS if c in available or c == FLOOR]
        if scenario in FLOOR_SCENARIOS and not args.no_floor and FLOOR not in clients:
            clients.append(FLOOR)
        clients = [c for c in clients if c != FLOOR or scenario in FLOOR_SCENARIOS]
        if args.uvloop:
            clients += [f"{c}-uvloop" for c in ("smtp_asyncio", FLOOR) if c in clients]
        runs, ratios = rounds_of(clients, rounds, scenario, port, count)
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


def round_trips(run: dict[str, Any]) -> float:
    """Message round trips per message, as the delay proxy counted them."""
    return float(run["proxy"]["message_turns"]) / run["messages"]


def run_rtt(
    args: argparse.Namespace,
    server: str,
    port: int,
    rtt: float,
    available: set[str],
    rounds: int,
    table: list[dict[str, Any]],
) -> None:
    """The scenarios where round trips decide throughput, through the delay proxy."""
    samples, _, late = ping_pong(rtt, 50)
    print(
        f"\n#### server {server}, RTT {rtt:g} ms (delay_proxy ping-pong: mean "
        f"{statistics.fmean(samples):.3f} ms, median {statistics.median(samples):.3f} ms; "
        f"{late}; load average {os.getloadavg()[0]:.2f})"
    )
    for scenario in args.scenario or list(RTT_SCENARIOS):
        if scenario not in RTT_SCENARIOS:
            continue
        full, smoke, description = RTT_SCENARIOS[scenario]
        count = smoke if args.smoke else full
        clients = [c for c in args.client or CLIENTS if c in available]
        runs, ratios = rounds_of(clients, rounds, scenario, port, count, rtt)
        print(f"\n== {scenario}: {description} ({count} messages, {rounds} round(s))")
        if scenario == "latency":
            header = ("client", "lone ms", "pooled ms", "pooled/lone", "RT/msg")
            print(f"{header[0]:<20}" + "".join(f"{h:>12}" for h in header[1:]))
        else:
            header = ("client", "msgs/s", "RT/msg", "wall RTT/msg", "conns", "vs aiosmtplib")
            header += ("proxy late us",)
            print(f"{header[0]:<20}" + "".join(f"{h:>14}" for h in header[1:]))
        for client in clients:
            rs = runs[client]
            rt = statistics.median(round_trips(r) for r in rs)
            row: dict[str, Any] = {
                "server": server,
                "rtt": rtt,
                "scenario": scenario,
                "client": client,
                "rt_per_msg": rt,
            }
            if scenario == "latency":
                lone = statistics.median(r["lone_ms"] for r in rs)
                pooled = None
                if "pooled_ms" in rs[0]:  # smtplib has no pool
                    pooled = statistics.median(r["pooled_ms"] for r in rs)
                row.update(lone_ms=lone, pooled_ms=pooled)
                if pooled is None:
                    pooled_text = f"{'-':>12}{'-':>12}"
                else:
                    pooled_text = f"{pooled:>12.2f}{pooled / lone:>11.2f}x"
                print(f"{client:<20}{lone:>12.2f}{pooled_text}{rt:>12.3f}")
            else:
                msgs = statistics.median(r["messages"] / r["seconds"] for r in rs)
                wall = statistics.median(r["seconds"] * 1000 / rtt / r["messages"] for r in rs)
                conns = statistics.median(r["proxy"]["connections"] for r in rs)
                ratio = statistics.median(ratios[client]) if ratios[client] else None
                row.update(msgs_per_s=msgs, ratio=ratio)
                ratio_text = f"{ratio:.2f}x" if ratio is not None else "-"
                late = max(r["late_us"] for r in rs)
                print(
                    f"{client:<20}{msgs:>14.1f}{rt:>14.3f}{wall:>14.3f}{conns:>14.0f}"
                    f"{ratio_text:>14}{late:>14.0f}"
                )
            table.append(row)
        sys.stdout.flush()


def markdown(table: list[dict[str, Any]], rounds: int, machine: str) -> str:
    """The --rtt figures as markdown: one throughput table per server, one latency table."""
    rtts = sorted({row["rtt"] for row in table})
    command = " ".join(["python", "benchmarks/run.py", *sys.argv[1:]])
    out = [f"`{command}`; {machine}"]
    for server in dict.fromkeys(row["server"] for row in table):
        rows = [r for r in table if r["server"] == server and r["scenario"] != "latency"]
        if not rows:
            continue
        out.append(
            f"\n**{server}** (msgs/s, round trips per message, ratio to aiosmtplib; "
            f"median of {rounds} round(s))\n"
        )
        head = "| scenario | client |" + "".join(
            f" RTT {rtt:g} ms msgs/s | RT/msg | vs aiosmtplib |" for rtt in rtts
        )
        out.append(head)
        out.append("|---|---|" + "---:|---:|---:|" * len(rtts))
        for scenario in dict.fromkeys(r["scenario"] for r in rows):
            for client in dict.fromkeys(r["client"] for r in rows if r["scenario"] == scenario):
                cells = []
                for rtt in rtts:
                    match = [
                        r
                        for r in rows
                        if r["scenario"] == scenario and r["client"] == client and r["rtt"] == rtt
                    ]
                    if not match:
                        cells.append(" - | - | - |")
                        continue
                    r = match[0]
                    ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
                    cells.append(f" {r['msgs_per_s']:.0f} | {r['rt_per_msg']:.3f} | {ratio} |")
                out.append(f"| {scenario} | {client} |" + "".join(cells))
    latency = [r for r in table if r["scenario"] == "latency"]
    if latency:
        out.append("\n**latency** (median ms of a sendmail sent alone every 5 ms)\n")
        out.append("| server | RTT ms | client | lone ms | pooled ms | pooled/lone |")
        out.append("|---|---:|---|---:|---:|---:|")
        for r in latency:
            pooled = r["pooled_ms"]
            pooled_text = f"{pooled:.2f} | {pooled / r['lone_ms']:.2f}x" if pooled else "- | -"
            out.append(
                f"| {r['server']} | {r['rtt']:g} | {r['client']} | {r['lone_ms']:.2f} | "
                f"{pooled_text} |"
            )
    return "\n".join(out) + "\n"


def describe_machine(available: set[str]) -> str:
    """Where the figures come from: commit, Python, aiosmtplib, load."""
    commit = subprocess.run(
        ["git", "-C", str(HERE), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    aiosmtplib = "not installed"
    if "aiosmtplib" in available:
        import aiosmtplib

        aiosmtplib = aiosmtplib.__version__
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"commit {commit or '?'}; Python {sys.version.split()[0]}; aiosmtplib {aiosmtplib}; "
        f"{os.cpu_count()} CPUs, load average {load}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (CI)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scenario", action="append", choices=list(dict.fromkeys([*SCENARIOS, *RTT_SCENARIOS]))
    )
    parser.add_argument("--client", action="append", choices=[*CLIENTS, FLOOR])
    parser.add_argument(
        "--no-floor", action="store_true", help="leave out the asyncio floor reference point"
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="also run smtp_asyncio (and the floor) on uvloop (pip install uvloop)",
    )
    parser.add_argument(
        "--rtt",
        type=float,
        action="append",
        metavar="MS",
        help="connect through a delay proxy with this round-trip time (repeatable)",
    )
    parser.add_argument(
        "--server",
        action="append",
        choices=["sink", "postfix"],
        help="smtp-sink (DATA; the default) or Postfix smtpd (CHUNKING; needs root); repeatable",
    )
    parser.add_argument("--markdown", type=Path, help="with --rtt: write a markdown table here")
    args = parser.parse_args()
    known = RTT_SCENARIOS if args.rtt else SCENARIOS
    for scenario in args.scenario or []:
        if scenario not in known:
            mode = "with" if args.rtt else "without"
            parser.error(f"scenario {scenario} does not run {mode} --rtt")
    servers = args.server or ["sink"]
    if "sink" in servers and not os.path.exists(SINK):
        print(f"error: {SINK} not found (Debian package postfix)", file=sys.stderr)
        return 2
    available = set(CLIENTS)
    try:
        import aiosmtplib  # noqa: F401
    except ImportError:
        print("note: aiosmtplib is not installed; ratios are left out", file=sys.stderr)
        available.discard("aiosmtplib")
    rounds = 1 if args.smoke else args.rounds
    machine = describe_machine(available)
    if args.rtt:
        print(machine)
    table: list[dict[str, Any]] = []
    for name in servers:
        port = free_port()
        server = start_server(name, port)
        try:
            if args.rtt:
                for rtt in args.rtt:
                    run_rtt(args, name, port, rtt, available, rounds, table)
            else:
                if len(servers) > 1:
                    print(f"\n#### server {name}")
                run_plain(args, port, available, rounds)
        finally:
            server.stop()
    if args.markdown and table:
        args.markdown.write_text(markdown(table, rounds, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
