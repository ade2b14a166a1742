"""The smtp-sansio command line's output: --json, --help, and the status line on a terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .cli import ROOT, run_cli, run_json, stage_names
from .servers import Expect, ExpectBdat, ExpectData, Send, session_prefix


def test_json_document_has_every_stage_reply_timing_and_the_outcome() -> None:
    result, doc = run_json("--user", "demo", "--auth", "PLAIN", "--to", "a@example.org")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert stage_names(doc) == [
        "connect", "greeting", "ehlo", "starttls", "ehlo", "auth", "mail", "rcpt", "data", "message", "quit",
    ]
    connect, *replied = doc["stages"]
    assert connect["peer"].startswith("127.0.0.1:") and connect["ms"] >= 0
    for stage in replied:
        assert isinstance(stage["ms"], float) and stage["ms"] >= 0
        assert 200 <= stage["reply"]["code"] < 400
        assert stage["reply"]["lines"]
    by_name = {stage["stage"]: stage for stage in replied}
    assert by_name["auth"]["command"] == "AUTH PLAIN <redacted>"
    assert by_name["auth"]["reply"]["code"] == 235
    assert by_name["rcpt"]["command"] == "RCPT TO:<a@example.org>"
    assert by_name["message"]["reply"] == {"code": 250, "lines": ["2.0.0 Message accepted"]}
    assert by_name["starttls"]["tls"] == doc["tls"]
    assert doc["tls"]["version"].startswith("TLSv1.")
    assert doc["tls"]["peer_certificate"]["subject"].endswith("CN=demo.smtp-sansio.invalid")
    assert "IP Address:127.0.0.1" in doc["tls"]["peer_certificate"]["subject_alt_names"]
    assert doc["server"] == {"host": "127.0.0.1", "port": doc["server"]["port"], "socket": None, "embedded": True, "lmtp": False}
    assert doc["outcome"] == {
        "ok": True, "exit_code": 0, "class": "ok", "error": None, "stopped_after": None,
        "refused": {}, "reply": "2.0.0 Message accepted", "total_ms": doc["outcome"]["total_ms"],
    }
    times = [entry["t_ms"] for entry in doc["transcript"]]
    assert times == sorted(times)
    assert doc["transcript"][-1]["line"] == "S: 221 Bye"
    [received] = doc["received"]
    assert received["rcpt_tos"] == ["a@example.org"]


def test_json_failure_outcome(smtpd: Any) -> None:
    server = smtpd(refuse_senders={"a@example.org": "553 5.7.1 no"})
    result, doc = run_json("--server", f"127.0.0.1:{server.port}", "--from", "a@example.org", "--to", "b@example.org")
    assert result.returncode == 6
    assert doc["outcome"]["exit_code"] == 6
    assert doc["outcome"]["class"] == "sender refused"
    assert doc["outcome"]["error"] == "a@example.org: 553 5.7.1 no"
    mail = next(stage for stage in doc["stages"] if stage["stage"] == "mail")
    assert mail["reply"]["code"] == 553
    assert doc["received"] is None


def test_help_documents_options_defaults_and_exit_codes() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    text = result.stdout
    usage = text.split("\n\n", 1)[0]
    assert "[--to ADDR]" in usage  # optional, not required
    for option in ("--ehlo NAME", "--timeout SECONDS", "--insecure-no-verify-tls", "--quit-after STAGE", "--json"):
        assert option in usage
    flat = " ".join(text.split())
    assert "(default: smtp-sansio@localhost.localdomain)" in flat
    assert "(default: 'smtp-sansio test message')" in flat
    assert "(default: 'This is a test message sent by smtp-sansio.')" in flat
    assert "(default: 30)" in flat
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "7 ", "8 ", "9 ", "130 "):
        assert f"\n  {code}" in text


def test_version() -> None:
    import smtp_asyncio

    result = run_cli("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"smtp-sansio {smtp_asyncio.__version__}\n", "")


def test_quiet_prints_nothing_on_success() -> None:
    result = run_cli("--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# -- the status line -------------------------------------------------------------------


class HeldGreeting:
    """A loopback server that sends its greeting only when ``release`` is set."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.release = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            self.release.wait(10)
            conn.sendall(b"220 slow.test ESMTP\r\n")
            data = b""
            while b"\n" not in data:
                chunk = conn.recv(1024)
                if not chunk:
                    return
                data += chunk
            conn.sendall(b"221 bye\r\n")

    def close(self) -> None:
        self.release.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def held() -> Iterator[HeldGreeting]:
    server = HeldGreeting()
    yield server
    server.close()


def read_until(fd: int, pattern: bytes, seen: bytearray, deadline: float) -> re.Match[bytes]:
    """Read the terminal until ``pattern`` (a regular expression) appears."""
    while (match := re.search(pattern, seen)) is None:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"{pattern!r} not in {bytes(seen)!r}")
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            raise AssertionError(f"{pattern!r} not in {bytes(seen)!r} (closed)")
        seen += chunk
    return match


def test_status_line_on_a_terminal_while_the_server_is_silent(held: HeldGreeting) -> None:
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "smtp_asyncio", "--server", f"127.0.0.1:{held.port}", "--to", "b@example.org", "--quit-after", "greeting"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, cwd=ROOT,
    )
    os.close(slave)
    seen = bytearray()
    try:
        status = read_until(master, rb"\rwaiting for the server\.\.\. (\d+) s\x1b\[K", seen, time.monotonic() + 10)
        first = int(status.group(1))
        assert first >= 1
        # rewritten in place as the seconds go by
        later = rb"\rwaiting for the server\.\.\. (?!%d s)\d+ s\x1b\[K" % first
        read_until(master, later, seen, time.monotonic() + 10)
        held.release.set()  # the greeting arrives: the status line must go
        read_until(master, rb"s\x1b\[K\r\x1b\[K", seen, time.monotonic() + 10)
        stdout, _ = process.communicate(timeout=10)
    finally:
        process.kill()
        process.wait()
        os.close(master)
    assert process.returncode == 0
    assert b"S: 220 slow.test ESMTP" in stdout
    after = bytes(seen).rsplit(b" s\x1b[K", 1)[1]
    assert after.startswith(b"\r\x1b[K")  # erased once the reply came, and not shown again
    assert b"waiting" not in after


def test_pipelined_replies_are_matched_to_their_commands(scripted: Any) -> None:
    server = scripted([
        *session_prefix("PIPELINING", "8BITMIME"),
        Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"RCPT"), Expect(b"DATA"),
        Send(b"250 2.1.0 sender ok\r\n550 5.1.1 no such user\r\n250 2.1.5 rcpt ok\r\n354 go ahead\r\n"),
        ExpectData(),
        Send(b"250 2.0.0 queued as 4711\r\n"),
        Expect(b"QUIT"),
        Send(b"221 2.0.0 bye\r\n"),
    ])
    result, doc = run_json("--server", f"127.0.0.1:{server.port}", "--to", "nobody@example.org", "--to", "b@example.org")
    assert result.returncode == 7, result.stderr
    replies = [(s["stage"], s.get("command", "").split(":")[0], s["reply"]["code"], s["reply"]["lines"][0]) for s in doc["stages"][1:]]
    assert replies == [
        ("greeting", "", 220, "scripted ESMTP"),
        ("ehlo", replies[1][1], 250, "smtp.test"),
        ("mail", "MAIL FROM", 250, "2.1.0 sender ok"),
        ("rcpt", "RCPT TO", 550, "5.1.1 no such user"),
        ("rcpt", "RCPT TO", 250, "2.1.5 rcpt ok"),
        ("data", "DATA", 354, "go ahead"),
        ("message", ".", 250, "2.0.0 queued as 4711"),
        ("quit", "QUIT", 221, "2.0.0 bye"),
    ]
    assert doc["outcome"]["refused"] == {"nobody@example.org": {"code": 550, "message": "5.1.1 no such user"}}
    assert doc["outcome"]["reply"] == "2.0.0 queued as 4711"


def test_bdat_replies_are_matched_to_their_commands(scripted: Any) -> None:
    server = scripted([
        *session_prefix("PIPELINING", "CHUNKING"),
        Expect(b"MAIL"), Expect(b"RCPT"), ExpectBdat(),
        Send(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 chunk ok, queued\r\n"),
        Expect(b"QUIT"),
        Send(b"221 2.0.0 bye\r\n"),
    ])
    result, doc = run_json("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org")
    assert result.returncode == 0, result.stderr
    assert [(s["stage"], s["reply"]["code"]) for s in doc["stages"][3:]] == [
        ("mail", 250), ("rcpt", 250), ("message", 250), ("quit", 221),
    ]
    assert doc["stages"][5]["command"].startswith("BDAT ")
    assert doc["outcome"]["reply"] == "2.0.0 chunk ok, queued"


def test_a_closed_stdout_is_no_traceback() -> None:
    # As in `smtp-sansio | head -1`: here the reader is gone before the first line.
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "smtp_asyncio"], stdin=subprocess.DEVNULL, stdout=write,
            stderr=subprocess.PIPE, cwd=ROOT, timeout=20,
        )
    finally:
        os.close(write)
    assert result.returncode == 0
    assert result.stderr == b""
