"""Send a batch with trio and smtp_anyio within a deadline, and report every message.

A nursery runs a few sender tasks that share one client (their messages are pipelined
on its connection); ``trio.move_on_after`` bounds the whole batch. When the deadline
passes, trio cancels every task; the client closes its connection (a cancelled send
never leaves it half-way through a transaction) and the nursery ends with no task
left. Each message is then reported as one of:

* ``sent``: the relay accepted it (its reply is shown);
* ``refused``: the relay refused it (its reply is shown);
* ``not-sent``: nothing of it was sent: safe to send again;
* ``unknown``: it was in flight when the deadline passed (or the connection broke after
  its content went out), so it may have been delivered: sending it again may deliver
  it twice.

Usage (one message to each recipient; exit status 0 only if every message was sent):

    SMTP_HOST=127.0.0.1 SMTP_PORT=1025 python examples/trio_batch.py --deadline 10 \\
        bob@example.org carol@example.org
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from email.message import EmailMessage
from email.utils import make_msgid

import trio

import smtp_anyio
from smtp_anyio import Outcome, SMTPException, SMTPRecipientsRefused, SMTPResponseException


def messages(sender: str, recipients: list[str]) -> list[EmailMessage]:
    batch = []
    for n, recipient in enumerate(recipients, 1):
        message = EmailMessage()
        message["From"] = sender
        message["To"] = recipient
        message["Subject"] = f"Message {n} of {len(recipients)}"
        message["Message-ID"] = make_msgid(domain="example.org")
        message.set_content("Hello from trio.")
        batch.append(message)
    return batch


async def send_batch(
    smtp: smtp_anyio.SMTP, batch: list[EmailMessage], *, deadline: float, concurrency: int = 4
) -> dict[str, tuple[str, str]]:
    """Send ``batch`` within ``deadline`` seconds: Message-ID -> (status, detail)."""
    report = {message["Message-ID"]: ("not-sent", "") for message in batch}
    send_channel, receive_channel = trio.open_memory_channel[EmailMessage](math.inf)
    for message in batch:
        send_channel.send_nowait(message)
    send_channel.close()

    async def sender() -> None:
        async for message in receive_channel:
            # From here on, its content may reach the relay before we learn its fate.
            report[message["Message-ID"]] = ("unknown", "in flight when the batch stopped")
            report[message["Message-ID"]] = await send_one(smtp, message)

    with trio.move_on_after(deadline):
        async with smtp, trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(sender)
    return report


async def send_one(smtp: smtp_anyio.SMTP, message: EmailMessage) -> tuple[str, str]:
    try:
        _, reply = await smtp.send_message(message)
    except SMTPRecipientsRefused as exc:
        return "refused", "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
    except SMTPResponseException as exc:
        if exc.outcome is Outcome.DONE:
            return "refused", f"{exc.code} {exc.message}"
        return ("unknown" if exc.outcome is Outcome.UNKNOWN else "not-sent"), str(exc)
    except SMTPException as exc:
        return ("unknown" if exc.outcome is Outcome.UNKNOWN else "not-sent"), str(exc)
    return "sent", reply


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipients", nargs="+", help="one message to each")
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds for the batch")
    parser.add_argument("--concurrency", type=int, default=4, help="messages in flight")
    env = os.environ.get
    parser.add_argument("--smtp-host", default=env("SMTP_HOST", "127.0.0.1"), help="env SMTP_HOST")
    parser.add_argument(
        "--smtp-port", type=int, default=int(env("SMTP_PORT", "1025")), help="env SMTP_PORT"
    )
    parser.add_argument(
        "--from", dest="sender", default=env("SMTP_FROM", "batch@example.org"), help="env SMTP_FROM"
    )
    args = parser.parse_args()
    batch = messages(args.sender, args.recipients)
    smtp = smtp_anyio.SMTP(hostname=args.smtp_host, port=args.smtp_port, timeout=30)
    report = await send_batch(smtp, batch, deadline=args.deadline, concurrency=args.concurrency)
    for message in batch:
        status, detail = report[message["Message-ID"]]
        print(f"{status:8} {message['To']} {message['Message-ID']} {detail}".rstrip())
    return 0 if all(status == "sent" for status, _ in report.values()) else 1


if __name__ == "__main__":
    sys.exit(trio.run(main))
