"""The module-level :func:`send`, as in aiosmtplib."""

from __future__ import annotations

from smtp_core._client import make_send

from ._smtp import SMTP

__all__ = ["send"]

send = make_send(SMTP)
