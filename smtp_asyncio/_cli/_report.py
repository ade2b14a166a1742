"""What the command line shows: the live C:/S: trace, stages and timings, JSON, a status line.

The trace comes from the ``smtp_sansio.protocol`` logger (``C: ...`` and ``S: ...``
DEBUG records, credentials already redacted). Each reply is matched to the oldest
command still waiting for one, which is how SMTP (and PIPELINING) orders them.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import logging
import os
import ssl
import time
from typing import Any, TextIO

__all__ = ["TRACE_LOGGER", "Recorder", "StatusLine", "discard_output", "tls_details"]

TRACE_LOGGER = "smtp_sansio.protocol"
STATUS_AFTER = 1.0
"""Seconds without a reply before the status line appears."""


def discard_output(stream: TextIO) -> None:
    """After a broken pipe: send what is still buffered for ``stream`` to /dev/null.

    Without this, Python reports the broken pipe again when it flushes at exit.
    """
    try:
        fileno = stream.fileno()
    except (OSError, ValueError):  # not a real file (a StringIO in a test)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _is_command(line: str) -> bool:
    """Whether a traced client line is a command that gets a reply.

    ``<redacted>`` (an AUTH continuation) does; other ``<...>`` lines stand for message
    content (``<352 bytes of message content>``), which gets none.
    """
    return line == "<redacted>" or not line.startswith("<")


def _stage_of(command: str) -> str:
    verb = command.split(" ", 1)[0].upper()
    if command in ("<redacted>", "*"):
        return "auth"  # an AUTH continuation line or its cancellation
    if command == ".":
        return "message"
    names = {"MAIL": "mail", "RCPT": "rcpt", "BDAT": "message", "STARTTLS": "starttls"}
    return names.get(verb, verb.lower())


class StatusLine:
    """``waiting for the server... N s`` on a terminal, rewritten in place and cleared."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = ""

    def show(self, text: str) -> None:
        if text != self.shown:
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()
            self.shown = text

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = ""

    async def run(self, recorder: Recorder) -> None:
        """Until cancelled: show how long the server has been silent, once that passes 1 s."""
        while True:
            await asyncio.sleep(0.2)
            since = recorder.waiting_since()
            if since is not None and time.perf_counter() - since >= STATUS_AFTER:
                self.show(f"waiting for the server... {int(time.perf_counter() - since)} s")


class Recorder(logging.Handler):
    """Collects the conversation; prints it as it happens unless quiet or JSON."""

    def __init__(self, out: TextIO, *, live: bool, status: StatusLine | None) -> None:
        super().__init__(logging.DEBUG)
        self.out = out
        self.live = live
        self.status = status
        self.start = time.perf_counter()
        self.last_event = self.start
        self.connecting_since: float | None = None
        self.stages: list[dict[str, Any]] = []
        self.transcript: list[dict[str, Any]] = []
        self.tls: dict[str, Any] | None = None
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._reply: dict[str, Any] | None = None

    # -- the trace ----------

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._line(record.getMessage())
        except Exception:  # pragma: no cover - logging must not break the session
            self.handleError(record)

    def _line(self, line: str) -> None:
        now = time.perf_counter()
        entry: dict[str, Any] = {"t_ms": _ms(now - self.start), "line": line}
        self.transcript.append(entry)
        suffix = ""
        if line.startswith("C: "):
            command = line[3:]
            if _is_command(command):
                stage = {"stage": _stage_of(command), "command": command}
                self.stages.append(stage)
                self._pending.append(stage)
            self.last_event = now
        elif line.startswith("S: ") and line != "S: <connection closed>":
            text = line[3:]
            code, last = text[:3], text[3:4] != "-"
            if self._reply is None:
                elapsed = now - self.last_event
                if self._pending:
                    self._reply = self._pending.popleft()
                else:  # a reply no command asked for, or LMTP's further replies
                    self._reply = {"stage": self.stages[-1]["stage"] if self.stages else "reply"}
                    self.stages.append(self._reply)
                self._reply["ms"] = _ms(elapsed)
                self._reply["reply"] = {"code": int(code) if code.isdigit() else None, "lines": []}
                suffix = f"  [+{elapsed * 1000:.1f} ms]"
            self._reply["reply"]["lines"].append(text[4:])
            if last:
                self._reply = None
                self.last_event = now
        self._print(line + suffix)

    def waiting_since(self) -> float | None:
        """When the client began waiting for the server (None: not waiting)."""
        if self.connecting_since is not None:
            return self.connecting_since
        if self._pending or self._reply is not None:
            return self.last_event
        return None

    def expect(self, stage: str) -> None:
        """A reply is due that no command asked for (the greeting)."""
        entry = {"stage": stage}
        self.stages.append(entry)
        self._pending.append(entry)
        self.last_event = time.perf_counter()

    def discard_pending(self) -> None:
        """The session ended: no more replies will come."""
        self._pending.clear()
        self._reply = None
        self.connecting_since = None

    # -- notes and stages ----------

    def _print(self, text: str) -> None:
        if self.status is not None:
            self.status.clear()
        if self.live:
            try:
                self.out.write(text + "\n")
                self.out.flush()
            except BrokenPipeError:  # the reader went away (| head): carry on silently
                self.live = False
                discard_output(self.out)

    def note(self, text: str) -> None:
        """An ``=== ...`` line (kept in the transcript as well)."""
        self.transcript.append({"t_ms": _ms(time.perf_counter() - self.start), "note": text})
        self._print(f"=== {text}")

    def connecting(self) -> None:
        self.connecting_since = time.perf_counter()

    def connected(self, peer: str) -> None:
        now = time.perf_counter()
        since = self.connecting_since if self.connecting_since is not None else now
        self.connecting_since = None
        self.last_event = now
        self.stages.append({"stage": "connect", "ms": _ms(now - since), "peer": peer})
        self.note(f"Connected to {peer} in {(now - since) * 1000:.1f} ms")

    def tls_started(self, details: dict[str, Any]) -> None:
        self.tls = details
        for stage in reversed(self.stages):
            if stage["stage"] in ("starttls", "greeting"):
                stage["tls"] = details
                break
        self.note(
            f"TLS: {details.get('version')}, {details.get('cipher')} ({details.get('bits')} bits)"
        )
        cert = details.get("peer_certificate")
        if cert is None:
            self.note("Server certificate: not verified (--insecure-no-verify-tls)")
        else:
            self.note(
                f"Server certificate: {cert['subject']}; issuer {cert['issuer']}; "
                f"expires {cert['not_after']} ({cert['expires_in']})"
            )

    def elapsed_ms(self) -> float:
        return _ms(time.perf_counter() - self.start)

    def document(self, **parts: Any) -> str:
        """The ``--json`` document."""
        doc = {
            **parts,
            "stages": self.stages,
            "tls": self.tls,
            "transcript": self.transcript,
        }
        return json.dumps(doc, indent=2, ensure_ascii=False)


_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
}


def _name(rdns: Any) -> str:
    return ", ".join(f"{_SHORT_NAMES.get(key, key)}={value}" for rdn in rdns for key, value in rdn)


def _expires_in(seconds: float) -> str:
    if seconds < 0:
        return "EXPIRED"
    if seconds < 2 * 86400:
        return f"in {seconds / 3600:.0f} h"
    return f"in {seconds / 86400:.0f} days"


def tls_details(ssl_object: Any, peercert: Any, cipher: Any) -> dict[str, Any]:
    """Protocol, cipher and the verified peer certificate, from the transport's extra info."""
    details: dict[str, Any] = {
        "version": ssl_object.version() if isinstance(ssl_object, ssl.SSLObject) else None,
        "cipher": cipher[0] if cipher else None,
        "bits": cipher[2] if cipher else None,
        "peer_certificate": None,
    }
    if details["version"] is None and cipher:
        details["version"] = cipher[1]
    if peercert:
        not_after = peercert.get("notAfter")
        when = None
        if not_after:
            when = ssl.cert_time_to_seconds(not_after)
        details["peer_certificate"] = {
            "subject": _name(peercert.get("subject", ())) or "(none)",
            "issuer": _name(peercert.get("issuer", ())) or "(none)",
            "subject_alt_names": [
                f"{kind}:{value}" for kind, value in peercert.get("subjectAltName", ())
            ],
            "not_after": (
                datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime(
                    "%Y-%m-%d %H:%M:%S UTC"
                )
                if when is not None
                else None
            ),
            "expires_in": _expires_in(when - time.time()) if when is not None else "unknown",
        }
    return details
