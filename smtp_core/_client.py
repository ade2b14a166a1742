"""The caller-facing SMTP client API, written once for every adapter.

:class:`SMTPClientBase` implements aiosmtplib's ``SMTP`` class (arguments, checks,
results, exceptions and their messages) on top of the I/O-free flows. An adapter
subclasses it and supplies only I/O: opening a transport, driving a flow with a
deadline, starting TLS, closing, and a lock. No SMTP verb or reply code is needed
in an adapter.
"""

from __future__ import annotations

import abc
import email.message
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar

from ._commands import (
    Ehlo,
    Expn,
    Help,
    Mail,
    Noop,
    Rcpt,
    Rset,
    Vrfy,
    parameter_extensions,
    parse_command,
)
from ._connection import ClientConnection
from ._email import prepare_message
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import CommandReply
from ._exceptions import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectTimeoutError,
    SMTPException,
    SMTPNotSupported,
    SMTPReadTimeoutError,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from ._extensions import DSN, priority_parameter
from ._flows import (
    Envelope,
    Flow,
    NextChunk,
    Progress,
    ProgressCallback,
    Read,
    Stage,
    TransactionResult,
    UpgradeTLS,
    Write,
    authenticate,
    command,
    content_size,
    content_total,
    data_flow,
    greeting,
    hello,
    mail_batch,
    starttls,
)
from ._flows import ehlo as ehlo_flow
from ._flows import helo as helo_flow
from ._flows import lhlo as lhlo_flow
from ._flows import quit as quit_flow
from ._replies import Reply
from ._response import Default, SMTPResponse, SMTPTokenGenerator, _default
from ._sasl import (
    PREFERENCE,
    CramMD5,
    Login,
    OAuthBearer,
    Plain,
    SASLMechanism,
    ScramSHA256,
    XOAuth2,
)
from ._state import State

__all__ = [
    "SMTPClientBase",
    "Transport",
    "ConnectOptions",
    "Timeouts",
    "SMTP_PORT",
    "SMTP_TLS_PORT",
    "SMTP_STARTTLS_PORT",
    "DEFAULT_TIMEOUT",
    "validate_local_hostname",
    "send_with",
    "make_send",
]

SMTP_PORT = 25
SMTP_TLS_PORT = 465
SMTP_STARTTLS_PORT = 587
DEFAULT_TIMEOUT = 60.0

T = TypeVar("T")
Timeout = float | Literal[Default.token] | None
_SelfT = TypeVar("_SelfT", bound="SMTPClientBase")


# States in which, with no command awaiting a reply, the server has nothing to say.
_OWED_NOTHING = frozenset(
    {State.HELLO, State.READY, State.MAIL, State.RCPT, State.BDAT, State.AUTH_CHALLENGE}
)


def _closed_while_idle(conn: ClientConnection) -> None:
    """Bytes came while no reply was due: a 421 means the server ended the session
    (an idle timeout, typically); anything else is refused by the machine."""
    event = conn.next_event()
    if isinstance(event, CommandReply) and event.command is None:
        reply = event.reply
        raise SMTPServerDisconnected(
            f"Server closed the connection while idle: {reply.code} {reply.message}"
        )


def validate_local_hostname(hostname: str) -> str:
    """Strip whitespace around a local host name and refuse control characters inside."""
    hostname = hostname.strip()
    if hostname == "":
        raise ValueError("The local_hostname param must not be empty")
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in hostname):
        raise ValueError(
            "The local_hostname param contains prohibited whitespace or control characters"
        )
    return hostname


class Transport(Protocol):
    """What an adapter's byte stream offers the shared client."""

    async def write(self, data: bytes) -> None:
        """Write all of ``data``; raise ``SMTPServerDisconnected`` if the connection broke."""

    async def read(self) -> bytes:
        """Read some bytes; ``b""`` when the server closed the connection."""

    def take_unread(self) -> bytes:
        """Remove and return bytes received but not yet returned by :meth:`read`."""

    def peek_unsolicited(self) -> bytes:
        """Bytes waiting to be read (left in place), asked only when no reply is due.

        A transport that reads only when asked (so bytes sent while the client was
        idle wait in the socket) shows them here, so that they can be refused instead
        of passing for the next command's reply; one that reads all the time returns
        them from :meth:`take_unread` and ``b""`` here.
        """

    async def start_tls(self, tls_context: Any, server_hostname: str | None) -> None:
        """Replace the stream with a TLS one over it (STARTTLS)."""

    def get_extra_info(self, key: str) -> Any:
        """asyncio-style transport information (peername, sslcontext, ...)."""

    def close(self) -> None:
        """Close at once, without waiting."""

    async def aclose(self) -> None:
        """Close and release everything; must not raise, even when the caller is cancelled."""


@dataclass(frozen=True)
class Timeouts:
    """Time limits per stage, in seconds; None falls back to the client's ``timeout``.

    * ``connect``: opening the connection (and the implicit-TLS handshake);
    * ``greeting``: waiting for the server's greeting;
    * ``command``: each command's reply, from when the command is written;
    * ``data``: message content, from its first byte to the server's final reply;
    * ``total``: a whole ``sendmail``/``send_message`` call, queueing included, however
      many stages it takes.
    """

    connect: float | None = None
    greeting: float | None = None
    command: float | None = None
    data: float | None = None
    total: float | None = None


@dataclass
class ConnectOptions:
    """Everything :meth:`SMTPClientBase.connect` needs to open a transport."""

    hostname: str
    port: int | None
    use_tls: bool
    tls_context: Any
    server_hostname: str | None
    socket_path: Any
    sock: Any
    source_address: tuple[str, int] | None
    timeout: float | None


class SMTPClientBase(abc.ABC):
    """An SMTP client with aiosmtplib's API. Adapters provide the I/O.

    Arguments are aiosmtplib's: connection options given here are defaults that
    :meth:`connect` may override. ``hostname`` and ``port`` may also be given
    positionally, as in aiosmtplib 1.0. ``loop`` is accepted for aiosmtplib 1.0
    programs, ignored, and warns ``DeprecationWarning``.
    """

    #: True for LMTP (RFC 2033): LHLO, and one reply per recipient after the content.
    _lmtp: bool = False

    #: Preferred AUTH methods first (lower case, as aiosmtplib lists them).
    AUTH_METHODS: tuple[str, ...] = tuple(name.lower() for name in PREFERENCE)

    def __init__(
        self,
        hostname: str | None = None,
        port: int | None = None,
        *,
        username: str | bytes | None = None,
        password: str | bytes | None = None,
        oauth_token_generator: SMTPTokenGenerator | None = None,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        use_tls: bool = False,
        start_tls: bool | None = None,
        validate_certs: bool = True,
        client_cert: str | None = None,
        client_key: str | None = None,
        tls_context: Any = None,
        cert_bundle: str | None = None,
        socket_path: Any = None,
        sock: Any = None,
        loop: Any = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        if loop is not None:
            warnings.warn(
                "the loop argument is deprecated and ignored", DeprecationWarning, stacklevel=2
            )
        self.hostname = hostname
        self.port = port
        self._login_username = username
        self._login_password = password
        self._oauth_token_generator = oauth_token_generator
        self.local_hostname = local_hostname
        self.source_address = source_address
        self.timeout = timeout
        self.use_tls = use_tls
        self._start_tls_on_connect = start_tls
        self.validate_certs = validate_certs
        self.client_cert = client_cert
        self.client_key = client_key
        self.tls_context = tls_context
        self.cert_bundle = cert_bundle
        self.socket_path = socket_path
        self.sock = sock

        self.timeouts = timeouts or Timeouts()
        self._transport: Transport | None = None
        self._conn: ClientConnection | None = None
        self._lock: Any = None
        self._queue: list[_Job] = []
        #: Whether the last operation's message content may have reached the server
        #: (so the message must not be sent again after a failure).
        self.content_started = False
        # Set by send_with(): QUIT goes out with the end of the next (and only) message.
        self._quit_after_next = False
        self.last_helo_response: SMTPResponse | None = None
        self._last_ehlo_response: SMTPResponse | None = None
        self.esmtp_extensions: dict[str, str] = {}
        self.supports_esmtp = False
        self.server_auth_methods: list[str] = []
        self._validate_config()

    # -- what an adapter provides ----------

    @abc.abstractmethod
    async def _open_transport(self, options: ConnectOptions) -> Transport:
        """Connect (and for implicit TLS, handshake); map failures to SMTPConnectError."""

    @abc.abstractmethod
    async def _with_deadline(
        self,
        timeout: float | None,
        operation: Callable[[Callable[[float | None], None]], Awaitable[T]],
    ) -> T:
        """Await ``operation(restart)``; past the deadline raise ``SMTPReadTimeoutError``.

        The deadline is ``timeout`` seconds from the start, or from the last call of
        ``restart(seconds)``: ``seconds`` from then (``timeout`` when None). A batch
        restarts it after each message; a stage with its own limit at its start.
        """

    @abc.abstractmethod
    def _build_tls_context(self) -> Any:
        """Make an ``ssl.SSLContext`` from the TLS options (or return ``tls_context``)."""

    @abc.abstractmethod
    def _new_lock(self) -> Any:
        """A lock usable with ``async with`` on the adapter's event loop."""

    @abc.abstractmethod
    async def _default_local_hostname(self) -> str:
        """The local machine's fully qualified name, without blocking the loop."""

    @abc.abstractmethod
    def _run_blocking(self, main: Callable[[], Awaitable[T]]) -> T:
        """Run ``main()`` to completion in a fresh event loop of the adapter's kind."""

    def sendmail_sync(self, *args: Any, **kwargs: Any) -> tuple[dict[str, SMTPResponse], str]:
        """Blocking :meth:`sendmail`: connect, send, QUIT, in a fresh event loop."""

        async def main() -> tuple[dict[str, SMTPResponse], str]:
            async with self:
                return await self.sendmail(*args, **kwargs)

        return self._run_blocking(main)

    def send_message_sync(self, *args: Any, **kwargs: Any) -> tuple[dict[str, SMTPResponse], str]:
        """Blocking :meth:`send_message`: connect, send, QUIT, in a fresh event loop."""

        async def main() -> tuple[dict[str, SMTPResponse], str]:
            async with self:
                return await self.send_message(*args, **kwargs)

        return self._run_blocking(main)

    # -- configuration ----------

    def _update_settings_from_kwargs(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            if key in ("use_tls", "validate_certs"):
                if value is not None:
                    setattr(self, key, value)
                continue
            if value is _default:
                continue
            if key == "username":
                self._login_username = value
            elif key == "password":
                self._login_password = value
            elif key == "oauth_token_generator":
                self._oauth_token_generator = value
            elif key == "start_tls":
                self._start_tls_on_connect = value
            else:
                setattr(self, key, value)

    def _validate_config(self) -> None:
        if self._login_password is not None and self._oauth_token_generator is not None:
            raise ValueError("password and oauth_token_generator are mutually exclusive")
        if self._start_tls_on_connect and self.use_tls:
            raise ValueError("The start_tls and use_tls options are not compatible.")
        if self.tls_context is not None and self.client_cert is not None:
            raise ValueError("Either a TLS context or a certificate/key must be provided")
        if self.sock is not None and self.socket_path is not None:
            raise ValueError("Either a socket or a socket path must be provided, not both")
        if (self.sock or self.socket_path) and self.port is not None:
            raise ValueError("If using a socket, port is not required")
        if (self.sock or self.socket_path) and self.use_tls and self.hostname is None:
            raise ValueError("If using a socket with TLS, hostname is required")
        if self.local_hostname is not None:
            self.local_hostname = validate_local_hostname(self.local_hostname)
        if self.hostname is not None and any(c in self.hostname for c in "\r\n\0"):
            raise ValueError("The hostname param contains prohibited newline characters")

    def _get_default_port(self) -> int:
        if self.use_tls:
            return SMTP_TLS_PORT
        if self._start_tls_on_connect:
            return SMTP_STARTTLS_PORT
        return SMTP_PORT

    def _timeout(self, timeout: Timeout) -> float | None:
        return self.timeout if timeout is _default else timeout

    # -- state ----------

    @property
    def is_connected(self) -> bool:
        """True while a connection is open and usable."""
        return (
            self._transport is not None
            and self._conn is not None
            and self._conn.state not in (State.CLOSED, State.ERROR)
        )

    @property
    def protocol_connection(self) -> ClientConnection | None:
        """The underlying :class:`smtp_core.ClientConnection` (None when disconnected)."""
        return self._conn

    @property
    def last_ehlo_response(self) -> SMTPResponse | None:
        """The last successful EHLO reply."""
        return self._last_ehlo_response

    @last_ehlo_response.setter
    def last_ehlo_response(self, response: SMTPResponse | None) -> None:
        self._last_ehlo_response = response

    @property
    def is_ehlo_or_helo_needed(self) -> bool:
        """True until an EHLO or HELO succeeded on this connection."""
        return self.last_ehlo_response is None and self.last_helo_response is None

    @property
    def supported_auth_methods(self) -> list[str]:
        """AUTH methods both the server and this client support, preferred first."""
        return [auth for auth in self.AUTH_METHODS if auth in self.server_auth_methods]

    def supports_extension(self, extension: str, /) -> bool:
        """Whether the server advertised ``extension`` in its EHLO reply."""
        return extension.lower() in self.esmtp_extensions

    def get_transport_info(self, key: str) -> Any:
        """Transport information: peername, sockname, socket, sslcontext, peercert, cipher..."""
        if not self.is_connected or self._transport is None:
            raise SMTPServerDisconnected("Server not connected")
        return self._transport.get_extra_info(key)

    def _reset_server_state(self) -> None:
        self.last_helo_response = None
        self._last_ehlo_response = None
        self.esmtp_extensions = {}
        self.supports_esmtp = False
        self.server_auth_methods = []

    def _sync_capabilities(self) -> None:
        conn = self._conn
        if conn is None:
            return
        caps = conn.capabilities
        self.esmtp_extensions = caps.as_esmtp_extensions()
        self.server_auth_methods = [mech.lower() for mech in caps.auth_mechanisms]
        self.supports_esmtp = conn.extended

    # -- running flows ----------

    def _require_connection(self, message: str = "Server not connected") -> ClientConnection:
        if not self.is_connected or self._conn is None:
            raise SMTPServerDisconnected(message)
        return self._conn

    async def _run(self, flow: Flow[T], timeout: Timeout = _default) -> T:
        """Drive ``flow`` over the transport within the deadline; close when it breaks."""
        conn = self._require_connection()
        transport = self._transport
        assert transport is not None
        tls_context_holder: list[Any] = []

        stage_limits = {"command": self.timeouts.command, "data": self.timeouts.data}

        async def trampoline(restart: Callable[[float | None], None]) -> T:
            value: Any = None
            may_have_unread = True
            while True:
                # Bytes that arrived unasked go to the machine before the flow sends its
                # next command, so they can never pass for that command's reply. They can
                # only arrive while this task waits for something other than a read
                # (which takes everything), or before the flow started.
                if may_have_unread:
                    early = transport.take_unread()
                    idle = not conn.awaiting_replies and conn.state in _OWED_NOTHING
                    if not early and idle:
                        early = transport.peek_unsolicited()
                    if early:
                        conn.receive_data(early)
                        if idle:
                            _closed_while_idle(conn)
                try:
                    request = flow.send(value)
                except StopIteration as stop:
                    result: T = stop.value
                    return result
                may_have_unread = True
                if type(request) is Write:
                    await transport.write(request.data)
                    value = None
                elif type(request) is Read:
                    value = await transport.read()
                    may_have_unread = False
                elif type(request) is Stage:
                    limit = stage_limits.get(request.name)
                    if limit is not None:
                        restart(limit)
                    value = None
                    may_have_unread = False  # nothing was awaited
                elif type(request) is Progress:
                    restart(None)  # the timeout applies to each message of a batch
                    value = None
                    may_have_unread = False
                elif type(request) is NextChunk:
                    try:
                        value = await request.source.__anext__()
                    except StopAsyncIteration:
                        value = None
                elif type(request) is UpgradeTLS:
                    # Bytes the transport read past the 220 reply go to the machine, which
                    # refuses them (STARTTLS response injection) before any TLS starts.
                    early = transport.take_unread()
                    if early:
                        conn.receive_data(early)
                    if not tls_context_holder:
                        tls_context_holder.append(self._build_tls_context())
                    await transport.start_tls(tls_context_holder[0], request.server_hostname)
                    value = None
                else:  # pragma: no cover
                    raise AssertionError(f"unknown request {request!r}")

        try:
            try:
                result = await self._with_deadline(self._timeout(timeout), trampoline)
            finally:
                self.content_started = conn.content_started
        except RemoteProtocolError as exc:
            await self._abort()
            raise SMTPResponseException(-1, f"Malformed SMTP response: {exc}") from exc
        except (SMTPResponseException, SMTPRecipientsRefused, LocalProtocolError):
            if not self._is_clean(conn):
                await self._abort()
            raise
        except BaseException:
            # Timeouts, disconnects, cancellation: the session is out of step; never reuse it.
            await self._abort()
            raise
        finally:
            flow.close()
        if not self._is_clean(conn):
            await self._abort()
        return result

    def _is_clean(self, conn: ClientConnection) -> bool:
        if conn is self._conn and conn.state is State.QUIT:
            return conn.awaiting_replies == 1  # QUIT sent with the last message; see quit()
        return (
            conn is self._conn
            and not conn.awaiting_replies
            and conn.state
            in (
                State.HELLO,
                State.READY,
                State.MAIL,
                State.RCPT,
                State.BDAT,
            )
        )

    async def _reply(self, cmd: Any, timeout: Timeout) -> SMTPResponse:
        reply = await self._run(command(self._require_connection(), cmd), timeout)
        return _response(reply)

    async def _ehlo_or_helo_if_needed(self, timeout: Timeout = _default) -> None:
        if self.is_ehlo_or_helo_needed:
            conn = self._require_connection()
            reply = await self._run(hello(conn, self.local_hostname), timeout)
            self._record_hello(reply)

    def _record_hello(self, reply: Reply) -> None:
        conn = self._conn
        if conn is not None and conn.extended:
            self._last_ehlo_response = _response(reply)
        else:
            self.last_helo_response = _response(reply)
        self._sync_capabilities()

    # -- connection ----------

    async def __aenter__(self: _SelfT) -> _SelfT:
        if not self.is_connected:
            await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, (ConnectionError, TimeoutError)):
            await self._abort()
            return
        try:
            if self.is_connected:
                await self.quit()
        except (SMTPServerDisconnected, SMTPResponseException, SMTPTimeoutError):
            pass
        finally:
            await self._abort()

    async def connect(
        self,
        *,
        hostname: str | Literal[Default.token] | None = _default,
        port: int | Literal[Default.token] | None = _default,
        username: str | bytes | Literal[Default.token] | None = _default,
        password: str | bytes | Literal[Default.token] | None = _default,
        oauth_token_generator: SMTPTokenGenerator | Literal[Default.token] | None = _default,
        local_hostname: str | Literal[Default.token] | None = _default,
        source_address: tuple[str, int] | Literal[Default.token] | None = _default,
        timeout: Timeout = _default,
        use_tls: bool | None = None,
        start_tls: bool | Literal[Default.token] | None = _default,
        validate_certs: bool | None = None,
        client_cert: str | Literal[Default.token] | None = _default,
        client_key: str | Literal[Default.token] | None = _default,
        tls_context: Any = _default,
        cert_bundle: str | Literal[Default.token] | None = _default,
        socket_path: Any = _default,
        sock: Any = _default,
    ) -> SMTPResponse:
        """Connect, read the greeting, then STARTTLS and log in as configured.

        Options given here override those given to the constructor. With
        ``start_tls=None`` the connection is upgraded when the server offers STARTTLS;
        ``True`` requires it (``SMTPException`` when not offered); ``False`` never.
        """
        self._update_settings_from_kwargs(
            hostname=hostname,
            port=port,
            username=username,
            password=password,
            oauth_token_generator=oauth_token_generator,
            local_hostname=local_hostname,
            source_address=source_address,
            use_tls=use_tls,
            start_tls=start_tls,
            validate_certs=validate_certs,
            client_cert=client_cert,
            client_key=client_key,
            tls_context=tls_context,
            cert_bundle=cert_bundle,
            socket_path=socket_path,
            sock=sock,
        )
        if timeout is not _default:
            self.timeout = timeout
        self._validate_config()
        if self.is_connected:
            raise SMTPException("SMTP instance is already connected")
        if self.local_hostname is None:
            self.local_hostname = validate_local_hostname(await self._default_local_hostname())
        try:
            response = await self._create_connection()
            await self._maybe_start_tls_on_connect()
            await self._maybe_login_on_connect()
        except BaseException:
            await self._abort()
            raise
        return response

    async def _create_connection(self) -> SMTPResponse:
        timeout = self.timeout
        hostname = self.hostname or "localhost"
        port = self.port
        if self.sock is None and self.socket_path is None and port is None:
            port = self._get_default_port()
        connect_timeout = self.timeouts.connect if self.timeouts.connect is not None else timeout
        options = ConnectOptions(
            hostname=hostname,
            port=port,
            use_tls=self.use_tls,
            tls_context=self._build_tls_context() if self.use_tls else None,
            server_hostname=self.hostname if self.use_tls else None,
            socket_path=self.socket_path,
            sock=self.sock,
            source_address=self.source_address,
            timeout=connect_timeout,
        )
        self._transport = await self._open_transport(options)
        self._conn = ClientConnection(local_hostname=self._ehlo_name(), lmtp=self._lmtp)
        if self.use_tls:
            self._conn.mark_tls()
        try:
            greeting_timeout = self.timeouts.greeting
            reply = await self._run(
                greeting(self._conn), timeout if greeting_timeout is None else greeting_timeout
            )
        except SMTPServerDisconnected as exc:
            raise SMTPConnectError(f"Error connecting to {hostname} on port {port}: {exc}") from exc
        except SMTPTimeoutError as exc:
            raise SMTPConnectTimeoutError("Timed out waiting for server ready message") from exc
        return _response(reply)

    def _ehlo_name(self) -> str | None:
        """The name for EHLO: ``local_hostname``, or an address literal if it is not a domain."""
        name = self.local_hostname
        if name is None:
            return None
        try:
            Ehlo(name)
        except LocalProtocolError:
            return "[127.0.0.1]"
        return name

    async def _maybe_start_tls_on_connect(self) -> None:
        if self._start_tls_on_connect is True:
            await self.starttls()
        elif self._start_tls_on_connect is None and not self.use_tls:
            await self._ehlo_or_helo_if_needed()
            if self.supports_extension("starttls"):
                await self.starttls()

    async def _maybe_login_on_connect(self) -> None:
        if self._oauth_token_generator is not None:
            if self._login_username is None:
                raise SMTPException("username is required when using oauth_token_generator")
            await self._ehlo_or_helo_if_needed()
            if "oauthbearer" in self.server_auth_methods:
                token = await self._oauth_token_generator()
                await self.auth_oauthbearer(self._login_username, token)
                return
            if "xoauth2" not in self.server_auth_methods:
                raise SMTPException(
                    "oauth_token_generator provided but server does not support XOAUTH2"
                )
            token = await self._oauth_token_generator()
            await self.auth_xoauth2(self._login_username, token)
        elif self._login_username is not None:
            password = self._login_password if self._login_password is not None else ""
            await self.login(self._login_username, password)

    def close(self) -> None:
        """Close the connection at once (no QUIT) and forget the server's state."""
        transport, self._transport = self._transport, None
        self._conn = None
        if transport is not None:
            transport.close()
        self._reset_server_state()

    async def aclose_quietly(self) -> None:
        """Close the connection (no QUIT) and release the transport; never raises."""
        await self._abort()

    async def _abort(self) -> None:
        """Close from async code: also releases the transport's resources (even when cancelled)."""
        transport, self._transport = self._transport, None
        self._conn = None
        self._reset_server_state()
        if transport is not None:
            await transport.aclose()

    # -- commands ----------

    async def execute_command(
        self, *args: bytes | str, timeout: Timeout = _default
    ) -> SMTPResponse:
        """Send one command line (its words given as arguments) and return the reply.

        The line is validated like the typed commands (no CR, LF or NUL; addresses by
        RFC 5321 syntax) before anything is sent. A 421 reply closes the connection.
        """
        self._require_connection()
        cmd = parse_command(*args)
        return await self._reply(cmd, timeout)

    async def helo(
        self, *, hostname: str | None = None, timeout: Timeout = _default
    ) -> SMTPResponse:
        """HELO; raises ``SMTPHeloError`` unless the server answers 250."""
        conn = self._require_connection()
        name = self.local_hostname if hostname is None else validate_local_hostname(hostname)
        reply = await self._run(helo_flow(conn, name), timeout)
        self._last_ehlo_response = None
        self._record_hello(reply)
        return _response(reply)

    async def ehlo(
        self, *, hostname: str | None = None, timeout: Timeout = _default
    ) -> SMTPResponse:
        """EHLO (LHLO on an LMTP client); raises ``SMTPHeloError`` unless the server answers 250."""
        conn = self._require_connection()
        name = self.local_hostname if hostname is None else validate_local_hostname(hostname)
        flow = lhlo_flow(conn, name) if conn.lmtp else ehlo_flow(conn, name)
        reply = await self._run(flow, timeout)
        self.last_helo_response = None
        self._record_hello(reply)
        return _response(reply)

    async def help(self, *, timeout: Timeout = _default) -> str:
        """HELP; returns the help text."""
        await self._ehlo_or_helo_if_needed(timeout)
        response = await self._reply(Help(), timeout)
        if response.code not in (211, 214, 250):
            raise SMTPResponseException(response.code, response.message)
        return response.message

    async def rset(self, *, timeout: Timeout = _default) -> SMTPResponse:
        """RSET: abandon the current mail transaction."""
        await self._ehlo_or_helo_if_needed(timeout)
        response = await self._reply(Rset(), timeout)
        if response.code != 250:
            raise SMTPResponseException(response.code, response.message)
        return response

    async def noop(self, *, timeout: Timeout = _default) -> SMTPResponse:
        """NOOP: check that the server is still there."""
        await self._ehlo_or_helo_if_needed(timeout)
        response = await self._reply(Noop(), timeout)
        if response.code != 250:
            raise SMTPResponseException(response.code, response.message)
        return response

    def _check_utf8_options(self, address: str, options: Iterable[str]) -> None:
        wants_utf8 = any(opt.lower() == "smtputf8" for opt in options)
        if wants_utf8 and not self.supports_extension("smtputf8"):
            raise SMTPNotSupported("SMTPUTF8 is not supported by this server")
        if not address.isascii() and not self.supports_extension("smtputf8"):
            raise SMTPNotSupported(
                f"address {address!r} contains non-ASCII characters, but SMTPUTF8 is not "
                "supported by this server"
            )

    async def vrfy(
        self, address: str, /, *, options: Iterable[str] | None = None, timeout: Timeout = _default
    ) -> SMTPResponse:
        """VRFY: ask the server whether ``address`` is valid."""
        await self._ehlo_or_helo_if_needed(timeout)
        options = list(options or ())
        self._check_utf8_options(address, options)
        cmd = Vrfy(" ".join([address, *options]))
        response = await self._reply(cmd, timeout)
        if response.code not in (250, 251, 252):
            raise SMTPResponseException(response.code, response.message)
        return response

    async def expn(
        self, address: str, /, *, options: Iterable[str] | None = None, timeout: Timeout = _default
    ) -> SMTPResponse:
        """EXPN: ask the server to expand a mailing list."""
        await self._ehlo_or_helo_if_needed(timeout)
        options = list(options or ())
        self._check_utf8_options(address, options)
        response = await self._reply(Expn(" ".join([address, *options])), timeout)
        if response.code != 250:
            raise SMTPResponseException(response.code, response.message)
        return response

    async def quit(self, *, timeout: Timeout = _default) -> SMTPResponse:
        """QUIT, then close the connection."""
        conn = self._require_connection()
        try:
            reply = await self._run(quit_flow(conn), timeout)
        finally:
            await self._abort()
        return _response(reply)

    def _check_options(self, options: Sequence[str], what: str) -> None:
        if not options:
            return
        conn = self._require_connection()
        needed = parameter_extensions(options, what)
        missing = sorted(e for e in needed if e not in conn.capabilities)
        if missing:
            raise SMTPNotSupported(
                f"{what} options {list(options)!r} need {', '.join(missing)}, which this "
                "server does not support"
            )

    async def mail(
        self,
        sender: str,
        /,
        *,
        options: Iterable[str] | None = None,
        encoding: str = "ascii",
        timeout: Timeout = _default,
    ) -> SMTPResponse:
        """MAIL FROM: start a mail transaction; raises ``SMTPSenderRefused`` unless 250."""
        await self._ehlo_or_helo_if_needed(timeout)
        options = list(options or ())
        cmd = Mail(sender, tuple(options))
        self._check_address_encoding(sender, encoding)
        self._check_options(options, "MAIL")
        response = await self._reply(cmd, timeout)
        if response.code != 250:
            raise SMTPSenderRefused(response.code, response.message, sender)
        return response

    async def rcpt(
        self,
        recipient: str,
        /,
        *,
        options: Iterable[str] | None = None,
        encoding: str = "ascii",
        timeout: Timeout = _default,
    ) -> SMTPResponse:
        """RCPT TO: add a recipient; raises ``SMTPRecipientRefused`` unless 250 or 251."""
        await self._ehlo_or_helo_if_needed(timeout)
        options = list(options or ())
        cmd = Rcpt(recipient, tuple(options))
        self._check_address_encoding(recipient, encoding)
        self._check_options(options, "RCPT")
        response = await self._reply(cmd, timeout)
        if response.code not in (250, 251):
            raise SMTPRecipientRefused(response.code, response.message, recipient)
        return response

    def _check_address_encoding(self, address: str, encoding: str) -> None:
        if not address.isascii():
            if encoding.lower().replace("-", "") != "utf8":
                raise SMTPNotSupported(
                    f"address {address!r} contains non-ASCII characters; pass "
                    "encoding='utf-8' and the SMTPUTF8 option"
                )
            if not self.supports_extension("smtputf8"):
                raise SMTPNotSupported("SMTPUTF8 is not supported by this server")

    async def data(self, message: str | bytes, /, *, timeout: Timeout = _default) -> SMTPResponse:
        """DATA and the message content; raises ``SMTPDataError`` on refusal."""
        conn = self._require_connection("Connection lost")
        await self._ehlo_or_helo_if_needed(timeout)
        content = message.encode("ascii") if isinstance(message, str) else bytes(message)
        reply = await self._run(data_flow(conn, content), timeout)
        return _response(reply)

    async def starttls(
        self,
        *,
        server_hostname: str | None = None,
        validate_certs: bool | None = None,
        client_cert: str | Literal[Default.token] | None = _default,
        client_key: str | Literal[Default.token] | None = _default,
        cert_bundle: str | Literal[Default.token] | None = _default,
        tls_context: Any = _default,
        timeout: Timeout = _default,
    ) -> SMTPResponse:
        """STARTTLS: upgrade the connection to TLS, then forget the server's capabilities.

        Raises ``SMTPException`` when the server does not offer STARTTLS and
        ``SMTPResponseException`` when it refuses it; the connection never goes on in
        plaintext after a failed upgrade that the caller required.
        """
        conn = self._require_connection()
        if conn.tls_active:
            raise SMTPException("Connection already using TLS")
        self._update_settings_from_kwargs(
            validate_certs=validate_certs,
            client_cert=client_cert,
            client_key=client_key,
            cert_bundle=cert_bundle,
            tls_context=tls_context,
        )
        self._validate_config()
        await self._ehlo_or_helo_if_needed(timeout)
        if server_hostname is None:
            server_hostname = self.hostname
        if not self.supports_extension("starttls"):
            raise SMTPException("SMTP STARTTLS extension not supported by server.")
        reply = await self._run(starttls(conn, server_hostname), timeout)
        self._reset_server_state()
        return _response(reply)

    # -- authentication ----------

    async def login(
        self, username: str | bytes, password: str | bytes, /, *, timeout: Timeout = _default
    ) -> SMTPResponse:
        """Log in with the best mechanism both sides support (CRAM-MD5, PLAIN, LOGIN).

        Servers sometimes advertise mechanisms they do not support, so on an
        authentication failure the next mechanism is tried.
        """
        await self._ehlo_or_helo_if_needed(timeout)
        if not self.supports_extension("auth"):
            conn = self._require_connection()
            if not conn.tls_active:
                raise SMTPException(
                    "The SMTP AUTH extension is not supported by this server. Try "
                    "connecting via TLS (or STARTTLS)."
                )
            raise SMTPException("The SMTP AUTH extension is not supported by this server.")
        response: SMTPResponse | None = None
        exception: SMTPAuthenticationError | None = None
        methods = {
            "scram-sha-256": self.auth_scram_sha256,
            "cram-md5": self.auth_crammd5,
            "plain": self.auth_plain,
            "login": self.auth_login,
        }
        for name in self.supported_auth_methods:
            try:
                response = await methods[name](username, password, timeout=timeout)
            except SMTPAuthenticationError as exc:
                exception = exc
                if not self.is_connected:
                    raise
            else:
                break
        if response is None:
            raise exception or SMTPException("No suitable authentication method found.")
        return response

    async def auth(
        self, mechanism: SASLMechanism, /, *, timeout: Timeout = _default
    ) -> SMTPResponse:
        """Authenticate with any :class:`~smtp_core.SASLMechanism` (built-in or your own).

        Raises ``SMTPAuthenticationError`` unless the server answers 235.
        """
        await self._ehlo_or_helo_if_needed(timeout)
        conn = self._require_connection()
        if "AUTH" not in conn.capabilities:
            raise SMTPException("The SMTP AUTH extension is not supported by this server.")
        reply = await self._run(authenticate(conn, mechanism), timeout)
        if reply.code != 235:
            raise SMTPAuthenticationError(reply.code, reply.message)
        return _response(reply)

    async def auth_scram_sha256(
        self, username: str | bytes, password: str | bytes, /, *, timeout: Timeout = _default
    ) -> SMTPResponse:
        """AUTH SCRAM-SHA-256 (RFC 7677): the server must prove it knows the password too."""
        return await self.auth(ScramSHA256(username, password), timeout=timeout)

    async def auth_oauthbearer(
        self, username: str | bytes, access_token: str | bytes, /, *, timeout: Timeout = _default
    ) -> SMTPResponse:
        """AUTH OAUTHBEARER (RFC 7628) with an OAuth 2.0 access token."""
        return await self.auth(OAuthBearer(username, access_token), timeout=timeout)

    async def auth_crammd5(
        self, username: str | bytes, password: str | bytes, /, *, timeout: Timeout = _default
    ) -> SMTPResponse:
        """AUTH CRAM-MD5 (RFC 2195)."""
        return await self.auth(CramMD5(username, password), timeout=timeout)

    async def auth_plain(
        self, username: str | bytes, password: str | bytes, /, *, timeout: Timeout = _default
    ) -> SMTPResponse:
        """AUTH PLAIN (RFC 4616)."""
        return await self.auth(Plain(username, password), timeout=timeout)

    async def auth_login(
        self, username: str | bytes, password: str | bytes, /, *, timeout: Timeout = _default
    ) -> SMTPResponse:
        """AUTH LOGIN."""
        return await self.auth(Login(username, password), timeout=timeout)

    async def auth_xoauth2(
        self, username: str | bytes, access_token: str | bytes, /, *, timeout: Timeout = _default
    ) -> SMTPResponse:
        """AUTH XOAUTH2 with an OAuth 2.0 access token."""
        return await self.auth(XOAuth2(username, access_token), timeout=timeout)

    # -- sending ----------

    async def sendmail(
        self,
        sender: str,
        recipients: str | Sequence[str],
        message: str | bytes | Any,
        /,
        *,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: Timeout = _default,
        dsn: DSN | None = None,
        require_tls: bool = False,
        priority: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> tuple[dict[str, SMTPResponse], str]:
        """Send ``message`` from ``sender`` to ``recipients`` in one mail transaction.

        ``message`` is ``str`` (ASCII), ``bytes``, a binary file object, or an iterable or
        async iterable of ``bytes`` chunks; content is streamed and encoded chunk by
        chunk, so memory stays bounded whatever its size.

        Returns ``(refused, text)``: the recipients the server refused, each with its
        reply, and the text of the server's final reply. Every address is validated
        before any byte is sent. With PIPELINING, MAIL, RCPT and DATA go in one write,
        and concurrent calls on one client are pipelined back to back.

        Raises ``SMTPSenderRefused``, ``SMTPRecipientsRefused`` (all refused) or
        ``SMTPDataError``; the transaction is reset (RSET) after a refusal.

        Extensions, as typed options: ``dsn`` (a :class:`~smtp_core.DSN`: RET, ENVID,
        NOTIFY, ORCPT; ``SMTPNotSupported`` without the server's DSN), ``require_tls``
        (RFC 8689 REQUIRETLS: fails unless the server offers it over TLS) and
        ``priority`` (RFC 6710 MT-PRIORITY, -9 to 9; sent only when offered).
        ``progress(sent, total)`` is called as the content goes out (``total`` is None
        when the size cannot be known in advance).
        """
        outcome = await self._sendmail_outcome(
            sender,
            recipients,
            message,
            mail_options,
            rcpt_options,
            timeout,
            _Extensions(dsn, require_tls, priority)
            if dsn is not None or require_tls or priority is not None
            else None,
            progress,
        )
        return _sendmail_result(outcome)

    async def _sendmail_outcome(
        self,
        sender: str,
        recipients: str | Sequence[str],
        message: Any,
        mail_options: Iterable[str] | None,
        rcpt_options: Iterable[str] | None,
        timeout: Timeout,
        extensions: _Extensions | None = None,
        progress: ProgressCallback | None = None,
    ) -> Any:
        total = self.timeouts.total
        if total is None:
            return await self._sendmail_outcome_now(
                sender,
                recipients,
                message,
                mail_options,
                rcpt_options,
                timeout,
                extensions,
                progress,
            )

        async def whole(restart: Callable[[float | None], None]) -> Any:
            return await self._sendmail_outcome_now(
                sender,
                recipients,
                message,
                mail_options,
                rcpt_options,
                timeout,
                extensions,
                progress,
            )

        try:
            return await self._with_deadline(total, whole)
        except SMTPTimeoutError as exc:
            if self._transport is not None:
                await self._abort()
            raise SMTPReadTimeoutError(
                f"Timed out: the message was not sent within its total deadline ({total} s)"
            ) from exc

    async def _sendmail_outcome_now(
        self,
        sender: str,
        recipients: str | Sequence[str],
        message: Any,
        mail_options: Iterable[str] | None,
        rcpt_options: Iterable[str] | None,
        timeout: Timeout,
        extensions: _Extensions | None,
        progress: ProgressCallback | None,
    ) -> Any:
        recipients_list = [recipients] if isinstance(recipients, str) else list(recipients)
        mail_opts = list(mail_options or ())
        rcpt_opts = list(rcpt_options or ())
        # Validate everything before any byte is sent (and before connecting).
        mail = Mail(sender, tuple(mail_opts))
        rcpts = [Rcpt(rcpt, tuple(rcpt_opts)) for rcpt in recipients_list]
        if not recipients_list:
            raise ValueError("No recipients given")
        content: Any = message.encode("ascii") if isinstance(message, str) else message
        conn = await self._ensure_session(timeout)
        if extensions is not None and extensions.used:
            mail_extra, per_rcpt = extensions.parameters(conn)
            mail = mail.with_parameters([*mail.parameters, *mail_extra])
            rcpts = [
                Rcpt(rcpt.recipient, (*rcpt.parameters, *per_rcpt(rcpt.recipient)))
                for rcpt in rcpts
            ]
        envelope = self._prepare_envelope(conn, mail, rcpts, content)
        envelope.progress = progress
        [outcome] = await self._submit([envelope], timeout)
        return outcome

    async def sendmail_detailed(
        self,
        sender: str,
        recipients: str | Sequence[str],
        message: str | bytes | Any,
        /,
        *,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: Timeout = _default,
        dsn: DSN | None = None,
        require_tls: bool = False,
        priority: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> TransactionResult:
        """Like :meth:`sendmail`, but return a typed result instead of raising on refusals.

        The :class:`~smtp_core.flows.TransactionResult` holds the MAIL reply, each
        recipient's RCPT reply (code, enhanced status code, text) and, on an LMTP
        client, each recipient's delivery reply (``result.recipients``), the final reply,
        and ``result.error``: the refusal ``sendmail`` would have raised, or None.
        Connection failures (timeouts, disconnects) still raise.
        """
        outcome = await self._sendmail_outcome(
            sender,
            recipients,
            message,
            mail_options,
            rcpt_options,
            timeout,
            _Extensions(dsn, require_tls, priority),
            progress,
        )
        if isinstance(outcome, TransactionResult):
            return outcome
        result = getattr(outcome, "result", None)
        if isinstance(result, TransactionResult):
            return result
        raise outcome

    async def send_message_detailed(
        self,
        message: email.message.Message | email.message.EmailMessage,
        /,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: Timeout = _default,
    ) -> TransactionResult:
        """Like :meth:`send_message`, returning the typed result (see :meth:`sendmail_detailed`)."""
        await self._ensure_session(timeout)
        prepared = prepare_message(
            message,
            sender=sender,
            recipients=recipients,
            mail_options=list(mail_options or ()),
            smtputf8_supported=self.supports_extension("smtputf8"),
            eightbitmime_supported=self.supports_extension("8bitmime"),
        )
        return await self.sendmail_detailed(
            prepared.sender,
            prepared.recipients,
            prepared.content,
            mail_options=prepared.mail_options,
            rcpt_options=rcpt_options,
            timeout=timeout,
        )

    async def send_messages(
        self,
        messages: Iterable[Any],
        /,
        *,
        timeout: Timeout = _default,
    ) -> list[tuple[dict[str, SMTPResponse], str] | SMTPException]:
        """Send many messages on this connection, pipelined back to back.

        Each item is an ``email.message.Message`` (envelope from its headers) or a
        ``(sender, recipients, content)`` tuple, where content is anything ``sendmail``
        takes. Returns one result per message, in order: ``(refused, text)`` as
        ``sendmail`` returns it, or the exception that message met (a refusal does not
        stop the others). Arguments are all validated before anything is sent.
        """
        conn = await self._ensure_session(timeout)
        envelopes = []
        for item in messages:
            if isinstance(item, email.message.Message):
                prepared = prepare_message(
                    item,
                    smtputf8_supported=conn.capabilities.smtputf8,
                    eightbitmime_supported=conn.capabilities.eightbitmime,
                )
                sender, recipients, content = prepared.sender, prepared.recipients, prepared.content
                mail_options = prepared.mail_options
            else:
                sender, recipients, content = item
                mail_options = []
            recipients = [recipients] if isinstance(recipients, str) else list(recipients)
            if not recipients:
                raise ValueError("No recipients given")
            mail = Mail(sender, tuple(mail_options))
            rcpts = [Rcpt(rcpt) for rcpt in recipients]
            if isinstance(content, str):
                content = content.encode("ascii")
            envelopes.append(self._prepare_envelope(conn, mail, rcpts, content))
        outcomes = await self._submit(envelopes, timeout)
        results: list[tuple[dict[str, SMTPResponse], str] | SMTPException] = []
        for outcome in outcomes:
            try:
                results.append(_sendmail_result(outcome))
            except SMTPException as exc:
                results.append(exc)
        return results

    async def _ensure_session(self, timeout: Timeout) -> ClientConnection:
        """Connect on first use (as aiosmtplib 1.0 programs expect) and say EHLO once."""
        if self._lock is None:
            self._lock = self._new_lock()
        if self._transport is None or self.is_ehlo_or_helo_needed:
            async with self._lock:
                if not self.is_connected and self._transport is None and self._conn is None:
                    await self.connect()
                await self._ehlo_or_helo_if_needed(timeout)
        return self._require_connection()

    def _prepare_envelope(
        self,
        conn: ClientConnection,
        mail: Mail,
        rcpts: list[Rcpt],
        content: Any,
    ) -> Envelope:
        """Everything checked before any byte of the message is sent.

        ``mail`` and ``rcpts`` were built (so validated) from the caller's arguments;
        options the server needs (SMTPUTF8, SIZE) are added here.
        """
        caps = conn.capabilities
        sender = mail.sender
        recipients = [rcpt.recipient for rcpt in rcpts]
        if (
            not mail.parameters
            and not any(rcpt.parameters for rcpt in rcpts)
            and sender.isascii()
            and all(r.isascii() for r in recipients)
            and "SIZE" not in caps
            and "BINARYMIME" not in caps
        ):
            # The usual case: nothing to add, nothing to check against the server.
            return Envelope(sender, recipients, content, [], [], commands=[mail, *rcpts])
        mail_options = list(mail.parameters)
        rcpt_options = list(rcpts[0].parameters) if rcpts else []
        utf8 = any(opt.lower() == "smtputf8" for opt in mail_options)
        non_ascii = not sender.isascii() or not all(r.isascii() for r in recipients)
        if (utf8 or non_ascii) and not caps.smtputf8:
            raise SMTPNotSupported("SMTPUTF8 is not supported by this server")
        if non_ascii and not utf8:
            mail_options.append("SMTPUTF8")
        if "SIZE" in caps and isinstance(content, (bytes, bytearray, memoryview)):
            size = content_size(bytes(content))
            limit = caps.size
            if limit is not None and size > limit:
                raise SMTPSenderRefused(
                    552,
                    f"Message size ({size} bytes) exceeds the server's limit of "
                    f"{limit} bytes (SIZE)",
                    sender,
                )
            if not any(opt.lower().startswith("size=") for opt in mail_options):
                mail_options.insert(0, f"SIZE={size}")
        elif "SIZE" in caps and caps.size is not None:
            # A file: its length on disk is a lower bound of the size sent (line-ending
            # normalisation only adds bytes), enough to refuse before streaming it.
            at_least = content_total(content)
            if at_least is not None and at_least > caps.size:
                raise SMTPSenderRefused(
                    552,
                    f"Message size (at least {at_least} bytes) exceeds the server's limit "
                    f"of {caps.size} bytes (SIZE)",
                    sender,
                )
        if (
            "BINARYMIME" in caps
            and "CHUNKING" in caps
            and isinstance(content, (bytes, bytearray, memoryview))
            and not any(opt.lower().startswith("body=") for opt in mail_options)
            and _needs_binarymime(bytes(content))
        ):
            # Content that is not 7bit/8bit-safe goes as BINARYMIME with BDAT, unaltered.
            mail_options.append("BODY=BINARYMIME")
        self._check_options(mail_options, "MAIL")
        for rcpt in rcpts:
            self._check_options(list(rcpt.parameters), "RCPT")
        if mail_options != list(mail.parameters):
            mail = mail.with_parameters(mail_options)
        return Envelope(
            sender, recipients, content, mail_options, rcpt_options, commands=[mail, *rcpts]
        )

    async def _submit(self, envelopes: list[Envelope], timeout: Timeout) -> list[Any]:
        """Send ``envelopes``, pipelined with whatever other tasks are sending right now.

        Calls queue their messages; whoever holds the connection sends everything queued
        as one pipelined batch, so concurrent ``sendmail`` calls on one client share
        round trips. Returns one outcome (result or exception) per envelope.
        """
        jobs = [_Job(envelope) for envelope in envelopes]
        self._queue.extend(jobs)
        if self._lock is None:
            self._lock = self._new_lock()
        try:
            async with self._lock:
                if not all(job.done for job in jobs):
                    await self._send_queued(timeout)
        except Exception:
            # Another batch than this task's own may have broken: this task's messages
            # already have their outcomes then.
            for job in jobs:
                if job in self._queue:
                    self._queue.remove(job)
            if all(job.done for job in jobs):
                return [job.outcome for job in jobs]
            raise
        except BaseException:
            # Cancelled: never leave this task's messages queued for a later batch.
            for job in jobs:
                if job in self._queue:
                    self._queue.remove(job)
            raise
        return [job.outcome for job in jobs]

    def _taker(self, batch: list[_Job]) -> Callable[[], Envelope | None]:
        def take() -> Envelope | None:
            # Called by the flow just before each write: messages queued meanwhile by
            # other tasks join this batch.
            if not self._queue or len(batch) >= MAX_BATCH:
                return None
            job = self._queue.pop(0)
            batch.append(job)
            return job.envelope

        return take

    async def _send_queued(self, timeout: Timeout) -> None:
        while self._queue:
            if not self.is_connected:
                # The session ended under an earlier batch: what is still queued was
                # never sent, so it may safely be sent again elsewhere.
                for job in self._queue:
                    never_sent = SMTPServerDisconnected("Connection lost")
                    never_sent.content_started = False  # type: ignore[attr-defined]
                    job.finish(never_sent)
                self._queue.clear()
                return
            batch: list[_Job] = []
            take = self._taker(batch)

            try:
                conn = self._require_connection()
                quit_after, self._quit_after_next = self._quit_after_next, False
                outcomes = await self._run(mail_batch(conn, take, quit_after=quit_after), timeout)
            except BaseException as exc:
                # The batch broke (timeout, protocol error, cancellation). Which of its
                # messages reached the server is unknown: each is reported lost, and
                # marked as possibly delivered so that nobody sends it again.
                for job in batch:
                    lost: Exception
                    if isinstance(exc, SMTPException):
                        lost = type(exc)(*exc.args)  # each message its own exception
                    else:
                        lost = SMTPServerDisconnected(f"Connection lost: {type(exc).__name__}")
                    lost.content_started = True  # type: ignore[attr-defined]
                    job.finish(lost)
                for job in self._queue:
                    never_sent = SMTPServerDisconnected(
                        exc.args[0]
                        if isinstance(exc, SMTPServerDisconnected) and exc.args
                        else "Connection lost"
                    )
                    never_sent.content_started = False  # type: ignore[attr-defined]
                    job.finish(never_sent)
                self._queue.clear()
                raise
            for job, outcome in zip(batch, outcomes, strict=True):
                job.finish(outcome)

    async def send_message(
        self,
        message: email.message.Message | email.message.EmailMessage,
        /,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        timeout: Timeout = _default,
    ) -> tuple[dict[str, SMTPResponse], str]:
        """Send an ``email.message.Message``; sender and recipients default to its headers.

        Bcc and Resent-Bcc headers are not transmitted. SMTPUTF8 and BODY=8BITMIME are
        added when the addresses or the content need them.
        """
        await self._ensure_session(timeout)
        prepared = prepare_message(
            message,
            sender=sender,
            recipients=recipients,
            mail_options=list(mail_options or ()),
            smtputf8_supported=self.supports_extension("smtputf8"),
            eightbitmime_supported=self.supports_extension("8bitmime"),
        )
        return await self.sendmail(
            prepared.sender,
            prepared.recipients,
            prepared.content,
            mail_options=prepared.mail_options,
            rcpt_options=rcpt_options,
            timeout=timeout,
        )


def _response(reply: Reply) -> SMTPResponse:
    return SMTPResponse(reply.code, reply.message)


@dataclass
class _Extensions:
    """The typed extension options of one ``sendmail`` call."""

    dsn: DSN | None
    require_tls: bool
    priority: int | None

    def __post_init__(self) -> None:
        if self.priority is not None:
            priority_parameter(self.priority)  # validates

    @property
    def used(self) -> bool:
        return self.dsn is not None or self.require_tls or self.priority is not None

    def parameters(self, conn: ClientConnection) -> tuple[list[str], Callable[[str], list[str]]]:
        """MAIL parameters and a per-recipient RCPT parameter function, for this server."""
        caps = conn.capabilities
        mail: list[str] = []
        if self.require_tls:
            if "REQUIRETLS" not in caps or not conn.tls_active:
                raise SMTPNotSupported(
                    "REQUIRETLS was requested, but the server does not offer it over TLS"
                )
            mail.append("REQUIRETLS")
        if self.priority is not None and "MT-PRIORITY" in caps:
            mail.append(priority_parameter(self.priority))
        dsn = self.dsn
        if dsn is None:
            return mail, lambda recipient: []
        if "DSN" not in caps:
            raise SMTPNotSupported("DSN is not supported by this server")
        return [*mail, *dsn.mail_parameters()], dsn.rcpt_parameters


def _needs_binarymime(data: bytes) -> bool:
    """True for content that 7bit/8bit SMTP cannot carry: NUL bytes or lines over 998 octets."""
    if b"\0" in data:
        return True
    return any(len(line) > 999 for line in data.split(b"\n"))


MAX_BATCH = 100
"""Most messages sent in one pipelined batch."""


class _Job:
    """One queued message and, once sent, its outcome."""

    __slots__ = ("done", "envelope", "outcome")

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        self.outcome: Any = None
        self.done = False

    def finish(self, outcome: Any) -> None:
        self.outcome = outcome
        self.done = True


def _sendmail_result(outcome: Any) -> tuple[dict[str, SMTPResponse], str]:
    """aiosmtplib's ``sendmail`` result from a batch outcome (raising a failure)."""
    if isinstance(outcome, BaseException):
        raise outcome
    assert isinstance(outcome, TransactionResult) and outcome.data_reply is not None
    refused = {rcpt: _response(reply) for rcpt, reply in outcome.refused.items()}
    return refused, outcome.data_reply.message


def make_send(
    client_class: Callable[..., SMTPClientBase],
) -> Callable[..., Awaitable[tuple[dict[str, SMTPResponse], str]]]:
    """The module-level ``send()`` of an adapter, for its client class."""

    async def send(
        message: email.message.Message | email.message.EmailMessage | str | bytes,
        /,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        **client_options: Any,
    ) -> tuple[dict[str, SMTPResponse], str]:
        """Connect, send one message, and QUIT.

        ``message`` is an ``email.message.Message`` (sender and recipients default to
        its headers) or raw ``str``/``bytes`` (``sender`` and ``recipients`` required).
        ``client_options`` are the client's keyword arguments (``hostname``, ``port``,
        ``username``, ``password``, ``use_tls``, ``start_tls``, ``timeout``, ...).
        Returns ``(refused recipients, final reply text)``.
        """
        client_options.setdefault("hostname", "localhost")
        return await send_with(
            client_class(**client_options),
            message,
            sender=sender,
            recipients=recipients,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
        )

    return send


async def send_with(
    client: SMTPClientBase,
    message: email.message.Message | email.message.EmailMessage | str | bytes,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    mail_options: Iterable[str] | None = None,
    rcpt_options: Iterable[str] | None = None,
) -> tuple[dict[str, SMTPResponse], str]:
    """The body of the module-level ``send()``: connect, send one message, QUIT."""
    if isinstance(message, (str, bytes)):
        if not recipients:
            raise ValueError("Recipients must be provided with raw messages.")
        if not sender:
            raise ValueError("Sender must be provided with raw messages.")
    async with client:
        # One message, then QUIT: with PIPELINING, QUIT rides with the end of data.
        client._quit_after_next = True
        if isinstance(message, (str, bytes)):
            assert sender is not None and recipients is not None
            return await client.sendmail(
                sender, recipients, message, mail_options=mail_options, rcpt_options=rcpt_options
            )
        return await client.send_message(
            message,
            sender=sender,
            recipients=recipients,
            mail_options=mail_options,
            rcpt_options=rcpt_options,
        )
