"""aiosmtplib's ``esmtp`` module: ``parse_esmtp_extensions``, with aiosmtplib's results.

Written once in :mod:`smtp_core._compat_esmtp`.
"""

from smtp_core._compat_esmtp import OLDSTYLE_AUTH_REGEX as OLDSTYLE_AUTH_REGEX
from smtp_core._compat_esmtp import parse_esmtp_extensions

__all__ = ("parse_esmtp_extensions",)
