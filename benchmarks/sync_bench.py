"""smtp_sync beside smtplib on Postfix's smtp-sink: blocking clients, threads, big messages.

Each (client, scenario) runs in a fresh process; clients alternate across rounds; the
figures are medians, and smtp_sync's ratio to smtplib is computed within each round
(the median of those ratios is printed).

    python benchmarks/sync_bench.py              # full run (a few minutes)
    python benchmarks/sync_bench.py --smoke      # a few messages per scenario
    python benchmarks/sync_bench.py --rounds 5 --scenario sequential
    python benchmarks/sync_bench.py --rtt 2 --count 2000   # over a 2 ms round trip
    python benchmarks/sync_bench.py --baseline /tmp/before  # also another checkout's smtp_sync
    python benchmarks/sync_bench.py --server 2525 --rtt 10 --count 50 --scenario sequential

``--server PORT`` sends to an SMTP server already listening on 127.0.0.1:PORT (Postfix's
``smtpd``, which offers CHUNKING, where smtp-sink does not) instead of smtp-sink. With
``--rtt``, each client's round trips per message are estimated as its seconds per
message over the round-trip time (the CPU's share counts as a fraction of one).

``--calls`` counts instead, with cProfile (which does not depend on the machine's load),
the Python function calls per ``sendmail`` on one connection: smtp_sync's (and the
baseline's), and those of a bare trampoline that drives the same smtp_core flow with
no threads, locks, deadlines or wake-ups (the protocol core's own share)::

    python benchmarks/sync_bench.py --calls --baseline /tmp/before

``--instructions`` counts the CPU instructions per ``sendmail`` with valgrind's
callgrind (also independent of the load; the client process only, the sink not
counted): smtp_sync's, the baseline's, the bare trampoline's and smtplib's, each the
difference of two runs (100 and 600 messages), so start-up and imports cancel out.
Run it with the compiled build's python (from a directory without the sources) to
count the compiled build::

    python benchmarks/sync_bench.py --instructions --baseline /tmp/before
    cd /tmp && /tmp/compiled/bin/python /path/to/benchmarks/sync_bench.py --instructions

(Instructions compare builds of smtp_sync with each other and with the bare driver;
beside smtplib they say less: smtplib's are mostly C loops (``re``) that run several
instructions per cycle, the client's mostly the interpreter's.)

``--baseline DIR`` adds a third client, the smtp_sync (and smtp_core) of the checkout
in DIR (``git worktree add DIR <commit>``, or ``git archive <commit> | tar -x -C DIR``),
run in the same rounds: before and after a change, on the same machine state.

Scenarios: ``sequential`` (1 KiB messages on one connection, each ``sendmail`` in
turn), ``threads8`` (8 threads, a connection each), ``pool8`` (8 threads sharing an
``SMTPPool`` of 8), ``shared8`` (8 threads sharing one smtp_sync client, which
pipelines their messages back to back; smtplib, which cannot be shared, gets a
connection per thread in both), ``batch`` (``send_messages``
batches of 100; smtplib: sendmail in turn), ``newconn`` (a new connection per
message), ``big`` (one 20 MiB message, most lines starting with a dot) and ``bigfile``
(the same streamed from a file; smtplib has to read it whole).

Needs /usr/sbin/smtp-sink (Debian package postfix); ``--instructions`` needs valgrind.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SINK = "/usr/sbin/smtp-sink"
HOST = "127.0.0.1"
SENDER = "bench@example.org"
NAME = "bench.example.org"
RECIPIENTS = ["sink@example.org"]
HEADERS = b"Subject: benchmark\r\nFrom: bench@example.org\r\nTo: sink@example.org\r\n\r\n"
MESSAGE = ((HEADERS + b"x" * 70 + b"\r\n") * 12)[:1024]
BIG_LINE = b".a line that starts with a dot, as in a quoted reply or a diff...\r\n"
BIG_SIZE = 20 * 1024 * 1024

SCENARIOS = {
    # name: (messages in a full run, in a smoke run)
    "sequential": (20_000, 50),
    "threads8": (20_000, 80),
    "pool8": (20_000, 80),
    "shared8": (20_000, 80),
    "batch": (20_000, 200),
    "newconn": (3_000, 10),
    "big": (1, 1),
    "bigfile": (1, 1),
}
CLIENTS = ["smtp_sync", "smtplib"]


# -- the child process: one client, one scenario --------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_counters(pid: int | None) -> tuple[float, int]:
    """A process's CPU seconds (user + system) and voluntary context switches (its
    sleeps), from /proc; zeros where there is none."""
    if pid is None or not os.path.exists(f"/proc/{pid}/stat"):
        return 0.0, 0
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    seconds = (int(fields[11]) + int(fields[12])) / _TICK
    waits = 0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("voluntary_ctxt_switches"):
                waits = int(line.split()[1])
    return seconds, waits


def _machine_busy() -> tuple[float, float]:
    """CPU seconds the whole machine has spent busy (all cores), and those a hypervisor
    took from it (steal), from /proc/stat."""
    if not os.path.exists("/proc/stat"):
        return 0.0, 0.0
    with open("/proc/stat") as handle:
        fields = [int(f) for f in handle.readline().split()[1:]] + [0] * 8
    # user nice system idle iowait irq softirq steal
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return busy / _TICK, fields[7] / _TICK


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _in_threads(target: Any, counts: list[int]) -> None:
    threads = [threading.Thread(target=target, args=(n,)) for n in counts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def child(client: str, scenario: str, port: int, count: int) -> dict[str, Any]:
    import smtplib

    import smtp_sync

    module: Any = smtp_sync if client == "smtp_sync" else smtplib
    payload: Any = MESSAGE
    size = len(MESSAGE)
    path = None
    if scenario == "big":
        payload = b"Subject: big\r\n\r\n" + BIG_LINE * (BIG_SIZE // len(BIG_LINE))
        size = len(payload)
    elif scenario == "bigfile":
        # Written line by line, so the message is never in this process's memory.
        with tempfile.NamedTemporaryFile(delete=False, suffix=".eml") as handle:
            handle.write(b"Subject: big\r\n\r\n")
            for _ in range(BIG_SIZE // len(BIG_LINE)):
                handle.write(BIG_LINE)
        path = handle.name
        size = os.path.getsize(path)

    def one_connection(n: int) -> None:
        with module.SMTP(HOST, port, local_hostname=NAME) as smtp:
            for _ in range(n):
                smtp.sendmail(SENDER, RECIPIENTS, payload)

    base_rss = _rss_kib()
    machine0 = _machine_busy()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if scenario in ("sequential", "big"):
        one_connection(count)
    elif scenario == "bigfile":
        assert path is not None
        with module.SMTP(HOST, port, local_hostname=NAME) as smtp, open(path, "rb") as fp:
            # smtplib needs the whole message in memory; smtp_sync streams the file.
            smtp.sendmail(SENDER, RECIPIENTS, fp if module is smtp_sync else fp.read())
    elif scenario == "shared8" and module is smtp_sync:
        # One client shared by the 8 threads: their messages are pipelined back to back.
        with smtp_sync.SMTP(HOST, port, local_hostname=NAME) as smtp:
            _in_threads(
                lambda n: [smtp.sendmail(SENDER, RECIPIENTS, payload) for _ in range(n)],
                _split(count, 8),
            )
    elif scenario in ("threads8", "shared8") or (scenario == "pool8" and module is smtplib):
        _in_threads(one_connection, _split(count, 8))
    elif scenario == "pool8":
        with smtp_sync.SMTPPool(HOST, port, max_connections=8, local_hostname=NAME) as pool:
            _in_threads(
                lambda n: [pool.sendmail(SENDER, RECIPIENTS, payload) for _ in range(n)],
                _split(count, 8),
            )
    elif scenario == "batch":
        with module.SMTP(HOST, port, local_hostname=NAME) as smtp:
            if module is smtplib:
                for _ in range(count):
                    smtp.sendmail(SENDER, RECIPIENTS, payload)
            else:
                for n in _split(count, max(1, count // 100)):
                    for result in smtp.send_messages([(SENDER, RECIPIENTS, payload)] * n):
                        assert result == {}, result
    elif scenario == "newconn":
        for _ in range(count):
            one_connection(1)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    elapsed = time.perf_counter() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    machine1 = _machine_busy()
    if path is not None:
        os.unlink(path)
    return {
        "client": client,
        "scenario": scenario,
        "messages": count,
        "seconds": elapsed,
        "cpu_seconds": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
        "user_seconds": usage1.ru_utime - usage0.ru_utime,
        "sys_seconds": usage1.ru_stime - usage0.ru_stime,
        "waits": usage1.ru_nvcsw - usage0.ru_nvcsw,  # voluntary switches: the process slept
        "preempted": usage1.ru_nivcsw - usage0.ru_nivcsw,
        "bytes": size * count,
        "rss_growth_kib": max(0, usage1.ru_maxrss - base_rss),
        "machine_busy_seconds": machine1[0] - machine0[0],
        "steal_seconds": machine1[1] - machine0[1],
    }


# -- function calls per sendmail -------------------------------------------------------


def count_calls(client: str, port: int, count: int) -> dict[str, Any]:
    """cProfile of ``count`` sendmails on one connection: function calls per message."""
    import cProfile
    import pstats

    if client == "bare":
        send, done = _bare_sender(port)
    else:
        import smtp_sync

        smtp = smtp_sync.SMTP(HOST, port, local_hostname=NAME)

        def send() -> None:
            smtp.sendmail(SENDER, RECIPIENTS, MESSAGE)

        done = smtp.quit
    for _ in range(200):
        send()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(count):
        send()
    profile.disable()
    done()
    stats: Any = pstats.Stats(profile)
    calls = sum(entry[1] for entry in stats.stats.values())
    return {"client": client, "calls_per_message": calls / count}


def send_only(client: str, port: int, count: int) -> dict[str, Any]:
    """``count`` sendmails on one connection, nothing measured (callgrind counts)."""
    if client == "bare":
        send, done = _bare_sender(port)
    else:
        import smtplib

        import smtp_sync

        module: Any = smtp_sync if client == "smtp_sync" else smtplib
        smtp = module.SMTP(HOST, port, local_hostname=NAME)

        def send() -> None:
            smtp.sendmail(SENDER, RECIPIENTS, MESSAGE)

        done = smtp.quit
    for _ in range(count):
        send()
    done()
    return {"client": client}


INSTRUCTION_COUNTS = (100, 600)


def count_instructions(client: str, port: int, baseline: str | None) -> float:
    """Instructions per sendmail of ``client``: two callgrind runs, their difference."""
    totals = []
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # hash randomisation alone moves it
    if client == "baseline":
        assert baseline is not None
        env["PYTHONPATH"] = baseline
        client = "smtp_sync"
    for count in INSTRUCTION_COUNTS:
        with tempfile.TemporaryDirectory() as tmp:
            command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out"]
            command += [sys.executable, __file__, "--child", client, "send", str(port)]
            done = subprocess.run(
                [*command, str(count)], capture_output=True, text=True, env=env, timeout=1800
            )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"{client} under callgrind failed:\n{done.stderr[-2000:]}")
        totals.append(int(found.group(1)))
    low, high = INSTRUCTION_COUNTS
    return (totals[1] - totals[0]) / (high - low)


def _bare_sender(port: int) -> tuple[Any, Any]:
    """The least a blocking driver of smtp_core's mail pipeline does per message."""
    from smtp_core import ClientConnection, Ehlo, Mail, Rcpt
    from smtp_core._client_send import prepare_envelope
    from smtp_core.flows import Read, Write, command, mail_pipeline, read_reply

    sock = socket.create_connection((HOST, port), 60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = ClientConnection(local_hostname=NAME)

    def drive(flow: Any) -> Any:
        value = None
        while True:
            try:
                request = flow.send(value)
            except StopIteration as stop:
                return stop.value
            kind = type(request)
            if kind is Write:
                sock.sendall(request.data)
                value = None
            elif kind is Read:
                value = sock.recv(65536)
            else:
                value = None

    drive(read_reply(conn))
    drive(command(conn, Ehlo(NAME)))

    def send() -> None:
        mail = Mail(SENDER, (), advertised_only=False)
        rcpts = [Rcpt(r, (), advertised_only=False) for r in RECIPIENTS]
        box = [prepare_envelope(conn, mail, rcpts, MESSAGE, None)]
        drive(mail_pipeline(conn, lambda: box.pop() if box else None, lambda e, o: None))

    return send, sock.close


# -- a delaying proxy: a network with a round-trip time ----------------------------------


def proxy(listen_port: int, upstream_port: int, delay_ms: float) -> None:
    """Forward connections to the sink, each chunk ``delay_ms / 2`` later each way."""
    import asyncio

    delay = delay_ms / 2000

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while chunk := await reader.read(65536):
                loop.call_later(delay, writer.write, chunk)  # same delay: order kept
        finally:
            loop.call_later(delay, writer.close)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, upstream_port)
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, HOST, listen_port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _start_proxy(port: int, upstream: int, rtt_ms: float) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--proxy", str(port), str(upstream), str(rtt_ms)]
    )
    for _ in range(100):
        try:
            socket.create_connection((HOST, port), timeout=0.1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the delaying proxy did not start")


# -- the parent: smtp-sink, rounds, medians ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _start_sink(port: int) -> subprocess.Popen[bytes]:
    # -c: count, -m 1024: max concurrent sessions, 1024: backlog
    process = subprocess.Popen(
        [SINK, "-c", "-m", "1024", "-u", "nobody", f"{HOST}:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection((HOST, port), timeout=0.1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("smtp-sink did not start")


def _run_child(
    client: str,
    scenario: str,
    port: int,
    count: int,
    baseline: str | None = None,
    sink_pid: int | None = None,
) -> dict[str, Any]:
    env = None
    if client == "baseline":
        assert baseline is not None
        env = {**os.environ, "PYTHONPATH": baseline}  # its smtp_sync and smtp_core first
        client = "smtp_sync"
    sink0 = _process_counters(sink_pid)
    result = subprocess.run(
        [sys.executable, __file__, "--child", client, scenario, str(port), str(count)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )
    sink1 = _process_counters(sink_pid)
    if result.returncode != 0:
        raise RuntimeError(f"{client} {scenario} failed:\n{result.stderr[-2000:]}")
    found = dict(json.loads(result.stdout.strip().splitlines()[-1]))
    found["sink_cpu_seconds"] = sink1[0] - sink0[0]
    found["sink_waits"] = sink1[1] - sink0[1]
    return found


def _breakdown(scenario: str, count: int, runs: dict[str, list[dict[str, Any]]]) -> None:
    """Where each client's time per message goes: its own CPU (user, system), the sink's,
    and what is left of the wall time (waits in which neither runs: wake-ups, other
    processes holding the cores); beside, the machine's other load and the time a
    hypervisor took from it (steal), in cores."""
    cores = os.cpu_count() or 1
    print(f"  per message (us, medians): wall = client user + sys + sink + rest; busy: "
          f"client + sink in cores; other load and steal in cores of {cores}")
    print(f"  {'client':<10} {'wall':>7} {'user':>7} {'sys':>7} {'sink':>7} {'rest':>7} "
          f"{'waits':>6} {'sink w':>6} {'busy':>5} {'other':>6} {'steal':>6}")
    for c, found in runs.items():
        def median(key: str, found: list[dict[str, Any]] = found) -> float:
            return float(statistics.median(r[key] for r in found))

        wall, user, system = median("seconds"), median("user_seconds"), median("sys_seconds")
        sink = median("sink_cpu_seconds")
        ours = statistics.median(
            r["cpu_seconds"] + r["sink_cpu_seconds"] for r in found
        )
        other = statistics.median(
            max(0.0, r["machine_busy_seconds"] - r["cpu_seconds"] - r["sink_cpu_seconds"])
            / r["seconds"]
            for r in found
        )
        steal = statistics.median(r["steal_seconds"] / r["seconds"] for r in found)
        us = 1e6 / count
        print(f"  {c:<10} {wall * us:>7.1f} {user * us:>7.1f} {system * us:>7.1f} "
              f"{sink * us:>7.1f} {(wall - user - system - sink) * us:>7.1f} "
              f"{median('waits') / count:>6.2f} {median('sink_waits') / count:>6.2f} "
              f"{ours / wall:>5.2f} {other:>6.2f} {steal:>6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few messages per scenario")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument(
        "--rtt", type=float, default=0.0, metavar="MS",
        help="put a proxy that delays each direction by MS/2 between the clients and the sink",
    )
    parser.add_argument(
        "--count", type=int, help="messages per run instead of the scenario's default"
    )
    parser.add_argument(
        "--baseline", metavar="DIR",
        help="also run the smtp_sync of the checkout in DIR (before a change), as 'baseline'",
    )
    parser.add_argument(
        "--calls", action="store_true",
        help="count Python function calls per sendmail with cProfile instead of timing",
    )
    parser.add_argument(
        "--instructions", action="store_true",
        help="count CPU instructions per sendmail with callgrind instead of timing",
    )
    parser.add_argument(
        "--server", type=int, metavar="PORT",
        help="an SMTP server already listening on 127.0.0.1:PORT instead of smtp-sink",
    )
    parser.add_argument(
        "--breakdown", action="store_true",
        help="also print where each client's time per message goes (its CPU, the sink's, "
        "waits, the machine's other load)",
    )
    parser.add_argument("--child", nargs=4, metavar=("CLIENT", "SCENARIO", "PORT", "COUNT"))
    parser.add_argument("--proxy", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.proxy:
        proxy(int(args.proxy[0]), int(args.proxy[1]), float(args.proxy[2]))
        return 0
    if args.child:
        client, scenario, port, count = args.child
        if scenario == "calls":
            result = count_calls(client, int(port), int(count))
        elif scenario == "send":
            result = send_only(client, int(port), int(count))
        else:
            result = child(client, scenario, int(port), int(count))
        import smtp_sync

        result["imported"] = str(Path(smtp_sync.__file__).resolve().parent.parent)
        print(json.dumps(result))
        return 0
    sink = None
    if args.server:
        port = args.server
    elif not os.path.exists(SINK):
        print(f"{SINK} is missing (Debian package postfix)", file=sys.stderr)
        return 2
    else:
        port = _free_port()
        sink = _start_sink(port)
    relay = None
    if args.rtt:
        sink_port, port = port, _free_port()
        relay = _start_proxy(port, sink_port, args.rtt)
        print(f"round-trip time added by a proxy: {args.rtt} ms")
    header = f"{'client':<10} {'msgs/s':>9} {'MB/s':>8} {'CPU ms/msg':>11} {'RSS+ MiB':>9}"
    if args.rtt:
        header += f" {'RTT/msg':>8}"
    rounds = 1 if args.smoke else args.rounds
    clients = CLIENTS + (["baseline"] if args.baseline else [])
    baseline = str(Path(args.baseline).resolve()) if args.baseline else None
    if args.instructions:
        if shutil.which("valgrind") is None:
            _stop(relay, sink)
            print("--instructions needs valgrind (Debian package valgrind)", file=sys.stderr)
            return 2
        try:
            print("\nCPU instructions per sendmail on one connection (callgrind)")
            for name in ["smtp_sync", *(["baseline"] if baseline else []), "bare", "smtplib"]:
                label = {"bare": "bare core driver"}.get(name, name)
                print(f"  {label:<18} {count_instructions(name, port, baseline):9.0f}")
        finally:
            _stop(relay, sink)
        return 0
    if args.calls:
        try:
            print(f"\nPython function calls per sendmail on one connection ({args.count or 2000})")
            for name in ["smtp_sync", *(["baseline"] if baseline else []), "bare"]:
                result = _run_child(name, "calls", port, args.count or 2000, baseline)
                label = {"bare": "bare core driver"}.get(name, name)
                print(f"  {label:<18} {result['calls_per_message']:7.1f}")
        finally:
            _stop(relay, sink)
        return 0
    try:
        for scenario in args.scenario or list(SCENARIOS):
            full, smoke = SCENARIOS[scenario]
            count = args.count or (smoke if args.smoke else full)
            if scenario in ("big", "bigfile"):
                count = 1
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
            ratios: dict[str, list[float]] = {
                "speed": [], "cpu": [], "base speed": [], "base cpu": []
            }
            for index in range(rounds):
                order = clients if index % 2 == 0 else clients[::-1]
                this = {
                    c: _run_child(c, scenario, port, count, baseline, sink.pid if sink else None)
                    for c in order
                }
                if baseline is not None and this["baseline"]["imported"] != baseline:
                    raise SystemExit(f"the baseline imported {this['baseline']['imported']}")
                for c in clients:
                    runs[c].append(this[c])
                ours, theirs = this["smtp_sync"], this["smtplib"]
                ratios["speed"].append(theirs["seconds"] / ours["seconds"])
                ratios["cpu"].append(ours["cpu_seconds"] / theirs["cpu_seconds"])
                if baseline is not None:
                    before = this["baseline"]
                    ratios["base speed"].append(theirs["seconds"] / before["seconds"])
                    ratios["base cpu"].append(before["cpu_seconds"] / theirs["cpu_seconds"])
            each = runs["smtplib"][0]["bytes"] // count
            print(f"\n{scenario}: {count} message(s) of {each} bytes, {rounds} round(s)")
            print(f"  {header}")
            for c in clients:
                seconds = statistics.median(r["seconds"] for r in runs[c])
                cpu = statistics.median(r["cpu_seconds"] for r in runs[c])
                rss = statistics.median(r["rss_growth_kib"] for r in runs[c]) / 1024
                size = runs[c][0]["bytes"]
                line = (f"  {c:<10} {count / seconds:>9.0f} {size / seconds / 1e6:>8.1f} "
                        f"{cpu / count * 1000:>11.3f} {rss:>9.1f}")
                if args.rtt:
                    line += f" {seconds / count / (args.rtt / 1000):>8.2f}"
                print(line)
            print(f"  smtp_sync vs smtplib: {statistics.median(ratios['speed']):.2f}x as fast, "
                  f"{statistics.median(ratios['cpu']):.2f}x the CPU (medians of per-round ratios)")
            if baseline is not None:
                speed = statistics.median(ratios["base speed"])
                cpu_ratio = statistics.median(ratios["base cpu"])
                print(f"  baseline  vs smtplib: {speed:.2f}x as fast, {cpu_ratio:.2f}x the CPU")
            if args.breakdown:
                _breakdown(scenario, count, runs)
    finally:
        _stop(relay, sink)
    return 0


def _stop(*processes: subprocess.Popen[bytes] | None) -> None:
    """End the proxy and the sink."""
    for process in processes:
        if process is not None:
            process.terminate()
            process.wait(5)


if __name__ == "__main__":
    sys.exit(main())
