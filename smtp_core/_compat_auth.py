"""aiosmtplib's ``auth`` module: the SASL encodings as functions, same outputs.

The client authenticates with the mechanism objects of :mod:`smtp_core._sasl`,
which also check the server's challenges and refuse credentials that would break
a mechanism's framing. These functions give aiosmtplib's results for code that
calls them directly: base64 ``bytes``, ready to send, from ``str`` (UTF-8) or
``bytes`` arguments.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from ._exceptions import SMTPAuthenticationError
from ._response import SMTPStatus

__all__ = [
    "auth_crammd5_verify",
    "auth_login_encode",
    "auth_plain_encode",
    "auth_xoauth2_encode",
]


def _ensure_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def auth_crammd5_verify(
    username: str | bytes,
    password: str | bytes,
    challenge: str | bytes,
    /,
) -> bytes:
    """CRAM-MD5 (RFC 2195): base64 of ``username SP hex(HMAC-MD5(password, challenge))``.

    ``challenge`` is the server's base64 text.

    :raises SMTPAuthenticationError: (code 334) if the challenge is not base64.
    """
    try:
        decoded = base64.b64decode(challenge)
    except (binascii.Error, ValueError) as exc:
        raise SMTPAuthenticationError(
            SMTPStatus.auth_continue,
            f"Invalid CRAM-MD5 challenge from server: {challenge!r}",
        ) from exc
    digest = hmac.new(_ensure_bytes(password), msg=decoded, digestmod="md5").hexdigest()
    return base64.b64encode(_ensure_bytes(username) + b" " + digest.encode("ascii"))


def auth_plain_encode(username: str | bytes, password: str | bytes, /) -> bytes:
    """PLAIN (RFC 4616): base64 of ``NUL username NUL password`` (no authorization id)."""
    return base64.b64encode(b"\0" + _ensure_bytes(username) + b"\0" + _ensure_bytes(password))


def auth_login_encode(username: str | bytes, password: str | bytes, /) -> tuple[bytes, bytes]:
    """LOGIN: the base64 username and the base64 password, sent one after the other."""
    return base64.b64encode(_ensure_bytes(username)), base64.b64encode(_ensure_bytes(password))


def auth_xoauth2_encode(username: str | bytes, access_token: str | bytes, /) -> bytes:
    """XOAUTH2: base64 of ``user=USERNAME ^A auth=Bearer TOKEN ^A ^A``."""
    return base64.b64encode(
        b"user="
        + _ensure_bytes(username)
        + b"\x01auth=Bearer "
        + _ensure_bytes(access_token)
        + b"\x01\x01"
    )
