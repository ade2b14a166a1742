"""examples/blocking_client.py: smtp_core driven by a plain blocking socket."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import Certs

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "blocking_client.py"


def test_blocking_example_sends_with_starttls_and_auth(smtpd: Any, certs: Certs) -> None:
    server = smtpd(tls="starttls-required", auth={"alice": "pw"}, auth_require_tls=True)
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "localhost",
            str(server.port),
            "--cafile",
            certs.ca_path,
            "--user",
            "alice",
            "--from",
            "a@example.org",
            "--to",
            "b@example.org",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SMTP_PASSWORD": "pw"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sent"
    [got] = server.messages
    assert got.authenticated_as == b"alice"
    assert got.rcpt_tos == ["b@example.org"]


def test_blocking_example_refuses_plaintext(smtpd: Any, certs: Certs) -> None:
    server = smtpd(tls="none")
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "127.0.0.1", str(server.port), "--from", "a@example.org", "--to", "b@example.org"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "refusing plaintext" in result.stderr
    assert server.messages == []
