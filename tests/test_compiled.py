"""The optional compiled build (hatch_build.py) really runs compiled modules, and they
behave as the pure-Python ones do.

With ``SMTP_SANSIO_EXPECT_COMPILED=1`` (set by ``.ci/run`` when it runs the test suite
against the compiled wheel) every hot module must come from an extension module; the
rest of the suite then checks that they behave as the pure-Python reference does.

The source rules mypyc needs (see ``smtp_core/_native.py``) are checked on the pure
sources in every run: a compiled coroutine must not be suspended inside an exception
handler, and ``raise ... from ...`` is not chained by mypyc. The behavioural tests
below fail (or crash the process) in a compiled build that breaks them.
"""

from __future__ import annotations

import ast
import gc
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

from .conftest import Adapter
from .servers import Close, Expect, Hang, session_prefix

ROOT = Path(__file__).resolve().parent.parent

# The list the build hook compiles (hatch_build.py imports hatchling: read, not import).
_BUILD = ast.parse((ROOT / "hatch_build.py").read_text())
HOT_MODULES: list[str] = next(
    ast.literal_eval(node.value)
    for node in _BUILD.body
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "HOT_MODULES"
)


@pytest.mark.skipif(
    os.environ.get("SMTP_SANSIO_EXPECT_COMPILED") != "1", reason="the pure-Python build is under test"
)
@pytest.mark.parametrize("path", HOT_MODULES)
def test_hot_module_is_compiled(path: str) -> None:
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    assert module.__file__ is not None and not module.__file__.endswith(".py"), module.__file__


def test_the_client_is_compiled() -> None:
    """The client's rooms are in the compiled set (the lion's share of a message's CPU)."""
    for room in ("_client_turns", "_client_session", "_client_commands", "_client_auth", "_client_send", "_client"):
        assert f"smtp_core/{room}.py" in HOT_MODULES, room


def test_smtp_syncs_trampoline_is_compiled() -> None:
    """smtp_sync's driver (the trampoline, the socket, the time limits) and its turns
    (the baton and the mail pipeline) run for every message: compiled too."""
    for room in ("_driver", "_turns", "_send"):
        assert f"smtp_sync/{room}.py" in HOT_MODULES, room


def test_smtplib_style_subclasses_keep_working(smtpd: Any) -> None:
    """Code written for smtplib subclasses ``SMTP``: in the compiled build its classes
    sit on compiled ones, and an override is still what the compiled code calls."""
    import smtp_sync

    class Counting(smtp_sync.SMTP):
        hellos = 0

        def ehlo_or_helo_if_needed(self) -> None:
            self.hellos += 1
            super().ehlo_or_helo_if_needed()

    server = smtpd()
    with Counting(server.host, server.port, local_hostname="client.test") as smtp:
        smtp.extra = "anything"  # an smtplib subclass's own attribute
        assert smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nx\r\n") == {}
        assert smtp.hellos >= 1
    assert len(server.messages) == 1


# -- what mypyc needs of the sources -------------------------------------------------


def _is_turn(expr: ast.expr) -> bool:
    """``self._turn()``: a context whose exit never suspends (checked below)."""
    return isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "_turn"


_TRY: tuple[type[Any], ...] = (ast.Try, *([ast.TryStar] if sys.version_info >= (3, 11) else []))


def _violations(source: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, handler: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for child in ast.iter_child_nodes(node):
                visit(child, None)  # a nested function runs outside the handler
            return
        if isinstance(node, ast.Await) and handler is not None:
            found.append((node.lineno, f"await inside {handler}"))
        if isinstance(node, ast.AsyncWith) and not all(_is_turn(item.context_expr) for item in node.items):
            found.append((node.lineno, "async with (its exit is awaited inside a handler)"))
        if isinstance(node, ast.Raise) and node.cause is not None:
            found.append((node.lineno, "raise ... from ... (mypyc drops the cause: use caused_by)"))
        if isinstance(node, _TRY):
            for child in [*node.body, *node.orelse]:
                visit(child, handler)
            for except_handler in node.handlers:
                for child in except_handler.body:
                    visit(child, "an except block")
            for child in node.finalbody:
                visit(child, "a finally block")
            return
        for child in ast.iter_child_nodes(node):
            visit(child, handler)

    visit(ast.parse(source), None)
    return found


@pytest.mark.parametrize("path", HOT_MODULES)
def test_compiled_module_never_suspends_inside_a_handler(path: str) -> None:
    """mypyc keeps the exception being handled in the thread's state, not the frame's:
    an await inside ``except``/``finally`` (or an ``async with`` whose exit is awaited
    there) would lend it to other code, and mypyc drops ``raise ... from``'s cause."""
    assert _violations((ROOT / path).read_text()) == []


def test_the_rules_catch_what_they_are_about() -> None:
    source = (
        "async def f():\n"
        "    try:\n        await g()\n    except E:\n        await h()\n        raise\n"
        "    try:\n        pass\n    finally:\n        await h()\n"
        "    async with lock:\n        pass\n"
        "    async with self._turn():\n        pass\n"
        "    try:\n        pass\n    except E as exc:\n        raise F() from exc\n"
        "    try:\n        pass\n    except E:\n        async def later():\n            await h()\n"
    )
    assert [line for line, _ in _violations(source)] == [5, 10, 11, 18]


def test_a_turn_exit_never_suspends() -> None:
    """``async with self._turn()`` is allowed because ``_Turn.__aexit__`` awaits nothing."""
    tree = ast.parse((ROOT / "smtp_core/_client_turns.py").read_text())
    turn = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "_Turn")
    exit_ = next(node for node in turn.body if isinstance(node, ast.AsyncFunctionDef) and node.name == "__aexit__")
    assert not any(isinstance(node, ast.Await) for node in ast.walk(exit_))


# -- the behaviour those rules protect, on every adapter ----------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts (each one a real exception, no cycle)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        assert isinstance(item, BaseException), type(item)
        seen.append(item)
        todo += [item.__cause__, item.__context__]
        assert len(seen) < 20, [type(s).__name__ for s in seen]
    return seen


def test_a_timed_out_call_leaves_a_sound_exception_and_nothing_behind(adapter: Adapter, scripted: Any) -> None:
    """The timeout closes the session from inside the client's error handling: the
    exception (and its chain) can be formatted and collected, and the next failure is
    raised fresh, with no stale exception as its context."""
    server = scripted([*session_prefix(), Expect(b"NOOP"), Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        with pytest.raises(mod.SMTPTimeoutError) as timed_out:
            await smtp.noop(timeout=0.2)
        assert sys.exc_info() == (None, None, None)
        chain = _chain(timed_out.value)
        text = "".join(traceback.format_exception(timed_out.value))
        assert type(timed_out.value).__name__ in text
        with pytest.raises(mod.SMTPServerDisconnected) as disconnected:
            await smtp.noop()
        assert disconnected.value.__context__ is None, repr(disconnected.value.__context__)
        assert sys.exc_info() == (None, None, None)
        del chain, text
        gc.collect()

    adapter.run(main)
    gc.collect()


@pytest.mark.not_on_sync("aiosmtplib's SMTPConnectError for a server that closes before its greeting; smtplib raises SMTPServerDisconnected")
def test_connect_error_keeps_its_cause(adapter: Adapter, scripted: Any) -> None:
    server = scripted([Close()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        with pytest.raises(mod.SMTPConnectError) as failed:
            await smtp.connect()
        assert isinstance(failed.value.__cause__, mod.SMTPServerDisconnected)
        assert failed.value.__suppress_context__

    adapter.run(main)


@pytest.mark.not_on_sync("per-call timeout= and Timeouts(total=) on sendmail are aiosmtplib-side")
def test_total_deadline_keeps_its_cause(adapter: Adapter, scripted: Any) -> None:
    server = scripted([*session_prefix(), Expect(b"MAIL"), Hang()])
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname="127.0.0.1", port=server.port, timeout=5, timeouts=mod.Timeouts(total=0.2))
        await smtp.connect()
        with pytest.raises(mod.SMTPTimeoutError) as timed_out:
            await smtp.sendmail("a@example.org", ["b@example.org"], "Subject: x\r\n\r\nx\r\n")
        assert "total deadline" in str(timed_out.value)
        assert isinstance(timed_out.value.__cause__, mod.SMTPTimeoutError)
        smtp.close()

    adapter.run(main)


WRONG_TYPES = [5, 2.5, True, b"a@example.org", None, ["a@example.org"], object()]
CONTENT = "Subject: types\r\n\r\nbody\r\n"


@pytest.mark.not_on_sync("smtplib's sendmail/mail/rcpt take other arguments (no priority=, require_tls=)")
def test_wrong_typed_arguments_meet_the_library_checks(adapter: Adapter, smtpd: Any) -> None:
    """Where the library checks an argument itself, a value of the wrong type gets its
    answer (ValueError, SMTPNotSupported, or accepted), never a TypeError from a
    compiled signature."""
    server = smtpd()
    mod = adapter.module

    async def main() -> None:
        smtp = mod.SMTP(hostname=server.host, port=server.port, start_tls=False, timeout=5)
        await smtp.connect()
        await smtp.ehlo()
        for value in WRONG_TYPES:
            for send in (smtp.sendmail, smtp.sendmail_detailed):
                with pytest.raises(ValueError, match="must be a str"):
                    await send(value, ["b@example.org"], CONTENT)
                with pytest.raises(ValueError, match="must be a str"):
                    await send("a@example.org", [value], CONTENT)
                if type(value) is not int and value is not None:  # True too: not a number
                    with pytest.raises(ValueError, match="MT-PRIORITY"):
                        await send("a@example.org", ["b@example.org"], CONTENT, priority=value)
                if value:
                    with pytest.raises(mod.SMTPNotSupported, match="REQUIRETLS"):
                        await send("a@example.org", ["b@example.org"], CONTENT, require_tls=value)
                else:  # falsy: not asked for
                    await send("a@example.org", ["b@example.org"], CONTENT, require_tls=value)
            with pytest.raises(ValueError, match="must be a str"):
                await smtp.mail(value)
            with pytest.raises(ValueError, match="must be a str"):
                await smtp.rcpt(value)
        assert smtp.is_connected
        await smtp.quit()

    adapter.run(main)
