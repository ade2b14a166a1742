"""smtp_core: a sans-I/O SMTP client protocol machine.

Feed the server's bytes to :meth:`ClientConnection.receive_data`, collect typed
events from :meth:`ClientConnection.next_event`, and turn commands into bytes with
:meth:`ClientConnection.send`. No sockets, no event loop: any I/O layer can drive it.
The multi-step flows (greeting, EHLO, STARTTLS, AUTH, a pipelined mail transaction)
live in :mod:`smtp_core.flows` as generators that yield I/O requests.
"""

from ._capabilities import Capabilities
from ._commands import (
    Auth,
    AuthResponse,
    Bdat,
    Command,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    Lhlo,
    Mail,
    Noop,
    Quit,
    RawCommand,
    Rcpt,
    Rset,
    StartTLS,
    Vrfy,
    parse_command,
    validate_address,
    xtext_decode,
    xtext_encode,
)
from ._connection import ClientConnection, Sendable
from ._content import DataEncoder, LineNormalizer, unstuff
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    NEED_DATA,
    CommandReply,
    ConnectionClosed,
    Content,
    EndOfData,
    Event,
    Greeting,
)
from ._exceptions import (
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
    SMTPUTF8NotSupported,
)
from ._extensions import DSN
from ._outcome import Outcome
from ._replies import EnhancedStatusCode, Reply, ReplyParser
from ._response import SMTPResponse, SMTPStatus
from ._sasl import (
    PREFERENCE,
    CramMD5,
    Login,
    OAuthBearer,
    Plain,
    SASLMechanism,
    ScramSHA256,
    XOAuth2,
    choose_mechanism,
)
from ._state import State
from ._transaction import RecipientResult, TransactionResult

__version__ = "0.1.0"

__all__ = [
    "ClientConnection",
    "Sendable",
    "State",
    "DSN",
    "Outcome",
    "TransactionResult",
    "RecipientResult",
    "Capabilities",
    "Reply",
    "ReplyParser",
    "EnhancedStatusCode",
    # events
    "Event",
    "Greeting",
    "CommandReply",
    "ConnectionClosed",
    "NEED_DATA",
    "Content",
    "EndOfData",
    # commands
    "Command",
    "Ehlo",
    "Helo",
    "Lhlo",
    "Mail",
    "Rcpt",
    "Data",
    "Bdat",
    "Rset",
    "Noop",
    "Quit",
    "Vrfy",
    "Expn",
    "Help",
    "StartTLS",
    "Auth",
    "AuthResponse",
    "RawCommand",
    "parse_command",
    "validate_address",
    "xtext_encode",
    "xtext_decode",
    # content
    "DataEncoder",
    "LineNormalizer",
    "unstuff",
    # SASL
    "SASLMechanism",
    "Plain",
    "Login",
    "CramMD5",
    "XOAuth2",
    "ScramSHA256",
    "OAuthBearer",
    "PREFERENCE",
    "choose_mechanism",
    # errors
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    # aiosmtplib-compatible surface
    "SMTPResponse",
    "SMTPStatus",
    "SMTPException",
    "SMTPServerDisconnected",
    "SMTPConnectError",
    "SMTPTimeoutError",
    "SMTPConnectTimeoutError",
    "SMTPReadTimeoutError",
    "SMTPNotSupported",
    "SMTPResponseException",
    "SMTPConnectResponseError",
    "SMTPHeloError",
    "SMTPDataError",
    "SMTPAuthenticationError",
    "SMTPSenderRefused",
    "SMTPRecipientRefused",
    "SMTPRecipientsRefused",
    "SMTPUTF8NotSupported",
]
