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
import hashlib
import hmac
import os
from collections.abc import Iterable, Sequence
from typing import ClassVar

from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "SASLMechanism",
    "Plain",
    "Login",
    "CramMD5",
    "XOAuth2",
    "ScramSHA256",
    "OAuthBearer",
    "PREFERENCE",
    "MECHANISMS",
    "choose_mechanism",
    "credentials_mechanism",
    "decode_challenge",
    "encode_response",
]

#: Mechanisms tried by ``login()``, preferred first: SCRAM-SHA-256 (RFC 7677, which
#: also proves the server knows the password), then aiosmtplib's documented order.
PREFERENCE: tuple[str, ...] = ("SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN")


def _bytes(value: str | bytes) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"SASL credentials must be str or bytes, not {type(value).__name__}")


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
    cannot answer, which cancels the exchange. ``check_success()`` runs on the 235.

    This is the plug-in point for mechanisms the library does not ship::

        class External(SASLMechanism):
            name = "EXTERNAL"

            def initial_response(self) -> bytes | None:
                return b""  # authorize as the TLS client certificate's identity

            def respond(self, challenge: bytes) -> bytes:
                raise RemoteProtocolError("EXTERNAL takes no challenge")

        await smtp.auth(External())

    Never put a secret in ``repr()``; the built-in mechanisms show ``<redacted>``.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def initial_response(self) -> bytes | None:
        """The initial response, or None for none."""

    @abc.abstractmethod
    def respond(self, challenge: bytes) -> bytes:
        """Answer one server challenge."""

    def check_success(self) -> None:
        """Called on the server's 235 reply; raise RemoteProtocolError if it is not credible.

        Mechanisms with mutual authentication (SCRAM) refuse a success that came before
        the server proved itself. Others accept it.
        """
        return None


class _Credentials(SASLMechanism):
    def __init__(self, username: str | bytes, password: str | bytes) -> None:
        self.username = _bytes(username)
        self._password = _bytes(password)
        self._round = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(username={self.username!r}, password=<redacted>)"

    __str__ = __repr__


class Plain(_Credentials):
    """PLAIN (RFC 4616): ``authzid NUL username NUL password`` in the initial response.

    If the driver sends ``AUTH PLAIN`` without the initial response, the server's
    empty challenge is answered with the same message instead.
    """

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
        self._round = 1
        return self._message()

    def respond(self, challenge: bytes) -> bytes:
        if self._round == 0 and not challenge:
            self._round = 2
            return self._message()
        if self._round == 1:
            raise RemoteProtocolError("server challenged PLAIN after its initial response")
        if self._round == 0:
            raise RemoteProtocolError(f"PLAIN expects an empty challenge, got {challenge[:40]!r}")
        raise RemoteProtocolError("server challenged PLAIN after it was sent the credentials")


class Login(_Credentials):
    """LOGIN: the username as initial response, then the password on the challenge.

    If a server asks ``Username:`` first anyway, it gets the username, then the password.
    Without the initial response (a driver that sends ``AUTH LOGIN`` alone), the first
    challenge gets the username and the second the password. Any further challenge,
    or a second ``Username:``, raises :class:`RemoteProtocolError`.
    """

    name = "LOGIN"

    # _round: 0 nothing sent, 1 username sent as initial response,
    # 2 username sent in answer to a challenge, 3 password sent.

    def initial_response(self) -> bytes | None:
        self._round = 1
        return self.username

    def respond(self, challenge: bytes) -> bytes:
        asks_username = challenge.strip().lower().startswith(b"user")
        if self._round == 0 or (self._round == 1 and asks_username):
            self._round = 2
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


class ScramSHA256(_Credentials):
    """SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding.

    The password never crosses the wire, and the server must prove it knows it: its
    final message is verified, and a success reply without that proof is refused.
    ``max_iterations`` bounds the PBKDF2 work a hostile server can ask for.
    """

    name = "SCRAM-SHA-256"

    def __init__(
        self,
        username: str | bytes,
        password: str | bytes,
        *,
        nonce: str | None = None,
        max_iterations: int = 1_000_000,
    ) -> None:
        super().__init__(username, password)
        self._nonce = nonce or base64.b64encode(os.urandom(18)).decode("ascii")
        self.max_iterations = max_iterations
        name = self.username.replace(b"=", b"=3D").replace(b",", b"=2C")
        self._client_first_bare = b"n=" + name + b",r=" + self._nonce.encode("ascii")
        self._server_signature: bytes | None = None
        self.verified = False

    def initial_response(self) -> bytes | None:
        return b"n,," + self._client_first_bare

    def respond(self, challenge: bytes) -> bytes:
        if self._server_signature is None:
            return self._client_final(challenge)
        if self._round == 2:
            self._round = 3
            fields = _scram_fields(challenge)
            if "e" in fields:
                return b""  # the server reports an error; its final reply follows
            proof = base64.b64decode(fields.get("v", b""), validate=False)
            if not hmac.compare_digest(proof, self._server_signature):
                raise RemoteProtocolError("SCRAM: the server's signature is wrong")
            self.verified = True
            return b""
        raise RemoteProtocolError("SCRAM: unexpected extra challenge")

    def _client_final(self, server_first: bytes) -> bytes:
        fields = _scram_fields(server_first)
        nonce, salt, iterations = fields.get("r"), fields.get("s"), fields.get("i")
        if nonce is None or salt is None or iterations is None:
            raise RemoteProtocolError("SCRAM: server-first message lacks r, s or i")
        if not nonce.startswith(self._nonce.encode("ascii")) or nonce == self._nonce.encode():
            raise RemoteProtocolError("SCRAM: the server's nonce does not extend ours")
        if not iterations.isdigit() or not 1 <= int(iterations) <= self.max_iterations:
            raise RemoteProtocolError(f"SCRAM: iteration count {iterations[:20]!r} refused")
        try:
            salt_bytes = base64.b64decode(salt, validate=True)
        except binascii.Error:
            raise RemoteProtocolError("SCRAM: invalid base64 salt") from None
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt_bytes, int(iterations))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = b"c=biws,r=" + nonce
        auth_message = self._client_first_bare + b"," + server_first + b"," + without_proof
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self._server_signature = hmac.new(server_key, auth_message, "sha256").digest()
        self._round = 2
        return without_proof + b",p=" + base64.b64encode(proof)

    def check_success(self) -> None:
        if not self.verified:
            raise RemoteProtocolError(
                "SCRAM: the server reported success without proving it knows the password"
            )


def _scram_fields(message: bytes) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    for part in message.split(b","):
        key, sep, value = part.partition(b"=")
        if sep and len(key) == 1:
            fields.setdefault(key.decode("ascii", "replace"), value)
    return fields


class OAuthBearer(SASLMechanism):
    """OAUTHBEARER (RFC 7628): an OAuth 2.0 bearer token.

    On failure the server sends a JSON error as a challenge; it is answered with the
    single ``0x01`` byte the RFC prescribes, after which the final error reply follows.
    """

    name = "OAUTHBEARER"

    def __init__(self, username: str | bytes, token: str | bytes) -> None:
        self.username = _bytes(username)
        self._token = _bytes(token)
        if b"\x01" in self.username + self._token or b"," in self.username:
            raise LocalProtocolError("OAUTHBEARER username and token must not contain ^A or ','")
        self._challenged = False
        self.error: bytes | None = None

    def __repr__(self) -> str:
        return f"OAuthBearer(username={self.username!r}, token=<redacted>)"

    __str__ = __repr__

    def initial_response(self) -> bytes | None:
        return b"n,a=" + self.username + b",\x01auth=Bearer " + self._token + b"\x01\x01"

    def respond(self, challenge: bytes) -> bytes:
        if self._challenged:
            raise RemoteProtocolError("OAUTHBEARER challenged more than once")
        self._challenged = True
        self.error = challenge
        return b"\x01"


MECHANISMS: dict[str, type[_Credentials]] = {
    "SCRAM-SHA-256": ScramSHA256,
    "PLAIN": Plain,
    "LOGIN": Login,
    "CRAM-MD5": CramMD5,
}


def credentials_mechanism(name: str, username: str | bytes, password: str | bytes) -> SASLMechanism:
    """Build a username/password mechanism of :data:`MECHANISMS` by name (case-insensitive).

    That is PLAIN, LOGIN, CRAM-MD5 or SCRAM-SHA-256; any other name raises
    :class:`LocalProtocolError`.
    """
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
