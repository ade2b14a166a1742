"""The client's AUTH: smtplib's ``auth()`` and authobjects, and ``login()`` trying
SCRAM-SHA-256 first."""

from __future__ import annotations

from collections.abc import Callable

from smtp_core import (
    SASLMechanism,
)
from smtp_core._sasl import MECHANISMS, PREFERENCE
from smtp_core.flows import (
    authenticate,
)

from ._exceptions import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPNotSupportedError,
    as_bytes,
)
from ._session import Session, _reply

__all__ = ["AuthMixin"]


class _Callback(SASLMechanism):
    """An smtplib ``authobject(challenge=None) -> str`` as a SASL mechanism."""

    def __init__(self, client: AuthMixin, name: str, authobject: Callable[..., str], initial: bool):
        self.name = name.upper()  # type: ignore[misc]
        self._client = client
        self._authobject = authobject
        self._initial = initial

    def initial_response(self) -> bytes | None:
        response = self._authobject() if self._initial else None
        self._client._auth_challenge_count = 0 if response is None else 1
        return None if response is None else response.encode("ascii")

    def respond(self, challenge: bytes) -> bytes:
        self._client._auth_challenge_count += 1
        return self._authobject(challenge).encode("ascii")


class _NoInitialResponse(SASLMechanism):
    """A mechanism whose initial response goes in answer to the first challenge."""

    def __init__(self, inner: SASLMechanism) -> None:
        self.name = inner.name  # type: ignore[misc]
        self._inner = inner

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        return self._inner.respond(challenge)

    def check_success(self) -> None:
        self._inner.check_success()


class AuthMixin(Session):
    """smtplib's AUTH methods; any :class:`smtp_core.SASLMechanism` too."""

    def auth(
        self,
        mechanism: str,
        authobject: Callable[..., str] | SASLMechanism,
        *,
        initial_response_ok: bool = True,
    ) -> tuple[int, bytes]:
        """One AUTH exchange. ``authobject`` is smtplib's ``authobject(challenge=None)``
        returning a str, or any :class:`smtp_core.SASLMechanism`.

        Returns the reply on 235 (or 503, already authenticated); raises
        ``SMTPAuthenticationError`` otherwise.
        """
        if isinstance(authobject, SASLMechanism):
            mech: SASLMechanism = (
                authobject if initial_response_ok else _NoInitialResponse(authobject)
            )
        else:
            mech = _Callback(self, mechanism, authobject, initial_response_ok)
        with self._turn():
            channel = self._begin()
            if "AUTH" not in channel.conn.capabilities:
                raise SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
            reply = self._run(authenticate(channel.conn, mech))
        if reply.code in (235, 503):
            return _reply(reply)
        raise SMTPAuthenticationError(reply.code, as_bytes(reply.message))

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:
        """smtplib's CRAM-MD5 authobject (uses ``user`` and ``password``)."""
        import hmac

        if challenge is None:
            return None
        assert self.user is not None and self.password is not None
        digest = hmac.HMAC(self.password.encode("ascii"), challenge, "md5").hexdigest()
        return f"{self.user} {digest}"

    def auth_plain(self, challenge: bytes | None = None) -> str:
        """smtplib's PLAIN authobject."""
        return f"\0{self.user}\0{self.password}"

    def auth_login(self, challenge: bytes | None = None) -> str:
        """smtplib's LOGIN authobject."""
        if challenge is None or self._auth_challenge_count < 2:
            return str(self.user)
        return str(self.password)

    def login(
        self, user: str, password: str, *, initial_response_ok: bool = True
    ) -> tuple[int, bytes]:
        """Log in with the best mechanism both sides support.

        SCRAM-SHA-256 (which also proves the server knows the password), then
        smtplib's CRAM-MD5, PLAIN, LOGIN; on a refusal the next one is tried.
        """
        with self._turn():
            self.ehlo_or_helo_if_needed()
            if not self.has_extn("auth"):
                raise SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
            offered = {m.upper() for m in self._require().conn.capabilities.auth_mechanisms}
            names = [name for name in PREFERENCE if name in offered and name in MECHANISMS]
            if not names:
                raise SMTPException("No suitable authentication method found.")
            self.user, self.password = user, password
            last: SMTPAuthenticationError | None = None
            for name in names:
                mech = MECHANISMS[name](user, password)
                try:
                    return self.auth(name, mech, initial_response_ok=initial_response_ok)
                except SMTPAuthenticationError as exc:
                    last = exc
                    if self._channel is None:
                        raise
            assert last is not None
            raise last
