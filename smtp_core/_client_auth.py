"""The client's authentication: ``login()`` and one method per SASL mechanism (RFC 4954)."""

from __future__ import annotations

from ._client_commands import CommandsMixin
from ._client_session import Timeout, response
from ._exceptions import SMTPAuthenticationError, SMTPException
from ._flows import authenticate
from ._native import mypyc_attr
from ._response import SMTPResponse, _default
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

__all__ = ["AuthMixin"]


@mypyc_attr(allow_interpreted_subclasses=True)
class AuthMixin(CommandsMixin):
    """aiosmtplib's AUTH methods, plus SCRAM-SHA-256, OAUTHBEARER and any SASL mechanism."""

    #: Preferred AUTH methods first (lower case, as aiosmtplib lists them).
    AUTH_METHODS: tuple[str, ...] = tuple(name.lower() for name in PREFERENCE)

    @property
    def supported_auth_methods(self) -> list[str]:
        """AUTH methods both the server and this client support, preferred first."""
        return [auth for auth in self.AUTH_METHODS if auth in self.server_auth_methods]

    async def _maybe_login_on_connect(self, timeout: Timeout) -> None:
        if self._oauth_token_generator is not None:
            if self._login_username is None:
                raise SMTPException("username is required when using oauth_token_generator")
            await self._ehlo_or_helo_if_needed(timeout)
            if "oauthbearer" in self.server_auth_methods:
                token = await self._oauth_token_generator()
                await self.auth_oauthbearer(self._login_username, token, timeout=timeout)
                return
            if "xoauth2" not in self.server_auth_methods:
                raise SMTPException(
                    "oauth_token_generator provided but server does not support XOAUTH2"
                )
            token = await self._oauth_token_generator()
            await self.auth_xoauth2(self._login_username, token, timeout=timeout)
        elif self._login_username is not None:
            password = self._login_password if self._login_password is not None else ""
            await self.login(self._login_username, password, timeout=timeout)

    async def login(
        self, username: str | bytes, password: str | bytes, /, timeout: Timeout = _default
    ) -> SMTPResponse:
        """Log in with the best mechanism both sides support: SCRAM-SHA-256, CRAM-MD5,
        PLAIN, then LOGIN (``AUTH_METHODS``; aiosmtplib's order with SCRAM first).

        Servers sometimes advertise mechanisms they do not support, so on an
        authentication failure the next mechanism is tried.
        """
        async with self._turn():
            return await self._login(username, password, timeout)

    async def _login(
        self, username: str | bytes, password: str | bytes, timeout: Timeout
    ) -> SMTPResponse:
        await self._ehlo_or_helo_if_needed(timeout)
        if not self.supports_extension("auth"):
            conn = self._require_connection()
            if not conn.tls_active:
                raise SMTPException(
                    "The SMTP AUTH extension is not supported by this server. Try "
                    "connecting via TLS (or STARTTLS)."
                )
            raise SMTPException("The SMTP AUTH extension is not supported by this server.")
        result: SMTPResponse | None = None
        exception: SMTPAuthenticationError | None = None
        methods = {
            "scram-sha-256": self.auth_scram_sha256,
            "cram-md5": self.auth_crammd5,
            "plain": self.auth_plain,
            "login": self.auth_login,
        }
        for name in self.supported_auth_methods:
            try:
                result = await methods[name](username, password, timeout=timeout)
            except SMTPAuthenticationError as exc:
                exception = exc
                if not self.is_connected:
                    raise
            else:
                break
        if result is None:
            raise exception or SMTPException("No suitable authentication method found.")
        return result

    async def auth(
        self, mechanism: SASLMechanism, /, *, timeout: Timeout = _default
    ) -> SMTPResponse:
        """Authenticate with any :class:`~smtp_core.SASLMechanism` (built-in or your own).

        Raises ``SMTPAuthenticationError`` unless the server answers 235.
        """
        async with self._turn():
            await self._ehlo_or_helo_if_needed(timeout)
            conn = self._require_connection()
            if "AUTH" not in conn.capabilities:
                raise SMTPException("The SMTP AUTH extension is not supported by this server.")
            reply = await self._run(authenticate(conn, mechanism), timeout)
        if reply.code != 235:
            raise SMTPAuthenticationError(reply.code, reply.message)
        return response(reply)

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
