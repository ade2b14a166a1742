"""smtp_sync: smtplib's API on smtp_core, over blocking sockets.

``import smtp_sync as smtplib`` runs code written for :mod:`smtplib`, with
certificates verified by default, PIPELINING and BDAT when the server offers them,
LMTP replies per recipient, SIZE checked before the content, STARTTLS that refuses
injected bytes, addresses validated rather than repaired, per-stage and total time
limits, streaming from files, batches (:meth:`SMTP.send_messages`), clients safe to
share between threads and a thread-safe connection pool (:class:`SMTPPool`).
"""

from smtplib import CRLF, OLDSTYLE_AUTH, bCRLF, quoteaddr, quotedata

from smtp_core import Outcome
from smtp_core.flows import TransactionResult

from ._exceptions import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from ._pool import SMTPPool
from ._smtp import LMTP, LMTP_PORT, SMTP, SMTP_PORT, SMTP_SSL, SMTP_SSL_PORT, Timeouts

__all__ = [
    "SMTPException",
    "SMTPNotSupportedError",
    "SMTPServerDisconnected",
    "SMTPTimeoutError",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPRecipientsRefused",
    "SMTPDataError",
    "SMTPConnectError",
    "SMTPHeloError",
    "SMTPAuthenticationError",
    "quoteaddr",
    "quotedata",
    "SMTP",
    "SMTP_SSL",
    "LMTP",
    "SMTPPool",
    "SMTP_PORT",
    "SMTP_SSL_PORT",
    "LMTP_PORT",
    "CRLF",
    "bCRLF",
    "OLDSTYLE_AUTH",
    "Timeouts",
    "TransactionResult",
    "Outcome",
]
