"""SASL mechanisms for SMTP AUTH (RFC 4954), as pure objects without I/O.

A mechanism gives an optional initial response and answers each server challenge.
To plug in another mechanism, subclass :class:`SASLMechanism`::

    class External(SASLMechanism):
        name = "EXTERNAL"

        def initial_response(self) -> bytes | None:
            return b""

        def respond(self, challenge: bytes) -> bytes:
            raise RemoteProtocolError("EXTERNAL takes no challenge")

and pass an instance to the client's ``auth()`` method.
"""

from __future__ import annotations

import abc
import base64
import binascii
import hmac
from collections.abc import Iterable, Sequence
from typing import ClassVar

from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "SASLMechanism",
    "Plain",
    "Login",
    "CramMD5",
    "XOAuth2",
    "PREFERENCE",
    "MECHANISMS",
    "choose_mechanism",
    "credentials_mechanism",
    "decode_challenge",
    "encode_response",
]

#: Mechanisms tried by ``login()``, preferred first (aiosmtplib's documented order).
PREFERENCE: tuple[str, ...] = ("CRAM-MD5", "PLAIN", "LOGIN")


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def decode_challenge(text: str) -> bytes:
    """Decode the base64 text of a 334 reply; invalid base64 raises RemoteProtocolError."""
    text = text.strip()
    if not text:
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise RemoteProtocolError(f"invalid base64 in AUTH challenge: {text[:40]!r}") from None


def encode_response(data: bytes) -> str:
    """Base64 text of a SASL response."""
    return base64.b64encode(data).decode("ascii")


class SASLMechanism(abc.ABC):
    """A SASL client mechanism: ``name``, an optional initial response, challenge answers.

    ``initial_response()`` returns None to send ``AUTH NAME`` alone and wait for a
    challenge, or bytes (possibly empty) to send with the command. ``respond()``
    takes a decoded 334 challenge and returns the raw response (the connection
    base64-encodes it); it raises :class:`RemoteProtocolError` for a challenge it
    cannot answer, which cancels the exchange.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def initial_response(self) -> bytes | None:
        """The initial response, or None for none."""

    @abc.abstractmethod
    def respond(self, challenge: bytes) -> bytes:
        """Answer one server challenge."""


class _Credentials(SASLMechanism):
    def __init__(self, username: str | bytes, password: str | bytes) -> None:
        self.username = _bytes(username)
        self._password = _bytes(password)
        self._round = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(username={self.username!r}, password=<redacted>)"

    __str__ = __repr__


class Plain(_Credentials):
    """PLAIN (RFC 4616): ``authzid NUL username NUL password`` in the initial response."""

    name = "PLAIN"

    def __init__(
        self, username: str | bytes, password: str | bytes, authzid: str | bytes = ""
    ) -> None:
        super().__init__(username, password)
        self.authzid = _bytes(authzid)
        for field, value in (
            ("username", self.username),
            ("password", self._password),
            ("authzid", self.authzid),
        ):
            if b"\0" in value:
                raise LocalProtocolError(f"PLAIN {field} must not contain NUL")

    def _message(self) -> bytes:
        return self.authzid + b"\0" + self.username + b"\0" + self._password

    def initial_response(self) -> bytes | None:
        return self._message()

    def respond(self, challenge: bytes) -> bytes:
        raise RemoteProtocolError("server challenged PLAIN after its initial response")


class Login(_Credentials):
    """LOGIN: the username as initial response, then the password on the challenge.

    If a server asks ``Username:`` first anyway, it gets the username, then the password.
    """

    name = "LOGIN"

    def initial_response(self) -> bytes | None:
        self._round = 1
        return self.username

    def respond(self, challenge: bytes) -> bytes:
        asks_username = challenge.strip().lower().startswith(b"user")
        if self._round == 1 and asks_username:
            return self.username
        if self._round in (1, 2) and not asks_username:
            self._round = 3
            return self._password
        raise RemoteProtocolError(f"unexpected LOGIN challenge {challenge[:40]!r}")


class CramMD5(_Credentials):
    """CRAM-MD5 (RFC 2195): ``username`` and the HMAC-MD5 of the challenge, in hex."""

    name = "CRAM-MD5"

    def initial_response(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        if not challenge:
            raise RemoteProtocolError("empty CRAM-MD5 challenge")
        if self._round:
            raise RemoteProtocolError("CRAM-MD5 challenged more than once")
        self._round = 1
        digest = hmac.new(self._password, challenge, "md5").hexdigest()
        return self.username + b" " + digest.encode("ascii")


class XOAuth2(SASLMechanism):
    """XOAUTH2 (Google, Microsoft): ``user=... ^A auth=Bearer <token> ^A ^A``.

    On failure the server sends a JSON error as a challenge; it is answered with an
    empty response, after which the server gives its final error reply.
    """

    name = "XOAUTH2"

    def __init__(self, username: str | bytes, token: str | bytes) -> None:
        self.username = _bytes(username)
        self._token = _bytes(token)
        if b"\x01" in self.username or b"\x01" in self._token:
            raise LocalProtocolError("XOAUTH2 username and token must not contain \\x01")
        self._challenged = False
        self.error: bytes | None = None

    def __repr__(self) -> str:
        return f"XOAuth2(username={self.username!r}, token=<redacted>)"

    __str__ = __repr__

    def initial_response(self) -> bytes | None:
        return b"user=" + self.username + b"\x01auth=Bearer " + self._token + b"\x01\x01"

    def respond(self, challenge: bytes) -> bytes:
        if self._challenged:
            raise RemoteProtocolError("XOAUTH2 challenged more than once")
        self._challenged = True
        self.error = challenge
        return b""


MECHANISMS: dict[str, type[_Credentials]] = {
    "PLAIN": Plain,
    "LOGIN": Login,
    "CRAM-MD5": CramMD5,
}


def credentials_mechanism(
    name: str, username: str | bytes, password: str | bytes
) -> SASLMechanism:
    """Build PLAIN, LOGIN or CRAM-MD5 by name (case-insensitive)."""
    try:
        cls = MECHANISMS[name.upper()]
    except KeyError:
        raise LocalProtocolError(f"unknown SASL mechanism {name!r}") from None
    return cls(username, password)


def choose_mechanism(
    server_mechanisms: Iterable[str], preference: Sequence[str] = PREFERENCE
) -> str | None:
    """The first mechanism in ``preference`` that the server offers, or None."""
    offered = {mech.upper() for mech in server_mechanisms}
    for name in preference:
        if name.upper() in offered:
            return name.upper()
    return None
