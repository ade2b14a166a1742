"""The client's plain commands: HELO/EHLO, HELP, RSET, NOOP, VRFY, EXPN, MAIL, RCPT, DATA,
STARTTLS, QUIT and any command line. Each call takes its turn on the connection."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from ._client_session import SessionBase, Timeout, response, validate_local_hostname
from ._commands import Expn, Help, Mail, Noop, Rcpt, Rset, Vrfy, parse_command
from ._exceptions import (
    SMTPException,
    SMTPNotSupported,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
)
from ._flows import command, starttls
from ._flows import ehlo as ehlo_flow
from ._flows import helo as helo_flow
from ._flows import lhlo as lhlo_flow
from ._flows import quit as quit_flow
from ._native import mypyc_attr
from ._response import Default, SMTPResponse, _default
from ._transaction import data_flow

__all__ = ["CommandsMixin", "check_query_address"]

# Characters that would end an address on a command line or start a parameter,
# outside a quoted local part (aiosmtplib's rule for VRFY and EXPN arguments).
_INJECTION = re.compile(r'[\s<>"]')
_QUOTED_LOCAL_PART = re.compile(r'^"(?:[^"\\\r\n]|\\.)*"')


def check_query_address(address: str) -> None:
    """Refuse a VRFY/EXPN argument that could smuggle a parameter or a command.

    Raises ``ValueError`` for whitespace, ``<``, ``>`` or ``"`` outside a quoted local
    part (the argument is never "repaired").
    """
    if not isinstance(address, str):
        raise TypeError(f"address must be str, not {type(address).__name__}")
    unquoted = _QUOTED_LOCAL_PART.sub("", address, count=1)
    if _INJECTION.search(unquoted) or "\0" in address:
        raise ValueError(
            f"Address {address!r} contains characters not permitted in an SMTP mailbox"
        )


@mypyc_attr(allow_interpreted_subclasses=True)
class CommandsMixin(SessionBase):
    """aiosmtplib's command methods."""

    async def execute_command(
        self, *args: bytes | str, timeout: Timeout = _default
    ) -> SMTPResponse:
        """Send one command line (its words given as arguments) and return the reply.

        The line is validated like the typed commands (no CR, LF or NUL; addresses by
        RFC 5321 syntax) before anything is sent. A 421 reply closes the connection.
        """
        cmd = parse_command(*args)
        async with self._turn():
            return await self._reply(cmd, timeout)

    async def _reply(self, cmd: Any, timeout: Timeout) -> SMTPResponse:
        reply = await self._run(command(self._require_connection(), cmd), timeout)
        return response(reply)

    async def helo(
        self, *, hostname: str | None = None, timeout: Timeout = _default
    ) -> SMTPResponse:
        """HELO; raises ``SMTPHeloError`` unless the server answers 250."""
        name = self.local_hostname if hostname is None else validate_local_hostname(hostname)
        async with self._turn():
            reply = await self._run(helo_flow(self._require_connection(), name), timeout)
            self._last_ehlo_response = None
            self._record_hello(reply)
        return response(reply)

    async def ehlo(
        self, *, hostname: str | None = None, timeout: Timeout = _default
    ) -> SMTPResponse:
        """EHLO (LHLO on an LMTP client); raises ``SMTPHeloError`` unless the server answers 250."""
        name = self.local_hostname if hostname is None else validate_local_hostname(hostname)
        async with self._turn():
            conn = self._require_connection()
            flow = lhlo_flow(conn, name) if conn.lmtp else ehlo_flow(conn, name)
            reply = await self._run(flow, timeout)
            self.last_helo_response = None
            self._record_hello(reply)
        return response(reply)

    async def _after_hello(
        self, cmd: Any, timeout: Timeout, codes: tuple[int, ...]
    ) -> SMTPResponse:
        """EHLO if none was sent yet, then ``cmd``; ``SMTPResponseException`` unless ``codes``."""
        async with self._turn():
            await self._ehlo_or_helo_if_needed(timeout)
            result = await self._reply(cmd, timeout)
        if result.code not in codes:
            raise SMTPResponseException(result.code, result.message)
        return result

    async def help(self, *, timeout: Timeout = _default) -> str:
        """HELP; returns the help text."""
        return (await self._after_hello(Help(), timeout, (211, 214, 250))).message

    async def rset(self, *, timeout: Timeout = _default) -> SMTPResponse:
        """RSET: abandon the current mail transaction."""
        return await self._after_hello(Rset(), timeout, (250,))

    async def noop(self, *, timeout: Timeout = _default) -> SMTPResponse:
        """NOOP: check that the server is still there."""
        return await self._after_hello(Noop(), timeout, (250,))

    def _query(
        self, verb: type[Vrfy] | type[Expn], address: str, options: Iterable[str] | None
    ) -> Any:
        check_query_address(address)
        opts = list(options or ())
        wants_utf8 = any(opt.lower() == "smtputf8" for opt in opts)
        if wants_utf8 and not self.supports_extension("smtputf8"):
            raise SMTPNotSupported("SMTPUTF8 is not supported by this server")
        if not wants_utf8:
            address.encode("ascii")  # UnicodeEncodeError, as aiosmtplib raises
        for option in opts:
            option.encode("ascii")
        return verb(" ".join([address, *opts]))

    async def vrfy(
        self, address: str, /, *, options: Iterable[str] | None = None, timeout: Timeout = _default
    ) -> SMTPResponse:
        """VRFY: ask the server whether ``address`` is valid.

        ``ValueError`` for an address that could carry a parameter or a command.
        """
        check_query_address(address)
        async with self._turn():
            await self._ehlo_or_helo_if_needed(timeout)
            result = await self._reply(self._query(Vrfy, address, options), timeout)
        if result.code not in (250, 251, 252):
            raise SMTPResponseException(result.code, result.message)
        return result

    async def expn(
        self, address: str, /, *, options: Iterable[str] | None = None, timeout: Timeout = _default
    ) -> SMTPResponse:
        """EXPN: ask the server to expand a mailing list.

        ``ValueError`` for an address that could carry a parameter or a command.
        """
        check_query_address(address)
        async with self._turn():
            await self._ehlo_or_helo_if_needed(timeout)
            result = await self._reply(self._query(Expn, address, options), timeout)
        if result.code != 250:
            raise SMTPResponseException(result.code, result.message)
        return result

    async def quit(self, *, timeout: Timeout = _default) -> SMTPResponse:
        """QUIT, then close the connection."""
        async with self._turn():
            conn = self._require_connection()
            failure: BaseException | None = None
            try:
                reply = await self._run(quit_flow(conn), timeout)
            except BaseException as exc:
                failure = exc
            # Awaited after the handler, not in it (see smtp_core._native).
            await self._abort()
            if failure is not None:
                raise failure
        return response(reply)

    def _check_address_encoding(self, address: str, encoding: str) -> None:
        """aiosmtplib encodes addresses with ``encoding``: ASCII refuses other characters
        (``UnicodeEncodeError``); UTF-8 needs the server's SMTPUTF8."""
        address.encode(encoding)
        if not address.isascii() and not self.supports_extension("smtputf8"):
            raise SMTPNotSupported("SMTPUTF8 is not supported by this server")

    async def mail(
        self,
        sender: object,
        /,
        *,
        options: Iterable[str] | None = None,
        encoding: str = "ascii",
        timeout: Timeout = _default,
    ) -> SMTPResponse:
        """MAIL FROM: start a mail transaction; raises ``SMTPSenderRefused`` unless 250.

        ``options`` go to the server as written (checked for syntax, CR, LF and NUL),
        whatever extensions it advertised: the server answers them.
        """
        address: Any = sender  # any type: Mail refuses what is not a str
        cmd = Mail(address, tuple(options or ()), advertised_only=False)
        async with self._turn():
            await self._ehlo_or_helo_if_needed(timeout)
            self._check_address_encoding(cmd.sender, encoding)
            result = await self._reply(cmd, timeout)
        if result.code != 250:
            raise SMTPSenderRefused(result.code, result.message, cmd.sender)
        return result

    async def rcpt(
        self,
        recipient: object,
        /,
        *,
        options: Iterable[str] | None = None,
        encoding: str = "ascii",
        timeout: Timeout = _default,
    ) -> SMTPResponse:
        """RCPT TO: add a recipient; raises ``SMTPRecipientRefused`` unless 250 or 251.

        ``options`` go to the server as written (checked for syntax, CR, LF and NUL).
        """
        address: Any = recipient  # any type: Rcpt refuses what is not a str
        cmd = Rcpt(address, tuple(options or ()), advertised_only=False)
        async with self._turn():
            await self._ehlo_or_helo_if_needed(timeout)
            self._check_address_encoding(cmd.recipient, encoding)
            result = await self._reply(cmd, timeout)
        if result.code not in (250, 251):
            raise SMTPRecipientRefused(result.code, result.message, cmd.recipient)
        return result

    async def data(self, message: str | bytes, /, *, timeout: Timeout = _default) -> SMTPResponse:
        """DATA and the message content; raises ``SMTPDataError`` on refusal."""
        content = message.encode("ascii") if isinstance(message, str) else bytes(message)
        async with self._turn():
            self._require_connection("Connection lost")
            await self._ehlo_or_helo_if_needed(timeout)
            reply = await self._run(data_flow(self._require_connection(), content), timeout)
        return response(reply)

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
        async with self._turn():
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
        return response(reply)

    async def _maybe_start_tls_on_connect(self, timeout: Timeout) -> None:
        if self._start_tls_on_connect is True:
            await self.starttls(timeout=timeout)
        elif self._start_tls_on_connect is None and not self.use_tls:
            await self._ehlo_or_helo_if_needed(timeout)
            if self.supports_extension("starttls"):
                await self.starttls(timeout=timeout)
