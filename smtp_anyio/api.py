"""aiosmtplib's ``api`` module: the module-level :func:`send` and the names it uses."""

from __future__ import annotations

from smtp_core._client import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from smtp_core._client import make_send
from smtp_core._response import SMTPResponse as SMTPResponse
from smtp_core._response import SMTPTokenGenerator as SMTPTokenGenerator
from smtp_core._response import SocketPathType as SocketPathType

from ._smtp import SMTP as SMTP

__all__ = ["send"]

send = make_send(SMTP)
