"""The smtp-sansio command line: one exit status per class of failure, one line each,
and every bad input refused before any connection is made."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cli import ROOT, commands, run_cli, run_json
from .servers import (
    Close,
    Expect,
    ExpectData,
    Hang,
    ReadUntilClosed,
    Send,
    free_port,
    session_prefix,
)


def one_error_line(stderr: str, prefix: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(prefix), stderr
    return lines[0]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket: after a run, an accept that finds nothing proves no connection."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def assert_never_connected(sock: socket.socket) -> None:
    # The kernel completes a handshake into the backlog even if the client closed it
    # at once, so a client that connected at all would be found here.
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.accept()


BAD_INPUTS = {
    "port out of range": (["--server", "127.0.0.1:99999", "--to", "b@example.org"], "port 99999 is out of range (1-65535)"),
    "port not a number": (["--server", "127.0.0.1:smtp", "--to", "b@example.org"], "port 'smtp' is not a number"),
    "not an address": (["--to", "not an address"], "--to 'not an address': no '@' and domain"),
    "CRLF in an address": (["--to", "a@b.example\r\nRCPT TO:<x@y.example>"], "CR is not allowed"),
    "display name": (["--to", "Bob <b@example.org>"], "angle brackets inside the address"),
    "bad sender": (["--from", "alice", "--to", "b@example.org"], "--from 'alice': no '@' and domain"),
    "header without colon": (["--header", "NoColon"], "--header 'NoColon': expected 'Name: value'"),
    "header injection": (["--header", "X-A: b\r\nBcc: evil@example.net"], "a header value holds no CR, LF or NUL"),
    "missing --data file": (["--data", "/nonexistent/message.eml"], "--data '/nonexistent/message.eml': No such file or directory"),
    "missing --attach file": (["--attach", "/nonexistent/report.pdf"], "--attach '/nonexistent/report.pdf': No such file or directory"),
    "no password without a terminal": (["--user", "alice"], "no password for --user 'alice': set $SMTP_PASSWORD"),
    "bad EHLO name": (["--ehlo", "bad name"], "--ehlo 'bad name': whitespace is not allowed"),
    "bad DSN RET": (["--dsn-ret", "ALL"], "DSN ret must be FULL or HDRS"),
    "bad DSN NOTIFY": (["--dsn-notify", "NEVER,SUCCESS"], "NEVER cannot be combined"),
    "--auth without --user": (["--auth", "PLAIN"], "--auth needs --user"),
    "unknown mechanism": (["--user", "a", "--auth", "GSSAPI"], "invalid choice: 'GSSAPI'"),
    "--data with --subject": (["--data", "-", "--subject", "x"], "--data sends the message as is: it cannot take --subject"),
    "zero timeout": (["--timeout", "0"], "--timeout 0: must be more than 0 seconds"),
    "missing CA file": (["--cafile", "/nonexistent/ca.pem"], "--cafile '/nonexistent/ca.pem': No such file or directory"),
    "--tls with --starttls": (["--tls", "--starttls"], "not allowed with argument"),
    "unknown quit point": (["--quit-after", "data"], "invalid choice: 'data'"),
}


@pytest.mark.parametrize("args, message", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_before_connecting(listener: socket.socket, args: list[str], message: str) -> None:
    server = [] if "--server" in args else ["--server", f"127.0.0.1:{listener.getsockname()[1]}"]
    recipient = [] if "--to" in args else ["--to", "b@example.org"]
    result = run_cli(*server, *recipient, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    line = one_error_line(result.stderr, "smtp-sansio: error: ")
    assert message in line
    assert_never_connected(listener)


def test_a_recipient_is_needed_with_a_server(listener: socket.socket) -> None:
    result = run_cli("--server", f"127.0.0.1:{listener.getsockname()[1]}")
    assert result.returncode == 2
    one_error_line(result.stderr, "smtp-sansio: error: at least one --to is needed")
    assert_never_connected(listener)


def test_bad_input_with_json_is_a_json_document(listener: socket.socket) -> None:
    result, doc = run_json("--server", f"127.0.0.1:{listener.getsockname()[1]}", "--to", "not an address")
    assert result.returncode == 2
    assert doc["outcome"]["exit_code"] == 2
    assert doc["outcome"]["class"] == "usage"
    assert "no '@' and domain" in doc["outcome"]["error"]
    assert_never_connected(listener)


# -- failures during the session --------------------------------------------------------


def test_connection_refused_is_exit_3() -> None:
    port = free_port()
    result = run_cli("--server", f"127.0.0.1:{port}", "--to", "b@example.org")
    assert result.returncode == 3
    assert one_error_line(result.stderr, "error: connect: ") == f"error: connect: 127.0.0.1 port {port}: Connection refused"
    assert result.stdout.splitlines()[-1].startswith("=== FAILED (exit 3, connect): ")


def test_missing_unix_socket_is_exit_3(tmp_path: Path) -> None:
    result = run_cli("--socket", str(tmp_path / "none.sock"), "--to", "b@example.org")
    assert result.returncode == 3
    one_error_line(result.stderr, "error: connect: ")


def test_greeting_refused_is_exit_3(scripted: Any) -> None:
    server = scripted([Send(b"554 5.7.1 no service for you\r\n"), ReadUntilClosed()])
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org")
    assert result.returncode == 3
    assert "554" in one_error_line(result.stderr, "error: connect: ")


def test_server_closing_mid_session_is_exit_1(scripted: Any) -> None:
    server = scripted([Send(b"220 scripted ESMTP\r\n"), Expect(b"EHLO"), Close()])
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org")
    assert result.returncode == 1
    one_error_line(result.stderr, "error: smtp: ")
    assert "S: <connection closed>" in result.stdout


@pytest.mark.parametrize("where, timeout", [("greeting", 1.5), ("mail", 0.5), ("tls handshake", 0.5)])
def test_silent_server_times_out_within_the_timeout(scripted: Any, where: str, timeout: float) -> None:
    script = [*session_prefix(), Expect(b"MAIL"), Hang()] if where == "mail" else [Hang()]
    server = scripted(script)
    tls = ["--tls"] if where == "tls handshake" else []
    started = time.monotonic()
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org", "--timeout", str(timeout), *tls)
    elapsed = time.monotonic() - started
    assert result.returncode == 9
    # Standard error is not a terminal: the error line, and no status line (which a
    # terminal would show after 1 s).
    silence = {"greeting": "no greeting", "mail": "no reply during the mail transaction", "tls handshake": "no TLS handshake or greeting"}[where]
    assert one_error_line(result.stderr, "error: timeout: ") == f"error: timeout: {silence} within {timeout:g} s (--timeout)"
    assert "waiting for the server" not in result.stderr
    assert timeout <= elapsed < timeout + 5  # the timeout plus interpreter start-up (not 30 s)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="relies on Linux dropping SYNs to a full backlog")
def test_no_connection_within_the_timeout_is_exit_9() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the accept queue: further SYNs go unanswered
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        started = time.monotonic()
        result = run_cli("--server", f"127.0.0.1:{port}", "--to", "b@example.org", "--timeout", "0.5")
        elapsed = time.monotonic() - started
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert result.returncode == 9
    assert one_error_line(result.stderr, "error: timeout: ") == f"error: timeout: 127.0.0.1 port {port}: no connection within 0.5 s (--timeout)"
    assert "=== Connected" not in result.stdout
    assert 0.5 <= elapsed < 0.5 + 5  # not the default 30 s


def test_starttls_not_offered_is_exit_4(smtpd: Any) -> None:
    server = smtpd()
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org", "--starttls")
    assert result.returncode == 4
    assert "STARTTLS extension not supported" in one_error_line(result.stderr, "error: tls: ")
    assert "MAIL FROM" not in result.stdout
    assert server.messages == []


def test_implicit_tls_to_a_plaintext_server_is_exit_4(smtpd: Any) -> None:
    server = smtpd()
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org", "--tls")
    assert result.returncode == 4
    one_error_line(result.stderr, "error: tls: ")


def test_untrusted_certificate_is_exit_4_and_cafile_trusts_it(smtpd: Any, certs: Any) -> None:
    server = smtpd(tls="implicit")
    base = ("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org", "--tls")
    untrusted = run_cli(*base)
    assert untrusted.returncode == 4
    assert "CERTIFICATE_VERIFY_FAILED" in one_error_line(untrusted.stderr, "error: tls: ")
    trusted = run_cli(*base, "--cafile", certs.ca_path)
    assert trusted.returncode == 0, trusted.stderr
    assert "=== Server certificate: " in trusted.stdout
    insecure = run_cli(*base, "--insecure-no-verify-tls")
    assert insecure.returncode == 0, insecure.stderr
    assert "=== Server certificate: not verified (--insecure-no-verify-tls)" in insecure.stdout
    assert len(server.messages) == 2


def test_starttls_with_cafile(smtpd: Any, certs: Any) -> None:
    server = smtpd(tls="starttls")
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org", "--cafile", certs.ca_path)
    assert result.returncode == 0, result.stderr
    assert "STARTTLS" in commands(result.stdout)
    assert "=== TLS: TLSv1." in result.stdout


def test_sender_refused_is_exit_6(smtpd: Any) -> None:
    server = smtpd(refuse_senders={"a@example.org": "553 5.7.1 not your address"})
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--from", "a@example.org", "--to", "b@example.org")
    assert result.returncode == 6
    assert one_error_line(result.stderr, "error: sender refused: ") == "error: sender refused: a@example.org: 553 5.7.1 not your address"


def test_all_recipients_refused_is_exit_7(smtpd: Any) -> None:
    server = smtpd(refuse_recipients={"b@example.org": "550 5.1.1 unknown user"})
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--from", "a@example.org", "--to", "b@example.org")
    assert result.returncode == 7
    assert one_error_line(result.stderr, "error: recipients refused: ") == "error: recipients refused: b@example.org: 550 5.1.1 unknown user"
    assert server.messages == []


def test_some_recipients_refused_is_exit_7_and_the_others_get_it(smtpd: Any) -> None:
    server = smtpd(refuse_recipients={"b@example.org": "550 5.1.1 unknown user"})
    result, doc = run_json("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org", "--to", "c@example.org")
    assert result.returncode == 7
    assert doc["outcome"]["refused"] == {"b@example.org": {"code": 550, "message": "5.1.1 unknown user"}}
    assert doc["outcome"]["reply"] == "Message accepted"
    assert [m.rcpt_tos for m in server.messages] == [["c@example.org"]]


def test_data_refused_is_exit_8(smtpd: Any) -> None:
    server = smtpd(data_reply="554 5.6.0 content rejected")
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org")
    assert result.returncode == 8
    assert "554" in one_error_line(result.stderr, "error: data refused: ")


def test_interrupt_is_exit_130(scripted: Any) -> None:
    server = scripted([Hang()])
    process = subprocess.Popen(
        [sys.executable, "-m", "smtp_asyncio", "--server", f"127.0.0.1:{server.port}", "--to", "b@example.org"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "SMTP_PASSWORD"},
    )
    assert process.stdout is not None
    while not process.stdout.readline().startswith("=== Connected"):
        pass
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 130
    assert stderr == "error: interrupted: stopped by Ctrl-C\n"


def test_a_failed_quit_after_delivery_keeps_the_outcome(scripted: Any) -> None:
    server = scripted([
        *session_prefix(),
        Expect(b"MAIL"), Send(b"250 ok\r\n"),
        Expect(b"RCPT"), Send(b"250 ok\r\n"),
        Expect(b"DATA"), Send(b"354 go\r\n"),
        ExpectData(), Send(b"250 2.0.0 queued\r\n"),
        Expect(b"QUIT"), Close(),
    ])
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--to", "b@example.org")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "=== QUIT failed (" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("=== OK: message accepted by ")


def test_lmtp_needs_a_port() -> None:
    result = run_cli("--lmtp", "--server", "127.0.0.1", "--to", "b@example.org")
    assert result.returncode == 2
    one_error_line(result.stderr, "smtp-sansio: error: --lmtp has no standard port")
