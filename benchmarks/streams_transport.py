"""The alternative asyncio transport, on StreamReader/StreamWriter, kept for measurement.

``python benchmarks/streams_transport.py PORT COUNT`` sends COUNT messages on one
connection with each transport and prints both timings; this is how the Protocol
transport in smtp_asyncio was chosen.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import smtp_asyncio
from smtp_core import SMTPServerDisconnected
from smtp_core._client import ConnectOptions, Transport


class StreamsTransport:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read(self) -> bytes:
        return await self.reader.read(65536)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise SMTPServerDisconnected("Connection lost") from exc

    unread: None = None

    def take_unread(self) -> bytes:
        return b""

    def peek_unsolicited(self) -> bytes:
        return b""

    async def start_tls(self, tls_context: Any, server_hostname: str | None) -> None:
        await self.writer.start_tls(tls_context, server_hostname=server_hostname)

    def peer_closed(self) -> bool:
        return False

    async def read_wakeable(self) -> bytes | None:
        return await self.read()

    def wake(self) -> None:
        pass

    def get_extra_info(self, key: str) -> Any:
        return self.writer.get_extra_info(key)

    def close(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        self.writer.close()


class StreamsSMTP(smtp_asyncio.SMTP):
    async def _open_transport(self, options: ConnectOptions) -> Transport:
        reader, writer = await asyncio.open_connection(options.hostname, options.port)
        return StreamsTransport(reader, writer)


async def measure(cls: type[smtp_asyncio.SMTP], port: int, count: int, batch: bool) -> float:
    message = b"Subject: x\r\n\r\n" + b"x" * 1000 + b"\r\n"
    started = time.perf_counter()
    async with cls(
        hostname="127.0.0.1", port=port, start_tls=False, local_hostname="b.local"
    ) as smtp:
        if batch:
            for _start in range(0, count, 1000):
                await smtp.send_messages([("a@example.org", ["b@example.org"], message)] * 1000)
        else:
            for _ in range(count):
                await smtp.sendmail("a@example.org", ["b@example.org"], message)
    return time.perf_counter() - started


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    for batch in (False, True):
        for name, cls in (("protocol", smtp_asyncio.SMTP), ("streams", StreamsSMTP)):
            runs = sorted(asyncio.run(measure(cls, port, count, batch)) for _ in range(5))
            median = runs[2]
            print(
                f"{'batch' if batch else 'sequential':<11} {name:<9} {count / median:8.0f} msgs/s"
            )


if __name__ == "__main__":
    main()
