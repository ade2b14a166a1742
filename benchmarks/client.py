"""One benchmark run in a fresh process: one client, one scenario; prints a JSON line.

Usage: python benchmarks/client.py CLIENT SCENARIO PORT COUNT
CLIENT: smtp_asyncio, smtp_anyio-asyncio, smtp_anyio-trio, aiosmtplib, smtplib,
        asyncio-floor (the reference point of benchmarks/floor.py; sequential, connsN
        and newconn only); any asyncio one with "-uvloop" appended runs on uvloop
SCENARIO: sequential, batch, conns8, conns64, newconn, send, pool, big, bigfile
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import threading
import time
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


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def big_message() -> bytes:
    line = b".a line that starts with a dot, as in a quoted reply or a diff...\r\n"
    return b"Subject: big\r\n\r\n" + line * (BIG_SIZE // len(line))


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# -- smtplib (blocking; threads for several connections) ------------------------------


def run_smtplib(scenario: str, port: int, count: int, payload: Any) -> None:
    import smtplib

    def one_connection(n: int) -> None:
        with smtplib.SMTP(HOST, port) as smtp:
            for _ in range(n):
                smtp.sendmail(SENDER, RECIPIENTS, payload)

    if scenario in ("sequential", "batch", "big", "bigfile"):
        one_connection(count)
    elif scenario.startswith("conns") or scenario == "pool":
        connections = 8 if scenario == "pool" else int(scenario[5:])
        threads = [
            threading.Thread(target=one_connection, args=(n,))
            for n in split(count, connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    elif scenario in ("newconn", "send"):
        for _ in range(count):
            one_connection(1)


# -- async clients ----------------------------------------------------------------------


async def run_async(
    module: Any, gather: Any, scenario: str, port: int, count: int, payload: Any
) -> None:
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


async def run_pool(module: Any, gather: Any, port: int, count: int, payload: Any) -> None:
    """200 concurrent senders sharing 8 connections."""
    senders = 200
    per_sender = split(count, senders)
    if hasattr(module, "SMTPPool"):
        async with module.SMTPPool(
            hostname=HOST, port=port, max_connections=8, start_tls=False, local_hostname="b.local"
        ) as pool:

            async def sender(n: int) -> None:
                for _ in range(n):
                    await pool.sendmail(SENDER, RECIPIENTS, payload)

            await gather([sender(n) for n in per_sender])
        return
    # aiosmtplib has no pool: a fixed set of 8 connections shared through a lock each.
    import asyncio

    clients = [module.SMTP(hostname=HOST, port=port, start_tls=False) for _ in range(8)]
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


def main() -> None:
    client, scenario, port_text, count_text = sys.argv[1:5]
    uvloop = client.endswith("-uvloop")
    client = client.removesuffix("-uvloop")
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
        import smtp_anyio
    elif client in ("smtp_asyncio", "aiosmtplib"):
        __import__(client)
    elif client == "asyncio-floor":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import floor  # noqa: F401
    base_rss = rss_kib()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if client == "smtplib":
        if scenario == "bigfile":
            with open(payload, "rb") as file:
                payload = file.read()  # smtplib needs the whole message in memory
        run_smtplib(scenario, port, count, payload)
    elif client == "smtp_anyio-trio":
        import trio

        import smtp_anyio

        async def gather_trio(coros: list[Any]) -> None:
            async with trio.open_nursery() as nursery:
                for coro in coros:

                    async def run(c: Any = coro) -> None:
                        await c

                    nursery.start_soon(run)

        trio.run(run_async, smtp_anyio, gather_trio, scenario, port, count, payload)
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

            uvloop_module.run(run_async(module, gather_asyncio, scenario, port, count, payload))
        else:
            asyncio.run(run_async(module, gather_asyncio, scenario, port, count, payload))
    elapsed = time.perf_counter() - started
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    if scenario == "bigfile":
        os.unlink(payload if isinstance(payload, str) else handle.name)
    print(
        json.dumps(
            {
                "client": client + ("-uvloop" if uvloop else ""),
                "scenario": scenario,
                "messages": count,
                "seconds": elapsed,
                "cpu_seconds": cpu,
                "bytes": size * count,
                "rss_growth_kib": max(0, usage1.ru_maxrss - base_rss),
            }
        )
    )


if __name__ == "__main__":
    main()
