"""One benchmark run in a fresh process: one client, one scenario; prints a JSON line.

Usage: python benchmarks/client.py CLIENT SCENARIO PORT COUNT
CLIENT: smtp_asyncio, smtp_anyio-asyncio, smtp_anyio-trio, aiosmtplib, smtplib,
        asyncio-floor and trio-floor (the reference points of benchmarks/floor.py;
        sequential, connsN and newconn only); any asyncio one with "-uvloop"
        appended runs on uvloop.
        One of ours with "-compiled" (before any "-uvloop") insists on the compiled
        build (hatch_build.py) and exits with an error if the pure one is imported; run
        it with the python of a virtualenv where the compiled wheel is installed, with
        ``-P`` so that nothing on the script's side shadows it. Without "-compiled" it
        insists on the pure-Python build. The JSON line says which build ran.
SCENARIO: sequential, batch, conns8, conns64, newconn, send, pool, big, bigfile,
          and for runs over a delay proxy (run.py --rtt): gather, pool4x8, latency
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SENDER = "bench@example.org"
RECIPIENTS = ["sink@example.org"]
MESSAGE = (
    b"Subject: benchmark\r\nFrom: bench@example.org\r\nTo: sink@example.org\r\n\r\n"
    + b"x" * 70
    + b"\r\n"
) * 12
MESSAGE = MESSAGE[:1024]
BIG_SIZE = 20 * 1024 * 1024
LATENCY_GAP = 0.005
"""Seconds between the lone messages of the latency scenario."""
POOL4X8_SENDERS = 64
"""Concurrent senders in the pool4x8 scenario: enough to keep 4 x 8 messages in flight."""


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def big_message() -> bytes:
    line = b".a line that starts with a dot, as in a quoted reply or a diff...\r\n"
    return b"Subject: big\r\n\r\n" + line * (BIG_SIZE // len(line))


def build_of_smtp_core() -> str:
    """``compiled`` if the modules hatch_build.py compiles are extension modules, ``pure``
    if they are all .py files (``mixed`` otherwise)."""
    import ast
    import importlib

    hook = Path(__file__).resolve().parent.parent / "hatch_build.py"
    hot = next(
        ast.literal_eval(node.value)
        for node in ast.parse(hook.read_text()).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "HOT_MODULES"
    )
    files = [
        importlib.import_module(path.removesuffix(".py").replace("/", ".")).__file__ or ""
        for path in hot
    ]
    if all(f.endswith(".py") for f in files):
        return "pure"
    if not any(f.endswith(".py") for f in files):
        return "compiled"
    return "mixed"


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# -- smtplib (blocking; threads for several connections) ------------------------------


def run_smtplib(scenario: str, port: int, count: int, payload: Any) -> dict[str, Any]:
    import smtplib

    def one_connection(n: int) -> None:
        with smtplib.SMTP(HOST, port) as smtp:
            for _ in range(n):
                smtp.sendmail(SENDER, RECIPIENTS, payload)

    if scenario in ("sequential", "batch", "gather", "big", "bigfile"):
        one_connection(count)
    elif scenario == "latency":
        return run_smtplib_latency(port, count, payload)
    elif scenario.startswith("conns") or scenario in ("pool", "pool4x8"):
        connections = {"pool": 8, "pool4x8": 4}.get(scenario) or int(scenario[5:])
        threads = [
            threading.Thread(target=one_connection, args=(n,)) for n in split(count, connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    elif scenario in ("newconn", "send"):
        for _ in range(count):
            one_connection(1)
    return {}


def run_smtplib_latency(port: int, count: int, payload: Any) -> dict[str, Any]:
    import smtplib

    samples = []
    with smtplib.SMTP(HOST, port) as smtp:
        smtp.sendmail(SENDER, RECIPIENTS, payload)  # warm-up: the connection is open
        for _ in range(count):
            time.sleep(LATENCY_GAP)
            started = time.perf_counter()
            smtp.sendmail(SENDER, RECIPIENTS, payload)
            samples.append(time.perf_counter() - started)
    return {"lone_ms": statistics.median(samples) * 1000, "messages": count + 1}


# -- async clients ----------------------------------------------------------------------


async def run_async(
    module: Any, gather: Any, scenario: str, port: int, count: int, payload: Any
) -> dict[str, Any]:
    """Run one scenario; returns figures to add to the result (latencies, messages)."""
    SMTP = module.SMTP

    async def one_connection(n: int) -> None:
        async with SMTP(
            hostname=HOST, port=port, start_tls=False, local_hostname="bench.local"
        ) as smtp:
            for _ in range(n):
                await smtp.sendmail(SENDER, RECIPIENTS, payload)

    if scenario in ("sequential", "big"):
        await one_connection(count)
    elif scenario == "bigfile":
        async with SMTP(
            hostname=HOST, port=port, start_tls=False, local_hostname="bench.local"
        ) as smtp:
            with open(payload, "rb") as file:
                if module.__name__ == "aiosmtplib":  # it cannot stream: read the file whole
                    await smtp.sendmail(SENDER, RECIPIENTS, file.read())
                else:
                    await smtp.sendmail(SENDER, RECIPIENTS, file)
    elif scenario == "batch":
        async with SMTP(
            hostname=HOST, port=port, start_tls=False, local_hostname="bench.local"
        ) as smtp:
            if hasattr(smtp, "send_messages"):
                for start in range(0, count, 1000):
                    results = await smtp.send_messages(
                        [(SENDER, RECIPIENTS, payload)] * min(1000, count - start)
                    )
                    assert all(isinstance(r, tuple) for r in results)
            else:  # aiosmtplib: concurrent calls on one connection, as its docs describe
                for start in range(0, count, 1000):
                    await gather(
                        [
                            smtp.sendmail(SENDER, RECIPIENTS, payload)
                            for _ in range(min(1000, count - start))
                        ]
                    )
    elif scenario == "gather":  # concurrent sendmail calls on one client, for every client
        async with SMTP(
            hostname=HOST, port=port, start_tls=False, local_hostname="bench.local"
        ) as smtp:
            for start in range(0, count, 1000):
                await gather(
                    [
                        smtp.sendmail(SENDER, RECIPIENTS, payload)
                        for _ in range(min(1000, count - start))
                    ]
                )
    elif scenario == "latency":
        return await run_latency(module, port, count, payload)
    elif scenario.startswith("conns"):
        await gather([one_connection(n) for n in split(count, int(scenario[5:]))])
    elif scenario == "newconn":
        for _ in range(count):
            await one_connection(1)
    elif scenario == "send":
        for _ in range(count):
            await module.send(
                payload,
                sender=SENDER,
                recipients=RECIPIENTS,
                hostname=HOST,
                port=port,
                start_tls=False,
                local_hostname="bench.local",
            )
    elif scenario == "pool":
        await run_pool(module, gather, port, count, payload)
    elif scenario == "pool4x8":
        await run_pool(module, gather, port, count, payload, connections=4, senders=POOL4X8_SENDERS)
    return {}


async def run_pool(
    module: Any,
    gather: Any,
    port: int,
    count: int,
    payload: Any,
    connections: int = 8,
    senders: int = 200,
) -> None:
    """Concurrent senders sharing a few connections (SMTPPool's default max_in_flight, 8)."""
    per_sender = split(count, senders)
    if hasattr(module, "SMTPPool"):
        async with module.SMTPPool(
            hostname=HOST,
            port=port,
            max_connections=connections,
            max_in_flight=8,
            start_tls=False,
            local_hostname="b.local",
        ) as pool:

            async def sender(n: int) -> None:
                for _ in range(n):
                    await pool.sendmail(SENDER, RECIPIENTS, payload)

            await gather([sender(n) for n in per_sender])
        return
    # aiosmtplib has no pool: a fixed set of connections shared through a queue.
    import asyncio

    clients = [
        module.SMTP(hostname=HOST, port=port, start_tls=False, local_hostname="b.local")
        for _ in range(connections)
    ]
    for client in clients:
        await client.connect()
    free: asyncio.Queue[Any] = asyncio.Queue()
    for client in clients:
        free.put_nowait(client)

    async def aiosmtplib_sender(n: int) -> None:
        for _ in range(n):
            client = await free.get()
            try:
                await client.sendmail(SENDER, RECIPIENTS, payload)
            finally:
                free.put_nowait(client)

    await gather([aiosmtplib_sender(n) for n in per_sender])
    for client in clients:
        await client.quit()


async def run_latency(module: Any, port: int, count: int, payload: Any) -> dict[str, Any]:
    """Median latency of a lone sendmail, on an open connection and through a pool.

    Each message is sent alone, LATENCY_GAP seconds after the previous one finished,
    after one warm-up message that opens the connection. The pool is SMTPPool (4
    connections, max_in_flight 8) or, for aiosmtplib, 4 open connections in a queue.
    """
    if module.__name__ == "smtp_anyio":
        import anyio

        sleep = anyio.sleep
    else:
        import asyncio

        sleep = asyncio.sleep

    async def measure(send: Any) -> float:
        await send()  # warm-up
        samples = []
        for _ in range(count):
            await sleep(LATENCY_GAP)
            started = time.perf_counter()
            await send()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1000

    async with module.SMTP(
        hostname=HOST, port=port, start_tls=False, local_hostname="bench.local"
    ) as smtp:
        lone = await measure(lambda: smtp.sendmail(SENDER, RECIPIENTS, payload))
    if hasattr(module, "SMTPPool"):
        async with module.SMTPPool(
            hostname=HOST,
            port=port,
            max_connections=4,
            max_in_flight=8,
            start_tls=False,
            local_hostname="b.local",
        ) as pool:
            pooled = await measure(lambda: pool.sendmail(SENDER, RECIPIENTS, payload))
    else:
        import asyncio

        clients = [
            module.SMTP(hostname=HOST, port=port, start_tls=False, local_hostname="b.local")
            for _ in range(4)
        ]
        for client in clients:
            await client.connect()
        free: asyncio.Queue[Any] = asyncio.Queue()
        for client in clients:
            free.put_nowait(client)

        async def queued_send() -> None:
            client = await free.get()
            try:
                await client.sendmail(SENDER, RECIPIENTS, payload)
            finally:
                free.put_nowait(client)

        pooled = await measure(queued_send)
        for client in clients:
            await client.quit()
    return {"lone_ms": lone, "pooled_ms": pooled, "messages": 2 * (count + 1)}


def main() -> None:
    client, scenario, port_text, count_text = sys.argv[1:5]
    label = client
    uvloop = client.endswith("-uvloop")
    client = client.removesuffix("-uvloop")
    compiled = client.endswith("-compiled")
    client = client.removesuffix("-compiled")
    build = None
    if client.startswith(("smtp_asyncio", "smtp_anyio")):
        build = build_of_smtp_core()
        if build != ("compiled" if compiled else "pure"):
            sys.exit(f"{label}: smtp_core's hot modules are {build} in {sys.executable}")
    elif compiled:
        sys.exit(f"{label}: only smtp_asyncio and smtp_anyio have a compiled build")
    port, count = int(port_text), int(count_text)
    payload: Any = MESSAGE
    size = len(MESSAGE)
    if scenario == "big":
        payload = big_message()
        size = len(payload)
    elif scenario == "bigfile":
        # Written line by line, so the message is never in this process's memory.
        line = b".a line that starts with a dot, as in a quoted reply or a diff...\r\n"
        handle = tempfile.NamedTemporaryFile(delete=False, suffix=".eml")  # noqa: SIM115
        handle.write(b"Subject: big\r\n\r\n")
        for _ in range(BIG_SIZE // len(line)):
            handle.write(line)
        handle.close()
        size = os.path.getsize(handle.name)
        payload = handle.name
    if scenario in ("big", "bigfile"):
        count = 1
    # Import the client before measuring, so import costs count for nobody.
    if client.startswith("smtp_anyio"):
        __import__("smtp_anyio")
        if client == "smtp_anyio-trio":
            __import__("trio")
    elif client in ("smtp_asyncio", "aiosmtplib"):
        __import__(client)
    elif client in ("asyncio-floor", "trio-floor"):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        __import__("floor")
        if client == "trio-floor":
            __import__("trio")
    base_rss = rss_kib()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if client == "smtplib":
        if scenario == "bigfile":
            with open(payload, "rb") as file:
                payload = file.read()  # smtplib needs the whole message in memory
        extra = run_smtplib(scenario, port, count, payload)
    elif client in ("smtp_anyio-trio", "trio-floor"):
        import trio

        trio_module: Any
        if client == "trio-floor":
            import floor

            trio_module = types.SimpleNamespace(__name__="floor", SMTP=floor.TrioFloorSMTP)
        else:
            import smtp_anyio as trio_module

        async def gather_trio(coros: list[Any]) -> None:
            async with trio.open_nursery() as nursery:
                for coro in coros:

                    async def run(c: Any = coro) -> None:
                        await c

                    nursery.start_soon(run)

        extra = trio.run(run_async, trio_module, gather_trio, scenario, port, count, payload)
    else:
        import asyncio

        module: Any
        if client == "smtp_asyncio":
            import smtp_asyncio as module
        elif client == "asyncio-floor":
            import floor as module
        elif client == "smtp_anyio-asyncio":
            import smtp_anyio as module
        else:
            import aiosmtplib as module

        async def gather_asyncio(coros: list[Any]) -> None:
            await asyncio.gather(*coros)

        if uvloop:
            import uvloop as uvloop_module

            extra = uvloop_module.run(
                run_async(module, gather_asyncio, scenario, port, count, payload)
            )
        else:
            extra = asyncio.run(run_async(module, gather_asyncio, scenario, port, count, payload))
    elapsed = time.perf_counter() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    if scenario == "bigfile":
        os.unlink(payload if isinstance(payload, str) else handle.name)
    print(
        json.dumps(
            {
                "client": label,
                "build": build,
                "scenario": scenario,
                "messages": count,
                "seconds": elapsed,
                "cpu_seconds": cpu,
                "bytes": size * count,
                "rss_growth_kib": max(0, usage1.ru_maxrss - base_rss),
                **extra,
            }
        )
    )


if __name__ == "__main__":
    main()
