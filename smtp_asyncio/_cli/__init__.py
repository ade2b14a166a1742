"""``smtp-sansio``: send one message and show the SMTP conversation (a swaks for this library).

Without ``--server`` it starts an embedded aiosmtpd server on 127.0.0.1 for the run
(STARTTLS or implicit TLS with a throwaway certificate, AUTH for a demo user), sends
through it, and prints what that server received (needs the ``demo`` extra). See
``docs/cli.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, TextIO

from ._demo import DEMO_USER, DemoServer, DemoUnavailable, start_demo_server
from ._options import ExitCode, Options, UsageError, parse
from ._report import TRACE_LOGGER, Recorder, StatusLine, discard_output
from ._session import Outcome, run

__all__ = ["ExitCode", "main"]


@contextlib.contextmanager
def _tracing(recorder: Recorder) -> Iterator[None]:
    logger = logging.getLogger(TRACE_LOGGER)
    level = logger.level
    logger.addHandler(recorder)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)


def _print_received(demo: DemoServer, out: TextIO) -> None:
    for message in demo.received:
        out.write("=== The embedded server received:\n")
        options = " ".join(message.mail_options)
        out.write(f"    MAIL FROM: <{message.mail_from}>{' ' + options if options else ''}\n")
        for rcpt, rcpt_options in zip(message.rcpt_tos, message.rcpt_options, strict=False):
            extra = " ".join(rcpt_options)
            out.write(f"    RCPT TO:   <{rcpt}>{' ' + extra if extra else ''}\n")
        for line in message.content.decode("utf-8", "replace").splitlines():
            out.write(f"    | {line}\n")


def _summary(options: Options, outcome: Outcome, where: str, elapsed_ms: float) -> str:
    took = f"{elapsed_ms:.1f} ms"
    if outcome.code is not ExitCode.OK:
        return f"FAILED (exit {int(outcome.code)}, {outcome.code.label}): {outcome.error} ({took})"
    if outcome.stopped_after is not None:
        return f"OK: stopped after {outcome.stopped_after} as asked, {where} ({took})"
    count = len(options.recipients)
    noun = "recipient" if count == 1 else "recipients"
    return f"OK: message accepted by {where} for {count} {noun}: {outcome.reply} ({took})"


def _json_outcome(outcome: Outcome, elapsed_ms: float) -> dict[str, Any]:
    return {
        "ok": outcome.code is ExitCode.OK,
        "exit_code": int(outcome.code),
        "class": outcome.code.label,
        "error": outcome.error,
        "stopped_after": outcome.stopped_after,
        "refused": outcome.refused,
        "reply": outcome.reply,
        "total_ms": elapsed_ms,
    }


def _usage_failure(message: str, as_json: bool, out: TextIO) -> int:
    print(f"smtp-sansio: error: {message} (see --help)", file=sys.stderr)
    if as_json:
        outcome = Outcome(code=ExitCode.USAGE, error=message)
        out.write(json.dumps({"outcome": _json_outcome(outcome, 0.0), "stages": []}) + "\n")
    return int(ExitCode.USAGE)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (documented in ``--help``)."""
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        options = parse(argv)
    except UsageError as exc:
        return _usage_failure(str(exc), "--json" in argv, out)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    status = None
    if sys.stderr.isatty() and not options.quiet:
        status = StatusLine(sys.stderr)
    recorder = Recorder(out, live=not (options.quiet or options.json), status=status)
    demo: DemoServer | None = None
    try:
        if options.embedded:
            try:
                demo = _start_demo(options, recorder)
            except DemoUnavailable as exc:
                return _usage_failure(str(exc), options.json, out)
            options = _with_demo(options, demo)
        where = options.socket_path or f"{options.host} port {options.shown_port}"
        recorder.note(f"Connecting to {where}")
        with _tracing(recorder):
            outcome = asyncio.run(_run_with_status(options, recorder, status))
    except KeyboardInterrupt:
        if status is not None:
            status.clear()
        return int(ExitCode.INTERRUPTED)
    finally:
        if demo is not None:
            demo.stop()
    try:
        _report(options, outcome, recorder, demo, out)
    except BrokenPipeError:  # the reader went away (| head); the exit status still tells
        discard_output(out)
    return int(outcome.code)


def _with_demo(options: Options, demo: DemoServer) -> Options:
    """The options aimed at the running demo server, its CA and its demo password."""
    secret = options.secret
    if secret is None and options.user == DEMO_USER:
        secret = demo.password
    return replace(options, port=demo.port, tls_context=demo.client_context, secret=secret)


def _report(
    options: Options, outcome: Outcome, recorder: Recorder, demo: DemoServer | None, out: TextIO
) -> None:
    """The error line, then the JSON document or what the demo server received and the summary."""
    elapsed = recorder.elapsed_ms()
    if outcome.code is not ExitCode.OK:
        print(f"error: {outcome.code.label}: {outcome.error}", file=sys.stderr)
    if options.json:
        received = None
        if demo is not None:
            received = [
                {
                    "mail_from": m.mail_from,
                    "mail_options": m.mail_options,
                    "rcpt_tos": m.rcpt_tos,
                    "rcpt_options": m.rcpt_options,
                    "content": m.content.decode("utf-8", "replace"),
                }
                for m in demo.received
            ]
        server = {
            "host": options.host,
            "port": None if options.socket_path else options.shown_port,
            "socket": options.socket_path,
            "embedded": options.embedded,
            "lmtp": options.lmtp,
        }
        envelope = {"sender": options.sender, "recipients": list(options.recipients)}
        out.write(
            recorder.document(
                server=server,
                envelope=envelope,
                received=received,
                outcome=_json_outcome(outcome, elapsed),
            )
            + "\n"
        )
    elif not options.quiet:
        if demo is not None:
            _print_received(demo, out)
        short = options.socket_path or f"{options.host}:{options.shown_port}"
        out.write(f"=== {_summary(options, outcome, short, elapsed)}\n")
    out.flush()


def _start_demo(options: Options, recorder: Recorder) -> DemoServer:
    implicit = options.tls == "implicit"
    try:
        demo = start_demo_server(
            implicit_tls=implicit, lmtp=options.lmtp, tls=options.tls != "never"
        )
    except DemoUnavailable as exc:
        if options.tls != "opportunistic" or exc.module.startswith("aiosmtpd"):
            raise
        # STARTTLS only if offered: the demo can go on without TLS.
        recorder.note(f"No TLS on the embedded server: {exc}")
        demo = start_demo_server(implicit_tls=False, lmtp=options.lmtp, tls=False)
    offers = "STARTTLS" if demo.client_context else "no TLS"
    if demo.implicit_tls:
        offers = "implicit TLS"
    recorder.note(
        f"Started the embedded {'LMTP' if demo.lmtp else 'SMTP'} server on 127.0.0.1 "
        f"port {demo.port} ({offers}; AUTH user {DEMO_USER!r}, password {demo.password!r})"
    )
    return demo


async def _run_with_status(
    options: Options, recorder: Recorder, status: StatusLine | None
) -> Outcome:
    ticker = asyncio.create_task(status.run(recorder)) if status is not None else None
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    handled = False
    if sys.version_info < (3, 11) and task is not None:  # asyncio.run does this from 3.11
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, task.cancel)
            handled = True
    try:
        return await run(options, recorder)
    except asyncio.CancelledError:
        # Only Ctrl-C cancels this task: the session has been closed on the way out.
        return Outcome(code=ExitCode.INTERRUPTED, error="stopped by Ctrl-C")
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            assert status is not None
            status.clear()
