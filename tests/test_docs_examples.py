"""Every Python example in docs/ runs, against an aiosmtpd server on loopback.

Each ```` ```python ```` block of a page is one program. The comment line right before
the fence may adjust it:

* ``<!-- no-run -->``: shown, compiled, not run (it needs a remote server, a secret
  or a part of a larger program);
* ``<!-- server: OPTION ... -->``: options for the loopback server, as the ``smtpd``
  fixture takes them (``tls=starttls``, ``auth=alice:s3cret``, ``smtputf8``,
  ``data_size_limit=N``, ``lmtp``, ``refuse_recipients={JSON}``,
  ``data_reply="JSON string"``...), and
  ``expect-messages=N``: how many messages the server must have accepted afterwards.

Examples talk to ``127.0.0.1`` on port 1025 (465 for implicit TLS, 587 for
submission); the test rewrites those ports to the server's, and runs the block in a
directory holding ``ca.pem``, the certificate authority that signed the server's
certificate.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .servers import ServerInfo

DOCS = Path(__file__).resolve().parent.parent / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

FENCE = re.compile(
    r"(?:^<!--\s*(?P<marker>[^\n]*?)\s*-->\n)?^```python\n(?P<code>.*?)^```$",
    re.DOTALL | re.MULTILINE,
)
OPTION = re.compile(r'([\w-]+)(?:=(\{.*?\}|"[^"]*"|\S+))?')
PORTS = re.compile(r"(?<![\w.])(1025|465|587)(?![\w.])")
HOSTNAME = re.compile(
    r"""\b(?:hostname|host|server_hostname)\s*=\s*["']([^"']+)["']"""
    r"""|create_connection\(\(\s*["']([^"']+)["']"""
)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Example:
    page: str
    line: int
    code: str
    run: bool = True
    server: dict[str, Any] = field(default_factory=dict)
    expect_messages: int | None = None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def parse_marker(marker: str, example: Example) -> None:
    if marker == "no-run":
        example.run = False
        return
    if not marker.startswith("server:"):
        raise ValueError(f"{example.id}: unknown marker {marker!r}")
    for name, value in OPTION.findall(marker.removeprefix("server:")):
        if name == "expect-messages":
            example.expect_messages = int(value)
        elif name == "auth":
            user, _, password = value.partition(":")
            example.server["auth"] = {user: password}
        elif not value:
            example.server[name] = True
        elif value.startswith(("{", '"')) or value.isdigit():
            example.server[name] = json.loads(value)
        else:
            example.server[name] = value


def examples() -> list[Example]:
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        if "_build" in path.parts:
            continue
        text = path.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            example = Example(str(path.relative_to(DOCS)), line, match.group("code"))
            if match.group("marker"):
                parse_marker(match.group("marker"), example)
            found.append(example)
    return found


EXAMPLES = examples()


def test_the_docs_have_examples() -> None:
    assert len([e for e in EXAMPLES if e.run]) >= 20
    # Most examples run; the few that cannot say why in the page.
    assert len([e for e in EXAMPLES if not e.run]) <= len(EXAMPLES) // 4


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_uses_only_loopback(example: Example) -> None:
    compile(example.code, example.id, "exec")
    if example.run:
        for match in HOSTNAME.finditer(example.code):
            host = match.group(1) or match.group(2)
            assert host in LOOPBACK, f"{example.id} talks to {host}"


RUNNABLE = [e for e in EXAMPLES if e.run]


@pytest.mark.parametrize("example", RUNNABLE, ids=[e.id for e in RUNNABLE])
def test_example_runs(
    example: Example,
    smtpd: Callable[..., ServerInfo],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = smtpd(**example.server)
    assert server.ca_path is not None
    shutil.copy(server.ca_path, tmp_path / "ca.pem")
    monkeypatch.chdir(tmp_path)
    # Padded so that a traceback gives the line in the page.
    code = "\n" * example.line + PORTS.sub(str(server.port), example.code)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(code, str(DOCS / example.page), "exec"), namespace)
    if example.expect_messages is not None:
        assert len(server.messages) == example.expect_messages, capsys.readouterr().out


def test_state_diagram_is_generated_from_the_table() -> None:
    import state_diagram

    from smtp_core._state import TRANSITIONS

    source = state_diagram.mermaid_source()
    common = state_diagram.common_transitions(TRANSITIONS)
    for state, row in TRANSITIONS.items():
        for trigger, target in row.items():
            if trigger in common:
                pattern = rf"^    note right of {target.name}: (.*) from "
            elif state is target:
                pattern = rf"^    {state.name}: stays on (.*)$"
            else:
                pattern = rf"^    {state.name} --> {target.name}: (.*)$"
            drawn = re.search(pattern, source, re.MULTILINE)
            assert drawn is not None, (state, trigger)
            assert trigger.name in drawn.group(1).split(", "), (state, trigger)
    rows = state_diagram.table_rows()
    assert len(rows) == sum(len(row) for row in TRANSITIONS.values())
