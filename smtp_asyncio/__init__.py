"""smtp_asyncio: an asyncio SMTP client with aiosmtplib's API, on the smtp_core protocol machine.

Code written for aiosmtplib runs by changing the import::

    import smtp_asyncio as aiosmtplib

aiosmtplib's submodules are here too, with the names code imports from them:
``api``, ``smtp``, ``errors``, ``response``, ``status``, ``typing``, ``email``,
``esmtp``, ``auth`` and ``protocol`` (whose docstring says how the architecture
differs). Packages that ``import aiosmtplib`` run on this one when
``sys.modules["aiosmtplib"]`` (and each ``aiosmtplib.<submodule>``) is ``smtp_asyncio``.
"""

from smtp_core._client import Timeouts
from smtp_core._exceptions import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectResponseError,
    SMTPConnectTimeoutError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupported,
    SMTPReadTimeoutError,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from smtp_core._extensions import DSN
from smtp_core._outcome import Outcome
from smtp_core._response import SMTPResponse, SMTPStatus, SMTPTokenGenerator
from smtp_core._transaction import RecipientResult, TransactionResult

# aiosmtplib's submodules, reachable as attributes (``aiosmtplib.smtp.SMTP``) as there.
from . import api, auth, email, errors, esmtp, protocol, response, smtp, status, typing  # noqa: F401
from ._smtp import LMTP, SMTP, SMTPPool
from .api import send

__version__ = "0.1.0"
__all__ = (
    "send",
    "SMTP",
    "LMTP",
    "SMTPPool",
    "TransactionResult",
    "Outcome",
    "RecipientResult",
    "Timeouts",
    "DSN",
    "SMTPResponse",
    "SMTPStatus",
    "SMTPTokenGenerator",
    "SMTPAuthenticationError",
    "SMTPConnectError",
    "SMTPDataError",
    "SMTPException",
    "SMTPHeloError",
    "SMTPNotSupported",
    "SMTPRecipientRefused",
    "SMTPRecipientsRefused",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "SMTPTimeoutError",
    "SMTPConnectTimeoutError",
    "SMTPReadTimeoutError",
    "SMTPConnectResponseError",
)
