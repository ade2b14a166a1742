"""``SMTPResponse``, a named tuple of (code, message)."""

from smtp_core._response import SMTPResponse

__all__ = ("SMTPResponse",)
