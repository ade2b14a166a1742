"""``smtp-sansio``: send one message and show the SMTP conversation (a small swaks).

Without ``--server`` it starts an embedded aiosmtpd server on 127.0.0.1 for the run,
sends through it, and prints what that server received (needs the ``demo`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import socket
import sys
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, TextIO

from smtp_core import SMTPException, SMTPRecipientsRefused
from smtp_core._flows import trace_logger

from ._smtp import SMTP

PASSWORD_ENV = "SMTP_PASSWORD"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtp-sansio",
        description="Send one message and print the SMTP conversation. Without --server, "
        "an embedded SMTP server on 127.0.0.1 receives it.",
    )
    parser.add_argument("--server", help="HOST[:PORT] (IPv6 as [ADDR]:PORT)")
    parser.add_argument("--from", dest="sender", default="smtp-sansio@localhost.localdomain")
    parser.add_argument("--to", action="append", default=[], help="recipient (repeatable)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="implicit TLS (port 465)")
    tls.add_argument("--starttls", action="store_true", help="require STARTTLS")
    tls.add_argument("--no-starttls", action="store_true", help="never use STARTTLS")
    parser.add_argument(
        "--user", help=f"log in; the password comes from ${PASSWORD_ENV} or a prompt"
    )
    parser.add_argument("--subject", default="smtp-sansio test message")
    parser.add_argument("--body", default="This is a test message sent by smtp-sansio.\n")
    parser.add_argument("--header", action="append", default=[], help="'Name: value' (repeatable)")
    parser.add_argument("--data", help="send this file (or - for stdin) as the raw message")
    parser.add_argument("--ehlo", help="name to announce in EHLO")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--cafile", help="trust this CA bundle")
    parser.add_argument(
        "--insecure-no-verify-tls",
        action="store_true",
        help="do NOT verify the server's certificate (testing only)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print only errors")
    return parser


def _split_server(value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, None


def _build_message(args: argparse.Namespace) -> bytes | EmailMessage:
    if args.data:
        if args.data == "-":
            return sys.stdin.buffer.read()
        with open(args.data, "rb") as file:
            return file.read()
    msg = EmailMessage()
    msg["From"] = args.sender
    msg["To"] = ", ".join(args.to)
    msg["Subject"] = args.subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="smtp-sansio.invalid")
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header {header!r}: expected 'Name: value'")
        msg[name.strip()] = value.strip()
    msg.set_content(args.body)
    return msg


class _Transcript(logging.Handler):
    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write(record.getMessage() + "\n")
        self.stream.flush()


async def _send(args: argparse.Namespace, host: str, port: int | None, out: TextIO) -> None:
    password = None
    if args.user:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            password = getpass.getpass(f"Password for {args.user}: ")
    start_tls: bool | None = None
    if args.starttls:
        start_tls = True
    elif args.no_starttls:
        start_tls = False
    smtp = SMTP(
        hostname=host,
        port=port,
        use_tls=args.tls,
        start_tls=start_tls,
        username=args.user,
        password=password,
        timeout=args.timeout,
        cert_bundle=args.cafile,
        validate_certs=not args.insecure_no_verify_tls,
        local_hostname=args.ehlo,
    )
    message = _build_message(args)
    if not args.quiet:
        shown_port = port if port is not None else smtp._get_default_port()
        out.write(f"=== Connecting to {host} port {shown_port}\n")
    async with smtp:
        if isinstance(message, bytes):
            refused, reply = await smtp.sendmail(args.sender, args.to, message)
        else:
            refused, reply = await smtp.send_message(
                message, sender=args.sender, recipients=args.to
            )
    if refused:
        details = "; ".join(f"{rcpt}: {resp.code} {resp.message}" for rcpt, resp in refused.items())
        raise SMTPException(f"some recipients were refused: {details}")
    if not args.quiet:
        out.write(f"=== Message accepted: {reply}\n")


def _embedded_server() -> tuple[Any, list[Any]]:
    try:
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Message
    except ImportError:
        raise SystemExit(
            "error: the embedded demo server needs aiosmtpd: pip install 'smtp-sansio[demo]'"
        ) from None
    received: list[Any] = []

    class Collector(Message):
        def handle_message(self, message: Any) -> None:
            received.append(message)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        Collector(), hostname="127.0.0.1", port=port, server_hostname="demo.smtp-sansio.invalid"
    )
    controller.start()
    return controller, received


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    if not args.to:
        args.to = ["you@example.org"] if not args.server else []
    if not args.to:
        print("error: at least one --to is required", file=sys.stderr)
        return 2
    handler = None
    if not args.quiet:
        handler = _Transcript(out)
        trace_logger.addHandler(handler)
        trace_logger.setLevel(logging.DEBUG)
    controller = None
    received: list[Any] = []
    try:
        if args.server:
            host, port = _split_server(args.server)
        else:
            controller, received = _embedded_server()
            host, port = "127.0.0.1", controller.port
            if not args.quiet:
                out.write(f"=== Started an embedded SMTP server on 127.0.0.1 port {port}\n")
        asyncio.run(_send(args, host, port, out))
    except (SMTPException, OSError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {type(exc).__name__}: {reason}", file=sys.stderr)
        if isinstance(exc, SMTPRecipientsRefused):
            for refusal in exc.recipients:
                print(f"  {refusal.recipient}: {refusal.code} {refusal.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if handler is not None:
            trace_logger.removeHandler(handler)
        if controller is not None:
            controller.stop()
    if controller is not None and not args.quiet:
        for message in received:
            out.write("=== The embedded server received:\n")
            out.write(f"    MAIL FROM: {message['X-MailFrom']}\n")
            out.write(f"    RCPT TO:   {message['X-RcptTo']}\n")
            del message["X-Peer"], message["X-MailFrom"], message["X-RcptTo"]
            for line in message.as_string().splitlines():
                out.write(f"    | {line}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
