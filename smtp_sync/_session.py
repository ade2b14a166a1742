"""The client's session: connecting, the plain commands, STARTTLS and QUIT, with
smtplib's names and return values, on smtp_core's flows."""

from __future__ import annotations

import contextlib
import email.message
import logging
import socket
import ssl
import sys
import time
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

import smtp_core
from smtp_core import (
    ClientConnection,
    Ehlo,
    Expn,
    Helo,
    Help,
    Lhlo,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Reply,
    Rset,
    State,
    Vrfy,
    parse_command,
)
from smtp_core._client import Timeouts
from smtp_core._client_commands import check_query_address
from smtp_core._commands import AuthResponse
from smtp_core.flows import (
    command,
    data_flow,
    read_reply,
    send,
    starttls,
    trace_logger,
)

from ._driver import Channel, open_socket
from ._exceptions import (
    SMTPConnectError,
    SMTPDataError,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
    as_bytes,
)
from ._turns import Turns, call_deadline

__all__ = ["Session", "SMTP_PORT", "SMTP_SSL_PORT", "LMTP_PORT", "Timeouts"]


SMTP_PORT = 25
SMTP_SSL_PORT = 465
LMTP_PORT = 2003
DEFAULT_TIMEOUT = 60.0
"""Seconds per socket operation when neither ``timeout`` nor the global default sets one."""

_GLOBAL_DEFAULT_TIMEOUT: Any = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
_CLEAN = frozenset({State.HELLO, State.READY, State.MAIL, State.RCPT, State.BDAT})

T = TypeVar("T")
_SelfT = TypeVar("_SelfT", bound="Session")
Refused = dict[str, tuple[int, bytes]]
Message = email.message.Message


def _reply(reply: Reply) -> tuple[int, bytes]:
    return reply.code, as_bytes(reply.message)


def _default_local_hostname() -> str:
    """smtplib's choice: the FQDN if it has a dot, else an address literal."""
    fqdn = socket.getfqdn()
    if "." in fqdn:
        name = fqdn
    else:
        addr = "127.0.0.1"
        with contextlib.suppress(OSError):
            addr = socket.gethostbyname(socket.gethostname())
        name = f"[{addr}]"
    try:
        Ehlo(name)
    except ValueError:
        return "[127.0.0.1]"
    return name


class _DebugHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``set_debuglevel`` attaches when nothing else shows the trace."""


def _set_trace(level: int) -> None:
    for handler in list(trace_logger.handlers):
        if isinstance(handler, _DebugHandler):
            trace_logger.removeHandler(handler)
    if level <= 0:
        trace_logger.setLevel(logging.NOTSET)
        return
    trace_logger.setLevel(logging.DEBUG)
    if not logging.getLogger().handlers:
        handler = _DebugHandler(sys.stderr)
        fmt = "%(asctime)s %(message)s" if level > 1 else "%(message)s"
        handler.setFormatter(logging.Formatter(fmt))
        trace_logger.addHandler(handler)


def _raw_auth_response(line: str) -> AuthResponse:
    import base64
    import binascii

    try:
        return AuthResponse(base64.b64decode(line, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError(f"AUTH response {line!r} is not base64") from None


def _context(
    context: ssl.SSLContext | None, keyfile: str | None, certfile: str | None
) -> ssl.SSLContext | None:
    if context is not None and (keyfile is not None or certfile is not None):
        raise ValueError("context and keyfile/certfile arguments are mutually exclusive")
    if keyfile is not None or certfile is not None:
        warnings.warn(
            "keyfile and certfile are deprecated, use a custom context instead",
            DeprecationWarning,
            3,
        )
        context = ssl.create_default_context()
        context.load_cert_chain(cast(str, certfile), keyfile)
    return context


class Session(Turns):
    """smtplib's session methods: connecting, commands, STARTTLS, QUIT."""

    debuglevel = 0
    file = None
    helo_resp: bytes | None = None
    ehlo_msg = "ehlo"
    ehlo_resp: bytes | None = None
    does_esmtp = False
    default_port = SMTP_PORT
    _lmtp = False

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None = _GLOBAL_DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        *,
        context: ssl.SSLContext | None = None,
        timeouts: Timeouts | None = None,
        pipeline_window: int = 16,
    ) -> None:
        self._host = host
        if timeout is _GLOBAL_DEFAULT_TIMEOUT:
            timeout = socket.getdefaulttimeout()
            if timeout is None:
                timeout = DEFAULT_TIMEOUT
        if timeout is not None and timeout <= 0:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        self.timeout: float | None = timeout
        self.timeouts = timeouts or Timeouts()
        self.context = context
        self.pipeline_window = pipeline_window
        self.esmtp_features: dict[str, str] = {}
        self.command_encoding = "ascii"
        self.source_address = source_address
        self._auth_challenge_count = 0
        self._channel: Channel | None = None
        self._init_turns()
        self.user: str | None = None
        self.password: str | None = None
        if local_hostname is not None:
            Ehlo(local_hostname)  # validates: no CR, LF or spaces
            self.local_hostname = local_hostname
        else:
            self.local_hostname = _default_local_hostname()
        if host:
            code, msg = self.connect(host, port)
            if code != 220:
                self.close()
                raise SMTPConnectError(code, msg)

    # -- context manager ----------

    def __enter__(self: _SelfT) -> _SelfT:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._channel is not None:
                code, message = self.docmd("QUIT")
                if code != 221:
                    raise SMTPResponseException(code, message)
        except SMTPServerDisconnected:
            pass
        finally:
            self.close()

    # -- state ----------

    @property
    def sock(self) -> socket.socket | None:
        """The socket (an ``ssl.SSLSocket`` once TLS is active), None when closed.

        A plain TCP or Unix socket is blocking, with no socket timeout, while the
        client holds it (where ``select.poll`` exists): the kernel bounds each send and
        receive (``SO_SNDTIMEO``, ``SO_RCVTIMEO``) by ``timeout`` and the
        :class:`Timeouts`. A TLS socket has ``timeout`` as its socket timeout."""
        channel = self._channel
        return None if channel is None or channel.closed else channel.sock

    @property
    def protocol_connection(self) -> ClientConnection | None:
        """The underlying :class:`smtp_core.ClientConnection` (None when closed)."""
        channel = self._channel
        return None if channel is None else channel.conn

    def set_debuglevel(self, debuglevel: int) -> None:
        """Show the protocol trace: the ``smtp_sansio.protocol`` logger at DEBUG level.

        With no logging handler configured, a stderr handler is attached (``2`` adds
        timestamps); ``0`` removes it. Credentials are redacted in the trace.
        """
        self.debuglevel = debuglevel
        _set_trace(debuglevel)

    def _require(self) -> Channel:
        channel = self._channel
        if channel is None or channel.closed:
            self._channel = None
            raise SMTPServerDisconnected("please run connect() first")
        return channel

    def _run(self, flow: Any, deadline: float | None = None) -> Any:
        """Drive ``flow`` on the connection; a session left out of step is closed."""
        if deadline is None:
            deadline = call_deadline.get()
        channel = self._require()
        conn = channel.conn
        try:
            result = channel.run(flow, deadline)
        except (SMTPServerDisconnected, smtp_core.SMTPResponseException) as exc:
            if getattr(exc, "code", 0) == -1 or conn.state is State.ERROR or not self._clean(conn):
                self.close()
            raise
        except BaseException:
            if not self._clean(conn):
                self.close()
            raise
        if conn.state is State.CLOSED:  # a 421: the server is going away
            self.close()
        return result

    def _clean(self, conn: ClientConnection) -> bool:
        return not conn.awaiting_replies and conn.state in _CLEAN

    def _begin(self) -> Channel:
        """Start a public operation: refuse bytes the server sent while we were idle."""
        channel = self._require()
        try:
            channel.check_idle()
        except BaseException:
            self._channel = None
            raise
        return channel

    # -- connecting ----------

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        return open_socket(host, port, timeout, self.source_address)

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: tuple[str, int] | None = None
    ) -> tuple[int, bytes]:
        """Connect to ``host`` on ``port`` (``"host:port"`` works too) and read the greeting.

        Returns the greeting as ``(code, message)``, as smtplib does.
        """
        with self._turn():
            if source_address:
                self.source_address = source_address
            if not port and host.find(":") == host.rfind(":"):
                i = host.rfind(":")
                if i >= 0:
                    host, port_text = host[:i], host[i + 1 :]
                    try:
                        port = int(port_text)
                    except ValueError:
                        raise OSError("nonnumeric port") from None
            if not port:
                port = self.default_port
            if self._channel is not None:
                self.close()
            self._host = host
            self._forget_server()
            sys.audit("smtplib.connect", self, host, port)
            limits = self.timeouts
            connect_timeout = limits.connect if limits.connect is not None else self.timeout
            deadline = call_deadline.get()  # the call this connect is part of (a pool's)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SMTPTimeoutError(f"Timed out connecting to {host} on port {port}")
                connect_timeout = left if connect_timeout is None else min(connect_timeout, left)
            try:
                sock = self._get_socket(host, port, connect_timeout)
            except TimeoutError as exc:
                raise SMTPTimeoutError(f"Timed out connecting to {host} on port {port}") from exc
            conn = ClientConnection(local_hostname=self.local_hostname, lmtp=self._lmtp)
            if isinstance(sock, ssl.SSLSocket):
                conn.mark_tls()
            channel = Channel(
                sock, conn, timeout=self.timeout, command=limits.command, data=limits.data
            )
            channel.tls_context = self.context
            self._channel = channel
            greeting_deadline = deadline
            if limits.greeting is not None:
                greeting_deadline = time.monotonic() + limits.greeting
                if deadline is not None:
                    greeting_deadline = min(greeting_deadline, deadline)
            try:
                reply = self._run(read_reply(conn), greeting_deadline)
            except SMTPTimeoutError as exc:
                raise SMTPTimeoutError("Timed out waiting for server ready message") from exc
            trace_logger.debug("connect: %s:%s", host, port)
            return _reply(reply)

    def _forget_server(self) -> None:
        self.helo_resp = None
        self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False

    def close(self) -> None:
        """Close the connection at once (no QUIT)."""
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    # -- commands ----------

    def _command(self, cmd: Any) -> tuple[int, bytes]:
        with self._turn():
            channel = self._begin()
            return _reply(self._run(command(channel.conn, cmd)))

    def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
        """Send one command line and return its reply ``(code, message)``.

        The line is validated as the typed commands are (no CR, LF or NUL; addresses
        by RFC 5321 syntax); ``ValueError`` before anything is sent otherwise.
        """
        line = cmd if args == "" else f"{cmd} {args}"
        if "\r" in line or "\n" in line:
            shown = line.replace("\n", "\\n").replace("\r", "\\r")
            raise ValueError(
                f"command and arguments contain prohibited newline characters: {shown}"
            )
        with self._turn():
            channel = self._begin()
            if channel.conn.state is State.AUTH_CHALLENGE:
                # An AUTH exchange run by hand: the line answers the challenge.
                item: Any = (
                    AuthResponse(cancel=True)
                    if line.strip() == "*"
                    else _raw_auth_response(line.strip())
                )
            else:
                item = parse_command(line)
            reply = self._run(command(channel.conn, item))
            if isinstance(item, Quit):
                self.close()
            return _reply(reply)

    def send(self, s: str | bytes) -> None:
        """Not supported: raw bytes would bypass the protocol machine, which checks and
        encodes everything sent (use :meth:`putcmd`, :meth:`data` or :meth:`sendmail`)."""
        raise SMTPNotSupportedError(
            "send() of raw bytes is not supported: use putcmd(), data() or sendmail()"
        )

    def putcmd(self, cmd: str, args: str = "") -> None:
        """Send one command line without reading its reply (read it with :meth:`getreply`)."""
        line = cmd if args == "" else f"{cmd} {args}"
        if "\r" in line or "\n" in line:
            raise ValueError("command and arguments contain prohibited newline characters")
        with self._turn():
            channel = self._begin()
            item = parse_command(line)
            self._run(send(channel.conn, item))

    def getreply(self) -> tuple[int, bytes]:
        """Read the next reply ``(code, message)``."""
        with self._turn():
            return _reply(self._run(read_reply(self._require().conn)))

    def helo(self, name: str = "") -> tuple[int, bytes]:
        """HELO; returns the reply (and keeps its text in ``helo_resp``)."""
        with self._turn():
            code, msg = self._command(Helo(name or self.local_hostname))
            self.helo_resp = msg
            return code, msg

    def ehlo(self, name: str = "") -> tuple[int, bytes]:
        """EHLO (LHLO for LMTP); on 250 fills ``esmtp_features`` and ``does_esmtp``."""
        with self._turn():
            self.esmtp_features = {}
            hello = Lhlo if self._lmtp else Ehlo
            code, msg = self._command(hello(name or self.local_hostname))
            self.ehlo_resp = msg
            if code != 250:
                return code, msg
            self.does_esmtp = True
            conn = self._require().conn
            self.esmtp_features = conn.capabilities.as_esmtp_extensions()
            return code, msg

    def has_extn(self, opt: str) -> bool:
        """Whether the server advertised the extension ``opt`` (case-insensitive)."""
        return opt.lower() in self.esmtp_features

    def ehlo_or_helo_if_needed(self) -> None:
        """EHLO, or HELO if EHLO is refused, unless one was already done.

        Raises ``SMTPHeloError`` if the server refuses both.
        """
        if self.helo_resp is not None or self.ehlo_resp is not None:
            return
        with self._turn():
            if self.helo_resp is None and self.ehlo_resp is None:
                code, resp = self.ehlo()
                if 200 <= code <= 299:
                    return
                if self._lmtp or self._channel is None:  # LMTP has no HELO; a 421 closed
                    raise SMTPHeloError(code, resp)
                code, resp = self.helo()
                if not 200 <= code <= 299:
                    raise SMTPHeloError(code, resp)

    def help(self, args: str = "") -> bytes:
        """HELP; returns the help text."""
        return self._command(Help(args or None))[1]

    def rset(self) -> tuple[int, bytes]:
        """RSET: abandon the current mail transaction."""
        self.command_encoding = "ascii"
        return self._command(Rset())

    def _rset(self) -> None:
        with contextlib.suppress(SMTPServerDisconnected):
            self.rset()

    def noop(self) -> tuple[int, bytes]:
        """NOOP."""
        return self._command(Noop())

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """MAIL FROM; returns the reply. The address is validated, never rewritten."""
        with self._turn():
            if options and self.does_esmtp:
                smtputf8 = any(str(x).lower() == "smtputf8" for x in options)
                if smtputf8 and not self.has_extn("smtputf8"):
                    raise SMTPNotSupportedError("SMTPUTF8 not supported by server")
            else:
                options = ()
            return self._command(Mail(sender, tuple(options), advertised_only=False))

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """RCPT TO; returns the reply."""
        with self._turn():
            opts = tuple(options) if self.does_esmtp else ()
            return self._command(Rcpt(recip, opts, advertised_only=False))

    def data(self, msg: str | bytes) -> tuple[int, bytes]:
        """DATA and the content (dot-stuffed, line endings made CRLF); returns the final reply.

        Raises ``SMTPDataError`` if DATA is not answered 354.
        """
        content = msg.encode("ascii") if isinstance(msg, str) else bytes(msg)
        with self._turn():
            channel = self._begin()
            try:
                return _reply(self._run(data_flow(channel.conn, content)))
            except SMTPDataError as exc:
                if self._channel is not None and channel.conn.content_started:
                    # smtplib returns the reply to the content; only DATA's refusal raises.
                    return exc.smtp_code, as_bytes(exc.smtp_error)
                raise

    def verify(self, address: str) -> tuple[int, bytes]:
        """VRFY; returns the reply. ``ValueError`` for an address that could carry a
        parameter or another command."""
        check_query_address(address)
        return self._command(Vrfy(address))

    vrfy = verify

    def expn(self, address: str) -> tuple[int, bytes]:
        """EXPN; returns the reply."""
        check_query_address(address)
        return self._command(Expn(address))

    # -- TLS ----------

    def starttls(
        self,
        keyfile: str | None = None,
        certfile: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, bytes]:
        """STARTTLS, then the TLS handshake; the server's capabilities are forgotten.

        ``context`` defaults to the client's ``context`` or ``ssl.create_default_context()``
        (certificates and the host name verified). Bytes sent after the server's 220 and
        before the handshake are refused (``SMTPResponseException`` code -1, closed).
        """
        context = _context(context, keyfile, certfile) or self.context
        with self._turn():
            self.ehlo_or_helo_if_needed()
            if not self.has_extn("starttls"):
                raise SMTPNotSupportedError("STARTTLS extension not supported by server.")
            channel = self._begin()
            channel.tls_context = context or ssl.create_default_context()
            reply = self._run(starttls(channel.conn, self._host or None))
            self._forget_server()
            return _reply(reply)

    def quit(self) -> tuple[int, bytes]:
        """QUIT, then close; returns the reply."""
        with self._turn():
            try:
                result = self._command(Quit())
            finally:
                self._forget_server()
                self.close()
            return result
