"""Real packages built on aiosmtplib, run on smtp-sansio by replacing the import.

Each package (installed with the ``interop`` extra) is imported while
``sys.modules["aiosmtplib"]`` and its submodules are ``smtp_asyncio`` or
``smtp_anyio``, used as its README shows, and sends a real message to an aiosmtpd
server on loopback; the test checks what the server received. The packages depend
on aiosmtplib, so it is installed too: each test proves that our client did the
work, by the package's own module seeing our ``aiosmtplib`` and by the
conversation on the ``smtp_sansio.protocol`` trace logger (aiosmtplib has none).
A package that is not installed is skipped, with the reason.

The FastAPI application's handler is defined inside its test, so annotations are
real objects here (no ``from __future__ import annotations``): FastAPI reads them
to validate the request body. (litestar-email's dependency-injection example fails
with litestar 2.25 whatever the SMTP client, so its standalone use is tested.)
"""

import asyncio
import contextlib
import email
import email.policy
import errno
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from types import ModuleType

import anyio
import pytest

import smtp_anyio
import smtp_asyncio

from .servers import ServerInfo, free_port

SUBMODULES = (
    "api",
    "auth",
    "email",
    "errors",
    "esmtp",
    "protocol",
    "response",
    "smtp",
    "status",
    "typing",
)

DROP_INS = [smtp_asyncio, smtp_anyio]


def _drop(prefixes: tuple[str, ...]) -> dict[str, ModuleType]:
    """Remove the named packages (and their submodules) from sys.modules; return them."""
    removed = {
        name: module
        for name, module in sys.modules.items()
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)
    }
    for name in removed:
        del sys.modules[name]
    return removed


@contextlib.contextmanager
def imported_as_aiosmtplib(module: ModuleType, *packages: str) -> Iterator[None]:
    """``module`` (and its submodules) as ``aiosmtplib`` while ``packages`` are imported and used.

    ``packages`` are imported afresh inside (so their ``import aiosmtplib`` binds to
    ``module``) and forgotten afterwards; the real aiosmtplib, if it was imported,
    is put back.
    """
    saved = _drop(("aiosmtplib",))
    saved_packages = _drop(packages)
    sys.modules["aiosmtplib"] = module
    for name in SUBMODULES:
        sys.modules[f"aiosmtplib.{name}"] = importlib.import_module(f"{module.__name__}.{name}")
    try:
        yield
    finally:
        _drop(("aiosmtplib", *packages))
        sys.modules.update(saved)
        sys.modules.update(saved_packages)


def requires(distribution: str, module: str) -> pytest.MarkDecorator:
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(
        missing, reason=f"{distribution} is not installed (pip install -e '.[interop]')"
    )


@pytest.fixture(params=DROP_INS, ids=[m.__name__ for m in DROP_INS])
def drop_in(request: pytest.FixtureRequest) -> ModuleType:
    """The package standing in for aiosmtplib (both run under asyncio here)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def trace(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The client's side of the conversation, from the ``smtp_sansio.protocol`` logger."""
    caplog.set_level(logging.DEBUG, logger="smtp_sansio.protocol")

    def client_lines() -> list[str]:
        return [
            record.getMessage()
            for record in caplog.records
            if record.name == "smtp_sansio.protocol" and record.getMessage().startswith("C: ")
        ]

    return client_lines


def verbs(lines: list[str]) -> list[str]:
    """The command verbs in the client's trace lines (not AUTH answers or content)."""
    words = [line[3:].split(" ", 1)[0].split(":", 1)[0] for line in lines]
    return [word.upper() for word in words if word.isalpha()]


def parsed(content: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def body_text(message: email.message.EmailMessage, subtype: str = "plain") -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


# -- fastapi-mail ------------------------------------------------------------------------


@requires("fastapi-mail", "fastapi_mail")
@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_fastapi_mail_readme_tls_with_login(
    tls: str,
    drop_in: ModuleType,
    smtpd: Callable[..., ServerInfo],
    trace: Callable[[], list[str]],
) -> None:
    """The README's quick start: FastMail(conf).send_message() over TLS with AUTH.

    As in the README (MAIL_SSL_TLS, port 465 style) and with MAIL_STARTTLS (587 style).
    """
    server = smtpd(tls=tls, auth={"username": "s3cret"})
    with imported_as_aiosmtplib(drop_in, "fastapi_mail"):
        from fastapi_mail import ConnectionConfig, FastMail, MessageSchema, MessageType
        from fastapi_mail import connection as fastapi_mail_connection

        assert fastapi_mail_connection.aiosmtplib is drop_in
        conf = ConnectionConfig(
            MAIL_USERNAME="username",
            MAIL_PASSWORD="s3cret",  # type: ignore[arg-type]
            MAIL_FROM="test@email.com",
            MAIL_PORT=server.port,
            MAIL_SERVER=server.host,
            MAIL_STARTTLS=tls == "starttls",
            MAIL_SSL_TLS=tls == "implicit",
            USE_CREDENTIALS=True,
            VALIDATE_CERTS=True,
            CERT_BUNDLE=server.ca_path,
            LOCAL_HOSTNAME="client.example.org",
        )
        message = MessageSchema(
            subject="Fastapi-Mail module",
            recipients=["alice@example.org", "Bob <bob@example.org>"],  # type: ignore[list-item]
            body="<p>Thanks for using Fastapi-mail</p>",
            subtype=MessageType.html,
        )
        asyncio.run(FastMail(conf).send_message(message))

    [received] = server.messages
    assert received.mail_from == "test@email.com"
    assert received.rcpt_tos == ["alice@example.org", "bob@example.org"]
    assert received.authenticated_as == b"username"
    sent = parsed(received.content)
    assert sent["Subject"] == "Fastapi-Mail module"
    assert "Thanks for using Fastapi-mail" in body_text(sent, "html")
    handshake = ["EHLO", "AUTH"] if tls == "implicit" else ["EHLO", "STARTTLS", "EHLO", "AUTH"]
    assert verbs(trace()) == [*handshake, "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]


@requires("fastapi-mail", "fastapi_mail")
@requires("fastapi", "fastapi")
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
def test_fastapi_mail_readme_app(
    drop_in: ModuleType, smtpd: Callable[..., ServerInfo], trace: Callable[[], list[str]]
) -> None:
    """The README's FastAPI application, posted to with FastAPI's test client."""
    server = smtpd()
    with imported_as_aiosmtplib(drop_in, "fastapi_mail"):
        from fastapi import FastAPI
        from fastapi.testclient import TestClient
        from fastapi_mail import ConnectionConfig, FastMail, MessageSchema, MessageType, NameEmail
        from pydantic import BaseModel
        from starlette.responses import JSONResponse

        class EmailSchema(BaseModel):
            email: list[NameEmail]

        conf = ConnectionConfig(
            MAIL_USERNAME="",
            MAIL_PASSWORD="",  # type: ignore[arg-type]
            MAIL_FROM="test@email.com",
            MAIL_PORT=server.port,
            MAIL_SERVER=server.host,
            MAIL_STARTTLS=False,
            MAIL_SSL_TLS=False,
            USE_CREDENTIALS=False,
            VALIDATE_CERTS=True,
            LOCAL_HOSTNAME="client.example.org",
        )
        app = FastAPI()

        @app.post("/email")
        async def simple_send(email: EmailSchema) -> JSONResponse:
            message = MessageSchema(
                subject="Fastapi-Mail module",
                recipients=email.model_dump().get("email"),  # type: ignore[arg-type]
                body="<p>Thanks for using Fastapi-mail</p>",
                subtype=MessageType.html,
            )
            await FastMail(conf).send_message(message)
            return JSONResponse(status_code=200, content={"message": "email has been sent"})

        with TestClient(app) as client:
            reply = client.post("/email", json={"email": ["Carol <carol@example.org>"]})
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"message": "email has been sent"}

    [received] = server.messages
    assert received.rcpt_tos == ["carol@example.org"]
    assert parsed(received.content)["To"] == "Carol <carol@example.org>"
    assert verbs(trace()) == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]


@requires("fastapi-mail", "fastapi_mail")
def test_fastapi_mail_config_default_timeout_is_ours(drop_in: ModuleType) -> None:
    """fastapi-mail's config imports DEFAULT_TIMEOUT from aiosmtplib.api at import time."""
    with imported_as_aiosmtplib(drop_in, "fastapi_mail"):
        from fastapi_mail import ConnectionConfig

        field = ConnectionConfig.model_fields["TIMEOUT"]
        assert field.default == drop_in.api.DEFAULT_TIMEOUT == 60


# -- mailers -----------------------------------------------------------------------------


@requires("mailers", "mailers")
def test_mailers_readme_send_message_with_login(
    drop_in: ModuleType, smtpd: Callable[..., ServerInfo], trace: Callable[[], list[str]]
) -> None:
    """The README's Mailer("smtp://user:password@host:port?timeout=2").send_message(...)."""
    server = smtpd(auth={"user": "password"})
    with imported_as_aiosmtplib(drop_in, "mailers"):
        from mailers import Mailer

        async def main() -> None:
            mailer = Mailer(f"smtp://user:password@{server.host}:{server.port}?timeout=2")
            await mailer.send_message(
                to="user@localhost", from_address="from@localhost", subject="Hello", text="World!"
            )

        asyncio.run(main())

    [received] = server.messages
    assert received.mail_from == "from@localhost"
    assert received.rcpt_tos == ["user@localhost"]
    assert received.authenticated_as == b"user"
    sent = parsed(received.content)
    assert sent["Subject"] == "Hello"
    assert body_text(sent).strip() == "World!"
    assert "AUTH" in verbs(trace())


@requires("mailers", "mailers")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_mailers_compose_with_cc_and_bcc_on_anyio(
    backend: str, smtpd: Callable[..., ServerInfo], trace: Callable[[], list[str]]
) -> None:
    """mailers runs on anyio: with smtp_anyio as aiosmtplib it sends under trio too.

    The README's ``Email(to=..., cc=..., bcc=[...])`` sent with ``mailer.send``:
    Bcc recipients get the message, and the Bcc header is not in its text.
    """
    server = smtpd()
    with imported_as_aiosmtplib(smtp_anyio, "mailers"):
        from mailers import Email, Mailer

        message = Email(
            to="user@localhost",
            from_address="from@example.tld",
            cc="cc@example.com",
            bcc=["bcc@example.com"],
            text="Hello world!",
            html="<b>Hello world!</b>",
        )

        async def main() -> None:
            await Mailer(f"smtp://{server.host}:{server.port}").send(message)

        anyio.run(main, backend=backend)

    [received] = server.messages
    assert received.mail_from == "from@example.tld"
    assert sorted(received.rcpt_tos) == ["bcc@example.com", "cc@example.com", "user@localhost"]
    sent = parsed(received.content)
    assert "Bcc" not in sent
    assert body_text(sent, "html") .strip() == "<b>Hello world!</b>"
    assert verbs(trace())[-1] == "QUIT"


# -- emails ------------------------------------------------------------------------------


@requires("emails", "emails")
def test_emails_send_async_starttls_with_login(
    drop_in: ModuleType, smtpd: Callable[..., ServerInfo], trace: Callable[[], list[str]]
) -> None:
    """The README's message, sent with ``send_async(smtp={... "tls": True, "user": ...})``."""
    server = smtpd(tls="starttls", auth={"billing@example.com": "app-password"})
    with imported_as_aiosmtplib(drop_in, "emails"):
        import emails
        from emails.backend.smtp import aio_client

        assert aio_client.aiosmtplib is drop_in
        message = emails.html(
            subject="Your receipt",
            html="<p>Hello!</p><p>Your payment was received.</p>",
            mail_from=("Billing", "billing@example.com"),
        )
        message.attach(filename="receipt.txt", data=b"paid in full")
        response = asyncio.run(
            message.send_async(
                to="customer@example.com",
                smtp={
                    "host": server.host,
                    "port": server.port,
                    "tls": True,
                    "user": "billing@example.com",
                    "password": "app-password",
                    "cert_bundle": server.ca_path,
                    "local_hostname": "client.example.org",
                },
            )
        )
        assert response.status_code == 250
        assert response.success

    [received] = server.messages
    assert received.mail_from == "billing@example.com"
    assert received.rcpt_tos == ["customer@example.com"]
    assert received.authenticated_as == b"billing@example.com"
    sent = parsed(received.content)
    assert sent["Subject"] == "Your receipt"
    assert "Your payment was received." in body_text(sent, "html")
    [attachment] = list(sent.iter_attachments())
    assert attachment.get_filename() == "receipt.txt"
    assert attachment.get_payload(decode=True) == b"paid in full"
    sent_verbs = verbs(trace())
    assert sent_verbs[: sent_verbs.index("MAIL")] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]


@requires("emails", "emails")
def test_emails_refused_recipient_is_reported(
    drop_in: ModuleType, smtpd: Callable[..., ServerInfo], trace: Callable[[], list[str]]
) -> None:
    """emails drives mail()/rcpt()/data() itself: a refused recipient is in its response."""
    server = smtpd(refuse_recipients={"nobody@example.com": "550 5.1.1 No such user"})
    with imported_as_aiosmtplib(drop_in, "emails"):
        import emails

        message = emails.Message(subject="hi", text="hello", mail_from="a@example.com")
        response = asyncio.run(
            message.send_async(
                to=["b@example.com", "nobody@example.com"],
                smtp={"host": server.host, "port": server.port,
                      "local_hostname": "client.example.org"},
            )
        )
        assert response.success
        assert response.refused_recipients == {
            "nobody@example.com": (550, b"5.1.1 No such user")
        }

    [received] = server.messages
    assert received.rcpt_tos == ["b@example.com"]
    assert "RCPT" in verbs(trace())


@requires("emails", "emails")
def test_emails_wrong_password_is_reported_with_our_exception(
    drop_in: ModuleType, smtpd: Callable[..., ServerInfo]
) -> None:
    """A refused login ends in the response (fail_silently) as aiosmtplib's exception class."""
    server = smtpd(auth={"user": "right"})
    with imported_as_aiosmtplib(drop_in, "emails"):
        import emails

        message = emails.Message(subject="hi", text="hello", mail_from="a@example.com")
        response = asyncio.run(
            message.send_async(
                to="b@example.com",
                smtp={"host": server.host, "port": server.port, "user": "user",
                      "password": "wrong", "local_hostname": "client.example.org"},
            )
        )
    assert not response.success
    assert isinstance(response.error, drop_in.SMTPAuthenticationError)
    assert response.error.code == 535
    assert server.messages == []


@requires("emails", "emails")
@pytest.mark.parametrize(
    "drop_in",
    [smtp_asyncio, smtp_anyio],
    ids=["smtp_asyncio", "smtp_anyio"],
)
def test_emails_connection_refused_keeps_the_os_error(drop_in: ModuleType) -> None:
    """emails reads the OSError behind SMTPConnectError (its __cause__), as with aiosmtplib."""
    port = free_port()  # nothing listens there
    with imported_as_aiosmtplib(drop_in, "emails"):
        import emails
        from emails.backend.smtp.exceptions import SMTPConnectNetworkError

        message = emails.Message(subject="hi", text="hello", mail_from="a@example.com")
        response = asyncio.run(
            message.send_async(
                to="b@example.com",
                smtp={"host": "127.0.0.1", "port": port, "local_hostname": "client.example.org"},
            )
        )
        assert isinstance(response.error, SMTPConnectNetworkError)
    assert response.error.errno == errno.ECONNREFUSED


# -- litestar-email ----------------------------------------------------------------------


@requires("litestar-email", "litestar_email")
def test_litestar_email_standalone(
    drop_in: ModuleType, smtpd: Callable[..., ServerInfo], trace: Callable[[], list[str]]
) -> None:
    """The README's standalone use: EmailConfig(backend=SMTPConfig(...)) and provide_service()."""
    server = smtpd()
    with imported_as_aiosmtplib(drop_in, "litestar_email"):
        from litestar_email import EmailConfig, EmailMessage, SMTPConfig

        config = EmailConfig(
            backend=SMTPConfig(host=server.host, port=server.port),
            from_email="noreply@example.com",
            from_name="My App",
        )

        async def main() -> None:
            async with config.provide_service() as mailer:
                await mailer.send_message(
                    EmailMessage(subject="Welcome!", body="Thanks for signing up.",
                                 to=["user@example.com"])
                )
                await mailer.send_message(
                    EmailMessage(subject="Second", body="Again.", to=["other@example.com"])
                )

        asyncio.run(main())

    first, second = server.messages
    assert first.mail_from == second.mail_from == "noreply@example.com"
    assert first.rcpt_tos == ["user@example.com"]
    assert second.rcpt_tos == ["other@example.com"]
    sent = parsed(first.content)
    assert sent["Subject"] == "Welcome!"
    assert sent["From"] == "My App <noreply@example.com>"
    assert body_text(sent).strip() == "Thanks for signing up."
    # One connection for both messages: one EHLO, one QUIT.
    assert verbs(trace()).count("EHLO") == 1
    assert verbs(trace())[-1] == "QUIT"


@requires("litestar-email", "litestar_email")
def test_litestar_email_starttls_with_login(
    drop_in: ModuleType,
    smtpd: Callable[..., ServerInfo],
    trace: Callable[[], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SMTPConfig(port=587-style, username, password, use_tls=True): starttls() then login().

    litestar-email passes no certificate options, so the test CA is made the
    default trust store (SSL_CERT_FILE) and certificates are verified as in production.
    """
    server = smtpd(tls="starttls", auth={"user@example.com": "secret"})
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_path))
    with imported_as_aiosmtplib(drop_in, "litestar_email"):
        from litestar_email import EmailConfig, EmailMessage, SMTPConfig

        config = EmailConfig(
            backend=SMTPConfig(
                host=server.host, port=server.port, username="user@example.com",
                password="secret", use_tls=True,
            ),
            from_email="noreply@example.com",
        )

        async def main() -> None:
            async with config.provide_service() as mailer:
                await mailer.send_message(
                    EmailMessage(subject="Hi", body="Over TLS.", to=["user@example.com"])
                )

        asyncio.run(main())

    [received] = server.messages
    assert received.authenticated_as == b"user@example.com"
    sent_verbs = verbs(trace())
    assert sent_verbs[: sent_verbs.index("MAIL")] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]


@requires("litestar-email", "litestar_email")
def test_litestar_email_maps_our_exceptions(
    drop_in: ModuleType, smtpd: Callable[..., ServerInfo]
) -> None:
    """litestar-email turns aiosmtplib's SMTPAuthenticationError and SMTPConnectError
    into its own errors: ours are caught the same way."""
    server = smtpd(auth={"user@example.com": "secret"})
    with imported_as_aiosmtplib(drop_in, "litestar_email"):
        from litestar_email import EmailConfig, EmailMessage, SMTPConfig
        from litestar_email.exceptions import EmailAuthenticationError, EmailConnectionError

        async def send(config: SMTPConfig) -> None:
            email_config = EmailConfig(backend=config, from_email="noreply@example.com")
            async with email_config.provide_service() as mailer:
                await mailer.send_message(EmailMessage(subject="x", body="y", to=["z@example.com"]))

        with pytest.raises(EmailAuthenticationError) as refused:
            asyncio.run(send(SMTPConfig(host=server.host, port=server.port,
                                        username="user@example.com", password="wrong")))
        assert isinstance(refused.value.__cause__, drop_in.SMTPAuthenticationError)

        with pytest.raises(EmailConnectionError) as unreachable:
            asyncio.run(send(SMTPConfig(host="127.0.0.1", port=free_port(), timeout=5)))
        assert isinstance(unreachable.value.__cause__, drop_in.SMTPConnectError)
    assert server.messages == []


def test_imported_as_aiosmtplib_restores_sys_modules() -> None:
    """The substitution is undone: afterwards ``aiosmtplib`` is what it was before."""
    before = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] == "aiosmtplib"}
    with imported_as_aiosmtplib(smtp_anyio):
        import aiosmtplib
        from aiosmtplib.smtp import SMTP

        assert aiosmtplib is smtp_anyio
        assert SMTP is smtp_anyio.SMTP
    after = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] == "aiosmtplib"}
    assert after == before


