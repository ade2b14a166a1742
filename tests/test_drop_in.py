"""aiosmtplib's module layout in both adapters: every submodule and name, and how the helpers behave.

The expected values are aiosmtplib 5.1.3's (most cases ported from its own tests,
test_email_utils.py, test_esmtp_utils.py and test_auth_utils.py). If aiosmtplib
happens to be installed, the helpers are also run side by side with its own on
lists of inputs and on generated ones; those tests skip when it is not.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import importlib
import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from types import ModuleType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import smtp_anyio
import smtp_asyncio
import smtp_core
from smtp_anyio._transport import AnyioTransport
from smtp_asyncio._transport import StreamProtocol
from smtp_core import _sasl

from .conftest import Adapter
from .servers import Close, session_prefix

PACKAGES = [smtp_asyncio, smtp_anyio]

ERRORS = (
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
AUTH_FUNCTIONS = ("auth_crammd5_verify", "auth_login_encode", "auth_plain_encode", "auth_xoauth2_encode")
EMAIL_FUNCTIONS = ("extract_recipients", "extract_sender", "flatten_message", "parse_address", "quote_address")

#: aiosmtplib 5.1.3's ``__all__`` of each module ("" is the package).
ALL: dict[str, tuple[str, ...]] = {
    "": ("send", "SMTP", "SMTPResponse", "SMTPStatus", "SMTPTokenGenerator", *ERRORS),
    "api": ("send",),
    "smtp": ("SMTP", "SMTP_PORT", "SMTP_TLS_PORT", "SMTP_STARTTLS_PORT"),
    "errors": ERRORS,
    "response": ("SMTPResponse",),
    "status": ("SMTPStatus",),
    "typing": ("Default", "SMTPStatus", "SMTPTokenGenerator", "SocketPathType", "_default"),
    "email": EMAIL_FUNCTIONS,
    "esmtp": ("parse_esmtp_extensions",),
    "auth": AUTH_FUNCTIONS,
    "protocol": ("SMTPProtocol",),
}

#: Every other name of aiosmtplib 5.1.3's modules that code can import (its
#: re-imports of standard-library typing helpers such as ``cast`` left out).
MORE: dict[str, tuple[str, ...]] = {
    "": ("__version__",),
    "api": ("DEFAULT_TIMEOUT", "SMTP", "SMTPResponse", "SMTPTokenGenerator", "SocketPathType"),
    "smtp": (
        "DEFAULT_TIMEOUT",
        "Default",
        "SMTPProtocol",
        "SMTPResponse",
        "SMTPStatus",
        "SMTPTokenGenerator",
        "SocketPathType",
        "_validate_local_hostname",
        "normalize_message_line_endings",
        "parse_esmtp_extensions",
        *AUTH_FUNCTIONS,
        *EMAIL_FUNCTIONS,
        *(name for name in ERRORS if name not in ("SMTPDataError", "SMTPReadTimeoutError")),
    ),
    "errors": ("TimeoutError",),
    "response": (),
    "status": (),
    "typing": (),
    "email": (
        "ADDRESS_INJECTION_REGEX",
        "ESCAPES_REGEX",
        "QUOTED_LOCAL_PART_REGEX",
        "SPECIALS_REGEX",
        "UTF8_CHARSET",
        "_validate_address",
        "extract_addresses",
    ),
    "esmtp": ("OLDSTYLE_AUTH_REGEX",),
    "auth": ("SMTPAuthenticationError", "SMTPStatus", "_ensure_bytes"),
    "protocol": (
        "COMMAND_INJECTION_REGEX",
        "FlowControlMixin",
        "LINE_ENDINGS_REGEX",
        "MAX_LINE_LENGTH",
        "MAX_RESPONSE_LENGTH",
        "PERIOD_REGEX",
        "SMTPDataError",
        "SMTPReadTimeoutError",
        "SMTPResponse",
        "SMTPResponseException",
        "SMTPServerDisconnected",
        "SMTPStatus",
        "SMTPTimeoutError",
        "normalize_message_line_endings",
    ),
}

#: Standard-library typing helpers aiosmtplib's modules import for their own annotations.
STDLIB_HELPERS = frozenset(
    {"Any", "Awaitable", "Callable", "Iterable", "Literal", "NamedTuple", "Sequence", "TracebackType", "cast"}
)


def submodule(package: ModuleType, name: str) -> ModuleType:
    return importlib.import_module(f"{package.__name__}.{name}" if name else package.__name__)


def reference(name: str = "") -> ModuleType:
    """aiosmtplib's own module, or skip the test when aiosmtplib is not installed."""
    pytest.importorskip("aiosmtplib", reason="aiosmtplib is not installed")
    module = importlib.import_module(f"aiosmtplib.{name}" if name else "aiosmtplib")
    assert module.__name__.startswith("aiosmtplib"), "sys.modules['aiosmtplib'] is replaced"
    return module


def outcome(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What a call gives: its value, or its exception's class name, args and message."""
    try:
        return ("value", function(*args, **kwargs))
    except Exception as exc:
        return ("raises", type(exc).__name__, exc.args)


@pytest.fixture(params=PACKAGES, ids=[p.__name__ for p in PACKAGES])
def package(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ALL), ids=[n or "package" for n in ALL])
def test_every_aiosmtplib_name_imports(package: ModuleType, name: str) -> None:
    module = submodule(package, name)
    if name:
        # ``import aiosmtplib; aiosmtplib.smtp.SMTP`` works there, so it works here.
        assert getattr(package, name) is module
    assert set(ALL[name]) <= set(module.__all__)
    for attr in (*ALL[name], *MORE[name]):
        assert hasattr(module, attr), f"{module.__name__}.{attr}"
    namespace: dict[str, Any] = {}
    exec(f"from {module.__name__} import *", namespace)
    assert set(ALL[name]) <= set(namespace)


@pytest.mark.parametrize(
    "statement",
    [
        "from {p}.api import DEFAULT_TIMEOUT",  # fastapi-mail
        "from {p}.api import send, SMTPTokenGenerator, SocketPathType, SMTPResponse, SMTP",
        "from {p}.smtp import SMTP, DEFAULT_TIMEOUT, SMTP_PORT, SMTP_TLS_PORT, SMTP_STARTTLS_PORT",
        "from {p}.email import extract_recipients, extract_sender, flatten_message",
        "from {p}.email import parse_address, quote_address, extract_addresses",
        "from {p}.esmtp import parse_esmtp_extensions",
        "from {p}.auth import auth_crammd5_verify, auth_plain_encode, auth_login_encode",
        "from {p}.auth import auth_xoauth2_encode",
        "from {p}.protocol import SMTPProtocol, MAX_LINE_LENGTH, FlowControlMixin",
        "from {p}.typing import SMTPTokenGenerator, SocketPathType, Default, SMTPStatus, _default",
        "from {p}.errors import SMTPException, TimeoutError",
        "from {p}.response import SMTPResponse",
        "from {p}.status import SMTPStatus",
        "from {p} import __version__",
        "import {p}.smtp, {p}.email, {p}.esmtp, {p}.auth, {p}.protocol",
    ],
)
def test_import_statements_from_aiosmtplib_code(package: ModuleType, statement: str) -> None:
    exec(statement.format(p=package.__name__), {})


def test_one_object_behind_each_name(package: ModuleType) -> None:
    """Each name is the same object in every module that has it, and in both adapters."""
    for name in ERRORS:
        core_class = getattr(smtp_core, name)
        for module_name in ("", "errors", "smtp", "protocol", "auth"):
            module = submodule(package, module_name)
            if hasattr(module, name):
                assert getattr(module, name) is core_class
    assert package.smtp.SMTP is package.api.SMTP is package.SMTP
    assert package.api.send is package.send
    for name in EMAIL_FUNCTIONS:
        assert getattr(package.smtp, name) is getattr(package.email, name)
        assert getattr(package.email, name) is getattr(smtp_asyncio.email, name)
    for name in AUTH_FUNCTIONS:
        assert getattr(package.smtp, name) is getattr(package.auth, name)
    assert package.smtp.parse_esmtp_extensions is package.esmtp.parse_esmtp_extensions
    assert package.smtp.SMTPProtocol is package.protocol.SMTPProtocol
    assert package.typing.SMTPStatus is package.status.SMTPStatus is package.SMTPStatus
    assert package.typing.SMTPTokenGenerator is package.api.SMTPTokenGenerator
    assert package.typing.SocketPathType is package.api.SocketPathType is package.smtp.SocketPathType
    assert package.response.SMTPResponse is package.api.SMTPResponse is package.SMTPResponse


def test_constants(package: ModuleType) -> None:
    assert (package.smtp.SMTP_PORT, package.smtp.SMTP_TLS_PORT, package.smtp.SMTP_STARTTLS_PORT) == (
        25,
        465,
        587,
    )
    assert package.smtp.DEFAULT_TIMEOUT == package.api.DEFAULT_TIMEOUT == 60
    assert package.protocol.MAX_LINE_LENGTH == 8192
    assert package.protocol.MAX_RESPONSE_LENGTH == 8192 * 4
    assert isinstance(package.__version__, str)
    # The timeout default is the client's (read from a client: the compiled build's
    # classes carry no signature inspect can read).
    assert package.SMTP().timeout == package.smtp.DEFAULT_TIMEOUT


def test_max_line_length_is_the_longest_reply_line_accepted(package: ModuleType) -> None:
    """The client's own reply-line limit (ClientConnection's default) is MAX_LINE_LENGTH."""
    limit = package.protocol.MAX_LINE_LENGTH
    conn = smtp_core.ClientConnection()
    conn.receive_data(b"220 " + b"x" * (limit - 4) + b"\r\n")
    assert isinstance(conn.next_event(), smtp_core.Greeting)
    conn = smtp_core.ClientConnection()
    with pytest.raises(smtp_core.RemoteProtocolError, match="longer than 8192 bytes"):
        conn.receive_data(b"220 " + b"x" * (limit - 3) + b"\r\n")
        conn.next_event()


def test_default_timeout_is_an_int_as_in_aiosmtplib(package: ModuleType) -> None:
    assert type(package.api.DEFAULT_TIMEOUT) is int


def test_typing_names(package: ModuleType) -> None:
    typing_module = package.typing
    assert typing_module._default is typing_module.Default.token
    assert [member.name for member in typing_module.Default] == ["token"]
    assert typing_module.SMTPStatus.completed == 250
    assert typing_module.SMTPStatus.invalid_response == -1
    assert typing_module.SMTPStatus.auth_continue == 334
    # SMTPTokenGenerator is Callable[[], Awaitable[str]]; SocketPathType is str | bytes | PathLike.
    assert typing.get_args(typing_module.SMTPTokenGenerator) == ([], Awaitable[str])
    assert typing.get_args(typing_module.SocketPathType)[:2] == (str, bytes)


def test_local_hostname_validator(package: ModuleType) -> None:
    validate = package.smtp._validate_local_hostname
    assert validate("  client.example.org ") == "client.example.org"
    for bad in ("", "   ", "a b", "a\r\nMAIL FROM:<x>", "a\x00b"):
        with pytest.raises(ValueError):
            validate(bad)


# -- email ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, expected",
    [
        ('"A.Smith" <asmith+foo@example.com>', "asmith+foo@example.com"),
        ("Pepé Le Pew <pépe@example.com>", "pépe@example.com"),
        ("<a@new.topleveldomain>", "a@new.topleveldomain"),
        ("B. Smith <b@example.com", "b@example.com"),
        ("email@[123.123.123.123]", "email@[123.123.123.123]"),
        ("_______@example.com", "_______@example.com"),
        ('"a b"@example.com', '"a b"@example.com'),
        ('"a>b"@example.com', '"a>b"@example.com'),
        ('"a<b"@example.com', '"a<b"@example.com'),
        ('"a\\"b"@example.com', '"a\\"b"@example.com'),
        ('Display Name <"a b"@example.com>', '"a b"@example.com'),
        ("", ""),
        ("  me  ", "me"),
    ],
)
def test_parse_and_quote_address(package: ModuleType, address: str, expected: str) -> None:
    assert package.email.parse_address(address) == expected
    assert package.email.quote_address(address) == f"<{expected}>"


#: aiosmtplib's injection cases. How much of each survives email.utils.parseaddr
#: depends on the Python version; whatever is left must be safe or refused.
INJECTIONS = [
    "test@example.com> AUTH=<attacker@example.com",
    "test@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;<attacker@example.com",
    "test@example.com>\tNOTIFY=SUCCESS",
    "test@example.com>",
    "test@example.com >",
    "test@example.com\r\nRCPT TO:<hijacker@example.com>",
    'a"b@example.com',
]


@pytest.mark.parametrize("address", INJECTIONS)
def test_parse_address_never_returns_an_injection(package: ModuleType, address: str) -> None:
    try:
        parsed = package.email.parse_address(address)
    except ValueError as exc:
        assert "not permitted in an SMTP mailbox" in str(exc)
    else:
        assert not set(parsed) & set(' \t\r\n<>"'), parsed
        assert package.email.quote_address(address) == f"<{parsed}>"
    with pytest.raises(ValueError, match="not permitted in an SMTP mailbox"):
        package.email._validate_address(address)


@pytest.mark.parametrize(
    "address",
    ["a b@example.com", '"a b" c@example.com', "a@b.c d@e.f", "x <a b@c.d>"],
)
def test_parse_address_refuses_whitespace_outside_quotes(package: ModuleType, address: str) -> None:
    with pytest.raises(ValueError, match="not permitted in an SMTP mailbox"):
        package.email.parse_address(address)
    with pytest.raises(ValueError, match="not permitted in an SMTP mailbox"):
        package.email.quote_address(address)


@settings(max_examples=50)
@given(st.emails())
@example("email@[123.123.123.123]")
@example("_______@example.com")
def test_parse_address_keeps_plain_addresses(address: str) -> None:
    for package in PACKAGES:
        assert package.email.parse_address(address) == address
        assert package.email.quote_address(address) == f"<{address}>"


def test_flatten_message(package: ModuleType) -> None:
    message = EmailMessage()
    message["To"] = "bob@example.com"
    message["Subject"] = "Hello, World."
    message["From"] = "alice@example.com"
    message.set_content("This is a test")
    assert package.email.flatten_message(message) == (
        b"To: bob@example.com\r\n"
        b"Subject: Hello, World.\r\n"
        b"From: alice@example.com\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: 7bit\r\n"
        b"MIME-Version: 1.0\r\n"
        b"\r\n"
        b"This is a test\r\n"
    )


def test_flatten_compat32_message_keeps_its_line_endings(package: ModuleType) -> None:
    """A compat32 Message is written with compat32's own \\n, as aiosmtplib does."""
    message = Message()
    message["To"] = "bob@example.com"
    message["Bcc"] = "hidden@example.com"
    message["Subject"] = "hi"
    message.set_payload("line one\nline two\n")
    assert package.email.flatten_message(message) == (
        b"To: bob@example.com\nSubject: hi\n\nline one\nline two\n"
    )
    assert message["Bcc"] == "hidden@example.com"  # the caller's message is untouched


@pytest.mark.parametrize(
    "message_class, utf8, cte_type, expected_chunk",
    [
        (Message, False, "7bit", b"=?utf-8?b?w6VsaWNlQGV4YW1wbGUuY29t?="),
        (Message, True, "7bit", b"=?utf-8?b?w6VsaWNlQGV4YW1wbGUuY29t?="),
        (Message, False, "8bit", b"=?utf-8?b?w6VsaWNlQGV4YW1wbGUuY29t?="),
        (Message, True, "8bit", b"=?utf-8?b?w6VsaWNlQGV4YW1wbGUuY29t?="),
        (EmailMessage, False, "7bit", b"=?utf-8?q?=C3=A5lice?="),
        (EmailMessage, True, "7bit", b"\xc3\xa5lice@example.com"),
        (EmailMessage, False, "8bit", b"=?utf-8?q?=C3=A5lice?="),
        (EmailMessage, True, "8bit", b"\xc3\xa5lice@example.com"),
    ],
)
def test_flatten_message_utf8_options(
    package: ModuleType,
    message_class: type[Message],
    utf8: bool,
    cte_type: str,
    expected_chunk: bytes,
) -> None:
    message = message_class()
    message["From"] = "ålice@example.com"
    assert expected_chunk in package.email.flatten_message(message, utf8=utf8, cte_type=cte_type)


def test_flatten_message_removes_bcc_and_resent_bcc(package: ModuleType) -> None:
    message = EmailMessage()
    message["Bcc"] = "alice@example.com"
    assert package.email.flatten_message(message) == b"\r\n"
    message = EmailMessage()
    message["To"] = "bob@example.com"
    message["Resent-Date"] = "Mon, 20 Nov 2017 21:04:27 -0000"
    message["Resent-Bcc"] = "gina@example.com"
    message["Resent-From"] = "hubert@example.com"
    assert package.email.flatten_message(message) == (
        b"To: bob@example.com\r\n"
        b"Resent-Date: Mon, 20 Nov 2017 21:04:27 -0000\r\n"
        b"Resent-From: hubert@example.com\r\n"
        b"\r\n"
    )
    assert message["Resent-Bcc"] == "gina@example.com"


@pytest.mark.parametrize(
    "mime_to, mime_cc, compat32_to, compat32_cc, expected",
    [
        (
            "Alice Smith <alice@example.com>, hackerman@email.com",
            "Bob <Bob@example.com>",
            "Alice Smith <alice@example.com>, hackerman@email.com",
            "Bob <Bob@example.com>",
            ["alice@example.com", "hackerman@email.com", "Bob@example.com"],
        ),
        (
            Address(display_name="Alice Smith", username="alice", domain="example.com"),
            Address(display_name="Bob", username="Bob", domain="example.com"),
            Header("Alice Smith <alice@example.com>"),
            Header("Bob <Bob@example.com>"),
            ["alice@example.com", "Bob@example.com"],
        ),
        (
            Address(display_name="ålice Smith", username="ålice", domain="example.com"),
            Address(display_name="Bøb", username="Bøb", domain="example.com"),
            Header("ålice Smith <ålice@example.com>"),
            Header("Bøb <Bøb@example.com>"),
            ["ålice@example.com", "Bøb@example.com"],
        ),
        (
            Address(display_name="ålice Smith", username="alice", domain="example.com"),
            Address(display_name="Bøb", username="Bob", domain="example.com"),
            Header("ålice Smith <alice@example.com>"),
            Header("Bøb <Bob@example.com>"),
            ["alice@example.com", "Bob@example.com"],
        ),
    ],
    ids=["str", "ascii", "utf8_address", "utf8_display_name"],
)
def test_extract_recipients(
    package: ModuleType, mime_to: Any, mime_cc: Any, compat32_to: Any, compat32_cc: Any, expected: list[str]
) -> None:
    mime = EmailMessage()
    mime["To"] = mime_to
    mime["Cc"] = mime_cc
    assert package.email.extract_recipients(mime) == expected
    compat32 = Message()
    compat32["To"] = compat32_to
    compat32["Cc"] = compat32_cc
    assert package.email.extract_recipients(compat32) == expected


def test_extract_recipients_cases(package: ModuleType) -> None:
    extract = package.email.extract_recipients
    message = EmailMessage()
    message["Bcc"] = "alice@example.com"
    assert extract(message) == ["alice@example.com"]
    message = EmailMessage()
    message["Cc"] = "me"
    assert extract(message) == ["me"]
    message = EmailMessage()
    message["To"] = ("me@example.com", "you")
    assert extract(message) == ["me@example.com", "you"]
    message = EmailMessage()
    message["To"] = "bob@example.com"
    message["Bcc"] = "dustin@example.com"
    message["Resent-Date"] = "Mon, 20 Nov 2017 21:04:27 -0000"
    message["Resent-To"] = "eliza@example.com"
    message["Resent-Cc"] = "fred@example.com"
    message["Resent-Bcc"] = "gina@example.com"
    assert extract(message) == ["eliza@example.com", "fred@example.com", "gina@example.com"]
    message["Resent-Date"] = "Mon, 20 Nov 2018 21:04:27 -0000"
    with pytest.raises(ValueError, match="more than one 'Resent-' header block"):
        extract(message)


@pytest.mark.parametrize(
    "mime_header, compat32_header, expected",
    [
        ("Alice Smith <alice@example.com>", "Alice Smith <alice@example.com>", "alice@example.com"),
        (
            Address(display_name="Alice Smith", username="alice", domain="example.com"),
            Header("Alice Smith <alice@example.com>"),
            "alice@example.com",
        ),
        (
            Address(display_name="ålice Smith", username="ålice", domain="example.com"),
            Header("ålice Smith <ålice@example.com>", "utf-8"),
            "ålice@example.com",
        ),
        (
            Address(display_name="ålice Smith", username="alice", domain="example.com"),
            Header("ålice Smith <alice@example.com>", "utf-8"),
            "alice@example.com",
        ),
    ],
    ids=["str", "ascii", "utf8_address", "utf8_display_name"],
)
def test_extract_sender(package: ModuleType, mime_header: Any, compat32_header: Any, expected: str) -> None:
    mime = EmailMessage()
    mime["From"] = mime_header
    assert package.email.extract_sender(mime) == expected
    compat32 = Message()
    compat32["From"] = compat32_header
    assert package.email.extract_sender(compat32) == expected


def test_extract_sender_cases(package: ModuleType) -> None:
    extract = package.email.extract_sender
    message = EmailMessage()
    message["From"] = "bob@example.com"
    message["Sender"] = "alice@example.com"
    assert extract(message) == "alice@example.com"
    message = EmailMessage()
    message["From"] = "alice@example.com"
    message["Resent-Date"] = "Mon, 20 Nov 2017 21:04:27 -0000"
    message["Resent-From"] = "hubert@example.com"
    assert extract(message) == "hubert@example.com"
    message["Resent-Date"] = "Mon, 20 Nov 2018 21:04:27 -0000"
    with pytest.raises(ValueError):
        extract(message)
    message = EmailMessage()
    message["From"] = "undisclosed-recipients:;"
    assert extract(message) is None
    assert extract(EmailMessage()) is None


def test_extract_addresses(package: ModuleType) -> None:
    extract = package.email.extract_addresses
    assert extract("A <a@example.com>, b@example.com") == ["a@example.com", "b@example.com"]
    assert extract(Header("Bøb <Bob@example.com>")) == ["Bob@example.com"]
    message = EmailMessage()
    message["To"] = Address("Alice", "alice", "example.com")
    assert extract(message["To"]) == ["alice@example.com"]
    with pytest.raises(ValueError):
        extract(Header("a b@example.com"))


def test_send_message_with_a_header_assigned_a_sequence_of_strings(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = ("me@example.com", "you@example.com")
    message.set_content("x")

    async def main() -> Any:
        async with adapter.module.SMTP(hostname=server.host, port=server.port, start_tls=False) as smtp:
            return await smtp.send_message(message)

    adapter.run(main)
    [received] = server.messages
    assert received.rcpt_tos == ["me@example.com", "you@example.com"]


def test_concurrent_commands_are_serialised(adapter: Adapter, smtpd: Any) -> None:
    """As aiosmtplib's test_many_commands_with_gather: concurrent calls queue, each gets its reply.

    (trio starts tasks in no fixed order, so the calls are ones any order allows.)
    """
    server = smtpd()

    async def main() -> list[int]:
        async with adapter.module.SMTP(hostname=server.host, port=server.port, start_tls=False) as smtp:
            calls = [smtp.ehlo, smtp.noop, lambda: smtp.vrfy("a@example.com"), smtp.rset]
            if adapter.module is smtp_asyncio:
                replies = await asyncio.gather(*(call() for call in calls))
                return [reply.code for reply in replies]
            import anyio

            codes: dict[int, int] = {}

            async def run(index: int, call: Callable[[], Any]) -> None:
                codes[index] = (await call()).code

            async with anyio.create_task_group() as group:
                for index, call in enumerate(calls):
                    group.start_soon(run, index, call)
            return [codes[index] for index in range(len(calls))]

    assert adapter.run(main) == [250, 250, 252, 250]


def test_connect_timeout_is_not_saved(adapter: Adapter, smtpd: Any) -> None:
    """A timeout given to connect() is for that call; the one given to __init__ is kept."""
    server = smtpd()

    async def main() -> Any:
        smtp = adapter.module.SMTP(hostname=server.host, port=server.port, timeout=0.66, start_tls=False)
        await smtp.connect(timeout=0.99)
        try:
            return smtp.timeout
        finally:
            await smtp.quit()

    assert adapter.run(main) == 0.66


def test_ehlo_during_a_transaction_resets_it(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd()

    async def main() -> tuple[int, int]:
        async with adapter.module.SMTP(hostname=server.host, port=server.port, start_tls=False) as smtp:
            await smtp.mail("a@example.com")
            hello = await smtp.ehlo()
            return hello.code, (await smtp.mail("b@example.com")).code

    assert adapter.run(main) == (250, 250)


def test_is_connected_turns_false_when_the_server_closes(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix(), Close()])

    async def main() -> bool:
        smtp = adapter.module.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False)
        await smtp.connect()
        await smtp.ehlo()
        for _ in range(50):  # the close follows the EHLO reply: allow it 0.5 s to arrive
            if not smtp.is_connected:
                break
            await adapter.sleep(0.01)
        connected = bool(smtp.is_connected)
        smtp.close()
        return connected

    assert adapter.run(main) is False


TRANSPORT_KEYS = ("peername", "sockname", "socket", "sslcontext", "ssl_object", "peercert", "cipher")


def test_transport_info_keys_over_tls(adapter: Adapter, smtpd: Any) -> None:
    """get_transport_info() answers asyncio's extra-info keys, as aiosmtplib's test_tls does."""
    server = smtpd(tls="implicit")

    async def main() -> dict[str, Any]:
        async with adapter.module.SMTP(
            hostname=server.host, port=server.port, use_tls=True, cert_bundle=server.ca_path
        ) as smtp:
            return {key: smtp.get_transport_info(key) for key in TRANSPORT_KEYS}

    info = adapter.run(main)
    assert info["peername"][1] == server.port
    assert [key for key in TRANSPORT_KEYS if info[key] is None] == []


# -- esmtp ---------------------------------------------------------------------------------


def test_parse_esmtp_extensions_basic(package: ModuleType) -> None:
    response = (
        "size.does.matter.af.MIL offers FIFTEEN extensions:\n"
        "8BITMIME\nPIPELINING\nDSN\nENHANCEDSTATUSCODES\nEXPN\nHELP\nSAML\nSEND\nSOML\n"
        "TURN\nXADR\nXSTA\nETRN\nXGEN\nSIZE 51200000\n    "
    )
    extensions, auth = package.esmtp.parse_esmtp_extensions(response)
    assert extensions == {
        **{
            name: ""
            for name in (
                "8bitmime", "pipelining", "dsn", "enhancedstatuscodes", "expn", "help", "saml",
                "send", "soml", "turn", "xadr", "xsta", "etrn", "xgen",
            )
        },
        "size": "51200000",
    }
    assert auth == []


@pytest.mark.parametrize(
    "response, extensions, auth",
    [
        ("size.does.matter.af.MIL offers ZERO extensions:\n    ", {}, []),
        ("mail.example.com Hello [127.0.0.1]\nAUTH FOO BAR\n    ", {"auth": "FOO BAR"}, ["foo", "bar"]),
        ("mail.example.com Hello [127.0.0.1]\nAUTH=PLAIN\n    ", {"auth": "PLAIN"}, ["plain"]),
        (
            "mail.example.com Hello [127.0.0.1]\nAUTH=PLAIN\nAUTH CRAM-MD5\n    ",
            {"auth": "CRAM-MD5"},
            ["plain", "cram-md5"],
        ),
        ("mx\nAUTH=PLAIN LOGIN\n", {"auth": "PLAIN LOGIN"}, ["plain", "login"]),
        ("mx\nAUTH=CRAM-MD5\n", {"auth": "CRAM-MD5"}, ["cram-md5"]),
        ("mail.example.com Hello [127.0.0.1]\n   SIZE 1000", {"size": "1000"}, []),
        ("mail.example.com Hello [127.0.0.1]\n\n8BITMIME\n", {"8bitmime": ""}, []),
        (
            "x\nAUTH=PLAIN\nAUTH CRAM-MD5 login\nsize   10 \n  \nX-FOO=bar baz\n",
            {"auth": "CRAM-MD5 login", "size": "  10", "x-foo=bar": "baz"},
            ["plain", "cram-md5", "login"],
        ),
        ("only the greeting line", {}, []),
        ("", {}, []),
    ],
)
def test_parse_esmtp_extensions(
    package: ModuleType, response: str, extensions: dict[str, str], auth: list[str]
) -> None:
    assert package.esmtp.parse_esmtp_extensions(response) == (extensions, auth)


def test_client_state_agrees_with_parse_esmtp_extensions(adapter: Adapter, smtpd: Any) -> None:
    """What the client records from a real EHLO reply is what parse_esmtp_extensions gives."""
    server = smtpd(auth={"user": "pw"})
    package = adapter.module

    async def main() -> None:
        async with package.SMTP(hostname=server.host, port=server.port, start_tls=False) as smtp:
            await smtp.ehlo()
            extensions, auth = package.esmtp.parse_esmtp_extensions(smtp.last_ehlo_response.message)
            assert smtp.esmtp_extensions == extensions
            assert smtp.server_auth_methods == auth
            assert "auth" in extensions and "size" in extensions

    adapter.run(main)


def test_login_takes_timeout_by_position(adapter: Adapter, smtpd: Any) -> None:
    server = smtpd(auth={"user": "pw"})

    async def main() -> Any:
        async with adapter.module.SMTP(hostname=server.host, port=server.port, start_tls=False) as smtp:
            return await smtp.login("user", "pw", 5)

    assert adapter.run(main).code == 235


# -- auth ----------------------------------------------------------------------------------


def test_auth_known_values(package: ModuleType) -> None:
    auth = package.auth
    # RFC 2195's example exchange.
    challenge = base64.b64encode(b"<1896.697170952@postoffice.reston.mci.net>")
    assert auth.auth_crammd5_verify("tim", "tanstaaftanstaaf", challenge) == base64.b64encode(
        b"tim b913a602c7eda7a495b4e6e7334d3890"
    )
    assert auth.auth_crammd5_verify(b"tim", b"tanstaaftanstaaf", challenge.decode()) == (
        b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
    )
    assert auth.auth_plain_encode("user", "pass") == b"AHVzZXIAcGFzcw=="
    assert auth.auth_login_encode("user", "pass") == (b"dXNlcg==", b"cGFzcw==")
    assert auth.auth_xoauth2_encode("u@x", "tok") == b"dXNlcj11QHgBYXV0aD1CZWFyZXIgdG9rAQE="
    token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
    assert base64.b64decode(auth.auth_xoauth2_encode("someuser@example.com", token)) == (
        b"user=someuser@example.com\x01auth=Bearer " + token.encode() + b"\x01\x01"
    )


@pytest.mark.parametrize("challenge", ["abc", "not base64!!", b"abc"], ids=["padding", "length", "bytes"])
def test_auth_crammd5_invalid_challenge(package: ModuleType, challenge: str | bytes) -> None:
    with pytest.raises(package.errors.SMTPAuthenticationError) as info:
        package.auth.auth_crammd5_verify("username", "password", challenge)
    assert info.value.code == package.SMTPStatus.auth_continue == 334
    assert info.value.message == f"Invalid CRAM-MD5 challenge from server: {challenge!r}"


@given(st.one_of(st.tuples(st.binary(), st.binary(), st.binary()), st.tuples(st.text(), st.text(), st.text())))
def test_auth_encodings(values: tuple[Any, Any, Any]) -> None:
    username, secret, _ = values
    raw = [v.encode() if isinstance(v, str) else v for v in values]
    digest = hmac.new(raw[1], raw[2], "md5").hexdigest().encode()
    for package in PACKAGES:
        auth = package.auth
        assert auth.auth_crammd5_verify(username, secret, base64.b64encode(raw[2])) == base64.b64encode(
            raw[0] + b" " + digest
        )
        assert auth.auth_plain_encode(username, secret) == base64.b64encode(b"\0" + raw[0] + b"\0" + raw[1])
        assert auth.auth_login_encode(username, secret) == (base64.b64encode(raw[0]), base64.b64encode(raw[1]))
        assert auth.auth_xoauth2_encode(username, secret) == base64.b64encode(
            b"user=" + raw[0] + b"\x01auth=Bearer " + raw[1] + b"\x01\x01"
        )


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\x01"), min_size=1),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\x01"), min_size=1),
    st.binary(min_size=1),
)
def test_auth_functions_match_what_the_client_sends(username: str, password: str, challenge: bytes) -> None:
    """The helper functions and the client's SASL mechanisms put the same bytes on the wire."""
    auth = smtp_asyncio.auth
    plain = _sasl.Plain(username, password).initial_response()
    assert plain is not None
    assert auth.auth_plain_encode(username, password) == _sasl.encode_response(plain).encode()
    login = _sasl.Login(username, password)
    first = login.initial_response()
    assert first is not None
    second = login.respond(b"Password:")
    assert auth.auth_login_encode(username, password) == (
        _sasl.encode_response(first).encode(),
        _sasl.encode_response(second).encode(),
    )
    cram = _sasl.CramMD5(username, password).respond(challenge)
    assert auth.auth_crammd5_verify(username, password, base64.b64encode(challenge)) == (
        _sasl.encode_response(cram).encode()
    )
    xoauth2 = _sasl.XOAuth2(username, password).initial_response()
    assert xoauth2 is not None
    assert auth.auth_xoauth2_encode(username, password) == _sasl.encode_response(xoauth2).encode()


# -- protocol ------------------------------------------------------------------------------


def test_protocol_names(package: ModuleType) -> None:
    protocol = package.protocol
    expected = StreamProtocol if package is smtp_asyncio else AnyioTransport
    assert protocol.SMTPProtocol is expected
    assert protocol.FlowControlMixin is smtp_asyncio.protocol.FlowControlMixin
    assert issubclass(protocol.FlowControlMixin, asyncio.Protocol)
    assert protocol.__doc__ is not None and "ClientConnection" in protocol.__doc__
    assert protocol.PERIOD_REGEX.sub(b"..", b".a\r\n.b\r\nc.\r\n") == b"..a\r\n..b\r\nc.\r\n"
    assert protocol.COMMAND_INJECTION_REGEX.search(b"MAIL FROM:<a@b>\r\n")
    assert protocol.COMMAND_INJECTION_REGEX.search(b"a\x7f") and not protocol.COMMAND_INJECTION_REGEX.search(b"a b")
    assert protocol.LINE_ENDINGS_REGEX.sub(b"|", b"a\r\nb\nc\rd\r\r\n") == b"a|b|c|d||"


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", b"\r\n"),
        (b"a", b"a\r\n"),
        (b"a\r\n", b"a\r\n"),
        (b"a\nb\rc\r\nd", b"a\r\nb\r\nc\r\nd\r\n"),
        (b"\r\r\n\n\r", b"\r\n\r\n\r\n\r\n"),
        (b"\n\r", b"\r\n\r\n"),
    ],
)
def test_normalize_message_line_endings(package: ModuleType, data: bytes, expected: bytes) -> None:
    assert package.protocol.normalize_message_line_endings(data) == expected


def test_flow_control_mixin() -> None:
    """The mixin's drain waits while writing is paused, and fails once the connection is lost."""

    class Writer(smtp_asyncio.protocol.FlowControlMixin):
        pass

    async def main() -> None:
        writer = Writer(asyncio.get_running_loop())
        await writer._drain_helper()  # not paused: returns at once
        writer.pause_writing()
        drain = asyncio.ensure_future(writer._drain_helper())
        await asyncio.sleep(0)
        assert not drain.done()
        writer.resume_writing()
        await drain
        writer.pause_writing()
        drain = asyncio.ensure_future(writer._drain_helper())
        await asyncio.sleep(0)
        writer.connection_lost(BrokenPipeError("gone"))
        with pytest.raises(BrokenPipeError):
            await drain
        with pytest.raises(ConnectionResetError):
            await writer._drain_helper()
        assert not writer._drain_waiters
        with pytest.raises(NotImplementedError):
            writer._get_close_waiter(None)  # type: ignore[arg-type]

    asyncio.run(main())


# -- side by side with aiosmtplib, when it is installed -------------------------------------------

ADDRESSES = [
    '"A.Smith" <asmith+foo@example.com>',
    "Pepé Le Pew <pépe@example.com>",
    "<a@new.topleveldomain>",
    "B. Smith <b@example.com",
    "email@[123.123.123.123]",
    '"a b"@example.com',
    '"a\\"b"@example.com',
    'Display Name <"a b"@example.com>',
    "",
    "   ",
    " me ",
    "<>",
    "<<a@b.c>>",
    "a@b.c>",
    "a@b.c, d@e.f",
    "group: a@b.c;",
    "undisclosed-recipients:;",
    "@route:a@b.c",
    "a(comment)@b.c",
    "a@[IPv6:::1]",
    '"unterminated@example.com',
    'x"@example.com',
    "test@example.com> AUTH=<attacker@example.com",
    "test@example.com\r\nRCPT TO:<hijacker@example.com>",
    "test@example.com\tX",
    "тест@пример.рф",
    "a\x00b@example.com",
]


def _messages() -> list[Message]:
    messages: list[Message] = []
    for cls in (EmailMessage, Message):
        message = cls()
        message["From"] = "Alice <alice@example.com>"
        message["To"] = "bob@example.com, Carol <carol@example.com>"
        message["Cc"] = "dave@example.com"
        message["Bcc"] = "eve@example.com"
        message["Subject"] = "Héllo"
        message.set_payload("body with ümlaut\nand a second line\n", "utf-8")
        messages.append(message)
        resent = cls()
        resent["From"] = "alice@example.com"
        resent["Sender"] = "Secretary <sec@example.com>"
        resent["Resent-Date"] = "Mon, 20 Nov 2017 21:04:27 -0000"
        resent["Resent-From"] = "hubert@example.com"
        resent["Resent-Sender"] = "ivan@example.com"
        resent["Resent-To"] = "judy@example.com"
        resent["Resent-Bcc"] = "mallory@example.com"
        messages.append(resent)
        twice = cls()
        twice["Resent-Date"] = "Mon, 20 Nov 2017 21:04:27 -0000"
        twice["Resent-Date"] = "Mon, 20 Nov 2018 21:04:27 -0000"
        messages.append(twice)
        empty = cls()
        messages.append(empty)
        group = cls()
        group["From"] = "undisclosed-recipients:;"
        group["To"] = "undisclosed-recipients:;"
        messages.append(group)
        loose = cls()
        loose["From"] = "me"
        loose["To"] = "you, them"
        messages.append(loose)
    headers = Message()
    headers["From"] = Header("ålice Smith <alice@example.com>", "utf-8")  # type: ignore[assignment]
    headers["To"] = Header("Bøb <Bob@example.com>")  # type: ignore[assignment]
    headers["Cc"] = Header("evil@example.com> NOTIFY=NEVER")  # type: ignore[assignment]
    messages.append(headers)
    strings = EmailMessage()
    strings["To"] = ("me@example.com", "you")
    strings["From"] = Address("ålice", "ålice", "example.com")
    messages.append(strings)
    return messages


EHLO_REPLIES = [
    "mx.example.org\nPIPELINING\nSIZE 10240000\nAUTH PLAIN LOGIN\nAUTH=LOGIN\nSTARTTLS",
    "mx\nauth=plain\nAuth Cram-MD5\n\n  8bitmime  \nX-EXT=a=b c\nsize",
    "mx\nAUTH\nAUTH=\nAUTH  \n\tDSN\r\nSMTPUTF8\r",
    "",
    "one line only",
]


@pytest.mark.parametrize("name", list(ALL), ids=[n or "package" for n in ALL])
def test_side_by_side_names(package: ModuleType, name: str) -> None:
    """Every name aiosmtplib's module defines or re-exports (bar stdlib typing helpers) is here."""
    theirs = reference(name)
    ours = submodule(package, name)
    assert set(theirs.__all__) <= set(ours.__all__)
    for attr, value in vars(theirs).items():
        if attr.startswith("__") or isinstance(value, ModuleType):
            continue
        if attr in STDLIB_HELPERS:
            continue
        assert hasattr(ours, attr), f"{ours.__name__}.{attr}"
        mine = getattr(ours, attr)
        if isinstance(value, (int, str)):
            assert mine == value, attr
        elif isinstance(value, re.Pattern):
            assert (mine.pattern, mine.flags) == (value.pattern, value.flags), attr
        elif inspect.isfunction(value) and attr != "send":  # send: test_call_compatible_send
            params = [(p.name, p.kind, p.default) for p in inspect.signature(value).parameters.values()]
            assert [
                (p.name, p.kind, p.default) for p in inspect.signature(mine).parameters.values()
            ] == params, attr


def call_problems(theirs: Callable[..., Any], ours: Callable[..., Any]) -> list[str]:
    """Ways a call that works on ``theirs`` would fail on ``ours``.

    Extra optional parameters, and a parameter that accepts more ways of passing it,
    are fine.
    """
    P = inspect.Parameter
    their_params = list(inspect.signature(theirs).parameters.values())
    our_params = list(inspect.signature(ours).parameters.values())
    ours_by_name = {p.name: p for p in our_params}
    any_keyword = any(p.kind is P.VAR_KEYWORD for p in our_params)
    positional = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
    their_positional = [p for p in their_params if p.kind in positional]
    our_positional = [p for p in our_params if p.kind in positional]
    problems = []
    for index, param in enumerate(their_positional):
        if index >= len(our_positional):
            problems.append(f"{param.name} cannot be passed by position")
        elif param.default is not P.empty and our_positional[index].default is P.empty:
            problems.append(f"{param.name} is required")
    for param in their_params:
        if param.kind not in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
            continue
        mine = ours_by_name.get(param.name)
        if mine is None or mine.kind not in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
            if not any_keyword:
                problems.append(f"{param.name} cannot be passed by keyword")
        elif param.default is not P.empty and not (
            # The Default.token markers are distinct enums with the same repr.
            mine.default == param.default or repr(mine.default) == repr(param.default)
        ):
            problems.append(f"{param.name} defaults to {mine.default!r}, not {param.default!r}")
    their_names = {p.name for p in their_params}
    for param in our_params:
        required = param.default is P.empty and param.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)
        if param.name not in their_names and required:
            problems.append(f"{param.name} is an extra required parameter")
    return problems


SMTP_METHODS = [
    "__init__", "__aenter__", "__aexit__", "connect", "execute_command", "helo", "ehlo",
    "help", "rset", "noop", "vrfy", "expn", "quit", "mail", "rcpt", "data", "starttls",
    "login", "auth_crammd5", "auth_plain", "auth_login", "auth_xoauth2", "sendmail",
    "send_message", "sendmail_sync", "send_message_sync", "close", "get_transport_info",
    "supports_extension",
]


@pytest.mark.parametrize("method", SMTP_METHODS)
def test_call_compatible_smtp_methods(package: ModuleType, method: str) -> None:
    """A call that works on aiosmtplib's SMTP method works on ours."""
    theirs = getattr(reference("smtp").SMTP, method)
    assert call_problems(theirs, getattr(package.SMTP, method)) == []


def test_call_compatible_send(package: ModuleType) -> None:
    assert call_problems(reference("api").send, package.api.send) == []


def test_side_by_side_status_and_response() -> None:
    theirs = reference("typing")
    assert {m.name: m.value for m in smtp_core.SMTPStatus} == {m.name: m.value for m in theirs.SMTPStatus}
    assert [m.name for m in smtp_core._response.Default] == [m.name for m in theirs.Default]
    response = reference("response").SMTPResponse
    assert smtp_core.SMTPResponse._fields == response._fields
    assert str(smtp_core.SMTPResponse(250, "OK")) == str(response(250, "OK"))


@pytest.mark.parametrize("address", ADDRESSES)
def test_side_by_side_addresses(address: str) -> None:
    theirs = reference("email")
    ours = smtp_asyncio.email
    assert outcome(ours.parse_address, address) == outcome(theirs.parse_address, address)
    assert outcome(ours.quote_address, address) == outcome(theirs.quote_address, address)
    assert outcome(ours.extract_addresses, address) == outcome(theirs.extract_addresses, address)


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from('ab@.<>" \t\r\n\\(),:;[]é'), max_size=20))
def test_side_by_side_generated_addresses(address: str) -> None:
    theirs = reference("email")
    ours = smtp_anyio.email
    assert outcome(ours.parse_address, address) == outcome(theirs.parse_address, address)
    assert outcome(ours.extract_addresses, address) == outcome(theirs.extract_addresses, address)


@pytest.mark.parametrize("index", range(len(_messages())))
def test_side_by_side_messages(index: int) -> None:
    theirs = reference("email")
    ours = smtp_asyncio.email
    message = _messages()[index]
    assert outcome(ours.extract_sender, message) == outcome(theirs.extract_sender, message)
    assert outcome(ours.extract_recipients, message) == outcome(theirs.extract_recipients, message)
    for utf8 in (False, True):
        for cte_type in ("8bit", "7bit"):
            assert outcome(ours.flatten_message, message, utf8=utf8, cte_type=cte_type) == outcome(
                theirs.flatten_message, message, utf8=utf8, cte_type=cte_type
            )


@pytest.mark.parametrize("reply", EHLO_REPLIES)
def test_side_by_side_ehlo_replies(reply: str) -> None:
    theirs = reference("esmtp")
    assert smtp_asyncio.esmtp.parse_esmtp_extensions(reply) == theirs.parse_esmtp_extensions(reply)


@given(st.text(alphabet=st.sampled_from("aAuUtThH= -\n\r\t1"), max_size=30))
def test_side_by_side_generated_ehlo_replies(reply: str) -> None:
    theirs = reference("esmtp")
    assert smtp_anyio.esmtp.parse_esmtp_extensions(reply) == theirs.parse_esmtp_extensions(reply)


@given(st.one_of(st.text(), st.binary()), st.one_of(st.text(), st.binary()), st.one_of(st.text(), st.binary()))
def test_side_by_side_auth(username: str | bytes, secret: str | bytes, challenge: str | bytes) -> None:
    theirs = reference("auth")
    ours = smtp_asyncio.auth
    for name in ("auth_plain_encode", "auth_login_encode", "auth_xoauth2_encode"):
        assert outcome(getattr(ours, name), username, secret) == outcome(getattr(theirs, name), username, secret)
    for text in (challenge, base64.b64encode(challenge if isinstance(challenge, bytes) else challenge.encode())):
        mine = outcome(ours.auth_crammd5_verify, username, secret, text)
        assert mine == outcome(theirs.auth_crammd5_verify, username, secret, text)


@given(st.binary(max_size=40) | st.text(alphabet="a.\r\n", max_size=20).map(str.encode))
def test_side_by_side_line_endings(data: bytes) -> None:
    theirs = reference("protocol")
    assert smtp_anyio.protocol.normalize_message_line_endings(data) == theirs.normalize_message_line_endings(data)
