"""Benchmark smtp-sansio against aiosmtplib and smtplib on Postfix's smtp-sink or smtpd.

Each client runs each scenario in a fresh process; clients alternate across rounds;
figures are medians, and each client's ratio to aiosmtplib is computed within each
round (then the median of those ratios is printed).

    python benchmarks/run.py               # full run (about 25 minutes; --uvloop adds uvloop)
    python benchmarks/run.py --smoke       # a few messages per scenario, for CI
    python benchmarks/run.py --scale 0.25  # a quarter of the messages: a busy machine

With ``--rtt MS`` every client connects through benchmarks/delay_proxy.py, which adds
that round-trip time and counts round trips; the scenarios are then the ones where
round trips decide throughput (see benchmarks/LATENCY.md):

    python benchmarks/run.py --rtt 2 --rtt 10 --server sink --server postfix

The compiled build (hatch_build.py) runs beside the pure one when a Python that has
the compiled wheel installed is given: each of ``smtp_asyncio``, ``smtp_anyio-asyncio``,
``smtp_anyio-trio`` (and ``smtp_asyncio-uvloop``) then also runs as ``...-compiled``,
through ``PYTHON -P benchmarks/client.py`` so that the checkout does not shadow the
installed modules (client.py refuses to run if the build it finds is not the one its
name says). Either build and install that wheel yourself::

    HATCH_BUILD_HOOK_ENABLE_CUSTOM=true pip wheel --no-deps . -w /tmp/compiled-dist
    python3 -m venv /tmp/compiled && /tmp/compiled/bin/pip install trio uvloop \
        /tmp/compiled-dist/smtp_sansio-*.whl
    python benchmarks/run.py --uvloop --compiled-python /tmp/compiled/bin/python

or let ``--build-compiled DIR`` do the same from the checkout (a wheel in DIR/dist, a
virtualenv in DIR/venv; about 5-10 minutes on a loaded 2-core machine) before the run.

Beside the ratio to aiosmtplib, each round also gives each client's ratio to the floor
on the same event loop (rate, and CPU per message: benchmarks/floor.py, asyncio's for
asyncio and uvloop clients, trio's for ``smtp_anyio-trio``) and each ``smtp_anyio``
client's ratio to ``smtp_asyncio`` of the same build. The trio floor's "vs asyncio" is
its rate over the asyncio floor's: what trio itself makes of the same exchange, to
read ``smtp_anyio-trio``'s "vs asyncio" against. ``--json PATH`` keeps every run's raw
figures.

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
OURS = ["smtp_asyncio", "smtp_anyio-asyncio", "smtp_anyio-trio"]
COMPILED = [f"{c}-compiled" for c in OURS]
"""Our clients from the compiled build: run with --compiled-python or --build-compiled."""
FLOOR = "asyncio-floor"
TRIO_FLOOR = "trio-floor"
FLOORS = [FLOOR, TRIO_FLOOR]
FLOOR_SCENARIOS = {"sequential", "conns8", "conns64", "newconn"}
"""Scenarios where benchmarks/floor.py (no parsing, no checks: the least an asyncio
or trio program can do per message) runs as a reference point beside the clients."""


COMPILED_PYTHON: str | None = None
"""The python of a virtualenv with the compiled wheel installed (--compiled-python)."""


def python_for(client: str) -> str:
    if "-compiled" not in client:
        return sys.executable
    if COMPILED_PYTHON is None:
        raise RuntimeError(f"{client} needs --compiled-python or --build-compiled")
    return COMPILED_PYTHON


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
            [
                python_for(client),
                "-P",
                str(HERE / "client.py"),
                client,
                scenario,
                str(port),
                str(count),
            ],
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


FAILURES: dict[str, dict[str, list[str]]] = {}
"""Scenario -> client -> the last line of each failed run's error."""


def floor_of(client: str) -> str:
    """The floor on the same event loop as ``client``."""
    if "trio" in client:
        return TRIO_FLOOR
    return f"{FLOOR}-uvloop" if client.endswith("-uvloop") else FLOOR


def asyncio_of(client: str) -> str | None:
    """smtp_asyncio of the same build as an smtp_anyio client, asyncio's floor for trio's
    (None for any other)."""
    if client == TRIO_FLOOR:
        return FLOOR
    if not client.startswith("smtp_anyio"):
        return None
    return "smtp_asyncio-compiled" if "-compiled" in client else "smtp_asyncio"


def rounds_of(
    clients: list[str],
    rounds: int,
    scenario: str,
    port: int,
    count: int,
    rtt: float | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[float]]]:
    """Run every client ``rounds`` times, rotating the order; ratios to aiosmtplib per round.

    Each run also gets, where the reference ran in the same round, ``vs_floor`` (rate
    over the floor's on the same loop), ``cpu_vs_floor`` (CPU per message over the
    floor's) and ``vs_smtp_asyncio`` (an smtp_anyio client's rate over smtp_asyncio's,
    same build).
    """
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
    ratios: dict[str, list[float]] = {c: [] for c in clients}
    for round_index in range(rounds):
        order = clients[round_index % len(clients) :] + clients[: round_index % len(clients)]
        this_round: dict[str, dict[str, Any]] = {}
        for client in order:
            try:
                this_round[client] = run_client(client, scenario, port, count, rtt)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                # One client failing does not end the run: its row says why.
                lines = str(exc).strip().splitlines()
                FAILURES.setdefault(scenario, {}).setdefault(client, []).append(lines[-1])
                print(f"{client} {scenario}: {exc}", file=sys.stderr)
        for client, result in this_round.items():
            result["round"] = round_index
            runs[client].append(result)
            if "aiosmtplib" in this_round:
                ratios[client].append(this_round["aiosmtplib"]["seconds"] / result["seconds"])
            floor = this_round.get(floor_of(client))
            if floor is not None and not client.startswith(tuple(FLOORS)):
                result["vs_floor"] = floor["seconds"] / result["seconds"]
                result["cpu_vs_floor"] = result["cpu_seconds"] / floor["cpu_seconds"]
            reference = asyncio_of(client)
            if reference in this_round:
                result["vs_smtp_asyncio"] = this_round[reference]["seconds"] / result["seconds"]
    return runs, ratios


def median_of(runs: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in runs if key in r]
    return f"{statistics.median(values):.2f}x" if values else "-"


def run_plain(
    args: argparse.Namespace,
    port: int,
    available: set[str],
    rounds: int,
    raw: dict[str, Any],
) -> None:
    """The loopback scenarios: CPU per message, memory, many connections, big messages."""
    for scenario in args.scenario or list(SCENARIOS):
        if scenario not in SCENARIOS:
            continue
        full, smoke, description = SCENARIOS[scenario]
        count = smoke if args.smoke else max(1, round(full * args.scale))
        clients = [c for c in args.client or CLIENTS if c in available or c in FLOORS]
        if COMPILED_PYTHON is not None and not args.client:
            clients[len(OURS) : len(OURS)] = COMPILED
        if scenario in FLOOR_SCENARIOS and not args.no_floor:
            clients += [floor for floor in FLOORS if floor not in clients]
        clients = [c for c in clients if c not in FLOORS or scenario in FLOOR_SCENARIOS]
        if args.uvloop:
            on_uvloop = ("smtp_asyncio", "smtp_asyncio-compiled", FLOOR)
            clients += [f"{c}-uvloop" for c in on_uvloop if c in clients]
        runs, ratios = rounds_of(clients, rounds, scenario, port, count)
        raw[scenario] = {
            "messages": count,
            "description": description,
            "runs": runs,
            "failures": FAILURES.get(scenario, {}),
        }
        print(f"\n== {scenario}: {description} ({count} messages, {rounds} round(s))")
        header = ("client", "msgs/s", "MB/s", "CPU s/1k", "RSS+ MiB")
        ratio_header = ("vs aiosmtplib", "vs floor", "CPU/floor", "vs asyncio")
        columns = "".join(f"{h:>10}" for h in header[1:])
        print(f"{header[0]:<32}{columns}" + "".join(f"{h:>14}" for h in ratio_header))
        for client in clients:
            rs = runs[client]
            failed = FAILURES.get(scenario, {}).get(client, [])
            if failed:
                print(f"{client:<32}  {len(failed)} run(s) failed: {failed[-1][:80]}")
            if not rs:
                continue
            msgs = statistics.median(r["messages"] / r["seconds"] for r in rs)
            mbs = statistics.median(r["bytes"] / r["seconds"] / 1e6 for r in rs)
            cpu = statistics.median(r["cpu_seconds"] / r["messages"] * 1000 for r in rs)
            rss = statistics.median(r["rss_growth_kib"] / 1024 for r in rs)
            ratio = f"{statistics.median(ratios[client]):.2f}x" if ratios[client] else "-"
            more = [median_of(rs, k) for k in ("vs_floor", "cpu_vs_floor", "vs_smtp_asyncio")]
            label = client.replace(FLOOR, "floor (ref)").replace(TRIO_FLOOR, "trio floor (ref)")
            print(
                f"{label:<32}{msgs:>10.0f}{mbs:>10.1f}{cpu:>10.3f}{rss:>10.1f}{ratio:>14}"
                + "".join(f"{m:>14}" for m in more)
            )
        if scenario == "batch" and os.path.exists(SOURCE):
            source = run_smtp_source(port, count)
            raw[scenario]["smtp-source"] = source
            print(f"{'smtp-source -d (C)':<32}{count / source['seconds']:>10.0f}")
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
        if COMPILED_PYTHON is not None and not args.client:
            clients[len(OURS) : len(OURS)] = COMPILED
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
            failed = FAILURES.get(scenario, {}).get(client, [])
            if failed:
                print(f"{client:<20}  {len(failed)} run(s) failed: {failed[-1][:80]}")
            if not rs:
                continue
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
    compiled = f"compiled build from {COMPILED_PYTHON}; " if COMPILED_PYTHON else ""
    return (
        f"commit {commit or '?'}; {compiled}Python {sys.version.split()[0]}; "
        f"aiosmtplib {aiosmtplib}; "
        f"{os.cpu_count()} CPUs, load average {load}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
    )


def build_compiled(where: Path) -> str:
    """Build the compiled wheel from this checkout and install it into a fresh virtualenv."""
    root = HERE.parent
    dist, venv = where / "dist", where / "venv"
    for old in dist.glob("smtp_sansio-*.whl"):
        old.unlink()
    env = dict(os.environ, HATCH_BUILD_HOOK_ENABLE_CUSTOM="true")
    print(f"building the compiled wheel from {root} into {dist}", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(root), "-w", str(dist)],
        check=True,
        env=env,
    )
    wheel = next(dist.glob("smtp_sansio-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(wheel), "trio", "uvloop"], check=True
    )
    return python


def main() -> int:
    global COMPILED_PYTHON
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (CI)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        metavar="F",
        help="messages per scenario: F times a full run's (0.25: a quarter; at least 1)",
    )
    parser.add_argument(
        "--scenario", action="append", choices=list(dict.fromkeys([*SCENARIOS, *RTT_SCENARIOS]))
    )
    parser.add_argument("--client", action="append", choices=[*CLIENTS, *COMPILED, *FLOORS])
    parser.add_argument(
        "--compiled-python",
        metavar="PYTHON",
        help="a python with the compiled wheel installed: also run our clients from it",
    )
    parser.add_argument(
        "--build-compiled",
        type=Path,
        metavar="DIR",
        help="first build the compiled wheel into DIR/dist and install it into DIR/venv",
    )
    parser.add_argument("--json", type=Path, help="write every run's raw figures here")
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="leave out the asyncio and trio floor reference points",
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
    if args.build_compiled:
        COMPILED_PYTHON = build_compiled(args.build_compiled.resolve())
    elif args.compiled_python:
        COMPILED_PYTHON = args.compiled_python
    if COMPILED_PYTHON is not None:
        available.update(COMPILED)
    for client in args.client or []:
        if client in COMPILED and COMPILED_PYTHON is None:
            parser.error(f"{client} needs --compiled-python or --build-compiled")
    rounds = 1 if args.smoke else args.rounds
    machine = describe_machine(available)
    print(machine)
    table: list[dict[str, Any]] = []
    raw: dict[str, Any] = {"machine": machine, "compiled_python": COMPILED_PYTHON}
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
                run_plain(args, port, available, rounds, raw.setdefault(name, {}))
        finally:
            server.stop()
    if args.markdown and table:
        args.markdown.write_text(markdown(table, rounds, machine))
    if FAILURES:
        print(f"\nfailed runs: {json.dumps(FAILURES)}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(raw if not args.rtt else {**raw, "rtt": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
