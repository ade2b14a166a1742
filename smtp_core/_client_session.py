"""The client's session room: configuration, connecting, the session's state, closing.

Turns on the connection and the trampoline that drives flows are in
:mod:`._client_turns`, which this builds on.
"""

from __future__ import annotations

import abc
import re
import warnings
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, TypeVar

from ._client_turns import Timeout, Timeouts, Transport, TurnsBase
from ._connection import ClientConnection, hello_command
from ._errors import LocalProtocolError
from ._exceptions import (
    SMTPConnectError,
    SMTPConnectTimeoutError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from ._flows import greeting, hello
from ._native import caused_by, mypyc_attr
from ._replies import Reply
from ._response import Default, SMTPResponse, SMTPTokenGenerator, _default
from ._transaction import DEFAULT_WINDOW

__all__ = [
    "SessionBase",
    "Transport",
    "ConnectOptions",
    "Timeouts",
    "Timeout",
    "SMTP_PORT",
    "SMTP_TLS_PORT",
    "SMTP_STARTTLS_PORT",
    "DEFAULT_TIMEOUT",
    "validate_local_hostname",
    "response",
]

SMTP_PORT = 25
SMTP_TLS_PORT = 465
SMTP_STARTTLS_PORT = 587
DEFAULT_TIMEOUT = 60

_SelfT = TypeVar("_SelfT", bound="SessionBase")

# The limits of a client given none (frozen, so every such client shares it).
_NO_TIMEOUTS: Final = Timeouts()

def response(reply: Reply) -> SMTPResponse:
    """aiosmtplib's ``SMTPResponse`` for a reply."""
    # The named tuple's own __new__ is Python code that calls this.
    return _new_tuple(SMTPResponse, (reply.code, reply.message))


_new_tuple: Final = tuple.__new__


# Whitespace (the same test as str.isspace: \s in a str pattern), controls, DEL.
_PROHIBITED_IN_HOSTNAME = re.compile(r"[\s\x00-\x1f\x7f]")


def validate_local_hostname(hostname: str) -> str:
    """Strip whitespace around a local host name and refuse control characters inside."""
    if type(hostname) is not str:
        return _check_local_hostname(hostname)  # (a str subclass: checked as it is each time)
    known = _CHECKED_NAMES.get(hostname)
    if known is not None:
        return known  # a program gives one name to every client it makes
    checked = _check_local_hostname(hostname)
    if len(_CHECKED_NAMES) >= _CACHED_NAMES:
        _CHECKED_NAMES.clear()
    _CHECKED_NAMES[hostname] = checked
    return checked


_CHECKED_NAMES: Final[dict[str, str]] = {}  # local host names accepted, and as stripped
_CACHED_NAMES: Final = 16


def _check_local_hostname(hostname: str) -> str:
    hostname = hostname.strip()
    if hostname == "":
        raise ValueError("The local_hostname param must not be empty")
    if _PROHIBITED_IN_HOSTNAME.search(hostname):
        raise ValueError(
            "The local_hostname param contains prohibited whitespace or control characters"
        )
    return hostname


@dataclass(init=False)
class ConnectOptions:
    """Everything :meth:`SessionBase._open_transport` needs to open a transport."""

    hostname: str
    port: int | None
    use_tls: bool
    tls_context: Any
    server_hostname: str | None
    socket_path: Any
    sock: Any
    source_address: tuple[str, int] | None
    timeout: float | None

    # Written out: the generated one would run interpreted in the compiled build.
    def __init__(
        self,
        hostname: str,
        port: int | None,
        use_tls: bool,
        tls_context: Any,
        server_hostname: str | None,
        socket_path: Any,
        sock: Any,
        source_address: tuple[str, int] | None,
        timeout: float | None,
    ) -> None:
        self.hostname = hostname
        self.port = port
        self.use_tls = use_tls
        self.tls_context = tls_context
        self.server_hostname = server_hostname
        self.socket_path = socket_path
        self.sock = sock
        self.source_address = source_address
        self.timeout = timeout


@mypyc_attr(allow_interpreted_subclasses=True)
class SessionBase(TurnsBase):
    """Configuration, connection and the session's state; the commands and sending build on it.

    Its private methods call each other as ``SessionBase._method(self, ...)`` (and
    ``TurnsBase._method``): compiled, a call through ``self`` goes through Python's
    attribute lookup, since an interpreted subclass could override the method; these
    are never overridden, and a direct call costs nothing of the kind.
    """

    #: True for LMTP (RFC 2033): LHLO, and one reply per recipient after the content.
    _lmtp: ClassVar[bool] = False

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
        pipeline_window: int = DEFAULT_WINDOW,
    ) -> None:
        if loop is not None:
            warnings.warn(
                "the loop argument is deprecated and ignored", DeprecationWarning, stacklevel=2
            )
        if pipeline_window < 1:
            raise ValueError("pipeline_window must be at least 1")
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
        self.timeouts = timeouts if timeouts is not None else _NO_TIMEOUTS
        #: Most whole transactions on the wire at once (servers with PIPELINING and CHUNKING).
        self.pipeline_window = pipeline_window

        TurnsBase._init_turns(self)
        self._users = 0  # callers inside ``async with client``
        self.last_helo_response: SMTPResponse | None = None
        self._last_ehlo_response: SMTPResponse | None = None
        self.esmtp_extensions: dict[str, str] = {}
        self.supports_esmtp = False
        self.server_auth_methods: list[str] = []
        self._ehlo_checked: tuple[str, str] | None = None  # (local_hostname, its EHLO name)
        SessionBase._validate_config(self)

    # -- what an adapter provides ----------

    @abc.abstractmethod
    async def _open_transport(self, options: ConnectOptions) -> Transport:
        """Connect (and for implicit TLS, handshake); map failures to SMTPConnectError."""

    @abc.abstractmethod
    async def _default_local_hostname(self) -> str:
        """The local machine's fully qualified name, without blocking the loop."""

    # -- configuration ----------

    def _update_settings_from_kwargs(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            if value is _default:
                continue
            if key in ("use_tls", "validate_certs"):
                if value is not None:
                    setattr(self, key, value)
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
        hostname = self.hostname
        if hostname is not None and ("\r" in hostname or "\n" in hostname or "\0" in hostname):
            raise ValueError("The hostname param contains prohibited newline characters")

    def _get_default_port(self) -> int:
        if self.use_tls:
            return SMTP_TLS_PORT
        if self._start_tls_on_connect:
            return SMTP_STARTTLS_PORT
        return SMTP_PORT

    # -- state ----------

    @property
    def transport(self) -> Any:
        """The underlying transport (as in aiosmtplib), or None when not connected.

        On asyncio, the event loop's transport (an SSL transport once TLS is active),
        with ``get_extra_info()``; on anyio, an object with the same methods.
        """
        return self._transport.transport if self._transport is not None else None

    @property
    def protocol(self) -> Any:
        """The adapter's stream object under the client, or None when not connected.

        smtp-sansio's protocol machine is :attr:`protocol_connection`; this is the byte
        stream it runs over (aiosmtplib programs read ``smtp.protocol`` to check for a
        connection).
        """
        return self._transport

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
        return self._last_ehlo_response is None and self.last_helo_response is None

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

    # -- turns ----------

    async def __aenter__(self: _SelfT) -> _SelfT:
        self._users += 1
        try:
            async with TurnsBase._turn(self):
                if not self.is_connected:
                    await self.connect()
        except BaseException:
            self._users -= 1
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._users = max(0, self._users - 1)
        if self._users:
            return  # another caller still uses the session
        if isinstance(exc, (ConnectionError, TimeoutError)):
            await SessionBase._abort(self)
            return
        failure: BaseException | None = None
        try:
            if self.is_connected:
                await self.quit()
        except (SMTPServerDisconnected, SMTPResponseException, SMTPTimeoutError):
            pass
        except BaseException as caught:
            failure = caught
        # Awaited after the handler, not in it (see smtp_core._native).
        await SessionBase._abort(self)
        if failure is not None:
            raise failure

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

        Options given here override those given to the constructor and are kept for
        later connections, except ``timeout``, which applies to this connect only.
        With ``start_tls=None`` the connection is upgraded when the server offers
        STARTTLS; ``True`` requires it (``SMTPException`` when not offered); ``False``
        never.
        """
        if not (
            hostname is _default
            and port is _default
            and username is _default
            and password is _default
            and oauth_token_generator is _default
            and local_hostname is _default
            and source_address is _default
            and use_tls is None
            and start_tls is _default
            and validate_certs is None
            and client_cert is _default
            and client_key is _default
            and tls_context is _default
            and cert_bundle is _default
            and socket_path is _default
            and sock is _default
        ):
            # (Not for ``async with client``: connect() without arguments.)
            SessionBase._update_settings_from_kwargs(
                self,
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
        SessionBase._validate_config(self)
        async with TurnsBase._turn(self):
            if self.is_connected:
                raise SMTPException("SMTP instance is already connected")
            if self._transport is not None:
                await SessionBase._abort(self)  # a session the server ended: release it, forget it
            if self.local_hostname is None:
                self.local_hostname = validate_local_hostname(await self._default_local_hostname())
            failure: BaseException | None = None
            try:
                limit = TurnsBase._timeout(self, timeout)
                response = await SessionBase._create_connection(self, limit)
                await self._maybe_start_tls_on_connect(timeout)
                await self._maybe_login_on_connect(timeout)
            except BaseException as exc:
                failure = exc
            if failure is not None:
                # Awaited after the handler, not in it (see smtp_core._native).
                await SessionBase._abort(self)
                raise failure
        return response

    async def _create_connection(self, timeout: float | None) -> SMTPResponse:
        hostname = self.hostname or "localhost"
        port = self.port
        if self.sock is None and self.socket_path is None and port is None:
            port = self._get_default_port()
        connect_timeout = self.timeouts.connect if self.timeouts.connect is not None else timeout
        if connect_timeout is not None and connect_timeout <= 0:
            raise SMTPConnectTimeoutError(f"Timed out connecting to {hostname} on port {port}")
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
        conn = self._conn = ClientConnection(
            local_hostname=SessionBase._ehlo_name(self), lmtp=self._lmtp
        )
        if self.use_tls:
            conn.mark_tls()
        try:
            greeting_timeout = self.timeouts.greeting
            limit = timeout if greeting_timeout is None else greeting_timeout
            reply = await TurnsBase._run(self, greeting(conn), limit)
        except SMTPServerDisconnected as exc:
            raise caused_by(  # noqa: B904 - mypyc ignores ``from``
                SMTPConnectError(f"Error connecting to {hostname} on port {port}: {exc}"), exc
            )
        except SMTPTimeoutError as exc:
            raise caused_by(  # noqa: B904 - mypyc ignores ``from``
                SMTPConnectTimeoutError("Timed out waiting for server ready message"), exc
            )
        return response(reply)

    def _ehlo_name(self) -> str | None:
        """The name for EHLO: ``local_hostname``, or an address literal if it is not a domain."""
        name = self.local_hostname
        if name is None:
            return None
        checked = self._ehlo_checked
        if checked is not None and checked[0] == name:
            return checked[1]  # a client connects under one name, again and again
        try:
            hello_command(name)
            ehlo_name = name
        except LocalProtocolError:
            ehlo_name = "[127.0.0.1]"
        self._ehlo_checked = (name, ehlo_name)
        return ehlo_name

    @abc.abstractmethod
    async def quit(self, *, timeout: Timeout = _default) -> SMTPResponse:
        """QUIT, then close (see the commands)."""

    @abc.abstractmethod
    async def _maybe_start_tls_on_connect(self, timeout: Timeout) -> None:
        """STARTTLS after the greeting, as configured (see the commands)."""

    @abc.abstractmethod
    async def _maybe_login_on_connect(self, timeout: Timeout) -> None:
        """Log in after connecting, as configured (see AUTH)."""

    async def _ehlo_or_helo_if_needed(self, timeout: Timeout = _default) -> None:
        if self._last_ehlo_response is None and self.last_helo_response is None:
            conn = TurnsBase._require_connection(self)
            reply = await TurnsBase._run(self, hello(conn, self.local_hostname), timeout)
            SessionBase._record_hello(self, reply)

    def _record_hello(self, reply: Reply) -> None:
        conn = self._conn
        if conn is not None and conn.extended:
            self._last_ehlo_response = response(reply)
        else:
            self.last_helo_response = response(reply)
        SessionBase._sync_capabilities(self)

    def close(self) -> None:
        """Close the connection at once (no QUIT) and forget the server's state."""
        transport, self._transport = self._transport, None
        self._conn = None
        TurnsBase._forget_pipe(self)
        if transport is not None:
            transport.close()
        SessionBase._reset_server_state(self)

    async def aclose_quietly(self) -> None:
        """Close the connection (no QUIT) and release the transport; never raises."""
        await self._abort()

    async def _abort(self) -> None:
        """Close from async code: also releases the transport's resources (even when cancelled)."""
        transport, self._transport = self._transport, None
        self._conn = None
        TurnsBase._forget_pipe(self)
        SessionBase._reset_server_state(self)
        if transport is not None:
            await transport.aclose()
