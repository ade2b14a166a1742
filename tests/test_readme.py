"""The README's examples run as written (against a local server on the port they use)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .test_aiosmtplib_examples import _port_free, _server_on

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
# The blocks that run against a local server, found by what they are.
EXAMPLES = {
    "asyncio-example": next(b for b in BLOCKS if "import smtp_asyncio as aiosmtplib" in b),
    "core-by-hand": next(b for b in BLOCKS if "from smtp_core import NEED_DATA" in b),
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_readme_example_runs(name: str) -> None:
    source = EXAMPLES[name]
    assert "1025" in source
    if not _port_free(1025):
        pytest.skip("port 1025 is busy on this machine")
    server = _server_on(1025)
    try:
        result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert len(server.messages) == 1
        if name == "core-by-hand":
            assert server.messages[0].content == b"Subject: hi\r\n\r\n.a dot line\r\n"
            assert "code=250" in result.stdout
    finally:
        server.stop()
