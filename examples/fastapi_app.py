"""A FastAPI application that sends mail through one SMTPPool opened in its lifespan.

The pool opens when the application starts and closes when it stops (QUIT on every
connection it kept). Request handlers borrow its connections, so concurrent requests
share a few SMTP sessions and their messages are pipelined, instead of each request
opening a session of its own. ``POST /messages`` answers:

* 202 and the Message-ID: the relay accepted the message;
* 502 and the relay's reply: the relay refused it for good (5xx): sending it again
  will not help;
* 503: the message was never sent (relay unreachable), or the relay refused it for
  now (4xx): safe to send again later;
* 504: the relay's answer never came after the content went out: the message may have
  been delivered, so sending it again may deliver it twice.

Run it (``pip install -e ".[examples]"``), with the relay in the environment or options:

    SMTP_HOST=127.0.0.1 SMTP_PORT=1025 python examples/fastapi_app.py --port 8000
    curl -i localhost:8000/messages -H 'content-type: application/json' \\
        -d '{"to": "bob@example.org", "subject": "Hi", "body": "Hello"}'

or with any ASGI server: ``uvicorn --app-dir examples fastapi_app:app``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import smtp_asyncio
from smtp_asyncio import Outcome, SMTPException, SMTPRecipientsRefused, SMTPResponseException

log = logging.getLogger("fastapi_app")


class Mail(BaseModel):
    to: str
    subject: str
    body: str


def create_app(smtp_host: str, smtp_port: int, sender: str) -> FastAPI:
    """The application, sending through the relay at ``smtp_host:smtp_port``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pool for this process. It connects on first use, so the application
        # starts even while the relay is down.
        async with smtp_asyncio.SMTPPool(
            hostname=smtp_host, port=smtp_port, max_connections=4, timeout=10
        ) as pool:
            app.state.smtp = pool
            yield
        log.info("SMTP pool closed: %s", pool.stats)

    app = FastAPI(lifespan=lifespan)

    @app.post("/messages", status_code=202)
    async def send_message(mail: Mail, request: Request) -> JSONResponse:
        message = EmailMessage()
        message["From"] = sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        message.set_content(mail.body)
        try:
            await request.app.state.smtp.send_message(message)
        except SMTPException as exc:
            return failure(exc)
        return JSONResponse({"status": "sent", "message_id": message["Message-ID"]}, 202)

    return app


def failure(exc: SMTPException) -> JSONResponse:
    """The HTTP answer for a message that was not accepted, from what is known of it."""
    if exc.outcome is Outcome.DONE:  # the relay answered: a refusal
        refusal = exc.recipients[0] if isinstance(exc, SMTPRecipientsRefused) else exc
        code = refusal.code if isinstance(refusal, SMTPResponseException) else 0
        document = {"status": "refused", "code": code, "reply": refusal.message}
        if 400 <= code < 500:  # for now (the pool already retried): the caller may, later
            return JSONResponse(document, status_code=503, headers={"Retry-After": "60"})
        return JSONResponse(document, status_code=502)
    if exc.outcome is Outcome.UNKNOWN:
        return JSONResponse({"status": "unknown", "error": str(exc)}, status_code=504)
    # NEVER_SENT, or None: the failure came before the message (connecting, EHLO).
    return JSONResponse(
        {"status": "not sent", "error": str(exc)}, status_code=503, headers={"Retry-After": "30"}
    )


def settings() -> tuple[str, int, str]:
    return (
        os.environ.get("SMTP_HOST", "127.0.0.1"),
        int(os.environ.get("SMTP_PORT", "1025")),
        os.environ.get("SMTP_FROM", "app@example.org"),
    )


# For ASGI servers: ``uvicorn --app-dir examples fastapi_app:app``.
app = create_app(*settings())


def main() -> None:
    smtp_host, smtp_port, sender = settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to serve HTTP on")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (0: any free one)")
    parser.add_argument("--smtp-host", default=smtp_host, help="relay host (env SMTP_HOST)")
    parser.add_argument("--smtp-port", type=int, default=smtp_port, help="env SMTP_PORT")
    parser.add_argument("--from", dest="sender", default=sender, help="env SMTP_FROM")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    uvicorn.run(
        create_app(args.smtp_host, args.smtp_port, args.sender), host=args.host, port=args.port
    )


if __name__ == "__main__":
    main()
