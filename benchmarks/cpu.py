"""Library CPU per message and per connection, with an in-memory transport.

No sockets and no server process: a model server answers inside the transport, so
what is measured is the library's own Python (flows, machine, client surface, the
adapter's deadline and turn handling), stable on a noisy machine. Process CPU time is
read around N awaited ``sendmail`` calls on one client, and around N connections
(greeting, EHLO, one message, QUIT).

    python benchmarks/cpu.py                 # every adapter, 3 rounds
    python benchmarks/cpu.py --messages 20000 --adapter smtp_asyncio
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smtp_anyio
import smtp_asyncio
from smtp_core._client import ConnectOptions

EHLO = b"250-model.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: cpu\r\n\r\n" + b"x" * 900 + b"\r\n"


class ModelTransport:
    """A Transport whose peer is a minimal SMTP server living in the same object."""

    def __init__(self, chunking: bool = False) -> None:
        self.out = bytearray(b"220 model.test ESMTP\r\n")
        self.pending = b""
        self.in_data = False
        self.ehlo = EHLO if not chunking else EHLO.replace(b"250 ENH", b"250-CHUNKING\r\n250 ENH")

    async def write(self, data: bytes) -> None:
        buf = self.pending + data
        while buf:
            if self.in_data:
                end = buf.find(b"\r\n.\r\n")
                if end < 0:
                    break
                buf = buf[end + 5 :]
                self.in_data = False
                self.out += b"250 2.0.0 queued\r\n"
                continue
            line, sep, rest = buf.partition(b"\r\n")
            if not sep:
                break
            buf = rest
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.out += self.ehlo
            elif verb == b"DATA":
                self.in_data = True
                self.out += b"354 go\r\n"
            elif verb == b"QUIT":
                self.out += b"221 bye\r\n"
            elif verb == b"BDAT":
                size = int(line.split()[1])
                buf = buf[size:]
                self.out += b"250 2.0.0 queued\r\n"
            else:
                self.out += b"250 2.1.0 ok\r\n"
        self.pending = buf

    async def read(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def take_unread(self) -> bytes:
        return b""

    def peek_unsolicited(self) -> bytes:
        return b""

    async def start_tls(self, tls_context: Any, server_hostname: str | None) -> None:
        raise NotImplementedError

    def peer_closed(self) -> bool:
        return False

    async def read_wakeable(self) -> bytes | None:
        return await self.read()

    def wake(self) -> None:
        pass

    def get_extra_info(self, key: str) -> Any:
        return None

    @property
    def transport(self) -> Any:
        return None

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def client_class(module: Any) -> Any:
    class InMemory(module.SMTP):  # type: ignore[misc, name-defined]
        async def _open_transport(self, options: ConnectOptions) -> Any:
            return ModelTransport()

    return InMemory


async def per_message(module: Any, count: int) -> float:
    smtp = client_class(module)(
        hostname="model.test", port=25, local_hostname="client.test", start_tls=False
    )
    await smtp.connect()
    await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)  # warm up
    start = time.process_time()
    for _ in range(count):
        await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    spent = time.process_time() - start
    await smtp.quit()
    return spent / count


async def per_connection(module: Any, count: int) -> float:
    cls = client_class(module)
    start = time.process_time()
    for _ in range(count):
        async with cls(
            hostname="model.test", port=25, local_hostname="client.test", start_tls=False
        ) as smtp:
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    return (time.process_time() - start) / count


ADAPTERS = {
    "smtp_asyncio": (smtp_asyncio, "asyncio"),
    "smtp_asyncio-uvloop": (smtp_asyncio, "uvloop"),
    "smtp_anyio-asyncio": (smtp_anyio, "asyncio"),
    "smtp_anyio-trio": (smtp_anyio, "trio"),
}


def run(name: str, fn: Any, *args: Any) -> float:
    module, backend = ADAPTERS[name]
    if backend == "uvloop":
        import uvloop

        return float(uvloop.run(fn(module, *args)))
    if module is smtp_asyncio:
        return float(asyncio.run(fn(module, *args)))
    import anyio

    return float(anyio.run(fn, module, *args, backend=backend))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--adapter", action="append", choices=list(ADAPTERS))
    args = parser.parse_args()
    names = args.adapter or list(ADAPTERS)
    header = f"{'adapter':22} {'us/message':>11} {'us/connection':>14}"
    print(f"{header}   (median of {args.rounds} rounds)")
    for name in names:
        if name.endswith("uvloop"):
            try:
                import uvloop  # noqa: F401
            except ImportError:
                continue
        msgs = [run(name, per_message, args.messages) for _ in range(args.rounds)]
        conns = [run(name, per_connection, args.connections) for _ in range(args.rounds)]
        per_msg, per_conn = statistics.median(msgs) * 1e6, statistics.median(conns) * 1e6
        print(f"{name:22} {per_msg:11.1f} {per_conn:14.1f}")


if __name__ == "__main__":
    main()
