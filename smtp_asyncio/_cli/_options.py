"""Command-line options: parsing, exit codes, and every check made before connecting."""

from __future__ import annotations

import argparse
import enum
import mimetypes
import os
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import SMTPUTF8 as SMTPUTF8_POLICY
from email.utils import formatdate, make_msgid
from typing import NoReturn

from smtp_core import DSN, Ehlo, LocalProtocolError, Mail, Rcpt, __version__

__all__ = [
    "AUTH_MECHANISMS",
    "PASSWORD_ENV",
    "QUIT_POINTS",
    "ExitCode",
    "Options",
    "UsageError",
    "parse",
]

PASSWORD_ENV = "SMTP_PASSWORD"
AUTH_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER")
QUIT_POINTS = ("connect", "greeting", "ehlo", "tls", "auth", "mail", "rcpt")
DEFAULT_RECIPIENT = "you@example.org"
DEFAULT_SENDER = "smtp-sansio@localhost.localdomain"
DEFAULT_SUBJECT = "smtp-sansio test message"
DEFAULT_BODY = "This is a test message sent by smtp-sansio.\n"
DEFAULT_TIMEOUT = 30.0


class ExitCode(enum.IntEnum):
    """The exit status: one per class of failure."""

    OK = 0
    FAILED = 1
    USAGE = 2
    CONNECT = 3
    TLS = 4
    AUTH = 5
    SENDER = 6
    RECIPIENTS = 7
    DATA = 8
    TIMEOUT = 9
    INTERRUPTED = 130

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    ExitCode.OK: "ok",
    ExitCode.FAILED: "smtp",
    ExitCode.USAGE: "usage",
    ExitCode.CONNECT: "connect",
    ExitCode.TLS: "tls",
    ExitCode.AUTH: "auth",
    ExitCode.SENDER: "sender refused",
    ExitCode.RECIPIENTS: "recipients refused",
    ExitCode.DATA: "data refused",
    ExitCode.TIMEOUT: "timeout",
    ExitCode.INTERRUPTED: "interrupted",
}

EXIT_CODES_HELP = """\
exit status:
  0    the message was accepted (or the session stopped where --quit-after asked)
  1    another SMTP failure: the server closed the connection, broke the protocol,
       refused EHLO/HELO, or lacks an extension the options need (DSN, SMTPUTF8)
  2    usage: a bad option, address, header, port or file; no password available;
       the demo extra missing. Nothing was sent: all checked before connecting
  3    connect: the connection could not be opened, or the server refused the session
  4    tls: STARTTLS not offered or refused, handshake or certificate failure
  5    auth: AUTH (or the --auth mechanism) not offered, or the credentials refused
  6    sender refused (MAIL FROM)
  7    one or more recipients refused (RCPT TO); the message may have gone to the others
  8    data refused (DATA, or the reply after the message content)
  9    timeout: no reply (or no connection) within --timeout seconds
  130  interrupted (Ctrl-C)
"""

EPILOG = f"""\
Without --server (or --socket) an embedded SMTP server on 127.0.0.1 receives the
message: it offers STARTTLS (implicit TLS with --tls) with a certificate made for
this run, which the client trusts for this run only, and AUTH for the user "demo"
(the password is printed and used automatically).

The password for --user comes from ${PASSWORD_ENV} (for XOAUTH2 and OAUTHBEARER: the
access token), else from a prompt when standard input is a terminal; never from
the command line.

{EXIT_CODES_HELP}
examples:
  smtp-sansio --to you@example.org
  smtp-sansio --starttls --user demo --auth CRAM-MD5
  smtp-sansio --server smtp.example.org:587 --starttls --user alice --to bob@example.org
  smtp-sansio --server mx.example.org --quit-after rcpt --to postmaster@example.org
  smtp-sansio --server 127.0.0.1:2525 --data message.eml --json --to b@example.org
"""


class UsageError(Exception):
    """A bad command line: reported in one line, exit status 2, before connecting."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def parser() -> argparse.ArgumentParser:
    """The argument parser (errors raise :class:`UsageError`)."""
    p = _Parser(
        prog="smtp-sansio",
        description="Send one message (or stop part-way) and print the SMTP conversation,\n"
        "with the time each reply took. Without --server, an embedded SMTP server on\n"
        "127.0.0.1 receives it.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    p.add_argument("--version", action="version", version=f"smtp-sansio {__version__}")
    where = p.add_argument_group("server")
    target = where.add_mutually_exclusive_group()
    target.add_argument(
        "--server",
        "-s",
        metavar="HOST[:PORT]",
        help="the server (IPv6 as [ADDR]:PORT); default port 25, 465 with --tls, 587 with "
        "--starttls; default: the embedded demo server",
    )
    target.add_argument("--socket", metavar="PATH", help="connect to a Unix socket instead")
    where.add_argument(
        "--lmtp", action="store_true", help="speak LMTP (LHLO, one reply per recipient)"
    )
    where.add_argument(
        "--ehlo", metavar="NAME", help="name to announce in EHLO (default: this host's name)"
    )
    where.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on a connection or a reply after this long (default: {DEFAULT_TIMEOUT:g})",
    )
    where.add_argument(
        "--quit-after",
        choices=QUIT_POINTS,
        metavar="STAGE",
        help="stop after this stage, send QUIT and report: " + ", ".join(QUIT_POINTS) + " ("
        "connect stops once the connection is open, before the greeting, and sends nothing)",
    )
    tls = p.add_argument_group("TLS")
    mode = tls.add_mutually_exclusive_group()
    mode.add_argument("--tls", action="store_true", help="implicit TLS from the start (port 465)")
    mode.add_argument(
        "--starttls", action="store_true", help="require STARTTLS; fail if it is not offered"
    )
    mode.add_argument("--no-starttls", action="store_true", help="never use STARTTLS")
    tls.add_argument(
        "--cafile",
        metavar="PEM",
        help="trust the CAs in this file instead of the system store",
    )
    tls.add_argument(
        "--insecure-no-verify-tls",
        action="store_true",
        help="do NOT verify the server's certificate or name (testing only)",
    )
    auth = p.add_argument_group("authentication")
    auth.add_argument(
        "--user", "-u", metavar="NAME", help=f"log in as NAME (password from ${PASSWORD_ENV})"
    )
    auth.add_argument(
        "--auth",
        "-a",
        metavar="MECH",
        type=str.upper,
        choices=AUTH_MECHANISMS,
        help="use this mechanism: " + ", ".join(AUTH_MECHANISMS) + " (default: the best "
        "one both sides support)",
    )
    envelope = p.add_argument_group("envelope")
    envelope.add_argument(
        "--from",
        "-f",
        dest="sender",
        default=DEFAULT_SENDER,
        metavar="ADDR",
        help=f"MAIL FROM address; '<>' for the null sender (default: {DEFAULT_SENDER})",
    )
    envelope.add_argument(
        "--to",
        "-t",
        action="append",
        default=[],
        metavar="ADDR",
        help=f"RCPT TO address, repeatable (default with the embedded server: {DEFAULT_RECIPIENT})",
    )
    envelope.add_argument(
        "--dsn-notify",
        metavar="WHEN",
        help="ask for delivery status notifications: NEVER, or a comma-separated list of "
        "SUCCESS, FAILURE, DELAY (RFC 3461 NOTIFY)",
    )
    envelope.add_argument(
        "--dsn-ret", metavar="FULL|HDRS", type=str.upper, help="what a bounce returns (RET)"
    )
    envelope.add_argument("--dsn-envid", metavar="ID", help="envelope identifier (ENVID)")
    message = p.add_argument_group("message")
    message.add_argument("--subject", help=f"the Subject header (default: {DEFAULT_SUBJECT!r})")
    message.add_argument("--body", help=f"the message text (default: {DEFAULT_BODY.strip()!r})")
    message.add_argument(
        "--header",
        "-H",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a header, or replace one of the same name; repeatable",
    )
    message.add_argument(
        "--attach", action="append", default=[], metavar="FILE", help="attach a file; repeatable"
    )
    message.add_argument(
        "--data",
        metavar="FILE|-",
        help="send this file (- for standard input) as the whole raw message, as is",
    )
    output = p.add_argument_group("output")
    shown = output.add_mutually_exclusive_group()
    shown.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (stages, replies, timings, outcome) and nothing else",
    )
    shown.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    return p


@dataclass(frozen=True)
class Options:
    """A command line that passed every check."""

    host: str
    port: int | None
    socket_path: str | None
    embedded: bool
    lmtp: bool
    tls: str  # "implicit", "required", "opportunistic" or "never"
    tls_context: ssl.SSLContext | None  # None: the embedded server's
    insecure: bool
    user: str | None
    secret: str | None  # None: the embedded server's password, once it runs
    mechanism: str | None
    sender: str
    recipients: tuple[str, ...]
    dsn: DSN | None
    message: bytes
    ehlo: str | None
    quit_after: str | None
    timeout: float
    json: bool
    quiet: bool

    @property
    def shown_port(self) -> int:
        if self.port is not None:
            return self.port
        return 465 if self.tls == "implicit" else 587 if self.tls == "required" else 25


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _reason(exc: Exception, value: str) -> str:
    """The library's message about ``value`` without its repeat of the value."""
    text = _one_line(exc)
    head, sep, tail = text.partition(f"{value!r}: ")
    return tail if sep and len(head) < 40 else text


def _split_server(value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UsageError(f"--server {value!r}: expected [ADDRESS]:PORT")
        port = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, None
    if not host or any(char.isspace() or not char.isprintable() for char in host):
        raise UsageError(f"--server {value!r}: not a host name or address")
    if port is None:
        return host, None
    if not port.isdigit():
        raise UsageError(f"--server {value!r}: port {port!r} is not a number")
    if not 1 <= int(port) <= 65535:
        raise UsageError(f"--server {value!r}: port {port} is out of range (1-65535)")
    return host, int(port)


def _read(path: str, what: str) -> bytes:
    try:
        if path == "-" and what == "--data":
            return sys.stdin.buffer.read()
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise UsageError(f"{what} {path!r}: {exc.strerror or exc}") from None


def _check_address(option: str, address: str, *, sender: bool) -> None:
    try:
        Mail(address) if sender else Rcpt(address)
    except LocalProtocolError as exc:
        raise UsageError(f"{option} {address!r}: {_reason(exc, address)}") from None


def _dsn(args: argparse.Namespace) -> DSN | None:
    if args.dsn_notify is None and args.dsn_ret is None and args.dsn_envid is None:
        return None
    notify = None
    if args.dsn_notify is not None:
        notify = tuple(part.strip().upper() for part in args.dsn_notify.split(","))
    try:
        return DSN(ret=args.dsn_ret, envid=args.dsn_envid, notify=notify)
    except LocalProtocolError as exc:
        raise UsageError(_one_line(exc)) from None


def _message(args: argparse.Namespace, recipients: Sequence[str]) -> bytes:
    composed = [
        name
        for name, value in (
            ("--subject", args.subject),
            ("--body", args.body),
            ("--header", args.header),
            ("--attach", args.attach),
        )
        if value
    ]
    if args.data is not None:
        if composed:
            raise UsageError(f"--data sends the message as is: it cannot take {composed[0]}")
        return _read(args.data, "--data")
    international = not all(a.isascii() for a in (args.sender, *recipients))
    # Non-ASCII addresses go in the headers as UTF-8 (RFC 6532), as SMTPUTF8 needs.
    msg = EmailMessage(policy=SMTPUTF8_POLICY if international else SMTP_POLICY)
    msg["From"] = args.sender if args.sender not in ("", "<>") else "<>"
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = args.subject if args.subject is not None else DEFAULT_SUBJECT
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="smtp-sansio.invalid")
    for header in args.header:
        name, sep, value = header.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name or any(not 33 <= ord(c) <= 126 for c in name):
            raise UsageError(f"--header {header!r}: expected 'Name: value'")
        if any(c in value for c in "\r\n\0"):
            raise UsageError(f"--header {header!r}: a header value holds no CR, LF or NUL")
        del msg[name]
        try:
            msg[name] = value
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--header {header!r}: {_one_line(exc)}") from None
    body = args.body if args.body is not None else DEFAULT_BODY
    # 7-bit content goes through any server, with or without 8BITMIME.
    msg.set_content(body, cte="7bit" if body.isascii() else "quoted-printable")
    for path in args.attach:
        data = _read(path, "--attach")
        kind, encoding = mimetypes.guess_type(path)
        if kind is None or encoding is not None:
            kind = "application/octet-stream"
        maintype, _, subtype = kind.partition("/")
        msg.add_attachment(data, maintype, subtype, filename=os.path.basename(path))
    try:
        return msg.as_bytes()
    except (ValueError, TypeError) as exc:  # pragma: no cover - headers are checked above
        raise UsageError(f"cannot build the message: {_one_line(exc)}") from None


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=args.cafile)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"--cafile {args.cafile!r}: {_one_line(reason)}") from None
    if args.insecure_no_verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def parse(argv: Sequence[str]) -> Options:
    """Parse and check the whole command line; raise :class:`UsageError` on any problem."""
    args = parser().parse_args(argv)
    embedded = args.server is None and args.socket is None
    host, port = ("127.0.0.1", None) if embedded else ("localhost", None)
    if args.server is not None:
        host, port = _split_server(args.server)
    if args.lmtp and args.server is not None and port is None:
        raise UsageError("--lmtp has no standard port: give --server HOST:PORT (often 24)")
    if args.socket is not None and not hasattr(socket, "AF_UNIX"):
        raise UsageError("--socket: Unix sockets are not available on this system")
    recipients = list(args.to)
    if not recipients:
        if not embedded:
            raise UsageError("at least one --to is needed with --server or --socket")
        recipients = [DEFAULT_RECIPIENT]
    sender = "" if args.sender == "<>" else args.sender
    _check_address("--from", sender, sender=True)
    for recipient in recipients:
        _check_address("--to", recipient, sender=False)
    if args.ehlo is not None:
        try:
            Ehlo(args.ehlo)
        except LocalProtocolError as exc:
            raise UsageError(f"--ehlo {args.ehlo!r}: {_reason(exc, args.ehlo)}") from None
    if not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be more than 0 seconds")
    if args.auth is not None and args.user is None:
        raise UsageError("--auth needs --user")
    if embedded and (args.cafile or args.insecure_no_verify_tls):
        option = "--cafile" if args.cafile else "--insecure-no-verify-tls"
        raise UsageError(f"{option} is for --server: the embedded server's CA is trusted already")
    dsn = _dsn(args)
    message = _message(args, recipients)
    tls = (
        "implicit"
        if args.tls
        else "required"
        if args.starttls
        else "never"
        if args.no_starttls
        else "opportunistic"
    )
    secret = None
    if args.user is not None:
        secret = os.environ.get(PASSWORD_ENV)
        if secret is None and not (embedded and args.user == "demo"):
            secret = _prompt(args.user)
    return Options(
        host=host,
        port=port,
        socket_path=args.socket,
        embedded=embedded,
        lmtp=args.lmtp,
        tls=tls,
        tls_context=None if embedded else _tls_context(args),
        insecure=args.insecure_no_verify_tls,
        user=args.user,
        secret=secret,
        mechanism=args.auth,
        sender=sender,
        recipients=tuple(recipients),
        dsn=dsn,
        message=message,
        ehlo=args.ehlo,
        quit_after=args.quit_after,
        timeout=args.timeout,
        json=args.json,
        quiet=args.quiet,
    )


def _prompt(user: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError(
            f"no password for --user {user!r}: set ${PASSWORD_ENV} "
            "(standard input is not a terminal, so there is no prompt)"
        )
    import getpass

    try:
        return getpass.getpass(f"Password for {user}: ")
    except EOFError:
        raise UsageError(f"no password for --user {user!r}") from None
