"""Send a message with STARTTLS and AUTH using smtp_core over a plain blocking socket.

The protocol decisions (what to send, how to read replies, pipelining, dot-stuffing,
SASL) all come from smtp_core's flows; this file only moves bytes. Usage:

    SMTP_PASSWORD=secret python examples/blocking_client.py HOST PORT --cafile ca.pem \
        --user alice --from a@example.org --to b@example.org
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
from typing import Any

from smtp_core import ClientConnection, Plain, SMTPException
from smtp_core.flows import (
    Flow,
    Read,
    UpgradeTLS,
    Write,
    authenticate,
    greeting,
    hello,
    mail_transaction,
    quit,
    starttls,
)


class BlockingDriver:
    """Performs the I/O requests that smtp_core's flows yield, on a blocking socket."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock: socket.socket = sock
        self.context = context

    def run(self, flow: Flow[Any]) -> Any:
        value: Any = None
        while True:
            try:
                request = flow.send(value)
            except StopIteration as stop:
                return stop.value
            if isinstance(request, Write):
                self.sock.sendall(request.data)
                value = None
            elif isinstance(request, Read):
                value = self.sock.recv(65536)
            elif isinstance(request, UpgradeTLS):
                self.sock = self.context.wrap_socket(
                    self.sock, server_hostname=request.server_hostname
                )
                value = None


def send(
    host: str,
    port: int,
    sender: str,
    recipients: list[str],
    message: bytes,
    *,
    context: ssl.SSLContext,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Connect, STARTTLS, log in, send one message, QUIT. Returns refused recipients."""
    conn = ClientConnection(local_hostname="localhost")
    with socket.create_connection((host, port), timeout=timeout) as raw:
        driver = BlockingDriver(raw, context)
        try:
            driver.run(greeting(conn))
            driver.run(hello(conn))
            if "STARTTLS" not in conn.capabilities:
                raise SMTPException("the server does not offer STARTTLS; refusing plaintext")
            driver.run(starttls(conn, host))
            driver.run(hello(conn))  # capabilities are learnt again over TLS
            if username is not None:
                reply = driver.run(authenticate(conn, Plain(username, password or "")))
                if reply.code != 235:
                    raise SMTPException(f"login failed: {reply}")
            result = driver.run(mail_transaction(conn, sender, recipients, message))
            driver.run(quit(conn))
        finally:
            driver.sock.close()
    return result.refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--cafile", help="CA bundle that signed the server's certificate")
    parser.add_argument("--user")
    parser.add_argument("--from", dest="sender", required=True)
    parser.add_argument("--to", action="append", required=True)
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.cafile)
    message = b"Subject: hello from a blocking socket\r\n\r\nSent with smtp_core.\r\n"
    refused = send(
        args.host,
        args.port,
        args.sender,
        args.to,
        message,
        context=context,
        username=args.user,
        password=os.environ.get("SMTP_PASSWORD"),
    )
    for recipient, reply in refused.items():
        print(f"refused {recipient}: {reply}", file=sys.stderr)
    print("sent")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
