"""Type names of the public API, as in aiosmtplib."""

from smtp_core._response import (
    Default,
    SMTPStatus,
    SMTPTokenGenerator,
    SocketPathType,
    _default,
)

__all__ = ("Default", "SMTPStatus", "SMTPTokenGenerator", "SocketPathType", "_default")
