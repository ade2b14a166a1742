"""The optional compiled build (hatch_build.py) really runs compiled modules.

With ``SMTP_SANSIO_EXPECT_COMPILED=1`` (set by ``.ci/run`` when it runs the test suite
against the compiled wheel) every hot module must come from an extension module; the
rest of the suite then checks that they behave as the pure-Python reference does.
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

# The list the build hook compiles (hatch_build.py imports hatchling: read, not import).
_BUILD = ast.parse((Path(__file__).resolve().parent.parent / "hatch_build.py").read_text())
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
