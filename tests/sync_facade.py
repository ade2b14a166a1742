"""smtp_sync behind the awaitable, aiosmtplib-shaped API the behavioural tests are written in.

The behavioural modules run on every adapter through ``adapter.module``; for the
``sync`` entry that module is this one. Each awaitable method here makes exactly one
call into :mod:`smtp_sync` (``connect`` a fixed sequence of them, listed below) in a
worker thread (``asyncio.to_thread``), so calls that the tests make concurrently are
concurrent blocking calls on one shared smtp_sync client, as threads would make them.

What the facade does, and all it does:

* **arguments**: aiosmtplib's names become smtplib's (``hostname``/``port`` ->
  ``host``/``port``, ``use_tls=True`` -> ``SMTP_SSL``, ``tls_context``/``cert_bundle``/
  ``validate_certs``/``client_cert``/``client_key`` -> one ``ssl.SSLContext``,
  ``socket_path`` -> a ``host`` that is a path, ``sock`` -> the socket ``_get_socket``
  returns, ``mail_options``/``rcpt_options``/``options`` -> the same lists; the
  pool's awaitable ``sleep=`` -> a blocking one that runs it).
* **calls**: ``auth_plain``/``auth_login``/``auth_crammd5``/``auth_xoauth2`` are
  ``auth(name, mechanism)`` with smtp_core's mechanism objects (smtp_sync's ``auth``
  takes any ``SASLMechanism``); ``send_message``/``send_messages`` are smtp_sync's
  ``send_message_detailed``/``send_messages_detailed``, which also have the final
  reply; ``execute_command(*args)`` is ``docmd(first, " ".join(rest))``.
* **results**: smtplib's ``(code, bytes)`` becomes ``SMTPResponse(code, str)``
  (decoded as smtp_sync encoded it: UTF-8 with surrogateescape); the refused dict
  ``{rcpt: (code, bytes)}`` becomes ``{rcpt: SMTPResponse}``; ``sendmail`` returns
  ``(refused, final reply text)``, read from ``sendmail_detailed``'s typed result,
  whose refusal (``result.error``) is raised, as ``smtp_sync.SMTP.sendmail`` does.
* **names**: each aiosmtplib exception name is bound to the smtp_sync class that
  plays that role (listed at the end). Exceptions are never swallowed, converted or
  retried: what a test sees is what smtp_sync raised. Two places touch them, both
  aiosmtplib's ``connect()`` contract: a greeting other than 220 raises
  ``smtp_sync.SMTPConnectError`` (what smtplib's constructor raises), and when a
  step of ``connect()`` raises, the client is closed and the same exception goes on.

What smtp_sync deliberately does not have (per-call ``timeout=``, ``dsn=``, the
module-level ``send()``, OAuth token generators...) raises :class:`NotInSmtpSync`, a ``BaseException`` no test
catches: a test that meets one fails loudly until it is marked
``@pytest.mark.not_on_sync("why")``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import smtp_sync
from smtp_core import CramMD5, Login, Plain, SASLMechanism, XOAuth2
from smtp_core._response import SMTPResponse
from smtp_core.flows import TransactionResult

T = TypeVar("T")
_SelfT = TypeVar("_SelfT", bound="SMTP")


class NotInSmtpSync(BaseException):
    """The test used a part of aiosmtplib's API that smtp_sync does not have."""


def _refuse(what: str, **given: Any) -> None:
    used = sorted(name for name, value in given.items() if value is not None)
    if used:
        raise NotInSmtpSync(f"smtp_sync has no {what}: {', '.join(used)}")


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One blocking smtp_sync call, in a worker thread."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def _text(message: bytes) -> str:
    return message.decode("utf-8", "surrogateescape")


def _response(reply: tuple[int, bytes]) -> SMTPResponse:
    code, message = reply
    return SMTPResponse(code, _text(message))


def _refused(refused: dict[str, tuple[int, bytes]]) -> dict[str, SMTPResponse]:
    return {rcpt: _response(reply) for rcpt, reply in refused.items()}


def _sent(result: TransactionResult) -> tuple[dict[str, SMTPResponse], str]:
    """aiosmtplib's ``(refused, final text)`` from smtp_sync's typed result.

    ``smtp_sync.SMTP.sendmail`` is ``sendmail_detailed`` plus ``raise result.error``
    plus the refused dict; the typed call is used because it also has the final reply.
    """
    if result.error is not None:
        raise result.error
    assert result.data_reply is not None
    refused = {r: SMTPResponse(reply.code, reply.message) for r, reply in result.refused.items()}
    return refused, result.data_reply.message


def refusals(exc: BaseException) -> list[tuple[int, str]]:
    """``(code, recipient)`` per refusal of an ``SMTPRecipientsRefused``, whichever shape
    its ``recipients`` has: aiosmtplib's list of exceptions, or smtplib's dict of
    ``{recipient: (code, bytes)}`` (smtp_sync's, which keeps smtplib's attribute)."""
    recipients: Any = exc.recipients  # type: ignore[attr-defined]
    if isinstance(recipients, dict):
        return [(code, rcpt) for rcpt, (code, _) in recipients.items()]
    return [(e.code, e.recipient) for e in recipients]


def _context(
    tls_context: ssl.SSLContext | None,
    cert_bundle: str | None,
    validate_certs: bool,
    client_cert: str | None,
    client_key: str | None,
) -> ssl.SSLContext:
    """The one ``ssl.SSLContext`` aiosmtplib's TLS arguments describe."""
    if tls_context is not None:
        return tls_context
    context = ssl.create_default_context(cafile=cert_bundle)
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)
    return context


class SMTP:
    """aiosmtplib's ``SMTP`` calls, each made on one ``smtp_sync.SMTP`` in a worker thread."""

    _sync_class: type[smtp_sync.SMTP] = smtp_sync.SMTP

    def __init__(
        self,
        hostname: str | None = None,
        port: int | None = None,
        *,
        local_hostname: str | None = None,
        timeout: float | None = 60.0,
        timeouts: smtp_sync.Timeouts | None = None,
        start_tls: bool | None = None,
        use_tls: bool = False,
        validate_certs: bool = True,
        cert_bundle: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        source_address: tuple[str, int] | None = None,
        sock: Any = None,
        socket_path: str | None = None,
        oauth_token_generator: Any = None,
        loop: Any = None,
    ) -> None:
        _refuse("OAuth token generator or event loop", oauth_token_generator=oauth_token_generator, loop=loop)
        self.hostname = hostname or ""
        self.port = port or 0
        self.start_tls = start_tls
        self.username = username
        self.password = password
        self._socket_path = socket_path
        self._context = _context(tls_context, cert_bundle, validate_certs, client_cert, client_key)
        cls: type[smtp_sync.SMTP] = smtp_sync.SMTP_SSL if use_tls else self._sync_class
        if sock is not None:
            cls = _on_socket(cls, sock)
        options: dict[str, Any] = {"timeout": timeout, "context": self._context, "timeouts": timeouts}
        if local_hostname is not None:
            options["local_hostname"] = local_hostname
        if source_address is not None:
            options["source_address"] = source_address
        #: The smtp_sync client: made here (unconnected, as smtplib's ``SMTP()``).
        self.client: smtp_sync.SMTP = cls(**options)

    # -- context manager: ``async with`` is ``connect()`` ... ``with client:`` ----------

    async def __aenter__(self: _SelfT) -> _SelfT:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await _call(self.client.__exit__, exc_type, exc, traceback)  # QUIT, then close

    # -- connecting ----------

    async def connect(self, *, hostname: str | None = None, port: int | None = None, **given: Any) -> SMTPResponse:
        """smtplib's sequence for aiosmtplib's ``connect()``: ``connect(host, port)``
        (the greeting; not 220 is ``SMTPConnectError``, as smtplib's constructor
        raises); with ``start_tls`` True, ``starttls()``; with None,
        ``ehlo_or_helo_if_needed()`` and ``starttls()`` if offered; with a username,
        ``login()``. aiosmtplib's ``connect`` is all or nothing: when a step raises, the
        client is closed and the exception goes on unchanged."""
        _refuse("per-call argument to connect() (smtplib takes them in the constructor)", **given)
        self.hostname = hostname or self.hostname  # kept, as aiosmtplib keeps them
        self.port = port or self.port
        client = self.client
        try:
            code, message = await _call(client.connect, self._socket_path or self.hostname, self.port)
            if code != 220:
                raise smtp_sync.SMTPConnectError(code, message)
            if self.start_tls is None:
                await _call(client.ehlo_or_helo_if_needed)
                if client.has_extn("starttls"):
                    await _call(client.starttls, context=self._context)
            elif self.start_tls:
                await _call(client.starttls, context=self._context)
            if self.username is not None:
                await _call(client.login, self.username, self.password or "")
        except BaseException:
            client.close()
            raise
        return SMTPResponse(code, _text(message))

    def close(self) -> None:
        self.client.close()

    async def quit(self) -> SMTPResponse:
        return _response(await _call(self.client.quit))

    # -- state ----------

    @property
    def is_connected(self) -> bool:
        return self.client.sock is not None

    @property
    def supports_esmtp(self) -> bool:
        return self.client.does_esmtp

    def supports_extension(self, extension: str) -> bool:
        return self.client.has_extn(extension)

    @property
    def esmtp_extensions(self) -> dict[str, str]:
        return self.client.esmtp_features

    @property
    def server_auth_methods(self) -> list[str]:
        return self.client.esmtp_features.get("auth", "").lower().split()

    @property
    def is_ehlo_or_helo_needed(self) -> bool:
        return self.client.ehlo_resp is None and self.client.helo_resp is None

    @property
    def protocol_connection(self) -> Any:
        return self.client.protocol_connection

    def get_transport_info(self, key: str) -> Any:
        """asyncio's transport information, from the socket: ``sslcontext``, ``peername``
        and ``sockname``."""
        sock = self.client.sock
        if sock is None:
            return None
        if key == "sslcontext":
            return sock.context if isinstance(sock, ssl.SSLSocket) else None
        if key == "peername":
            return sock.getpeername()
        if key == "sockname":
            return sock.getsockname()
        raise NotInSmtpSync(f"no transport information {key!r} from a socket")

    # -- commands: smtplib returns every reply, error codes included ----------

    async def ehlo(self, hostname: str | None = None, **given: Any) -> SMTPResponse:
        _refuse("per-call timeout", **given)
        return _response(await _call(self.client.ehlo, hostname or ""))

    async def helo(self, hostname: str | None = None, **given: Any) -> SMTPResponse:
        _refuse("per-call timeout", **given)
        return _response(await _call(self.client.helo, hostname or ""))

    async def noop(self, **given: Any) -> SMTPResponse:
        _refuse("per-call timeout", **given)
        return _response(await _call(self.client.noop))

    async def rset(self, **given: Any) -> SMTPResponse:
        _refuse("per-call timeout", **given)
        return _response(await _call(self.client.rset))

    async def help(self, **given: Any) -> str:
        _refuse("per-call timeout", **given)
        return _text(await _call(self.client.help))

    async def vrfy(self, address: str, **given: Any) -> SMTPResponse:
        _refuse("per-call option", **given)
        return _response(await _call(self.client.verify, address))

    async def expn(self, address: str, **given: Any) -> SMTPResponse:
        _refuse("per-call option", **given)
        return _response(await _call(self.client.expn, address))

    async def execute_command(self, *args: bytes, **given: Any) -> SMTPResponse:
        """``docmd(verb, arguments)``: the first word, then the others joined by spaces."""
        _refuse("per-call timeout", **given)
        words = [arg.decode("utf-8", "surrogateescape") for arg in args]
        return _response(await _call(self.client.docmd, words[0], " ".join(words[1:])))

    async def mail(self, sender: str, options: Iterable[str] | None = None, **given: Any) -> SMTPResponse:
        _refuse("per-call option", **given)
        return _response(await _call(self.client.mail, sender, list(options or ())))

    async def rcpt(self, recipient: str, options: Iterable[str] | None = None, **given: Any) -> SMTPResponse:
        _refuse("per-call option", **given)
        return _response(await _call(self.client.rcpt, recipient, list(options or ())))

    async def data(self, message: str | bytes, **given: Any) -> SMTPResponse:
        _refuse("per-call timeout", **given)
        return _response(await _call(self.client.data, message))

    async def starttls(self, **given: Any) -> SMTPResponse:
        _refuse("per-call TLS argument", **given)
        return _response(await _call(self.client.starttls, context=self._context))

    # -- AUTH: ``login``; one mechanism is smtplib's ``auth(name, authobject)`` ----------

    async def login(self, username: str, password: str, **given: Any) -> SMTPResponse:
        _refuse("per-call timeout", **given)
        return _response(await _call(self.client.login, username, password))

    async def auth(self, mechanism: SASLMechanism, **given: Any) -> SMTPResponse:
        _refuse("per-call timeout", **given)
        return _response(await _call(self.client.auth, mechanism.name, mechanism))

    async def auth_plain(self, username: str, password: str) -> SMTPResponse:
        return await self.auth(Plain(username, password))

    async def auth_login(self, username: str, password: str) -> SMTPResponse:
        return await self.auth(Login(username, password))

    async def auth_crammd5(self, username: str, password: str) -> SMTPResponse:
        return await self.auth(CramMD5(username, password))

    async def auth_xoauth2(self, username: str, token: str) -> SMTPResponse:
        return await self.auth(XOAuth2(username, token))

    # -- sending ----------

    async def sendmail(
        self,
        sender: str,
        recipients: str | list[str],
        message: Any,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        *,
        progress: Any = None,
        **given: Any,
    ) -> tuple[dict[str, SMTPResponse], str]:
        return _sent(await self.sendmail_detailed(sender, recipients, message, mail_options, rcpt_options, progress=progress, **given))

    async def sendmail_detailed(
        self,
        sender: str,
        recipients: str | list[str],
        message: Any,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        *,
        progress: Any = None,
        **given: Any,
    ) -> TransactionResult:
        _refuse("per-call argument to sendmail()", **given)
        return await _call(
            self.client.sendmail_detailed, sender, recipients, message,
            list(mail_options or ()), list(rcpt_options or ()), progress=progress,
        )

    async def send_message(
        self,
        message: Any,
        sender: str | None = None,
        recipients: str | list[str] | None = None,
        mail_options: Iterable[str] | None = None,
        rcpt_options: Iterable[str] | None = None,
        **given: Any,
    ) -> tuple[dict[str, SMTPResponse], str]:
        _refuse("per-call argument to send_message()", **given)
        result = await _call(
            self.client.send_message_detailed, message, sender, recipients,
            list(mail_options or ()), list(rcpt_options or ()),
        )
        return _sent(result)

    async def send_messages(self, messages: Iterable[Any], **given: Any) -> list[Any]:
        """``send_messages_detailed``: per message ``(refused, final text)`` or its exception."""
        _refuse("per-call argument to send_messages()", **given)
        results = await _call(self.client.send_messages_detailed, list(messages))
        return [r if isinstance(r, BaseException) else _sent(r) for r in results]

    def sendmail_sync(self, *args: Any, **kwargs: Any) -> Any:
        raise NotInSmtpSync("sendmail_sync: smtp_sync's sendmail is the blocking call")

    send_message_sync = sendmail_sync


class LMTP(SMTP):
    """aiosmtplib's ``LMTP`` calls on ``smtp_sync.LMTP``."""

    _sync_class = smtp_sync.LMTP


def _on_socket(cls: type[smtp_sync.SMTP], sock: Any) -> type[smtp_sync.SMTP]:
    """``cls`` whose ``connect()`` uses ``sock`` (smtplib's ``_get_socket`` hook, which
    ``SMTP_SSL`` and ``LMTP`` override the same way)."""

    class OnSocket(cls):  # type: ignore[valid-type,misc]
        def _get_socket(self, host: str, port: int, timeout: float | None) -> Any:
            return sock

    return OnSocket


class SMTPPool:
    """aiosmtplib-shaped pool calls on ``smtp_sync.SMTPPool`` (``hostname`` -> ``host``,
    ``use_tls`` -> ``client_class=SMTP_SSL``, ``start_tls=True`` -> ``starttls=True``,
    TLS arguments -> ``context``, other client options as ``smtp_options``)."""

    def __init__(
        self,
        hostname: str,
        port: int = 0,
        *,
        use_tls: bool = False,
        start_tls: bool | None = None,
        tls_context: ssl.SSLContext | None = None,
        cert_bundle: str | None = None,
        validate_certs: bool = True,
        username: str | None = None,
        password: str | None = None,
        rate_limit: Any = None,
        clock: Any = None,
        sleep: Any = None,
        **options: Any,
    ) -> None:
        if use_tls and start_tls:
            raise NotInSmtpSync("use_tls with start_tls: smtp_sync's pool has no such check")
        context = _context(tls_context, cert_bundle, validate_certs, None, None)
        self.pool = smtp_sync.SMTPPool(
            hostname, port, client_class=smtp_sync.SMTP_SSL if use_tls else smtp_sync.SMTP,
            starttls=bool(start_tls), username=username, password=password, context=context,
            rate_limit=rate_limit, clock=clock, sleep=None if sleep is None else _blocking(sleep),
            **options,
        )

    async def __aenter__(self) -> SMTPPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await _call(self.pool.close)

    async def expire_idle(self) -> None:
        await _call(self.pool.expire_idle)

    @property
    def connections(self) -> int:
        return self.pool.connections

    @property
    def stats(self) -> dict[str, int]:
        return self.pool.stats

    async def sendmail(
        self, sender: str, recipients: str | list[str], message: Any,
        mail_options: Iterable[str] | None = None, rcpt_options: Iterable[str] | None = None, **given: Any,
    ) -> tuple[dict[str, SMTPResponse], str]:
        return _sent(await self.sendmail_detailed(sender, recipients, message, mail_options, rcpt_options, **given))

    async def sendmail_detailed(
        self, sender: str, recipients: str | list[str], message: Any,
        mail_options: Iterable[str] | None = None, rcpt_options: Iterable[str] | None = None, **given: Any,
    ) -> TransactionResult:
        _refuse("per-call argument to the pool's sendmail()", **given)
        return await _call(
            self.pool.sendmail_detailed, sender, recipients, message,
            list(mail_options or ()), list(rcpt_options or ()),
        )


def _blocking(sleep: Callable[[float], Any]) -> Callable[[float], None]:
    """A test's awaitable ``sleep`` as the blocking one smtp_sync's pool calls (in the
    worker thread, which has no event loop of its own)."""

    def blocking_sleep(seconds: float) -> None:
        asyncio.run(sleep(seconds))

    return blocking_sleep


async def send(*args: Any, **kwargs: Any) -> Any:
    raise NotInSmtpSync("a module-level send(): smtplib has none")


# aiosmtplib's names for the classes smtp_sync raises in each role.
Timeouts = smtp_sync.Timeouts
Outcome = smtp_sync.Outcome
TransactionResult = TransactionResult
SMTPException = smtp_sync.SMTPException
SMTPServerDisconnected = smtp_sync.SMTPServerDisconnected
SMTPResponseException = smtp_sync.SMTPResponseException
SMTPSenderRefused = smtp_sync.SMTPSenderRefused
SMTPRecipientsRefused = smtp_sync.SMTPRecipientsRefused
SMTPDataError = smtp_sync.SMTPDataError
SMTPHeloError = smtp_sync.SMTPHeloError
SMTPAuthenticationError = smtp_sync.SMTPAuthenticationError
SMTPNotSupported = smtp_sync.SMTPNotSupportedError
SMTPConnectError = smtp_sync.SMTPConnectError  # smtplib's: the greeting was not 220
SMTPConnectResponseError = smtp_sync.SMTPConnectError  # the same role in aiosmtplib
# smtp_sync has one timeout class (smtplib has none): every stage's limit raises it.
SMTPTimeoutError = smtp_sync.SMTPTimeoutError
SMTPReadTimeoutError = smtp_sync.SMTPTimeoutError
SMTPConnectTimeoutError = smtp_sync.SMTPTimeoutError


def __getattr__(name: str) -> Any:
    if name.startswith("_"):  # Python's and pytest's own look-ups
        raise AttributeError(name)
    raise NotInSmtpSync(f"smtp_sync has no counterpart of aiosmtplib's {name}")
