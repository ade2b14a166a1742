"""Library CPU per message and per connection, with an in-memory transport.

No sockets and no server process: a model server answers inside the transport, so
what is measured is the library's own Python (flows, machine, client surface, the
adapter's deadline and turn handling), stable on a noisy machine. Process CPU time is
read around N awaited ``sendmail`` calls on one client, and around N connections
(greeting, EHLO, one message, QUIT).

    python benchmarks/cpu.py                 # every adapter, 3 rounds
    python benchmarks/cpu.py --messages 20000 --adapter smtp_asyncio

The in-memory transport leaves out what each adapter's own transport and event loop
cost (an anyio stream, a selector, the scheduler). With ``--socket`` the same model
server runs in a child process on loopback and the clients connect to it as they
would to any server: the figures are this process's CPU time only, the adapter's
transport and event loop included, the server's excluded::

    python benchmarks/cpu.py --socket --adapter smtp_asyncio --adapter smtp_anyio-trio

With ``--compiled-python PYTHON`` (the python of a virtualenv where the compiled wheel
of hatch_build.py is installed; see benchmarks/run.py for how to build one) the pure
and the compiled build are printed side by side. Each round of each adapter then runs
in a fresh process, pure and compiled alternating; the compiled one runs as
``PYTHON -P benchmarks/cpu.py --installed`` so that the checkout does not shadow the
installed modules, and the build each process imported is checked, not assumed::

    python benchmarks/cpu.py --compiled-python /tmp/compiled/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if "--installed" not in sys.argv:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # with python -P too

from client import build_of_smtp_core  # benchmarks/client.py, beside this file

import smtp_anyio
import smtp_asyncio
from smtp_core._client import ConnectOptions

EHLO = b"250-model.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: cpu\r\n\r\n" + b"x" * 900 + b"\r\n"


class ModelServer:
    """A minimal SMTP server: bytes from the client in, its replies appended to ``out``."""

    def __init__(self, chunking: bool = False) -> None:
        self.out = bytearray(b"220 model.test ESMTP\r\n")
        self.pending = b""
        self.in_data = False
        self.ehlo = EHLO if not chunking else EHLO.replace(b"250 ENH", b"250-CHUNKING\r\n250 ENH")

    def feed(self, data: bytes) -> None:
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


class ModelTransport(ModelServer):
    """A Transport whose peer is the model server, living in the same object."""

    async def write(self, data: bytes) -> None:
        self.feed(data)

    async def read(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    unread: None = None

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


def serve_model(listener: socket.socket) -> None:
    """The model server on a listening socket, one connection after another (blocking)."""
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            server = ModelServer()
            while True:
                if server.out:
                    conn.sendall(server.out)
                    server.out.clear()
                data = conn.recv(65536)
                if not data:
                    break
                server.feed(data)


MODEL_PORT: int | None = None  # set by --socket: where the model server listens


def start_model_server() -> subprocess.Popen[bytes]:
    """The model server in a child process; sets MODEL_PORT."""
    global MODEL_PORT
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--model-server"],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    MODEL_PORT = int(child.stdout.readline())
    return child


def client_class(module: Any) -> Any:
    if MODEL_PORT is not None:
        return module.SMTP

    class InMemory(module.SMTP):  # type: ignore[misc, name-defined]
        async def _open_transport(self, options: ConnectOptions) -> Any:
            return ModelTransport()

    return InMemory


def where() -> dict[str, Any]:
    if MODEL_PORT is not None:
        return {"hostname": "127.0.0.1", "port": MODEL_PORT}
    return {"hostname": "model.test", "port": 25}


async def per_message(module: Any, count: int) -> float:
    smtp = client_class(module)(**where(), local_hostname="client.test", start_tls=False)
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
        async with cls(**where(), local_hostname="client.test", start_tls=False) as smtp:
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


def one_round(python: str, name: str, args: argparse.Namespace, installed: bool) -> dict[str, Any]:
    """One round of one adapter in a fresh process; its figures and the build it imported."""
    command = [python, *(["-P"] if installed else []), str(Path(__file__).resolve())]
    command += ["--child", "--adapter", name, "--rounds", "1"]
    command += ["--messages", str(args.messages), "--connections", str(args.connections)]
    if args.socket:
        command.append("--socket")
    if installed:
        command.append("--installed")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{name} ({python}) failed:\n{result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def side_by_side(args: argparse.Namespace, names: list[str]) -> None:
    """Pure and compiled, one fresh process per round, alternating which goes first."""
    builds = {"pure": (sys.executable, False), "compiled": (args.compiled_python, True)}
    print(f"pure: {build_of_smtp_core()} smtp_core under {sys.executable}")
    print(f"compiled: {args.compiled_python} -P")
    head = f"{'adapter':22} {'us/message':>21} {'us/connection':>21} {'compiled/pure':>14}"
    print(f"{head}   (median of {args.rounds} rounds, a fresh process each)")
    print(
        f"{'':22} {'pure':>10} {'compiled':>10} {'pure':>10} {'compiled':>10} {'msg':>7}{'conn':>7}"
    )
    for name in names:
        results: dict[str, list[dict[str, Any]]] = {"pure": [], "compiled": []}
        for round_index in range(args.rounds):
            order = ["pure", "compiled"] if round_index % 2 == 0 else ["compiled", "pure"]
            for build in order:
                python, installed = builds[build]
                result = one_round(python, name, args, installed)
                if result["build"] != build:
                    sys.exit(f"{name}: expected the {build} build, {python} ran {result['build']}")
                results[build].append(result)
        med = {
            (build, key): statistics.median(r[key] for r in results[build]) * 1e6
            for build in results
            for key in ("per_message", "per_connection")
        }
        msg_ratio = med["compiled", "per_message"] / med["pure", "per_message"]
        conn_ratio = med["compiled", "per_connection"] / med["pure", "per_connection"]
        print(
            f"{name:22} {med['pure', 'per_message']:10.1f} {med['compiled', 'per_message']:10.1f}"
            f" {med['pure', 'per_connection']:10.1f} {med['compiled', 'per_connection']:10.1f}"
            f" {msg_ratio:6.2f}x{conn_ratio:6.2f}x"
        )
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--adapter", action="append", choices=list(ADAPTERS))
    parser.add_argument(
        "--compiled-python",
        metavar="PYTHON",
        help="a python with the compiled wheel installed: print pure and compiled side by side",
    )
    parser.add_argument(
        "--installed",
        action="store_true",
        help="import the installed smtp_core rather than the checkout's (run with python -P)",
    )
    parser.add_argument(
        "--socket",
        action="store_true",
        help="the model server in a child process on loopback: transports and loops count too",
    )
    parser.add_argument("--model-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model_server:
        listener = socket.create_server(("127.0.0.1", 0))
        print(listener.getsockname()[1], flush=True)
        serve_model(listener)
        return
    server = start_model_server() if args.socket and not args.compiled_python else None
    try:
        measure(args)
    finally:
        if server is not None:
            server.kill()
            server.wait()


def measure(args: argparse.Namespace) -> None:
    names = args.adapter or list(ADAPTERS)
    if not any(n.endswith("uvloop") for n in args.adapter or []):
        try:
            import uvloop  # noqa: F401
        except ImportError:
            names = [n for n in names if not n.endswith("uvloop")]
    if args.compiled_python and not args.child:
        side_by_side(args, names)
        return
    if args.child:
        name = names[0]
        per_msg = statistics.median(
            run(name, per_message, args.messages) for _ in range(args.rounds)
        )
        per_conn = statistics.median(
            run(name, per_connection, args.connections) for _ in range(args.rounds)
        )
        figures = {"per_message": per_msg, "per_connection": per_conn}
        print(json.dumps({"adapter": name, "build": build_of_smtp_core(), **figures}))
        return
    header = f"{'adapter':22} {'us/message':>11} {'us/connection':>14}"
    peer = "a model server on loopback" if args.socket else "in memory"
    print(f"{header}   (median of {args.rounds} rounds; smtp_core: {build_of_smtp_core()}; {peer})")
    for name in names:
        msgs = [run(name, per_message, args.messages) for _ in range(args.rounds)]
        conns = [run(name, per_connection, args.connections) for _ in range(args.rounds)]
        per_msg, per_conn = statistics.median(msgs) * 1e6, statistics.median(conns) * 1e6
        print(f"{name:22} {per_msg:11.1f} {per_conn:14.1f}")


if __name__ == "__main__":
    main()
