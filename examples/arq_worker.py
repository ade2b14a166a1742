"""An arq worker that sends mail: one SMTPPool per worker process, jobs never sent twice.

arq runs asyncio jobs from a queue in Redis. Each worker process opens its own pool at
start-up and closes it (QUIT on every connection) at shutdown; its jobs share the
pool's connections, and their messages are pipelined. Start as many workers as the
relay allows on one queue: each is a separate process with a separate pool (a pool is
never shared across processes or forks).

A job may run more than once (arq retries it, or runs it again after a worker died), so
the job keeps a marker in Redis from before its first byte is sent. Whether a retry is
safe is what the library's ``Outcome`` says:

* sent, or refused for good (5xx; ``Outcome.DONE``): finished, never retried;
* refused for now (4xx, such as a rate limit; ``Outcome.DONE``): the relay said it did
  not take the message; the marker is removed and arq retries the job later;
* ``Outcome.NEVER_SENT`` (or a failure before the message, such as connecting): the
  relay cannot have it; the marker is removed and arq retries the job later;
* ``Outcome.UNKNOWN``: its content may have reached the relay; the marker stays, and
  the job, or a later run of it, reports "unknown" instead of sending it again.

Run a worker and enqueue jobs (``pip install -e ".[examples]"``)::

    export REDIS_URL=redis://127.0.0.1:6379 SMTP_HOST=127.0.0.1 SMTP_PORT=1025
    python examples/arq_worker.py worker
    python examples/arq_worker.py enqueue --count 10 --to bob@example.org --wait

A worker stops on SIGTERM or SIGINT: it takes no new job, lets running ones finish,
then closes its pool.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import uuid
from email.message import EmailMessage
from typing import Any

from arq import Retry, create_pool, func, run_worker
from arq.connections import RedisSettings

import smtp_asyncio
from smtp_asyncio import Outcome, SMTPException, SMTPRecipientsRefused, SMTPResponseException

log = logging.getLogger("arq_worker")

REDIS = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
SMTP_HOST = os.environ.get("SMTP_HOST", "127.0.0.1")
SMTP_PORT = int(os.environ.get("SMTP_PORT", "1025"))
SENDER = os.environ.get("SMTP_FROM", "jobs@example.org")
MARKER_TTL = 7 * 24 * 3600  # longer than a job can be retried for


async def startup(ctx: dict[str, Any]) -> None:
    # Opened in the worker process itself, after any fork: one pool per process.
    ctx["smtp"] = smtp_asyncio.SMTPPool(
        hostname=SMTP_HOST, port=SMTP_PORT, max_connections=4, max_in_flight=8, timeout=30
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    pool: smtp_asyncio.SMTPPool = ctx["smtp"]
    await pool.close()
    log.info("SMTP pool closed: %s", json.dumps(pool.stats))


async def send_mail(ctx: dict[str, Any], message_id: str, to: str, subject: str, body: str) -> str:
    """Send one message; returns "sent", "refused: ..." or "unknown: ..."."""
    marker = f"smtp-sent:{message_id}"
    if not await ctx["redis"].set(marker, ctx["job_try"], nx=True, ex=MARKER_TTL):
        # An earlier run of this job started sending and never learnt the outcome.
        return "unknown: an earlier try may have delivered it"
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content(body)
    try:
        result = await ctx["smtp"].send_message_detailed(message)
    except SMTPException as exc:
        if exc.outcome is Outcome.UNKNOWN:
            return f"unknown: {exc}"  # the marker stays: never sent again
        await ctx["redis"].delete(marker)  # the relay cannot have it: safe to retry
        raise Retry(defer=5 * ctx["job_try"]) from exc
    if result.error is not None:  # refused: a fact about the relay (Outcome.DONE)
        if temporary(result.error):  # 4xx, e.g. the relay's rate limit: it has no copy
            await ctx["redis"].delete(marker)
            raise Retry(defer=60 * ctx["job_try"])
        return f"refused: {result.error}"
    return "sent"


def temporary(error: Exception) -> bool:
    """A 4xx refusal (of the sender, the content, or every recipient): try again later."""
    if isinstance(error, SMTPRecipientsRefused):
        return all(400 <= r.code < 500 for r in error.recipients)
    return isinstance(error, SMTPResponseException) and 400 <= error.code < 500


class WorkerSettings:
    functions = (func(send_mail, max_tries=5),)
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = REDIS
    max_jobs = 32  # jobs at once in this process: 4 connections x 8 pipelined
    job_completion_wait = 30  # on a signal, running jobs get this long to finish


async def enqueue(count: int, to: str, wait: bool) -> dict[str, int]:
    redis = await create_pool(REDIS)
    try:
        jobs = []
        for n in range(count):
            message_id = f"<{uuid.uuid4()}@example.org>"
            # The job id makes enqueueing idempotent too: the same id is queued once.
            job = await redis.enqueue_job(
                "send_mail", message_id, to, f"Message {n + 1} of {count}", "Hello.",
                _job_id=message_id,
            )
            if job is not None:
                jobs.append(job)
        if not wait:
            return {"enqueued": len(jobs)}
        outcomes: collections.Counter[str] = collections.Counter()
        for job in jobs:
            try:
                outcome = await job.result(timeout=300)
            except Exception:  # retries exhausted, or the job itself failed
                outcome = "failed"
            outcomes[outcome.partition(":")[0]] += 1
        return dict(outcomes)
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Environment: REDIS_URL, SMTP_HOST, SMTP_PORT, SMTP_FROM.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run a worker until SIGTERM/SIGINT")
    enqueue_parser = commands.add_parser("enqueue", help="queue messages")
    enqueue_parser.add_argument("--count", type=int, default=1)
    enqueue_parser.add_argument("--to", required=True)
    enqueue_parser.add_argument("--wait", action="store_true", help="wait for every job")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.command == "worker":
        run_worker(WorkerSettings)  # type: ignore[arg-type]
    else:
        print(json.dumps(asyncio.run(enqueue(args.count, args.to, args.wait))))


if __name__ == "__main__":
    main()
