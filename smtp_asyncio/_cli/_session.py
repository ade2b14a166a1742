"""One SMTP session, stage by stage, through the public ``SMTP``/``LMTP`` API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from smtp_core import (
    CramMD5,
    Login,
    OAuthBearer,
    Plain,
    SASLMechanism,
    ScramSHA256,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponse,
    SMTPSenderRefused,
    SMTPTimeoutError,
    XOAuth2,
    xtext_encode,
)

from .._smtp import LMTP, SMTP
from ._options import ExitCode, Options
from ._report import Recorder, tls_details

__all__ = ["Failure", "Outcome", "run"]

_MECHANISMS: dict[str, Callable[[str, str], SASLMechanism]] = {
    "PLAIN": Plain,
    "LOGIN": Login,
    "CRAM-MD5": CramMD5,
    "SCRAM-SHA-256": ScramSHA256,
    "XOAUTH2": XOAuth2,
    "OAUTHBEARER": OAuthBearer,
}


T = TypeVar("T")


class Failure(Exception):
    """A failure the command line found itself (not an exception of the library)."""


@dataclass
class Outcome:
    """How the session ended."""

    code: ExitCode = ExitCode.OK
    error: str | None = None
    stopped_after: str | None = None
    refused: dict[str, dict[str, Any]] = field(default_factory=dict)
    reply: str | None = None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _tls_cause(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ssl.SSLError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def classify(exc: BaseException, stage: str) -> ExitCode:
    """The exit status for an exception raised during ``stage``."""
    if isinstance(exc, (SMTPTimeoutError, TimeoutError, asyncio.TimeoutError)):
        return ExitCode.TIMEOUT
    if stage == "tls" or _tls_cause(exc):
        return ExitCode.TLS
    if stage in ("connect", "greeting"):
        return ExitCode.CONNECT
    if stage == "auth":
        return ExitCode.AUTH
    if isinstance(exc, SMTPSenderRefused):
        return ExitCode.SENDER
    if isinstance(exc, (SMTPRecipientsRefused, SMTPRecipientRefused)):
        return ExitCode.RECIPIENTS
    if isinstance(exc, SMTPDataError):
        return ExitCode.DATA
    return ExitCode.FAILED


def describe(exc: BaseException) -> str:
    """One line about ``exc``."""
    if isinstance(exc, SMTPRecipientsRefused):
        return "; ".join(f"{r.recipient}: {r.code} {_one_line(r.message)}" for r in exc.recipients)
    if isinstance(exc, SMTPRecipientRefused):
        return f"{exc.recipient}: {exc.code} {_one_line(exc.message)}"
    if isinstance(exc, SMTPSenderRefused):
        return f"{exc.sender or '<>'}: {exc.code} {_one_line(exc.message)}"
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
        if isinstance(exc, socket.gaierror) or not exc.errno:
            reason: object = exc.strerror or exc
        else:
            reason = os.strerror(exc.errno)
        return _one_line(reason)
    return _one_line(exc) or type(exc).__name__


def _peer(family: int, address: Any) -> str:
    host, port = str(address[0]), int(address[1])
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


async def _open(options: Options, recorder: Recorder) -> socket.socket:
    """The connection (TCP or Unix socket), trying the host's addresses in turn."""
    loop = asyncio.get_running_loop()
    recorder.connecting()
    if options.socket_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, options.socket_path)
        except BaseException:
            sock.close()
            raise
        recorder.connected(options.socket_path)
        return sock
    infos = await loop.getaddrinfo(
        options.host, options.shown_port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    error: OSError | None = None
    for index, (family, kind, proto, _, address) in enumerate(infos):
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            if index + 1 < len(infos):
                recorder.note(f"{_peer(family, address)}: {describe(exc)}; trying the next address")
            continue
        except BaseException:
            sock.close()
            raise
        recorder.connected(_peer(family, address))
        return sock
    assert error is not None  # getaddrinfo gives at least one address or raises
    raise error


async def _within(seconds: float, operation: Awaitable[T]) -> T:
    """``operation`` with a time limit (``TimeoutError`` past it)."""
    if sys.version_info >= (3, 11):
        # Not asyncio.wait_for: before 3.12 it can swallow a cancellation (Ctrl-C)
        # that arrives as the operation completes.
        async with asyncio.timeout(seconds):
            return await operation
    return await asyncio.wait_for(operation, seconds)  # pragma: no cover - Python 3.10


def _tls_report(smtp: SMTP, recorder: Recorder) -> None:
    info = smtp.get_transport_info
    ssl_object = info("ssl_object") or info("sslobject")
    recorder.tls_started(tls_details(ssl_object, info("peercert"), info("cipher")))


async def _hello(smtp: SMTP) -> None:
    try:
        await smtp.ehlo()
    except SMTPHeloError as exc:
        if smtp.protocol_connection is None or exc.code not in (500, 502) or isinstance(smtp, LMTP):
            raise
        await smtp.helo()


class Session:
    """Runs the stages; ``stage`` names the one in progress (for the exit status)."""

    def __init__(self, options: Options, recorder: Recorder) -> None:
        self.options = options
        self.recorder = recorder
        self.stage = "connect"
        self.smtp: SMTP | None = None

    async def run(self) -> Outcome:
        options, recorder = self.options, self.recorder
        sock = await _within(options.timeout, _open(options, recorder))
        if options.quit_after == "connect":
            sock.close()
            return Outcome(stopped_after="connect")
        implicit = options.tls == "implicit"
        client = LMTP if options.lmtp else SMTP
        self.smtp = smtp = client(
            hostname=options.host,
            sock=sock,
            use_tls=implicit,
            start_tls=False,
            timeout=options.timeout,
            local_hostname=options.ehlo,
            tls_context=options.tls_context,
        )
        self.stage = "greeting"
        recorder.expect("greeting")
        await smtp.connect()
        if implicit:
            _tls_report(smtp, recorder)
        if options.quit_after == "greeting" or (options.quit_after == "tls" and implicit):
            return await self._stop()
        self.stage = "ehlo"
        await _hello(smtp)
        if options.quit_after == "ehlo":
            return await self._stop()
        if options.tls == "required" or (
            options.tls == "opportunistic" and smtp.supports_extension("starttls")
        ):
            self.stage = "tls"
            await smtp.starttls()
            _tls_report(smtp, recorder)
            self.stage = "ehlo"
            await _hello(smtp)
        if options.quit_after == "tls":
            return await self._stop()
        if options.user is not None:
            self.stage = "auth"
            await self._authenticate(smtp)
        if options.quit_after == "auth":
            return await self._stop()
        if options.quit_after in ("mail", "rcpt"):
            return await self._envelope_only(smtp)
        self.stage = "send"
        mail_options = []
        if not options.message.isascii() and smtp.supports_extension("8bitmime"):
            mail_options.append("BODY=8BITMIME")  # raw --data with 8-bit content
        refused, text = await smtp.sendmail(
            options.sender,
            list(options.recipients),
            options.message,
            mail_options=mail_options,
            dsn=options.dsn,
        )
        outcome = Outcome(reply=_one_line(text), refused=_refusals(refused))
        if refused:
            outcome.code = ExitCode.RECIPIENTS
            outcome.error = _refusal_text(refused)
        await self._quit()
        return outcome

    async def _stop(self) -> Outcome:
        assert self.smtp is not None
        stopped = self.options.quit_after
        await self._quit()
        return Outcome(stopped_after=stopped)

    async def _quit(self) -> None:
        """QUIT; by now the outcome is known, so a failure here is only noted."""
        assert self.smtp is not None
        self.stage = "quit"
        try:
            await self.smtp.quit()
        except (SMTPException, OSError) as exc:
            self.recorder.note(f"QUIT failed ({describe(exc)}); the outcome above stands")

    async def _authenticate(self, smtp: SMTP) -> None:
        options = self.options
        assert options.user is not None and options.secret is not None
        if options.mechanism is None:
            await smtp.login(options.user, options.secret)
            return
        offered = [name.upper() for name in smtp.server_auth_methods]
        if options.mechanism not in offered:
            what = f"offers {' '.join(offered)}" if offered else "offers no AUTH"
            conn = smtp.protocol_connection
            if not offered and conn is not None and not conn.tls_active:
                what += " (some servers offer it only after STARTTLS)"
            raise Failure(f"the server {what}, not {options.mechanism}")
        mechanism = _MECHANISMS[options.mechanism](options.user, options.secret)
        await smtp.auth(mechanism)

    async def _envelope_only(self, smtp: SMTP) -> Outcome:
        """MAIL (and RCPT) one command at a time, then QUIT: nothing is delivered."""
        options = self.options
        mail_options: list[str] = []
        rcpt_options: list[str] = []
        dsn = options.dsn
        if dsn is not None:
            if dsn.ret is not None:
                mail_options.append(f"RET={dsn.ret.upper()}")
            if dsn.envid is not None:
                mail_options.append(f"ENVID={xtext_encode(dsn.envid)}")
            if dsn.notify is not None:
                rcpt_options.append("NOTIFY=" + ",".join(str(n).upper() for n in dsn.notify))
        encoding = "ascii"
        if not all(address.isascii() for address in (options.sender, *options.recipients)):
            encoding = "utf-8"
            mail_options.append("SMTPUTF8")  # sendmail() adds it by itself
        self.stage = "mail"
        await smtp.mail(options.sender, options=mail_options, encoding=encoding)
        outcome = Outcome(stopped_after=options.quit_after)
        if options.quit_after == "rcpt":
            self.stage = "rcpt"
            refused: dict[str, SMTPResponse] = {}
            for recipient in options.recipients:
                try:
                    await smtp.rcpt(recipient, options=rcpt_options, encoding=encoding)
                except SMTPRecipientRefused as exc:
                    refused[recipient] = SMTPResponse(exc.code, exc.message)
            if refused:
                outcome.refused = _refusals(refused)
                outcome.code = ExitCode.RECIPIENTS
                outcome.error = _refusal_text(refused)
        await self._quit()
        return outcome

    async def close(self) -> None:
        """Leave politely if the connection is still usable, else just close it."""
        smtp = self.smtp
        if smtp is None or not smtp.is_connected:
            if smtp is not None:
                smtp.close()
            return
        with contextlib.suppress(SMTPException, OSError, TimeoutError, asyncio.TimeoutError):
            await _within(min(self.options.timeout, 2.0), smtp.quit())
        smtp.close()


def _refusal_text(refused: dict[str, SMTPResponse]) -> str:
    return "; ".join(f"{rcpt}: {r.code} {_one_line(r.message)}" for rcpt, r in refused.items())


def _refusals(refused: dict[str, SMTPResponse]) -> dict[str, dict[str, Any]]:
    return {rcpt: {"code": reply.code, "message": reply.message} for rcpt, reply in refused.items()}


def _silence(stage: str, options: Options) -> str:
    """What did not come in time, during ``stage``."""
    if stage == "connect":
        return "no connection"
    if stage == "greeting":
        return "no TLS handshake or greeting" if options.tls == "implicit" else "no greeting"
    if stage == "tls":
        return "no reply to STARTTLS or no TLS handshake"
    if stage == "send":
        return "no reply during the mail transaction"
    return f"no reply to {stage.upper()}"


async def run(options: Options, recorder: Recorder) -> Outcome:
    """Run the session; every failure becomes an :class:`Outcome` with its exit status."""
    session = Session(options, recorder)
    try:
        return await session.run()
    except (SMTPException, OSError, Failure, asyncio.TimeoutError, ValueError) as exc:
        code = classify(exc, session.stage)
        refused: dict[str, dict[str, Any]] = {}
        if isinstance(exc, SMTPRecipientsRefused):
            refused = {r.recipient: {"code": r.code, "message": r.message} for r in exc.recipients}
        if code is ExitCode.TIMEOUT:
            error = f"{_silence(session.stage, options)} within {options.timeout:g} s (--timeout)"
        else:
            error = describe(exc)
        if session.stage == "connect" and not isinstance(exc, SMTPException):
            error = f"{options.socket_path or f'{options.host} port {options.shown_port}'}: {error}"
        return Outcome(code=code, error=error, refused=refused)
    finally:
        recorder.discard_pending()
        await session.close()
