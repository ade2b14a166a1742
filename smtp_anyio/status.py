"""``SMTPStatus``, kept here for aiosmtplib compatibility."""

from smtp_core._response import SMTPStatus

__all__ = ("SMTPStatus",)
