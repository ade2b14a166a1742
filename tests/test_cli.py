"""The smtp-sansio command line, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtp_asyncio", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        input=stdin.decode() if stdin else None,
        cwd=ROOT,
    )


def test_embedded_demo_server() -> None:
    result = run_cli("--to", "you@example.org", "--subject", "demo run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "=== Started an embedded SMTP server on 127.0.0.1" in out
    assert "C: EHLO " in out
    assert "S: 250-" in out
    assert "C: RCPT TO:<you@example.org>" in out
    assert "C: QUIT" in out
    assert "=== The embedded server received:" in out
    assert "    | Subject: demo run" in out


def test_server_with_auth_redacts_credentials(smtpd: Any) -> None:
    server = smtpd(auth={"alice": "hunter2-secret"})
    result = run_cli(
        "--server",
        f"127.0.0.1:{server.port}",
        "--from",
        "a@example.org",
        "--to",
        "b@example.org",
        "--to",
        "c@example.org",
        "--user",
        "alice",
        "--header",
        "X-Test: yes",
        env={"SMTP_PASSWORD": "hunter2-secret"},
    )
    assert result.returncode == 0, result.stderr
    assert "C: AUTH SCRAM-SHA-256 <redacted>" in result.stdout
    assert "C: <redacted>" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr
    [got] = server.messages
    assert got.rcpt_tos == ["b@example.org", "c@example.org"]
    assert b"X-Test: yes" in got.content
    assert got.authenticated_as == b"alice"


def test_raw_data_from_stdin_and_quiet(smtpd: Any) -> None:
    server = smtpd()
    raw = b"Subject: raw\r\n\r\n.dot line\r\n"
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--from", "a@example.org", "--to", "b@example.org", "--data", "-", "--quiet", stdin=raw)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert server.messages[0].content == raw


def test_failure_exits_non_zero_with_one_line_reason(smtpd: Any) -> None:
    server = smtpd(refuse_recipients={"b@example.org": "550 5.1.1 unknown user"})
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--from", "a@example.org", "--to", "b@example.org")
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: SMTPRecipientsRefused")
    assert "550 5.1.1 unknown user" in result.stderr


def test_connection_refused() -> None:
    from .servers import free_port

    result = run_cli("--server", f"127.0.0.1:{free_port()}", "--to", "b@example.org")
    assert result.returncode == 1
    assert result.stderr.startswith("error: SMTPConnectError")


def test_bad_address_is_refused_before_sending(smtpd: Any) -> None:
    server = smtpd()
    result = run_cli("--server", f"127.0.0.1:{server.port}", "--from", "a@example.org", "--to", "Bob <b@example.org>")
    assert result.returncode == 1
    assert "error:" in result.stderr
    assert server.messages == []
