"""aiosmtplib's ``auth`` module: the SASL encodings as functions, with aiosmtplib's outputs.

Written once in :mod:`smtp_core._compat_auth`.
"""

from smtp_core._compat_auth import _ensure_bytes as _ensure_bytes
from smtp_core._compat_auth import (
    auth_crammd5_verify,
    auth_login_encode,
    auth_plain_encode,
    auth_xoauth2_encode,
)
from smtp_core._exceptions import SMTPAuthenticationError as SMTPAuthenticationError
from smtp_core._response import SMTPStatus as SMTPStatus

__all__ = (
    "auth_crammd5_verify",
    "auth_login_encode",
    "auth_plain_encode",
    "auth_xoauth2_encode",
)
