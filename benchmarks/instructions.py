"""CPU instructions per message and per connection, counted with valgrind's callgrind.

Time on a shared machine moves with the load; the number of instructions a program
executes does not. This runs ``benchmarks/cpu.py``'s in-memory workloads (an awaited
``sendmail`` on an open client; a connection with greeting, EHLO, one message and QUIT)
under callgrind twice, with two counts, and prints the difference per message or per
connection, so start-up and imports cancel out. ``PYTHONHASHSEED`` is fixed, as hash
randomisation alone moves the figure by a few per cent.

    python benchmarks/instructions.py                         # smtp_asyncio
    python benchmarks/instructions.py --adapter smtp_anyio-trio --adapter smtp_asyncio
    python benchmarks/instructions.py --compiled-python /tmp/compiled/bin/python

With ``--socket`` the workloads talk to cpu.py's model server in a child process over
loopback (``cpu.py --socket``), so each adapter's own transport and event loop count
too; callgrind does not follow the server process::

    python benchmarks/instructions.py --socket --adapter smtp_asyncio --adapter smtp_anyio-trio

Needs ``valgrind`` (Debian package valgrind). With ``--compiled-python PYTHON`` (a python
where the compiled wheel of hatch_build.py is installed), the compiled build is counted
beside the checkout's pure one; the build each child imported is checked, not assumed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = {"message": (100, 600), "connection": (50, 250)}
ADAPTERS = ["smtp_asyncio", "smtp_asyncio-uvloop", "smtp_anyio-asyncio", "smtp_anyio-trio"]


def child(adapter: str, kind: str, count: int, installed: bool, over_socket: bool) -> None:
    """Run one workload (inside callgrind) and say which build of smtp_core it used."""
    if not installed:
        sys.path.insert(0, str(HERE.parent))
    sys.path.append(str(HERE))
    if installed:
        sys.argv.append("--installed")  # cpu.py: leave the installed modules in place
    import cpu  # benchmarks/cpu.py

    workload = cpu.per_message if kind == "message" else cpu.per_connection
    server = cpu.start_model_server() if over_socket else None
    try:
        cpu.run(adapter, workload, count)
    finally:
        if server is not None:
            server.kill()
            server.wait()
    print(f"build: {cpu.build_of_smtp_core()}", file=sys.stderr)


def count(
    python: str, adapter: str, kind: str, n: int, installed: bool, over_socket: bool
) -> tuple[int, str]:
    """Instructions of one child run, and the build it imported."""
    with tempfile.TemporaryDirectory() as tmp:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out"]
        command += [python, *(["-P"] if installed else []), str(Path(__file__).resolve())]
        command += ["--child", adapter, kind, str(n), *(["--installed"] if installed else [])]
        command += ["--socket"] if over_socket else []
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{adapter} {kind} ({python}) failed:\n{done.stderr[-2000:]}")
    collected = re.search(r"Collected : (\d+)", done.stderr)
    build = re.search(r"build: (\w+)", done.stderr)
    if collected is None or build is None:
        raise RuntimeError(f"unexpected callgrind output:\n{done.stderr[-2000:]}")
    return int(collected.group(1)), build.group(1)


def per_unit(
    python: str, adapter: str, kind: str, installed: bool, expect: str, over_socket: bool
) -> int:
    low, high = KINDS[kind]
    (a, build_a), (b, build_b) = (
        count(python, adapter, kind, n, installed, over_socket) for n in (low, high)
    )
    if {build_a, build_b} != {expect}:
        sys.exit(f"{adapter}: expected the {expect} build, {python} ran {build_a}/{build_b}")
    return (b - a) // (high - low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", action="append", choices=ADAPTERS)
    parser.add_argument("--compiled-python", metavar="PYTHON")
    parser.add_argument(
        "--child", nargs=3, metavar=("ADAPTER", "KIND", "N"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--socket",
        action="store_true",
        help="a model server on loopback instead of the in-memory transport (cpu.py --socket)",
    )
    parser.add_argument("--installed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        adapter, kind, n = args.child
        child(adapter, kind, int(n), args.installed, args.socket)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    builds = [("pure", sys.executable, False)]
    if args.compiled_python:
        builds.append(("compiled", args.compiled_python, True))
    peer = "a model server on loopback" if args.socket else "in-memory transport"
    print(f"instructions per awaited sendmail and per connection (callgrind, {peer})")
    print(f"{'adapter':22}" + "".join(f" {b + ' msg':>14} {b + ' conn':>14}" for b, _, _ in builds))
    for adapter in args.adapter or ["smtp_asyncio"]:
        cells = []
        for build, python, installed in builds:
            for kind in ("message", "connection"):
                cells.append(per_unit(python, adapter, kind, installed, build, args.socket))
                sys.stdout.flush()
        print(f"{adapter:22}" + "".join(f" {c:14,}" for c in cells))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
