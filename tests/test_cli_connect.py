"""smtp-sansio's own connect: a host's addresses tried in turn, each failure noted."""

from __future__ import annotations

import asyncio
import io
import socket
from typing import Any

from smtp_asyncio._cli._options import parse
from smtp_asyncio._cli._report import Recorder
from smtp_asyncio._cli._session import _open

from .servers import free_port


def test_the_next_address_is_tried_after_a_refusal() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    good, bad = listener.getsockname()[1], free_port()
    options = parse(["--server", "mail.example.test:25", "--to", "b@example.org"])
    out = io.StringIO()
    recorder = Recorder(out, live=True, status=None)

    async def main() -> str:
        loop = asyncio.get_running_loop()

        async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
            assert (host, port) == ("mail.example.test", 25)
            stream, tcp = socket.SOCK_STREAM, socket.IPPROTO_TCP
            return [
                (socket.AF_INET, stream, tcp, "", ("127.0.0.1", bad)),
                (socket.AF_INET, stream, tcp, "", ("127.0.0.1", good)),
            ]

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
        sock = await _open(options, recorder)
        with sock:
            return str(sock.getpeername())

    try:
        assert asyncio.run(main()) == str(("127.0.0.1", good))
    finally:
        listener.close()
    assert out.getvalue().splitlines() == [
        f"=== 127.0.0.1:{bad}: Connection refused; trying the next address",
        out.getvalue().splitlines()[1],
    ]
    assert out.getvalue().splitlines()[1].startswith(f"=== Connected to 127.0.0.1:{good} in ")
    assert recorder.stages == [{"stage": "connect", "ms": recorder.stages[0]["ms"], "peer": f"127.0.0.1:{good}"}]
