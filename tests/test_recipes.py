"""The recipes in examples/ run as programs against real servers on loopback.

* ``fastapi_app.py``: served by uvicorn, sent real HTTP requests; the messages are
  checked at an aiosmtpd server, and so is the pool's QUIT at shutdown.
* ``arq_worker.py``: two worker processes on one queue in a real ``redis-server``
  (bound to 127.0.0.1, no persistence, data in a temporary directory); 200 jobs, each
  message at the server exactly once, each worker's pool closed with QUIT.
* ``trio_batch.py``: a batch cut by its deadline while the server holds one reply.

The recipes' own dependencies are the ``examples`` extra; without it these tests skip,
saying so, unless ``SMTP_SANSIO_REQUIRE_RECIPES=1`` (CI installs the extra and sets it)
makes that a failure. The arq test skips, saying so, where ``redis-server`` (Debian
package ``redis-server``) is not installed.
"""

from __future__ import annotations

import ast
import asyncio
import collections
import email
import email.policy
import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer

import smtp_anyio

from .conftest import Adapter
from .servers import Close, Expect, ExpectData, Handler, Send, free_port, session_prefix

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REQUIRED = os.environ.get("SMTP_SANSIO_REQUIRE_RECIPES") == "1"


def require(module: str) -> None:
    """Skip (or fail, where the recipes are required) without a recipe's dependency."""
    if importlib.util.find_spec(module) is None:
        reason = f"{module} is not installed (pip install -e '.[examples]')"
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)


# -- an aiosmtpd server that records sessions -------------------------------------------


class SessionHandler(Handler):
    """Records each session's EHLO, QUIT and close.

    A message to ``hold`` waits for ``release`` before its DATA reply; after a message to
    ``drop`` the connection is closed instead of replying.
    """

    def __init__(self, hold: str | None = None, drop: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drop = drop
        self.changed = threading.Condition()
        self.opened: list[Any] = []
        self.quit: list[Any] = []
        self.closed: list[Any] = []
        self.hold = hold
        self.release = threading.Event()
        self.stop: Callable[[], None] = lambda: None

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # as aiosmtpd does when no hook is defined
        with self.changed:
            self.opened.append(session.peer)
        return responses

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        with self.changed:
            self.quit.append(session.peer)
        return "221 Bye"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hold in envelope.rcpt_tos:
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
        reply = await super().handle_DATA(server, session, envelope)
        if self.drop in envelope.rcpt_tos:
            server.transport.close()  # the content arrived; its reply never leaves
        with self.changed:
            self.changed.notify_all()
        return reply

    def connection_lost(self, peer: Any) -> None:
        with self.changed:
            self.closed.append(peer)
            self.changed.notify_all()

    def all_closed(self) -> bool:
        """Every session that said EHLO has ended (the controller's own probe says none)."""
        return bool(self.opened) and set(self.opened) <= set(self.closed)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def message_ids(self) -> collections.Counter[str]:
        return collections.Counter(
            email.message_from_bytes(m.content, policy=email.policy.default)["Message-ID"]
            for m in self.messages
        )


class _TrackingSMTP(SMTPServer):
    def connection_lost(self, error: Exception | None) -> None:
        peer = self.session.peer if self.session is not None else None
        super().connection_lost(error)
        self.event_handler.connection_lost(peer)


class _TrackingController(Controller):
    def factory(self) -> SMTPServer:
        return _TrackingSMTP(self.handler, hostname="smtp.test")


@pytest.fixture
def relay() -> Iterator[Callable[..., tuple[int, SessionHandler]]]:
    """Start aiosmtpd on 127.0.0.1: ``port, handler = relay(refuse_recipients={...})``."""
    started: list[SessionHandler] = []

    def start(**options: Any) -> tuple[int, SessionHandler]:
        handler = SessionHandler(**options)
        port = free_port()
        controller = _TrackingController(handler, hostname="127.0.0.1", port=port)
        controller.start()
        stopped = threading.Event()

        def stop() -> None:
            if not stopped.is_set():
                stopped.set()
                controller.stop()

        handler.stop = stop
        started.append(handler)
        return port, handler

    yield start
    for handler in started:
        handler.release.set()
        handler.stop()


# -- programs ------------------------------------------------------------------------------


class Program:
    """A recipe run as a process; its stderr lines can be waited for."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, text: str, timeout: float = 60) -> str:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {text!r} in {''.join(self.stderr)}") from None
            if line is None:
                raise AssertionError(f"exited without {text!r}: {''.join(self.stderr)}")
            self.stderr.append(line)
            if text in line:
                return line

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the process, wait for it, and return its exit status."""
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.stderr.append(line)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def programs() -> Iterator[Callable[..., Program]]:
    started: list[Program] = []

    def start(*args: str, **env: str) -> Program:
        program = Program(list(args), env)
        started.append(program)
        return program

    yield start
    for program in started:
        program.kill()


def post(url: str, document: dict[str, str]) -> tuple[int, dict[str, Any], Any]:
    """POST ``document`` as JSON: the status, the JSON answer and the headers."""
    request = urllib.request.Request(
        url, json.dumps(document).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers


def test_each_recipe_explains_itself() -> None:
    recipes = {"fastapi_app.py": "fastapi", "arq_worker.py": "arq", "trio_batch.py": "trio"}
    for needs in recipes.values():
        require(needs)
    running = {  # at once: most of the time is the interpreter importing the frameworks
        recipe: subprocess.Popen(
            [sys.executable, str(EXAMPLES / recipe), "--help"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for recipe in recipes
    }
    for recipe, process in running.items():
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert "SMTP_HOST" in stdout and "SMTP_FROM" in stdout
        # The description is the first line of the module docstring, which explains more.
        assert stdout.split("\n\n")[1].split() == load_docstring(recipe).splitlines()[0].split()


def load_docstring(recipe: str) -> str:
    docstring = ast.get_docstring(ast.parse((EXAMPLES / recipe).read_text()))
    assert docstring is not None and len(docstring.splitlines()) > 5
    return docstring


# -- FastAPI ------------------------------------------------------------------------------


def serve_app(programs: Callable[..., Program], smtp_port: int) -> tuple[Program, str]:
    require("fastapi")
    require("uvicorn")
    app = programs(
        str(EXAMPLES / "fastapi_app.py"), "--port", "0", "--smtp-port", str(smtp_port),
        SMTP_FROM="app@example.org",
    )
    line = app.wait_for_line("Uvicorn running on")
    url = line.split("running on ", 1)[1].split()[0]
    return app, url


def test_fastapi_sends_from_a_request_and_closes_the_pool_at_shutdown(
    relay: Any, programs: Any
) -> None:
    port, handler = relay(refuse_recipients={"nobody@example.org": "550 5.1.1 no such user"})
    app, url = serve_app(programs, port)

    status, body, _ = post(f"{url}/messages", {"to": "bob@example.org", "subject": "Hi", "body": "Hello"})
    assert (status, body["status"]) == (202, "sent"), body
    [got] = handler.messages
    parsed = email.message_from_bytes(got.content, policy=email.policy.default)
    assert (got.mail_from, got.rcpt_tos) == ("app@example.org", ["bob@example.org"])
    assert parsed["Message-ID"] == body["message_id"]
    assert parsed["Subject"] == "Hi" and parsed.get_content().strip() == "Hello"

    # The relay refuses: the handler says so, with the relay's reply, and the same
    # pooled connection goes on serving.
    status, body, _ = post(f"{url}/messages", {"to": "nobody@example.org", "subject": "x", "body": "y"})
    assert status == 502
    assert body == {"status": "refused", "code": 550, "reply": "5.1.1 no such user"}
    status, _, _ = post(f"{url}/messages", {"to": "carol@example.org", "subject": "2", "body": "z"})
    assert status == 202
    assert len(handler.messages) == 2
    assert len(handler.opened) == 1  # one pooled session served all three requests
    assert handler.quit == []

    assert app.stop() == -signal.SIGTERM  # uvicorn shuts down, then re-raises the signal
    log = "".join(app.stderr)
    assert "Application shutdown complete" in log and "SMTP pool closed" in log
    assert handler.wait_for(handler.all_closed)
    assert handler.quit == handler.opened  # the pool sent QUIT at shutdown


def test_fastapi_answers_503_when_the_relay_defers_or_is_down(relay: Any, programs: Any) -> None:
    port, handler = relay(refuse_recipients={"busy@example.org": "450 4.2.1 mailbox busy"})
    app, url = serve_app(programs, port)

    # A 4xx, still refused after the pool's own retries: the caller may try later.
    status, body, headers = post(f"{url}/messages", {"to": "busy@example.org", "subject": "a", "body": "b"})
    assert (status, headers["Retry-After"]) == (503, "60")
    assert body == {"status": "refused", "code": 450, "reply": "4.2.1 mailbox busy"}
    assert handler.messages == []

    handler.stop()  # the relay is down: nothing of the message can be sent
    status, body, headers = post(f"{url}/messages", {"to": "bob@example.org", "subject": "a", "body": "b"})
    assert (status, body["status"]) == (503, "not sent")
    assert "Retry-After" in headers
    assert app.stop() == -signal.SIGTERM


# -- arq ----------------------------------------------------------------------------------


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port, without persistence."""
    executable = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if executable is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [
            executable, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path),
            "--save", "", "--appendonly", "no", "--logfile", "", "--daemonize", "no",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise AssertionError("redis-server exited before it was ready")
        # Keep draining its log so that it never blocks on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def test_arq_workers_send_each_job_exactly_once_and_close_their_pools(
    relay: Any, programs: Any, redis_url: str
) -> None:
    require("arq")
    port, handler = relay()
    env = {"REDIS_URL": redis_url, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)}
    worker = str(EXAMPLES / "arq_worker.py")
    workers = [programs(worker, "worker", **env) for _ in range(2)]

    enqueue = subprocess.run(
        [sys.executable, worker, "enqueue", "--count", "200", "--to", "bob@example.org", "--wait"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert enqueue.returncode == 0, enqueue.stderr
    assert json.loads(enqueue.stdout) == {"sent": 200}

    ids = handler.message_ids()
    assert len(ids) == 200 and set(ids.values()) == {1}  # each message exactly once
    sent = 0
    for process in workers:
        assert process.stop() == 0, "".join(process.stderr)
        [closed] = [line for line in process.stderr if "SMTP pool closed" in line]
        stats = json.loads(closed.split("SMTP pool closed: ", 1)[1])
        assert stats["connections"] == stats["retired"] <= 4  # every connection retired
        sent += stats["messages"]
    assert sent == 200
    assert handler.wait_for(handler.all_closed)
    assert 1 <= len(handler.opened) <= 8
    assert sorted(handler.quit) == sorted(handler.opened)  # no QUIT missing


def test_arq_job_whose_fate_is_unknown_is_never_sent_again(
    relay: Any, programs: Any, redis_url: str
) -> None:
    require("arq")
    from arq import create_pool
    from arq.connections import RedisSettings

    port, handler = relay(drop="lost@example.org")
    programs(
        str(EXAMPLES / "arq_worker.py"), "worker",
        REDIS_URL=redis_url, SMTP_HOST="127.0.0.1", SMTP_PORT=str(port),
    )

    async def run(*jobs: tuple[str, str, str]) -> list[str]:
        redis = await create_pool(RedisSettings.from_dsn(redis_url))
        results = []
        for job_id, message_id, to in jobs:  # one after the other
            job = await redis.enqueue_job("send_mail", message_id, to, "s", "b", _job_id=job_id)
            assert job is not None
            results.append(await job.result(timeout=60))
        await redis.aclose()
        return results

    first, again, other = asyncio.run(
        run(
            ("job-1", "<lost@example.org>", "lost@example.org"),
            # The same message enqueued again (a new job): the marker stops it.
            ("job-2", "<lost@example.org>", "lost@example.org"),
            ("job-3", "<fine@example.org>", "bob@example.org"),
        )
    )
    assert first.startswith("unknown: ")  # the relay closed the connection after the content
    assert again == "unknown: an earlier try may have delivered it"
    assert other == "sent"
    assert handler.message_ids() == {"<lost@example.org>": 1, "<fine@example.org>": 1}


# -- trio ----------------------------------------------------------------------------------


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECIPIENTS = [f"r{n}@example.org" for n in range(10)]


def test_trio_batch_reports_sent_unknown_and_not_sent(relay: Any) -> None:
    port, handler = relay(hold="r3@example.org")
    result = subprocess.run(
        [
            sys.executable, str(EXAMPLES / "trio_batch.py"), "--deadline", "3",
            "--concurrency", "2", "--smtp-port", str(port), *RECIPIENTS,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    report = {recipient: status for status, recipient, *_ in lines}
    assert list(report) == RECIPIENTS  # one line per message, in order
    by_status: dict[str, set[str]] = collections.defaultdict(set)
    for recipient, status in report.items():
        by_status[status].add(recipient)
    # r3's reply is held, so both senders are stuck when the deadline passes: on r3, and
    # on a message pipelined behind it (which of r2 and r4 depends on how trio scheduled
    # the two senders). What went before r3 was delivered and is reported so; what no
    # sender took is reported not sent.
    assert {m.rcpt_tos[0] for m in handler.messages} == by_status["sent"]
    assert by_status["sent"] >= set(RECIPIENTS[:2])
    assert "r3@example.org" in by_status["unknown"] and len(by_status["unknown"]) == 2
    assert by_status["not-sent"] >= set(RECIPIENTS[5:])
    assert set(by_status) == {"sent", "unknown", "not-sent"}


def test_trio_batch_leaves_nothing_open(relay: Any) -> None:
    trio_batch = load("trio_batch")
    port, handler = relay(hold="r3@example.org")

    async def main() -> dict[str, tuple[str, str]]:
        smtp = smtp_anyio.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        batch = trio_batch.messages("batch@example.org", RECIPIENTS)
        report: dict[str, tuple[str, str]] = await trio_batch.send_batch(
            smtp, batch, deadline=2, concurrency=1
        )
        assert not smtp.is_connected
        # The server sees the connection closed while this process is still running.
        assert await trio.to_thread.run_sync(handler.wait_for, handler.all_closed)
        return report

    report = trio.run(main)
    statuses = collections.Counter(status for status, _ in report.values())
    assert statuses == {"sent": 3, "unknown": 1, "not-sent": 6}
    assert handler.quit == []  # cancelled in the middle of a transaction: closed, not QUIT


# -- what the recipes rely on from the pool ------------------------------------------------


def test_pool_retries_a_421_greeting_on_a_fresh_connection(adapter: Adapter, scripted: Any) -> None:
    # Postfix over its per-client connection limit: 421 at once, then closes.
    too_many = [Send(b"421 4.7.0 smtp.test Error: too many connections from 127.0.0.1\r\n"), Close()]
    accepted = [
        *session_prefix("PIPELINING"),
        Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA"),
        Send(b"250 ok\r\n250 ok\r\n354 go\r\n"), ExpectData(), Send(b"250 queued\r\n"),
        Expect(b"QUIT"), Send(b"221 bye\r\n"),
    ]
    server = scripted(too_many, more=[accepted])

    async def main() -> Any:
        async with adapter.module.SMTPPool(
            hostname="127.0.0.1", port=server.port, retry_backoff=0.01, timeout=5
        ) as pool:
            return await pool.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\ny\r\n")

    assert adapter.run(main) == ({}, "queued")
