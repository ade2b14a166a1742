"""Real loopback servers for the tests: aiosmtpd, and scripted servers that misbehave."""

from __future__ import annotations

import base64
import contextlib
import hmac
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP as LMTPServer
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    """One message an aiosmtpd server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    rcpt_options: list[str]
    content: bytes
    smtp_utf8: bool
    authenticated_as: bytes | None
    peer: Any = None


class Handler:
    """aiosmtpd handler: records messages, refuses what the test asks it to."""

    def __init__(
        self,
        *,
        refuse_senders: dict[str, str] | None = None,
        refuse_recipients: dict[str, str] | None = None,
        data_reply: str | None = None,
        xoauth2_tokens: dict[str, str] | None = None,
        credentials: dict[str, str] | None = None,
        lmtp_refuse: dict[str, str] | None = None,
    ) -> None:
        self.messages: list[Received] = []
        self.refuse_senders = refuse_senders or {}
        self.refuse_recipients = refuse_recipients or {}
        self.data_reply = data_reply
        self.xoauth2_tokens = xoauth2_tokens or {}
        self.credentials = credentials or {}
        self.lmtp_refuse = lmtp_refuse
        self.commands: list[tuple[Any, str]] = []

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse_senders:
            return self.refuse_senders[address]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse_recipients:
            return self.refuse_recipients[address]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply is not None:
            return self.data_reply
        login = getattr(getattr(session, "auth_data", None), "login", None)
        self.messages.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                list(envelope.mail_options),
                list(envelope.rcpt_options),
                bytes(envelope.original_content or envelope.content),
                bool(envelope.smtp_utf8),
                login,
                session.peer,
            )
        )
        if self.lmtp_refuse is not None:
            # LMTP: one reply per accepted recipient (RFC 2033 section 4.2).
            return "\r\n".join(
                self.lmtp_refuse.get(rcpt, f"250 2.1.5 delivered to {rcpt}") for rcpt in envelope.rcpt_tos
            )
        return "250 Message accepted"

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        self.commands.append((session.peer, "NOOP"))
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.commands.append((session.peer, "QUIT"))
        return "221 Bye"

    async def auth_XOAUTH2(self, server: SMTPServer, args: list[str]) -> AuthResult:
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(args[1])
        try:
            user_part, auth_part, *_ = raw.split(b"\x01")
            user = user_part.removeprefix(b"user=").decode()
            token = auth_part.removeprefix(b"auth=Bearer ").decode()
        except ValueError:
            return AuthResult(success=False, handled=False)
        if self.xoauth2_tokens.get(user) == token:
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        await server.challenge_auth(b'{"status":"401"}')
        return AuthResult(success=False, handled=False)

    async def auth_OAUTHBEARER(self, server: SMTPServer, args: list[str]) -> AuthResult:
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(args[1])
        try:
            gs2, rest = raw.split(b",\x01", 1)
            user = gs2.split(b"a=", 1)[1].rstrip(b",").decode()
            token = rest.split(b"auth=Bearer ", 1)[1].split(b"\x01", 1)[0].decode()
        except (ValueError, IndexError):
            return AuthResult(success=False, handled=False)
        if self.xoauth2_tokens.get(user) == token:
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        await server.challenge_auth(b'{"status":"invalid_token"}')
        return AuthResult(success=False, handled=False)

    #: "honest", "wrong-signature" or "no-proof": how the SCRAM server behaves.
    scram_mode = "honest"

    async def auth_SCRAM__SHA__256(self, server: SMTPServer, args: list[str]) -> AuthResult:
        import hashlib
        import os

        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        client_first = base64.b64decode(args[1])
        bare = client_first.split(b",", 2)[2]
        fields = dict(part.split(b"=", 1) for part in bare.split(b","))
        user = fields[b"n"].decode()
        password = self.credentials.get(user)
        salt, iterations = os.urandom(16), 4096
        nonce = fields[b"r"] + base64.b64encode(os.urandom(12))
        server_first = b"r=" + nonce + b",s=" + base64.b64encode(salt) + b",i=" + str(iterations).encode()
        client_final = await server.challenge_auth(server_first)
        if not isinstance(client_final, bytes) or password is None:
            return AuthResult(success=False, handled=False)
        without_proof, _, proof_b64 = client_final.rpartition(b",p=")
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        auth_message = bare + b"," + server_first + b"," + without_proof
        signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
        expected = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
        if not hmac.compare_digest(expected, proof_b64):
            return AuthResult(success=False, handled=False)
        if self.scram_mode == "no-proof":
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        server_signature = hmac.new(server_key, auth_message, "sha256").digest()
        if self.scram_mode == "wrong-signature":
            server_signature = bytes(32)
        await server.challenge_auth(b"v=" + base64.b64encode(server_signature))
        return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))

    async def auth_CRAM__MD5(self, server: SMTPServer, args: list[str]) -> AuthResult:
        challenge = b"<1896.697170952@smtp-sansio.test>"
        response = await server.challenge_auth(challenge)
        if not isinstance(response, bytes) or b" " not in response:
            return AuthResult(success=False, handled=False)
        user, digest = response.rsplit(b" ", 1)
        password = self.credentials.get(user.decode(), None)
        if password is None:
            return AuthResult(success=False, handled=False)
        expected = hmac.new(password.encode(), challenge, "md5").hexdigest().encode()
        ok = hmac.compare_digest(expected, digest)
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(user, b""))


@dataclass
class ServerInfo:
    host: str
    port: int
    handler: Handler
    controller: Any
    socket_path: str | None = None
    ca_path: str | None = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def stop(self) -> None:
        self.controller.stop()


class _Controller(Controller):
    def __init__(self, handler: Any, *, server_kwargs: dict[str, Any], lmtp: bool = False, **kwargs: Any) -> None:
        self._server_kwargs = server_kwargs
        self._lmtp = lmtp
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTPServer:
        return (LMTPServer if self._lmtp else SMTPServer)(self.handler, **self._server_kwargs)


class _UnixController(UnixSocketController):
    def __init__(self, handler: Any, *, server_kwargs: dict[str, Any], lmtp: bool = False, **kwargs: Any) -> None:
        self._server_kwargs = server_kwargs
        self._lmtp = lmtp
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTPServer:
        return (LMTPServer if self._lmtp else SMTPServer)(self.handler, **self._server_kwargs)


def start_smtpd(
    *,
    certs: Any = None,
    tls: str = "none",
    auth: dict[str, str] | None = None,
    auth_required: bool = False,
    auth_require_tls: bool = False,
    smtputf8: bool = False,
    data_size_limit: int | None = 33554432,
    unix_socket: str | None = None,
    host: str = "127.0.0.1",
    lmtp: bool = False,
    handler: Handler | None = None,
    **handler_kwargs: Any,
) -> ServerInfo:
    """Start an aiosmtpd server on loopback in its own thread."""
    if handler is None:
        handler = Handler(credentials=auth, **handler_kwargs)
    server_kwargs: dict[str, Any] = {
        "enable_SMTPUTF8": smtputf8,
        "data_size_limit": data_size_limit,
        "hostname": "smtp.test",
        "auth_required": auth_required,
        "auth_require_tls": auth_require_tls,
    }
    if auth is not None:
        credentials = dict(auth)

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and credentials.get(data.login.decode()) == data.password.decode()
            return AuthResult(success=ok, handled=False, auth_data=data)

        server_kwargs["authenticator"] = authenticator
    else:
        server_kwargs["auth_exclude_mechanism"] = ["LOGIN", "PLAIN", "XOAUTH2", "CRAM-MD5"]
    controller_kwargs: dict[str, Any] = {}
    if tls in ("starttls", "starttls-required"):
        server_kwargs["tls_context"] = certs.server_context()
        server_kwargs["require_starttls"] = tls == "starttls-required"
    elif tls == "implicit":
        controller_kwargs["ssl_context"] = certs.server_context()
    if unix_socket is not None:
        controller: Any = _UnixController(
            handler, unix_socket=unix_socket, server_kwargs=server_kwargs, lmtp=lmtp, **controller_kwargs
        )
        controller.start()
        return ServerInfo(host, 0, handler, controller, socket_path=unix_socket, ca_path=certs.ca_path if certs else None)
    port = free_port(host)
    controller = _Controller(
        handler, hostname=host, port=port, server_kwargs=server_kwargs, lmtp=lmtp, **controller_kwargs
    )
    controller.start()
    return ServerInfo(host, port, handler, controller, ca_path=certs.ca_path if certs else None)


# -- scripted servers ---------------------------------------------------------------------


@dataclass
class Send:
    data: bytes


@dataclass
class SendSlowly:
    data: bytes
    delay: float


@dataclass
class Expect:
    """Read one line from the client (recorded); ``prefix`` is checked by the test later."""

    prefix: bytes = b""


@dataclass
class ExpectBuffered:
    """Record whether the next line had already arrived (pipelined) before reading it."""

    prefix: bytes = b""


@dataclass
class ExpectBdat:
    """Read one ``BDAT n [LAST]`` command and its n bytes (recorded together)."""


@dataclass
class ExpectData:
    """Read message content up to and including CRLF.CRLF."""


@dataclass
class Close:
    pass


@dataclass
class Reset:
    """Abort the connection with a TCP RST."""


@dataclass
class StartTLS:
    context: ssl.SSLContext


@dataclass
class Hang:
    """Stop answering; keep the connection open until the client goes away."""


@dataclass
class ReadUntilClosed:
    pass


@dataclass
class ExpectContent:
    """Read DATA content line by line up to the line ``.`` (recorded with it).

    Unlike :class:`ExpectData`, this also ends on empty content (just ``.`` CRLF).
    """


@dataclass
class Signal:
    """Set ``event`` when the script gets here (the test waits for it)."""

    event: threading.Event


@dataclass
class WaitFor:
    """Block until the test sets ``event`` (a script error after ``timeout`` seconds)."""

    event: threading.Event
    timeout: float = 10.0


Step = (
    Send | SendSlowly | Expect | ExpectBuffered | ExpectBdat | ExpectData | Close | Reset | StartTLS | Hang
    | ReadUntilClosed | ExpectContent | Signal | WaitFor
)


def session_prefix(*capabilities: str, greeting: bytes = b"220 scripted ESMTP\r\n") -> list[Step]:
    """Greeting plus an EHLO exchange advertising ``capabilities``."""
    lines = ["smtp.test", *capabilities]
    reply = b"".join(
        f"250{'-' if i < len(lines) - 1 else ' '}{line}\r\n".encode() for i, line in enumerate(lines)
    )
    return [Send(greeting), Expect(b"EHLO"), Send(reply)]


def greet_pipelining(conn: socket.socket, lines: Any) -> None:
    """A hand-written server's opening: its greeting, the client's EHLO (read from
    ``lines``, the connection's file) and a reply offering PIPELINING."""
    conn.sendall(b"220 hi\r\n")
    lines.readline()  # EHLO
    conn.sendall(b"250-smtp.test\r\n250 PIPELINING\r\n")


@dataclass
class ScriptedServer:
    """A real TCP server on loopback that plays ``script`` to each client, in a thread."""

    script: Sequence[Step]
    host: str = "127.0.0.1"
    more: Sequence[Sequence[Step]] = ()
    """Scripts for the next connections, one each, in order."""
    lines: list[bytes] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)
    errors: list[BaseException] = field(default_factory=list)
    buffered: list[bool] = field(default_factory=list)
    bind_port: int = 0
    """The port to listen on (0: any free one)."""

    def __post_init__(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.socket(family)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, self.bind_port))
        self._listener.listen(8)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self.done = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        scripts = [self.script, *self.more]
        while scripts and not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            self._conns.append(conn)
            script = scripts.pop(0)
            try:
                self._play(conn, script)
            except BaseException as exc:
                self.errors.append(exc)
            finally:
                if not scripts:
                    self.done.set()
                conn.close()

    def _readline(self, conn: Any, buffer: bytearray) -> bytes:
        while b"\n" not in buffer:
            chunk = self._recv(conn)
            if not chunk:
                raise EOFError("client closed")
            buffer += chunk
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        return line + b"\n"

    def _recv(self, conn: Any) -> bytes:
        while not self._stop.is_set():
            try:
                data: bytes = conn.recv(65536)
            except TimeoutError:
                continue
            self.received += data
            return data
        return b""

    def _play(self, conn: Any, script: Sequence[Step]) -> None:
        conn.settimeout(0.2)
        buffer = bytearray()
        for step in script:
            if isinstance(step, Send):
                conn.sendall(step.data)
            elif isinstance(step, SendSlowly):
                for byte in step.data:
                    if self._stop.wait(step.delay):
                        return
                    conn.sendall(bytes([byte]))
            elif isinstance(step, Expect):
                self.lines.append(self._readline(conn, buffer))
            elif isinstance(step, ExpectBuffered):
                self.buffered.append(b"\n" in buffer)
                self.lines.append(self._readline(conn, buffer))
            elif isinstance(step, ExpectBdat):
                line = self._readline(conn, buffer)
                size = int(line.split()[1])
                while len(buffer) < size:
                    chunk = self._recv(conn)
                    if not chunk:
                        raise EOFError("client closed during BDAT")
                    buffer += chunk
                self.lines.append(line + bytes(buffer[:size]))
                del buffer[:size]
            elif isinstance(step, ExpectData):
                while b"\r\n.\r\n" not in buffer:
                    chunk = self._recv(conn)
                    if not chunk:
                        raise EOFError("client closed during DATA")
                    buffer += chunk
                data, _, rest = bytes(buffer).partition(b"\r\n.\r\n")
                self.lines.append(data + b"\r\n.\r\n")
                buffer[:] = rest
            elif isinstance(step, ExpectContent):
                content = bytearray()
                while True:
                    line = self._readline(conn, buffer)
                    content += line
                    if line == b".\r\n":
                        break
                self.lines.append(bytes(content))
            elif isinstance(step, Signal):
                step.event.set()
            elif isinstance(step, WaitFor):
                waited = 0.0
                while not step.event.wait(0.05):
                    waited += 0.05
                    if self._stop.is_set():
                        return
                    if waited >= step.timeout:
                        raise TimeoutError("the test never set the event this script waits for")
            elif isinstance(step, Close):
                conn.close()
                return
            elif isinstance(step, Reset):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()
                return
            elif isinstance(step, StartTLS):
                conn.settimeout(5)
                conn = step.context.wrap_socket(conn, server_side=True)
                conn.settimeout(0.2)
                self._conns.append(conn)
            elif isinstance(step, (Hang, ReadUntilClosed)):
                while not self._stop.is_set():
                    if not self._recv(conn):
                        return
        # Script finished: keep reading until the client closes.
        while not self._stop.is_set():
            if not self._recv(conn):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._listener.close()


def run_in_thread(fn: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread
