"""Running the smtp-sansio command line as a real subprocess, for the CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = 20,
) -> subprocess.CompletedProcess[str]:
    """``python -m smtp_asyncio ARGS``; standard input is not a terminal, no $SMTP_PASSWORD."""
    environ = {k: v for k, v in os.environ.items() if k != "SMTP_PASSWORD"}
    return subprocess.run(
        [sys.executable, "-m", "smtp_asyncio", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**environ, **(env or {})},
        input=stdin.decode() if stdin is not None else None,
        stdin=subprocess.DEVNULL if stdin is None else None,
        cwd=ROOT,
    )


def run_json(*args: str, **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run with ``--json``; stdout must be exactly one JSON document."""
    result = run_cli(*args, "--json", **kwargs)
    return result, json.loads(result.stdout)


def commands(out: str) -> list[str]:
    """The C: lines of a transcript, without the prefix."""
    return [line[3:] for line in out.splitlines() if line.startswith("C: ")]


def stage_names(doc: dict[str, Any]) -> list[str]:
    return [stage["stage"] for stage in doc["stages"]]
