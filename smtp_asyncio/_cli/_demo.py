"""The embedded demo server: aiosmtpd on 127.0.0.1 for one run of the command line.

It offers STARTTLS (or implicit TLS) with a certificate made at start by ``trustme``,
AUTH for one demo user (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2, OAUTHBEARER),
DSN, SMTPUTF8, and LMTP on request. Both come from the ``demo`` extra.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import logging
import os
import secrets
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEMO_USER", "DemoServer", "Received", "start_demo_server"]

DEMO_USER = "demo"
DEMO_HOSTNAME = "demo.smtp-sansio.invalid"
_DSN_MAIL = ("RET", "ENVID")
_DSN_RCPT = ("NOTIFY", "ORCPT")


class DemoUnavailable(Exception):
    """The demo extra is not installed (or not all of it): ``module`` is missing."""

    def __init__(self, module: str) -> None:
        super().__init__(
            f"the embedded demo server needs {module}: pip install 'smtp-sansio[demo]'"
        )
        self.module = module


@dataclass
class Received:
    """One message the demo server accepted."""

    mail_from: str
    mail_options: list[str]
    rcpt_tos: list[str]
    rcpt_options: list[list[str]]
    content: bytes


@dataclass
class DemoServer:
    """A running demo server; :meth:`stop` ends it."""

    host: str
    port: int
    password: str
    client_context: ssl.SSLContext | None
    implicit_tls: bool
    lmtp: bool
    received: list[Received]
    _controller: Any = field(repr=False)

    def stop(self) -> None:
        self._controller.stop()


def _throwaway_certificate() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A CA and a one-day certificate for 127.0.0.1; the server's and the client's context.

    The client context trusts exactly this CA: not the system store.
    """
    try:
        import trustme
    except ImportError:
        raise DemoUnavailable("trustme (for TLS)") from None
    ca = trustme.CA(organization_name="smtp-sansio demo CA (this run only)")
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = ca.issue_cert(
        "127.0.0.1",
        "localhost",
        "::1",
        common_name=DEMO_HOSTNAME,
        organization_name="smtp-sansio demo server",
        not_before=now - datetime.timedelta(minutes=5),
        not_after=now + datetime.timedelta(days=1),
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server)
    client = ssl.create_default_context(cadata=ca.cert_pem.bytes().decode("ascii"))
    return server, client


def _take_params(arg: str, names: tuple[str, ...]) -> tuple[str, list[str]]:
    """Split the DSN parameters ``names`` off a MAIL/RCPT argument (aiosmtpd refuses them)."""
    path, sep, params = arg.partition(">")
    if not sep:
        return arg, []
    kept: list[str] = []
    taken: list[str] = []
    for param in params.split():
        (taken if param.split("=", 1)[0].upper() in names else kept).append(param)
    return " ".join([path + ">", *kept]), taken


def start_demo_server(*, implicit_tls: bool, lmtp: bool, tls: bool = True) -> DemoServer:
    """Start the demo server in its own thread (``tls=False`` offers no TLS at all)."""
    try:
        from aiosmtpd.controller import Controller
        from aiosmtpd.lmtp import LMTP as LMTPServer
        from aiosmtpd.smtp import SMTP as SMTPServer
        from aiosmtpd.smtp import AuthResult, LoginPassword, syntax
    except ImportError:
        raise DemoUnavailable("aiosmtpd") from None

    # aiosmtpd logs warnings of its own (deprecations) that are not about the session.
    server_log = logging.getLogger("mail.log")
    server_log.addHandler(logging.NullHandler())
    server_log.propagate = False
    password = secrets.token_urlsafe(12)
    received: list[Received] = []
    server_context = client_context = None
    if tls or implicit_tls:
        server_context, client_context = _throwaway_certificate()

    def check(user: bytes, secret: bytes) -> AuthResult:
        ok = hmac.compare_digest(user, DEMO_USER.encode()) and hmac.compare_digest(
            secret, password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(user, b""))

    class Handler:
        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            return [*responses[:-1], "250-DSN", responses[-1]]

        async def handle_MAIL(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            envelope.mail_from = address
            envelope.mail_options.extend([*options, *server.dsn_params])
            return "250 2.1.0 OK"

        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            if address.lower().startswith("refuse"):
                return f"550 5.1.1 <{address}>: the demo server refuses addresses like this"
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.append([*options, *server.dsn_params])
            return "250 2.1.5 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.mail_options),
                    list(envelope.rcpt_tos),
                    [list(options) for options in envelope.rcpt_options],
                    bytes(envelope.original_content or envelope.content),
                )
            )
            if lmtp:  # one reply per accepted recipient (RFC 2033 section 4.2)
                return "\r\n".join(f"250 2.0.0 <{rcpt}> delivered" for rcpt in envelope.rcpt_tos)
            return "250 2.0.0 Message accepted"

        async def auth_CRAM__MD5(self, server: Any, args: list[str]) -> Any:
            challenge = f"<{secrets.randbelow(10**9)}.{os.getpid()}@{DEMO_HOSTNAME}>".encode()
            response = await server.challenge_auth(challenge)
            if not isinstance(response, bytes) or b" " not in response:
                return AuthResult(success=False, handled=False)
            user, digest = response.rsplit(b" ", 1)
            expected = hmac.new(password.encode(), challenge, "md5").hexdigest().encode()
            result = check(user, password.encode())
            result.success = result.success and hmac.compare_digest(expected, digest)
            return result

        async def auth_SCRAM__SHA__256(self, server: Any, args: list[str]) -> Any:
            failed = AuthResult(success=False, handled=False)
            if len(args) < 2:
                return failed
            try:
                client_first = base64.b64decode(args[1], validate=True)
                bare = client_first.split(b",", 2)[2]
                fields = dict(part.split(b"=", 1) for part in bare.split(b","))
                user, client_nonce = fields[b"n"], fields[b"r"]
            except (ValueError, IndexError, KeyError):
                return failed
            salt, iterations = os.urandom(16), 4096
            nonce = client_nonce + base64.b64encode(os.urandom(12))
            server_first = b"r=%s,s=%s,i=%d" % (nonce, base64.b64encode(salt), iterations)
            client_final = await server.challenge_auth(server_first)
            if not isinstance(client_final, bytes):
                return failed
            without_proof, _, proof = client_final.rpartition(b",p=")
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
            client_key = hmac.new(salted, b"Client Key", "sha256").digest()
            auth_message = bare + b"," + server_first + b"," + without_proof
            signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256")
            expected = bytes(a ^ b for a, b in zip(client_key, signature.digest(), strict=True))
            if not (
                hmac.compare_digest(base64.b64encode(expected), proof)
                and hmac.compare_digest(user, DEMO_USER.encode())
            ):
                return failed
            server_key = hmac.new(salted, b"Server Key", "sha256").digest()
            verifier = hmac.new(server_key, auth_message, "sha256").digest()
            await server.challenge_auth(b"v=" + base64.b64encode(verifier))
            return check(user, password.encode())

        async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:
            try:
                raw = base64.b64decode(args[1], validate=True)
                user_part, auth_part, *_ = raw.split(b"\x01")
                user = user_part.removeprefix(b"user=")
                token = auth_part.removeprefix(b"auth=Bearer ")
            except (ValueError, IndexError):
                return AuthResult(success=False, handled=False)
            result = check(user, token)
            if not result.success:
                await server.challenge_auth(b'{"status":"401","schemes":"bearer"}')
            return result

        async def auth_OAUTHBEARER(self, server: Any, args: list[str]) -> Any:
            try:
                raw = base64.b64decode(args[1], validate=True)
                gs2, rest = raw.split(b",\x01", 1)
                user = gs2.split(b"a=", 1)[1].rstrip(b",")
                token = rest.split(b"auth=Bearer ", 1)[1].split(b"\x01", 1)[0]
            except (ValueError, IndexError):
                return AuthResult(success=False, handled=False)
            result = check(user, token)
            if not result.success:
                await server.challenge_auth(b'{"status":"invalid_token"}')
            return result

    def with_dsn(base: type[Any]) -> type[Any]:
        class DemoSMTP(base):  # type: ignore[misc]
            """aiosmtpd, plus the DSN parameters on MAIL and RCPT (recorded, not acted on)."""

            dsn_params: list[str] = []  # noqa: RUF012 - replaced per command

            @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
            async def smtp_MAIL(self, arg: str) -> None:
                arg, self.dsn_params = _take_params(arg, _DSN_MAIL)
                await super().smtp_MAIL(arg)

            @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
            async def smtp_RCPT(self, arg: str) -> None:
                arg, self.dsn_params = _take_params(arg, _DSN_RCPT)
                await super().smtp_RCPT(arg)

        return DemoSMTP

    server_class = with_dsn(LMTPServer if lmtp else SMTPServer)
    server_kwargs: dict[str, Any] = {
        "hostname": DEMO_HOSTNAME,
        "enable_SMTPUTF8": True,
        "authenticator": lambda server, session, envelope, mechanism, data: check(
            data.login, data.password
        ),
        # aiosmtpd counts only STARTTLS as TLS: on implicit TLS it must not ask for more.
        "auth_require_tls": not implicit_tls,
    }
    if server_context is not None and not implicit_tls:
        server_kwargs["tls_context"] = server_context

    class DemoController(Controller):
        def factory(self) -> Any:
            return server_class(self.handler, **server_kwargs)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = DemoController(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        ssl_context=server_context if implicit_tls else None,
    )
    controller.start()
    return DemoServer(
        "127.0.0.1",
        port,
        password,
        client_context,
        implicit_tls,
        lmtp,
        received,
        controller,
    )
