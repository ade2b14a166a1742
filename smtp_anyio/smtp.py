"""aiosmtplib's ``smtp`` module: the ``SMTP`` client class, its port and timeout defaults.

``SMTP`` is this adapter's client (the API is written once in
:class:`smtp_core._client.SMTPClientBase`). The other names aiosmtplib's module
makes importable (its exceptions, helpers and type names) are importable here too.
"""

from smtp_core._client import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from smtp_core._client import SMTP_PORT, SMTP_STARTTLS_PORT, SMTP_TLS_PORT, validate_local_hostname
from smtp_core._response import Default as Default
from smtp_core._response import SMTPResponse as SMTPResponse
from smtp_core._response import SMTPStatus as SMTPStatus
from smtp_core._response import SMTPTokenGenerator as SMTPTokenGenerator
from smtp_core._response import SocketPathType as SocketPathType

from ._smtp import SMTP
from .auth import auth_crammd5_verify as auth_crammd5_verify
from .auth import auth_login_encode as auth_login_encode
from .auth import auth_plain_encode as auth_plain_encode
from .auth import auth_xoauth2_encode as auth_xoauth2_encode
from .email import extract_recipients as extract_recipients
from .email import extract_sender as extract_sender
from .email import flatten_message as flatten_message
from .email import parse_address as parse_address
from .email import quote_address as quote_address
from .errors import SMTPAuthenticationError as SMTPAuthenticationError
from .errors import SMTPConnectError as SMTPConnectError
from .errors import SMTPConnectResponseError as SMTPConnectResponseError
from .errors import SMTPConnectTimeoutError as SMTPConnectTimeoutError
from .errors import SMTPException as SMTPException
from .errors import SMTPHeloError as SMTPHeloError
from .errors import SMTPNotSupported as SMTPNotSupported
from .errors import SMTPRecipientRefused as SMTPRecipientRefused
from .errors import SMTPRecipientsRefused as SMTPRecipientsRefused
from .errors import SMTPResponseException as SMTPResponseException
from .errors import SMTPSenderRefused as SMTPSenderRefused
from .errors import SMTPServerDisconnected as SMTPServerDisconnected
from .errors import SMTPTimeoutError as SMTPTimeoutError
from .esmtp import parse_esmtp_extensions as parse_esmtp_extensions
from .protocol import SMTPProtocol as SMTPProtocol
from .protocol import normalize_message_line_endings as normalize_message_line_endings

_validate_local_hostname = validate_local_hostname

__all__ = ("SMTP", "SMTP_PORT", "SMTP_TLS_PORT", "SMTP_STARTTLS_PORT")
